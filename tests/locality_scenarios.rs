//! `epollscope run --under both` reports, per instance and in all, the accepts whose
//! connection was processed on the CPU that accepted it (SO_INCOMING_CPU of the accepted socket
//! against the accepting actor's CPU, measured by the actor on both sides). With the whole run
//! confined to one CPU every accept is local, on both sides: the exact count is known.

mod common;
mod shim_support;

use common::{run_clean, stderr, stdout, tool};
use epollscope::sys::cpu;

const ONE_WORKER: &str = "# One forked worker accepts one connection.
family: inet

socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L
bind(L, ADDR) = 0
listen(L, 128) = 0
fork() = w1
[w1] epoll_create1(0) = E1
[w1] epoll_ctl(E1, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=L}) = 0
socket(FAMILY, SOCK_STREAM, 0) = C
connect(C, ADDR) = 0
[w1] epoll_wait(E1, [{events=EPOLLIN, data=L}], 16, -1) = 1
[w1] accept(L) = A
";

#[test]
fn under_both_counts_local_accepts_on_each_side() {
    let lib = shim_support::preload_lib();
    let dir = std::env::temp_dir().join(format!("locality-scn-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let scn = dir.join("one-worker.scn");
    std::fs::write(&scn, ONE_WORKER).unwrap();
    // Children inherit this thread's affinity: the runner, its actors and the kernel's
    // processing of their loopback connections all on one CPU.
    let first = cpu::allowed_cpus().unwrap()[0];
    cpu::pin_to(first).unwrap();
    let text = run_clean(
        tool("epollscope")
            .args(["run", "--under", "both"])
            .arg(&scn)
            .env("EPOLLSCOPE_PRELOAD", &lib),
    );
    let json = run_clean(
        tool("epollscope")
            .args(["run", "--under", "both", "--json"])
            .arg(&scn)
            .env("EPOLLSCOPE_PRELOAD", &lib),
    );
    std::fs::remove_file(&scn).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let out = stdout(&text);
    assert!(
        out.contains("\n  local accepts: native 1/1 (100.0%), fastsocket 1/1 (100.0%)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "local accepts (processed and accepted on the same CPU): native 1/1 (100.0%), fastsocket 1/1 (100.0%)\n"
        ),
        "{out}"
    );
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let one = serde_json::json!({"local": 1, "measured": 1});
    let c = &v["comparisons"][0]["local_accepts"];
    for side in ["native", "fastsocket"] {
        assert_eq!(c[side]["local"], 1, "{c}");
        assert_eq!(c[side]["measured"], 1, "{c}");
        assert_eq!(c[side]["per_actor"]["w1"], one, "{c}");
        assert_eq!(v["totals"]["local_accepts"][side], one, "{v}");
    }
}

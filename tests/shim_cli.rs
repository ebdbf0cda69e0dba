//! `epollscope trace` and `epollscope compare` end to end, and a real interpreter (python's
//! http.server) traced completely.

mod shim_support;

use std::process::Command;

use shim_support::*;

fn epollscope() -> Command {
    preload_lib();
    Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
}

fn probe() -> String {
    profile_dir()
        .join("examples/shim_probe")
        .display()
        .to_string()
}

#[test]
fn trace_prints_every_process_calls_in_time_order_and_a_summary() {
    let out = epollscope()
        .args(["trace", "--", &probe(), "threads", "3", "4"])
        .output()
        .unwrap();
    shim_support::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let trace: Vec<&str> = text.lines().filter(|l| l.starts_with("[pid ")).collect();
    assert_eq!(
        trace.iter().filter(|l| l.contains(" accept4(")).count(),
        16,
        "{text}"
    );
    // Time order across processes: the HH:MM:SS.micros column never goes back.
    let times: Vec<&str> = trace.iter().map(|l| &l[13..28]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{text}");
    let pids: std::collections::BTreeSet<&str> = trace.iter().map(|l| &l[..12]).collect();
    assert_eq!(pids.len(), 2, "{text}");
    assert!(text.contains("\n# accepts per pid: "), "{text}");
    assert!(text.contains(" fork() = "), "{text}");
}

#[test]
fn trace_json_and_the_program_exit_status() {
    let out = epollscope()
        .args(["trace", "--json", "--", &probe(), "nonsense"])
        .output()
        .unwrap();
    // The program's own exit status (2: usage) is passed on.
    assert_eq!(out.status.code(), Some(2));
    let dir = trace_dir("cli-json");
    let out = epollscope()
        .args(["trace", "--json", "--out"])
        .arg(&dir)
        .args(["--", &probe(), "threads", "1", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // The program's own output comes first (it ran before the trace was printed).
    let events: Vec<epollscope::Event> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.render(epollscope::Format::RAW).contains("listen("))
    );
    // --out keeps the per-process files.
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_shows_both_runs_side_by_side() {
    let out = epollscope()
        .args(["compare", "--", &probe(), "threads", "2", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{:<26}{:<20}fastsocket\n", "", "traced")),
        "{text}"
    );
    assert!(
        text.contains("accepts per process       6,3                 6,3\n"),
        "{text}"
    );
    assert!(text.contains("\nEAGAIN "), "{text}");
}

/// The interpreter binary itself (not a version-manager wrapper script, whose own
/// processes would be traced too).
fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !exe.is_empty()).then_some(exe)
}

const HTTP_SERVER: &str = r#"
import http.server, threading, urllib.request, sys
n = int(sys.argv[1])
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
t = threading.Thread(target=srv.serve_forever); t.start()
ok = 0
for _ in range(n):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % srv.server_address[1]) as r:
        ok += r.status == 200
srv.shutdown(); t.join(); srv.server_close()
print("ok", ok)
"#;

#[test]
fn python_http_server_is_traced_completely() {
    let Some(python) = python() else {
        eprintln!("skipped: no python3 on PATH");
        return;
    };
    let requests = 25;
    let dir = trace_dir("python");
    let out = under_shim(
        Command::new(&python).args(["-c", HTTP_SERVER, &requests.to_string()]),
        &[("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display()))],
    )
    .output()
    .unwrap();
    shim_support::assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ok {requests}")
    );
    let lines = trace_lines(&dir);
    let accepts = ok_calls(&lines, "accept4").len() + ok_calls(&lines, "accept").len();
    assert_eq!(accepts, requests, "one traced accept per connection");
    assert_eq!(ok_calls(&lines, "connect").len(), requests);
    assert_eq!(ok_calls(&lines, "listen").len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_on_a_pre_forking_server_shows_the_spawned_listeners() {
    let out = epollscope()
        .args(["compare", "--", &probe(), "prefork", "4", "60"])
        .output()
        .unwrap();
    shim_support::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("served 60 of 60").count(), 2, "{text}");
    // Natively one listener (the master's); under the fast path one more per worker.
    assert!(
        text.contains("listeners per process     1                   1,1,1,1,1\n"),
        "{text}"
    );
    assert!(
        text.contains("listen_spawn              0                   4\n"),
        "{text}"
    );
}

#[test]
fn bad_flags_and_negative_numbers_are_one_line_usage_errors() {
    for (args, message) in [
        (
            &["trace", "--bogus", "--", "true"][..],
            "unexpected argument '--bogus'",
        ),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&[], "a subcommand is required"),
        (
            &["run", "--repeat", "-1", "x.scn"],
            "invalid value '-1' for '--repeat",
        ),
    ] {
        let out = epollscope().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("epollscope: error: "), "{err}");
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in {err}"
        );
    }
}

//! epoll-socket-test end to end: the verdict per family and mode, the trace it prints, and a
//! clear exit 2 for every kind of bad argument. Every run is checked for leftover processes.

mod common;

use common::{run_clean, stderr, stdout, temp_socket, tool};
use epollscope::trace::{Event, Format, render_all};
use serde_json::Value;

fn probe_json(args: &[&str]) -> Value {
    let out = run_clean(tool("epoll-socket-test").args(args).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn waits(v: &Value) -> Vec<i64> {
    v["waits"]
        .as_array()
        .expect("waits")
        .iter()
        .map(|w| w.as_i64().unwrap())
        .collect()
}

fn symbolic_trace(v: &Value) -> String {
    let events: Vec<Event> = serde_json::from_value(v["trace"].clone()).expect("trace events");
    render_all(&events, Format::SYMBOLIC.with_actors(true))
}

#[test]
fn edge_triggered_listener_retriggers_on_every_family() {
    let path = temp_socket("et");
    for (family, addr) in [
        ("unix", path.to_str().unwrap()),
        ("inet", "0"),
        ("inet6", "0"),
    ] {
        let v = probe_json(&[family, addr]);
        assert_eq!(v["family"], family);
        assert_eq!(v["mode"], "et");
        // before; after connect 1 (twice); after connect 2 (twice); after accept; after close.
        assert_eq!(waits(&v), [0, 1, 0, 1, 0, 0, 0], "{family}");
        assert_eq!(v["retriggered"], true, "{family}");
        assert!(v["verdict"].as_str().unwrap().starts_with("YES"));
    }
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn level_triggered_reports_while_pending_and_oneshot_stays_silent() {
    let lt = probe_json(&["inet", "0", "--mode", "lt"]);
    assert_eq!(waits(&lt), [0, 1, 1, 1, 1, 1, 1]);
    let oneshot = probe_json(&["inet", "0", "--mode", "oneshot"]);
    assert_eq!(waits(&oneshot), [0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(oneshot["retriggered"], false);
    let et = probe_json(&["inet", "0", "--mode", "et"]);
    assert_ne!(waits(&lt), waits(&et), "LT and ET must differ");
}

#[test]
fn comparing_modes_prints_a_table() {
    let out = run_clean(tool("epoll-socket-test").args(["inet6", "0", "--mode", "lt,et,oneshot"]));
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("lt       0 1 1 1 1 1 1            yes"),
        "{text}"
    );
    assert!(
        text.contains("et       0 1 0 1 0 0 0            yes"),
        "{text}"
    );
    assert!(
        text.contains("oneshot  0 1 0 0 0 0 0            no"),
        "{text}"
    );
}

#[test]
fn every_further_connect_retriggers_too() {
    let v = probe_json(&[
        "unix",
        temp_socket("three").to_str().unwrap(),
        "--connects",
        "3",
    ]);
    assert_eq!(waits(&v), [0, 1, 0, 1, 0, 1, 0, 0, 0]);
    assert!(v["verdict"].as_str().unwrap().contains("connection 2, 3"));
}

#[test]
fn child_and_inline_connects_trace_the_same_experiment() {
    let path = temp_socket("snap");
    let child = probe_json(&["unix", path.to_str().unwrap()]);
    insta::assert_snapshot!("unix_et_child", symbolic_trace(&child));
    let inline = probe_json(&["inet", "0", "--inline-connect"]);
    insta::assert_snapshot!("inet_et_inline", symbolic_trace(&inline));
}

#[test]
fn human_output_has_trace_and_verdict() {
    let path = temp_socket("human");
    let out = run_clean(tool("epoll-socket-test").args(["unix", path.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("[child] connect(C2, {sa_family=AF_UNIX, sun_path=PATH}, 110) = 0"));
    assert!(text.contains("[main] epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1"));
    assert!(text.contains("\nverdict: YES"), "{text}");
    let raw = run_clean(tool("epoll-socket-test").args(["inet", "0", "--raw"]));
    let raw = stdout(&raw);
    let socket_line = raw
        .lines()
        .find(|l| l.contains(" socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, 0) = "))
        .expect("raw trace has the listener's socket()");
    let (_, ret) = socket_line.rsplit_once(" = ").unwrap();
    let (fd, duration) = ret.split_once(' ').unwrap();
    assert!(
        fd.parse::<i32>().is_ok(),
        "raw shows the fd number: {socket_line}"
    );
    assert!(
        duration.starts_with("<0.") && duration.ends_with('>'),
        "{socket_line}"
    );
}

#[test]
fn stale_socket_file_is_replaced_and_removed_after() {
    let path = temp_socket("stale");
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale); // closing leaves the file: a stale socket
    assert!(path.exists());
    let out = run_clean(tool("epoll-socket-test").args(["unix", path.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed stale socket file"));
    assert!(!path.exists());
}

fn assert_bad(args: &[&str], message: &str) {
    let out = run_clean(tool("epoll-socket-test").args(args));
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(message),
        "{args:?}: expected {message:?} in {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    assert_bad(
        &["ipx", "1"],
        "epoll-socket-test: error: unknown socket family 'ipx'",
    );
    assert_bad(&["inet", "70000"], "invalid port '70000'");
    assert_bad(&["inet", "http"], "invalid port 'http'");
    assert_bad(&["inet6", "127.0.0.1:80"], "invalid inet6 address");
    assert_bad(
        &["unix", &"/tmp/x".repeat(30)],
        "the kernel allows at most 107",
    );
    assert_bad(&["inet", "0", "--mode", "edgy"], "unknown mode 'edgy'");
    assert_bad(
        &["inet", "0", "--connects", "0"],
        "--connects must be at least 1",
    );
    assert_bad(&[], "<FAMILY>");
}

#[test]
fn bad_flags_and_negative_numbers_are_one_line_usage_errors() {
    for (args, message) in [
        (&["inet", "--bogus"][..], "unexpected argument '--bogus'"),
        (
            &["inet", "--connects", "-1"],
            "invalid value '-1' for '--connects",
        ),
        (&["inet", "--mode", "-1"], "invalid value '-1' for '--mode"),
        (&[], "required arguments were not provided: <FAMILY>"),
    ] {
        let out = run_clean(tool("epoll-socket-test").args(args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("epoll-socket-test: error: "), "{err}");
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in {err}"
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn unusable_addresses_exit_2_and_are_left_alone() {
    let file = temp_socket("regular");
    std::fs::write(&file, "not a socket").unwrap();
    assert_bad(
        &["unix", file.to_str().unwrap()],
        "exists and is not a socket",
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
    std::fs::remove_file(&file).unwrap();

    let live_path = temp_socket("live");
    let live = std::os::unix::net::UnixListener::bind(&live_path).unwrap();
    assert_bad(&["unix", live_path.to_str().unwrap()], "is in use");
    assert!(live_path.exists());
    drop(live);
    std::fs::remove_file(&live_path).unwrap();

    assert_bad(
        &["unix", "/nonexistent/dir/x.sock"],
        "epoll-socket-test: error: bind /nonexistent/dir/x.sock: ENOENT (No such file or directory)",
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_bad(&["inet", &port], "is already in use");
}

/// Whether a socket file is stale is decided by the file (is anything bound to it), never by
/// the spelling of its path: a symlinked or `..` spelling of a live server's socket used to be
/// taken for stale and removed, leaving the server unreachable.
#[test]
fn a_live_socket_spelled_another_way_is_left_alone() {
    let dir = std::env::temp_dir().join(format!("es-spellings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("link")).unwrap();
    let live_path = dir.join("live.sock");
    let live = std::os::unix::net::UnixListener::bind(&live_path).unwrap();
    for spelling in [dir.join("link/live.sock"), dir.join("sub/../live.sock")] {
        assert_bad(&["unix", spelling.to_str().unwrap()], "is in use");
        std::os::unix::net::UnixStream::connect(&live_path).unwrap_or_else(|e| {
            panic!(
                "{}: the live server became unreachable: {e}",
                spelling.display()
            )
        });
    }
    // (Removal of a really stale file under another spelling is not run here: a listener
    // closed by this test process may live on for a moment in a child another test thread is
    // spawning, and the tool would rightly call it in use.)
    drop(live);
    std::fs::remove_dir_all(&dir).unwrap();
}

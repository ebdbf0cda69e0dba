//! End-to-end tests of `epoll-listen-fork`: each run drives its own clients (--self-connect),
//! and every run is checked to leave no process and no socket file behind.
//!
//! Counts that depend on scheduling (how many waiters a connection wakes, how many forks a
//! level-triggered event costs) are asserted as ranges and as consistency between counters;
//! only what the kernel guarantees, with the tool's one-client-at-a-time pacing, is exact.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use common::{processes_in_group, run_clean, stderr, stdout, temp_socket, tool};
use serde_json::Value;

const TOOL: &str = "epoll-listen-fork";

fn run_json(args: &[&str]) -> Value {
    let out = run_clean(tool(TOOL).args(args).arg("--json"));
    assert!(
        out.status.success(),
        "{args:?} exited {:?}: {}",
        out.status,
        stderr(&out)
    );
    let text = stdout(&out);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {text}"))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// The counters must add up, overall and per waiter, whatever the scheduling was.
fn assert_consistent(v: &Value) {
    assert_eq!(n(v, "events"), n(v, "forks") + n(v, "fork_failures"), "{v}");
    assert_eq!(
        n(v, "forks"),
        n(v, "accepted") + n(v, "wasted") + n(v, "accept_errors") + n(v, "killed"),
        "{v}"
    );
    let per = v["per_waiter"].as_array().expect("per_waiter array");
    assert_eq!(per.len() as u64, n(v, "waiters"), "{v}");
    for key in ["events", "forks", "accepted", "wasted"] {
        let sum: u64 = per.iter().map(|w| n(w, key)).sum();
        assert_eq!(sum, n(v, key), "per-waiter {key} do not add up: {v}");
    }
}

/// The usual ending of a --self-connect 3 run: all three accepted, nothing left queued.
fn assert_three_accepted(v: &Value) {
    assert_consistent(v);
    assert_eq!(n(v, "connected"), 3, "{v}");
    assert_eq!(n(v, "accepted"), 3, "{v}");
    assert_eq!(n(v, "unaccepted"), 0, "{v}");
    assert_eq!(n(v, "fork_failures"), 0, "{v}");
    assert_eq!(n(v, "accept_errors"), 0, "{v}");
    assert!(n(v, "events") >= 3, "{v}");
}

const THREE: [&str; 6] = ["--self-connect", "3", "--connections", "3", "--sleep", "0"];

#[test]
fn three_self_connected_clients_are_accepted_on_every_family() {
    let path = temp_socket("elf-families");
    let path_arg = path.to_str().unwrap();
    for (family, addr) in [("unix", path_arg), ("inet", "0"), ("inet6", "0")] {
        let mut args = vec![family, addr];
        args.extend(THREE);
        let v = run_json(&args);
        assert_eq!(v["family"], family, "{v}");
        assert_eq!(v["mode"], "lt");
        assert_eq!(v["exclusive"], false);
        assert_eq!(v["reuseport"], false);
        assert_eq!(n(&v, "waiters"), 1);
        assert_three_accepted(&v);
    }
    assert!(
        !path.exists(),
        "socket file left behind: {}",
        path.display()
    );
}

#[test]
fn level_and_edge_triggered_both_complete() {
    let mut lt = vec!["inet", "0", "--mode", "lt"];
    lt.extend(THREE);
    let v = run_json(&lt);
    assert_three_accepted(&v);
    assert_eq!(v["mode"], "lt");

    // Edge-triggered, one idle waiter, one client at a time: exactly one event per
    // connection, so no fork is wasted.
    let path = temp_socket("elf-et");
    let mut et = vec!["unix", path.to_str().unwrap(), "--mode", "et"];
    et.extend(THREE);
    let v = run_json(&et);
    assert_three_accepted(&v);
    assert_eq!(v["mode"], "et");
    assert_eq!((n(&v, "events"), n(&v, "wasted")), (3, 0), "{v}");
    assert!(!path.exists());
}

#[test]
fn exclusive_wakes_one_waiter_per_connection() {
    for mode in ["lt", "et"] {
        let mut args = vec!["inet", "0", "--exclusive", "--waiters", "4", "--mode", mode];
        args.extend(THREE);
        let v = run_json(&args);
        assert_three_accepted(&v);
        assert_eq!(v["exclusive"], true);
        assert_eq!(n(&v, "events"), n(&v, "forks"), "{v}");
        // The clients connect while all waiters are idle: EPOLLEXCLUSIVE then always wakes
        // the first-registered waiter, and only it.
        let per = v["per_waiter"].as_array().unwrap();
        assert_eq!(n(&per[0], "events"), n(&v, "events"), "w1 not alone: {v}");
        if mode == "et" {
            assert_eq!((n(&v, "events"), n(&v, "wasted")), (3, 0), "{v}");
        }
    }
}

#[test]
fn shared_listener_without_exclusive_is_a_herd() {
    // Edge-triggered: each connection wakes between 1 and 4 waiters, all but one in vain.
    let mut args = vec!["inet", "0", "--waiters", "4", "--mode", "et"];
    args.extend(THREE);
    let v = run_json(&args);
    assert_three_accepted(&v);
    let events = n(&v, "events");
    assert!((3..=12).contains(&events), "{v}");
    assert_eq!(n(&v, "wasted") + n(&v, "killed"), n(&v, "forks") - 3, "{v}");

    // Level-triggered: at least one event per connection, no upper bound worth asserting.
    let mut args = vec!["unix", "--waiters", "4"];
    let path = temp_socket("elf-herd");
    args.insert(1, path.to_str().unwrap());
    args.extend(THREE);
    let v = run_json(&args);
    assert_three_accepted(&v);
    assert!(!path.exists());
}

#[test]
fn reuseport_gives_each_waiter_its_own_listener() {
    let mut args = vec!["inet", "0", "--reuseport", "--waiters", "2"];
    args.extend(THREE);
    let v = run_json(&args);
    assert_three_accepted(&v);
    assert_eq!(v["reuseport"], true);
    assert_eq!(n(&v, "waiters"), 2);
}

#[test]
fn duration_stops_the_server_by_itself() {
    let path = temp_socket("elf-duration");
    let started = Instant::now();
    let out = run_clean(tool(TOOL).args(["unix", path.to_str().unwrap(), "--duration", "0.3"]));
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("listening on "), "{text}");
    assert!(text.contains("stopping: --duration 0.3s elapsed"), "{text}");
    assert!(
        text.contains("summary: 0 events, 0 forks, 0 accepted, 0 wasted, 0 left unaccepted"),
        "{text}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(!path.exists());
}

#[test]
fn sigterm_mid_run_reports_and_leaves_nothing() {
    let path = temp_socket("elf-sigterm");
    // Two clients (connected at once) accepted by children that then sleep for 30 s holding
    // them: SIGTERM must still end everything promptly.
    let mut child = tool(TOOL)
        .args(["unix", path.to_str().unwrap(), "--duration", "30"])
        .args([
            "--burst",
            "--self-connect",
            "2",
            "--connections",
            "100",
            "--sleep",
            "30000",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let pgid = child.id() as i32;
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Ready once both clients are accepted (their children are now asleep).
    while seen.matches(": accepted").count() < 2 {
        let mut line = String::new();
        let read = lines.read_line(&mut line).expect("read stdout");
        assert!(read > 0, "tool ended early: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.starts_with("listening on "), "{seen}");
    assert!(path.exists(), "no socket file while running");
    let started = Instant::now();
    // The master only (its pid is the group id): it must stop everything else itself.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(rest.contains("stopping: got SIGTERM"), "{rest}");
    assert!(rest.contains("summary: "), "{rest}");
    assert!(rest.contains(" 2 accepted, "), "{rest}");
    assert_eq!(processes_in_group(pgid), Vec::<i32>::new());
    assert!(!path.exists(), "socket file left behind");
}

/// Starts the tool on a unix path and returns it once it is listening (its first line read).
fn start_listening(
    path: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = tool(TOOL)
        .args(["unix", path.to_str().unwrap()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).expect("read stdout");
    assert!(line.starts_with("listening on "), "{line}");
    (child, lines)
}

/// On exit the tool removes its socket file only if the path is still the file it created:
/// it used to remove whatever was there, a regular file or another server's socket.
#[test]
fn on_exit_only_its_own_socket_file_is_removed() {
    for replacement in ["regular file", "another server's socket"] {
        let path = temp_socket("elf-replaced");
        let (mut child, mut lines) = start_listening(&path, &["--duration", "30"]);
        std::fs::remove_file(&path).unwrap();
        let other = if replacement == "regular file" {
            std::fs::write(&path, b"not yours").unwrap();
            None
        } else {
            Some(std::os::unix::net::UnixListener::bind(&path).unwrap())
        };
        let pgid = child.id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut rest = String::new();
        lines.read_to_string(&mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "{rest}");
        assert!(path.exists(), "{replacement} was removed");
        if other.is_some() {
            std::os::unix::net::UnixStream::connect(&path).expect("the other server is reachable");
        } else {
            assert_eq!(std::fs::read(&path).unwrap(), b"not yours");
        }
        drop(other);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(processes_in_group(pgid), Vec::<i32>::new());
    }
}

/// Every process the tool starts dies with it, also when the tool is SIGKILLed and can clean
/// up nothing itself: waiters get SIGTERM from the kernel (parent-death signal) and take
/// their children down; children of a killed waiter get SIGKILL.
#[test]
fn every_process_dies_with_the_tool_even_on_sigkill() {
    let path = temp_socket("elf-sigkill");
    let (child, mut lines) = start_listening(
        &path,
        &[
            "--waiters",
            "2",
            "--burst",
            "--self-connect",
            "2",
            "--connections",
            "100",
            "--sleep",
            "30000",
            "--duration",
            "30",
        ],
    );
    let pgid = child.id() as i32;
    let mut seen = String::new();
    while seen.matches(": accepted").count() < 2 {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "tool ended early: {seen}"
        );
        seen.push_str(&line);
    }
    assert!(
        processes_in_group(pgid).len() >= 4,
        "master, 2 waiters, 2 children"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut child = child;
    let _ = child.wait();
    // The kernel delivers the parent-death signals; wait for their effect (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_in_group(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            processes_in_group(pgid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&path);
}

/// --burst without --duration used to wait forever when edge-triggered waiters missed
/// connections (back-to-back connects merge into one event): the run now ends once the server
/// is quiet, every connection accounted for as accepted or left unaccepted.
#[test]
fn a_burst_without_duration_ends_when_no_accept_can_come() {
    let path = temp_socket("elf-burst-et");
    let mut child = tool(TOOL)
        .args(["unix", path.to_str().unwrap(), "--mode", "et", "--burst"])
        .args(["--self-connect", "20", "--sleep", "0", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let pgid = child.id() as i32;
    // A watchdog, not a settling delay: the run must end by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("--burst without --duration is still waiting after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let accepted = v["accepted"].as_u64().unwrap();
    let left = v["unaccepted"].as_u64().unwrap();
    assert_eq!(accepted + left, 20, "{v}");
    assert!(accepted >= 1, "{v}");
    assert_eq!(processes_in_group(pgid), Vec::<i32>::new());
    assert!(!path.exists());
}

fn assert_refused(args: &[&str], expect: &str) {
    let out = run_clean(tool(TOOL).args(args));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("epoll-listen-fork: error: "), "{err}");
    assert!(
        err.contains(expect),
        "{args:?}: expected {expect:?} in {err}"
    );
    assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
}

#[test]
fn bad_arguments_and_failed_setup_exit_2() {
    assert_refused(&["ipx"], "unknown socket family 'ipx'");
    assert_refused(&["inet", "70000"], "invalid port '70000'");
    assert_refused(
        &["inet", "0", "--waiters", "0"],
        "--waiters must be at least 1",
    );
    assert_refused(&["inet", "0", "--mode", "both"], "unknown mode 'both'");
    // A cap like --max-children's: a typo must not start a million processes.
    assert_refused(
        &["inet", "0", "--waiters", "100000"],
        "--waiters must be at most 1024",
    );
    assert_refused(
        &["inet", "0", "--max-children", "1000000"],
        "--max-children must be at most 65536",
    );
    // clap's own errors follow the same one-line convention.
    assert_refused(&["inet", "0", "--bogus"], "unexpected argument '--bogus'");
    assert_refused(
        &["inet", "0", "--waiters", "-1"],
        "invalid value '-1' for '--waiters",
    );
    assert_refused(&["inet", "0", "--duration", "-1"], "invalid value '-1'");
    assert_refused(
        &["inet", "0", "--duration", "soon"],
        "invalid duration 'soon'",
    );

    let sock = temp_socket("elf-reuseport-unix");
    assert_refused(
        &["unix", sock.to_str().unwrap(), "--reuseport"],
        "--reuseport needs inet or inet6",
    );
    assert!(!sock.exists());

    let file = temp_socket("elf-regular-file");
    std::fs::write(&file, b"not a socket").unwrap();
    assert_refused(&["unix", file.to_str().unwrap()], "is not a socket");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
    std::fs::remove_file(&file).unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_refused(&["inet", &port], "already in use");
}

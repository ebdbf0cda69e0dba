//! `socket-connect` against listeners the tests create themselves: successes on every family,
//! failures grouped by errno, the JSON report, bad input (exit 2, one line), and the hold.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use epollscope::net::{ListenOptions, listen_on};
use epollscope::{SockAddr, Tracer};
use serde_json::Value;

fn socket_connect(args: &[&str]) -> Command {
    let mut cmd = common::tool("socket-connect");
    cmd.args(args);
    cmd
}

fn json(output: &Output) -> Value {
    serde_json::from_str(common::stdout(output).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {output:?}"))
}

/// Runs a bad invocation and returns its one-line error.
fn bad_input(args: &[&str]) -> String {
    let output = common::run_clean(&mut socket_connect(args));
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert!(common::stdout(&output).is_empty(), "{args:?}");
    err
}

/// Accepts every connection already queued on `listener` (the tool has exited, so they all are)
/// and checks that the tool's end is closed: each read sees EOF.
fn assert_all_closed<S: Read>(accepted: Vec<S>, expected: usize) {
    assert_eq!(
        accepted.len(),
        expected,
        "connections queued on the listener"
    );
    for mut stream in accepted {
        let mut buf = [0u8; 1];
        assert_eq!(
            stream.read(&mut buf).expect("read accepted"),
            0,
            "peer still open"
        );
    }
}

fn drain_tcp(listener: &TcpListener) -> Vec<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = Vec::new();
    while let Ok((stream, _)) = listener.accept() {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        accepted.push(stream);
    }
    accepted
}

fn tcp_listener(host: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind((host, 0)).expect("bind loopback");
    let port = listener.local_addr().unwrap().port().to_string();
    (listener, port)
}

/// A port nobody listens on: bound once to get it, then released.
fn closed_port() -> String {
    tcp_listener("127.0.0.1").1
}

#[test]
fn inet_connections_all_succeed_and_are_closed_at_exit() {
    let (listener, port) = tcp_listener("127.0.0.1");
    let output = common::run_clean(&mut socket_connect(&["inet", &port, "--count", "100"]));
    let out = common::stdout(&output);
    assert!(output.status.success(), "{output:?}");
    assert!(
        out.starts_with(&format!(
            "socket-connect: 100 of 100 connected to 127.0.0.1:{port} in "
        )),
        "{out}"
    );
    assert!(out.contains("(concurrency 512, seed 1)\n"), "{out}");
    assert!(out.contains("\nlatency: min "), "{out}");
    assert!(out.contains("\nfailures: none\n"), "{out}");
    assert!(
        out.contains("holding 100 connections: press a key (or close stdin) to exit"),
        "{out}"
    );
    // No progress bar and no noise when stderr is not a terminal.
    assert_eq!(common::stderr(&output), "");
    assert_all_closed(drain_tcp(&listener), 100);
}

#[test]
fn inet6_connections_succeed() {
    let (listener, port) = tcp_listener("::1");
    let output = common::run_clean(&mut socket_connect(&[
        "inet6", &port, "--count", "50", "--json",
    ]));
    let report = json(&output);
    assert_eq!(report["connected"], 50, "{report}");
    assert_eq!(report["target"], format!("[::1]:{port}"));
    assert_eq!(report["family"], "inet6");
    assert_all_closed(drain_tcp(&listener), 50);
}

#[test]
fn host_option_picks_the_address() {
    let (listener, port) = tcp_listener("::1");
    let output = common::run_clean(&mut socket_connect(&[
        "inet6", &port, "--host", "::1", "--count", "3", "--json",
    ]));
    assert_eq!(json(&output)["connected"], 3);
    assert_all_closed(drain_tcp(&listener), 3);
}

#[test]
fn unix_connections_succeed() {
    let path = common::temp_socket("sc-unix");
    let listener = UnixListener::bind(&path).unwrap();
    let output = common::run_clean(&mut socket_connect(&[
        "unix",
        path.to_str().unwrap(),
        "--count",
        "100",
    ]));
    let out = common::stdout(&output);
    assert!(output.status.success(), "{output:?}");
    assert!(
        out.starts_with(&format!(
            "socket-connect: 100 of 100 connected to {} in ",
            path.display()
        )),
        "{out}"
    );
    listener.set_nonblocking(true).unwrap();
    let accepted: Vec<_> = std::iter::from_fn(|| listener.accept().ok().map(|(s, _)| s))
        .inspect(|s| s.set_nonblocking(false).unwrap())
        .collect();
    assert_all_closed(accepted, 100);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn json_report_has_counts_errors_latency_seed_and_limit() {
    let (listener, port) = tcp_listener("127.0.0.1");
    let output = common::run_clean(&mut socket_connect(&[
        "inet", &port, "-n", "20", "--json", "--seed", "7", "--jitter", "3",
    ]));
    assert!(output.status.success(), "{output:?}");
    let r = json(&output);
    assert_eq!(r["attempted"], 20);
    assert_eq!(r["connected"], 20);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["errors"], serde_json::json!({}));
    assert_eq!(r["seed"], 7);
    assert_eq!(r["jitter_ms"], 3);
    let min = r["latency_min_us"].as_u64().expect("min latency");
    let median = r["latency_median_us"].as_u64().expect("median latency");
    let p99 = r["latency_p99_us"].as_u64().expect("p99 latency");
    assert!(min <= median && median <= p99, "{r}");
    assert!(r["nofile_limit"].as_u64().unwrap() >= 20, "{r}");
    // With --json, stdout is the object alone; the hold prompt goes to stderr.
    assert!(common::stderr(&output).starts_with("holding 20 connections"));
    drop(listener);
}

/// Backlog 1 on AF_UNIX admits two pending connections; a non-blocking connect beyond that
/// fails at once with EAGAIN, and each such failure is counted.
#[test]
fn unix_backlog_overflow_fails_with_eagain_grouped() {
    let path = common::temp_socket("sc-backlog");
    let mut tracer = Tracer::new("test");
    let options = ListenOptions {
        backlog: 1,
        ..ListenOptions::default()
    };
    let listening = listen_on(&mut tracer, "L", &SockAddr::unix(&path), options).unwrap();
    let p = path.to_str().unwrap();

    let output = common::run_clean(&mut socket_connect(&["unix", p, "--count", "5"]));
    let out = common::stdout(&output);
    assert!(output.status.success(), "{output:?}");
    assert!(out.starts_with("socket-connect: 2 of 5 connected"), "{out}");
    assert!(
        out.contains("\nfailures: 3 EAGAIN (Resource temporarily unavailable)\n"),
        "{out}"
    );

    // The first run's connections were closed but never accepted: they still fill the
    // backlog, so now every connect fails. That is a finding, not an unreachable target.
    let output = common::run_clean(&mut socket_connect(&["unix", p, "-n", "5", "--json"]));
    assert!(output.status.success(), "{output:?}");
    let r = json(&output);
    assert_eq!(
        (&r["connected"], &r["failed"], &r["errors"]),
        (
            &Value::from(0),
            &Value::from(5),
            &serde_json::json!({"EAGAIN": 5})
        ),
        "{r}"
    );
    epollscope::sys::close(listening.fd).unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// A TCP listener whose accept queue is full drops further SYNs: those connects stay in
/// SYN-SENT until --timeout turns them into ETIMEDOUT.
#[test]
fn connects_stuck_in_syn_sent_time_out() {
    let mut tracer = Tracer::new("test");
    let any = SockAddr::ip("127.0.0.1:0".parse().unwrap());
    let options = ListenOptions {
        backlog: 1,
        ..ListenOptions::default()
    };
    let listening = listen_on(&mut tracer, "L", &any, options).unwrap();
    let port = listening.addr.port().unwrap().to_string();
    let output = common::run_clean(&mut socket_connect(&[
        "inet",
        &port,
        "-n",
        "5",
        "--timeout",
        "300",
        "--json",
    ]));
    let r = json(&output);
    assert!(output.status.success(), "{output:?}");
    let connected = r["connected"].as_u64().unwrap();
    assert!((1..5).contains(&connected), "{r}");
    assert_eq!(r["errors"], serde_json::json!({"ETIMEDOUT": 5 - connected}));
    epollscope::sys::close(listening.fd).unwrap();
}

#[test]
fn too_few_descriptors_is_said_and_extra_connects_fail_with_emfile() {
    let (listener, port) = tcp_listener("127.0.0.1");
    let tool = assert_cmd::cargo::cargo_bin("socket-connect");
    let mut cmd = Command::new("sh");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0).args([
        "-c",
        "ulimit -n 40 && exec \"$0\" inet \"$1\" -n 60 --json",
        tool.to_str().unwrap(),
        &port,
    ]);
    let output = common::run_clean(&mut cmd);
    let err = common::stderr(&output);
    assert!(
        err.starts_with("socket-connect: open-file limit is 40 (hard 40): only about "),
        "{err}"
    );
    let r = json(&output);
    let connected = r["connected"].as_u64().unwrap();
    assert!(connected > 0 && connected < 40, "{r}");
    assert_eq!(r["errors"]["EMFILE"].as_u64(), Some(60 - connected), "{r}");
    assert_eq!(r["nofile_limit"], 40);
    drop(listener);
}

#[test]
fn bad_family_and_ports_are_usage_errors() {
    assert!(bad_input(&["ipx", "80"]).contains("unknown socket family 'ipx'"));
    for port in ["70000", "abc"] {
        assert_eq!(
            bad_input(&["inet", port]),
            format!(
                "socket-connect: error: invalid port '{port}': expected a number from 0 to 65535 \
                 (0 picks a free port)\n"
            )
        );
    }
    assert!(bad_input(&["inet", "80", "--count", "0"]).contains("'0' is not a whole number"));
    assert_eq!(
        bad_input(&["unix", "/tmp/x", "--host", "::1"]),
        "socket-connect: error: --host applies to inet and inet6 only (a unix socket is named \
         by its path)\n"
    );
    assert_eq!(
        bad_input(&["inet", "80", "--host", "::1"]),
        "socket-connect: error: --host ::1 is not an inet address\n"
    );
}

#[test]
fn bad_flags_and_negative_numbers_are_one_line_usage_errors() {
    for (args, message) in [
        (
            &["inet", "80", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["inet", "80", "-n", "-5"],
            "invalid value '-5' for '--count",
        ),
        (
            &["inet", "80", "--jitter", "-1"],
            "invalid value '-1' for '--jitter",
        ),
        (
            &["inet", "80", "-n", "20000000"],
            "'20000000' is more than 10000000",
        ),
    ] {
        let err = bad_input(args);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("socket-connect: error: "), "{err}");
        assert!(
            err.contains(message),
            "{args:?}: expected {message:?} in {err}"
        );
    }
}

#[test]
fn path_that_is_not_a_socket_is_refused() {
    let path = common::temp_socket("sc-plain");
    std::fs::write(&path, b"not a socket").unwrap();
    assert_eq!(
        bad_input(&["unix", path.to_str().unwrap()]),
        format!(
            "socket-connect: error: {} exists and is not a socket (nothing can listen there)\n",
            path.display()
        )
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unreachable_targets_are_errors() {
    let port = closed_port();
    assert_eq!(
        bad_input(&["inet", &port, "--count", "5"]),
        format!(
            "socket-connect: error: cannot reach 127.0.0.1:{port}: Connection refused \
             (all 5 attempts failed)\n"
        )
    );
    let path = common::temp_socket("sc-missing");
    assert_eq!(
        bad_input(&["unix", path.to_str().unwrap()]),
        format!(
            "socket-connect: error: cannot reach {}: No such file or directory \
             (the only attempt failed)\n",
            path.display()
        )
    );
}

/// Spawns the tool with stdin left open (a pipe we hold), so only --hold, a character or a
/// signal can end it; a watchdog kills it if it hangs, so a failure cannot stall the suite.
fn spawn_held(args: &[&str]) -> (Child, std::process::ChildStdin, mpsc::Sender<()>) {
    let mut child = socket_connect(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let (done, finished) = mpsc::channel::<()>();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    (child, stdin, done)
}

fn finish(child: Child, done: mpsc::Sender<()>) -> Output {
    let pgid = child.id() as i32;
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(common::processes_in_group(pgid).is_empty());
    assert!(output.status.success(), "{output:?}");
    output
}

#[test]
fn hold_zero_exits_without_waiting_for_stdin() {
    let (listener, port) = tcp_listener("127.0.0.1");
    let (child, stdin, done) = spawn_held(&["inet", &port, "-n", "3", "--hold", "0"]);
    let output = finish(child, done);
    drop(stdin);
    let out = common::stdout(&output);
    assert!(out.contains("3 of 3 connected"), "{out}");
    assert!(!out.contains("holding"), "{out}");
    assert_all_closed(drain_tcp(&listener), 3);
}

#[test]
fn hold_ms_keeps_connections_that_long() {
    let (_listener, port) = tcp_listener("127.0.0.1");
    let began = Instant::now();
    let (child, _stdin, done) = spawn_held(&["inet", &port, "-n", "2", "--hold", "300"]);
    let output = finish(child, done);
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(common::stdout(&output).contains("holding 2 connections for 300 ms"));
}

#[test]
fn a_character_on_stdin_ends_the_hold() {
    let (_listener, port) = tcp_listener("127.0.0.1");
    let (mut child, mut stdin, done) = spawn_held(&["inet", &port, "-n", "2"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("holding") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no holding line");
    }
    stdin.write_all(b"x").unwrap();
    finish(child, done);
}

#[test]
fn sigterm_ends_the_hold_cleanly() {
    let (listener, port) = tcp_listener("127.0.0.1");
    let (mut child, _stdin, done) = spawn_held(&["inet", &port, "-n", "4"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("holding 4 connections") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no holding line");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = finish(child, done);
    assert_eq!(
        common::stderr(&output),
        "socket-connect: SIGTERM: closing 4 connections\n"
    );
    let accepted = drain_tcp(&listener);
    assert_all_closed(accepted, 4);
}

#[test]
fn stdin_eof_ends_the_hold() {
    let (listener, port) = tcp_listener("127.0.0.1");
    // run_clean gives the tool a closed stdin: EOF at once.
    let output = common::run_clean(&mut socket_connect(&["inet", &port, "-n", "2"]));
    assert!(output.status.success());
    for stream in drain_tcp(&listener) {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

#[test]
fn rate_paces_the_starts() {
    let (_listener, port) = tcp_listener("127.0.0.1");
    let output = common::run_clean(&mut socket_connect(&[
        "inet", &port, "-n", "21", "--rate", "200", "--json",
    ]));
    let r = json(&output);
    assert_eq!(r["connected"], 21);
    // 21 starts at 200/s: the last is due 100 ms after the first.
    assert!(r["elapsed_us"].as_u64().unwrap() >= 100_000, "{r}");
    assert!(bad_input(&["inet", &port, "--rate", "0"]).contains("not a positive number"));
}

/// On a terminal one key ends the hold, without Enter (a line-buffered terminal would keep a
/// lone "x" from the tool forever), and the terminal's settings are restored afterwards.
#[test]
fn one_key_on_a_terminal_ends_the_hold_and_the_terminal_is_restored() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    let (_listener, port) = tcp_listener("127.0.0.1");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave_for_child = pty.slave.try_clone().unwrap();
    let mut child = socket_connect(&["inet", &port, "-n", "2"])
        .stdin(Stdio::from(slave_for_child))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("holding") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no holding line");
    }
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"x").unwrap();
    finish(child, done);
    assert!(
        line.contains("holding 2 connections: press a key"),
        "{line}"
    );
    let settings = tcgetattr(&pty.slave).unwrap();
    assert!(
        settings
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "line editing and echo are back"
    );
}

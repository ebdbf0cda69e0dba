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
fn a_traced_program_killed_by_a_signal_is_said_to_be() {
    // The program's own exit record cannot exist when it is killed; epollscope reaps it and
    // says how it ended, and exits as a shell would (128 + 9).
    let out = epollscope()
        .args(["trace", "--", "/bin/sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137));
    let text = String::from_utf8_lossy(&out.stdout);
    let ended = text
        .lines()
        .find(|l| l.starts_with("# ended:"))
        .unwrap_or_else(|| panic!("no ended line: {text}"));
    assert!(
        ended.ends_with("killed by SIGKILL (reaped by epollscope)"),
        "{ended}"
    );
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

/// `trace --json` keeps stdout for the JSON: the program's own stdout goes to stderr, or stays
/// on stdout when the trace goes to `--output FILE`. (Both used to share stdout.)
#[test]
fn trace_json_never_mixes_the_program_output_into_the_json() {
    let out = epollscope()
        .args(["trace", "--json", "--", &probe(), "errno"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() > 0);
    for line in text.lines() {
        serde_json::from_str::<epollscope::Event>(line)
            .unwrap_or_else(|e| panic!("not a JSON event: {line:?}: {e}"));
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("close(-1) "));

    let dir = trace_dir("cli-output");
    let file = dir.join("trace.jsonl");
    let out = epollscope()
        .args(["trace", "--json", "--output"])
        .arg(&file)
        .args(["--", &probe(), "errno"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("close(-1) "));
    let json = std::fs::read_to_string(&file).unwrap();
    assert!(json.lines().count() > 0);
    for line in json.lines() {
        serde_json::from_str::<epollscope::Event>(line).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pids of the live children of `parent`, with their command names.
fn children_of(parent: u32) -> Vec<(i32, String)> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] != "Z" && fields[1] == parent.to_string() {
            let comm = head.split_once('(').map_or("", |(_, c)| c).to_string();
            found.push((pid, comm));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Waits (bounded) for a condition on /proc; no fixed delay.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts `trace -- shim_probe serve-fork 0` (a listener that serves until stdin closes) and
/// returns it with the program's pid once the program is up.
fn traced_server() -> (std::process::Child, i32) {
    let child = epollscope()
        .args(["trace", "--", &probe(), "serve-fork", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let mut program = 0;
    wait_for("the traced program", || {
        program = children_of(id)
            .into_iter()
            .find(|(_, comm)| comm == "shim_probe")
            .map_or(0, |(pid, _)| pid);
        program != 0
    });
    (child, program)
}

/// SIGTERM to `epollscope trace` reaches the program, and the trace of what it did is still
/// merged and printed (it used to kill epollscope alone: no trace, the program left running).
#[test]
fn trace_forwards_sigterm_waits_and_still_prints_the_trace() {
    let (mut child, program) = traced_server();
    // Held open until the end: end of file on stdin would end the program by itself.
    let stdin = child.stdin.take();
    // Its listener is up once a socket is in its fd table.
    wait_for("the listener", || {
        std::fs::read_dir(format!("/proc/{program}/fd")).is_ok_and(|d| {
            d.flatten().any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(128 + 15), "{text}");
    // The merged trace and summary are printed (what it holds depends on what the shim wrote
    // before the program died of the signal).
    assert!(text.contains(" processes\n# calls: "), "{text}");
    assert!(text.contains("# interrupted by SIGTERM"), "{text}");
    assert!(!alive(program), "the program outlived the trace");
}

/// The traced program dies with epollscope even when epollscope is SIGKILLed.
#[test]
fn the_traced_program_dies_with_a_sigkilled_epollscope() {
    let (mut child, program) = traced_server();
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("the program to die", || !alive(program));
    // A SIGKILLed epollscope cannot remove its trace directory: the test does.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("epollscope-trace-{}", child.id())),
    );
}

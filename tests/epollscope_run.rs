//! `epollscope run` end to end: verdicts and exit codes, the mismatch report, machine-readable
//! outputs, and clean-up after a step that hangs.

mod common;
mod shim_support;

use std::path::PathBuf;

use common::{run_clean, run_clean_with_pid, stderr, stdout, tool};

/// Writes a scenario into a fresh directory and returns its path.
fn scenario_file(tag: &str, source: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("es-run-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.scn"));
    std::fs::write(&path, source).unwrap();
    path
}

const PASSING: &str = "# A listener with a pending connection is readable.
family: unix inet
socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
epoll_create1(0) = E
epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data={u64=L}}) = 0
socket(FAMILY, SOCK_STREAM, 0) = C
connect(C, ADDR) = 0
epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1
";

#[test]
fn passing_scenarios_exit_0_with_a_summary_line() {
    let path = scenario_file("pass", PASSING);
    let out = run_clean(tool("epollscope").arg("run").arg(&path).arg("--trace"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PASS ") && text.contains(" [unix] ") && text.contains(" [inet] "));
    assert!(text.contains("    [main] epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1"));
    assert_eq!(text.lines().last(), Some("2 passed, 0 failed"));
}

#[test]
fn a_mismatch_exits_1_and_shows_line_expected_and_actual() {
    let source = PASSING.replace("16, 0) = 1", "16, 0) = 2");
    let path = scenario_file("mismatch", &source);
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--family", "inet"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let file = path.display();
    let expected = format!(
        "  {file}:10:1: expected 2, got 1\n    script: epoll_wait(E, [{{events=EPOLLIN, data={{u64=L}}}}], 16, 0) = 2\n    \
         actual: [main] epoll_wait(E, [{{events=EPOLLIN, data={{u64=L}}}}], 16, 0) = 1"
    );
    assert!(text.contains(&expected), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn wrong_events_are_reported_as_such() {
    let source = PASSING.replace(
        "[{events=EPOLLIN, data={u64=L}}], 16, 0) = 1",
        "[{events=EPOLLOUT, data=L}], 16, 0) = 1",
    );
    let path = scenario_file("events", &source);
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--family", "unix"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("epoll events differ: expected [{EPOLLOUT, 3}], got [{EPOLLIN, 3}]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_hung_step_is_reported_and_everything_is_cleaned_up() {
    let source = "# accept() on a listener nobody connects to never returns.
step-timeout: 300ms
socket(FAMILY, SOCK_STREAM, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
fork() = w1
[w1] accept(L) = A
";
    let path = scenario_file("hang", source);
    let (out, pid) = run_clean_with_pid(
        tool("epollscope")
            .args(["run", "--family", "inet"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(":7:1: step hung: process w1 (pid "), "{text}");
    assert!(
        text.contains("did not return within 300ms (state: S)"),
        "{text}"
    );
    // run_clean checked that no actor survived; the runner's socket directories
    // (epollscope-<runner pid>-<n>) are gone too.
    let prefix = format!("epollscope-{pid}-");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn json_and_junit_describe_every_instance() {
    let path = scenario_file("json", PASSING);
    let junit = path.with_extension("xml");
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--json", "--junit"])
            .arg(&junit)
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["totals"]["passed"], 2);
    assert_eq!(doc["totals"]["failed"], 0);
    let first = &doc["scenarios"][0];
    assert_eq!(first["family"], "unix");
    assert_eq!(first["passed"], true);
    assert!(first["trace"].as_array().unwrap().len() >= 8);
    assert!(
        first["symbolic_trace"]
            .as_str()
            .unwrap()
            .contains("listen(L, 8) = 0")
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"epollscope\" tests=\"2\" failures=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("name=\"json [inet]\""), "{xml}");
}

#[test]
fn list_and_filter() {
    let path = scenario_file("listed", PASSING);
    let dir = path.parent().unwrap();
    let out = run_clean(tool("epollscope").args(["run", "--list"]).arg(dir));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("unix,inet"));
    assert!(stdout(&out).contains("A listener with a pending connection is readable."));
    let none = run_clean(
        tool("epollscope")
            .args(["run", "--filter", "nothing-matches"])
            .arg(dir),
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("epollscope: error: no scenario found in"));
}

#[test]
fn bad_input_exits_2_with_file_line_column_and_caret() {
    let path = scenario_file(
        "bad",
        "socket(FAMILY, SOCK_STREAM, 0) = L\nlisten(L, x) = 0\n",
    );
    let out = run_clean(tool("epollscope").arg("run").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let mut lines = err.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{}:2:11: type mismatch: argument 2 of listen() must be a backlog (a number), not a name",
            path.display()
        )
    );
    assert_eq!(lines.next(), Some("2 | listen(L, x) = 0"));
    assert_eq!(lines.next(), Some("              ^"));

    let missing = run_clean(tool("epollscope").args(["run", "/nonexistent/x.scn"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).starts_with("epollscope: error: /nonexistent/x.scn: No such file"));
    let flag = run_clean(tool("epollscope").args(["run", "--repeat", "zero"]));
    assert_eq!(flag.status.code(), Some(2));
}

/// `--under both` runs each instance natively and under the Fastsocket shim and shows what
/// changed: four herd waiters all wake natively, one wakes when each has its own listener.
#[test]
fn under_both_shows_the_herd_disappear() {
    let lib = shim_support::preload_lib();
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--under", "both", "--family", "inet"])
            .arg("scenarios/herd-epoll-shared-listener.scn")
            .env("EPOLLSCOPE_PRELOAD", &lib),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "scenarios/herd-epoll-shared-listener.scn [inet]: native PASS, fastsocket PASS"
        ),
        "{text}"
    );
    // Natively at least two of the four wake (measured: all four); under the shim exactly one.
    let line = text
        .lines()
        .find(|l| l.starts_with("  woken(w1, w2, w3, w4): native "))
        .unwrap_or_else(|| panic!("no woken difference in:\n{text}"));
    let native: i64 = line
        .split("native ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("native count");
    assert!((2..=4).contains(&native), "{line}");
    assert!(line.ends_with("fastsocket 1"), "{line}");
    // The side-by-side view marks the changed line.
    assert!(text.contains(" | # woken(w1, w2, w3, w4) = 1"), "{text}");
    assert!(text.ends_with(
        "native: 1 passed, 0 failed; fastsocket: 1 passed, 0 failed; 1 of 1 traces differ\n"
    ));
    assert!(
        stderr(&out).contains("fast path: emulated"),
        "the shim reports its backend"
    );
}

#[test]
fn under_fastsocket_without_the_shim_library_is_bad_input() {
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--under", "fastsocket"])
            .arg("scenarios/herd-epoll-shared-listener.scn")
            .env(
                "EPOLLSCOPE_PRELOAD",
                "/nonexistent/libepollscope_preload.so",
            ),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim_end(),
        "epollscope: error: EPOLLSCOPE_PRELOAD=/nonexistent/libepollscope_preload.so: no such file"
    );
}

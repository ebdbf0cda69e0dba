//! Stopping `epollscope run`: a step that hangs is reported and cleaned up; SIGINT, SIGTERM
//! and SIGKILL of the runner take every actor with it; nothing is left in TMPDIR.

mod common;
mod epollscope_run_support;
mod shim_support;

use std::path::Path;

use common::{processes_in_group, run_clean, run_clean_with_pid, stderr, stdout, tool};
use epollscope_run_support::{PASSING, ScenarioFile, TempDir, scenario_file};

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

/// A scenario whose last step blocks for a minute, with actors forked by actors: main, w1
/// (forked by main) and w2 (forked by w1), two of them asleep in accept.
const BLOCKS: &str = "# Two accepts that nobody connects to.
family: unix
timeout: 60s
step-timeout: 60s
socket(FAMILY, SOCK_STREAM, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
fork() = w1
[w1] fork() = w2
[w2] accept(L) = A &
[w1] accept(L) = A
";

/// Starts `epollscope run` on [`BLOCKS`] with its own TMPDIR and waits (on /proc, bounded)
/// until the runner and its three actors exist and w1 sleeps in its foreground accept.
// The child is returned to the caller, which waits for it; on timeout it is waited for here.
#[allow(clippy::zombie_processes)]
fn start_blocked(tmp: &TempDir, extra: &[&str], lib: &Path) -> (std::process::Child, ScenarioFile) {
    let path = scenario_file(&format!("blocks{}", extra.len()), BLOCKS);
    let mut child = tool("epollscope")
        .arg("run")
        .args(extra)
        .arg(&path)
        .env("TMPDIR", &tmp.0)
        .env("EPOLLSCOPE_PRELOAD", lib)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = i32::try_from(child.id()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let procs = processes_in_group(pgid);
        let in_accept = procs
            .iter()
            .filter(|&&pid| {
                let syscall =
                    std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
                syscall
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n == libc::SYS_accept || n == libc::SYS_accept4)
            })
            .count();
        if procs.len() == 4 && in_accept == 2 {
            return (child, path);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the actors never blocked: {procs:?}; {}", stderr(&out));
        }
        std::thread::yield_now();
    }
}

/// Waits (bounded) until no live process is left in group `pgid`.
fn wait_group_gone(pgid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_in_group(pgid);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes outlived the runner: {left:?}"
        );
        std::thread::yield_now();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every actor dies with the runner, even when the runner is SIGKILLed and cannot clean up:
/// forks of actors included, forked (native) or exec'd (under the shim).
#[test]
fn sigkill_of_the_runner_takes_every_actor_with_it() {
    let lib = shim_support::preload_lib();
    for under in ["native", "fastsocket"] {
        let tmp = TempDir::new(&format!("kill-{under}"));
        let (mut child, _path) = start_blocked(&tmp, &["--under", under], &lib);
        let pgid = i32::try_from(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        wait_group_gone(pgid);
    }
}

/// SIGINT and SIGTERM stop a run cleanly: actors killed, temporary directories removed,
/// exit 128+N.
#[test]
fn sigint_and_sigterm_remove_every_actor_and_temporary_file() {
    let lib = shim_support::preload_lib();
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let tmp = TempDir::new(&format!("stop-{signal}"));
        let (child, _path) = start_blocked(&tmp, &[], &lib);
        let pgid = i32::try_from(child.id()).unwrap();
        assert!(
            !entries(&tmp.0).is_empty(),
            "the run has its socket directory"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::try_from(signal).unwrap(),
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(stderr(&out).starts_with("epollscope: stopped by SIG"));
        wait_group_gone(pgid);
        assert_eq!(entries(&tmp.0), Vec::<String>::new());
    }
}

/// Passing, failing, hanging and malformed runs all leave their TMPDIR as they found it.
#[test]
fn a_run_leaves_nothing_in_tmpdir() {
    let tmp = TempDir::new("tmpdir");
    let hang = "# hangs\nstep-timeout: 100ms\nsocket(FAMILY, SOCK_STREAM, 0) = L\n\
                bind(L, ADDR) = 0\nlisten(L, 8) = 0\naccept(L) = A\n";
    let fail = "# fails\nfamily: unix\nclose(3) = 0\n";
    for (tag, source) in [("ok", PASSING), ("hang", hang), ("fail", fail)] {
        let path = scenario_file(tag, source);
        run_clean(
            tool("epollscope")
                .arg("run")
                .arg(&path)
                .env("TMPDIR", &tmp.0),
        );
        assert_eq!(entries(&tmp.0), Vec::<String>::new(), "after {tag}");
    }
}

//! The preload shim is invisible to the program it traces: fd sweeps see exactly the native
//! results, a child sharing the parent's memory (vfork, posix_spawn) changes none of the
//! parent's state and is traced itself, notices never raise SIGPIPE, calls made in a signal
//! handler are traced, and a process's trace survives SIGKILL.

mod shim_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use shim_support::*;

fn trace_env(dir: &std::path::Path) -> String {
    format!("dir:{}", dir.display())
}

/// Lines of `call` on fd `num` (a marker: a negative fd the probe closes on purpose).
fn marker_lines(lines: &[(i32, serde_json::Value)], num: i64) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["call"] == "close" && v["fd"]["num"] == num)
        .collect()
}

#[test]
fn fd_sweeps_see_exactly_the_native_results_under_every_mode() {
    let native = example("shim_probe").arg("sweep").output().unwrap();
    assert_success(&native);
    let native = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.contains("raw close_range 0"), "{native}");
    // The stream sink's bytes are written only at flush: each setting puts the shim's own
    // work at a different point of the sweep.
    for buffer in ["65536", "0"] {
        let dir = trace_dir(&format!("sweep-{buffer}"));
        let traced = under_shim(
            example("shim_probe").arg("sweep"),
            &[
                ("EPOLLSCOPE_TRACE", &trace_env(&dir)),
                ("EPOLLSCOPE_TRACE_BUFFER", buffer),
            ],
        )
        .output()
        .unwrap();
        assert_success(&traced);
        assert_eq!(
            String::from_utf8_lossy(&traced.stdout),
            native,
            "trace mode"
        );
        // Tracing went on after every sweep, the raw close_range included.
        let lines = trace_lines(&dir);
        assert_eq!(
            marker_lines(&lines, -77).len(),
            1,
            "the call after the sweeps"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A unix socket sink holds an fd: moved out of the way of every close and dup2 on its
    // number, and, once the raw close_range took it, not written to again: one notice.
    let path = std::env::temp_dir().join(format!("es-shim-sweep-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || std::io::copy(&mut s, &mut std::io::sink()));
        }
    });
    let streamed = under_shim(
        example("shim_probe").arg("sweep"),
        &[("EPOLLSCOPE_TRACE", &format!("unix:{}", path.display()))],
    )
    .output()
    .unwrap();
    assert_success(&streamed);
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        native,
        "unix sink"
    );
    let notices = String::from_utf8_lossy(&streamed.stderr);
    assert_eq!(
        notices
            .matches("is no longer the shim's; tracing stops here")
            .count(),
        1,
        "{notices}"
    );
    let _ = std::fs::remove_file(&path);
    let fast = under_shim(
        example("shim_probe").arg("sweep"),
        &[("EPOLLSCOPE_FASTPATH", "emulated")],
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&fast.stdout), native, "fastsocket");
}

#[test]
fn a_shared_memory_child_leaves_the_parent_alone_and_is_traced_itself() {
    let dir = trace_dir("spawn");
    let files = trace_dir("spawn-host");
    let out = under_shim(
        example("shim_probe").args(["spawn", &files.display().to_string()]),
        &[("EPOLLSCOPE_TRACE", &trace_env(&dir))],
    )
    .output()
    .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.ends_with("status 0, host files hold 0 bytes\n"),
        "the program's own files got bytes: {stdout}"
    );
    let child: i32 = stdout.split(' ').nth(1).unwrap().parse().unwrap();
    let parent = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| file_pid(&e.file_name().to_string_lossy()))
        .find(|p| *p != child)
        .expect("the parent's trace file");
    let lines = trace_lines(&dir);
    // The parent's trace is complete: its 300 marker calls, its 800 closes, its wait.
    let marks = marker_lines(&lines, -78);
    assert_eq!(marks.len(), 300);
    assert!(marks.iter().all(|v| v["pid"] == parent));
    let parent_closes = lines
        .iter()
        .filter(|(_, v)| v["pid"] == parent && v["call"] == "close" && v["ret"]["ok"].is_object())
        .count();
    assert_eq!(parent_closes, 800);
    // The child's own calls before its exec are traced under its pid: its sweep of 3..1024
    // and its dup2; the image it exec'd has its own file, ending with exit(0).
    let child_closes = lines
        .iter()
        .filter(|(_, v)| v["pid"] == child && v["call"] == "close")
        .count();
    assert_eq!(child_closes, 1021);
    assert_eq!(ok_calls(&lines, "dup2").len(), 1);
    let ends: Vec<_> = lines
        .iter()
        .filter(|(pid, v)| *pid == child && v["name"] == "exit")
        .collect();
    assert_eq!(ends.len(), 1, "the exec'd image's exit");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&files);
}

/// Accepts per worker pid and listen_spawn per pid of a `prefork` run under fastsocket.
fn prefork_spread(mode: &str) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
    let dir = trace_dir(mode);
    let out = under_shim(
        example("shim_probe").args([mode, "2", "40"]),
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            // The kernel's hash spreads the master's connections over both workers; steered,
            // they would all go to the worker pinned to the master's CPU.
            ("EPOLLSCOPE_FASTPATH_PIN", "0"),
            ("EPOLLSCOPE_FASTPATH_STEER", "hash"),
            ("EPOLLSCOPE_TRACE", &trace_env(&dir)),
        ],
    )
    .output()
    .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served 40 of 40\n");
    let lines = trace_lines(&dir);
    let mut accepts = BTreeMap::new();
    for (pid, _) in ok_calls(&lines, "accept4") {
        *accepts.entry(*pid).or_default() += 1;
    }
    let mut spawns = BTreeMap::new();
    for (pid, _) in ok_calls(&lines, "builtin")
        .into_iter()
        .filter(|(_, v)| v["name"] == "listen_spawn")
    {
        *spawns.entry(*pid).or_default() += 1;
    }
    let spread = (accepts, spawns);
    let _ = std::fs::remove_dir_all(&dir);
    spread
}

#[test]
fn a_shared_memory_child_that_closes_every_fd_leaves_the_listen_table_alone() {
    let (_, plain_spawns) = prefork_spread("prefork");
    assert_eq!(plain_spawns.values().collect::<Vec<_>>(), [&1, &1]);
    let (accepts, spawns) = prefork_spread("prefork-spawn");
    // Each worker still gets its own listener, so both accept (a lost table leaves the
    // workers sharing one listener, and one of them taking nearly every connection).
    assert_eq!(spawns.values().collect::<Vec<_>>(), [&1, &1], "{spawns:?}");
    assert_eq!(accepts.values().sum::<usize>(), 40, "{accepts:?}");
    assert_eq!(accepts.len(), 2, "{accepts:?}");
}

#[test]
fn a_notice_to_a_closed_pipe_raises_no_sigpipe_and_takes_none_of_the_hosts() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = under_shim(
        &mut Command::new("/bin/true"),
        &[("EPOLLSCOPE_FASTPATH", "turbo")],
    )
    .stderr(writer)
    .status()
    .unwrap();
    assert!(status.success(), "{status:?}");

    // The host's own SIGPIPE, blocked and pending across an exec, is still pending after the
    // new image's notice hit the dead pipe, and the mask is as it was.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = under_shim(
        example("shim_probe").arg("pending-sigpipe"),
        &[("EPOLLSCOPE_FASTPATH", "turbo")],
    )
    .stderr(writer)
    .output()
    .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let status = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {status}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    let pipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(field("SigPnd:") & pipe, pipe, "pending: {status}");
    assert_eq!(field("SigBlk:") & pipe, pipe, "blocked: {status}");
}

#[test]
fn calls_in_a_signal_handler_that_interrupts_a_traced_call_are_traced() {
    let dir = trace_dir("signals");
    let out = under_shim(
        example("shim_probe").args(["signals", "25"]),
        &[("EPOLLSCOPE_TRACE", &trace_env(&dir))],
    )
    .output()
    .unwrap();
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "interrupted 25, handled 25\n"
    );
    let lines = trace_lines(&dir);
    assert_eq!(marker_lines(&lines, -79).len(), 25, "the handlers' calls");
    let eintr = lines
        .iter()
        .filter(|(_, v)| v["call"] == "accept" && v["ret"]["err"]["errno"] == "EINTR")
        .count();
    assert_eq!(eintr, 25, "the interrupted accepts");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_line_of_a_process_killed_by_sigkill_is_in_its_trace() {
    let dir = trace_dir("sigkill");
    let calls = 5000;
    let mut child = under_shim(
        example("shim_probe").args(["killable", &calls.to_string()]),
        &[("EPOLLSCOPE_TRACE", &trace_env(&dir))],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "done\n");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let (events, bad) = epollscope::shim::merge::read_dir(&dir).unwrap();
    assert_eq!(bad, 0);
    let marks = events
        .iter()
        .filter(|e| matches!(&e.call, epollscope::trace::Call::Close { fd } if fd.num == -80))
        .count();
    assert_eq!(marks, calls, "every call made before the kill");
    // No last word: the summary says the process ended without one.
    let summary = epollscope::shim::merge::Summary::of(&events);
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(
        summary.ends.get(&pid),
        None,
        "a killed process leaves no exit record"
    );
    assert!(
        summary.render().contains(&format!("{pid} no exit record")),
        "{}",
        summary.render()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// python3 on PATH, if any (`subprocess` spawns with vfork since Python 3.10).
fn python() -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|d| std::path::Path::new(d).join("python3"))
        .find(|p| p.is_file())
}

#[test]
fn python_subprocess_then_800_files_leaves_the_files_alone_and_the_trace_complete() {
    let Some(python) = python() else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    let dir = trace_dir("python");
    let files = trace_dir("python-host");
    let script = "import os, subprocess, sys\n\
        r = subprocess.run(['/bin/true'])\n\
        d = sys.argv[1]\n\
        fds = [os.open(f'{d}/f{i}', os.O_RDWR | os.O_CREAT) for i in range(800)]\n\
        for _ in range(300):\n\
        \x20   try: os.close(-78)\n\
        \x20   except OSError: pass\n\
        size = sum(os.fstat(fd).st_size for fd in fds)\n\
        print(r.returncode, size)\n";
    let out = under_shim(
        Command::new(python).args(["-c", script]).arg(&files),
        &[("EPOLLSCOPE_TRACE", &trace_env(&dir))],
    )
    .output()
    .unwrap();
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 0\n",
        "exit code, bytes in the files"
    );
    let lines = trace_lines(&dir);
    assert_eq!(marker_lines(&lines, -78).len(), 300);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&files);
}

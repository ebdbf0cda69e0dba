//! The preload shim in trace mode: complete traces under many threads and a fork, errno
//! exactly as the real calls left it, bad settings leaving the program alone.

mod shim_support;

use shim_support::*;

#[test]
fn every_accept_of_every_thread_and_of_a_forked_child_is_traced_once() {
    let dir = trace_dir("threads");
    let (threads, per_thread) = (8, 50);
    let out = under_shim(
        example("shim_probe").args(["threads", &threads.to_string(), &per_thread.to_string()]),
        &[("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display()))],
    )
    .output()
    .unwrap();
    shim_support::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = threads * per_thread + per_thread;
    assert!(
        stdout.starts_with(&format!("accepts {expected} ")),
        "{stdout}"
    );
    let child: i32 = stdout.trim().rsplit(' ').next().unwrap().parse().unwrap();

    let lines = trace_lines(&dir);
    let accepts = ok_calls(&lines, "accept4");
    assert_eq!(accepts.len(), expected, "traced accepts");
    let in_child = accepts.iter().filter(|(pid, _)| *pid == child).count();
    assert_eq!(
        in_child, per_thread,
        "the child's accepts are in its own file"
    );
    // Every line is in the file of the process that made the call.
    assert!(lines.iter().all(|(pid, v)| v["pid"] == *pid));
    let forks = ok_calls(&lines, "fork");
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].1["ret"]["ok"]["value"], child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errno_is_exactly_what_the_real_calls_left() {
    let native = example("shim_probe").arg("errno").output().unwrap();
    assert!(native.status.success());
    let dir = trace_dir("errno");
    let traced = under_shim(
        example("shim_probe").arg("errno"),
        &[("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display()))],
    )
    .output()
    .unwrap();
    let fast = under_shim(
        example("shim_probe").arg("errno"),
        &[("EPOLLSCOPE_FASTPATH", "emulated")],
    )
    .output()
    .unwrap();
    let native = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.contains("close(-1) 9\n"), "{native}");
    assert!(native.contains("bind(EFAULT) 14\n"), "{native}");
    assert!(
        native.contains("errno kept across success 12345 54321"),
        "{native}"
    );
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        native,
        "trace mode"
    );
    assert_eq!(
        String::from_utf8_lossy(&fast.stdout),
        native,
        "fastsocket mode"
    );
    // The failed calls are traced with their errno.
    let lines = trace_lines(&dir);
    assert!(
        lines
            .iter()
            .any(|(_, v)| v["call"] == "close" && v["ret"]["err"]["errno"] == "EBADF")
    );
    assert!(
        lines
            .iter()
            .any(|(_, v)| v["call"] == "connect" && v["ret"]["err"]["errno"] == "ECONNREFUSED")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_setting_is_one_line_on_stderr_and_the_program_runs_untouched() {
    let dir = trace_dir("bad");
    let out = under_shim(
        example("shim_probe").args(["threads", "1", "3"]),
        &[
            ("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display())),
            ("EPOLLSCOPE_FASTPATH", "turbo"),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("accepts 6 "));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    // Once per process image: the forked child inherits the decision, it does not repeat it.
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("EPOLLSCOPE_FASTPATH: unknown fast path 'turbo'")
            && lines[0].ends_with("running the program untouched"),
        "{stderr}"
    );
    assert!(trace_lines(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raw_format_is_the_strace_like_rendering() {
    let dir = trace_dir("raw");
    let out = under_shim(
        example("shim_probe").args(["threads", "1", "2"]),
        &[
            ("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display())),
            ("EPOLLSCOPE_TRACE_FORMAT", "raw"),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let text = trace_text(&dir);
    assert!(
        text.contains("listen(") && text.contains(", 128) = 0 <0."),
        "{text}"
    );
    assert!(text.contains("accept4("), "{text}");
    assert!(text.lines().all(|l| l.starts_with("[pid ")), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_unix_socket_gets_every_process_lines_on_its_own_connection() {
    use std::io::Read;
    let path = std::env::temp_dir().join(format!("es-shim-sink-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Two processes (the program and its forked child), one connection each.
    let reader = std::thread::spawn(move || {
        (0..2)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                let mut text = String::new();
                s.read_to_string(&mut text).unwrap();
                text
            })
            .collect::<Vec<String>>()
    });
    let out = under_shim(
        example("shim_probe").args(["threads", "2", "3"]),
        &[("EPOLLSCOPE_TRACE", &format!("unix:{}", path.display()))],
    )
    .output()
    .unwrap();
    shim_support::assert_success(&out);
    let streams = reader.join().unwrap();
    let accepts: usize = streams
        .iter()
        .map(|t| t.matches("\"call\":\"accept4\"").count())
        .sum();
    assert_eq!(accepts, 9, "{streams:?}");
    let _ = std::fs::remove_file(&path);
}

//! The preload shim in fastsocket mode (emulated backend) on a pre-forking server: every
//! worker ends up with its own listener under the shared fd number, connections spread over
//! the workers, and the choice of backend is reported once.

mod shim_support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use shim_support::*;

/// Children of `pid` (from /proc/PID/task/PID/children).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn socket_inode(pid: u32, fd: i32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

#[test]
fn pre_forked_workers_each_get_their_own_listener_and_share_the_connections() {
    let dir = trace_dir("fast");
    let workers = 4;
    let mut child = under_shim(
        example("shim_probe").args(["serve-fork", &workers.to_string()]),
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display())),
            // Workers end by SIGTERM: write each line at once so none is lost.
            ("EPOLLSCOPE_TRACE_BUFFER", "0"),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut port = 0u16;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(p) = line.trim().strip_prefix("port ") {
            port = p.parse().unwrap();
        }
        if line.trim() == "ready" {
            break;
        }
        line.clear();
    }
    assert_ne!(port, 0);

    // Each worker spawns at its epoll_ctl(ADD); wait for all four spawns in the trace.
    let spawned = || {
        let lines = trace_lines(&dir);
        ok_calls(&lines, "builtin")
            .iter()
            .filter(|(_, v)| v["name"] == "listen_spawn")
            .map(|(pid, _)| *pid)
            .collect::<Vec<i32>>()
    };
    // (If the test fails, dropping `child` closes its stdin, which makes the master stop its
    // workers and exit.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while spawned().len() < workers {
        assert!(
            std::time::Instant::now() < deadline,
            "spawns: {:?}",
            spawned()
        );
        std::thread::yield_now();
    }
    let master = child.id();
    let worker_pids = children(master);
    assert_eq!(worker_pids.len(), workers);
    // The listener's fd number (the one the master listened on) now names a different
    // socket in every worker, none of them the master's.
    let lines = trace_lines(&dir);
    let listen_fd = ok_calls(&lines, "listen")[0].1["fd"]["num"]
        .as_i64()
        .unwrap() as i32;
    let mut inodes: Vec<u64> = worker_pids
        .iter()
        .map(|&p| socket_inode(p, listen_fd))
        .collect();
    inodes.push(socket_inode(master, listen_fd));
    let mut distinct = inodes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), workers + 1, "inodes {inodes:?}");

    // Every connection is answered by a worker, and more than one worker answers.
    let mut served_by = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut pid = String::new();
        s.read_to_string(&mut pid).unwrap();
        *served_by.entry(pid).or_insert(0) += 1;
    }
    assert!(served_by.len() >= 2, "{served_by:?}");
    assert!(!served_by.contains_key(&master.to_string()));

    drop(child.stdin.take());
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let reports: Vec<&str> = stderr.lines().collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(
        reports[0].contains("fast path: emulated (emulated backend requested"),
        "{stderr}"
    );
    // Every accept is traced.
    let lines = trace_lines(&dir);
    assert_eq!(ok_calls(&lines, "accept4").len(), 60);
    let _ = std::fs::remove_dir_all(&dir);
}

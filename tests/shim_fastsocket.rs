//! The preload shim in fastsocket mode (emulated backend) on a pre-forking server: every
//! worker ends up with its own listener under the shared fd number, connections spread over
//! the workers, and the choice of backend is reported once.

mod common;
mod shim_support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use common::run_clean;
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
    let workers = 4;
    // (If the test fails, dropping `child` closes its stdin, which makes the master stop its
    // workers and exit.)
    let (mut child, port, dir) = start_serve_fork("fast", workers, &[]);
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

/// Starts `shim_probe serve-fork W` under the shim with `vars`, and waits (on the trace) until
/// every worker spawned: (child, port, trace dir).
fn start_serve_fork(
    tag: &str,
    workers: usize,
    vars: &[(&str, &str)],
) -> (std::process::Child, u16, std::path::PathBuf) {
    let dir = trace_dir(tag);
    let trace = format!("dir:{}", dir.display());
    let mut all = vec![
        ("EPOLLSCOPE_FASTPATH", "emulated"),
        ("EPOLLSCOPE_TRACE", trace.as_str()),
        ("EPOLLSCOPE_TRACE_BUFFER", "0"),
    ];
    all.extend_from_slice(vars);
    let mut child = under_shim(
        example("shim_probe").args(["serve-fork", &workers.to_string()]),
        &all,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    // One line at most (the fast path's choice), which the first test checks.
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
    let spawned = || {
        ok_calls(&trace_lines(&dir), "builtin")
            .iter()
            .filter(|(_, v)| v["name"] == "listen_spawn")
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while spawned() < workers {
        assert!(
            std::time::Instant::now() < deadline,
            "spawns: {}",
            spawned()
        );
        std::thread::yield_now();
    }
    (child, port, dir)
}

/// The one CPU a process may run on, from /proc (None: several).
fn only_cpu(pid: &str) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    list.parse().ok()
}

/// Whether loopback packets are processed on the sending CPU: no RPS on `lo`.
fn loopback_stays_on_the_sending_cpu() -> bool {
    std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus")
        .map(|m| m.trim().chars().all(|c| c == '0' || c == ','))
        .unwrap_or(true)
}

/// One connection from this thread, pinned to `cpu`: the pid of the worker that answered.
fn connect_from(cpu: usize, port: u16) -> String {
    epollscope::sys::cpu::pin_to(cpu).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut pid = String::new();
    s.read_to_string(&mut pid).unwrap();
    pid
}

/// `accept_cpu` lines of the trace: (incoming cpu, accepting cpu).
fn accept_cpus(dir: &std::path::Path) -> Vec<(i64, i64)> {
    ok_calls(&trace_lines(dir), "builtin")
        .iter()
        .filter(|(_, v)| v["name"] == "accept_cpu")
        .map(|(_, v)| {
            (
                v["args"][1]["num"].as_i64().unwrap(),
                v["args"][2]["num"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A loopback connection is processed on the CPU of the thread that connects, so a client
/// pinned to CPU k makes k the CPU that receives the connection: in fastsocket mode the
/// worker that accepts it must be one pinned to k, every time (no percentage, no luck).
#[test]
fn each_connection_is_accepted_by_a_worker_pinned_to_the_cpu_that_processed_it() {
    if !loopback_stays_on_the_sending_cpu() {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    if !epollscope::sys::cpu::kernel_honours_incoming_cpu() {
        eprintln!("skipped: this kernel's reuseport selection ignores SO_INCOMING_CPU (< 6.1)");
        return;
    }
    let cpus = epollscope::sys::cpu::allowed_cpus().unwrap();
    let workers = 2 * cpus.len();
    let (mut child, port, dir) = start_serve_fork(
        "local",
        workers,
        &[("EPOLLSCOPE_FASTPATH_STEER", "incoming-cpu")],
    );
    let per_cpu = 5;
    // On a thread of its own: pinning it leaves the test harness's threads alone.
    let answers = std::thread::spawn({
        let cpus = cpus.clone();
        move || {
            let mut answers = vec![];
            for &cpu in &cpus {
                for _ in 0..per_cpu {
                    answers.push((cpu, connect_from(cpu, port)));
                }
            }
            answers
        }
    })
    .join()
    .unwrap();
    for (cpu, pid) in &answers {
        assert_eq!(only_cpu(pid), Some(*cpu), "worker {pid} answered cpu {cpu}");
    }
    drop(child.stdin.take());
    child.wait().unwrap();
    // The shim measured the same: each accept processed on the client's CPU, accepted there.
    let mut measured = accept_cpus(&dir);
    measured.sort();
    let mut want: Vec<(i64, i64)> = answers
        .iter()
        .map(|(c, _)| (*c as i64, *c as i64))
        .collect();
    want.sort();
    assert_eq!(measured, want);
    let text = trace_text(&dir);
    let notices = text.matches("locality: SO_INCOMING_CPU steers cpu").count();
    assert_eq!(notices, workers, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without pinning or steering the measurement is still exact: the incoming CPU is the
/// client's, whoever accepts.
#[test]
fn the_incoming_cpu_is_measured_exactly_without_steering() {
    if !loopback_stays_on_the_sending_cpu() {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    let cpus = epollscope::sys::cpu::allowed_cpus().unwrap();
    let (mut child, port, dir) = start_serve_fork(
        "unsteered",
        2,
        &[
            ("EPOLLSCOPE_FASTPATH_PIN", "0"),
            ("EPOLLSCOPE_FASTPATH_STEER", "hash"),
        ],
    );
    let used = std::thread::spawn({
        let cpus = cpus.clone();
        move || {
            for &cpu in &cpus {
                connect_from(cpu, port);
            }
        }
    });
    used.join().unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    let mut incoming: Vec<i64> = accept_cpus(&dir).iter().map(|(i, _)| *i).collect();
    incoming.sort();
    let want: Vec<i64> = cpus.iter().map(|&c| c as i64).collect();
    assert_eq!(incoming, want);
    assert!(trace_text(&dir).contains("locality: hashing"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// FINDINGS.md F3: under the fast path, a worker's ADD of a listener its inherited epoll set
/// already holds must fail with EEXIST as it does natively, a connection queued on the
/// shared listener before a worker's ADD must still reach the parent, and one queued before
/// the worker's ADD must be reported to the worker and stay connected (the scenarios say so,
/// and pass natively).
#[test]
fn a_worker_re_adding_an_inherited_registration_sees_eexist_and_nothing_queued_is_lost() {
    for under in ["native", "fastsocket"] {
        let out = run_clean(
            common::tool("epollscope")
                .args(["run", "--under", under])
                .arg("scenarios/fork-inherited-registration-eexist.scn")
                .arg("scenarios/fork-worker-sees-connections-queued-before.scn")
                .env("EPOLLSCOPE_PRELOAD", preload_lib()),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "under {under}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

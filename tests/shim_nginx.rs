//! nginx (4 workers, master process, our own config in a temp dir) serving on loopback,
//! natively and under the preload shim in fastsocket mode, where every worker must own its
//! own listener and several workers must accept. Skipped, with the reason printed, when nginx
//! is not installed (Debian: `apt-get install nginx-light`).

mod servers;
mod shim_support;

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;

use servers::nginx::{self, Nginx, Serving, WORKERS};
use shim_support::*;

/// nginx answering with the serving worker's pid, natively or under the shim with `shim`.
fn start(tag: &str, shim: Option<&[(&str, &str)]>) -> Nginx {
    Nginx::start(trace_dir(tag), Serving::Pids, |cmd| {
        if let Some(vars) = shim {
            under_shim(cmd, vars);
        }
    })
    .unwrap()
}

/// One request on a new connection: the pid of the worker that served it.
fn served_by(nginx: &Nginx) -> i32 {
    let body = nginx.request().unwrap();
    body.trim().parse().unwrap()
}

fn socket_inode(pid: i32, fd: i64) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

#[test]
fn nginx_serves_natively() {
    if nginx::binary().is_none() {
        eprintln!("skipped: nginx is not installed (apt-get install nginx-light)");
        return;
    }
    let mut nginx = start("nginx-native", None);
    nginx
        .wait_for("4 workers accepting", |n| {
            n.workers().len() == WORKERS && TcpStream::connect(("127.0.0.1", n.port())).is_ok()
        })
        .unwrap();
    let workers = nginx.workers();
    for _ in 0..20 {
        assert!(workers.contains(&served_by(&nginx)));
    }
    nginx.quit().unwrap();
}

#[test]
fn nginx_under_the_fastsocket_shim_gives_every_worker_its_own_listener() {
    if nginx::binary().is_none() {
        eprintln!("skipped: nginx is not installed (apt-get install nginx-light)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("es-shim-nginx-fast-{}", std::process::id()));
    let trace = format!("dir:{}/trace", dir.display());
    let mut nginx = start(
        "nginx-fast",
        Some(&[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_TRACE", &trace),
            // Read while nginx runs: write every line at once.
            ("EPOLLSCOPE_TRACE_BUFFER", "0"),
        ]),
    );
    assert_eq!(nginx.dir(), dir);
    let spawns = |n: &Nginx| -> Vec<i32> {
        let lines = trace_lines(&n.trace_dir());
        ok_calls(&lines, "builtin")
            .iter()
            .filter(|(_, v)| v["name"] == "listen_spawn")
            .map(|(pid, _)| *pid)
            .collect()
    };
    nginx
        .wait_for("a listen_spawn in every worker", |n| {
            spawns(n).len() == WORKERS && n.workers().len() == WORKERS
        })
        .unwrap();
    let workers = nginx.workers();
    let mut spawned = spawns(&nginx);
    spawned.sort();
    let mut sorted = workers.clone();
    sorted.sort();
    assert_eq!(spawned, sorted, "one spawn per worker");

    // The listen fd number names a different socket in each worker and in the master.
    let lines = trace_lines(&nginx.trace_dir());
    let listen = ok_calls(&lines, "listen");
    // (nginx calls listen twice on its socket: once to open it, once to apply the backlog.)
    let fd = listen[0].1["fd"]["num"].as_i64().unwrap();
    assert!(
        listen
            .iter()
            .all(|(pid, v)| *pid == nginx.pid() && v["fd"]["num"] == fd),
        "only the master listens, on one fd: {listen:?}"
    );
    let mut inodes: Vec<u64> = workers.iter().map(|&w| socket_inode(w, fd)).collect();
    inodes.push(socket_inode(nginx.pid(), fd));
    let mut distinct = inodes.clone();
    distinct.sort();
    distinct.dedup();
    assert!(!distinct.contains(&0), "{inodes:?}");
    assert_eq!(distinct.len(), WORKERS + 1, "inodes {inodes:?}");

    // Every request is served, by several workers.
    let mut by_worker = std::collections::BTreeMap::new();
    let requests = 60;
    for _ in 0..requests {
        let pid = served_by(&nginx);
        assert!(workers.contains(&pid), "served by {pid}, not a worker");
        *by_worker.entry(pid).or_insert(0) += 1;
    }
    assert!(by_worker.len() >= 2, "{by_worker:?}");
    let lines = trace_lines(&nginx.trace_dir());
    let accepted_by: std::collections::BTreeSet<i32> = ok_calls(&lines, "accept4")
        .iter()
        .map(|(pid, _)| *pid)
        .collect();
    assert!(accepted_by.len() >= 2, "{accepted_by:?}");
    let stderr = std::fs::read_to_string(nginx.dir().join("stderr")).unwrap();
    assert!(stderr.contains("fast path: emulated"), "{stderr}");
    nginx.quit().unwrap();
}

/// The one CPU a process may run on, from /proc (None: several).
fn only_cpu(pid: i32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .parse()
        .ok()
}

/// Fastsocket's locality with nginx: each worker pinned to a CPU, and a request from a client
/// pinned to CPU k (a loopback connection is processed on the connecting thread's CPU) is
/// served by a worker pinned to k, every time. The trace's per-worker locality is printed.
#[test]
fn nginx_under_the_fastsocket_shim_serves_each_connection_on_the_cpu_that_received_it() {
    if !epollscope::sys::cpu::kernel_honours_incoming_cpu() {
        eprintln!("skipped: this kernel's reuseport selection ignores SO_INCOMING_CPU (< 6.1)");
        return;
    }
    served_on_the_cpu_that_received_it("incoming-cpu");
}

/// The same with the classic-BPF program steering: nginx's four workers register their
/// listeners in whatever order they start, and the program follows the group's real order.
#[test]
fn nginx_steered_by_classic_bpf_serves_each_connection_on_the_cpu_that_received_it() {
    served_on_the_cpu_that_received_it("cbpf");
}

fn served_on_the_cpu_that_received_it(steer: &str) {
    if nginx::binary().is_none() {
        eprintln!("skipped: nginx is not installed (apt-get install nginx-light)");
        return;
    }
    if std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus")
        .is_ok_and(|m| m.trim().chars().any(|c| c != '0' && c != ','))
    {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    let tag = format!("nginx-local-{steer}");
    let dir = std::env::temp_dir().join(format!("es-shim-{tag}-{}", std::process::id()));
    let trace = format!("dir:{}/trace", dir.display());
    let mut nginx = start(
        &tag,
        Some(&[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_FASTPATH_STEER", steer),
            ("EPOLLSCOPE_TRACE", &trace),
            ("EPOLLSCOPE_TRACE_BUFFER", "0"),
        ]),
    );
    let spawns = |n: &Nginx| {
        ok_calls(&trace_lines(&n.trace_dir()), "builtin")
            .iter()
            .filter(|(_, v)| v["name"] == "listen_spawn")
            .count()
    };
    nginx
        .wait_for("a listen_spawn in every worker", |n| {
            spawns(n) == WORKERS && n.workers().len() == WORKERS
        })
        .unwrap();
    let cpus = epollscope::sys::cpu::allowed_cpus().unwrap();
    let workers = nginx.workers();
    // Round-robin: each CPU has WORKERS / CPUs workers (or one more).
    let mut per_cpu = std::collections::BTreeMap::new();
    for &w in &workers {
        *per_cpu
            .entry(only_cpu(w).expect("a pinned worker"))
            .or_insert(0usize) += 1;
    }
    assert_eq!(per_cpu.len(), cpus.len().min(WORKERS), "{per_cpu:?}");
    let served = std::thread::scope(|s| {
        s.spawn(|| {
            let mut served = vec![];
            for &cpu in &cpus {
                epollscope::sys::cpu::pin_to(cpu).unwrap();
                for _ in 0..10 {
                    served.push((cpu, served_by(&nginx)));
                }
            }
            served
        })
        .join()
        .unwrap()
    });
    for (cpu, pid) in &served {
        assert_eq!(only_cpu(*pid), Some(*cpu), "worker {pid} served cpu {cpu}");
    }
    let events: Vec<epollscope::trace::Event> = trace_lines(&nginx.trace_dir())
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_value(v).ok())
        .collect();
    let summary = epollscope::shim::merge::Summary::of(&events);
    let total = summary.local_total();
    eprintln!("nginx fastsocket locality ({steer}): {total}");
    let how = if steer == "cbpf" {
        "classic-BPF reuseport program"
    } else {
        "SO_INCOMING_CPU"
    };
    assert!(!summary.steering.is_empty());
    assert!(
        summary.steering.iter().all(|n| n.contains(how)),
        "{:?}",
        summary.steering
    );
    assert_eq!(total.measured, served.len());
    assert_eq!(total.local, served.len());
    nginx.quit().unwrap();
}

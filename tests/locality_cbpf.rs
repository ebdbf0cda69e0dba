//! The classic-BPF reuseport program steers a connection to the listener of the CPU that
//! processes it: a client pinned to each CPU in turn (loopback connections are processed on
//! the connecting thread's CPU), and the connection must be queued on that CPU's listener,
//! every time: with listeners joined in CPU order, and through the emulation with workers
//! that spawn in the reverse of their fork order while the shared listener is retired.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use epollscope::addr::SockAddr;
use epollscope::fastpath::emulated::EmulatedBackend;
use epollscope::fastpath::{EmulationOptions, FastPath, Spawn, Steer};
use epollscope::sys::{self, cpu, fds, process};
use nix::unistd::ForkResult;

fn rps_on_lo() -> bool {
    std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus")
        .is_ok_and(|m| m.trim().chars().any(|c| c != '0' && c != ','))
}

fn reuseport_listener(port: u16) -> i32 {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0).unwrap();
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).unwrap();
    let addr = SockAddr::ip(format!("127.0.0.1:{port}").parse().unwrap());
    sys::bind(fd, &sys::RawAddr::from(&addr)).unwrap();
    sys::listen(fd, 16).unwrap();
    fd
}

#[test]
fn the_program_queues_each_connection_on_its_cpus_listener() {
    if rps_on_lo() {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    let cpus = cpu::allowed_cpus().unwrap();
    let first = reuseport_listener(0);
    let port = sys::getsockname(first).unwrap().port().unwrap();
    let mut listeners = vec![first];
    for _ in 1..cpus.len() {
        listeners.push(reuseport_listener(port));
    }
    let pairs: Vec<(u32, Vec<u32>)> = cpus
        .iter()
        .enumerate()
        .map(|(k, &c)| (u32::try_from(c).unwrap(), vec![u32::try_from(k).unwrap()]))
        .collect();
    cpu::attach_reuseport_cbpf(first, &cpu::cpu_steering_program(&pairs).unwrap()).unwrap();
    for round in 0..3 {
        for (k, &c) in cpus.iter().enumerate() {
            let _client = std::thread::spawn(move || {
                cpu::pin_to(c).unwrap();
                TcpStream::connect(("127.0.0.1", port)).unwrap()
            })
            .join()
            .unwrap();
            for (j, &l) in listeners.iter().enumerate() {
                let got = sys::accept4_raw(l, None, 0);
                if j == k {
                    let conn = got.unwrap_or_else(|e| panic!("round {round} cpu {c}: {e}"));
                    assert_eq!(cpu::incoming_cpu(conn), Some(c as i32));
                    sys::close(conn).unwrap();
                } else {
                    assert_eq!(
                        got,
                        Err(nix::errno::Errno::EAGAIN),
                        "cpu {c} on listener {j}"
                    );
                }
            }
        }
    }
    for l in listeners {
        sys::close(l).unwrap();
    }
}

/// A record a worker sends the test: `[kind, worker, a, b]`.
const SPAWNED: i32 = 1; // a: 1 if it spawned its own listener
const ACCEPTED: i32 = 2; // a: SO_INCOMING_CPU of the accepted socket, b: the worker's CPU
const CLOSED: i32 = 3; // a: 1 if it closed its listener

fn send(fd: i32, record: [i32; 4]) {
    let bytes: Vec<u8> = record.iter().flat_map(|v| v.to_le_bytes()).collect();
    // 16 bytes: one atomic pipe write.
    assert_eq!(sys::write(fd, &bytes), Ok(16));
}

/// A forked worker: waits for its turn, registers the listener (the spawn), then accepts
/// and reports where each connection was processed and where it was accepted; a `c` on its
/// pipe makes it close its listener.
fn worker(fp: &EmulatedBackend, k: i32, listener: i32, go: i32, out: i32) -> ! {
    let mut byte = [0u8; 1];
    let _ = sys::read(go, &mut byte);
    let epfd = sys::epoll_create1(0).unwrap();
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    let (r, spawn) = fp.epoll_ctl(epfd, libc::EPOLL_CTL_ADD, listener, Some(&mut ev));
    send(
        out,
        [
            SPAWNED,
            k,
            i32::from(r.is_ok() && spawn == Spawn::Spawned),
            0,
        ],
    );
    sys::epoll_ctl(
        epfd,
        libc::EPOLL_CTL_ADD,
        go,
        Some((libc::EPOLLIN as u32, 1)),
    )
    .unwrap();
    loop {
        let ready = sys::epoll_wait(epfd, 2, -1, false).unwrap_or_default();
        if ready.iter().any(|&(_, data)| data == 1) {
            if sys::read(go, &mut byte) == Ok(1) && byte[0] == b'c' {
                send(out, [CLOSED, k, i32::from(fp.close(listener).is_ok()), 0]);
            } else {
                // The test is gone.
                std::process::exit(0);
            }
        }
        while let Ok(conn) = sys::accept4_raw(listener, None, 0) {
            let incoming = cpu::incoming_cpu(conn).unwrap_or(-1);
            let here = sys::sched_getcpu().unwrap_or(-2);
            send(out, [ACCEPTED, k, incoming, here]);
            let _ = sys::close(conn);
        }
    }
}

/// Reads one record, failing loudly after `deadline`.
fn receive(fd: i32, deadline: Instant, what: &str) -> [i32; 4] {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(
        fds::poll(
            &[(fd, libc::POLLIN)],
            i32::try_from(left.as_millis()).unwrap(),
            None
        )
        .unwrap()
        .0 > 0,
        "timed out waiting for {what}"
    );
    let mut buf = [0u8; 16];
    assert_eq!(sys::read(fd, &mut buf), Ok(16), "{what}");
    let mut r = [0i32; 4];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i32::from_le_bytes(buf[4 * i..4 * i + 4].try_into().unwrap());
    }
    r
}

#[test]
fn workers_spawning_out_of_fork_order_are_steered_to_their_cpu() {
    if rps_on_lo() {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    let cpus = cpu::allowed_cpus().unwrap();
    if cpus.len() < 2 {
        eprintln!("skipped: one CPU allowed, so every accept is local whatever steers");
        return;
    }
    let fp = EmulatedBackend::new(EmulationOptions {
        pin: true,
        steer: Steer::Cbpf,
    });
    let l = fp
        .socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
        .unwrap();
    fp.before_bind(l);
    let addr = SockAddr::ip("127.0.0.1:0".parse().unwrap());
    sys::bind(l, &sys::RawAddr::from(&addr)).unwrap();
    fp.listen(l, 64).unwrap();
    let port = sys::getsockname(l).unwrap().port().unwrap();
    let [results, out] = fds::pipe2(libc::O_CLOEXEC).unwrap();
    // Two workers per CPU, pinned round-robin in fork order.
    let workers = 2 * cpus.len();
    let mut children = vec![];
    let mut gos = vec![];
    for k in 0..workers {
        let [go_r, go_w] = fds::pipe2(libc::O_CLOEXEC).unwrap();
        match process::fork().unwrap() {
            ForkResult::Child => {
                fp.after_fork_child();
                let me = nix::unistd::getppid();
                let _ = process::die_with_parent(nix::sys::signal::Signal::SIGKILL, me);
                worker(&fp, i32::try_from(k).unwrap(), l, go_r, out)
            }
            ForkResult::Parent { child } => {
                fp.after_fork_parent();
                sys::close(go_r).unwrap();
                children.push(child);
                gos.push(go_w);
            }
        }
    }
    sys::close(out).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // The last forked spawns first, the first forked last: the group's order is the reverse
    // of the fork order, and the shared listener leaves it after the first spawn.
    for k in (0..workers).rev() {
        assert_eq!(sys::write(gos[k], b"g"), Ok(1));
        let r = receive(results, deadline, &format!("worker {k}'s spawn"));
        assert_eq!(
            r,
            [SPAWNED, i32::try_from(k).unwrap(), 1, 0],
            "worker {k}'s spawn"
        );
    }
    assert_eq!(
        sys::getsockopt_int(l, libc::SOL_SOCKET, libc::SO_ACCEPTCONN),
        Ok(0),
        "the shared listener is retired"
    );
    // PER_CPU connections from a client pinned to each CPU: every one accepted on its CPU.
    const PER_CPU: usize = 25;
    let phase = |name: &str| -> Vec<usize> {
        let mut clients = vec![];
        for &c in &cpus {
            clients.push(std::thread::spawn(move || {
                cpu::pin_to(c).unwrap();
                (0..PER_CPU)
                    .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                    .collect::<Vec<_>>()
            }));
        }
        let _streams: Vec<_> = clients.into_iter().map(|t| t.join().unwrap()).collect();
        let mut per_worker = vec![0usize; workers];
        let mut per_cpu = vec![0usize; cpus.len()];
        for n in 0..PER_CPU * cpus.len() {
            let [kind, k, incoming, here] =
                receive(results, deadline, &format!("{name}: accept {n}"));
            assert_eq!(kind, ACCEPTED);
            assert_eq!(
                incoming, here,
                "{name}: accept {n} by worker {k}: not local"
            );
            per_worker[usize::try_from(k).unwrap()] += 1;
            per_cpu[cpus
                .iter()
                .position(|&c| i32::try_from(c) == Ok(here))
                .unwrap()] += 1;
        }
        assert_eq!(per_cpu, vec![PER_CPU; cpus.len()], "{name}");
        per_worker
    };
    let per_worker = phase("all spawned");
    // The first to spawn (the last forked, at index 0 of the group) closes its listener: the
    // last to join (the first forked, on another CPU) takes index 0. Until the group changes
    // again that one is left out, and its CPU's connections go to its CPU's other worker.
    let (closing, moved) = (workers - 1, 0);
    assert_eq!(sys::write(gos[closing], b"c"), Ok(1));
    let r = receive(results, deadline, "the close");
    assert_eq!(r, [CLOSED, i32::try_from(closing).unwrap(), 1, 0]);
    let after = phase("one listener closed");
    assert_eq!((after[closing], after[moved]), (0, 0), "{after:?}");
    for child in children {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        process::reap(child).unwrap();
    }
    for fd in gos.into_iter().chain([results, l]) {
        sys::close(fd).unwrap();
    }
    eprintln!("accepts per worker (fork order): {per_worker:?}, then {after:?}, all local");
}

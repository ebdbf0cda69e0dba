//! Accept/close churn: what the preload shim costs a server that does little else.
//!
//! * `churn server N`: listens on 127.0.0.1:0 (prints `port P`), then an epoll + accept4 loop
//!   that closes every connection at once (with a reset: no TIME_WAIT piles up across runs),
//!   until N were accepted. Plain libc calls, so
//!   whatever is preloaded sees them.
//! * `churn client PORT N`: N sequential connections, each waiting for the server's close.
//! * `churn server N WORKERS`: the same listener, served by WORKERS forked processes (each
//!   its own epoll set, as nginx's workers), until N were accepted in all.
//! * `churn client PORT N [THREADS]`: the client, on THREADS threads (N in all).
//! * `churn locality N [ROUNDS] [WORKERS]`: the forked server, traced, with the shared
//!   listener, with plain SO_REUSEPORT (the emulation, unpinned, hashed), and in fastsocket
//!   mode (pinned, steered by SO_INCOMING_CPU, then by the classic-BPF program); a client
//!   thread per CPU. Prints throughput, server CPU and the fraction of local accepts (the
//!   kernel processed the connection on the CPU the accepting worker ran on).
//! * `churn bench N [ROUNDS]`: the server natively, under the shim in trace mode, under the
//!   shim in fastsocket mode and under `strace -f -e trace=%network,/^epoll`, ROUNDS rounds
//!   interleaved (each round starting with another mode), the client always native; prints the median time of each and its ratio to
//!   native, and checks the trace mode recorded every accept.

#[path = "locality.rs"]
mod locality;
#[path = "../tests/servers/mod.rs"]
mod servers;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use servers::process::Group;

fn server(n: usize, workers: usize) {
    if workers > 0 {
        return forked_server(n, workers);
    }
    let (fd, port) = listen_loopback();
    println!("port {port}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let ep = epoll_in(&[(fd, 0)]);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    let mut accepted = 0;
    while accepted < n {
        // SAFETY: our epoll set and a buffer of 16 events.
        if unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 16, -1) } <= 0 {
            continue;
        }
        while accept_reset(fd) {
            accepted += 1;
        }
    }
}

/// An epoll set watching each of `fds` for input, with its tag.
fn epoll_in(fds: &[(i32, u64)]) -> i32 {
    // SAFETY: an epoll set of our own; each event lives for its call.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        for &(fd, tag) in fds {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: tag,
            };
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev);
        }
        ep
    }
}

/// Accepts one connection queued on the non-blocking listener `fd` and closes it with a
/// reset; false when none is queued.
fn accept_reset(fd: i32) -> bool {
    // SAFETY: fd is our listener; accept4 takes null address pointers.
    let c = unsafe { libc::accept4(fd, null_mut(), null_mut(), libc::SOCK_CLOEXEC) };
    if c < 0 {
        return false;
    }
    reset_close(c);
    true
}

/// Listens on 127.0.0.1:0; returns the fd and the port.
fn listen_loopback() -> (i32, u16) {
    // SAFETY: plain libc calls on an fd this process owns and stack buffers.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 4096), 0);
        libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len);
        (fd, u16::from_be(sin.sin_port))
    }
}

/// The listener served by `workers` forked processes until `n` accepts in all (counted in
/// shared memory); the first worker done closes a pipe that ends the others.
fn forked_server(n: usize, workers: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (fd, port) = listen_loopback();
    // SAFETY: plain libc calls: a shared anonymous page for the counter, a pipe, fork, and
    // each worker's epoll loop on fds it inherited.
    unsafe {
        let page = libc::mmap(
            null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        let count = &*(page as *const AtomicUsize);
        let mut stop = [0i32; 2];
        assert_eq!(libc::pipe2(stop.as_mut_ptr(), libc::O_CLOEXEC), 0);
        // Each worker says it registered the listener (so has its own, in fastsocket mode):
        // a connection made before would be queued on the master's and reset at its retiring.
        let mut ready = [0i32; 2];
        assert_eq!(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC), 0);
        for _ in 0..workers {
            if libc::fork() != 0 {
                continue;
            }
            libc::close(stop[1]);
            let ep = epoll_in(&[(fd, 0), (stop[0], 1)]);
            assert_eq!(libc::write(ready[1], b"r".as_ptr().cast(), 1), 1);
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
            loop {
                let got = libc::epoll_wait(ep, events.as_mut_ptr(), 16, -1);
                if got <= 0 {
                    continue;
                }
                if events[..got as usize].iter().any(|e| e.u64 == 1) {
                    libc::_exit(0);
                }
                while accept_reset(fd) {
                    if count.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                        // exit, not _exit: the shim's destructor runs.
                        libc::exit(0);
                    }
                }
            }
        }
        libc::close(ready[1]);
        let mut byte = 0u8;
        for _ in 0..workers {
            assert_eq!(libc::read(ready[0], (&mut byte as *mut u8).cast(), 1), 1);
        }
        println!("port {port}");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let mut status = 0;
        libc::wait(&mut status);
        libc::close(stop[1]);
        while libc::wait(&mut status) > 0 {}
    }
}

/// Closes a connection with a reset (linger 0): no TIME_WAIT piles up across runs.
fn reset_close(c: i32) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: c is a connection this process accepted; linger lives for the call.
    unsafe {
        libc::setsockopt(
            c,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
        libc::close(c);
    }
}

/// `n` connections from `threads` threads at once (one connection at a time each).
fn client_threads(port: u16, n: usize, threads: usize) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = n / threads + usize::from(t < n % threads);
            std::thread::spawn(move || client(port, share))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn client(port: u16, n: usize) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1];
    for _ in 0..n {
        match TcpStream::connect(("127.0.0.1", port)) {
            // Wait for the server's close (a reset), so connections are made one at a time.
            Ok(mut s) => {
                let _ = s.read(&mut buf);
            }
            // The server accepted and reset it before connect() returned: done too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect: {e}"),
        }
    }
    start.elapsed()
}

/// Starts the server (optionally wrapped), runs the client; returns the client's wall time
/// and the server's CPU time (user + system).
fn run(mode: &str, n: usize, lib: &str, trace_dir: &std::path::Path) -> (Duration, Duration) {
    let me = std::env::current_exe().unwrap();
    let mut cmd = match mode {
        "strace" => {
            let mut c = Command::new("strace");
            // strace 6 has no %epoll class: the epoll_* calls by name pattern.
            c.args([
                "-f",
                "-qq",
                "-e",
                "trace=%network,/^epoll",
                "-o",
                "/dev/null",
            ])
            .arg(&me);
            c
        }
        _ => Command::new(&me),
    };
    cmd.args(["server", &n.to_string()])
        .env_remove("EPOLLSCOPE_TRACE")
        .env_remove("EPOLLSCOPE_FASTPATH");
    match mode {
        "trace" => {
            cmd.env("LD_PRELOAD", lib)
                .env("EPOLLSCOPE_TRACE", format!("dir:{}", trace_dir.display()));
        }
        "fastsocket" => {
            cmd.env("LD_PRELOAD", lib)
                .env("EPOLLSCOPE_FASTPATH", "emulated");
        }
        _ => {}
    }
    let (server, port) = start_server(&mut cmd);
    let took = client(port, n);
    (took, server_cpu(server, &format!("{mode} server")))
}

/// Starts the churn server by `cmd`, in a process group of its own that is killed if this
/// program fails first; the port from its first line.
fn start_server(cmd: &mut Command) -> (Group, u16) {
    let mut server = Group::spawn(cmd.stdout(Stdio::piped())).expect("start the server");
    let mut line = String::new();
    BufReader::new(server.child_mut().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    (server, port)
}

/// Waits for the server to exit 0 (`what` names it if it does not): its CPU time, user +
/// system.
fn server_cpu(mut server: Group, what: &str) -> Duration {
    // wait4 rather than Child::wait: the server's own CPU time comes with it.
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are valid for writes; the pid is our child's.
    if unsafe { libc::wait4(server.pid(), &mut status, 0, &mut usage) } == server.pid() {
        server.reaped_elsewhere();
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} failed: {status}"
    );
    let cpu = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    cpu(usage.ru_utime) + cpu(usage.ru_stime)
}

fn bench(n: usize, rounds: usize) {
    let lib = locality::shim_library("churn");
    let trace_dir = std::env::temp_dir().join(format!("churn-trace-{}", std::process::id()));
    let modes = ["native", "trace", "fastsocket", "strace"];
    let mut times: Vec<Vec<Duration>> = vec![vec![]; modes.len()];
    let mut cpus: Vec<Vec<Duration>> = vec![vec![]; modes.len()];
    for round in 0..rounds {
        // Each round starts with a different mode, so none always runs first.
        for k in 0..modes.len() {
            let i = (round + k) % modes.len();
            let mode = &modes[i];
            let _ = std::fs::remove_dir_all(&trace_dir);
            std::fs::create_dir_all(&trace_dir).unwrap();
            let (t, cpu) = run(mode, n, &lib, &trace_dir);
            if *mode == "trace" {
                // The shim's files are mapped and sparse: read only what was written.
                let text = std::fs::read_dir(&trace_dir)
                    .unwrap()
                    .flatten()
                    .map(|e| epollscope::shim::merge::read_written(&e.path()).unwrap())
                    .collect::<Vec<_>>();
                let accepts = text
                    .iter()
                    .flat_map(|bytes| epollscope::shim::merge::lines(bytes))
                    .map(String::from_utf8_lossy)
                    .filter(|l| l.contains("\"call\":\"accept4\"") && l.contains("\"ok\""))
                    .count();
                assert_eq!(accepts, n, "traced accepts");
            }
            eprintln!(
                "round {round} {mode:<10} {:.3} s, server CPU {:.3} s",
                t.as_secs_f64(),
                cpu.as_secs_f64()
            );
            times[i].push(t);
            cpus[i].push(cpu);
        }
    }
    let _ = std::fs::remove_dir_all(&trace_dir);
    let median = locality::median;
    let base = median(&mut times[0].clone());
    let base_cpu = median(&mut cpus[0].clone());
    println!("accept/close churn, {n} connections, median of {rounds} rounds");
    println!(
        "{:<12}{:>10}{:>12}{:>8}{:>14}{:>8}",
        "server", "wall s", "conn/s", "ratio", "server CPU s", "ratio"
    );
    for (i, mode) in modes.iter().enumerate() {
        let t = median(&mut times[i]);
        let c = median(&mut cpus[i]);
        println!(
            "{mode:<12}{:>10.3}{:>12.0}{:>7.2}x{:>14.3}{:>7.2}x",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            t.as_secs_f64() / base.as_secs_f64(),
            c.as_secs_f64(),
            c.as_secs_f64() / base_cpu.as_secs_f64()
        );
    }
}

fn run_locality(
    env: &[(&str, &str)],
    n: usize,
    workers: usize,
    lib: &str,
    dir: &std::path::Path,
) -> locality::Run {
    let me = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&me);
    cmd.args(["server", &n.to_string(), &workers.to_string()])
        .env_remove("EPOLLSCOPE_FASTPATH")
        .env("LD_PRELOAD", lib)
        .env("EPOLLSCOPE_TRACE", format!("dir:{}", dir.display()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (server, port) = start_server(&mut cmd);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let wall = client_threads(port, n, threads);
    let cpu = server_cpu(server, "server");
    let (events, _) = epollscope::shim::merge::read_dir(dir).expect("the trace");
    let summary = epollscope::shim::merge::Summary::of(&events);
    let accepted: usize = summary.accepts.values().sum();
    assert_eq!(accepted, n, "traced accepts");
    locality::Run { wall, cpu, summary }
}

fn locality(n: usize, rounds: usize, workers: usize) {
    let lib = locality::shim_library("churn");
    let dir = std::env::temp_dir().join(format!("churn-locality-{}", std::process::id()));
    let mut tallies = locality::rounds(rounds, |_, i| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run_locality(locality::SETUPS[i].1, n, workers, &lib, &dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "locality, {n} connections, {workers} traced workers, {threads} client threads, median of {rounds} rounds"
    );
    locality::print("conn/s", n, &mut tallies);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("server") => server(num(1, 100_000), num(2, 0)),
        Some("locality") => locality(num(1, 20_000), num(2, 3), num(3, 4)),
        Some("client") => {
            let port = u16::try_from(num(1, 0)).expect("a port");
            let t = client_threads(port, num(2, 100_000), num(3, 1).max(1));
            println!("{:.3} s", t.as_secs_f64());
        }
        Some("bench") => bench(num(1, 100_000), num(2, 3)),
        _ => {
            eprintln!(
                "usage: churn server N [WORKERS] | client PORT N [THREADS] | bench N [ROUNDS] | locality N [ROUNDS] [WORKERS]"
            );
            std::process::exit(2);
        }
    }
}

//! Accept/close churn: what the preload shim costs a server that does little else.
//!
//! * `churn server N`: listens on 127.0.0.1:0 (prints `port P`), then an epoll + accept4 loop
//!   that closes every connection at once (with a reset: no TIME_WAIT piles up across runs),
//!   until N were accepted. Plain libc calls, so
//!   whatever is preloaded sees them.
//! * `churn client PORT N`: N sequential connections, each waiting for the server's close.
//! * `churn bench N [ROUNDS]`: the server natively, under the shim in trace mode, under the
//!   shim in fastsocket mode and under `strace -f -e trace=%network,/^epoll`, ROUNDS rounds
//!   interleaved (each round starting with another mode), the client always native; prints the median time of each and its ratio to
//!   native, and checks the trace mode recorded every accept.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server(n: usize) {
    // SAFETY: plain libc calls on fds this process owns and stack buffers.
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
        println!("port {}", u16::from_be(sin.sin_port));
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev);
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        let mut accepted = 0;
        while accepted < n {
            if libc::epoll_wait(ep, events.as_mut_ptr(), 16, -1) <= 0 {
                continue;
            }
            loop {
                let c = libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                );
                if c < 0 {
                    break;
                }
                // Close with a reset (linger 0): no TIME_WAIT left behind, so a run does not
                // slow down the ones after it with 100k lingering sockets.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                libc::setsockopt(
                    c,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                );
                libc::close(c);
                accepted += 1;
            }
        }
    }
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
        .stdout(Stdio::piped())
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
    // Reaped below with wait4 (for its CPU time), which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    let took = client(port, n);
    // wait4 rather than Child::wait: the server's own CPU time comes with it.
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are valid for writes; the pid is our child's.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{mode} server failed: {status}"
    );
    let cpu = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (took, cpu(usage.ru_utime) + cpu(usage.ru_stime))
}

fn bench(n: usize, rounds: usize) {
    let lib = match std::env::var("EPOLLSCOPE_PRELOAD") {
        Ok(p) => p,
        Err(_) => epollscope::shim::preload_path()
            .expect("the shim library")
            .display()
            .to_string(),
    };
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
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("server") => server(num(1, 100_000)),
        Some("client") => {
            let t = client(num(1, 0) as u16, num(2, 100_000));
            println!("{:.3} s", t.as_secs_f64());
        }
        Some("bench") => bench(num(1, 100_000), num(2, 3)),
        _ => {
            eprintln!("usage: churn server N | client PORT N | bench N [ROUNDS]");
            std::process::exit(2);
        }
    }
}

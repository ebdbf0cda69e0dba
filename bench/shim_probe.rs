//! A small C-style program for testing the preload shim: it makes plain libc calls (so they go
//! through whatever is preloaded) and prints what it saw, so a test can compare a run under
//! the shim with a native one.
//!
//! * `threads N M`: N threads each accept M loopback connections on their own listener while
//!   the main thread forks a child that accepts M more; prints `accepts TOTAL`.
//! * `errno`: makes calls that fail (and one that succeeds with errno preset) and prints the
//!   errno each left, one per line.
//! * `serve-fork W`: a master listens on 127.0.0.1:0, forks W workers that register the
//!   listener in epoll and accept; prints `port P` and `ready`, then serves until stdin closes.
//! * `prefork W N`: the same server, driven by itself: once every worker says it is ready,
//!   the master makes N connections, each
//!   answered by a worker, then stops the workers cleanly (they exit, so traces are complete).
//!   Workers accept non-blocking after every wake, so a woken loser sees EAGAIN: the herd.
//!   `prefork-spawn W N`: the same, with a CLONE_VM child (as vfork makes) that closes every
//!   fd, the listener included, and execs /bin/true between the listen and the forks.
//! * `sweep`, `spawn DIR`, `pending-sigpipe`, `signals N`, `killable N`: the shim must be
//!   invisible to its host; see shim_probe_host.rs.

#[path = "shim_probe_host.rs"]
mod host;

use std::io::{BufRead, Write};
use std::net::TcpStream;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(v: i32) {
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = v };
}

/// A loopback listener on an ephemeral port: (fd, port).
pub fn listener() -> (i32, u16) {
    // SAFETY: plain libc calls on our own fd and a stack sockaddr.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", errno());
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 128), 0);
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut glen = len;
        libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut glen);
        (fd, u16::from_be(got.sin_port))
    }
}

/// Makes and accepts `m` connections on a fresh listener; returns how many were accepted.
fn accept_loop(m: usize) -> usize {
    let (fd, port) = listener();
    let mut accepted = 0;
    for _ in 0..m {
        let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // SAFETY: accept4 with NULL address pointers on our listener.
        let c = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c >= 0 {
            accepted += 1;
            // SAFETY: closing the fd accept4 just gave us.
            unsafe { libc::close(c) };
        }
        drop(client);
    }
    // SAFETY: closing our listener.
    unsafe { libc::close(fd) };
    accepted
}

fn threads(n: usize, m: usize) {
    let handles: Vec<_> = (0..n)
        .map(|_| std::thread::spawn(move || accept_loop(m)))
        .collect();
    // Fork while the threads are busy: the child must not inherit a held trace lock.
    // SAFETY: the child only makes libc calls and exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let got = accept_loop(m);
        std::process::exit(if got == m { 0 } else { 1 });
    }
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let child_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    println!(
        "accepts {} child {}",
        total + if child_ok { m } else { 0 },
        child
    );
}

fn errno_checks() {
    // SAFETY: calls that fail on bad arguments; bad pointers are rejected by the kernel.
    unsafe {
        set_errno(0);
        libc::close(-1);
        println!("close(-1) {}", errno());
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        libc::accept4(devnull, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        println!("accept4(file) {}", errno());
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        // An address in the unmapped first page: the kernel answers EFAULT.
        libc::bind(s, std::ptr::dangling::<libc::sockaddr>(), 16);
        println!("bind(EFAULT) {}", errno());
        let (l, port) = listener();
        libc::close(l);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        libc::connect(s, (&sin as *const libc::sockaddr_in).cast(), 16);
        println!("connect(closed port) {}", errno());
        libc::epoll_ctl(-1, libc::EPOLL_CTL_ADD, s, std::ptr::null_mut());
        println!("epoll_ctl(-1) {}", errno());
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
        libc::epoll_wait(devnull, evs.as_mut_ptr(), 1, 0);
        println!("epoll_wait(file) {}", errno());
        // A successful call leaves errno as it was.
        let (l2, _) = listener();
        set_errno(12345);
        libc::shutdown(l2, libc::SHUT_RDWR);
        let after_ok = errno();
        set_errno(54321);
        let d = libc::dup(l2);
        println!("errno kept across success {after_ok} {}", errno());
        libc::close(d);
        libc::close(l2);
        libc::close(s);
        libc::close(devnull);
    }
}

fn serve_fork(workers: usize) {
    let (fd, port) = listener();
    let mut pids = vec![];
    for _ in 0..workers {
        // SAFETY: the child runs an accept loop with libc calls only, then _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            worker(fd);
        }
        pids.push(pid);
    }
    println!("port {port}");
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Serve until the test closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    for pid in pids {
        // SAFETY: signalling and reaping our own children.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

fn worker(fd: i32) -> ! {
    // SAFETY: epoll and accept on fds this process owns.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        loop {
            if libc::epoll_wait(ep, evs.as_mut_ptr(), 8, -1) > 0 {
                let c = libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0);
                if c >= 0 {
                    let pid = libc::getpid().to_string();
                    libc::write(c, pid.as_ptr().cast(), pid.len());
                    libc::close(c);
                }
            }
        }
    }
}

fn prefork(workers: usize, connections: usize, spawn: bool) {
    let (fd, port) = listener();
    if spawn {
        // A child sharing our memory closes every fd, the listener included, and execs.
        host::spawn_shared_vm();
    }
    // SAFETY: fcntl on our own listener.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut quit = [0i32; 2];
    let mut ready = [0i32; 2];
    // SAFETY: pipe fills the two-element arrays.
    unsafe {
        libc::pipe2(quit.as_mut_ptr(), libc::O_CLOEXEC);
        libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC);
    }
    let mut pids = vec![];
    for _ in 0..workers {
        // SAFETY: the child runs libc calls only and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: closing the child's copy of the write end.
            unsafe { libc::close(quit[1]) };
            prefork_worker(fd, quit[0], ready[1]);
        }
        pids.push(pid);
    }
    // Serve only once every worker is in its event loop, as a real server's readiness would
    // say: a connection queued before that can be reset when the fast path hands the
    // listener over to the workers (unless net.ipv4.tcp_migrate_req=1).
    let mut byte = [0u8; 1];
    for _ in 0..workers {
        // SAFETY: reading one byte into a live buffer.
        unsafe { libc::read(ready[0], byte.as_mut_ptr().cast(), 1) };
    }
    let mut served = 0;
    for _ in 0..connections {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut pid = String::new();
        if std::io::Read::read_to_string(&mut s, &mut pid).is_ok() && !pid.is_empty() {
            served += 1;
        }
    }
    // SAFETY: closing the write end tells every worker to exit; then reap them.
    unsafe {
        libc::close(quit[1]);
        for pid in pids {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    println!("served {served} of {connections}");
}

fn prefork_worker(fd: i32, quit: i32, ready: i32) -> ! {
    // SAFETY: epoll, accept and close on fds this process owns.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        for (watched, tag) in [(fd, 0u64), (quit, 1)] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: tag,
            };
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, watched, &mut ev);
        }
        libc::write(ready, b"r".as_ptr().cast(), 1);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        loop {
            let n = libc::epoll_wait(ep, evs.as_mut_ptr(), 4, -1);
            for ev in evs.iter().take(n.max(0) as usize) {
                if ev.u64 == 1 {
                    std::process::exit(0);
                }
                let c = libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0);
                if c >= 0 {
                    let pid = libc::getpid().to_string();
                    libc::write(c, pid.as_ptr().cast(), pid.len());
                    libc::close(c);
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(4);
    match args.first().map(String::as_str) {
        Some("threads") => threads(num(1), num(2)),
        Some("errno") => errno_checks(),
        Some("serve-fork") => serve_fork(num(1)),
        Some("prefork") => prefork(num(1), num(2), false),
        Some("prefork-spawn") => prefork(num(1), num(2), true),
        Some("sweep") => host::sweep(),
        Some("spawn") => host::spawn(args.get(1).map_or("/tmp", String::as_str)),
        Some("pending-sigpipe") => host::pending_sigpipe(),
        Some("signals") => host::signals(num(1)),
        Some("killable") => host::killable(num(1)),
        _ => {
            eprintln!(
                "usage: shim_probe threads N M | errno | serve-fork W | prefork W N | \
                 prefork-spawn W N | sweep | spawn DIR | pending-sigpipe | signals N | killable N"
            );
            std::process::exit(2);
        }
    }
}

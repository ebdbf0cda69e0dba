//! The emulated Fastsocket backend with real processes: a master listens, forked workers
//! register the listener in epoll and get their own (listen_spawn), and every connection is
//! accepted by a worker — none is stranded on the master's inherited listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use epollscope::fastpath::emulated::EmulatedBackend;
use epollscope::fastpath::{EmulationOptions, FastPath, PeerAddr, Spawn};
use epollscope::sys;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe};

/// Listens on 127.0.0.1:0 through the backend, as the shim does for bind + listen.
fn master_listener(fp: &EmulatedBackend) -> (i32, u16) {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    fp.before_bind(fd);
    let addr = epollscope::SockAddr::ip("127.0.0.1:0".parse().unwrap());
    sys::bind(fd, &sys::RawAddr::from(&addr)).unwrap();
    fp.listen(fd, 128).unwrap();
    let port = sys::getsockname(fd).unwrap().port().unwrap();
    (fd, port)
}

fn inode(fd: i32) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0)
}

/// A worker: spawn at epoll_ctl(ADD), report "spawned PID INODE", then accept forever,
/// answering each connection with one byte and reporting "accepted PID".
fn worker(fp: &EmulatedBackend, listener: i32, report: &OwnedFd) -> ! {
    use std::os::fd::AsRawFd;
    let say = |line: String| {
        let _ = sys::write(report.as_raw_fd(), line.as_bytes());
    };
    let pid = std::process::id();
    let ep = sys::epoll_create1(libc::EPOLL_CLOEXEC).unwrap();
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: listener as u64,
    };
    let (res, spawn) = fp.epoll_ctl(ep, libc::EPOLL_CTL_ADD, listener, Some(&mut ev));
    res.unwrap();
    say(format!("spawned {pid} {} {spawn:?}\n", inode(listener)));
    loop {
        if sys::epoll_wait(ep, 4, -1, false).is_err() {
            continue;
        }
        let mut peer = PeerAddr::default();
        if let Ok(c) = fp.accept4(listener, Some(&mut peer), libc::SOCK_NONBLOCK) {
            say(format!("accepted {pid}\n"));
            let _ = sys::write(c, b"x");
            let _ = sys::close(c);
        }
    }
}

/// Kills and reaps the workers however the test ends, so a failed assertion leaves no process
/// holding the test's output open.
struct Workers(Vec<Pid>);

impl Drop for Workers {
    fn drop(&mut self) {
        for &w in &self.0 {
            let _ = kill(w, Signal::SIGKILL);
            let _ = waitpid(w, None);
        }
    }
}

#[test]
fn workers_spawn_their_own_listeners_and_the_master_listener_gets_nothing() {
    let fp = EmulatedBackend::new(EmulationOptions::default());
    let (listener, port) = master_listener(&fp);
    let master_inode = inode(listener);
    let (report_rx, report_tx) = pipe().unwrap();
    let mut workers = Workers(vec![]);
    for _ in 0..2 {
        // SAFETY: the child only makes system calls and writes to a pipe, then _exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => worker(&fp, listener, &report_tx),
            ForkResult::Parent { child } => workers.0.push(child),
        }
    }
    drop(report_tx);
    let mut reports = std::fs::File::from(report_rx);
    let mut text = String::new();
    let mut buf = [0u8; 512];
    // Wait (on the pipe, not a timer) until both workers say they have their listener.
    while text.matches("spawned").count() < 2 {
        let n = reports.read(&mut buf).unwrap();
        assert!(n > 0, "workers died: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let inodes: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("spawned"))
        .map(|l| l.split(' ').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(text.contains("Spawned"), "{text}");
    assert_ne!(inodes[0], inodes[1], "{text}");
    assert!(!inodes.contains(&master_inode), "{text}");
    // The master's listener left the reuseport group: it is bound but not listening.
    assert_eq!(
        sys::getsockopt_int(listener, libc::SOL_SOCKET, libc::SO_ACCEPTCONN),
        Ok(0)
    );

    // Every connection is answered: none waits on a listener nobody accepts on.
    let connections = 40;
    for i in 0..connections {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one)
            .unwrap_or_else(|e| panic!("connection {i} not accepted: {e}"));
    }
    while text.matches("accepted").count() < connections {
        let n = reports.read(&mut buf).unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    for w in &workers.0 {
        let by_w = text.matches(&format!("accepted {w}\n")).count();
        assert!(by_w > 0, "worker {w} accepted nothing: {text}");
    }

    // A master that serves too registers its listener: it listens again.
    let ep = sys::epoll_create1(libc::EPOLL_CLOEXEC).unwrap();
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    let (res, spawn) = fp.epoll_ctl(ep, libc::EPOLL_CTL_ADD, listener, Some(&mut ev));
    res.unwrap();
    assert_eq!(spawn, Spawn::NotNeeded);
    assert_eq!(
        sys::getsockopt_int(listener, libc::SOL_SOCKET, libc::SO_ACCEPTCONN),
        Ok(1)
    );

    drop(workers);
    // With the workers gone, the master's listener takes connections again.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"bye").unwrap();
    let mut peer = PeerAddr::default();
    let c = fp.accept4(listener, Some(&mut peer), 0).unwrap();
    sys::close(c).unwrap();
}

#[test]
fn accept4_keeps_its_flags_and_spawn_keeps_fd_flags() {
    let fp = EmulatedBackend::new(EmulationOptions::default());
    let (listener, port) = master_listener(&fp);
    // SAFETY: F_SETFL/F_SETFD with integer flags on our own fd.
    unsafe {
        libc::fcntl(listener, libc::F_SETFL, libc::O_NONBLOCK);
        libc::fcntl(listener, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let c = fp
        .accept4(listener, None, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .unwrap();
    // SAFETY: F_GETFL/F_GETFD read flags only.
    let (fl, fdfl) = unsafe { (libc::fcntl(c, libc::F_GETFL), libc::fcntl(c, libc::F_GETFD)) };
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
    sys::close(c).unwrap();

    // A spawn in the listening process itself is what a worker would do: test the copy.
    let before = inode(listener);
    fp.spawn_listen(listener, -1).unwrap();
    assert_ne!(inode(listener), before);
    // SAFETY: as above.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(listener, libc::F_GETFL),
            libc::fcntl(listener, libc::F_GETFD),
        )
    };
    assert_ne!(fl & libc::O_NONBLOCK, 0);
    assert_ne!(fdfl & libc::FD_CLOEXEC, 0);
    assert_eq!(
        sys::getsockopt_int(listener, libc::SOL_SOCKET, libc::SO_REUSEPORT),
        Ok(1)
    );
    assert_eq!(sys::getsockname(listener).unwrap().port(), Some(port));
    assert_eq!(
        fp.accept4(listener, None, 0),
        Err(nix::errno::Errno::EAGAIN)
    );
    // SAFETY: the fd is ours and not used again.
    drop(unsafe { OwnedFd::from_raw_fd(listener) });
}

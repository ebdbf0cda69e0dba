//! shim_probe's modes that check the shim is invisible to its host (see shim_probe.rs):
//!
//! * `sweep`: sweeps fds the ways programs do (close 3..1024, dup2 over 3..1023, close_range
//!   through libc and through a raw system call) and prints what each saw, then makes one
//!   traced call, `close(-77)`, to show tracing goes on.
//! * `spawn DIR`: a child sharing the parent's memory (clone with CLONE_VM | CLONE_VFORK, as
//!   posix_spawn and vfork do) closes every fd, dup2s and execs /bin/true; then the parent
//!   opens 800 files in DIR, makes 300 traced calls (`close(-78)`), and prints whether its
//!   files stayed empty.
//! * `pending-sigpipe`: blocks SIGPIPE, makes one pending, and execs `cat /proc/self/status`
//!   (the mask and the pending signal survive exec), which shows whether SIGPIPE is still
//!   pending and blocked: a notice the shim writes to a dead pipe must not take the host's.
//! * `signals N`: N times, a helper thread waits until the main thread is asleep in accept
//!   and sends it SIGUSR1, whose handler calls `close(-79)`; prints `interrupted N`.
//! * `killable N`: makes N traced calls (`close(-80)`), prints `done`, then waits to be
//!   killed.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn open_null() -> i32 {
    // SAFETY: a NUL-terminated path literal.
    unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) }
}

pub fn sweep() {
    println!("first fd {}", open_null());
    let mut closed = 0;
    for fd in 3..1024 {
        // SAFETY: closing numbers, some of which are not open (EBADF), as a sweeping program does.
        if unsafe { libc::close(fd) } == 0 {
            closed += 1;
        }
    }
    println!("close sweep: {closed} closed, next fd {}", open_null());
    let mut duped = 0;
    for fd in 3..1024 {
        // SAFETY: dup2 of stdin over each number.
        if unsafe { libc::dup2(0, fd) } == fd {
            duped += 1;
        }
    }
    // SAFETY: close_range of everything above stderr, through the C library.
    let r = unsafe { libc::close_range(3, u32::MAX, 0) };
    println!(
        "dup2 sweep: {duped} duped, close_range {r}, next fd {}",
        open_null()
    );
    for fd in 3..600 {
        // SAFETY: dup2 of stdin over each number.
        unsafe { libc::dup2(0, fd) };
    }
    // SAFETY: the raw system call, which no preloaded library can see.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    println!("raw close_range {r}, next fd {}", open_null());
    // SAFETY: a close that fails, traced.
    let r = unsafe { libc::close(-77) };
    println!("close(-77) {r} {}", errno());
}

/// The shared-memory child: closes every fd, dup2s, execs /bin/true (or exits 127).
extern "C" fn spawned(_: *mut libc::c_void) -> libc::c_int {
    // SAFETY: fd calls and exec, as posix_spawn's child makes them; nothing touches the
    // parent's memory but the stack this child was given.
    unsafe {
        for fd in 3..1024 {
            libc::close(fd);
        }
        libc::dup2(2, 1);
        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        libc::execv(c"/bin/true".as_ptr(), argv.as_ptr());
        libc::_exit(127)
    }
}

/// Runs `spawned` as a CLONE_VM | CLONE_VFORK child and reaps it: its pid and wait status.
pub fn spawn_shared_vm() -> (i32, i32) {
    let mut stack = vec![0u8; 256 << 10];
    // SAFETY: the child runs `spawned` on its own stack (the top of `stack`, which outlives
    // it: CLONE_VFORK suspends this thread until the child execs or exits).
    let pid = unsafe {
        libc::clone(
            spawned,
            stack.as_mut_ptr().add(stack.len()).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    assert!(pid > 0, "clone: {}", errno());
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    (pid, status)
}

pub fn spawn(dir: &str) {
    let (child, status) = spawn_shared_vm();
    let mut fds = vec![];
    for i in 0..800 {
        let path = std::ffi::CString::new(format!("{dir}/host.{i}")).unwrap();
        // SAFETY: a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            )
        };
        assert!(fd >= 0, "open: {}", errno());
        fds.push(fd);
    }
    for _ in 0..300 {
        // SAFETY: a close that fails, traced.
        unsafe { libc::close(-78) };
    }
    let written: u64 = (0..800)
        .map(|i| {
            std::fs::metadata(format!("{dir}/host.{i}"))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    for fd in fds {
        // SAFETY: closing our own files.
        unsafe { libc::close(fd) };
    }
    println!("child {child} status {status}, host files hold {written} bytes");
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid set.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
    }
    set
}

pub fn pending_sigpipe() {
    let set = sigpipe_set();
    // SAFETY: blocking SIGPIPE and raising it, so it stays pending across the exec below.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGPIPE);
    }
    // cat, not ourselves: Rust's runtime ignores SIGPIPE at start, which discards it.
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("cat").arg("/proc/self/status"),
    );
    panic!("exec: {err}");
}

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    // SAFETY: close is async-signal-safe; -79 fails with EBADF.
    unsafe { libc::close(-79) };
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Whether thread `tid` of this process is asleep in accept or accept4 (its /proc syscall
/// file names the system call a blocked task is in).
fn in_accept(tid: i32) -> bool {
    let text =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
    let nr = text.split(' ').next().unwrap_or("");
    nr == libc::SYS_accept.to_string() || nr == libc::SYS_accept4.to_string()
}

pub fn signals(n: usize) {
    let (fd, _) = crate::listener();
    // SAFETY: a handler without SA_RESTART, so the blocking accept returns EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    // SAFETY: gettid and pthread_self name this (main) thread.
    let (tid, me) = unsafe { (libc::gettid(), libc::pthread_self()) };
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..n {
                // Wait for the main thread to be back in accept after the previous round.
                while rounds.load(Ordering::SeqCst) != round || !in_accept(tid) {
                    std::thread::yield_now();
                }
                // SAFETY: signalling our own main thread.
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            }
        });
        let mut interrupted = 0;
        while interrupted < n {
            // SAFETY: a blocking accept on our own listener.
            let r = unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) };
            if r < 0 && errno() == libc::EINTR {
                interrupted += 1;
                rounds.store(interrupted, Ordering::SeqCst);
            }
        }
    });
    println!(
        "interrupted {n}, handled {}",
        HANDLED.load(Ordering::SeqCst)
    );
}

pub fn killable(n: usize) {
    for _ in 0..n {
        // SAFETY: a close that fails, traced.
        unsafe { libc::close(-80) };
    }
    println!("done");
    std::io::stdout().flush().unwrap();
    loop {
        // SAFETY: waits for a signal; the test kills us.
        unsafe { libc::pause() };
    }
}

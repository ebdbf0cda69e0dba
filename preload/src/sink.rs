//! Where trace lines go: a per-process buffer, appended to under a spin lock held only for the
//! copy of one pre-formatted line, and written out (outside the lock) when full, at exit,
//! before exec and before fork.
//!
//! A spin lock rather than a mutex because of fork: the prepare handler takes it and the
//! parent and child handlers release it, which a `std::sync::Mutex` cannot express. The child
//! starts with an empty buffer and writes to its own `trace.<pid>`, opened on first flush.
//! Writes use O_APPEND, so lines of concurrent flushes never interleave within a line.

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use epollscope::shim::TraceTarget;

/// The sink's fd is kept above the numbers programs use, out of the way of dup2 and closefrom.
const SINK_MIN_FD: i32 = 700;

pub struct Sink {
    target: TraceTarget,
    locked: AtomicBool,
    buf: UnsafeCell<Vec<u8>>,
    /// -1: not open yet (opened lazily, so a child that execs at once leaves no empty file).
    fd: AtomicI32,
    /// Flush once the buffer holds this many bytes (0: write every line).
    limit: AtomicUsize,
    /// Set once opening failed and was reported: lines are dropped, not retried each time.
    broken: AtomicBool,
}

// SAFETY: `buf` is only touched while `locked` is held (acquire/release), which serialises
// every access across threads.
unsafe impl Sync for Sink {}

impl Sink {
    pub fn new(target: TraceTarget, limit: usize) -> Sink {
        Sink {
            target,
            locked: AtomicBool::new(false),
            buf: UnsafeCell::new(Vec::with_capacity(limit.min(1 << 20))),
            fd: AtomicI32::new(-1),
            limit: AtomicUsize::new(limit),
            broken: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Takes the buffered bytes. Caller holds the lock.
    fn take(&self) -> Vec<u8> {
        // SAFETY: the caller holds the lock, so no other reference to buf exists.
        let buf = unsafe { &mut *self.buf.get() };
        let cap = buf.capacity();
        std::mem::replace(buf, Vec::with_capacity(cap))
    }

    /// Appends one line (with its newline); writes the buffer out when it is full.
    pub fn append(&self, line: &[u8]) {
        self.lock();
        // SAFETY: the lock is held.
        let buf = unsafe { &mut *self.buf.get() };
        buf.extend_from_slice(line);
        let full = buf.len() >= self.limit.load(Ordering::Relaxed);
        let out = if full { Some(self.take()) } else { None };
        self.unlock();
        if let Some(out) = out {
            self.write_out(&out);
        }
    }

    /// Writes out everything buffered.
    pub fn flush(&self) {
        self.lock();
        let out = self.take();
        self.unlock();
        self.write_out(&out);
    }

    /// From now on write every line at once (after the exit-time flush: later lines, from
    /// other libraries' destructors, would otherwise stay in the buffer).
    pub fn unbuffer(&self) {
        self.limit.store(0, Ordering::Relaxed);
    }

    /// Fork, in the prepare handler: write out and keep the lock over the fork.
    pub fn before_fork(&self) {
        self.lock();
        let out = self.take();
        self.write_out(&out);
    }

    pub fn after_fork_parent(&self) {
        self.unlock();
    }

    /// The child writes its own file: forget the parent's fd (still open, still the
    /// parent's file) and open its own now, while it still has its parent's credentials
    /// (servers switch their workers to an unprivileged user, who could not create it).
    pub fn after_fork_child(&self) {
        let old = self.fd.swap(-1, Ordering::Relaxed);
        if old >= 0 && !matches!(self.target, TraceTarget::Stderr) {
            // SAFETY: closing the child's copy of the sink's own fd.
            unsafe { libc::close(old) };
        }
        self.broken.store(false, Ordering::Relaxed);
        self.open();
        self.unlock();
    }

    /// Whether `fd` is the sink's; if so, moves the sink elsewhere so the host may have it.
    pub fn protect(&self, fd: i32) {
        if fd < 0 || self.fd.load(Ordering::Relaxed) != fd {
            return;
        }
        // SAFETY: duplicating the sink's own fd; the old number is left to the host's call.
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, fd + 1) };
        self.fd.store(moved, Ordering::Relaxed);
    }

    /// The host is closing fds `first..=last` (close_range, closefrom): if the sink's is
    /// among them, write out and let it go; the sink reopens on the next flush.
    pub fn release_if_in(&self, first: u32, last: u32) {
        let fd = self.fd.load(Ordering::Relaxed);
        if fd > 2 && (first..=last).contains(&(fd as u32)) {
            self.flush();
            self.fd.store(-1, Ordering::Relaxed);
        }
    }

    fn open(&self) -> i32 {
        let fd = self.fd.load(Ordering::Relaxed);
        if fd >= 0 || self.broken.load(Ordering::Relaxed) {
            return fd;
        }
        let opened = match &self.target {
            TraceTarget::Stderr => Ok(2),
            TraceTarget::Dir(dir) => open_file(&dir.join(format!("trace.{}", crate::pid()))),
            TraceTarget::Unix(path) => connect_unix(path),
        };
        match opened {
            Ok(fd) => {
                let fd = if fd > 2 { move_high(fd) } else { fd };
                // Another thread may have opened it meanwhile: keep the first, close ours.
                match self
                    .fd
                    .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => fd,
                    Err(theirs) => {
                        // SAFETY: closing the fd this call opened and nobody else saw.
                        unsafe { libc::close(fd) };
                        theirs
                    }
                }
            }
            Err(why) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    crate::say(&format!(
                        "cannot write the trace: {why}; tracing stops here"
                    ));
                }
                -1
            }
        }
    }

    fn write_out(&self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let fd = self.open();
        if fd < 0 {
            return;
        }
        while !data.is_empty() {
            // SAFETY: data is a live slice of data.len() bytes.
            let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            if n > 0 {
                data = &data[n as usize..];
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                return;
            }
        }
    }
}

fn move_high(fd: i32) -> i32 {
    // SAFETY: fcntl duplicating our own fd; the low one is closed only if that worked.
    unsafe {
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, SINK_MIN_FD);
        if high < 0 {
            return fd;
        }
        libc::close(fd);
        high
    }
}

fn open_file(path: &std::path::Path) -> Result<i32, String> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| "NUL in path".to_string())?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        Err(format!(
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ))
    } else {
        Ok(fd)
    }
}

fn connect_unix(path: &PathBuf) -> Result<i32, String> {
    let addr = epollscope::sys::RawAddr::from(&epollscope::SockAddr::unix(path));
    let fd = epollscope::sys::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        .map_err(|e| e.desc().to_string())?;
    match epollscope::sys::connect(fd, &addr) {
        Ok(()) => Ok(fd),
        Err(e) => {
            let _ = epollscope::sys::close(fd);
            Err(format!("{}: {}", path.display(), e.desc()))
        }
    }
}

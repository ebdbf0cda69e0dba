//! Where trace lines go. To a directory (what `epollscope trace` uses): each process image's
//! own mapped file ([`crate::mapped`]), which survives any death and holds no fd. To stderr or
//! a unix socket: a [`Stream`], a per-process buffer described below.
//!
//! A stream's buffer is appended to under a spin lock held only for the copy of one
//! pre-formatted line, and written out (outside the lock) when full, at exit, before exec and
//! before fork. Lines still buffered when the process is killed are lost: that is why the
//! directory target does not buffer.
//!
//! A spin lock rather than a mutex because of fork: the prepare handler takes it and the
//! parent and child handlers release it, which a `std::sync::Mutex` cannot express. The child
//! starts with an empty buffer and its own connection. The stream's fd is checked (device and
//! inode) before every write: if the program closed it or put something else at its number,
//! tracing stops with one notice rather than write into a descriptor that is not the shim's.

use std::cell::UnsafeCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use epollscope::shim::TraceTarget;

use crate::mapped::MappedLog;
use crate::os;

/// The sink's fd is kept above the numbers programs use, out of the way of dup2 and closefrom.
const SINK_MIN_FD: i32 = 700;

pub enum Sink {
    Dir(DirSink),
    Stream(Stream),
}

impl Sink {
    pub fn new(target: TraceTarget, limit: usize) -> Sink {
        match target {
            TraceTarget::Dir(dir) => Sink::Dir(DirSink::new(dir)),
            other => Sink::Stream(Stream::new(other, limit)),
        }
    }

    /// Makes this process's trace file now (a directory target), so that no fd is opened
    /// later while the program runs.
    pub fn start(&self, pid: i32) {
        if let Sink::Dir(d) = self {
            d.open(pid);
        }
    }

    pub fn append(&self, line: &[u8]) {
        match self {
            Sink::Dir(d) => d.append(line),
            Sink::Stream(s) => s.append(line),
        }
    }

    pub fn flush(&self) {
        if let Sink::Stream(s) = self {
            s.flush();
        }
    }

    pub fn unbuffer(&self) {
        if let Sink::Stream(s) = self {
            s.unbuffer();
        }
    }

    pub fn before_fork(&self) {
        if let Sink::Stream(s) = self {
            s.before_fork();
        }
    }

    pub fn after_fork_parent(&self) {
        if let Sink::Stream(s) = self {
            s.after_fork_parent();
        }
    }

    pub fn after_fork_child(&self) {
        match self {
            Sink::Dir(d) => d.after_fork_child(),
            Sink::Stream(s) => s.after_fork_child(),
        }
    }

    pub fn protect(&self, fd: i32) {
        if let Sink::Stream(s) = self {
            s.protect(fd);
        }
    }

    pub fn release_if_in(&self, first: u32, last: u32) {
        if let Sink::Stream(s) = self {
            s.release_if_in(first, last);
        }
    }
}

/// One mapped file per process image, created when the image starts (the constructor) or is
/// forked, so no fd is opened while the program runs.
pub struct DirSink {
    dir: PathBuf,
    log: AtomicPtr<MappedLog>,
    /// Set once creating the file failed and was reported.
    broken: AtomicBool,
}

impl DirSink {
    fn new(dir: PathBuf) -> DirSink {
        // Absolute, because servers chdir (php-fpm to /) before the first line is written.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        DirSink {
            dir,
            log: AtomicPtr::new(std::ptr::null_mut()),
            broken: AtomicBool::new(false),
        }
    }

    /// Creates this process's file now (the constructor, a forked child).
    pub fn open(&self, pid: i32) {
        if !self.log.load(Ordering::Acquire).is_null() || self.broken.load(Ordering::Relaxed) {
            return;
        }
        match MappedLog::create(&self.dir, pid) {
            Ok(log) => {
                let log = Box::into_raw(Box::new(log));
                if self
                    .log
                    .compare_exchange(
                        std::ptr::null_mut(),
                        log,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
                {
                    // SAFETY: log came from Box::into_raw above and was never published.
                    let log = unsafe { Box::from_raw(log) };
                    log.forget();
                }
            }
            Err(why) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    crate::say(&format!(
                        "cannot write the trace: {why}; tracing stops here"
                    ));
                }
            }
        }
    }

    fn append(&self, line: &[u8]) {
        let mut log = self.log.load(Ordering::Acquire);
        if log.is_null() {
            self.open(crate::pid());
            log = self.log.load(Ordering::Acquire);
        }
        // SAFETY: a published log is never freed (a forked child leaks its copy of the
        // parent's object rather than free what a signal handler might be using).
        if let Some(log) = unsafe { log.as_ref() } {
            log.append(line);
        }
    }

    /// The child gets its own file; the parent's mapping is unmapped in the child only.
    fn after_fork_child(&self) {
        let old = self.log.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in append: never freed, only forgotten.
        if let Some(old) = unsafe { old.as_ref() } {
            old.forget();
        }
        self.broken.store(false, Ordering::Relaxed);
        self.open(crate::pid());
    }
}

pub struct Stream {
    target: TraceTarget,
    locked: AtomicBool,
    buf: UnsafeCell<Vec<u8>>,
    /// -1: not open yet (opened lazily, so a child that execs at once leaves no empty file).
    fd: AtomicI32,
    /// Flush once the buffer holds this many bytes (0: write every line).
    limit: AtomicUsize,
    /// Set once opening failed and was reported: lines are dropped, not retried each time.
    broken: AtomicBool,
    /// Device and inode of `fd` when the stream opened it.
    dev: AtomicU64,
    ino: AtomicU64,
}

// SAFETY: `buf` is only touched while `locked` is held (acquire/release), which serialises
// every access across threads.
unsafe impl Sync for Stream {}

impl Stream {
    fn new(target: TraceTarget, limit: usize) -> Stream {
        Stream {
            target,
            locked: AtomicBool::new(false),
            buf: UnsafeCell::new(Vec::with_capacity(limit.min(1 << 20))),
            fd: AtomicI32::new(-1),
            limit: AtomicUsize::new(limit),
            broken: AtomicBool::new(false),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
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
        if old > 2 {
            os::close(old);
        }
        self.broken.store(false, Ordering::Relaxed);
        self.open();
        self.unlock();
    }

    /// Whether `fd` is the stream's; if so, moves the stream elsewhere and frees the number,
    /// so the host's close or dup2 on it gets what it would get without the shim.
    pub fn protect(&self, fd: i32) {
        if fd <= 2 || self.fd.load(Ordering::Relaxed) != fd {
            return;
        }
        // SAFETY: duplicating the stream's own fd.
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, fd + 1) };
        self.fd.store(moved, Ordering::Relaxed);
        os::close(fd);
        if moved < 0 {
            self.broken.store(true, Ordering::Relaxed);
        }
    }

    /// The host is closing fds `first..=last` (close_range, closefrom): if the sink's is
    /// among them, write out and let it go; the sink reopens on the next flush.
    pub fn release_if_in(&self, first: u32, last: u32) {
        let fd = self.fd.load(Ordering::Relaxed);
        if fd > 2 && (first..=last).contains(&(fd as u32)) {
            self.flush();
            self.fd.store(-1, Ordering::Relaxed);
            os::close(fd);
        }
    }

    fn open(&self) -> i32 {
        let fd = self.fd.load(Ordering::Relaxed);
        if fd >= 0 || self.broken.load(Ordering::Relaxed) {
            return fd;
        }
        let opened = match &self.target {
            TraceTarget::Stderr => Ok(2),
            TraceTarget::Dir(_) => Err("a directory is not a stream".to_string()),
            TraceTarget::Unix(path) => connect_unix(path),
        };
        match opened {
            Ok(fd) => {
                let fd = if fd > 2 { move_high(fd) } else { fd };
                let (dev, ino) = os::identity(fd).unwrap_or((0, 0));
                self.dev.store(dev, Ordering::Relaxed);
                self.ino.store(ino, Ordering::Relaxed);
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

    fn write_out(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let fd = self.open();
        if fd < 0 {
            return;
        }
        let ours = (
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        );
        if os::identity(fd) != Some(ours) {
            // Closed behind the shim's back (a raw close_range, say) or reused by the program.
            self.fd.store(-1, Ordering::Relaxed);
            if !self.broken.swap(true, Ordering::Relaxed) {
                crate::say(&format!(
                    "the trace stream (fd {fd}) is no longer the shim's; tracing stops here"
                ));
            }
            return;
        }
        os::write_quietly(fd, data);
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

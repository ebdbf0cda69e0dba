//! The shim's own system calls, made directly (`syscall(2)` or calls the shim does not hook), so
//! that none of them is traced, routed through the fast path, or seen by the host's hooks.
//! Every one of them is on an fd or a mapping the shim made itself.

use std::ffi::CStr;

/// The calling process's pid, from the kernel (not glibc's cache, not the shim's): right in
/// a vfork or CLONE_VM child, which shares the parent's memory and so its cached values.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

/// How many times this thread has gone to sleep (voluntary context switches), or `None`
/// when the kernel does not say.
pub fn voluntary_switches() -> Option<i64> {
    // SAFETY: rusage is plain old data; getrusage fills it or fails.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid out-parameter for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getrusage,
            libc::RUSAGE_THREAD,
            &mut usage as *mut libc::rusage,
        )
    };
    (r == 0).then_some(usage.ru_nvcsw)
}

/// A file's identity: device and inode.
pub type Identity = (u64, u64);

pub fn identity(fd: i32) -> Option<Identity> {
    // SAFETY: stat is plain old data; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-parameter for the call.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some((st.st_dev, st.st_ino))
}

fn size_of_file(fd: i32) -> Option<u64> {
    // SAFETY: as in identity.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-parameter for the call.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some(st.st_size as u64)
}

/// Opens (`create`: creates, exclusively) a trace file, close-on-exec. The fd lives only
/// until the caller's [`close`].
pub fn open(path: &CStr, create: bool) -> Result<i32, i32> {
    let flags = libc::O_RDWR
        | libc::O_CLOEXEC
        | if create {
            libc::O_CREAT | libc::O_EXCL
        } else {
            0
        };
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            0o644,
        )
    };
    if fd < 0 {
        Err(crate::errno())
    } else {
        Ok(fd as i32)
    }
}

pub fn close(fd: i32) {
    // SAFETY: closing an fd the shim opened a moment ago.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Maps `len` bytes of `fd` at `offset` shared and writable, growing the file first if it is
/// shorter (never shrinking it: another thread may have grown it further).
pub fn map_shared(fd: i32, offset: u64, len: usize) -> Result<*mut u8, i32> {
    let end = offset + len as u64;
    if size_of_file(fd).is_some_and(|size| size < end) {
        // SAFETY: ftruncate on the shim's own fd.
        if unsafe { libc::syscall(libc::SYS_ftruncate, fd, end) } < 0 {
            return Err(crate::errno());
        }
    }
    // SAFETY: a fresh shared mapping of the shim's own file; nothing else refers to it yet.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(crate::errno())
    } else {
        Ok(p.cast())
    }
}

/// RLIMIT_FSIZE (the soft limit), as a byte count.
pub fn file_size_limit() -> usize {
    soft_limit(libc::RLIMIT_FSIZE)
}

/// RLIMIT_AS (the soft limit), as a byte count.
pub fn address_space_limit() -> usize {
    soft_limit(libc::RLIMIT_AS)
}

fn soft_limit(resource: libc::__rlimit_resource_t) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out-parameter.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Unmaps a mapping [`map_shared`] made (in a forked child: the child's copy only).
pub fn unmap(p: *mut u8, len: usize) {
    // SAFETY: p..p+len is a mapping the shim made and nobody else uses any more.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Copies `data` into the mapping at `dst`.
pub fn store(dst: *mut u8, data: &[u8]) {
    // SAFETY: the caller reserved dst..dst+data.len() inside a live mapping for this copy
    // alone (see mapped.rs), so it overlaps nothing else.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
}

/// Writes all of `data` to `fd` without ever raising SIGPIPE in the host: a socket gets
/// MSG_NOSIGNAL; anything else is written with SIGPIPE blocked in this thread, and a SIGPIPE
/// the write raised is taken back, so the host's mask and pending signals end as they were.
pub fn write_quietly(fd: i32, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let n = write_once(fd, data);
        if n > 0 {
            data = &data[n as usize..];
        } else if n < 0 && crate::errno() == libc::EINTR {
            continue;
        } else {
            return false;
        }
    }
    true
}

fn write_once(fd: i32, data: &[u8]) -> isize {
    // SAFETY: data is a live slice; send fails with ENOTSOCK on anything but a socket.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            data.as_ptr(),
            data.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0,
        )
    } as isize;
    if n >= 0 || crate::errno() != libc::ENOTSOCK {
        return n;
    }
    // SAFETY: sigset_t is plain old data, filled by sigemptyset before use.
    let mut pipe: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers; pthread_sigmask changes this thread's mask only, and it
    // is restored below before returning.
    unsafe {
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        libc::sigpending(&mut pending);
    }
    // SAFETY: as above.
    let was_pending = unsafe { libc::sigismember(&pending, libc::SIGPIPE) } == 1;
    // SAFETY: data is a live slice.
    let n = unsafe { libc::syscall(libc::SYS_write, fd, data.as_ptr(), data.len()) } as isize;
    let errno = crate::errno();
    if n < 0 && errno == libc::EPIPE && !was_pending {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: takes back the SIGPIPE this write raised (blocked, so still pending, and not
        // the host's: none was pending before).
        unsafe { libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero) };
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    crate::set_errno(errno);
    n
}

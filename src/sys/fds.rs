//! The calls that make the other kinds of fd an event loop registers (pipes, socketpairs,
//! eventfds, timerfds), datagram I/O, the poll family, epoll_pwait2 and epoll_create, and
//! signals to one task.

use nix::errno::Errno;

use super::{RawAddr, RawFd, check, check_size};

pub fn pipe2(flags: i32) -> Result<[RawFd; 2], Errno> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two ints the kernel writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    Ok(fds)
}

pub fn socketpair(domain: i32, ty: i32, protocol: i32) -> Result<[RawFd; 2], Errno> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two ints the kernel writes.
    check(unsafe { libc::socketpair(domain, ty, protocol, fds.as_mut_ptr()) })?;
    Ok(fds)
}

/// The raw eventfd2 system call (glibc's eventfd() calls it too).
pub fn eventfd2(initval: u32, flags: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_eventfd2, libc::c_uint::from(initval), flags) };
    check(i32::try_from(ret).unwrap_or(-1))
}

/// The raw epoll_create system call: its size argument is checked (> 0) by the kernel only.
pub fn epoll_create(size: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with an integer argument.
    check(unsafe { libc::epoll_create(size) })
}

pub fn timerfd_create(clock: i32, flags: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::timerfd_create(clock, flags) })
}

fn timespec((sec, nsec): (i64, i64)) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// timerfd_settime with `interval` and `value` as (seconds, nanoseconds); the old value is
/// not asked for (NULL).
pub fn timerfd_settime(
    fd: RawFd,
    flags: i32,
    interval: (i64, i64),
    value: (i64, i64),
) -> Result<(), Errno> {
    let spec = libc::itimerspec {
        it_interval: timespec(interval),
        it_value: timespec(value),
    };
    // SAFETY: spec lives on the stack for the call; the old-value pointer is NULL.
    check(unsafe { libc::timerfd_settime(fd, flags, &spec, std::ptr::null_mut()) }).map(drop)
}

pub fn sendto(fd: RawFd, data: &[u8], flags: i32, addr: &RawAddr) -> Result<usize, Errno> {
    // SAFETY: data is valid for reads of its length; addr is an initialised sockaddr.
    check_size(unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            flags,
            addr.ptr(),
            addr.len,
        )
    })
}

/// recvfrom without asking for the sender's address.
pub fn recvfrom(fd: RawFd, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    // SAFETY: buf is valid for writes of its length; the address pointers are NULL.
    check_size(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    })
}

/// poll, or ppoll with `timeout` as a timespec (`None`: NULL, wait forever) and a NULL
/// signal mask (as traced), when `ppoll` is set. `fds` is (fd, events); returns each entry's revents.
pub fn poll(
    fds: &[(RawFd, i16)],
    timeout_ms: i32,
    ppoll: Option<Option<(i64, i64)>>,
) -> Result<(usize, Vec<i16>), Errno> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let nfds = libc::nfds_t::try_from(pfds.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: pfds holds nfds initialised entries; the timespec lives on the stack for the
    // call; the signal mask is NULL.
    let n = check(unsafe {
        match ppoll {
            None => libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms),
            Some(timeout) => {
                let ts = timeout.map(timespec);
                libc::ppoll(
                    pfds.as_mut_ptr(),
                    nfds,
                    ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                    std::ptr::null(),
                )
            }
        }
    })?;
    let count = usize::try_from(n).map_err(|_| Errno::EINVAL)?;
    Ok((count, pfds.iter().map(|p| p.revents).collect()))
}

/// epoll_pwait2 with a timespec timeout (`None`: NULL, wait forever) and a NULL signal mask.
pub fn epoll_pwait2(
    epfd: RawFd,
    maxevents: usize,
    timeout: Option<(i64, i64)>,
) -> Result<Vec<(u32, u64)>, Errno> {
    let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; maxevents.max(1)];
    let ts = timeout.map(timespec);
    let max = i32::try_from(maxevents).map_err(|_| Errno::EINVAL)?;
    // SAFETY: buf has room for maxevents entries (at least one); ts lives on the stack; the
    // signal mask is NULL, so the size argument is not read.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            epfd,
            buf.as_mut_ptr(),
            max,
            ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
            std::ptr::null::<libc::sigset_t>(),
            8usize,
        )
    };
    let n = check(i32::try_from(ret).unwrap_or(-1))?;
    let n = usize::try_from(n).map_err(|_| Errno::EINVAL)?;
    Ok(buf[..n].iter().map(|e| (e.events, e.u64)).collect())
}

/// openat with the caller's flags, which the scenario language keeps read-only: nothing on
/// disk changes. The path ends at its first NUL byte, as a C string does.
pub fn openat(dir: RawFd, path: &[u8], flags: i32) -> Result<RawFd, Errno> {
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    let path = std::ffi::CString::new(&path[..end]).map_err(|_| Errno::EINVAL)?;
    // SAFETY: path is NUL-terminated and outlives the call; no mode is read without O_CREAT.
    check(unsafe { libc::openat(dir, path.as_ptr(), flags) })
}

/// tgkill: a signal to one thread of one process (a process is its main thread).
pub fn tgkill(tgid: i32, tid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, signal) };
    check(i32::try_from(ret).unwrap_or(-1)).map(drop)
}

//! The thin layer over the kernel: one function per system call, named after it, on raw fd
//! numbers, returning `Errno` on failure. Everything above this module is safe code.
//!
//! Raw numbers rather than `OwnedFd` on purpose: the behaviour under study (an fd number reused
//! after close, an epoll registration that outlives its fd, a child inheriting a table of fds) is
//! about numbers, and the callers close explicitly so that every close is traced.
//!
//! Submodules group what is not a single call on an fd:
//! * [`process`]: fork, exec, reaping, the parent-death signal, moving an fd out of the way.
//! * [`signal`]: signal dispositions and the SIGINT/SIGTERM stop source the tools share.
//! * [`procfs`]: what `/proc` says about a task (is it asleep in a system call).
//! * [`channel`]: the socket pair and fd passing under [`crate::channel`].
//! * [`sockaddr`]: the one raw socket address type and its decoder.
//! * [`fastsocket_abi`]: the Fastsocket module's ioctl ABI.
//! * [`packet`]: AF_PACKET capture and mapping capture files for the flow monitor.
//! * [`fds`]: the fd kinds beyond sockets (pipes, socketpairs, eventfd, timerfd, poll).

#![allow(unsafe_code)]

pub mod channel;
pub mod cpu;
pub mod fastsocket_abi;
pub mod fds;
pub mod packet;
pub mod process;
pub mod procfs;
pub mod signal;
pub mod sockaddr;
pub mod vm;

pub use sockaddr::RawAddr;

use std::mem::{size_of, zeroed};

use nix::errno::Errno;

use crate::addr::SockAddr;

pub type RawFd = i32;

pub(crate) fn check(ret: libc::c_int) -> Result<i32, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::socket(domain, ty, protocol) })
}

pub fn bind(fd: RawFd, addr: &RawAddr) -> Result<(), Errno> {
    // SAFETY: addr points to an initialised sockaddr of addr.len bytes.
    check(unsafe { libc::bind(fd, addr.ptr(), addr.len) }).map(drop)
}

pub fn connect(fd: RawFd, addr: &RawAddr) -> Result<(), Errno> {
    // SAFETY: as for bind.
    check(unsafe { libc::connect(fd, addr.ptr(), addr.len) }).map(drop)
}

pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::listen(fd, backlog) }).map(drop)
}

/// accept4 that also returns the peer address the kernel reported.
pub fn accept4(fd: RawFd, flags: i32) -> Result<(RawFd, Option<SockAddr>), Errno> {
    let mut peer = RawAddr::default();
    let new_fd = accept4_raw(fd, Some(&mut peer), flags)?;
    Ok((new_fd, peer.decode()))
}

/// accept4 writing the peer address (if asked for) in kernel layout.
pub fn accept4_raw(fd: RawFd, peer: Option<&mut RawAddr>, flags: i32) -> Result<RawFd, Errno> {
    let (addr, len) = match peer {
        Some(p) => (p.ptr_mut(), &mut p.len as *mut libc::socklen_t),
        None => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    // SAFETY: addr/len are NULL or point into a live RawAddr whose len holds its size.
    check(unsafe { libc::accept4(fd, addr, len, flags) })
}

/// The bound address in kernel layout.
pub fn getsockname_raw(fd: RawFd) -> Result<RawAddr, Errno> {
    let mut a = RawAddr::default();
    // SAFETY: storage and len are valid for writes for the duration of the call.
    check(unsafe { libc::getsockname(fd, a.ptr_mut(), &mut a.len) })?;
    Ok(a)
}

pub fn getsockname(fd: RawFd) -> Result<SockAddr, Errno> {
    getsockname_raw(fd)?.decode().ok_or(Errno::EAFNOSUPPORT)
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> Result<(), Errno> {
    // SAFETY: value lives on the stack for the call; its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Result<i32, Errno> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes for the duration of the call.
    check(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) })?;
    Ok(value)
}

/// How many connections wait in the accept queue of the TCP listener `fd` (TCP_INFO reports
/// a listener's accept queue as `tcpi_unacked`).
pub fn tcp_accept_queue(fd: RawFd) -> Result<u32, Errno> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for writes for the duration of the call; the kernel
    // writes at most len bytes.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    })?;
    // include/net/tcp_states.h: TCP_LISTEN (libc does not export the states).
    const TCP_LISTEN: u8 = 10;
    if info.tcpi_state != TCP_LISTEN {
        return Err(Errno::EINVAL);
    }
    Ok(info.tcpi_unacked)
}

pub fn close(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: closing a number the caller owns; a wrong number fails with EBADF, it is not UB
    // for the kernel, and the traced callers never close fds owned by Rust objects.
    check(unsafe { libc::close(fd) }).map(drop)
}

pub fn dup(fd: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with an integer argument.
    check(unsafe { libc::dup(fd) })
}

pub fn dup2(fd: RawFd, target: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall; replacing `target` is what the caller asked for.
    check(unsafe { libc::dup2(fd, target) })
}

pub fn shutdown(fd: RawFd, how: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe { libc::shutdown(fd, how) }).map(drop)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    check_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    check_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

pub fn epoll_create1(flags: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall with an integer argument.
    check(unsafe { libc::epoll_create1(flags) })
}

/// epoll_ctl; `event` is `None` for EPOLL_CTL_DEL (passed as NULL, as modern kernels allow).
pub fn epoll_ctl(epfd: RawFd, op: i32, fd: RawFd, event: Option<(u32, u64)>) -> Result<(), Errno> {
    let mut ev = event.map(|(events, u64)| libc::epoll_event { events, u64 });
    let ptr = ev
        .as_mut()
        .map_or(std::ptr::null_mut(), |e| e as *mut libc::epoll_event);
    // SAFETY: ptr is NULL or points to an epoll_event that outlives the call.
    check(unsafe { libc::epoll_ctl(epfd, op, fd, ptr) }).map(drop)
}

/// epoll_wait, or epoll_pwait with an empty signal mask when `pwait` is set.
/// Returns the (events, data) pairs the kernel reported, at most `maxevents` of them.
pub fn epoll_wait(
    epfd: RawFd,
    maxevents: usize,
    timeout_ms: i32,
    pwait: bool,
) -> Result<Vec<(u32, u64)>, Errno> {
    let mut buf = vec![libc::epoll_event { events: 0, u64: 0 }; maxevents.max(1)];
    // SAFETY: buf has room for maxevents entries (at least one, so the kernel gets a valid
    // pointer; maxevents 0 is passed through so the kernel's EINVAL is observable).
    let n = check(unsafe {
        if pwait {
            let mut empty: libc::sigset_t = zeroed();
            libc::sigemptyset(&mut empty);
            libc::epoll_pwait(epfd, buf.as_mut_ptr(), maxevents as i32, timeout_ms, &empty)
        } else {
            libc::epoll_wait(epfd, buf.as_mut_ptr(), maxevents as i32, timeout_ms)
        }
    })?;
    Ok(buf[..n as usize]
        .iter()
        .map(|e| (e.events, e.u64))
        .collect())
}

/// Unlinks a filesystem path (used for stale unix socket files).
pub fn unlink(path: &std::path::Path) -> Result<(), Errno> {
    nix::unistd::unlink(path)
}

/// fcntl(F_GETFL): the file status flags (O_NONBLOCK...).
pub fn fcntl_getfl(fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: F_GETFL takes no argument and touches no memory.
    check(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

/// fcntl(F_GETFD): the descriptor flags (FD_CLOEXEC).
pub fn fcntl_getfd(fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: F_GETFD takes no argument and touches no memory.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })
}

/// fcntl(F_SETFL).
pub fn fcntl_setfl(fd: RawFd, flags: i32) -> Result<(), Errno> {
    // SAFETY: F_SETFL takes an integer argument and touches no memory.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(drop)
}

pub fn dup3(fd: RawFd, target: RawFd, flags: i32) -> Result<RawFd, Errno> {
    // SAFETY: plain syscall; replacing `target` is what the caller asked for.
    check(unsafe { libc::dup3(fd, target, flags) })
}

/// The CPU the calling thread runs on, if the kernel says.
pub fn sched_getcpu() -> Option<i32> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    (cpu >= 0).then_some(cpu)
}

/// epoll_ctl with the event in kernel layout (as a traced program passed it).
pub fn epoll_ctl_raw(
    epfd: RawFd,
    op: i32,
    fd: RawFd,
    event: Option<&mut libc::epoll_event>,
) -> Result<(), Errno> {
    let ptr = event.map_or(std::ptr::null_mut(), |e| e as *mut libc::epoll_event);
    // SAFETY: ptr is NULL or comes from a live &mut epoll_event.
    check(unsafe { libc::epoll_ctl(epfd, op, fd, ptr) }).map(drop)
}

/// fallocate(FALLOC_FL_KEEP_SIZE): reserves the file's blocks for `len` bytes from `offset`
/// without changing its size (EFBIG for a range past `off_t`).
pub fn fallocate_keep_size(file: &std::fs::File, offset: u64, len: u64) -> Result<(), Errno> {
    let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EFBIG)?;
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    nix::fcntl::fallocate(
        file,
        nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
}

/// Opens `path` read-only and close-on-exec; returns the raw number (the caller closes it).
pub fn open_rdonly(path: &std::path::Path) -> Result<RawFd, Errno> {
    use std::os::fd::IntoRawFd;
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(IntoRawFd::into_raw_fd)
}

/// Whether `fd` is readable now (poll with a zero timeout); for a listener: a connection is
/// queued.
pub fn readable_now(fd: RawFd) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, valid for the duration of the call.
    let n = check(unsafe { libc::poll(&mut pfd, 1, 0) })?;
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}

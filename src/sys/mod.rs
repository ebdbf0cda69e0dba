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

pub mod process;
pub mod procfs;
pub mod signal;
pub mod vm;

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::addr::SockAddr;

pub type RawFd = i32;

fn check(ret: libc::c_int) -> Result<i32, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret as usize)
    }
}

/// A sockaddr in kernel layout. Unix addresses are passed with the full
/// `sizeof(struct sockaddr_un)` (110), as most C servers do, so traces show a stable length.
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
}

impl From<&SockAddr> for RawAddr {
    fn from(addr: &SockAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SockAddr::Unix { path } => {
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_un.
                let un = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_un) };
                un.sun_family = libc::AF_UNIX as libc::sa_family_t;
                let bytes = path.as_os_str().as_bytes();
                // Paths were length-checked when parsed; refuse to truncate silently anyway.
                let n = bytes.len().min(un.sun_path.len() - 1);
                for (dst, src) in un.sun_path.iter_mut().zip(&bytes[..n]) {
                    *dst = *src as libc::c_char;
                }
                size_of::<libc::sockaddr_un>()
            }
            SockAddr::Inet {
                addr: SocketAddr::V4(v4),
            } => {
                // SAFETY: as above, for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SockAddr::Inet {
                addr: SocketAddr::V6(v6),
            } => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

fn decode_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SockAddr> {
    match storage.ss_family as i32 {
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un here (ss_family says so).
            let un = unsafe { &*(storage as *const _ as *const libc::sockaddr_un) };
            let max = (len as usize).saturating_sub(size_of::<libc::sa_family_t>());
            let raw: Vec<u8> = un.sun_path[..max.min(un.sun_path.len())]
                .iter()
                .map(|&c| c as u8)
                .take_while(|&c| c != 0)
                .collect();
            Some(SockAddr::unix(PathBuf::from(std::ffi::OsStr::from_bytes(
                &raw,
            ))))
        }
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in here.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SockAddr::ip(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 here.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SockAddr::ip(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ))))
        }
        _ => None,
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
    // SAFETY: zeroed sockaddr_storage is valid; the kernel writes at most `len` bytes into it.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes for the duration of the call.
    let new_fd = check(unsafe {
        libc::accept4(
            fd,
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
            flags,
        )
    })?;
    Ok((new_fd, decode_addr(&storage, len)))
}

pub fn getsockname(fd: RawFd) -> Result<SockAddr, Errno> {
    // SAFETY: as for accept4.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes for the duration of the call.
    check(unsafe {
        libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len)
    })?;
    decode_addr(&storage, len).ok_or(Errno::EAFNOSUPPORT)
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

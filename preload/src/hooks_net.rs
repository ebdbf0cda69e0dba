//! The socket calls: socket, bind, listen, accept, accept4, connect, close, shutdown.
//!
//! Each hook makes the real call (or, in fastsocket mode, the fast path's), then traces it and
//! puts errno back as the call left it. Arguments in the host's memory are read only after a
//! call that did not fail with EFAULT, so a bad pointer still gets EFAULT and not a crash.

#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.
use libc::{c_int, sockaddr, socklen_t};

use epollscope::fastpath::{Backend, FastPath, PeerAddr};
use epollscope::trace::{AddrRef, Call};

use crate::record::{fd, now_us};
use crate::{Entered, enter, errno, guarded, real, set_errno};

pub fn enosys() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

/// Traces a finished call, keeping errno as the call left it; returns `value`.
pub fn finish(e: &Entered, start: u64, value: i64, call: impl FnOnce() -> Call) -> i64 {
    let errno = errno();
    e.shim
        .record_call(e.pid, start, call, (value, errno), e.slept.get());
    set_errno(errno);
    value
}

/// After a successful accept, when tracing: where the kernel processed the connection
/// (SO_INCOMING_CPU of the accepted socket) and where this thread accepted it, as
/// `accept_cpu(FD, INCOMING_CPU, CPU) = 1` if they are the same CPU, else 0 (-1: unknown).
/// Only reads: the accepted socket is the host's now, and a read changes nothing of it.
fn record_locality(e: &Entered, value: i64) {
    let Ok(accepted) = i32::try_from(value) else {
        return;
    };
    if accepted < 0 || e.shim.sink.is_none() {
        return;
    }
    let saved = errno();
    let Some((incoming, cpu)) = guarded(|| epollscope::fastpath::locality::measure(accepted))
    else {
        return;
    };
    let (incoming, cpu) = (incoming.unwrap_or(-1), cpu.unwrap_or(-1));
    let local = i64::from(incoming >= 0 && incoming == cpu);
    e.shim.record(
        e.pid,
        now_us(),
        || Call::Builtin {
            name: "accept_cpu".into(),
            args: vec![fd(accepted), fd(incoming), fd(cpu)],
        },
        local,
        0,
    );
    set_errno(saved);
}

/// Runs a fast-path operation: its errno on failure, the caller's errno kept on success (the
/// backend's own bookkeeping calls must not show through). `None` if it panicked.
pub fn fast<T: Into<i64>>(op: impl FnOnce() -> Result<T, nix::errno::Errno>) -> Option<i64> {
    let saved = errno();
    match guarded(op)? {
        Ok(v) => {
            set_errno(saved);
            Some(v.into())
        }
        Err(e) => {
            set_errno(e as i32);
            Some(-1)
        }
    }
}

/// The address argument as the trace shows it (None: unknown family or unreadable).
fn addr_ref(addr: *const sockaddr, len: socklen_t, failed_efault: bool) -> Option<AddrRef> {
    if addr.is_null() || failed_efault {
        return None;
    }
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: the kernel read these bytes without EFAULT during the call just made.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) };
    epollscope::shim::addr::decode(bytes).map(|a| AddrRef {
        addr: a,
        len: len as u32,
        alias: None,
    })
}

fn addr_call(name: &str, sock: c_int, addr: Option<AddrRef>) -> Call {
    match (name, addr) {
        ("bind", Some(addr)) => Call::Bind { fd: fd(sock), addr },
        ("connect", Some(addr)) => Call::Connect { fd: fd(sock), addr },
        (name, None) | (name, Some(_)) => Call::Builtin {
            name: name.into(),
            args: vec![fd(sock)],
        },
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let Some(real) = real::socket() else {
        return enosys();
    };
    // SAFETY (all hooks): the real function gets exactly the caller's arguments.
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(domain, ty, protocol) };
    };
    let start = now_us();
    let value = e
        .shim
        .fastpath
        .as_ref()
        .filter(|fp| fp.backend() == Backend::Module)
        .and_then(|fp| fast(|| fp.socket(domain, ty, protocol)))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.plain(|| unsafe { real(domain, ty, protocol) }) as i64);
    finish(&e, start, value, || Call::Socket {
        domain,
        ty,
        protocol,
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(sock: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(real) = real::bind() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, addr, len) };
    };
    if let Some(fp) = e.fastpath() {
        let saved = errno();
        let _ = guarded(|| fp.before_bind(sock));
        set_errno(saved);
    }
    let start = now_us();
    // SAFETY: the caller's arguments, passed through unchanged.
    let value = e.plain(|| unsafe { real(sock, addr, len) }) as i64;
    let efault = value < 0 && errno() == libc::EFAULT;
    finish(&e, start, value, || {
        addr_call("bind", sock, addr_ref(addr, len, efault))
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(sock: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(real) = real::connect() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, addr, len) };
    };
    let start = now_us();
    // SAFETY: the caller's arguments, passed through unchanged.
    let value = e.blocking(|| unsafe { real(sock, addr, len) }) as i64;
    let efault = value < 0 && errno() == libc::EFAULT;
    finish(&e, start, value, || {
        addr_call("connect", sock, addr_ref(addr, len, efault))
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(sock: c_int, backlog: c_int) -> c_int {
    let Some(real) = real::listen() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, backlog) };
    };
    let start = now_us();
    let value = e
        .fastpath()
        .and_then(|fp| fast(|| fp.listen(sock, backlog).map(|()| 0)))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.plain(|| unsafe { real(sock, backlog) }) as i64);
    finish(&e, start, value, || Call::Listen {
        fd: fd(sock),
        backlog,
    }) as c_int
}

/// accept4 through the fast path, copying the peer address out as the kernel would: at most
/// `*len` bytes, and `*len` set to the address's full length.
fn fast_accept(
    fp: &dyn FastPath,
    sock: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> Option<i64> {
    let want_addr = !addr.is_null() && !len.is_null();
    let mut peer = PeerAddr::default();
    let value = fast(|| fp.accept4(sock, want_addr.then_some(&mut peer), flags))?;
    if value >= 0 && want_addr {
        // SAFETY: the caller passed addr/len for the kernel to write, as accept(2) requires;
        // we write no more than *len bytes, as the kernel would.
        unsafe {
            let n = (*len).min(peer.len) as usize;
            std::ptr::copy_nonoverlapping(
                (&peer.storage as *const libc::sockaddr_storage).cast::<u8>(),
                addr.cast::<u8>(),
                n,
            );
            *len = peer.len;
        }
    }
    Some(value)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(sock: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(real) = real::accept() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, addr, len) };
    };
    let start = now_us();
    let value = e
        .shim
        .fastpath
        .as_ref()
        .and_then(|fp| fast_accept(fp.as_ref(), sock, addr, len, 0))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.blocking(|| unsafe { real(sock, addr, len) }) as i64);
    let value = finish(&e, start, value, || Call::Accept { fd: fd(sock) });
    record_locality(&e, value);
    value as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    sock: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let Some(real) = real::accept4() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, addr, len, flags) };
    };
    let start = now_us();
    let value = e
        .shim
        .fastpath
        .as_ref()
        .and_then(|fp| fast_accept(fp.as_ref(), sock, addr, len, flags))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.blocking(|| unsafe { real(sock, addr, len, flags) }) as i64);
    let value = finish(&e, start, value, || Call::Accept4 {
        fd: fd(sock),
        flags,
    });
    record_locality(&e, value);
    value as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(target: c_int) -> c_int {
    let Some(real) = real::close() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(target) };
    };
    let fastpath = e.fastpath();
    if let Some(sink) = &e.shim.sink
        && !e.vm_child
    {
        sink.protect(target);
    }
    let start = now_us();
    let value = fastpath
        .filter(|fp| fp.backend() == Backend::Module || fp.table().is_listen(target))
        .and_then(|fp| fast(|| fp.close(target).map(|()| 0)))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.plain(|| unsafe { real(target) }) as i64);
    finish(&e, start, value, || Call::Close { fd: fd(target) }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(sock: c_int, how: c_int) -> c_int {
    let Some(real) = real::shutdown() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(sock, how) };
    };
    let start = now_us();
    let value = e
        .fastpath()
        .filter(|fp| fp.table().is_listen(sock))
        .and_then(|fp| fast(|| fp.shutdown(sock, how).map(|()| 0)))
        // SAFETY: the caller's arguments, passed through unchanged.
        .unwrap_or_else(|| e.plain(|| unsafe { real(sock, how) }) as i64);
    finish(&e, start, value, || Call::Shutdown { fd: fd(sock), how }) as c_int
}

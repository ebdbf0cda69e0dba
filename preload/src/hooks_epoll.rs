//! The epoll calls: epoll_create, epoll_create1, epoll_ctl (where the fast path's listen_spawn
//! happens), epoll_wait, epoll_pwait and epoll_pwait2.
//!
//! No lock is held while a wait blocks: the event is built and appended after it returns.
#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.

use libc::{c_int, epoll_event, sigset_t, timespec};

use epollscope::fastpath::Spawn;
use epollscope::trace::{Call, EpollEv};

use crate::hooks_net::{enosys, finish};
use crate::record::{fd, now_us};
use crate::{enter, errno, guarded, real, set_errno};

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    let Some(real) = real::epoll_create() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(size) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(size) }) as i64;
    // epoll_create's size is a number, not an fd; the formatter prints an FdRef as its number.
    finish(&e, start, value, || Call::Builtin {
        name: "epoll_create".into(),
        args: vec![fd(size)],
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    let Some(real) = real::epoll_create1() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(flags) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(flags) }) as i64;
    finish(&e, start, value, || Call::EpollCreate1 { flags }) as c_int
}

fn ev_of(ev: &epoll_event) -> EpollEv {
    // Copies out of the (packed on x86_64) struct before use.
    let (events, data) = (ev.events, ev.u64);
    EpollEv {
        events,
        data,
        data_name: None,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    target: c_int,
    event: *mut epoll_event,
) -> c_int {
    let Some(real) = real::epoll_ctl() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(epfd, op, target, event) };
    };
    let mut value = None;
    if op == libc::EPOLL_CTL_ADD
        && let Some(fp) = e.fastpath()
        && fp.table().is_listen(target)
    {
        let start = now_us();
        let saved = errno();
        // SAFETY: event is NULL or the caller's epoll_event, which epoll_ctl(2) reads anyway;
        // a bad pointer is caught by the kernel in the real call below (EFAULT), not here,
        // because the fast path only passes it through.
        let ev = unsafe { event.as_mut() };
        if let Some((result, spawn)) = guarded(|| fp.epoll_ctl(epfd, op, target, ev)) {
            if spawn != Spawn::NotNeeded {
                let (v, err) = match spawn {
                    Spawn::Failed(err) => (-1, err as i32),
                    _ => (0, 0),
                };
                e.shim.record(
                    e.pid,
                    start,
                    || Call::Builtin {
                        name: "listen_spawn".into(),
                        args: vec![fd(target)],
                    },
                    v,
                    err,
                );
                if spawn == Spawn::Spawned
                    && let Some(text) = fp.locality_notice()
                {
                    e.shim.record(e.pid, now_us(), || Call::Note { text }, 0, 0);
                }
            }
            set_errno(saved);
            value = Some(match result {
                Ok(()) => 0,
                Err(err) => {
                    set_errno(err as i32);
                    -1
                }
            });
        }
    }
    let start = now_us();
    // SAFETY: the caller's arguments, passed through unchanged.
    let value =
        value.unwrap_or_else(|| e.plain(|| unsafe { real(epfd, op, target, event) }) as i64);
    let readable = !(value < 0 && errno() == libc::EFAULT);
    finish(&e, start, value, || Call::EpollCtl {
        epfd: fd(epfd),
        op,
        fd: fd(target),
        // SAFETY: the kernel read this event without EFAULT during the call.
        event: if readable {
            unsafe { event.as_ref() }.map(ev_of)
        } else {
            None
        },
    }) as c_int
}

/// The events a wait returned, read from the caller's array (the kernel wrote `n` of them).
fn returned(events: *const epoll_event, n: i64) -> Vec<EpollEv> {
    if n <= 0 || events.is_null() {
        return Vec::new();
    }
    // SAFETY: the kernel has just written n events into this array.
    let slice = unsafe { std::slice::from_raw_parts(events, n as usize) };
    slice.iter().map(ev_of).collect()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: c_int,
) -> c_int {
    let Some(real) = real::epoll_wait() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(epfd, events, maxevents, timeout) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.blocking(|| unsafe { real(epfd, events, maxevents, timeout) }) as i64;
    finish(&e, start, value, || Call::EpollWait {
        epfd: fd(epfd),
        events: returned(events, value),
        maxevents,
        timeout,
        pwait: false,
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: c_int,
    sigmask: *const sigset_t,
) -> c_int {
    let Some(real) = real::epoll_pwait() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(epfd, events, maxevents, timeout, sigmask) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.blocking(|| unsafe { real(epfd, events, maxevents, timeout, sigmask) }) as i64;
    finish(&e, start, value, || Call::EpollWait {
        epfd: fd(epfd),
        events: returned(events, value),
        maxevents,
        timeout,
        pwait: true,
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    let Some(real) = real::epoll_pwait2() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(epfd, events, maxevents, timeout, sigmask) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.blocking(|| unsafe { real(epfd, events, maxevents, timeout, sigmask) }) as i64;
    let readable = !(value < 0 && errno() == libc::EFAULT);
    // SAFETY: the kernel read the timeout without EFAULT during the call.
    let timeout = if readable {
        unsafe { timeout.as_ref() }
    } else {
        None
    };
    let timeout_ms = match timeout {
        Some(t) => (t.tv_sec * 1000 + t.tv_nsec / 1_000_000) as c_int,
        None => -1,
    };
    finish(&e, start, value, || Call::EpollWait {
        epfd: fd(epfd),
        events: returned(events, value),
        maxevents,
        timeout: timeout_ms,
        pwait: true,
    }) as c_int
}

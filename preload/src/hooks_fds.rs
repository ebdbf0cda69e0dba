//! The other fds an event loop registers, and the poll family: pipe, pipe2, socketpair,
//! eventfd, timerfd_create, timerfd_settime, poll, ppoll. Traced as strace prints them
//! (`pipe2([3, 4], O_NONBLOCK) = 0`, `poll([{fd=5, events=POLLIN}], 1, 0) = 1 ([{fd=5,
//! revents=POLLIN}])`), so a traced program's trace stays complete.
//!
//! Arrays the kernel writes (the fds of a pipe, poll's revents) are read only after a call
//! that succeeded: the kernel wrote them, so they are valid memory.
#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.

use libc::{c_int, c_uint, itimerspec, nfds_t, pollfd, sigset_t, timespec};

use epollscope::names::{self, flags_name, name_of};
use epollscope::trace::{Call, FdRef, Part};

use crate::hooks_net::{enosys, finish};
use crate::record::now_us;
use crate::{enter, real};

/// The most pollfd entries a trace line shows: poll sets can be huge.
const SHOWN: usize = 64;

fn fd_part(num: c_int) -> Part {
    Part::Fd(FdRef { num, name: None })
}

fn sys(name: &str, args: Vec<Part>, detail: Option<Part>) -> Call {
    Call::Sys {
        name: name.into(),
        args,
        detail,
    }
}

/// `[R, W]` once the call succeeded, `...` otherwise (the array may be unwritten or invalid).
unsafe fn pair(fds: *const c_int, ok: bool) -> Part {
    if !ok || fds.is_null() {
        return Part::text("...");
    }
    // SAFETY: the call succeeded, so the kernel wrote two ints at fds.
    let (a, b) = unsafe { (*fds, *fds.add(1)) };
    Part::List(vec![fd_part(a), fd_part(b)])
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipe(fds: *mut c_int) -> c_int {
    let Some(real) = real::pipe() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(fds) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(fds) }) as i64;
    // SAFETY: read only on success.
    let arg = unsafe { pair(fds, value == 0) };
    finish(&e, start, value, || sys("pipe", vec![arg], None)) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    let Some(real) = real::pipe2() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(fds, flags) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(fds, flags) }) as i64;
    // SAFETY: read only on success.
    let arg = unsafe { pair(fds, value == 0) };
    finish(&e, start, value, || {
        sys(
            "pipe2",
            vec![arg, Part::text(flags_name(flags, names::PIPE_FLAGS))],
            None,
        )
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    let Some(real) = real::socketpair() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(domain, ty, protocol, sv) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(domain, ty, protocol, sv) }) as i64;
    // SAFETY: read only on success.
    let arg = unsafe { pair(sv, value == 0) };
    finish(&e, start, value, || {
        sys(
            "socketpair",
            vec![
                Part::text(names::domain_name(domain)),
                Part::text(names::socket_type_name(ty)),
                Part::num(protocol),
                arg,
            ],
            None,
        )
    }) as c_int
}

/// glibc's eventfd() is the eventfd2 system call; traced under that name, as strace shows it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eventfd(initval: c_uint, flags: c_int) -> c_int {
    let Some(real) = real::eventfd() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(initval, flags) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(initval, flags) }) as i64;
    finish(&e, start, value, || {
        sys(
            "eventfd2",
            vec![
                Part::num(initval),
                Part::text(flags_name(flags, names::EFD_FLAGS)),
            ],
            None,
        )
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn timerfd_create(clock: c_int, flags: c_int) -> c_int {
    let Some(real) = real::timerfd_create() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(clock, flags) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(clock, flags) }) as i64;
    finish(&e, start, value, || {
        sys(
            "timerfd_create",
            vec![
                Part::text(name_of(names::CLOCKS, clock)),
                Part::text(flags_name(flags, names::TFD_FLAGS)),
            ],
            None,
        )
    }) as c_int
}

fn timespec_part(ts: &timespec) -> Part {
    Part::text(format!("{{tv_sec={}, tv_nsec={}}}", ts.tv_sec, ts.tv_nsec))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn timerfd_settime(
    fd: c_int,
    flags: c_int,
    new: *const itimerspec,
    old: *mut itimerspec,
) -> c_int {
    let Some(real) = real::timerfd_settime() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(fd, flags, new, old) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(fd, flags, new, old) }) as i64;
    let spec = if value == 0 && !new.is_null() {
        // SAFETY: the call succeeded, so the kernel read the itimerspec at new.
        let spec = unsafe { &*new };
        Part::Struct(vec![
            ("it_interval".into(), timespec_part(&spec.it_interval)),
            ("it_value".into(), timespec_part(&spec.it_value)),
        ])
    } else {
        Part::text("...")
    };
    let old = Part::text(if old.is_null() { "NULL" } else { "..." });
    finish(&e, start, value, || {
        sys(
            "timerfd_settime",
            vec![
                fd_part(fd),
                Part::text(flags_name(flags, names::TFD_SETTIME_FLAGS)),
                spec,
                old,
            ],
            None,
        )
    }) as c_int
}

fn poll_bits(bits: i16) -> Part {
    Part::text(flags_name(i32::from(bits), names::POLL_BITS))
}

/// The pollfd array (as asked) and what the kernel wrote back (the entries with revents),
/// read after a successful call; at most [`SHOWN`] entries, then `...`.
unsafe fn poll_parts(fds: *const pollfd, nfds: nfds_t, ok: bool) -> (Part, Option<Part>) {
    if !ok || (fds.is_null() && nfds > 0) {
        return (Part::text("..."), None);
    }
    let n = usize::try_from(nfds).unwrap_or(usize::MAX);
    // SAFETY: the call succeeded, so the kernel read and wrote nfds entries at fds.
    let entries = if n == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(fds, n) }
    };
    let mut asked: Vec<Part> = entries
        .iter()
        .take(SHOWN)
        .map(|p| {
            Part::Struct(vec![
                ("fd".into(), fd_part(p.fd)),
                ("events".into(), poll_bits(p.events)),
            ])
        })
        .collect();
    let mut ready: Vec<Part> = entries
        .iter()
        .filter(|p| p.revents != 0)
        .take(SHOWN)
        .map(|p| {
            Part::Struct(vec![
                ("fd".into(), fd_part(p.fd)),
                ("revents".into(), poll_bits(p.revents)),
            ])
        })
        .collect();
    if n > SHOWN {
        asked.push(Part::text("..."));
    }
    let any_ready = !ready.is_empty();
    if entries.iter().filter(|p| p.revents != 0).count() > SHOWN {
        ready.push(Part::text("..."));
    }
    let detail = if any_ready {
        Part::List(ready)
    } else {
        Part::text("Timeout")
    };
    (Part::List(asked), Some(detail))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let Some(real) = real::poll() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(fds, nfds, timeout) };
    };
    let start = now_us();
    // SAFETY: as above. No lock is held while the call blocks.
    let value = e.blocking(|| unsafe { real(fds, nfds, timeout) }) as i64;
    // SAFETY: read only after success.
    let (asked, detail) = unsafe { poll_parts(fds, nfds, value >= 0) };
    finish(&e, start, value, || {
        sys(
            "poll",
            vec![asked, Part::num(nfds), Part::num(timeout)],
            detail,
        )
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    let Some(real) = real::ppoll() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(fds, nfds, timeout, sigmask) };
    };
    let start = now_us();
    // SAFETY: as above. No lock is held while the call blocks.
    let value = e.blocking(|| unsafe { real(fds, nfds, timeout, sigmask) }) as i64;
    // SAFETY: read only after success.
    let (asked, detail) = unsafe { poll_parts(fds, nfds, value >= 0) };
    let timeout = if timeout.is_null() {
        Part::text("NULL")
    } else if value >= 0 {
        // SAFETY: the call succeeded, so the kernel read the timespec.
        timespec_part(unsafe { &*timeout })
    } else {
        Part::text("...")
    };
    let sigmask = Part::text(if sigmask.is_null() { "NULL" } else { "[...]" });
    finish(&e, start, value, || {
        sys(
            "ppoll",
            vec![asked, Part::num(nfds), timeout, sigmask, Part::num(8)],
            detail,
        )
    }) as c_int
}

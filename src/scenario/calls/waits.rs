//! The entries of the call table for the waits beyond epoll_wait: poll, ppoll and
//! epoll_pwait2. Each is a [`CallSpec`] listed in [`super::CALLS`].

use super::act::count;
use super::fds::{ret, timespec};
use super::{Action, Blocking, CallSpec, MAXEVENTS};
use crate::names::{self, flags_name};
use crate::scenario::ast::{Live, Op, Returns};
use crate::scenario::kinds::Param;
use crate::scenario::protocol::Outcome;
use crate::sys::fds;
use crate::trace::{Call, Part};
use crate::tracer::{Described, Tracer};

/// The syscalls poll() and ppoll() can sleep in (glibc may make one through the other).
#[cfg(target_arch = "x86_64")]
const POLL_SYSCALLS: &[i64] = &[libc::SYS_poll, libc::SYS_ppoll];
#[cfg(not(target_arch = "x86_64"))]
const POLL_SYSCALLS: &[i64] = &[libc::SYS_ppoll];

pub const POLL: CallSpec = CallSpec {
    name: "poll",
    params: &[
        Param::PollFds,
        Param::CountOf(0),
        Param::int("a timeout in ms (a number)"),
        Param::ExpectRevents,
    ],
    forms: &[&[0, 1, 2]],
    usage: "poll([{fd=E, events=POLLIN}], 1, 0)",
    returns: Returns::Number,
    blocking: Some(Blocking {
        syscalls: POLL_SYSCALLS,
        unfinished: |t, op| Call::Sys {
            name: "poll".into(),
            args: poll_parts(t, op),
            detail: None,
        },
    }),
    action: Action::Call(|t, _, op| poll(t, op, None)),
};

pub const PPOLL: CallSpec = CallSpec {
    name: "ppoll",
    params: &[
        Param::PollFds,
        Param::CountOf(0),
        Param::Timespec,
        Param::Any,
        Param::Any,
        Param::ExpectRevents,
    ],
    forms: &[&[0, 1, 2], &[0, 1, 2, 3], &[0, 1, 2, 3, 4]],
    usage: "ppoll([{fd=E, events=POLLIN}], 1, {tv_sec=0, tv_nsec=0}, NULL, 8)",
    returns: Returns::Number,
    blocking: Some(Blocking {
        syscalls: POLL_SYSCALLS,
        unfinished: |t, op| Call::Sys {
            name: "ppoll".into(),
            args: poll_parts(t, op),
            detail: None,
        },
    }),
    action: Action::Call(|t, _, op| poll(t, op, Some(op.times(2).map(|t| t[0])))),
};

pub const EPOLL_PWAIT2: CallSpec = CallSpec {
    name: "epoll_pwait2",
    params: &[
        Param::Fd,
        Param::ExpectEvents,
        MAXEVENTS,
        Param::Timespec,
        Param::Any,
        Param::Any,
    ],
    forms: &[
        &[0, 2, 3],
        &[0, 1, 2, 3],
        &[0, 1, 2, 3, 4],
        &[0, 1, 2, 3, 4, 5],
    ],
    usage: "epoll_pwait2(E, [...], 16, {tv_sec=0, tv_nsec=10000000}, NULL, 8)",
    returns: Returns::Number,
    blocking: Some(Blocking {
        syscalls: &[libc::SYS_epoll_pwait2],
        unfinished: |t, op| Call::Sys {
            name: "epoll_pwait2".into(),
            args: pwait2_parts(t, op, &[]),
            detail: None,
        },
    }),
    action: Action::Call(|t, _, op| {
        // A negative or zero maxevents goes to the kernel as 0 (EINVAL either way).
        let max = usize::try_from(op.int::<i32>(2)).unwrap_or(0);
        let timeout = op.times(3).map(|t| t[0]);
        let r = t.sys(
            "epoll_pwait2",
            || fds::epoll_pwait2(op.fd(0), max, timeout),
            |t, r| Described {
                args: pwait2_parts(t, op, r.as_deref().unwrap_or_default()),
                ret: ret(r, |e| count(e.len())),
                detail: None,
            },
        );
        match r {
            Ok(events) => Outcome {
                result: Ok(count(events.len())),
                events,
                ..Outcome::of(Ok(0))
            },
            Err(e) => Outcome::of(Err(e)),
        }
    }),
};

fn timespec_or_null(times: Option<&[(i64, i64)]>) -> Part {
    times.map_or_else(|| Part::text("NULL"), |t| timespec(t[0]))
}

fn pollfd(t: &Tracer, fd: i32, key: &str, bits: u32) -> Part {
    let bits = i32::try_from(bits).unwrap_or(i32::MAX);
    Part::Struct(vec![
        ("fd".into(), t.fd_part(fd)),
        (key.into(), Part::text(flags_name(bits, names::POLL_BITS))),
    ])
}

fn poll_parts(t: &Tracer, op: &Op<Live>) -> Vec<Part> {
    let fds = op.poll_fds(0);
    let mut parts = vec![
        Part::List(
            fds.iter()
                .map(|&(fd, events)| pollfd(t, fd, "events", events))
                .collect(),
        ),
        Part::num(fds.len()),
    ];
    if op.name() == "poll" {
        parts.push(Part::num(op.int::<i32>(2)));
    } else {
        parts.push(timespec_or_null(op.times(2)));
        parts.push(Part::text("NULL"));
        parts.push(Part::num(8));
    }
    parts
}

/// poll, or ppoll with its timespec (`Some(None)`: NULL).
fn poll(t: &mut Tracer, op: &Op<Live>, ppoll: Option<Option<(i64, i64)>>) -> Outcome {
    let fds: Vec<(i32, i16)> = op
        .poll_fds(0)
        .iter()
        // The parser kept events within u16: the bits of a C short, taken as they are.
        .map(|&(fd, events)| (fd, i16::from_ne_bytes(bits16(events).to_ne_bytes())))
        .collect();
    let timeout: i32 = if ppoll.is_none() { op.int(2) } else { 0 };
    let r = t.sys(
        op.name(),
        || fds::poll(&fds, timeout, ppoll),
        |t, r| {
            let detail = r.as_ref().ok().map(|(n, revents)| {
                if *n == 0 {
                    return Part::text("Timeout");
                }
                let ready = fds
                    .iter()
                    .zip(revents)
                    .filter(|(_, rev)| **rev != 0)
                    .map(|(&(fd, _), &rev)| pollfd(t, fd, "revents", revents_bits(rev)))
                    .collect();
                Part::Out(Box::new(Part::List(ready)))
            });
            Described {
                args: poll_parts(t, op),
                ret: ret(r, |(n, _)| count(*n)),
                detail,
            }
        },
    );
    match r {
        Ok((n, revents)) => Outcome {
            events: fds
                .iter()
                .zip(&revents)
                .filter(|(_, rev)| **rev != 0)
                .map(|(&(fd, _), &rev)| (revents_bits(rev), u64::try_from(fd).unwrap_or(u64::MAX)))
                .collect(),
            ..Outcome::of(Ok(count(n)))
        },
        Err(e) => Outcome::of(Err(e)),
    }
}

fn bits16(events: u32) -> u16 {
    u16::try_from(events).unwrap_or(u16::MAX)
}

/// A short of poll bits as the u32 expectations use.
fn revents_bits(revents: i16) -> u32 {
    u32::from(u16::from_ne_bytes(revents.to_ne_bytes()))
}

fn pwait2_parts(t: &Tracer, op: &Op<Live>, events: &[(u32, u64)]) -> Vec<Part> {
    let events = events
        .iter()
        .map(|&(ev, data)| t.epoll_event_part(ev, data))
        .collect();
    vec![
        t.fd_part(op.fd(0)),
        Part::Out(Box::new(Part::List(events))),
        Part::num(op.int::<i32>(2)),
        timespec_or_null(op.times(3)),
        Part::text("NULL"),
        Part::num(8),
    ]
}

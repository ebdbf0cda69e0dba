//! The entries of the call table for the other kinds of fd an event loop meets (pipes,
//! socketpairs, eventfds, timerfds, datagram sockets), the poll family and the other epoll
//! waits. Each is a [`CallSpec`] listed in [`super::CALLS`]; its trace goes through
//! [`Tracer::sys`], described by parts.

use nix::errno::Errno;

use super::{Action, Blocking, CallSpec, MAXEVENTS, READ_RANGE, count, number};
use crate::names::{self, flags_name, name_of};
use crate::scenario::ast::{Live, Op, Returns, TaskRef};
use crate::scenario::kinds::{MAX_BYTES, Param};
use crate::scenario::protocol::Outcome;
use crate::sys::{self, fds};
use crate::trace::{Call, Part, Ret, quote_bytes};
use crate::tracer::{Described, Tracer};

const fn flags(what: &'static str, table: fn() -> Vec<(&'static str, i32)>) -> Param {
    Param::Flags { what, table }
}

pub const PIPE: CallSpec = CallSpec {
    name: "pipe",
    params: &[Param::NewFds(2)],
    forms: &[&[0]],
    usage: "pipe([R, W])",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| pipe(t, op, None)),
};

pub const PIPE2: CallSpec = CallSpec {
    name: "pipe2",
    params: &[
        Param::NewFds(2),
        flags("the flags", || names::PIPE_FLAGS.to_vec()),
    ],
    forms: &[&[0, 1]],
    usage: "pipe2([R, W], O_NONBLOCK)",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| pipe(t, op, Some(op.int(1)))),
};

pub const SOCKETPAIR: CallSpec = CallSpec {
    name: "socketpair",
    params: &[
        Param::Family,
        flags("the type", || {
            names::SOCK_TYPES
                .iter()
                .chain(names::SOCK_FLAGS)
                .copied()
                .collect()
        }),
        Param::int("a protocol number"),
        Param::NewFds(2),
    ],
    forms: &[&[0, 1, 2, 3]],
    usage: "socketpair(AF_UNIX, SOCK_STREAM, 0, [S0, S1])",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| {
        let (domain, ty, protocol) = (op.family(0).raw(), op.int(1), op.int(2));
        let names = op.new_fds(3).to_vec();
        let r = t.sys(
            "socketpair",
            || fds::socketpair(domain, ty, protocol),
            |t, r| Described {
                args: vec![
                    Part::text(names::domain_name(domain)),
                    Part::text(names::socket_type_name(ty)),
                    Part::num(protocol),
                    new_fds(t, r, &names),
                ],
                ret: ret(r, |_| 0),
                detail: None,
            },
        );
        pair_outcome(r)
    }),
};

pub const EVENTFD2: CallSpec = CallSpec {
    name: "eventfd2",
    params: &[
        Param::Int {
            what: "an initial value (a number)",
            min: 0,
            max: u32::MAX as i64,
            range: None,
        },
        flags("the flags", || names::EFD_FLAGS.to_vec()),
    ],
    forms: &[&[0, 1]],
    usage: "eventfd2(0, EFD_NONBLOCK)",
    returns: Returns::Fd,
    blocking: None,
    action: Action::Call(|t, name, op| {
        let (init, flags): (u32, i32) = (op.int(0), op.int(1));
        number(t.sys(
            "eventfd2",
            || fds::eventfd2(init, flags),
            |t, r| Described {
                args: vec![
                    Part::num(init),
                    Part::text(flags_name(flags, names::EFD_FLAGS)),
                ],
                ret: t.fd_ret(r, name),
                detail: None,
            },
        ))
    }),
};

pub const EPOLL_CREATE: CallSpec = CallSpec {
    name: "epoll_create",
    params: &[Param::int("a size (a number)")],
    forms: &[&[0]],
    usage: "epoll_create(1)",
    returns: Returns::Fd,
    blocking: None,
    action: Action::Call(|t, name, op| {
        let size: i32 = op.int(0);
        number(t.sys(
            "epoll_create",
            || fds::epoll_create(size),
            |t, r| Described {
                args: vec![Part::num(size)],
                ret: t.fd_ret(r, name),
                detail: None,
            },
        ))
    }),
};

pub const TIMERFD_CREATE: CallSpec = CallSpec {
    name: "timerfd_create",
    params: &[
        flags("the clock", || names::CLOCKS.to_vec()),
        flags("the flags", || names::TFD_FLAGS.to_vec()),
    ],
    forms: &[&[0, 1]],
    usage: "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)",
    returns: Returns::Fd,
    blocking: None,
    action: Action::Call(|t, name, op| {
        let (clock, flags): (i32, i32) = (op.int(0), op.int(1));
        number(t.sys(
            "timerfd_create",
            || fds::timerfd_create(clock, flags),
            |t, r| Described {
                args: vec![
                    Part::text(name_of(names::CLOCKS, clock)),
                    Part::text(flags_name(flags, names::TFD_FLAGS)),
                ],
                ret: t.fd_ret(r, name),
                detail: None,
            },
        ))
    }),
};

pub const TIMERFD_SETTIME: CallSpec = CallSpec {
    name: "timerfd_settime",
    params: &[
        Param::Fd,
        flags("the flags", || names::TFD_SETTIME_FLAGS.to_vec()),
        Param::Itimerspec,
        Param::Any,
    ],
    forms: &[&[0, 1, 2], &[0, 1, 2, 3]],
    usage: "timerfd_settime(T, 0, {it_interval={tv_sec=0, tv_nsec=0}, \
            it_value={tv_sec=0, tv_nsec=1000000}}, NULL)",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| {
        let (fd, flags): (i32, i32) = (op.fd(0), op.int(1));
        let times = op.times(2).unwrap_or_default();
        let (interval, value) = (times[0], times[1]);
        Outcome::of(
            t.sys(
                "timerfd_settime",
                || fds::timerfd_settime(fd, flags, interval, value),
                |t, r| Described {
                    args: vec![
                        t.fd_part(fd),
                        Part::text(flags_name(flags, names::TFD_SETTIME_FLAGS)),
                        Part::Struct(vec![
                            ("it_interval".into(), timespec(interval)),
                            ("it_value".into(), timespec(value)),
                        ]),
                        Part::text("NULL"),
                    ],
                    ret: ret(r, |()| 0),
                    detail: None,
                },
            )
            .map(|()| 0),
        )
    }),
};

pub const SENDTO: CallSpec = CallSpec {
    name: "sendto",
    params: &[
        Param::Fd,
        Param::Bytes,
        Param::LenOf(1),
        flags("the flags", || names::MSG_FLAGS.to_vec()),
        Param::Addr,
    ],
    forms: &[&[0, 1, 2, 3, 4]],
    usage: "sendto(U, \"x\", 1, 0, ADDR)",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| {
        let (fd, data, flags, addr) = (op.fd(0), op.bytes(1), op.int(3), op.addr(4));
        let raw = sys::RawAddr::from(addr);
        Outcome::of(
            t.sys(
                "sendto",
                || fds::sendto(fd, data, flags, &raw),
                |t, r| Described {
                    args: vec![
                        t.fd_part(fd),
                        Part::text(quote_bytes(data)),
                        Part::num(data.len()),
                        Part::text(flags_name(flags, names::MSG_FLAGS)),
                        t.addr_part(addr),
                    ],
                    ret: ret(r, |n| count(*n)),
                    detail: None,
                },
            )
            .map(count),
        )
    }),
};

pub const RECVFROM: CallSpec = CallSpec {
    name: "recvfrom",
    params: &[
        Param::Fd,
        Param::ExpectBytes,
        Param::Int {
            what: "a byte count",
            min: 0,
            max: MAX_BYTES as i64,
            range: Some(READ_RANGE),
        },
        flags("the flags", || names::MSG_FLAGS.to_vec()),
        Param::Any,
        Param::Any,
    ],
    forms: &[&[0, 2, 3], &[0, 1, 2, 3], &[0, 1, 2, 3, 4, 5]],
    usage: "recvfrom(U, \"expected\", 64, 0) or recvfrom(U, ..., 64, 0)",
    returns: Returns::Number,
    blocking: Some(Blocking {
        syscalls: &[libc::SYS_recvfrom],
        unfinished: |t, op| Call::Sys {
            name: "recvfrom".into(),
            args: recvfrom_parts(t, op, None),
            detail: None,
        },
    }),
    action: Action::Call(|t, _, op| {
        let (fd, len, flags): (i32, usize, i32) = (op.fd(0), op.int(2), op.int(3));
        let r = t.sys(
            "recvfrom",
            || {
                let mut buf = vec![0u8; len];
                let n = fds::recvfrom(fd, &mut buf, flags)?;
                buf.truncate(n);
                Ok(buf)
            },
            |t, r| Described {
                args: recvfrom_parts(t, op, r.as_deref().ok()),
                ret: ret(r, |b| count(b.len())),
                detail: None,
            },
        );
        match r {
            Ok(data) => Outcome {
                result: Ok(count(data.len())),
                data,
                ..Outcome::of(Ok(0))
            },
            Err(e) => Outcome::of(Err(e)),
        }
    }),
};

pub const OPENAT: CallSpec = CallSpec {
    name: "openat",
    params: &[
        flags("the directory", || names::AT_DIRS.to_vec()),
        Param::Bytes,
        // Read-only flags only: a scenario reads files (a regular file for epoll_ctl's EPERM),
        // it never creates or changes one.
        Param::OnlyFlags {
            what: "read-only flags",
            table: || names::OPEN_FLAGS.to_vec(),
        },
    ],
    forms: &[&[0, 1, 2]],
    usage: "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY)",
    returns: Returns::Fd,
    blocking: None,
    action: Action::Call(|t, name, op| {
        let (dir, path, flags): (i32, &[u8], i32) = (op.int(0), op.bytes(1), op.int(2));
        number(t.sys(
            "openat",
            || fds::openat(dir, path, flags),
            |t, r| Described {
                args: vec![
                    Part::text(name_of(names::AT_DIRS, dir)),
                    Part::text(quote_bytes(path)),
                    Part::text(open_flags_name(flags)),
                ],
                ret: t.fd_ret(r, name),
                detail: None,
            },
        ))
    }),
};

pub const KILL: CallSpec = CallSpec {
    name: "kill",
    params: &[Param::Task, flags("the signal", || names::SIGNALS.to_vec())],
    forms: &[&[0, 1]],
    usage: "kill(w1, SIGUSR1)",
    returns: Returns::Number,
    blocking: None,
    action: Action::Call(|t, _, op| {
        let (task, signal): (&TaskRef, i32) = (op.task(0), op.int(1));
        // A process is its main thread: tgkill reaches exactly the task named.
        let whom = if task.tgid == task.tid {
            task.tid.to_string()
        } else {
            format!("{}/{}", task.tgid, task.tid)
        };
        Outcome::of(
            t.sys(
                "kill",
                || fds::tgkill(task.tgid, task.tid, signal),
                |_, r| Described {
                    args: vec![
                        Part::Named {
                            name: Some(task.name.clone()),
                            raw: whom,
                        },
                        Part::text(name_of(names::SIGNALS, signal)),
                    ],
                    ret: ret(r, |()| 0),
                    detail: None,
                },
            )
            .map(|()| 0),
        )
    }),
};

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

/// `O_RDONLY|O_NONBLOCK`, as strace names open flags: the access mode first.
fn open_flags_name(flags: i32) -> String {
    match flags_name(flags, names::OPEN_FLAGS) {
        rest if rest == "0" => "O_RDONLY".into(),
        rest => format!("O_RDONLY|{rest}"),
    }
}

fn timespec((sec, nsec): (i64, i64)) -> Part {
    Part::text(format!("{{tv_sec={sec}, tv_nsec={nsec}}}"))
}

fn timespec_or_null(times: Option<&[(i64, i64)]>) -> Part {
    times.map_or_else(|| Part::text("NULL"), |t| timespec(t[0]))
}

/// `[R, W]` once the call made them (naming them), `...` when it failed.
fn new_fds(t: &mut Tracer, r: &Result<[i32; 2], Errno>, names: &[String]) -> Part {
    match r {
        Ok(fds) => Part::List(t.name_new_fds(fds, names)),
        Err(_) => Part::text("..."),
    }
}

fn pair_outcome(r: Result<[i32; 2], Errno>) -> Outcome {
    match r {
        Ok(fds) => Outcome {
            fds: fds.to_vec(),
            ..Outcome::of(Ok(0))
        },
        Err(e) => Outcome::of(Err(e)),
    }
}

/// pipe() is pipe2() without flags, and traced under its own name.
fn pipe(t: &mut Tracer, op: &Op<Live>, flags: Option<i32>) -> Outcome {
    let names = op.new_fds(0).to_vec();
    let name = if flags.is_some() { "pipe2" } else { "pipe" };
    let r = t.sys(
        name,
        || fds::pipe2(flags.unwrap_or(0)),
        |t, r| {
            let mut args = vec![new_fds(t, r, &names)];
            if let Some(flags) = flags {
                args.push(Part::text(flags_name(flags, names::PIPE_FLAGS)));
            }
            Described {
                args,
                ret: ret(r, |_| 0),
                detail: None,
            }
        },
    );
    pair_outcome(r)
}

fn recvfrom_parts(t: &Tracer, op: &Op<Live>, data: Option<&[u8]>) -> Vec<Part> {
    let (count, flags): (usize, i32) = (op.int(2), op.int(3));
    vec![
        t.fd_part(op.fd(0)),
        Part::Out(Box::new(Part::text(data.map_or("...".into(), quote_bytes)))),
        Part::num(count),
        Part::text(flags_name(flags, names::MSG_FLAGS)),
        Part::text("NULL"),
        Part::text("NULL"),
    ]
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

/// The return of a call that succeeded with `value(result)` or failed.
fn ret<T>(r: &Result<T, Errno>, value: impl FnOnce(&T) -> i64) -> Ret {
    match r {
        Ok(v) => Ret::value(value(v)),
        Err(e) => Ret::Err { errno: *e },
    }
}

//! The entries of the call table for the other kinds of fd an event loop meets (pipes,
//! socketpairs, eventfds, timerfds, datagram sockets, read-only files) and signals. Each is a [`CallSpec`] listed in [`super::CALLS`]; its trace goes through
//! [`Tracer::sys`], described by parts.

use nix::errno::Errno;

use super::act::{count, number};
use super::{Action, Blocking, CallSpec, READ_RANGE};
use crate::names::{self, flags_name, name_of};
use crate::scenario::ast::{Live, Op, Returns, TaskRef};
use crate::scenario::kinds::{MAX_BYTES, Param};
use crate::scenario::protocol::Outcome;
use crate::sys::{self, fds};
use crate::trace::{Call, Part, Ret, quote_bytes};
use crate::tracer::{Described, Tracer};

pub(super) const fn flags(what: &'static str, table: fn() -> Vec<(&'static str, i32)>) -> Param {
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

/// `O_RDONLY|O_NONBLOCK`, as strace names open flags: the access mode first.
fn open_flags_name(flags: i32) -> String {
    match flags_name(flags, names::OPEN_FLAGS) {
        rest if rest == "0" => "O_RDONLY".into(),
        rest => format!("O_RDONLY|{rest}"),
    }
}

pub(super) fn timespec((sec, nsec): (i64, i64)) -> Part {
    Part::text(format!("{{tv_sec={sec}, tv_nsec={nsec}}}"))
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

/// The return of a call that succeeded with `value(result)` or failed.
pub(super) fn ret<T>(r: &Result<T, Errno>, value: impl FnOnce(&T) -> i64) -> Ret {
    match r {
        Ok(v) => Ret::value(value(v)),
        Err(e) => Ret::Err { errno: *e },
    }
}

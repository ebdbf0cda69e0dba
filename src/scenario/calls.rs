//! THE table of calls a scenario can make. One entry says everything about a call: its name,
//! the kinds of its arguments (with their ranges) and the spellings accepted, what it returns,
//! whether it can block (and in which syscalls it then sleeps, with the trace line shown while
//! it does), and how an actor makes it. The parser, the scope checks, the runner and the
//! actors all read this table; adding a call is one entry here (and a method on the tracer if
//! it is a new system call).
//!
//! Beside the table: the entries for the other kinds of fd (`fds`) and for the waits beyond
//! epoll_wait (`waits`), how an actor carries out the core entries (`act`), and reading a call
//! as a script writes it (`build`).

use super::ast::{CallId, Live, Op, Returns, Stage};
use super::kinds::{MAX_BYTES, Param};
use super::protocol::Outcome;
use crate::addr::SockAddr;
use crate::names;
use crate::sys;
use crate::trace::{AddrRef, Call};
use crate::tracer::Tracer;
use act::{count, drain, epoll_wait, fd_ref, live_data, number, unit};

mod act;
mod build;
mod fds;
mod waits;

pub use build::{build_op, returned_detail};

/// Most events one epoll_wait may ask for: the actor allocates that many.
pub const MAX_EVENTS: i64 = 1024;

/// How an actor carries out a call.
#[derive(Clone, Copy)]
pub enum Action {
    /// A call through the tracer; `name` is what a new fd is called (empty for none).
    Call(fn(&mut Tracer, name: &str, &Op<Live>) -> Outcome),
    /// The actor forks; the child becomes a new actor.
    Fork,
    /// The actor starts a thread in its process; the thread becomes a new actor.
    Thread,
    /// The actor exits with the code in argument 0.
    Exit,
}

/// A call that can block, and so may run in the background (`&`).
#[derive(Clone, Copy)]
pub struct Blocking {
    /// The syscalls it can be asleep in (glibc may route one call through another).
    pub syscalls: &'static [i64],
    /// Its trace line while it has not returned.
    pub unfinished: fn(&Tracer, &Op<Live>) -> Call,
}

/// One call of the language.
pub struct CallSpec {
    pub name: &'static str,
    /// The argument kinds of the fullest spelling, in order.
    pub params: &'static [Param],
    /// The spellings accepted, shortest first: which of `params` each writes, in order.
    /// The ones left out take their default (`...`, no expectation, 0).
    pub forms: &'static [&'static [usize]],
    pub usage: &'static str,
    pub returns: Returns,
    pub blocking: Option<Blocking>,
    pub action: Action,
}

/// Every call, in the order "unknown call" messages list them.
pub static CALLS: &[CallSpec] = &[
    CallSpec {
        name: "socket",
        params: &[
            Param::Family,
            Param::Flags {
                what: "the type",
                table: || {
                    let types = names::SOCK_TYPES.iter();
                    types.chain(names::SOCK_FLAGS).copied().collect()
                },
            },
            Param::Int {
                what: "a protocol number",
                min: 0,
                max: 0,
                range: Some("only protocol 0 is supported"),
            },
        ],
        forms: &[&[0, 1, 2]],
        usage: "socket(FAMILY, SOCK_STREAM, 0)",
        returns: Returns::Fd,
        blocking: None,
        action: Action::Call(|t, name, op| number(t.socket(name, op.family(0), op.int(1)))),
    },
    CallSpec {
        name: "setsockopt",
        params: &[
            Param::Fd,
            Param::Flags {
                what: "the level",
                table: || names::SOCKOPT_LEVELS.to_vec(),
            },
            Param::Flags {
                what: "the option",
                table: || names::SOCKOPTS.iter().map(|&(n, _, v)| (n, v)).collect(),
            },
            Param::BoxedInt { what: "a number" },
        ],
        forms: &[&[0, 1, 2, 3]],
        usage: "setsockopt(L, SOL_SOCKET, SO_REUSEPORT, 1)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| {
            unit(t.setsockopt(op.fd(0), op.int(1), op.int(2), op.int(3)))
        }),
    },
    CallSpec {
        name: "bind",
        params: &[Param::Fd, Param::Addr],
        forms: &[&[0, 1]],
        usage: "bind(L, ADDR)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| {
            let (fd, addr) = (op.fd(0), op.addr(1));
            let mut outcome = unit(t.bind(fd, addr));
            if outcome.result.is_ok() {
                outcome.bound = match addr {
                    SockAddr::Unix { .. } => Some(addr.clone()),
                    SockAddr::Inet { .. } => sys::getsockname(fd).ok(),
                };
            }
            outcome
        }),
    },
    CallSpec {
        name: "listen",
        params: &[Param::Fd, Param::int("a backlog (a number)")],
        forms: &[&[0, 1]],
        usage: "listen(L, BACKLOG)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| unit(t.listen(op.fd(0), op.int(1)))),
    },
    CallSpec {
        name: "connect",
        params: &[Param::Fd, Param::Addr],
        forms: &[&[0, 1]],
        usage: "connect(L, ADDR)",
        returns: Returns::Number,
        blocking: Some(Blocking {
            syscalls: &[libc::SYS_connect],
            unfinished: |t, op| {
                let addr = op.addr(1);
                Call::Connect {
                    fd: fd_ref(t, op.fd(0)),
                    addr: AddrRef {
                        addr: addr.clone(),
                        len: sys::RawAddr::from(addr).len(),
                        alias: t.alias_of(addr),
                    },
                }
            },
        }),
        action: Action::Call(|t, _, op| unit(t.connect(op.fd(0), op.addr(1)))),
    },
    CallSpec {
        name: "accept",
        params: &[Param::Fd, Param::Any, Param::Any],
        forms: &[&[0], &[0, 1], &[0, 1, 2]],
        usage: "accept(L) or accept(L, ..., ...)",
        returns: Returns::Fd,
        blocking: Some(Blocking {
            syscalls: &[libc::SYS_accept, libc::SYS_accept4],
            unfinished: |t, op| Call::Accept {
                fd: fd_ref(t, op.fd(0)),
            },
        }),
        action: Action::Call(|t, name, op| number(t.accept(name, op.fd(0)))),
    },
    CallSpec {
        name: "accept4",
        params: &[
            Param::Fd,
            Param::Ellipsis {
                what: "'...' (the peer address is not checked)",
            },
            Param::Flags {
                what: "the flags",
                table: || names::SOCK_FLAGS.to_vec(),
            },
        ],
        forms: &[&[0, 2], &[0, 1, 2]],
        usage: "accept4(L, ..., SOCK_NONBLOCK)",
        returns: Returns::Fd,
        blocking: Some(Blocking {
            syscalls: &[libc::SYS_accept, libc::SYS_accept4],
            unfinished: |t, op| Call::Accept4 {
                fd: fd_ref(t, op.fd(0)),
                flags: op.int(2),
            },
        }),
        action: Action::Call(|t, name, op| number(t.accept4(name, op.fd(0), op.int(2)))),
    },
    CallSpec {
        name: "close",
        params: &[Param::Fd],
        forms: &[&[0]],
        usage: "close(FD)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| unit(t.close(op.fd(0)))),
    },
    CallSpec {
        name: "shutdown",
        params: &[
            Param::Fd,
            Param::Flags {
                what: "how",
                table: || names::SHUT_HOW.to_vec(),
            },
        ],
        forms: &[&[0, 1]],
        usage: "shutdown(FD, SHUT_RD)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| unit(t.shutdown(op.fd(0), op.int(1)))),
    },
    CallSpec {
        name: "dup",
        params: &[Param::Fd],
        forms: &[&[0]],
        usage: "dup(FD)",
        returns: Returns::Fd,
        blocking: None,
        action: Action::Call(|t, name, op| number(t.dup(name, op.fd(0)))),
    },
    CallSpec {
        name: "dup2",
        params: &[Param::Fd, Param::Fd],
        forms: &[&[0, 1]],
        usage: "dup2(FD, TARGET)",
        returns: Returns::Fd,
        blocking: None,
        action: Action::Call(|t, name, op| number(t.dup2(name, op.fd(0), op.fd(1)))),
    },
    CallSpec {
        name: "read",
        params: &[
            Param::Fd,
            Param::ExpectBytes,
            Param::Int {
                what: "a byte count",
                min: 0,
                max: MAX_BYTES as i64,
                range: Some(READ_RANGE),
            },
        ],
        forms: &[&[0, 2], &[0, 1, 2]],
        usage: "read(FD, \"expected\", COUNT) or read(FD, ..., COUNT)",
        returns: Returns::Number,
        blocking: Some(Blocking {
            syscalls: &[libc::SYS_read],
            unfinished: |t, op| Call::Read {
                fd: fd_ref(t, op.fd(0)),
                data: vec![],
                count: op.int(2),
            },
        }),
        action: Action::Call(|t, _, op| match t.read(op.fd(0), op.int(2)) {
            Ok(data) => Outcome {
                result: Ok(count(data.len())),
                data,
                ..Outcome::of(Ok(0))
            },
            Err(e) => Outcome::of(Err(e)),
        }),
    },
    CallSpec {
        name: "write",
        params: &[Param::Fd, Param::Bytes, Param::LenOf(1)],
        forms: &[&[0, 1], &[0, 1, 2]],
        usage: "write(FD, \"data\")",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| Outcome::of(t.write(op.fd(0), op.bytes(1)).map(count))),
    },
    CallSpec {
        name: "epoll_create1",
        params: &[Param::Flags {
            what: "the flags",
            table: || names::EPOLL_CREATE_FLAGS.to_vec(),
        }],
        forms: &[&[0]],
        usage: "epoll_create1(EPOLL_CLOEXEC) or epoll_create1(0)",
        returns: Returns::Fd,
        blocking: None,
        action: Action::Call(|t, name, op| number(t.epoll_create1(name, op.int(0)))),
    },
    CallSpec {
        name: "epoll_ctl",
        params: &[
            Param::Fd,
            Param::Flags {
                what: "the operation",
                table: || names::EPOLL_OPS.to_vec(),
            },
            Param::Fd,
            Param::EventOrNull,
        ],
        forms: &[&[0, 1, 2, 3]],
        usage: "epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=L})",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| {
            let event = op.event(3).map(|e| (e.events, live_data(&e.data)));
            unit(t.epoll_ctl(op.fd(0), op.int(1), op.fd(2), event))
        }),
    },
    CallSpec {
        name: "epoll_wait",
        params: &[
            Param::Fd,
            Param::ExpectEvents,
            MAXEVENTS,
            Param::int("a timeout in ms (a number)"),
        ],
        // (E, MAX, TIMEOUT) or (E, EVENTS, MAX, TIMEOUT)
        forms: &[&[0, 2, 3], &[0, 1, 2, 3]],
        usage: "epoll_wait(E, [...], 16, 0)",
        returns: Returns::Number,
        blocking: Some(EPOLL_BLOCKING),
        action: Action::Call(|t, _, op| epoll_wait(t, op, false)),
    },
    CallSpec {
        name: "epoll_pwait",
        params: &[
            Param::Fd,
            Param::ExpectEvents,
            MAXEVENTS,
            Param::int("a timeout in ms (a number)"),
            Param::Any,
        ],
        // ... and (E, EVENTS, MAX, TIMEOUT, SIGMASK)
        forms: &[&[0, 2, 3], &[0, 1, 2, 3], &[0, 1, 2, 3, 4]],
        usage: "epoll_pwait(E, [...], 16, 0)",
        returns: Returns::Number,
        blocking: Some(EPOLL_BLOCKING),
        action: Action::Call(|t, _, op| epoll_wait(t, op, true)),
    },
    waits::EPOLL_PWAIT2,
    fds::EPOLL_CREATE,
    fds::PIPE,
    fds::PIPE2,
    fds::SOCKETPAIR,
    fds::EVENTFD2,
    fds::TIMERFD_CREATE,
    fds::TIMERFD_SETTIME,
    fds::SENDTO,
    fds::RECVFROM,
    waits::POLL,
    waits::PPOLL,
    fds::KILL,
    fds::OPENAT,
    CallSpec {
        name: "fork",
        params: &[],
        forms: &[&[]],
        usage: "fork() = NAME",
        returns: Returns::Actor,
        blocking: None,
        action: Action::Fork,
    },
    CallSpec {
        name: "thread",
        params: &[],
        forms: &[&[]],
        usage: "thread() = NAME",
        returns: Returns::Thread,
        blocking: None,
        action: Action::Thread,
    },
    CallSpec {
        name: "drain",
        params: &[Param::Fd],
        forms: &[&[0]],
        usage: "drain(FD)",
        returns: Returns::Number,
        blocking: None,
        action: Action::Call(|t, _, op| Outcome::of(Ok(drain(t, op.fd(0))))),
    },
    CallSpec {
        name: "exit",
        params: &[Param::Int {
            what: "an exit code",
            min: 0,
            max: 255,
            range: None,
        }],
        forms: &[&[], &[0]],
        usage: "exit() or exit(CODE)",
        returns: Returns::Nothing,
        blocking: None,
        action: Action::Exit,
    },
];

const READ_RANGE: &str = "read count must be 0..16384";
const _: () = assert!(MAX_BYTES == 16384, "READ_RANGE names MAX_BYTES");

const MAXEVENTS: Param = Param::Int {
    what: "maxevents (a number)",
    min: i32::MIN as i64,
    max: MAX_EVENTS,
    range: None,
};

const EPOLL_BLOCKING: Blocking = Blocking {
    syscalls: &[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ],
    unfinished: |t, op| Call::EpollWait {
        epfd: fd_ref(t, op.fd(0)),
        events: vec![],
        maxevents: op.int(2),
        timeout: op.int(3),
        pwait: op.name() == "epoll_pwait",
    },
};

impl CallId {
    pub fn spec(self) -> &'static CallSpec {
        &CALLS[self.0]
    }

    pub fn by_name(name: &str) -> Option<CallId> {
        CALLS.iter().position(|c| c.name == name).map(CallId)
    }
}

impl<S: Stage> Op<S> {
    /// The call's name as written in scripts and traces.
    pub fn name(&self) -> &'static str {
        self.call.spec().name
    }

    pub fn returns(&self) -> Returns {
        self.call.spec().returns
    }
}

/// The names of the calls that can block, for messages.
pub fn blocking_names() -> Vec<&'static str> {
    CALLS
        .iter()
        .filter(|c| c.blocking.is_some())
        .map(|c| c.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::ast::Arg;
    use super::*;

    /// The table is self-consistent: names unique, every spelling writes existing parameters
    /// in order, spellings are listed by their length, and only blocking calls name syscalls.
    #[test]
    fn every_entry_is_well_formed() {
        for (i, spec) in CALLS.iter().enumerate() {
            assert_eq!(CallId::by_name(spec.name), Some(CallId(i)), "{}", spec.name);
            assert!(!spec.forms.is_empty(), "{}", spec.name);
            for form in spec.forms {
                assert!(form.windows(2).all(|w| w[0] < w[1]), "{}", spec.name);
                assert!(form.iter().all(|&p| p < spec.params.len()), "{}", spec.name);
            }
            assert!(
                spec.forms.windows(2).all(|w| w[0].len() < w[1].len()),
                "{}: spellings by length",
                spec.name
            );
            if let Some(blocking) = spec.blocking {
                assert!(!blocking.syscalls.is_empty(), "{}", spec.name);
            }
            assert!(spec.usage.starts_with(spec.name), "{}", spec.name);
        }
    }

    /// A resolved call crosses the actor channel as JSON and comes back the same.
    #[test]
    fn a_live_call_survives_the_channel_encoding() {
        let op: Op<Live> = Op {
            call: CallId::by_name("epoll_ctl").unwrap(),
            args: vec![
                Arg::Fd(4),
                Arg::Int(i64::from(libc::EPOLL_CTL_ADD)),
                Arg::Fd(3),
                Arg::Event(Some(super::super::ast::EventArg {
                    events: u32::MAX,
                    data: super::super::ast::Data::Fd(3),
                })),
            ],
        };
        let json = serde_json::to_string(&op).unwrap();
        let back: Op<Live> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.name(), "epoll_ctl");
        assert_eq!(back.fd(0), 4);
        assert_eq!(back.int::<i32>(1), libc::EPOLL_CTL_ADD);
        let event = back.event(3).unwrap();
        assert_eq!(event.events, u32::MAX);
        assert_eq!(live_data(&event.data), 3);
    }
}

//! One arm per call of the scenario language: what the documentation allows it to return,
//! and how the model's state changes with what it did return.

use std::collections::VecDeque;

use nix::errno::Errno;

use super::epoll;
use super::rules::{self, Rule};
use super::verdict::{Allowed, Judgement, Label, Res, label, result_text};
use super::world::{Fd, ObjId, Sock, SockState, World};
use super::{Model, Plant};
use crate::addr::Family;
use crate::scenario::StepResult;
use crate::scenario::ast::{Arg, Data, FdArg, Op, Script, Step};

/// What an fd argument refers to.
pub(super) enum Look {
    Open(ObjId),
    /// Closed: EBADF, unless the number may have been reused by an fd the model cannot see.
    Closed {
        maybe_reused: bool,
    },
    /// A literal number, or a name the model does not know.
    Unknown,
}

pub(super) fn look(w: &World, actor: &str, fd: &FdArg) -> Look {
    let FdArg::Name(name) = fd else {
        return Look::Unknown;
    };
    match w.proc(actor).and_then(|a| a.fds.get(name).map(|f| (a, f))) {
        Some((_, Fd { doubtful: true, .. })) => Look::Unknown,
        Some((
            _,
            Fd {
                obj, open: true, ..
            },
        )) => Look::Open(*obj),
        Some((a, f)) => Look::Closed {
            maybe_reused: a.forked || f.reused,
        },
        None => Look::Unknown,
    }
}

pub(super) fn judgement(
    step: &Step,
    got: &StepResult,
    allowed: Allowed,
    rule: &'static Rule,
) -> Judgement {
    // fd numbers and pids vary between runs: show the name the script gives them.
    // So do values the script leaves open (`= ?`, `= 1..4`, `= $n`): show the pattern.
    let observed = match (&step.expect, &got.result) {
        (Some(crate::scenario::ast::Expect::Bind(name)), Ok(_)) => name.clone(),
        (Some(e), _) if !e.is_exact() => format!("[{}]", e.text()),
        _ => result_text(&got.result),
    };
    Judgement {
        line: step.span.line,
        col: step.span.col,
        actor: step.actor.clone(),
        label: label(&allowed, &got.result),
        rule,
        allowed,
        observed,
        actual: result_text(&got.result),
        note: None,
    }
}

fn err(e: Errno) -> Allowed {
    Allowed::one(Res::Err(e))
}

fn val(v: i64) -> Allowed {
    Allowed::one(Res::Val(v))
}

/// The (allowed, rule) for an fd that is not open, or the object it names.
pub(super) fn open_or(
    w: &World,
    actor: &str,
    fd: &FdArg,
) -> Result<ObjId, (Allowed, &'static Rule)> {
    match look(w, actor, fd) {
        Look::Open(o) => Ok(o),
        Look::Closed {
            maybe_reused: false,
        } => Err((err(Errno::EBADF), &rules::BAD_FD)),
        Look::Closed { maybe_reused: true } => Err((Allowed::Unspecified, &rules::FD_MAYBE_REUSED)),
        Look::Unknown => Err((Allowed::Unspecified, &rules::NOT_MODELLED)),
    }
}

/// Judges one (foreground) step against the documentation and applies its observed result.
pub(super) fn judge(m: &mut Model, step: &Step, got: &StepResult) -> Option<Judgement> {
    let op = &step.op;
    let actor = step.actor.as_str();
    let (allowed, rule) = match op.name() {
        "socket" => (Allowed::one(Res::NewFd), &rules::SOCKET_NEW_FD),
        "epoll_create1" => {
            if op.int::<i64>(0) & !i64::from(libc::EPOLL_CLOEXEC) == 0 {
                (Allowed::one(Res::NewFd), &rules::EPOLL_CREATE)
            } else {
                (err(Errno::EINVAL), &rules::EPOLL_CREATE_FLAGS)
            }
        }
        "fork" => (Allowed::one(Res::Pid), &rules::FORK),
        "setsockopt" => setsockopt(m, actor, op),
        "bind" => bind(m, actor, op),
        "listen" => listen(m, actor, op),
        "connect" => connect(m, actor, op),
        "accept" | "accept4" => accept(m, actor, op),
        "close" => match open_or(&m.w, actor, &op.fd(0)) {
            Ok(_) => (val(0), &rules::CLOSE_OK),
            Err(e) => e,
        },
        "shutdown" => shutdown(m, actor, op),
        "dup" => match open_or(&m.w, actor, &op.fd(0)) {
            Ok(_) => (Allowed::one(Res::NewFd), &rules::DUP_NEW_FD),
            Err(e) => e,
        },
        "dup2" => match open_or(&m.w, actor, &op.fd(0)) {
            Ok(_) => (Allowed::one(Res::NewFd), &rules::DUP2_TARGET),
            Err(e) => e,
        },
        "read" => read_at(m, actor, op, false),
        "write" => write(m, actor, op),
        "epoll_ctl" => super::ctl::epoll_ctl(m, actor, op),
        "epoll_wait" | "epoll_pwait" => epoll_wait(m, actor, op, op.int::<i64>(3) < 0),
        "epoll_pwait2" => match op.times(3).map(|t| t[0]) {
            None => epoll_wait(m, actor, op, true),
            Some((sec, nsec)) if sec < 0 || !(0..1_000_000_000).contains(&nsec) => {
                (Allowed::Unspecified, &rules::TIMESPEC_INVALID)
            }
            Some(_) => epoll_wait(m, actor, op, false),
        },
        "poll" | "ppoll" => super::poll::judge(&m.w, actor, op),
        "drain" => match open_or(&m.w, actor, &op.fd(0)) {
            Ok(o) => match m.w.sock(o).map(|s| &s.state) {
                Some(SockState::Listening {
                    queue,
                    uncertain: false,
                    ..
                }) if !m.w.undocumented(o) => (val(count(queue.len())), &rules::DRAIN),
                _ => (Allowed::Unspecified, &rules::READY_UNSPECIFIED),
            },
            Err(e) => e,
        },
        _ => match super::fdcalls::judge(m, actor, op) {
            Some(rules) => rules,
            None => {
                taint(m, actor, op);
                m.opaque = true;
                (Allowed::Unspecified, &rules::NOT_MODELLED)
            }
        },
    };
    let mut j = judgement(step, got, allowed, rule);
    if got.result != Err(Errno::EBADF) {
        through_numbers(m, actor, op);
    }
    if j.label == Label::Contradicts && resource_error(op.name(), &got.result) {
        j.label = Label::Unspecified;
        j.rule = &rules::RESOURCES;
    }
    if let Some(note) = super::apply::apply(m, step, got) {
        j.label = Label::Contradicts;
        j.rule = if op.name().contains("poll") && !op.name().starts_with("epoll") {
            &rules::POLL_REVENTS
        } else {
            &rules::WAIT_MASK
        };
        j.note = Some(note);
    }
    Some(j)
}

/// The fds a call reached by a number the model cannot tie to one of its fds: a literal
/// number, or a closed name a newer fd may have taken the number of.
fn through_numbers(m: &mut Model, actor: &str, op: &Op<Script>) {
    let closes = matches!(op.name(), "close" | "dup2");
    let mut reached = vec![];
    for (i, arg) in op.args.iter().enumerate() {
        let fds: Vec<&FdArg> = match arg {
            Arg::Fd(fd) => vec![fd],
            Arg::PollFds(list) => list.iter().map(|(fd, _)| fd).collect(),
            _ => continue,
        };
        // dup2 closes its target (argument 1), not its source.
        let closing = closes && (op.name() == "close" || i == 1);
        for fd in fds {
            match fd {
                FdArg::Num(n) if *n >= 0 => reached.push((Some(i64::from(*n)), closing)),
                FdArg::Name(name) => {
                    let doubtful =
                        m.w.proc(actor)
                            .and_then(|a| a.fds.get(name))
                            .is_some_and(|f| f.doubtful);
                    if doubtful
                        || matches!(look(&m.w, actor, fd), Look::Closed { maybe_reused: true })
                    {
                        let num = m.w.proc(actor).and_then(|a| a.nums.get(name)).copied();
                        reached.push((num, closing));
                    }
                }
                FdArg::Num(_) => {}
            }
        }
    }
    if !reached.is_empty()
        && op.name() == "epoll_ctl"
        && let Look::Open(ep) = look(&m.w, actor, &op.fd(0))
    {
        // The registration went to whatever file holds that number.
        m.w.lose(ep);
    }
    for (num, closing) in reached {
        m.w.through_number(actor, num, closing);
    }
}

/// Whether `got` is a documented failure for lack of resources (a process, memory or fd
/// limit), which the model does not track.
fn resource_error(call: &str, got: &Result<i64, Errno>) -> bool {
    let creates = matches!(
        call,
        "fork"
            | "thread"
            | "socket"
            | "socketpair"
            | "accept"
            | "accept4"
            | "dup"
            | "dup2"
            | "epoll_create1"
            | "epoll_create"
            | "pipe"
            | "pipe2"
            | "eventfd2"
            | "timerfd_create"
            | "openat"
    );
    creates
        && matches!(
            got,
            Err(Errno::EAGAIN | Errno::ENOMEM | Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS)
        )
        && !(call.starts_with("accept") && *got == Err(Errno::EAGAIN))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Marks every object the call names as unknown: the model does not follow it.
pub(super) fn taint(m: &mut Model, actor: &str, op: &Op<Script>) {
    for arg in &op.args {
        if let Arg::Fd(fd) = arg
            && let Look::Open(o) = look(&m.w, actor, fd)
        {
            m.w.lose(o);
        }
    }
}

fn sock_or(w: &World, o: ObjId) -> Result<&Sock, (Allowed, &'static Rule)> {
    w.sock(o)
        .ok_or((err(Errno::ENOTSOCK), &rules::NOT_A_SOCKET))
}

type Rules = (Allowed, &'static Rule);

/// The socket a call's first argument names, or the rule that says why there is none.
fn sock_at<'w>(w: &'w World, actor: &str, op: &Op<Script>) -> Result<&'w Sock, Rules> {
    sock_or(w, open_or(w, actor, &op.fd(0))?)
}

/// [`sock_at`] for a call the model follows on stream sockets only.
fn stream_at<'w>(w: &'w World, actor: &str, op: &Op<Script>) -> Result<&'w Sock, Rules> {
    match sock_at(w, actor, op)? {
        s if s.not_stream => Err((Allowed::Unspecified, &rules::NOT_STREAM)),
        s => Ok(s),
    }
}

fn setsockopt(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    if let Err(e) = sock_at(&m.w, actor, op) {
        return e;
    }
    let (level, opt): (i32, i32) = (op.int(1), op.int(2));
    if level == libc::SOL_SOCKET && opt == libc::SO_REUSEPORT && m.family != Family::Unix {
        (val(0), &rules::SETSOCKOPT)
    } else {
        (Allowed::Unspecified, &rules::NOT_MODELLED)
    }
}

fn bind(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let s = match sock_at(&m.w, actor, op) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if s.unknown {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    }
    if !matches!(s.state, SockState::Fresh) {
        return (err(Errno::EINVAL), &rules::BIND_INVAL);
    }
    let addr = op.addr(1);
    let holders = m.w.addrs.get(addr);
    match holders {
        None => (val(0), &rules::BIND_OK),
        // A unix socket file outlives its socket; an IP port may linger (TIME_WAIT).
        Some(h) if h.is_empty() => (Allowed::Unspecified, &rules::BIND_IN_USE),
        Some(h) => {
            let shared = s.reuseport
                && m.family != Family::Unix
                && h.iter().all(|&x| m.w.sock(x).is_some_and(|x| x.reuseport));
            if shared {
                (val(0), &rules::REUSEPORT)
            } else {
                (err(Errno::EADDRINUSE), &rules::BIND_IN_USE)
            }
        }
    }
}

fn listen(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    match stream_at(&m.w, actor, op) {
        Err(e) => e,
        Ok(s) if s.unknown => (Allowed::Unspecified, &rules::NOT_MODELLED),
        Ok(s) => match s.state {
            SockState::Bound(_) => (val(0), &rules::LISTEN_OK),
            _ => (Allowed::Unspecified, &rules::LISTEN_BACKLOG),
        },
    }
}

/// The listeners an address name leads to.
pub(super) fn listeners(w: &World, addr: &str) -> Vec<ObjId> {
    w.addrs
        .get(addr)
        .map(|h| {
            h.iter()
                .copied()
                .filter(|&x| {
                    matches!(
                        w.sock(x).map(|s| &s.state),
                        Some(SockState::Listening { .. })
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn connect(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let s = match stream_at(&m.w, actor, op) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if s.unknown {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    }
    match s.state {
        SockState::Connected => return (err(Errno::EISCONN), &rules::CONNECT_ISCONN),
        SockState::Listening { .. } => return (Allowed::Unspecified, &rules::NOT_MODELLED),
        _ => {}
    }
    let addr = op.addr(1);
    let ls = listeners(&m.w, addr);
    let ok = if s.nonblock && m.family != Family::Unix {
        Allowed::Set(vec![Res::Val(0), Res::Err(Errno::EINPROGRESS)])
    } else {
        val(0)
    };
    let ok_rule = if s.nonblock && m.family != Family::Unix {
        &rules::CONNECT_NONBLOCK_TCP
    } else {
        &rules::CONNECT_QUEUED
    };
    match ls.as_slice() {
        [] => match (m.w.addrs.contains_key(addr), m.family) {
            (false, Family::Unix) => (err(Errno::ENOENT), &rules::CONNECT_REFUSED),
            _ => (err(Errno::ECONNREFUSED), &rules::CONNECT_REFUSED),
        },
        [l] => {
            let ls = m.w.sock(*l).expect("listener");
            let room = match &ls.state {
                SockState::Listening {
                    queue,
                    backlog,
                    uncertain: false,
                    ..
                } => count(queue.len() + m.handed.get(l).map_or(0, VecDeque::len)) < *backlog,
                _ => false,
            };
            if ls.rd_shut || ls.wr_shut || ls.unknown {
                (Allowed::Unspecified, &rules::READY_UNSPECIFIED)
            } else if room {
                (ok, ok_rule)
            } else {
                (Allowed::Unspecified, &rules::LISTEN_BACKLOG)
            }
        }
        _ => (Allowed::Unspecified, &rules::REUSEPORT),
    }
}

fn accept(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let s = match stream_at(&m.w, actor, op) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if s.unknown || s.rd_shut || s.wr_shut {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    match &s.state {
        SockState::Listening {
            uncertain: true,
            queue,
            ..
        } if queue.is_empty() => (Allowed::Unspecified, &rules::REUSEPORT),
        SockState::Listening { queue, .. } if !queue.is_empty() => {
            (Allowed::one(Res::NewFd), &rules::ACCEPT_FIRST)
        }
        SockState::Listening { .. } if s.nonblock => (err(Errno::EAGAIN), &rules::ACCEPT_EAGAIN),
        SockState::Listening { .. } => (Allowed::Unspecified, &rules::ACCEPT_EAGAIN),
        _ => (err(Errno::EINVAL), &rules::ACCEPT_INVAL),
    }
}

fn shutdown(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    match stream_at(&m.w, actor, op) {
        Err(e) => e,
        Ok(s) if s.unknown || s.peer_lost => (Allowed::Unspecified, &rules::NOT_MODELLED),
        Ok(s) => match s.state {
            SockState::Connected => (val(0), &rules::SHUTDOWN_OK),
            SockState::Fresh | SockState::Bound(_) => (err(Errno::ENOTCONN), &rules::SHUTDOWN_OK),
            SockState::Listening { .. } => (Allowed::Unspecified, &rules::READY_UNSPECIFIED),
        },
    }
}

/// read(2), or recv with MSG_DONTWAIT (`dontwait`), on the fd of argument 0 for the count
/// of argument 2.
pub(super) fn read_at(m: &Model, actor: &str, op: &Op<Script>, dontwait: bool) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let want: i64 = op.int(2);
    let Some(s) = m.w.sock(o) else {
        return super::fdcalls::read_file(&m.w, o, want, dontwait);
    };
    if s.not_stream {
        return (Allowed::Unspecified, &rules::NOT_STREAM);
    }
    if s.unknown || s.peer_lost || s.rd_shut {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    match s.state {
        SockState::Connected if want == 0 => (val(0), &rules::READ_DATA),
        SockState::Connected if s.rx > 0 => {
            (Allowed::range(1, want.min(count(s.rx))), &rules::READ_DATA)
        }
        SockState::Connected if s.peer_eof => (val(0), &rules::READ_DATA),
        SockState::Connected if s.nonblock || dontwait => (err(Errno::EAGAIN), &rules::READ_EAGAIN),
        SockState::Connected => (Allowed::Unspecified, &rules::READ_EAGAIN),
        _ => (
            Allowed::Set(vec![Res::Err(Errno::ENOTCONN), Res::Err(Errno::EINVAL)]),
            &rules::READ_ENOTCONN,
        ),
    }
}

/// write(2) (or send) of the bytes of argument 1 to the fd of argument 0.
pub(super) fn write(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let len = count(op.bytes(1).len());
    let Some(s) = m.w.sock(o) else {
        return super::fdcalls::write_file(&m.w, o, op.bytes(1));
    };
    if s.not_stream {
        return (Allowed::Unspecified, &rules::NOT_STREAM);
    }
    if s.unknown || s.peer_lost || s.peer_eof || m.w.peer_rd_shut(s) {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    let peer_rx = s.peer.and_then(|p| m.w.sock(p)).map(|p| p.rx);
    match (&s.state, peer_rx) {
        (SockState::Connected, _) if s.wr_shut => (err(Errno::EPIPE), &rules::WRITE_EPIPE),
        (SockState::Connected, Some(rx)) if rx + op.bytes(1).len() <= 65536 => {
            (val(len), &rules::WRITE_DATA)
        }
        (SockState::Connected, _) => (Allowed::Unspecified, &rules::WRITE_DATA),
        _ => (
            Allowed::Set(vec![Res::Err(Errno::ENOTCONN), Res::Err(Errno::EPIPE)]),
            &rules::WRITE_EPIPE,
        ),
    }
}

/// The user data's value as the kernel will report it.
pub(super) fn data_value(w: &World, actor: &str, data: &Data<Script>) -> Option<u64> {
    match data {
        Data::Num(n) => Some(*n),
        Data::Fd(FdArg::Num(n)) => u64::try_from(*n).ok(),
        Data::Fd(FdArg::Name(name)) => w
            .proc(actor)
            .and_then(|a| a.nums.get(name))
            .and_then(|&n| u64::try_from(n).ok()),
    }
}

/// The listener an EPOLL_CTL_ADD of `fd` by `actor` gives its own local copy under the fast
/// path (libfsocket's listen_spawn heuristic, as the emulation applies it): a TCP listener
/// that another process made listen, with nothing queued on it. Only an ADD that succeeds
/// spawns.
pub(super) fn spawns(m: &Model, actor: &str, fd: &Look) -> Option<ObjId> {
    let Look::Open(f) = fd else { return None };
    let s = m.w.sock(*f)?;
    let tcp = matches!(s.family, Some(Family::Inet | Family::Inet6));
    // Per process, as the shim's listen table is: a thread is its process.
    let other = s
        .listened_by
        .as_deref()
        .is_some_and(|by| by != m.w.table(actor));
    // With connections queued the fast path keeps the shared listener (they would be hidden).
    let idle = matches!(&s.state, SockState::Listening { queue, .. } if queue.is_empty());
    (m.fastpath && tcp && other && idle).then_some(*f)
}

/// epoll_wait, epoll_pwait and epoll_pwait2 (`blocking`: with no timeout).
fn epoll_wait(m: &Model, actor: &str, op: &Op<Script>, blocking: bool) -> Rules {
    let ep = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err((Allowed::Set(_), _)) => return (err(Errno::EBADF), &rules::WAIT_NOT_EPOLL),
        Err(e) => return e,
    };
    let max: i64 = op.int(2);
    if m.w.epoll(ep).is_none() {
        return (err(Errno::EINVAL), &rules::WAIT_NOT_EPOLL);
    }
    if max <= 0 {
        return (err(Errno::EINVAL), &rules::WAIT_MAXEVENTS);
    }
    let (allowed, rule) = epoll::wait_allowed(&m.w, ep, max, blocking);
    if m.plant == Some(Plant::TextbookEt)
        && rule.id == rules::WAIT_ET_MORE.id
        && let Allowed::Set(set) = &allowed
        && let Some(Res::Range(lo, _)) = set.first()
    {
        return (Allowed::range(*lo, *lo), &rules::PLANTED);
    }
    (allowed, rule)
}

//! One arm per call of the scenario language: what the documentation allows it to return,
//! and how the model's state changes with what it did return.

use std::collections::VecDeque;

use nix::errno::Errno;

use super::epoll;
use super::rules::{self, Rule};
use super::verdict::{Allowed, Judgement, Label, Res, label, result_text};
use super::world::{EXCLUSIVE, Fd, Kind, ONESHOT, ObjId, Sock, SockState, Tri, World};
use super::{Model, Plant, WaitKind, Waiter};
use crate::addr::Family;
use crate::scenario::StepResult;
use crate::scenario::ast::{Aggregate, Arg, Data, FdArg, Op, Scenario, Script, Span, Step};

/// What an fd argument refers to.
enum Look {
    Open(ObjId),
    /// Closed: EBADF, unless the number may have been reused by an fd the model cannot see.
    Closed {
        maybe_reused: bool,
    },
    /// A literal number, or a name the model does not know.
    Unknown,
}

fn look(w: &World, actor: &str, fd: &FdArg) -> Look {
    let FdArg::Name(name) = fd else {
        return Look::Unknown;
    };
    match w
        .actors
        .get(actor)
        .and_then(|a| a.fds.get(name).map(|f| (a, f)))
    {
        Some((_, Fd { obj, open: true })) => Look::Open(*obj),
        Some((a, _)) => Look::Closed {
            maybe_reused: a.forked,
        },
        None => Look::Unknown,
    }
}

fn judgement(step: &Step, got: &StepResult, allowed: Allowed, rule: &'static Rule) -> Judgement {
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
fn open_or(w: &World, actor: &str, fd: &FdArg) -> Result<ObjId, (Allowed, &'static Rule)> {
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
        "epoll_create1" => (Allowed::one(Res::NewFd), &rules::EPOLL_CREATE),
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
        "read" => read(m, actor, op),
        "write" => write(m, actor, op),
        "epoll_ctl" => epoll_ctl(m, actor, op),
        "epoll_wait" | "epoll_pwait" => epoll_wait(m, actor, op),
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
        _ => {
            taint(m, actor, op);
            (Allowed::Unspecified, &rules::NOT_MODELLED)
        }
    };
    let mut j = judgement(step, got, allowed, rule);
    if let Some(note) = apply(m, step, got) {
        j.label = Label::Contradicts;
        j.rule = &rules::WAIT_MASK;
        j.note = Some(note);
    }
    Some(j)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Marks every object the call names as unknown: the model does not follow it.
fn taint(m: &mut Model, actor: &str, op: &Op<Script>) {
    for arg in &op.args {
        if let Arg::Fd(fd) = arg
            && let Look::Open(o) = look(&m.w, actor, fd)
            && let Some(s) = m.w.sock_mut(o)
        {
            s.unknown = true;
        }
    }
}

fn sock_or<'w>(w: &'w World, o: ObjId) -> Result<&'w Sock, (Allowed, &'static Rule)> {
    w.sock(o)
        .ok_or((err(Errno::ENOTSOCK), &rules::NOT_A_SOCKET))
}

type Rules = (Allowed, &'static Rule);

fn setsockopt(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if let Err(e) = sock_or(&m.w, o) {
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
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let s = match sock_or(&m.w, o) {
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
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    match sock_or(&m.w, o) {
        Err(e) => e,
        Ok(s) if s.unknown => (Allowed::Unspecified, &rules::NOT_MODELLED),
        Ok(s) => match s.state {
            SockState::Bound(_) => (val(0), &rules::LISTEN_OK),
            _ => (Allowed::Unspecified, &rules::LISTEN_BACKLOG),
        },
    }
}

/// The listeners an address name leads to.
fn listeners(w: &World, addr: &str) -> Vec<ObjId> {
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
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let s = match sock_or(&m.w, o) {
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
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let s = match sock_or(&m.w, o) {
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
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    match sock_or(&m.w, o) {
        Err(e) => e,
        Ok(s) if s.unknown || s.peer_lost => (Allowed::Unspecified, &rules::NOT_MODELLED),
        Ok(s) => match s.state {
            SockState::Connected => (val(0), &rules::SHUTDOWN_OK),
            SockState::Fresh | SockState::Bound(_) => (err(Errno::ENOTCONN), &rules::SHUTDOWN_OK),
            SockState::Listening { .. } => (Allowed::Unspecified, &rules::READY_UNSPECIFIED),
        },
    }
}

fn read(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let want: i64 = op.int(2);
    let Some(s) = m.w.sock(o) else {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    };
    if s.unknown || s.peer_lost || s.rd_shut {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    match s.state {
        SockState::Connected if want == 0 => (val(0), &rules::READ_DATA),
        SockState::Connected if s.rx > 0 => {
            (Allowed::range(1, want.min(count(s.rx))), &rules::READ_DATA)
        }
        SockState::Connected if s.peer_eof => (val(0), &rules::READ_DATA),
        SockState::Connected if s.nonblock => (err(Errno::EAGAIN), &rules::READ_EAGAIN),
        SockState::Connected => (Allowed::Unspecified, &rules::READ_EAGAIN),
        _ => (
            Allowed::Set(vec![Res::Err(Errno::ENOTCONN), Res::Err(Errno::EINVAL)]),
            &rules::READ_ENOTCONN,
        ),
    }
}

fn write(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let len = count(op.bytes(1).len());
    let Some(s) = m.w.sock(o) else {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    };
    if s.unknown || s.peer_lost || s.peer_eof {
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

/// Whether epoll `outer` watches `inner`, directly or through nested epoll sets (ELOOP).
fn contains(w: &World, outer: ObjId, inner: ObjId) -> bool {
    let mut todo = vec![outer];
    let mut seen = vec![];
    while let Some(x) = todo.pop() {
        if x == inner {
            return true;
        }
        if seen.contains(&x) {
            continue;
        }
        seen.push(x);
        if let Some(ep) = w.epoll(x) {
            todo.extend(ep.entries.iter().map(|e| e.obj));
        }
    }
    false
}

/// The user data's value as the kernel will report it.
fn data_value(w: &World, actor: &str, data: &Data<Script>) -> Option<u64> {
    match data {
        Data::Num(n) => Some(*n),
        Data::Fd(FdArg::Num(n)) => u64::try_from(*n).ok(),
        Data::Fd(FdArg::Name(name)) => w
            .actors
            .get(actor)
            .and_then(|a| a.nums.get(name))
            .and_then(|&n| u64::try_from(n).ok()),
    }
}

fn epoll_ctl(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let (ep, fd) = (look(&m.w, actor, &op.fd(0)), look(&m.w, actor, &op.fd(2)));
    let how: i32 = op.int(1);
    let events = op.event(3).map(|e| e.events);
    let mut errs = vec![];
    let mut unknown = false;
    for l in [&ep, &fd] {
        match l {
            Look::Closed {
                maybe_reused: false,
            } => errs.push(Errno::EBADF),
            Look::Closed { maybe_reused: true } | Look::Unknown => unknown = true,
            Look::Open(_) => {}
        }
    }
    if let (Look::Open(e), Look::Open(f)) = (&ep, &fd) {
        let target_is_epoll = m.w.epoll(*f).is_some();
        match m.w.epoll(*e) {
            None => errs.push(Errno::EINVAL),
            Some(_) if e == f => errs.push(Errno::EINVAL),
            Some(epoll) => {
                let FdArg::Name(name) = op.fd(2) else {
                    return (Allowed::Unspecified, &rules::NOT_MODELLED);
                };
                let existing = epoll.entries.iter().find(|x| x.obj == *f && x.fd == name);
                let ev = events.unwrap_or(0);
                match (how, existing) {
                    (libc::EPOLL_CTL_ADD, Some(_)) => errs.push(Errno::EEXIST),
                    (libc::EPOLL_CTL_ADD, None) if events.is_none() => unknown = true,
                    (libc::EPOLL_CTL_ADD, None) => {
                        let allowed_with_excl = libc::EPOLLIN as u32
                            | libc::EPOLLOUT as u32
                            | libc::EPOLLERR as u32
                            | libc::EPOLLHUP as u32
                            | libc::EPOLLWAKEUP as u32
                            | libc::EPOLLET as u32
                            | EXCLUSIVE;
                        if ev & EXCLUSIVE != 0 && (ev & !allowed_with_excl != 0 || target_is_epoll)
                        {
                            errs.push(Errno::EINVAL);
                        }
                        if target_is_epoll && contains(&m.w, *f, *e) {
                            errs.push(Errno::ELOOP);
                        }
                    }
                    (libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL, None) => {
                        errs.push(Errno::ENOENT);
                        if how == libc::EPOLL_CTL_MOD && ev & EXCLUSIVE != 0 {
                            errs.push(Errno::EINVAL);
                        }
                    }
                    (libc::EPOLL_CTL_MOD, Some(x)) => {
                        if ev & EXCLUSIVE != 0 || x.events & EXCLUSIVE != 0 {
                            errs.push(Errno::EINVAL);
                        }
                        if events.is_none() {
                            unknown = true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    errs.dedup();
    match (errs.len(), unknown) {
        (_, true) => (Allowed::Unspecified, &rules::NOT_MODELLED),
        (0, _) => (val(0), &rules::CTL_ADD),
        (1, _) => {
            let rule = match errs[0] {
                Errno::EBADF => &rules::CTL_EBADF,
                Errno::EEXIST => &rules::CTL_EEXIST,
                Errno::ENOENT => &rules::CTL_ENOENT,
                Errno::ELOOP => &rules::CTL_ELOOP,
                _ => &rules::CTL_EINVAL,
            };
            (err(errs[0]), rule)
        }
        _ => (
            Allowed::Set(errs.into_iter().map(Res::Err).collect()),
            &rules::CTL_ERRORS_ANY,
        ),
    }
}

fn epoll_wait(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let ep = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err((Allowed::Set(_), _)) => return (err(Errno::EBADF), &rules::WAIT_NOT_EPOLL),
        Err(e) => return e,
    };
    let (max, timeout): (i64, i64) = (op.int(2), op.int(3));
    if m.w.epoll(ep).is_none() {
        return (err(Errno::EINVAL), &rules::WAIT_NOT_EPOLL);
    }
    if max <= 0 {
        return (err(Errno::EINVAL), &rules::WAIT_MAXEVENTS);
    }
    let (allowed, rule) = epoll::wait_allowed(&m.w, ep, max, timeout < 0);
    if m.plant == Some(Plant::TextbookEt)
        && rule.id == rules::WAIT_ET_MORE.id
        && let Allowed::Set(set) = &allowed
        && let Some(Res::Range(lo, _)) = set.first()
    {
        return (Allowed::range(*lo, *lo), &rules::PLANTED);
    }
    (allowed, rule)
}

/// Applies a step's observed result to the state. Returns a note if reported epoll events
/// break the documented mask.
fn apply(m: &mut Model, step: &Step, got: &StepResult) -> Option<String> {
    let op = &step.op;
    let actor = step.actor.as_str();
    let Ok(value) = got.result else {
        if op.name() == "connect" && matches!(got.result, Err(Errno::EINPROGRESS | Errno::EAGAIN)) {
            lose_connect(m, actor, op);
        }
        return None;
    };
    let bound = match &step.expect {
        Some(crate::scenario::ast::Expect::Bind(n)) => Some(n.clone()),
        _ => None,
    };
    // An fd the script does not name is still open: hold it under its number.
    let new_fd = |m: &mut Model, obj: ObjId| {
        let name = bound.clone().unwrap_or_else(|| format!("#{value}"));
        m.w.bind_fd(actor, &name, obj);
        let a = m.w.actors.entry(actor.to_string()).or_default();
        a.nums.insert(name, value);
    };
    match op.name() {
        "socket" => {
            let ty: i64 = op.int(1);
            let family = match op.family(0) {
                crate::scenario::ast::DomainArg::Fixed(f) => f,
                crate::scenario::ast::DomainArg::Matrix => m.family,
            };
            let o = m.w.add(Kind::Sock(Sock {
                family: Some(family),
                nonblock: ty & i64::from(libc::SOCK_NONBLOCK) != 0,
                ..Sock::default()
            }));
            new_fd(m, o);
        }
        "epoll_create1" => {
            let o = m.w.add(Kind::Epoll(Default::default()));
            new_fd(m, o);
        }
        "fork" => {
            if let Some(child) = &bound {
                let mut copy = m.w.actors.get(actor).cloned().unwrap_or_default();
                for f in copy.fds.values().filter(|f| f.open) {
                    m.w.objs[f.obj].refs += 1;
                }
                copy.forked = false;
                m.w.actors.insert(child.clone(), copy);
            }
            if let Some(a) = m.w.actors.get_mut(actor) {
                a.forked = true;
            }
        }
        "setsockopt" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(s) = m.w.sock_mut(o)
            {
                if op.int::<i32>(1) == libc::SOL_SOCKET && op.int::<i32>(2) == libc::SO_REUSEPORT {
                    s.reuseport = op.int::<i64>(3) != 0;
                } else {
                    s.unknown = true;
                }
            }
        }
        "bind" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                let addr = op.addr(1).clone();
                if let Some(s) = m.w.sock_mut(o) {
                    s.state = SockState::Bound(addr.clone());
                }
                m.w.addrs.entry(addr).or_default().push(o);
            }
        }
        "listen" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(s) = m.w.sock_mut(o)
            {
                let backlog: i64 = op.int(1);
                s.state = match std::mem::take(&mut s.state) {
                    SockState::Bound(a) => SockState::Listening {
                        addr: Some(a),
                        backlog,
                        queue: VecDeque::new(),
                        uncertain: false,
                    },
                    SockState::Listening {
                        addr,
                        queue,
                        uncertain,
                        ..
                    } => SockState::Listening {
                        addr,
                        backlog,
                        queue,
                        uncertain,
                    },
                    other => {
                        s.unknown = true;
                        other
                    }
                };
            }
        }
        "connect" => connected(m, actor, op, value),
        "accept" | "accept4" => {
            if let Look::Open(l) = look(&m.w, actor, &op.fd(0)) {
                let conn = match m.w.sock_mut(l).map(|s| &mut s.state) {
                    Some(SockState::Listening { queue, .. }) => queue.pop_front(),
                    _ => None,
                };
                let nonblock = op.name() == "accept4"
                    && op.int::<i64>(2) & i64::from(libc::SOCK_NONBLOCK) != 0;
                let o = conn.unwrap_or_else(|| {
                    m.w.add(Kind::Sock(Sock {
                        unknown: true,
                        state: SockState::Connected,
                        ..Sock::default()
                    }))
                });
                if let Some(s) = m.w.sock_mut(o) {
                    s.nonblock = nonblock;
                }
                new_fd(m, o);
                if conn.is_some() {
                    m.w.release(o); // the queue's reference
                }
            }
        }
        "close" => close(m, actor, &op.fd(0)),
        "shutdown" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                let how: i32 = op.int(1);
                let peer = m.w.sock_mut(o).and_then(|s| {
                    if how != libc::SHUT_WR {
                        s.rd_shut = true;
                    }
                    if how != libc::SHUT_RD {
                        s.wr_shut = true;
                    }
                    s.peer.filter(|_| how != libc::SHUT_RD)
                });
                m.w.objs[o].activity += 1;
                if let Some(p) = peer {
                    m.w.objs[p].activity += 1;
                    if let Some(p) = m.w.sock_mut(p) {
                        p.peer_eof = true;
                    }
                }
            }
        }
        "dup" | "dup2" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                if op.name() == "dup2"
                    && let FdArg::Name(target) = op.fd(1)
                {
                    if bound.as_deref() != Some(target.as_str()) {
                        close(m, actor, &FdArg::Name(target.clone()));
                    }
                    m.w.bind_fd(actor, &target, o);
                    if let Some(a) = m.w.actors.get_mut(actor) {
                        a.nums.insert(target.clone(), value);
                    }
                    if bound.is_none() {
                        return None;
                    }
                }
                new_fd(m, o);
            }
        }
        "read" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(s) = m.w.sock_mut(o)
            {
                s.rx = s.rx.saturating_sub(usize::try_from(value).unwrap_or(0));
            }
        }
        "write" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(p) = m.w.sock(o).and_then(|s| s.peer)
            {
                m.w.objs[p].activity += 1;
                if let Some(p) = m.w.sock_mut(p) {
                    p.rx += usize::try_from(value).unwrap_or(0);
                }
            }
        }
        "epoll_ctl" => ctl_apply(m, actor, op),
        "epoll_wait" | "epoll_pwait" => {
            if let Look::Open(ep) = look(&m.w, actor, &op.fd(0)) {
                return epoll::apply_wait(&mut m.w, ep, op.int(2), &got.events);
            }
        }
        "drain" => {
            if let Look::Open(l) = look(&m.w, actor, &op.fd(0)) {
                let queued: Vec<ObjId> = match m.w.sock_mut(l).map(|s| &mut s.state) {
                    Some(SockState::Listening { queue, .. }) => queue.drain(..).collect(),
                    _ => vec![],
                };
                for conn in queued {
                    m.w.release(conn);
                }
            }
        }
        _ => {}
    }
    None
}

/// A connect whose fate the model cannot follow (in progress, in the background): the
/// client is unknown and its listeners may or may not have a connection more.
fn lose_connect(m: &mut Model, actor: &str, op: &Op<Script>) {
    if let Look::Open(c) = look(&m.w, actor, &op.fd(0))
        && let Some(s) = m.w.sock_mut(c)
    {
        s.unknown = true;
    }
    for l in listeners(&m.w, op.addr(1)) {
        m.w.objs[l].activity += 1;
        if let Some(SockState::Listening { uncertain, .. }) = m.w.sock_mut(l).map(|s| &mut s.state)
        {
            *uncertain = true;
        }
    }
}

fn close(m: &mut Model, actor: &str, fd: &FdArg) {
    let FdArg::Name(name) = fd else { return };
    let obj =
        m.w.actors
            .get_mut(actor)
            .and_then(|a| a.fds.get_mut(name))
            .filter(|f| f.open)
            .map(|f| {
                f.open = false;
                f.obj
            });
    if let Some(o) = obj {
        m.w.release(o);
    }
}

/// A connect succeeded: the client is connected and a new connection waits in the
/// listener's queue (or goes straight to a blocked accept).
fn connected(m: &mut Model, actor: &str, op: &Op<Script>, value: i64) {
    let Look::Open(c) = look(&m.w, actor, &op.fd(0)) else {
        return;
    };
    let _ = value;
    let ls = listeners(&m.w, op.addr(1));
    let family = m.w.sock(c).and_then(|s| s.family);
    let server = m.w.add(Kind::Sock(Sock {
        family,
        state: SockState::Connected,
        peer: Some(c),
        ..Sock::default()
    }));
    m.w.objs[server].refs = 1;
    if let Some(s) = m.w.sock_mut(c) {
        s.state = SockState::Connected;
        s.peer = Some(server);
    }
    match ls.as_slice() {
        [l] => {
            let l = *l;
            m.w.objs[l].activity += 1;
            let blocked = m
                .waiters
                .iter()
                .filter(|w| matches!(w.kind, WaitKind::Accept { listener, .. } if listener == l))
                .count();
            let handed = m.handed.entry(l).or_default();
            if handed.len() < blocked {
                handed.push_back(server);
            } else if let Some(SockState::Listening { queue, .. }) =
                m.w.sock_mut(l).map(|s| &mut s.state)
            {
                queue.push_back(server);
            }
        }
        many => {
            for &l in many {
                m.w.objs[l].activity += 1;
                if let Some(SockState::Listening { uncertain, .. }) =
                    m.w.sock_mut(l).map(|s| &mut s.state)
                {
                    *uncertain = true;
                }
            }
            if let Some(s) = m.w.sock_mut(c) {
                s.unknown = true;
            }
        }
    }
}

fn ctl_apply(m: &mut Model, actor: &str, op: &Op<Script>) {
    let (Look::Open(ep), Look::Open(f), FdArg::Name(name)) = (
        look(&m.w, actor, &op.fd(0)),
        look(&m.w, actor, &op.fd(2)),
        op.fd(2),
    ) else {
        return;
    };
    let how: i32 = op.int(1);
    let event = op
        .event(3)
        .map(|e| (e.events, data_value(&m.w, actor, &e.data)));
    let fresh = event.map(|(ev, data)| epoll::new_entry(&m.w, f, &name, ev, data));
    let world = m.w.clone();
    if let Some(Kind::Epoll(epoll)) = m.w.objs.get_mut(ep).map(|o| &mut o.kind) {
        let at = epoll
            .entries
            .iter()
            .position(|x| x.obj == f && x.fd == name);
        match (how, at) {
            (libc::EPOLL_CTL_ADD, None) => epoll.entries.extend(fresh),
            (libc::EPOLL_CTL_MOD, Some(i)) => {
                if let Some((ev, data)) = event {
                    epoll::modify(&world, &mut epoll.entries[i], ev, data);
                }
            }
            (libc::EPOLL_CTL_DEL, Some(i)) => {
                epoll.entries.remove(i);
            }
            _ => {}
        }
    }
}

impl Model {
    /// A call started in the background.
    pub(super) fn start(&mut self, step: &Step) {
        let op = &step.op;
        let actor = step.actor.as_str();
        let kind = match (op.name(), look(&self.w, actor, &op.fd(0))) {
            ("accept" | "accept4", Look::Open(l)) => {
                let queued = match self.w.sock_mut(l).map(|s| &mut s.state) {
                    Some(SockState::Listening { queue, .. }) => queue.pop_front(),
                    _ => None,
                };
                if let Some(conn) = queued {
                    self.handed.entry(l).or_default().push_back(conn);
                }
                WaitKind::Accept {
                    listener: l,
                    name: match &step.expect {
                        Some(crate::scenario::ast::Expect::Bind(n)) => Some(n.clone()),
                        _ => None,
                    },
                }
            }
            ("epoll_wait" | "epoll_pwait", Look::Open(ep)) if op.int::<i64>(3) < 0 => {
                WaitKind::Epoll { ep, max: op.int(2) }
            }
            _ => {
                if op.name() == "connect" {
                    lose_connect(self, actor, op);
                }
                taint(self, actor, op);
                WaitKind::Other
            }
        };
        self.waiters.push(Waiter {
            actor: actor.to_string(),
            kind,
            span: step.span,
            ever: Tri::No,
        });
        self.after_step();
    }

    /// After each step: pending epoll waiters may have returned and consumed edges.
    pub(super) fn after_step(&mut self) {
        epoll::update_edges(&mut self.w);
        for i in 0..self.waiters.len() {
            let WaitKind::Epoll { ep, .. } = self.waiters[i].kind else {
                continue;
            };
            let ready = self.w.readiness(ep);
            let now = if ready.must != 0 {
                Tri::Yes
            } else if ready.may != 0 {
                Tri::Maybe
            } else {
                Tri::No
            };
            self.waiters[i].ever = self.waiters[i].ever.max(now);
            if now != Tri::No
                && let Some(Kind::Epoll(epoll)) = self.w.objs.get_mut(ep).map(|o| &mut o.kind)
            {
                for e in &mut epoll.entries {
                    if e.events & (super::world::ET | ONESHOT) != 0 {
                        e.armed = e.armed.min(Tri::Maybe);
                    }
                }
            }
        }
    }

    /// Collects background call `i`'s result (at `await` or the actor's next step).
    pub(super) fn collect(&mut self, i: usize, scenario: &Scenario, got: &StepResult) -> Judgement {
        let waiter = self.waiters.remove(i);
        let step = find_step(scenario, waiter.span, &waiter.actor);
        let (allowed, rule) = match (&waiter.kind, &step) {
            (WaitKind::Accept { listener, name }, _) => {
                let peers = self
                    .waiters
                    .iter()
                    .filter(|w| matches!(w.kind, WaitKind::Accept { listener: l, .. } if l == *listener))
                    .count();
                let conn = self.handed.get_mut(listener).and_then(VecDeque::pop_front);
                if let (Some(conn), Ok(v)) = (conn, got.result) {
                    if let Some(name) = name {
                        self.w.bind_fd(&waiter.actor, name, conn);
                        self.w.release(conn);
                        if let Some(a) = self.w.actors.get_mut(&waiter.actor) {
                            a.nums.insert(name.clone(), v);
                        }
                    }
                }
                match (conn, peers) {
                    (Some(_), 0) => (Allowed::one(Res::NewFd), &rules::ACCEPT_FIRST),
                    (Some(_), _) => (Allowed::Unspecified, &rules::WAKE_WHICH),
                    (None, _) => (Allowed::Unspecified, &rules::WAKE_WHICH),
                }
            }
            (WaitKind::Epoll { ep, max }, Some(step)) => {
                let entries = self.w.epoll(*ep).map_or(0, |e| e.entries.len());
                let note = epoll::apply_wait(&mut self.w, *ep, *max, &got.events);
                let allowed = Allowed::range(1, count(entries).min(*max));
                let mut j = judgement(step, got, allowed, &rules::WAIT_BLOCKING);
                if let Some(note) = note {
                    j.label = Label::Contradicts;
                    j.rule = &rules::WAIT_MASK;
                    j.note = Some(note);
                }
                self.after_step();
                return j;
            }
            _ => (Allowed::Unspecified, &rules::NOT_MODELLED),
        };
        self.after_step();
        match step {
            Some(step) => judgement(&step, got, allowed, rule),
            None => Judgement {
                line: waiter.span.line,
                col: waiter.span.col,
                actor: waiter.actor,
                label: label(&allowed, &got.result),
                rule,
                allowed,
                observed: result_text(&got.result),
                actual: result_text(&got.result),
                note: None,
            },
        }
    }

    /// Judges an `expect` aggregate.
    pub(super) fn aggregate(
        &mut self,
        agg: &Aggregate,
        expect: &crate::scenario::ast::Expect,
        span: Span,
        value: i64,
    ) -> Judgement {
        let (allowed, rule) = match agg {
            Aggregate::Woken(names) => self.woken(names),
            Aggregate::Sum(vars) | Aggregate::Min(vars) | Aggregate::Max(vars) => {
                if vars.iter().all(|v| self.captures.get(v) == Some(&true)) {
                    (val(value), &rules::AGGREGATE)
                } else {
                    (Allowed::Unspecified, &rules::AGGREGATE)
                }
            }
        };
        Judgement {
            line: span.line,
            col: span.col,
            actor: agg.text(),
            label: label(&allowed, &Ok(value)),
            rule,
            allowed,
            observed: if expect.is_exact() {
                value.to_string()
            } else {
                format!("[{}]", expect.text())
            },
            actual: value.to_string(),
            note: None,
        }
    }

    fn woken(&self, names: &[String]) -> Rules {
        let (mut lo, mut hi) = (0i64, 0i64);
        let mut rule = &rules::WAKE_NONE;
        let mut accept_pools: Vec<ObjId> = vec![];
        let (mut ready, mut maybe) = (0i64, 0i64);
        for name in names {
            let Some(w) = self.waiters.iter().find(|w| &w.actor == name) else {
                // Already collected: it returned.
                lo += 1;
                hi += 1;
                continue;
            };
            match &w.kind {
                WaitKind::Accept { listener, .. } => {
                    if !accept_pools.contains(listener) {
                        accept_pools.push(*listener);
                    }
                }
                WaitKind::Epoll { ep, .. } => {
                    if self.w.undocumented(*ep) && w.ever != Tri::No {
                        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
                    }
                    let now = self.w.readiness(*ep);
                    match (now.must != 0, w.ever) {
                        (true, _) => ready += 1,
                        (false, Tri::Yes | Tri::Maybe) => maybe += 1,
                        (false, Tri::No) => {}
                    }
                    let exclusive = self
                        .w
                        .epoll(*ep)
                        .is_some_and(|e| e.entries.iter().any(|x| x.events & EXCLUSIVE != 0));
                    if w.ever != Tri::No {
                        rule = if exclusive {
                            &rules::WAKE_EXCLUSIVE
                        } else {
                            &rules::WAKE_HERD
                        };
                    }
                }
                WaitKind::Other => return (Allowed::Unspecified, &rules::NOT_MODELLED),
            }
        }
        if ready > 0 {
            lo += 1;
        }
        hi += ready + maybe;
        for l in accept_pools {
            let pool: Vec<&Waiter> = self
                .waiters
                .iter()
                .filter(|w| matches!(w.kind, WaitKind::Accept { listener, .. } if listener == l))
                .collect();
            let n_in = count(pool.iter().filter(|w| names.contains(&w.actor)).count());
            let n_out = count(pool.len()) - n_in;
            let handed = count(self.handed.get(&l).map_or(0, VecDeque::len));
            if self.w.sock(l).is_none_or(|s| s.unknown) {
                return (Allowed::Unspecified, &rules::NOT_MODELLED);
            }
            lo += (handed - n_out).max(0);
            hi += handed.min(n_in);
            if handed > 0 {
                rule = &rules::WAKE_ONE_ACCEPT;
            }
        }
        (Allowed::range(lo, hi), rule)
    }
}

fn find_step(scenario: &Scenario, span: Span, actor: &str) -> Option<Step> {
    scenario.body.iter().find_map(|s| match s {
        crate::scenario::ast::Stmt::Step(step) if step.span == span && step.actor == actor => {
            Some(step.clone())
        }
        _ => None,
    })
}

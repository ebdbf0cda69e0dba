//! How a step's observed result changes the model's state: new fds, bound and listening
//! sockets, connections queued and accepted, data, shutdowns, registrations, consumed edges.

use std::collections::VecDeque;

use nix::errno::Errno;

use super::calls::{Look, data_value, listeners, look};
use super::epoll;
use super::fdcalls::{self, Applied};
use super::poll;
use super::world::{Kind, ObjId, Sock, SockState};
use super::{Model, WaitKind};
use crate::scenario::StepResult;
use crate::scenario::ast::{FdArg, Op, Script, Step};

/// Applies a step's observed result to the state. Returns a note if reported epoll events
/// break the documented mask.
pub(super) fn apply(m: &mut Model, step: &Step, got: &StepResult) -> Option<String> {
    let op = &step.op;
    let actor = step.actor.as_str();
    let Ok(value) = got.result else {
        if op.name() == "connect" && matches!(got.result, Err(Errno::EINPROGRESS | Errno::EAGAIN)) {
            lose_connect(m, actor, op);
        }
        if matches!(op.name(), "read" | "recvfrom")
            && let Look::Open(o) = look(&m.w, actor, &op.fd(0))
        {
            fdcalls::apply_read_failed(&mut m.w, o);
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
        m.w.bind_fd_num(actor, &name, obj, Some(value));
        m.w.proc_mut(actor).nums.insert(name, value);
    };
    match fdcalls::apply(m, actor, op, bound.as_deref()) {
        Applied::NewFd(o) => {
            new_fd(m, o);
            return None;
        }
        Applied::Done => return None,
        Applied::NotMine => {}
    }
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
                not_stream: ty & 0xf != i64::from(libc::SOCK_STREAM),
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
                let mut copy = m.w.proc(actor).cloned().unwrap_or_default();
                for f in copy.fds.values().filter(|f| f.open) {
                    m.w.objs[f.obj].refs += 1;
                }
                copy.forked = false;
                m.w.actors.insert(child.clone(), copy);
            }
            m.w.proc_mut(actor).forked = true;
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
            let process = m.w.table(actor).to_string();
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(s) = m.w.sock_mut(o)
            {
                let backlog: i64 = op.int(1);
                s.listened_by = Some(process);
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
        "dup2" if !matches!(look(&m.w, actor, &op.fd(0)), Look::Open(_)) => {
            // The source was not an fd the model follows: the target now holds something
            // unknown.
            if let FdArg::Name(target) = op.fd(1)
                && let Some(fd) = m.w.proc_mut(actor).fds.get_mut(&target)
            {
                fd.doubtful = fd.open;
                let o = fd.obj;
                m.w.lose(o);
            }
        }
        "dup" | "dup2" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                if op.name() == "dup2"
                    && let FdArg::Name(target) = op.fd(1)
                {
                    let nums = &m.w.proc_mut(actor).nums;
                    let same_number = matches!(op.fd(0), FdArg::Name(src) if src == target
                        || nums.get(&src).is_some_and(|n| nums.get(&target) == Some(n)));
                    if same_number {
                        // dup(2): dup2 of an fd onto itself does nothing.
                        return None;
                    }
                    if bound.as_deref() != Some(target.as_str()) {
                        close(m, actor, &FdArg::Name(target.clone()));
                    }
                    m.w.bind_fd_num(actor, &target, o, Some(value));
                    m.w.proc_mut(actor).nums.insert(target.clone(), value);
                    bound.as_ref()?;
                }
                new_fd(m, o);
            }
        }
        "read" | "recvfrom" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                let flags: i64 = if op.name() == "recvfrom" {
                    op.int(3)
                } else {
                    0
                };
                let peek = i64::from(libc::MSG_PEEK);
                if flags & !(i64::from(libc::MSG_DONTWAIT) | peek) != 0 {
                    m.w.lose(o);
                } else if flags & peek != 0 {
                    // MSG_PEEK leaves the data queued.
                } else if let Some(s) = m.w.sock_mut(o) {
                    s.rx = s.rx.saturating_sub(usize::try_from(value).unwrap_or(0));
                } else {
                    fdcalls::apply_read(&mut m.w, o, value);
                }
            }
        }
        "write" | "sendto" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0)) {
                let flags: i64 = if op.name() == "sendto" { op.int(3) } else { 0 };
                let followed = i64::from(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
                if flags & !followed != 0 {
                    m.w.lose(o);
                } else if let Some(p) = m.w.sock(o).and_then(|s| s.peer) {
                    m.w.objs[p].activity += 1;
                    if let Some(p) = m.w.sock_mut(p) {
                        p.rx += usize::try_from(value).unwrap_or(0);
                    }
                } else {
                    fdcalls::apply_write(&mut m.w, o, op.bytes(1), value);
                }
            }
        }
        "poll" | "ppoll" => {
            let slots = poll::slots(&m.w, actor, op.poll_fds(0));
            return poll::check(&slots, &got.events);
        }
        "epoll_ctl" => ctl_apply(m, actor, op),
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => {
            if let Look::Open(ep) = look(&m.w, actor, &op.fd(0)) {
                return epoll::apply_wait(&mut m.w, ep, op.int(2), &got.events, false);
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
pub(super) fn lose_connect(m: &mut Model, actor: &str, op: &Op<Script>) {
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
        m.w.proc_mut(actor)
            .fds
            .get_mut(name)
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
        // A call that succeeded on a set through a target the model cannot name (a number
        // another fd may hold) changed the set in a way it cannot follow.
        if let Look::Open(ep) = look(&m.w, actor, &op.fd(0))
            && m.w.epoll(ep).is_some()
        {
            m.w.lose(ep);
        }
        return;
    };
    let how: i32 = op.int(1);
    let f = match super::calls::spawns(m, actor, &Look::Open(f)) {
        Some(shared) if how == libc::EPOLL_CTL_ADD => spawn_local(m, actor, &name, shared),
        _ => f,
    };
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

/// The fast path's listen_spawn: `actor`'s fd `name` now refers to a new listener of its own
/// on the same address, in the shared listener's SO_REUSEPORT group. Which of them a new
/// connection reaches depends on the CPU that receives it, so both queues are uncertain from
/// now on. The shared listener keeps what was queued on it (the emulation leaves a listener
/// with a queue listening); one with nothing queued is retired (shut down, so it stops taking
/// connections nobody may accept), which its other holders can see (EPOLLHUP): its readiness
/// is then unspecified, as a shut-down listener's is.
fn spawn_local(m: &mut Model, actor: &str, name: &str, shared: ObjId) -> ObjId {
    let process = m.w.table(actor).to_string();
    let Some(s) = m.w.sock_mut(shared) else {
        return shared;
    };
    let SockState::Listening {
        addr,
        backlog,
        uncertain,
        queue,
    } = &mut s.state
    else {
        return shared;
    };
    *uncertain = true;
    let retired = queue.is_empty();
    let local = Sock {
        family: s.family,
        nonblock: s.nonblock,
        reuseport: true,
        listened_by: Some(process),
        state: SockState::Listening {
            addr: addr.clone(),
            backlog: *backlog,
            queue: VecDeque::new(),
            uncertain: true,
        },
        ..Sock::default()
    };
    let addr = addr.clone();
    s.rd_shut |= retired;
    let o = m.w.add(Kind::Sock(local));
    // The same number, now naming the worker's own listener.
    let num = m.w.proc(actor).and_then(|a| a.nums.get(name)).copied();
    m.w.bind_fd_num(actor, name, o, num);
    if let Some(addr) = addr {
        m.w.addrs.entry(addr).or_default().push(o);
    }
    o
}

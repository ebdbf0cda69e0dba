//! The calls for the other kinds of fd (pipes, socketpairs, eventfds, timerfds, opened
//! files), datagram-style sendto/recvfrom on stream sockets, signals and threads: what the
//! documentation allows each to return, and how the state changes with what it did return.

use nix::errno::Errno;

use super::Model;
use super::calls::{Look, look, open_or};
use super::files::{EVENTFD_MAX, Eventfd, PIPE_BUF, Pipe, Timer};
use super::rules::{self, Rule};
use super::verdict::{Allowed, Res};
use super::world::{Kind, ObjId, Sock, SockState, Tri, World};
use crate::addr::Family;
use crate::scenario::ast::{DomainArg, Op, Script};

type Rules = (Allowed, &'static Rule);

fn err(e: Errno) -> Allowed {
    Allowed::one(Res::Err(e))
}

fn val(v: i64) -> Allowed {
    Allowed::one(Res::Val(v))
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// pipe(2): O_NOTIFICATION_PIPE shares its value with O_EXCL.
const O_NOTIFICATION_PIPE: i64 = libc::O_EXCL as i64;
/// Flags one recv/send call may carry that the model follows.
const MSG_FOLLOWED: i64 = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as i64;

/// Judges the calls of this module; `None` for a call it does not cover.
pub(super) fn judge(m: &Model, actor: &str, op: &Op<Script>) -> Option<Rules> {
    Some(match op.name() {
        "pipe" => pipe_flags(0),
        "pipe2" => pipe_flags(op.int(1)),
        "socketpair" => socketpair(m, op),
        "eventfd2" => {
            let flags: i64 = op.int(1);
            let known = i64::from(libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
            if flags & !known != 0 {
                (err(Errno::EINVAL), &rules::EVENTFD_NEW)
            } else {
                (Allowed::one(Res::NewFd), &rules::EVENTFD_NEW)
            }
        }
        "epoll_create" => {
            if op.int::<i64>(0) <= 0 {
                (err(Errno::EINVAL), &rules::EPOLL_CREATE_SIZE)
            } else {
                (Allowed::one(Res::NewFd), &rules::EPOLL_CREATE_SIZE)
            }
        }
        "timerfd_create" => timerfd_create(op),
        "timerfd_settime" => timerfd_settime(m, actor, op),
        "openat" => (Allowed::Unspecified, &rules::OPENAT_FS),
        "kill" => {
            let sig: i64 = op.int(1);
            match sig {
                0 => (val(0), &rules::KILL_OK),
                _ if caught(sig) => (val(0), &rules::KILL_OK),
                1..=64 => (val(0), &rules::KILL_DEFAULT),
                _ => (err(Errno::EINVAL), &rules::KILL_OK),
            }
        }
        "thread" => (Allowed::one(Res::Pid), &rules::THREAD_SHARES),
        "sendto" | "recvfrom" => send_recv(m, actor, op),
        _ => return None,
    })
}

/// The signals the runner's actors catch (with a handler that does nothing, no SA_RESTART).
fn caught(sig: i64) -> bool {
    sig == i64::from(libc::SIGUSR1) || sig == i64::from(libc::SIGUSR2)
}

fn pipe_flags(flags: i64) -> Rules {
    let known = i64::from(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_DIRECT);
    if flags & !(known | O_NOTIFICATION_PIPE) != 0 {
        (err(Errno::EINVAL), &rules::PIPE_NEW)
    } else if flags & O_NOTIFICATION_PIPE != 0 {
        (Allowed::Unspecified, &rules::PIPE_NOTIFICATION)
    } else {
        (val(0), &rules::PIPE_NEW)
    }
}

fn family(m: &Model, op: &Op<Script>) -> Family {
    match op.family(0) {
        DomainArg::Fixed(f) => f,
        DomainArg::Matrix => m.family,
    }
}

/// The socket type without its flags, and the flags.
fn sock_type(ty: i64) -> (i64, i64) {
    (ty & 0xf, ty & !0xf)
}

fn socketpair(m: &Model, op: &Op<Script>) -> Rules {
    let (base, flags) = sock_type(op.int(1));
    if family(m, op) != Family::Unix {
        let refused = [
            Errno::EAFNOSUPPORT,
            Errno::EOPNOTSUPP,
            Errno::EPROTONOSUPPORT,
        ];
        return (
            Allowed::Set(refused.into_iter().map(Res::Err).collect()),
            &rules::SOCKETPAIR_DOMAIN,
        );
    }
    let types = [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].map(i64::from);
    let known_flags = i64::from(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    if op.int::<i64>(2) != 0 || !types.contains(&base) || flags & !known_flags != 0 {
        return (Allowed::Unspecified, &rules::SOCKETPAIR_OK);
    }
    (val(0), &rules::SOCKETPAIR_OK)
}

fn timerfd_create(op: &Op<Script>) -> Rules {
    let (clock, flags): (i64, i64) = (op.int(0), op.int(1));
    let plain = [
        libc::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC,
        libc::CLOCK_BOOTTIME,
    ]
    .map(i64::from)
    .contains(&clock);
    let alarm = [libc::CLOCK_REALTIME_ALARM, libc::CLOCK_BOOTTIME_ALARM]
        .map(i64::from)
        .contains(&clock);
    let bad_flags = flags & !i64::from(libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) != 0;
    let allowed = match (bad_flags, plain, alarm) {
        // Unprivileged on an alarm clock with bad flags: which error comes first is not said.
        (true, _, true) => Allowed::Set(vec![Res::Err(Errno::EINVAL), Res::Err(Errno::EPERM)]),
        (true, _, _) | (false, false, false) => err(Errno::EINVAL),
        (false, true, _) => Allowed::one(Res::NewFd),
        // Needs CAP_WAKE_ALARM and a clock the machine may lack.
        (false, false, true) => Allowed::Unspecified,
    };
    (allowed, &rules::TIMERFD_NEW)
}

/// Whether a timespec is well formed (a tv_nsec in range, no negative seconds).
fn timespec_ok((sec, nsec): (i64, i64)) -> Result<(), bool> {
    if !(0..1_000_000_000).contains(&nsec) {
        Err(true)
    } else if sec < 0 {
        Err(false)
    } else {
        Ok(())
    }
}

fn timerfd_settime(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let flags: i64 = op.int(1);
    let known = i64::from(libc::TFD_TIMER_ABSTIME) | 2; // TFD_TIMER_CANCEL_ON_SET
    let mut errs = vec![];
    let Some(times) = op.times(2) else {
        return (Allowed::Unspecified, &rules::TIMERFD_SETTIME);
    };
    for &t in times {
        match timespec_ok(t) {
            Ok(()) => {}
            Err(true) => errs.push(Errno::EINVAL),
            Err(false) => return (Allowed::Unspecified, &rules::TIMESPEC_INVALID),
        }
    }
    if flags & !known != 0 {
        errs.push(Errno::EINVAL);
    }
    match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) if !matches!(m.w.objs[o].kind, Kind::Timer(_)) => errs.push(Errno::EINVAL),
        Ok(_) => {}
        Err((Allowed::Set(set), _)) => errs.extend(set.iter().filter_map(|r| match r {
            Res::Err(e) => Some(*e),
            _ => None,
        })),
        Err(e) => return e,
    }
    errs.sort_by_key(|e| *e as i32);
    errs.dedup();
    match errs.as_slice() {
        [] => (val(0), &rules::TIMERFD_SETTIME),
        _ => (
            Allowed::Set(errs.into_iter().map(Res::Err).collect()),
            &rules::TIMERFD_SETTIME,
        ),
    }
}

fn send_recv(m: &Model, actor: &str, op: &Op<Script>) -> Rules {
    let o = match open_or(&m.w, actor, &op.fd(0)) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let Some(s) = m.w.sock(o) else {
        return match m.w.objs[o].kind {
            Kind::Epoll(_) | Kind::Pipe(_) | Kind::Eventfd(_) | Kind::Timer(_) => {
                (err(Errno::ENOTSOCK), &rules::SEND_ENOTSOCK)
            }
            _ => (Allowed::Unspecified, &rules::OPENAT_FS),
        };
    };
    let flags: i64 = op.int(3);
    if s.not_stream {
        return (Allowed::Unspecified, &rules::NOT_STREAM);
    }
    if flags & !MSG_FOLLOWED != 0 {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    }
    if !matches!(s.state, SockState::Connected) {
        // Unconnected: the address decides (a datagram-style send) or ENOTCONN.
        return (Allowed::Unspecified, &rules::SEND_CONNECTED);
    }
    let dontwait = flags & i64::from(libc::MSG_DONTWAIT) != 0;
    let (allowed, rule) = if op.name() == "sendto" {
        super::calls::write(m, actor, op)
    } else {
        super::calls::read_at(m, actor, op, dontwait)
    };
    let allowed = match (op.name(), allowed) {
        // send(2): on a connection-mode socket the address is ignored, or EISCONN.
        ("sendto", Allowed::Set(mut set)) => {
            set.push(Res::Err(Errno::EISCONN));
            Allowed::Set(set)
        }
        (_, a) => a,
    };
    let rule = if rule.id == rules::WRITE_DATA.id || rule.id == rules::READ_DATA.id {
        &rules::SEND_CONNECTED
    } else {
        rule
    };
    (allowed, rule)
}

/// read(2) on a file of this module's kinds.
pub(super) fn read_file(w: &World, o: ObjId, want: i64, dontwait: bool) -> Rules {
    match &w.objs[o].kind {
        Kind::Pipe(p) => read_pipe(w, o, p, want, dontwait),
        Kind::Eventfd(e) => {
            let rule = &rules::EVENTFD_READ;
            match e.count {
                _ if want < 8 => (err(Errno::EINVAL), rule),
                None => (Allowed::Unspecified, rule),
                Some(c) if c > 0 => (val(8), rule),
                Some(_) if e.nonblock || dontwait => (err(Errno::EAGAIN), rule),
                Some(_) => (Allowed::Unspecified, rule),
            }
        }
        Kind::Timer(t) => read_timer(t, want, dontwait),
        Kind::File => (Allowed::Unspecified, &rules::OPENAT_FS),
        _ => (Allowed::Unspecified, &rules::NOT_MODELLED),
    }
}

fn read_pipe(w: &World, o: ObjId, p: &Pipe, want: i64, dontwait: bool) -> Rules {
    let rule = &rules::PIPE_READ;
    if p.write {
        return (err(Errno::EBADF), &rules::PIPE_WRONG_END);
    }
    if p.unknown {
        return (Allowed::Unspecified, rule);
    }
    match p.rx {
        _ if want == 0 => (val(0), rule),
        rx if rx > 0 => (Allowed::range(1, want.min(count(rx))), rule),
        _ if !w.pipe_other_open(o) => (val(0), rule),
        _ if p.nonblock || dontwait => (err(Errno::EAGAIN), rule),
        _ => (Allowed::Unspecified, rule),
    }
}

fn read_timer(t: &Timer, want: i64, dontwait: bool) -> Rules {
    if want < 8 {
        return (err(Errno::EINVAL), &rules::TIMERFD_READ);
    }
    let nonblock = t.nonblock || dontwait;
    let mut ok = vec![Res::Val(8)];
    if t.realtime_abs {
        // timerfd_create(2): a discontinuous change of the real-time clock.
        ok.extend([Res::Val(0), Res::Err(Errno::ECANCELED)]);
    }
    match (t.expired, nonblock, t.armed) {
        (Tri::Yes, _, _) | (_, false, true) => (Allowed::Set(ok), &rules::TIMERFD_READ),
        (Tri::Maybe, true, _) => {
            ok.push(Res::Err(Errno::EAGAIN));
            (Allowed::Set(ok), &rules::TIMERFD_TIME)
        }
        (Tri::No, true, _) => (err(Errno::EAGAIN), &rules::TIMERFD_READ),
        // Blocking on a disarmed timer: it would wait for ever.
        (_, false, false) => (Allowed::Unspecified, &rules::TIMERFD_READ),
    }
}

/// write(2) on a file of this module's kinds.
pub(super) fn write_file(w: &World, o: ObjId, data: &[u8]) -> Rules {
    match &w.objs[o].kind {
        Kind::Pipe(p) => {
            let rule = &rules::PIPE_WRITE;
            let reader = w.pipe_reader(o).and_then(|r| w.pipe(r));
            match reader {
                _ if !p.write => (err(Errno::EBADF), &rules::PIPE_WRONG_END),
                _ if p.unknown => (Allowed::Unspecified, rule),
                None => (err(Errno::EPIPE), &rules::PIPE_EPIPE),
                Some(r) if r.unknown => (Allowed::Unspecified, rule),
                // write(2): a zero count on anything but a regular file is not specified.
                Some(_) if data.is_empty() => (Allowed::Unspecified, rule),
                Some(r) if r.fill + data.len() <= PIPE_BUF => (val(count(data.len())), rule),
                Some(_) => (Allowed::Unspecified, rule),
            }
        }
        Kind::Eventfd(e) => {
            let rule = &rules::EVENTFD_WRITE;
            let value = eventfd_value(data);
            match (value, e.count) {
                (None, _) | (Some(u64::MAX), _) => (err(Errno::EINVAL), rule),
                (_, None) => (Allowed::Unspecified, rule),
                // More than 8 bytes: the page says 8 are copied, not what is returned.
                _ if data.len() > 8 => (Allowed::Unspecified, rule),
                (Some(v), Some(c)) if v <= EVENTFD_MAX - c => (val(8), rule),
                _ if e.nonblock => (err(Errno::EAGAIN), rule),
                _ => (Allowed::Unspecified, rule),
            }
        }
        Kind::Timer(_) => (Allowed::Unspecified, &rules::TIMERFD_TIME),
        Kind::File => (Allowed::Unspecified, &rules::OPENAT_FS),
        _ => (Allowed::Unspecified, &rules::NOT_MODELLED),
    }
}

/// The 8-byte integer a write to an eventfd carries (host byte order), if there are 8 bytes.
fn eventfd_value(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}

/// Applies a successful read of `n` bytes from a non-socket.
pub(super) fn apply_read(w: &mut World, o: ObjId, n: i64) {
    let n = usize::try_from(n).unwrap_or(0);
    match &mut w.objs[o].kind {
        Kind::Pipe(p) if !p.write => {
            p.rx = p.rx.saturating_sub(n);
            if p.rx == 0 {
                p.fill = 0;
            }
            let other = p.other;
            w.objs[other].activity += 1;
        }
        Kind::Eventfd(e) if n == 8 => {
            e.count = match (e.count, e.semaphore) {
                (Some(c), true) => Some(c.saturating_sub(1)),
                (None, true) => None,
                (_, false) => Some(0),
            };
            w.objs[o].activity += 1;
        }
        Kind::Timer(t) => {
            t.armed = t.armed && t.periodic;
            t.expired = if t.armed { Tri::Maybe } else { Tri::No };
        }
        _ => {}
    }
}

/// Applies a failed read: a timer seen without an expiration.
pub(super) fn apply_read_failed(w: &mut World, o: ObjId) {
    if let Some(t) = w.timer_mut(o) {
        t.expired = if t.armed { Tri::Maybe } else { Tri::No };
    }
}

/// Applies a successful write of `n` bytes to a non-socket.
pub(super) fn apply_write(w: &mut World, o: ObjId, data: &[u8], n: i64) {
    let n = usize::try_from(n).unwrap_or(0);
    if let Some(r) = w
        .pipe_reader(o)
        .filter(|_| w.pipe(o).is_some_and(|p| p.write))
    {
        if let Some(p) = w.pipe_mut(r) {
            p.rx += n;
            p.fill += n;
        }
        w.objs[r].activity += 1;
    }
    if let Some(e) = w.eventfd_mut(o) {
        e.count = match (e.count, eventfd_value(data)) {
            (Some(c), Some(v)) if n == 8 => c.checked_add(v),
            _ => None,
        };
        w.objs[o].activity += 1;
    }
}

/// What [`apply`] did.
pub(super) enum Applied {
    /// Not a call of this module.
    NotMine,
    Done,
    /// A new file, for the caller to give its fd.
    NewFd(ObjId),
}

/// Applies the successful result of a call of this module.
pub(super) fn apply(m: &mut Model, actor: &str, op: &Op<Script>, bound: Option<&str>) -> Applied {
    match op.name() {
        "pipe" | "pipe2" => {
            let flags: i64 = if op.name() == "pipe2" { op.int(1) } else { 0 };
            let nonblock = flags & i64::from(libc::O_NONBLOCK) != 0;
            // Packet mode and notification pipes are not followed.
            let unknown = flags & (i64::from(libc::O_DIRECT) | O_NOTIFICATION_PIPE) != 0;
            let (r, w) = (m.w.objs.len(), m.w.objs.len() + 1);
            for (write, other) in [(false, w), (true, r)] {
                m.w.add(Kind::Pipe(Pipe {
                    write,
                    other,
                    nonblock,
                    unknown,
                    ..Pipe::default()
                }));
            }
            bind_pair(m, actor, op.new_fds(0), [r, w]);
        }
        "socketpair" => {
            let (base, flags) = sock_type(op.int(1));
            let nonblock = flags & i64::from(libc::SOCK_NONBLOCK) != 0;
            let (a, b) = (m.w.objs.len(), m.w.objs.len() + 1);
            for peer in [b, a] {
                m.w.add(Kind::Sock(Sock {
                    family: Some(Family::Unix),
                    nonblock,
                    state: SockState::Connected,
                    peer: Some(peer),
                    not_stream: base != i64::from(libc::SOCK_STREAM),
                    ..Sock::default()
                }));
            }
            bind_pair(m, actor, op.new_fds(3), [a, b]);
        }
        "eventfd2" => {
            let flags: i64 = op.int(1);
            let o = m.w.add(Kind::Eventfd(Eventfd {
                count: Some(op.int(0)),
                semaphore: flags & i64::from(libc::EFD_SEMAPHORE) != 0,
                nonblock: flags & i64::from(libc::EFD_NONBLOCK) != 0,
            }));
            return Applied::NewFd(o);
        }
        "epoll_create" => {
            let o = m.w.add(Kind::Epoll(Default::default()));
            return Applied::NewFd(o);
        }
        "timerfd_create" => {
            let (clock, flags): (i64, i64) = (op.int(0), op.int(1));
            let o = m.w.add(Kind::Timer(Timer {
                nonblock: flags & i64::from(libc::TFD_NONBLOCK) != 0,
                realtime: clock == i64::from(libc::CLOCK_REALTIME)
                    || clock == i64::from(libc::CLOCK_REALTIME_ALARM),
                ..Timer::default()
            }));
            return Applied::NewFd(o);
        }
        "timerfd_settime" => {
            if let Look::Open(o) = look(&m.w, actor, &op.fd(0))
                && let Some(times) = op.times(2).map(<[_]>::to_vec)
                && let Some(t) = m.w.timer_mut(o)
            {
                let (interval, value) = (times[0], times[1]);
                let abs = op.int::<i64>(1) & i64::from(libc::TFD_TIMER_ABSTIME) != 0;
                if value == (0, 0) {
                    t.armed = false;
                    // Whether disarming drops an unread expiration is not said.
                    t.expired = t.expired.min(Tri::Maybe);
                } else {
                    t.armed = true;
                    t.periodic = interval != (0, 0);
                    t.expired = Tri::Maybe;
                }
                t.realtime_abs = t.realtime && abs;
                m.w.objs[o].activity += 1;
            }
        }
        "openat" => {
            let o = m.w.add(Kind::File);
            return Applied::NewFd(o);
        }
        "kill" => {
            let (target, sig): (&String, i64) = (op.task(0), op.int(1));
            if caught(sig) {
                for w in m.waiters.iter_mut().filter(|w| &w.actor == target) {
                    w.interrupted = true;
                }
            } else if sig != 0 {
                let held: Vec<ObjId> =
                    m.w.proc(target)
                        .map(|a| a.fds.values().filter(|f| f.open).map(|f| f.obj).collect())
                        .unwrap_or_default();
                for o in held {
                    m.w.lose(o);
                }
            }
        }
        "thread" => {
            if let Some(t) = bound {
                let table = m.w.table(actor).to_string();
                m.w.threads.insert(t.to_string(), table);
            }
        }
        _ => return Applied::NotMine,
    }
    Applied::Done
}

/// Names the two new fds of a pipe or socketpair (their numbers are not in the results).
fn bind_pair(m: &mut Model, actor: &str, names: &[String], objs: [ObjId; 2]) {
    for (name, o) in names.iter().zip(objs) {
        m.w.bind_fd(actor, name, o);
    }
}

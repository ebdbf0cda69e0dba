//! How an actor carries out the core entries of the call table: the tracer's result as an
//! [`Outcome`], and the `drain` builtin, traced as one line.

use nix::errno::Errno;

use crate::scenario::ast::{Data, Live, Op};
use crate::scenario::protocol::Outcome;
use crate::sys;
use crate::trace::{Call, Event, FdRef, Ret};
use crate::tracer::Tracer;

/// A byte or event count as a call's return value (lengths of buffers we allocated).
pub(super) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn number(r: Result<i32, Errno>) -> Outcome {
    Outcome::of(r.map(i64::from))
}

pub(super) fn unit(r: Result<(), Errno>) -> Outcome {
    Outcome::of(r.map(|()| 0))
}

pub(super) fn fd_ref(t: &Tracer, fd: i32) -> FdRef {
    FdRef {
        num: fd,
        name: t.name_of(fd),
    }
}

pub(super) fn live_data(data: &Data<Live>) -> u64 {
    match data {
        Data::Num(n) => *n,
        // A named fd's number, as servers store it (names only bind successful fds, >= 0).
        Data::Fd(fd) => u64::try_from(*fd).unwrap_or(u64::MAX),
    }
}

pub(super) fn epoll_wait(t: &mut Tracer, op: &Op<Live>, pwait: bool) -> Outcome {
    // A negative or zero maxevents goes to the kernel as 0 (EINVAL either way).
    let max = usize::try_from(op.int::<i32>(2)).unwrap_or(0);
    match t.epoll_wait(op.fd(0), max, op.int(3), pwait) {
        Ok(events) => Outcome {
            result: Ok(count(events.len())),
            events,
            ..Outcome::of(Ok(0))
        },
        Err(e) => Outcome::of(Err(e)),
    }
}

/// Accepts every connection queued on `fd` without blocking, closes them, and traces the
/// whole as one `drain(L) = N` line.
pub(super) fn drain(t: &mut Tracer, fd: i32) -> i64 {
    let start = std::time::Instant::now();
    let mut drained = 0;
    while sys::process::readable(fd) {
        match sys::accept4(fd, libc::SOCK_NONBLOCK) {
            Ok((conn, _)) => {
                let _ = sys::close(conn);
                drained += 1;
            }
            Err(_) => break,
        }
    }
    let event = Event {
        actor: t.actor().to_string(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        time_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        dur_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        call: Call::Builtin {
            name: "drain".into(),
            args: vec![fd_ref(t, fd)],
        },
        ret: Ret::value(drained),
        resumed: false,
        slept: false,
        stability: Default::default(),
    };
    t.absorb(event);
    drained
}

//! The files beyond sockets and epoll: pipe ends, eventfds, timerfds and opened files; what
//! makes each ready, and what the model forgets when it cannot follow one.

use super::world::{ANY, ERR, HUP, IN, Kind, OUT, ObjId, Ready, Tri, World};

/// pipe(7) "PIPE_BUF": writes of at most this many bytes are atomic; and a pipe holds at
/// least one page, which on Linux is at least this much (pipe(7) "Pipe capacity": a pipe may
/// be limited to one page).
pub const PIPE_BUF: usize = 4096;

/// eventfd(2): the largest value the counter can hold.
pub const EVENTFD_MAX: u64 = 0xffff_ffff_ffff_fffe;

/// One end of a pipe. The buffer's state lives on the read end.
#[derive(Clone, Debug, Default)]
pub struct Pipe {
    pub write: bool,
    /// The other end.
    pub other: ObjId,
    pub nonblock: bool,
    /// Bytes queued (read end).
    pub rx: usize,
    /// Bytes written since the pipe was last empty (read end): while at most [`PIPE_BUF`],
    /// they fit whatever the pipe's capacity.
    pub fill: usize,
    /// The model lost track of the buffer (a blocked reader may have taken data, packet
    /// mode, ...).
    pub unknown: bool,
}

/// An eventfd's counter; `None` when the model lost track of it.
#[derive(Clone, Debug, Default)]
pub struct Eventfd {
    pub count: Option<u64>,
    pub semaphore: bool,
    pub nonblock: bool,
}

/// A timerfd: when it expires depends on time, which the model does not follow.
#[derive(Clone, Debug, Default)]
pub struct Timer {
    pub nonblock: bool,
    /// Armed: it will expire (again).
    pub armed: bool,
    /// It re-arms itself after an expiration.
    pub periodic: bool,
    /// Whether an expiration is pending (unread).
    pub expired: Tri,
    /// On CLOCK_REALTIME(_ALARM) and set absolute: a clock change may end a read early
    /// (0 or ECANCELED).
    pub realtime_abs: bool,
    pub realtime: bool,
}

impl World {
    pub fn pipe(&self, id: ObjId) -> Option<&Pipe> {
        match &self.objs[id].kind {
            Kind::Pipe(p) => Some(p),
            _ => None,
        }
    }

    pub fn pipe_mut(&mut self, id: ObjId) -> Option<&mut Pipe> {
        match &mut self.objs[id].kind {
            Kind::Pipe(p) => Some(p),
            _ => None,
        }
    }

    /// The read end of the pipe `end` belongs to, if it is still open.
    pub fn pipe_reader(&self, end: ObjId) -> Option<ObjId> {
        let p = self.pipe(end)?;
        let r = if p.write { p.other } else { end };
        self.pipe(r).map(|_| r)
    }

    /// Whether the other end of pipe end `end` is still open somewhere.
    pub fn pipe_other_open(&self, end: ObjId) -> bool {
        self.pipe(end)
            .is_some_and(|p| matches!(self.objs[p.other].kind, Kind::Pipe(_)))
    }

    pub fn eventfd_mut(&mut self, id: ObjId) -> Option<&mut Eventfd> {
        match &mut self.objs[id].kind {
            Kind::Eventfd(e) => Some(e),
            _ => None,
        }
    }

    pub fn timer_mut(&mut self, id: ObjId) -> Option<&mut Timer> {
        match &mut self.objs[id].kind {
            Kind::Timer(t) => Some(t),
            _ => None,
        }
    }

    /// Whether reads of `obj` certainly block when there is nothing to read (not O_NONBLOCK).
    pub fn blocking(&self, obj: ObjId) -> bool {
        match &self.objs[obj].kind {
            Kind::Sock(s) => !s.nonblock,
            Kind::Pipe(p) => !p.nonblock,
            Kind::Eventfd(e) => !e.nonblock,
            Kind::Timer(t) => !t.nonblock,
            _ => false,
        }
    }

    /// The model can no longer follow `obj` (a call it cannot see through touched it): its
    /// readiness and results become unspecified; so do a pipe's other end and a socket's.
    pub fn lose(&mut self, obj: ObjId) {
        let other = match &mut self.objs[obj].kind {
            Kind::Sock(s) => {
                s.unknown = true;
                None
            }
            Kind::Pipe(p) => {
                p.unknown = true;
                Some(p.other)
            }
            Kind::Eventfd(e) => {
                e.count = None;
                None
            }
            Kind::Timer(t) => {
                t.expired = Tri::Maybe;
                t.armed = true;
                None
            }
            Kind::Epoll(ep) => {
                ep.unknown = true;
                None
            }
            Kind::File | Kind::Closed => None,
        };
        if let Some(p) = other.and_then(|o| self.pipe_mut(o)) {
            p.unknown = true;
        }
        self.objs[obj].activity += 1;
    }

    /// Readiness of the file kinds of this module (`None` for sockets and epoll).
    pub(super) fn file_readiness(&self, obj: ObjId) -> Option<Ready> {
        let may_all = Ready { must: 0, may: ANY };
        Some(match &self.objs[obj].kind {
            Kind::Pipe(p) => {
                let reader = self.pipe_reader(obj).and_then(|r| self.pipe(r));
                if p.unknown || reader.is_some_and(|r| r.unknown) {
                    return Some(may_all);
                }
                let other_open = self.pipe_other_open(obj);
                let mut r = Ready::default();
                match (p.write, reader) {
                    // Read end: readable with data; poll(2) POLLHUP once every writer is
                    // gone (whether POLLIN comes with it at end of file is not said).
                    (false, _) => {
                        if p.rx > 0 {
                            r.must |= IN;
                        }
                        if !other_open {
                            r.must |= HUP;
                            r.may |= IN;
                        }
                    }
                    // Write end without readers: poll(2) POLLERR.
                    (true, None) => {
                        r.must |= ERR;
                        r.may |= OUT;
                    }
                    // An empty pipe has room; a partly filled one may be full (its capacity
                    // is not fixed: pipe(7) "Pipe capacity").
                    (true, Some(rd)) if rd.fill == 0 => r.must |= OUT,
                    (true, Some(_)) => r.may |= OUT,
                }
                r.may &= !r.must;
                r
            }
            Kind::Eventfd(e) => match e.count {
                None => may_all,
                Some(c) => Ready {
                    must: if c > 0 { IN } else { 0 } | if c < EVENTFD_MAX { OUT } else { 0 },
                    may: 0,
                },
            },
            Kind::Timer(t) => match t.expired {
                Tri::Yes => Ready { must: IN, may: 0 },
                Tri::Maybe => Ready { must: 0, may: IN },
                Tri::No => Ready::default(),
            },
            Kind::File => may_all,
            _ => return None,
        })
    }

    /// Whether the readiness of one of this module's kinds depends on what the documentation
    /// does not describe (`None` for sockets and epoll).
    pub(super) fn file_undocumented(&self, obj: ObjId) -> Option<bool> {
        Some(match &self.objs[obj].kind {
            Kind::Pipe(_) => {
                let r = self.file_readiness(obj).unwrap_or_default();
                r.may != 0
            }
            Kind::Eventfd(e) => e.count.is_none(),
            Kind::Timer(t) => t.expired == Tri::Maybe,
            Kind::File => true,
            _ => return None,
        })
    }
}

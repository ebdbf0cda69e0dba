//! The model's state: open file descriptions (sockets and epoll instances), the fds of each
//! actor that refer to them, accept queues, and what makes a file ready.

use std::collections::{HashMap, VecDeque};

use crate::addr::Family;

pub type ObjId = usize;

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const PRI: u32 = libc::EPOLLPRI as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const ET: u32 = libc::EPOLLET as u32;
pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
pub const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;
/// Every readiness bit.
pub const ANY: u32 = IN | OUT | PRI | ERR | HUP | RDHUP;

/// Yes, no, or the documentation does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tri {
    #[default]
    No,
    Maybe,
    Yes,
}

/// Readiness: bits that are certainly set, and bits that may be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub must: u32,
    pub may: u32,
}

impl Ready {
    pub fn masked(self, filter: u32) -> Ready {
        Ready {
            must: self.must & filter,
            may: self.may & filter & !self.must,
        }
    }
}

/// A stream socket.
#[derive(Clone, Debug, Default)]
pub struct Sock {
    pub family: Option<Family>,
    pub nonblock: bool,
    pub state: SockState,
    pub reuseport: bool,
    pub rd_shut: bool,
    pub wr_shut: bool,
    /// Bytes queued for reading.
    pub rx: usize,
    /// The other end of a connection.
    pub peer: Option<ObjId>,
    /// The peer shut down writing or closed cleanly: reads reach end of file.
    pub peer_eof: bool,
    /// The peer is gone with data unread or was reset: undocumented territory.
    pub peer_lost: bool,
    /// The model lost track of this socket (an unmodelled call touched it).
    pub unknown: bool,
    /// A datagram or seqpacket socket: the model follows only stream sockets' data.
    pub not_stream: bool,
    /// The actor that made it listen (the fast path spawns in any other).
    pub listened_by: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub enum SockState {
    #[default]
    Fresh,
    Bound(String),
    Listening {
        addr: Option<String>,
        backlog: i64,
        queue: VecDeque<ObjId>,
        /// Connections may be queued that the model did not see (SO_REUSEPORT spread).
        uncertain: bool,
    },
    Connected,
}

/// One registration in an epoll interest list, keyed by (file, fd name).
#[derive(Clone, Debug)]
pub struct Entry {
    pub obj: ObjId,
    /// The fd as the registering actor named it (numbers are per process; names are copied
    /// with the fd table at fork, as the numbers are).
    pub fd: String,
    pub events: u32,
    /// The user data's value, when the model knows it (to match reported events).
    pub data: Option<u64>,
    /// Edge-triggered: whether an edge is pending.
    pub edge: Tri,
    /// One-shot: whether the registration is armed.
    pub armed: Tri,
    pub last: Ready,
    pub last_activity: u64,
}

impl Entry {
    /// The bits a report may carry: the requested ones plus the always-reported ERR and HUP.
    pub fn filter(&self) -> u32 {
        (self.events & (IN | OUT | PRI | RDHUP)) | ERR | HUP
    }
}

#[derive(Clone, Debug, Default)]
pub struct Epoll {
    pub entries: Vec<Entry>,
    /// A call the model could not follow may have changed the interest list (a
    /// registration made through a number another fd may hold).
    pub unknown: bool,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Sock(Sock),
    Epoll(Epoll),
    Pipe(super::files::Pipe),
    Eventfd(super::files::Eventfd),
    Timer(super::files::Timer),
    /// A file opened by path (openat): what it is depends on the file system.
    File,
    /// The last fd was closed.
    Closed,
}

#[derive(Clone, Debug)]
pub struct Obj {
    pub kind: Kind,
    /// fds (across actors) referring to it, plus one while it sits in an accept queue.
    pub refs: usize,
    /// Bumped on every arrival (a connection, data, a peer's shutdown): an edge candidate.
    pub activity: u64,
}

/// One fd of an actor.
#[derive(Clone, Debug)]
pub struct Fd {
    pub obj: ObjId,
    pub open: bool,
    /// Closed, and since then a new fd may have taken its number (open(2): a new fd gets the
    /// lowest number not open), so the name may now reach that fd.
    pub reused: bool,
    /// Open, but a call through another name (a closed one whose number it may have taken,
    /// or a literal number) may have closed or replaced it: the model no longer knows.
    pub doubtful: bool,
}

/// One process and its fd table, by the script name of the actor that is the process (its
/// threads share it: clone(2) CLONE_FILES).
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub fds: HashMap<String, Fd>,
    /// fd numbers seen in results, by name (to read epoll user data).
    pub nums: HashMap<String, i64>,
    /// The actor forked since it closed some fd: the runner may have reused the number.
    pub forked: bool,
    pub exited: bool,
}

#[derive(Clone, Debug, Default)]
pub struct World {
    pub objs: Vec<Obj>,
    pub actors: HashMap<String, Actor>,
    /// Bound addresses, by script name: the sockets holding them.
    pub addrs: HashMap<String, Vec<ObjId>>,
    /// Threads, by script name: the actor whose process (and fd table) they belong to.
    pub threads: HashMap<String, String>,
}

impl World {
    /// The actor whose fd table `actor` uses (itself, unless it is a thread).
    pub fn table<'a>(&'a self, actor: &'a str) -> &'a str {
        self.threads.get(actor).map_or(actor, String::as_str)
    }

    /// The fd table `actor` uses.
    pub fn proc(&self, actor: &str) -> Option<&Actor> {
        self.actors.get(self.table(actor))
    }

    /// The fd table `actor` uses, made if new.
    pub fn proc_mut(&mut self, actor: &str) -> &mut Actor {
        let table = self.table(actor).to_string();
        self.actors.entry(table).or_default()
    }

    pub fn add(&mut self, kind: Kind) -> ObjId {
        self.objs.push(Obj {
            kind,
            refs: 0,
            activity: 0,
        });
        self.objs.len() - 1
    }

    pub fn sock(&self, id: ObjId) -> Option<&Sock> {
        match &self.objs[id].kind {
            Kind::Sock(s) => Some(s),
            _ => None,
        }
    }

    pub fn sock_mut(&mut self, id: ObjId) -> Option<&mut Sock> {
        match &mut self.objs[id].kind {
            Kind::Sock(s) => Some(s),
            _ => None,
        }
    }

    pub fn epoll(&self, id: ObjId) -> Option<&Epoll> {
        match &self.objs[id].kind {
            Kind::Epoll(e) => Some(e),
            _ => None,
        }
    }

    /// Gives `actor` the fd `name` for `obj` (closing what the name held: a new number).
    pub fn bind_fd(&mut self, actor: &str, name: &str, obj: ObjId) {
        self.bind_fd_num(actor, name, obj, None);
    }

    /// [`World::bind_fd`] for a new fd whose number may be known: a closed name whose number
    /// it may have taken may now reach it.
    pub fn bind_fd_num(&mut self, actor: &str, name: &str, obj: ObjId, num: Option<i64>) {
        self.objs[obj].refs += 1;
        let a = self.proc_mut(actor);
        for (other, fd) in a.fds.iter_mut().filter(|(_, f)| !f.open) {
            let closed = a.nums.get(other);
            if num.is_none() || closed.is_none() || closed == num.as_ref() {
                fd.reused = true;
            }
        }
        let fresh = Fd {
            obj,
            open: true,
            reused: false,
            doubtful: false,
        };
        let old = a.fds.insert(name.to_string(), fresh);
        if let Some(Fd {
            obj: old,
            open: true,
            ..
        }) = old
        {
            self.release(old);
        }
    }

    /// A call reached the fd number `num` (`None`: not known) of `actor`'s table through a
    /// name that may not be the one the model holds for it (a literal number, a closed name
    /// whose number a newer fd may have taken). Every open fd that may hold that number
    /// loses what the model knew; with `closes`, it may be gone.
    pub fn through_number(&mut self, actor: &str, num: Option<i64>, closes: bool) {
        let a = self.proc_mut(actor);
        let mut hit = vec![];
        for (name, fd) in a.fds.iter_mut().filter(|(_, f)| f.open) {
            let theirs = a.nums.get(name);
            if num.is_none() || theirs.is_none() || theirs == num.as_ref() {
                fd.doubtful |= closes;
                hit.push(fd.obj);
            }
        }
        for o in hit {
            self.lose(o);
        }
    }

    /// One fd fewer refers to `obj`; the last one closes the open file description.
    pub fn release(&mut self, obj: ObjId) {
        let o = &mut self.objs[obj];
        o.refs = o.refs.saturating_sub(1);
        if o.refs == 0 {
            self.destroy(obj);
        }
    }

    /// The open file description goes away: epoll(7) Q6 drops its registrations, a
    /// connection's peer sees end of file, a listener's queued connections are lost.
    fn destroy(&mut self, obj: ObjId) {
        let kind = std::mem::replace(&mut self.objs[obj].kind, Kind::Closed);
        for o in &mut self.objs {
            if let Kind::Epoll(ep) = &mut o.kind {
                ep.entries.retain(|e| e.obj != obj);
            }
        }
        match kind {
            Kind::Sock(s) => {
                if let Some(peer) = s.peer {
                    let unread = s.rx > 0;
                    self.objs[peer].activity += 1;
                    if let Some(p) = self.sock_mut(peer) {
                        if unread {
                            p.peer_lost = true;
                        } else {
                            p.peer_eof = true;
                        }
                    }
                }
                if let SockState::Listening { queue, addr, .. } = &s.state {
                    for &conn in queue {
                        self.objs[conn].refs = 0;
                        if let Some(client) = self.sock(conn).and_then(|c| c.peer) {
                            self.objs[client].activity += 1;
                            if let Some(c) = self.sock_mut(client) {
                                c.peer_lost = true;
                            }
                        }
                        self.objs[conn].kind = Kind::Closed;
                    }
                    if let Some(addr) = addr {
                        self.unbind(addr, obj);
                    }
                }
                if let SockState::Bound(addr) = &s.state {
                    self.unbind(addr, obj);
                }
            }
            Kind::Pipe(p) => {
                // The other end sees end of file (a reader) or loses its readers (a writer).
                self.objs[p.other].activity += 1;
            }
            Kind::Epoll(_) | Kind::Eventfd(_) | Kind::Timer(_) | Kind::File | Kind::Closed => {}
        }
    }

    fn unbind(&mut self, addr: &str, obj: ObjId) {
        if let Some(holders) = self.addrs.get_mut(addr) {
            holders.retain(|&h| h != obj);
        }
    }

    /// Arrivals so far on the files registered in epoll set `ep` (and in the sets it holds):
    /// how a waiter knows whether something came after the arrival that woke it.
    pub fn arrivals(&self, ep: ObjId) -> u64 {
        fn sum(w: &World, ep: ObjId, depth: usize) -> u64 {
            let Some(set) = w.epoll(ep).filter(|_| depth <= 6) else {
                return 0;
            };
            set.entries
                .iter()
                .map(|e| w.objs[e.obj].activity + sum(w, e.obj, depth + 1))
                .sum()
        }
        sum(self, ep, 0)
    }

    /// What the file `obj` is ready for, as far as the documentation says.
    pub fn readiness(&self, obj: ObjId) -> Ready {
        if let Some(r) = self.file_readiness(obj) {
            return r;
        }
        match &self.objs[obj].kind {
            Kind::Epoll(ep) if ep.unknown => Ready { must: 0, may: IN },
            Kind::Epoll(ep) => {
                let mut r = Ready::default();
                for e in &ep.entries {
                    match super::epoll::reportable(self, e).0 {
                        Tri::Yes => r.must |= IN,
                        Tri::Maybe => r.may |= IN,
                        Tri::No => {}
                    }
                }
                r.may &= !r.must;
                r
            }
            Kind::Sock(s) if s.unknown || s.peer_lost || s.not_stream => {
                Ready { must: 0, may: ANY }
            }
            Kind::Sock(s) => match &s.state {
                SockState::Fresh | SockState::Bound(_) => Ready { must: 0, may: ANY },
                SockState::Listening { .. } if s.rd_shut || s.wr_shut => {
                    Ready { must: 0, may: ANY }
                }
                SockState::Listening {
                    queue, uncertain, ..
                } => match (queue.is_empty(), uncertain) {
                    (false, _) => Ready { must: IN, may: 0 },
                    (true, true) => Ready { must: 0, may: IN },
                    (true, false) => Ready::default(),
                },
                SockState::Connected => {
                    let peer_rd_shut = self.peer_rd_shut(s);
                    let mut r = Ready::default();
                    if s.rx > 0 || s.peer_eof {
                        r.must |= IN;
                    }
                    if s.peer_eof {
                        r.must |= RDHUP;
                    }
                    if s.peer_eof || s.rd_shut || s.wr_shut || peer_rd_shut {
                        // After a shutdown the documentation names no exact mask.
                        r.may |= ANY;
                    } else {
                        r.must |= OUT;
                    }
                    r.may &= !r.must;
                    r
                }
            },
            _ => Ready::default(),
        }
    }

    /// Whether the peer of `s` shut down its reading side: what a write to `s` then does is
    /// not documented (unix sockets fail with EPIPE, TCP accepts and drops).
    pub fn peer_rd_shut(&self, s: &Sock) -> bool {
        s.peer.and_then(|p| self.sock(p)).is_some_and(|p| p.rd_shut)
    }

    /// Whether readiness depends on something the documentation does not describe.
    pub fn undocumented(&self, obj: ObjId) -> bool {
        if let Some(u) = self.file_undocumented(obj) {
            return u;
        }
        match &self.objs[obj].kind {
            Kind::Sock(s) => {
                s.unknown
                    || s.not_stream
                    || s.peer_lost
                    || matches!(s.state, SockState::Fresh | SockState::Bound(_))
                    || matches!(
                        s.state,
                        SockState::Listening {
                            uncertain: true,
                            ..
                        }
                    )
                    || ((s.rd_shut || s.wr_shut || s.peer_eof || self.peer_rd_shut(s))
                        && !matches!(s.state, SockState::Listening { .. }))
                    || (matches!(s.state, SockState::Listening { .. }) && (s.rd_shut || s.wr_shut))
            }
            Kind::Epoll(ep) => ep.unknown || ep.entries.iter().any(|e| self.undocumented(e.obj)),
            _ => false,
        }
    }
}

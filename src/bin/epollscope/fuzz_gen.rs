//! Random valid multi-actor scenarios: listeners, clients and epoll sets; forked workers that
//! block in the background (`accept`, `epoll_wait`, `poll`, `read` ... `&`) and are collected;
//! and, in half of the scenarios, the other fd kinds (pipes, socketpairs, eventfds, datagram
//! sockets, `poll`/`ppoll`/`epoll_pwait2`, dups across fork, one description registered twice).
//!
//! A generated scenario never hangs and never depends on timing. The generator keeps the exact
//! state it needs (queue lengths, registrations, who is blocked on what) and follows three rules:
//! - a foreground call never blocks (non-blocking fds, or a blocking one only when it surely has
//!   something: an accept with a connection surely queued, a connect while the backlog has room);
//! - an actor takes its next step (or is awaited) only when its background call surely returns:
//!   it returned at once, its timeout is finite, or a later step surely woke it. A step surely
//!   wakes a blocked call only when that call is the ONLY blocked one watching what the step
//!   makes ready (the man pages promise "at least one" waiter, not each), and a woken epoll or
//!   read waiter is awaited on the very next line, before anything can take the readiness back;
//!   blocked accepts on a blocking listener are collected only once every one of them was handed
//!   a connection (each connection goes to exactly one, which one is not said), and nothing else
//!   accepts on that listener meanwhile;
//! - the rest stay blocked to the end (the runner kills them), or, where the model's coverage is
//!   not at stake, are interrupted with `kill(w, SIGUSR1)` and awaited.
//!
//! Results are left open (`= ?`) except where a name must be bound, and the model judges them.
//! Scenarios of the "sockets" profile use only calls the model knows, so that a contradiction
//! can be reported; the "mixed" profile adds the other kinds.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The seed of case `index` of a run started with `seed`.
pub fn case_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index)
}

/// Generates the scenario of one seed: the same seed gives the same bytes.
pub fn generate(seed: u64) -> String {
    let mut g = Gen::new(seed);
    g.setup();
    for _ in 0..g.rng.random_range(4..=24) {
        g.action();
    }
    g.out
}

/// What a registration, a poll or a blocked call watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Listener(usize),
    Chan(usize),
}

struct Listener {
    name: String,
    addr: String,
    backlog: usize,
    /// A blocking listener is served by blocked accepts (and `drain`), never watched by epoll
    /// or poll: a woken accept and a woken epoll waiter would race for the connection.
    blocking: bool,
    /// Connections surely queued and not handed to a blocked accept.
    queued: usize,
    /// Workers blocked in accept on it, and how many of them were surely handed a connection.
    acceptors: Vec<usize>,
    handed: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChanKind {
    Pipe,
    SocketPair,
    Eventfd,
    Datagram,
}

/// Something one end writes and another reads: a pipe, a socketpair (S0 writes, S1 reads), an
/// eventfd, or a bound datagram socket and its sender.
struct Chan {
    kind: ChanKind,
    reader: String,
    writer: String,
    /// The datagram socket's address.
    addr: String,
    nonblock: bool,
    /// Whether anything may be unread (an edge-triggered wake is sure only from empty).
    written: bool,
    writes: usize,
}

struct Reg {
    fd: String,
    target: Target,
    flags: &'static str,
}

/// One epoll set (an open file description: every name and every actor that has it).
struct Set {
    regs: Vec<Reg>,
    /// The worker that made it after the forks (only it names it), or None: made by main first.
    owner: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum Busy {
    Idle,
    /// Blocked in accept on a blocking listener (its certainty is the listener's `handed`).
    Accept(usize),
    /// Blocked in epoll_wait on `set`, in poll, or in read: it watches `watches`.
    Wait {
        watches: Vec<Target>,
        set: Option<usize>,
        certain: bool,
    },
}

struct Actor {
    name: String,
    /// Epoll set names in scope: (name, set).
    sets: Vec<(String, usize)>,
    /// Registrable names in scope: (name, what it is, whether a shared set may register it).
    names: Vec<(String, Target, bool)>,
    /// Clients that may still write: (name, listener).
    clients: Vec<(String, usize)>,
    /// Dups this actor made and may close.
    aliases: Vec<String>,
    busy: Busy,
}

const FLAGS: &[&str] = &[
    "EPOLLIN",
    "EPOLLIN|EPOLLET",
    "EPOLLIN|EPOLLONESHOT",
    "EPOLLIN|EPOLLEXCLUSIVE",
    "EPOLLIN|EPOLLOUT|EPOLLRDHUP",
    "EPOLLIN|EPOLLRDHUP|EPOLLET",
];

/// Most writes to one channel: far below any pipe, socket or datagram queue limit.
const MAX_WRITES: usize = 8;

struct Gen {
    rng: StdRng,
    out: String,
    mixed: bool,
    listeners: Vec<Listener>,
    chans: Vec<Chan>,
    sets: Vec<Set>,
    actors: Vec<Actor>,
    /// Numbers new names (clients, sets, dups) so that they never repeat.
    n: usize,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = StdRng::seed_from_u64(seed);
        let family = ["unix", "inet", "inet6"][rng.random_range(0..3)];
        let mixed = rng.random_bool(0.5);
        let out = format!(
            "# Random scenario (epollscope fuzz), seed {seed}{}.\nfamily: {family}\n\n",
            if mixed { ", mixed fd kinds" } else { "" }
        );
        Gen {
            rng,
            out,
            mixed,
            listeners: vec![],
            chans: vec![],
            sets: vec![],
            actors: vec![Actor {
                name: "main".into(),
                sets: vec![],
                names: vec![],
                clients: vec![],
                aliases: vec![],
                busy: Busy::Idle,
            }],
            n: 0,
        }
    }

    fn line(&mut self, actor: usize, text: &str) {
        if actor != 0 {
            let _ = write!(self.out, "[{}] ", self.actors[actor].name);
        }
        let _ = writeln!(self.out, "{text}");
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!("{prefix}{}", self.n)
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> Option<T> {
        (!from.is_empty()).then(|| from[self.rng.random_range(0..from.len())].clone())
    }

    fn flags(&mut self, all: bool) -> &'static str {
        FLAGS[self.rng.random_range(0..if all { FLAGS.len() } else { 4 })]
    }

    /// Listeners, main's epoll sets, the mixed profile's channels, dups, then the workers.
    fn setup(&mut self) {
        for i in 1..=self.rng.random_range(1..=2) {
            let (name, addr) = (format!("L{i}"), format!("ADDR{i}"));
            let blocking = self.rng.random_bool(0.35);
            let backlog = self.rng.random_range(4..=16);
            let kind = if blocking {
                "SOCK_STREAM"
            } else {
                "SOCK_STREAM|SOCK_NONBLOCK"
            };
            self.line(0, &format!("socket(FAMILY, {kind}, 0) = {name}"));
            self.line(0, &format!("bind({name}, {addr}) = 0"));
            self.line(0, &format!("listen({name}, {backlog}) = 0"));
            if !blocking {
                self.actors[0]
                    .names
                    .push((name.clone(), Target::Listener(i - 1), true));
            }
            self.listeners.push(Listener {
                name,
                addr,
                backlog,
                blocking,
                queued: 0,
                acceptors: vec![],
                handed: 0,
            });
        }
        if self.mixed {
            for _ in 0..self.rng.random_range(1..=2) {
                self.make_chan();
            }
        }
        // One description under two fds: dup a watchable fd and register both (epoll keys
        // registrations by (file, fd)); closing one of them later leaves the other's.
        if self.rng.random_bool(0.4)
            && let Some((name, target, _)) = self.pick(&self.actors[0].names.clone())
        {
            let d = self.fresh("D");
            self.line(0, &format!("dup({name}) = {d}"));
            self.actors[0].names.push((d.clone(), target, true));
            self.actors[0].aliases.push(d);
        }
        for _ in 0..self.rng.random_range(1..=2) {
            self.make_set(0);
        }
        for i in 1..=self.rng.random_range(0..=3) {
            let w = format!("w{i}");
            self.line(0, &format!("fork() = {w}"));
            let main = &self.actors[0];
            let child = Actor {
                name: w,
                sets: main.sets.clone(),
                names: main.names.clone(),
                clients: vec![],
                aliases: vec![],
                busy: Busy::Idle,
            };
            self.actors.push(child);
        }
    }

    fn make_chan(&mut self) {
        let i = self.chans.len();
        let nonblock = self.rng.random_bool(0.5);
        let kind = [
            ChanKind::Pipe,
            ChanKind::SocketPair,
            ChanKind::Eventfd,
            ChanKind::Datagram,
        ][self.rng.random_range(0..4)];
        let (reader, writer, mut addr) = match kind {
            ChanKind::Pipe => (format!("R{i}"), format!("W{i}"), String::new()),
            ChanKind::SocketPair => (format!("Y{i}"), format!("X{i}"), String::new()),
            ChanKind::Eventfd => (format!("EV{i}"), format!("EV{i}"), String::new()),
            ChanKind::Datagram => (format!("U{i}"), format!("V{i}"), format!("ADDR{}", 3 + i)),
        };
        let nb = |yes: &str| {
            if nonblock {
                yes.to_string()
            } else {
                "0".into()
            }
        };
        match kind {
            ChanKind::Pipe => {
                let flags = nb("O_NONBLOCK");
                self.line(0, &format!("pipe2([{reader}, {writer}], {flags}) = 0"));
            }
            ChanKind::SocketPair => {
                let ty = ["SOCK_STREAM", "SOCK_SEQPACKET"][self.rng.random_range(0..2)];
                let ty = if nonblock {
                    format!("{ty}|SOCK_NONBLOCK")
                } else {
                    ty.to_string()
                };
                self.line(
                    0,
                    &format!("socketpair(AF_UNIX, {ty}, 0, [{writer}, {reader}]) = 0"),
                );
            }
            ChanKind::Eventfd => {
                let flags = nb("EFD_NONBLOCK");
                self.line(0, &format!("eventfd2(0, {flags}) = {reader}"));
            }
            ChanKind::Datagram => {
                let ty = if nonblock {
                    "SOCK_DGRAM|SOCK_NONBLOCK"
                } else {
                    "SOCK_DGRAM"
                };
                self.line(0, &format!("socket(FAMILY, {ty}, 0) = {reader}"));
                self.line(0, &format!("bind({reader}, {addr}) = 0"));
                self.line(0, &format!("socket(FAMILY, SOCK_DGRAM, 0) = {writer}"));
                addr = addr.clone();
            }
        }
        self.actors[0]
            .names
            .push((reader.clone(), Target::Chan(i), true));
        self.chans.push(Chan {
            kind,
            reader,
            writer,
            addr,
            nonblock,
            written: false,
            writes: 0,
        });
    }

    /// A new epoll set made by `actor`, with a few registrations.
    fn make_set(&mut self, actor: usize) {
        let s = self.sets.len();
        let e = self.fresh("E");
        if self.mixed && self.rng.random_bool(0.3) {
            self.line(actor, &format!("epoll_create(1) = {e}"));
        } else {
            self.line(actor, &format!("epoll_create1(0) = {e}"));
        }
        self.sets.push(Set {
            regs: vec![],
            owner: (actor != 0).then_some(actor),
        });
        self.actors[actor].sets.push((e.clone(), s));
        let names = self.actors[actor].names.clone();
        for (name, _, _) in &names {
            if self.rng.random_bool(0.7) {
                let flags = self.flags(false);
                self.ctl(actor, &e, s, "EPOLL_CTL_ADD", name, flags);
            }
        }
    }

    /// Emits one epoll_ctl and follows its exact effect on the registrations.
    fn ctl(&mut self, actor: usize, e: &str, s: usize, op: &str, fd: &str, flags: &'static str) {
        let Some(target) = self.actors[actor]
            .names
            .iter()
            .find(|n| n.0 == fd)
            .map(|n| n.1)
        else {
            return;
        };
        let event = if op == "EPOLL_CTL_DEL" {
            "NULL".to_string()
        } else {
            format!("{{events={flags}, data={fd}}}")
        };
        self.line(actor, &format!("epoll_ctl({e}, {op}, {fd}, {event}) = ?"));
        let regs = &mut self.sets[s].regs;
        let at = regs.iter().position(|r| r.fd == fd);
        let exclusive = |f: &str| f.contains("EXCLUSIVE");
        match (op, at) {
            ("EPOLL_CTL_ADD", None) => regs.push(Reg {
                fd: fd.to_string(),
                target,
                flags,
            }),
            ("EPOLL_CTL_MOD", Some(i)) if !exclusive(flags) && !exclusive(regs[i].flags) => {
                regs[i].flags = flags;
            }
            ("EPOLL_CTL_DEL", Some(i)) => {
                regs.remove(i);
            }
            // EEXIST, ENOENT, EINVAL: nothing changes.
            _ => {}
        }
    }

    /// Whether `actor` may take a step: idle, or its background call surely returns.
    fn usable(&self, actor: usize) -> bool {
        match &self.actors[actor].busy {
            Busy::Idle => true,
            Busy::Accept(l) => {
                let l = &self.listeners[*l];
                l.handed == l.acceptors.len()
            }
            Busy::Wait { certain, .. } => *certain,
        }
    }

    /// Bookkeeping of a surely returning background call being collected.
    fn collected(&mut self, actor: usize) {
        if let Busy::Accept(l) = self.actors[actor].busy {
            let l = &mut self.listeners[l];
            l.acceptors.retain(|&a| a != actor);
            l.handed -= 1;
        }
        self.actors[actor].busy = Busy::Idle;
    }

    /// A usable actor (main if `workers` is false may be chosen too), collected if it was busy.
    fn actor(&mut self, workers_only: bool) -> Option<usize> {
        let from = usize::from(workers_only);
        let ok: Vec<usize> = (from..self.actors.len())
            .filter(|&a| self.usable(a))
            .collect();
        let a = self.pick(&ok)?;
        if self.actors[a].busy != Busy::Idle {
            // Its next step collects the call first.
            self.collected(a);
        }
        Some(a)
    }

    /// An idle worker, for a new background call.
    fn idle_worker(&mut self) -> Option<usize> {
        let ok: Vec<usize> = (1..self.actors.len())
            .filter(|&a| self.actors[a].busy == Busy::Idle)
            .collect();
        self.pick(&ok)
    }

    fn watchers(&self, t: Target) -> Vec<usize> {
        (1..self.actors.len())
            .filter(|&a| match &self.actors[a].busy {
                Busy::Idle => false,
                Busy::Accept(l) => t == Target::Listener(*l),
                Busy::Wait { watches, .. } => watches.contains(&t),
            })
            .collect()
    }

    /// Whether set `s` has a waiter.
    fn set_busy(&self, s: usize) -> bool {
        self.actors
            .iter()
            .any(|a| matches!(&a.busy, Busy::Wait { set: Some(x), .. } if *x == s))
    }

    /// `t` just became ready (from empty, if `was_empty`): a sole blocked watcher surely wakes,
    /// and is awaited at once, before any step could take the readiness back.
    fn woke(&mut self, t: Target, was_empty: bool) {
        let who = self.watchers(t);
        let [w] = who[..] else {
            return;
        };
        let Busy::Wait { set, certain, .. } = &self.actors[w].busy else {
            return;
        };
        if *certain {
            return;
        }
        let sure = match set {
            None => true,
            Some(s) => self.sets[*s].regs.iter().any(|r| {
                r.target == t
                    && !r.flags.contains("ONESHOT")
                    && (!r.flags.contains("EPOLLET") || was_empty)
            }),
        };
        if sure {
            if self.rng.random_bool(0.3) {
                let name = self.actors[w].name.clone();
                self.line(0, &format!("expect woken({name}) = 0..1"));
            }
            let name = self.actors[w].name.clone();
            self.line(0, &format!("await({name})"));
            self.collected(w);
        }
    }

    fn action(&mut self) {
        let choice = self.rng.random_range(0..if self.mixed { 24 } else { 18 });
        match choice {
            0..=3 => self.connect(),
            4..=5 => self.epoll_wait_now(),
            6 => self.accept_now(),
            7 => self.random_ctl(),
            8 => self.client_op(),
            9 => self.drain(),
            10 => self.dup_or_close(),
            11..=12 => self.block_accept(),
            13..=14 => self.block_epoll(),
            15 => self.herd(),
            16 => self.expect_woken(),
            17 => self.await_some(),
            18..=19 => self.chan_write(),
            20 => self.chan_read_or_poll(),
            21 => self.block_other(),
            22 => self.kill(),
            _ => {
                if let Some(w) = self.idle_worker() {
                    self.make_set(w);
                }
            }
        }
    }

    fn connect(&mut self) {
        let l = self.rng.random_range(0..self.listeners.len());
        let li = &self.listeners[l];
        // A full backlog would block the connect (or drop its SYN): only while there is room.
        if li.queued + li.handed + 1 >= li.backlog {
            return;
        }
        let Some(a) = self.actor(false) else { return };
        let c = self.fresh("C");
        let addr = self.listeners[l].addr.clone();
        self.line(a, &format!("socket(FAMILY, SOCK_STREAM, 0) = {c}"));
        self.line(a, &format!("connect({c}, {addr}) = ?"));
        self.actors[a].clients.push((c, l));
        let li = &mut self.listeners[l];
        if li.blocking {
            if li.acceptors.len() > li.handed {
                li.handed += 1;
            } else {
                li.queued += 1;
            }
        } else {
            let was_empty = li.queued == 0;
            li.queued += 1;
            self.woke(Target::Listener(l), was_empty);
        }
    }

    fn epoll_wait_now(&mut self) {
        let Some(a) = self.actor(false) else { return };
        let Some((e, _)) = self.pick(&self.actors[a].sets.clone()) else {
            return;
        };
        let max = [1, 16][self.rng.random_range(0..2)];
        match self.rng.random_range(0..if self.mixed { 4 } else { 2 }) {
            0 | 1 => self.line(a, &format!("epoll_wait({e}, {max}, 0) = ?")),
            2 => self.line(a, &format!("epoll_pwait({e}, [...], {max}, 0, NULL) = ?")),
            _ => self.line(
                a,
                &format!("epoll_pwait2({e}, [...], {max}, {{tv_sec=0, tv_nsec=0}}, NULL, 8) = ?"),
            ),
        }
    }

    fn accept_now(&mut self) {
        let l = self.rng.random_range(0..self.listeners.len());
        let li = &self.listeners[l];
        // On a blocking listener only while a connection is surely queued and nobody else
        // accepts (a woken accept must find its connection).
        if li.blocking && (li.queued == 0 || !li.acceptors.is_empty()) {
            return;
        }
        let Some(a) = self.actor(false) else { return };
        let name = self.listeners[l].name.clone();
        if self.rng.random_bool(0.5) {
            self.line(a, &format!("accept4({name}, ..., SOCK_NONBLOCK) = ?"));
        } else {
            self.line(a, &format!("accept({name}, NULL, NULL) = ?"));
        }
        let li = &mut self.listeners[l];
        li.queued = li.queued.saturating_sub(1);
    }

    fn random_ctl(&mut self) {
        let Some(a) = self.actor(false) else { return };
        let sets: Vec<(String, usize)> = self.actors[a]
            .sets
            .iter()
            .filter(|(_, s)| !self.set_busy(*s))
            .cloned()
            .collect();
        let Some((e, s)) = self.pick(&sets) else {
            return;
        };
        let shared = self.sets[s].owner.is_none();
        let names: Vec<String> = self.actors[a]
            .names
            .iter()
            .filter(|n| n.2 || !shared)
            .map(|n| n.0.clone())
            .collect();
        let Some(fd) = self.pick(&names) else { return };
        let op = ["EPOLL_CTL_MOD", "EPOLL_CTL_DEL", "EPOLL_CTL_ADD"][self.rng.random_range(0..3)];
        let flags = self.flags(true);
        self.ctl(a, &e, s, op, &fd, flags);
    }

    fn client_op(&mut self) {
        let Some(a) = self.actor(false) else { return };
        let names: Vec<String> = self.actors[a].clients.iter().map(|c| c.0.clone()).collect();
        let Some(c) = self.pick(&names) else { return };
        // Each client writes only while both ends are surely open, and once it stops (shuts
        // down or closes) it is done.
        match self.rng.random_range(0..3) {
            0 => self.line(a, &format!("write({c}, \"ping\") = ?")),
            1 => self.line(a, &format!("shutdown({c}, SHUT_WR) = ?")),
            _ => self.line(a, &format!("close({c}) = ?")),
        }
        self.actors[a].clients.retain(|x| x.0 != c);
    }

    fn drain(&mut self) {
        let l = self.rng.random_range(0..self.listeners.len());
        if !self.listeners[l].acceptors.is_empty() {
            return;
        }
        let Some(a) = self.actor(false) else { return };
        let name = self.listeners[l].name.clone();
        self.line(a, &format!("drain({name}) = ?"));
        self.listeners[l].queued = 0;
        for actor in &mut self.actors {
            actor.clients.retain(|c| c.1 != l);
        }
    }

    /// A dup of an epoll fd, a worker's dup2 of an inherited fd, or closing a dup.
    fn dup_or_close(&mut self) {
        let Some(a) = self.actor(false) else { return };
        match self.rng.random_range(0..3) {
            0 => {
                if let Some(d) = self.pick(&self.actors[a].aliases.clone()) {
                    self.line(a, &format!("close({d}) = ?"));
                    let actor = &mut self.actors[a];
                    actor.aliases.retain(|x| *x != d);
                    actor.names.retain(|x| x.0 != d);
                    actor.sets.retain(|x| x.0 != d);
                }
            }
            1 => {
                if let Some((e, s)) = self.pick(&self.actors[a].sets.clone()) {
                    let d = self.fresh("D");
                    self.line(a, &format!("dup({e}) = {d}"));
                    self.actors[a].sets.push((d.clone(), s));
                    self.actors[a].aliases.push(d);
                }
            }
            _ => {
                // dup2 onto a number the runner leaves free (its own fds live at 900 and up).
                if let Some((x, target, _)) = self.pick(&self.actors[a].names.clone()) {
                    let d = self.fresh("D");
                    let number = 40 + self.n;
                    self.line(a, &format!("dup2({x}, {number}) = {d}"));
                    // Another actor's fd may have the same number: only private sets get it.
                    let shared_ok = a == 0 && self.actors.len() == 1;
                    self.actors[a].names.push((d.clone(), target, shared_ok));
                    self.actors[a].aliases.push(d);
                }
            }
        }
    }

    /// A worker blocks in accept on a blocking listener.
    fn block_accept(&mut self) {
        let ls: Vec<usize> = (0..self.listeners.len())
            .filter(|&l| self.listeners[l].blocking && self.listeners[l].handed == 0)
            .collect();
        let Some(l) = self.pick(&ls) else { return };
        let Some(w) = self.idle_worker() else { return };
        let name = self.listeners[l].name.clone();
        if self.rng.random_bool(0.5) {
            self.line(w, &format!("accept({name}, NULL, NULL) = ? &"));
        } else {
            self.line(w, &format!("accept4({name}, ..., SOCK_NONBLOCK) = ? &"));
        }
        let li = &mut self.listeners[l];
        if li.queued > 0 {
            // No acceptor is waiting (connections go to waiters first): it takes one at once.
            li.queued -= 1;
            li.handed += 1;
        }
        li.acceptors.push(w);
        self.actors[w].busy = Busy::Accept(l);
    }

    /// What a blocked epoll_wait on set `s` watches, and whether it returns at once.
    fn set_watch(&self, s: usize) -> (Vec<Target>, bool) {
        let regs = &self.sets[s].regs;
        let at_once = regs.iter().any(|r| {
            matches!(r.target, Target::Listener(l) if self.listeners[l].queued > 0)
                && !r.flags.contains("EPOLLET")
                && !r.flags.contains("ONESHOT")
        });
        (regs.iter().map(|r| r.target).collect(), at_once)
    }

    /// A worker blocks in epoll_wait (for ever) on a set nobody else waits on.
    fn block_epoll(&mut self) {
        let Some(w) = self.idle_worker() else { return };
        let sets: Vec<(String, usize)> = self.actors[w]
            .sets
            .iter()
            .filter(|(_, s)| !self.set_busy(*s))
            .cloned()
            .collect();
        let Some((e, s)) = self.pick(&sets) else {
            return;
        };
        let max = [1, 16][self.rng.random_range(0..2)];
        if self.mixed && self.rng.random_bool(0.3) {
            self.line(
                w,
                &format!("epoll_pwait2({e}, [...], {max}, NULL, NULL, 8) = ? &"),
            );
        } else {
            self.line(w, &format!("epoll_wait({e}, {max}, -1) = ? &"));
        }
        let (watches, certain) = self.set_watch(s);
        self.actors[w].busy = Busy::Wait {
            watches,
            set: Some(s),
            certain,
        };
    }

    /// Several workers, each with its own set on one listener, block; one connection; how
    /// many woke is the model's to judge. Those not surely woken stay blocked.
    fn herd(&mut self) {
        let ls: Vec<usize> = (0..self.listeners.len())
            .filter(|&l| !self.listeners[l].blocking)
            .collect();
        let Some(l) = self.pick(&ls) else { return };
        let flags =
            ["EPOLLIN", "EPOLLIN|EPOLLEXCLUSIVE", "EPOLLIN|EPOLLET"][self.rng.random_range(0..3)];
        let name = self.listeners[l].name.clone();
        let mut herd = vec![];
        for _ in 0..self.rng.random_range(2..=3) {
            let Some(w) = self.idle_worker() else { break };
            self.make_set_with(w, &name, flags);
            let s = self.actors[w].sets.last().map_or(0, |x| x.1);
            let e = self.actors[w]
                .sets
                .last()
                .map_or(String::new(), |x| x.0.clone());
            self.line(w, &format!("epoll_wait({e}, 16, -1) = ? &"));
            let (watches, certain) = self.set_watch(s);
            self.actors[w].busy = Busy::Wait {
                watches,
                set: Some(s),
                certain,
            };
            herd.push(w);
        }
        if herd.is_empty() {
            return;
        }
        self.connect_to(l);
        let names: Vec<String> = herd.iter().map(|&w| self.actors[w].name.clone()).collect();
        self.line(
            0,
            &format!("expect woken({}) = 0..{}", names.join(", "), names.len()),
        );
    }

    fn make_set_with(&mut self, w: usize, listener: &str, flags: &'static str) {
        let s = self.sets.len();
        let e = self.fresh("E");
        self.line(w, &format!("epoll_create1(0) = {e}"));
        self.sets.push(Set {
            regs: vec![],
            owner: Some(w),
        });
        self.actors[w].sets.push((e.clone(), s));
        self.ctl(w, &e, s, "EPOLL_CTL_ADD", listener, flags);
    }

    /// Main connects to listener `l` (if there is room), with the same bookkeeping as
    /// [`Self::connect`].
    fn connect_to(&mut self, l: usize) {
        let li = &self.listeners[l];
        if li.queued + li.handed + 1 >= li.backlog {
            return;
        }
        let addr = li.addr.clone();
        let c = self.fresh("C");
        self.line(0, &format!("socket(FAMILY, SOCK_STREAM, 0) = {c}"));
        self.line(0, &format!("connect({c}, {addr}) = ?"));
        self.actors[0].clients.push((c, l));
        let was_empty = self.listeners[l].queued == 0;
        self.listeners[l].queued += 1;
        self.woke(Target::Listener(l), was_empty);
    }

    fn expect_woken(&mut self) {
        let busy: Vec<String> = self.actors[1..]
            .iter()
            .filter(|a| a.busy != Busy::Idle)
            .map(|a| a.name.clone())
            .collect();
        if busy.is_empty() {
            return;
        }
        let n = self.rng.random_range(1..=busy.len());
        let names = &busy[..n];
        self.line(
            0,
            &format!("expect woken({}) = 0..{}", names.join(", "), names.len()),
        );
    }

    fn await_some(&mut self) {
        let ready: Vec<usize> = (1..self.actors.len())
            .filter(|&a| self.actors[a].busy != Busy::Idle && self.usable(a))
            .collect();
        if ready.is_empty() {
            return;
        }
        let n = self.rng.random_range(1..=ready.len());
        let names: Vec<String> = ready[..n]
            .iter()
            .map(|&a| self.actors[a].name.clone())
            .collect();
        self.line(0, &format!("await({})", names.join(", ")));
        for &a in &ready[..n] {
            self.collected(a);
        }
    }

    fn chan_write(&mut self) {
        let Some(c) = self.pick(&(0..self.chans.len()).collect::<Vec<_>>()) else {
            return;
        };
        if self.chans[c].writes >= MAX_WRITES {
            return;
        }
        let Some(a) = self.actor(false) else { return };
        let ch = &self.chans[c];
        let text = match ch.kind {
            ChanKind::Pipe | ChanKind::SocketPair => format!("write({}, \"ping\") = ?", ch.writer),
            ChanKind::Eventfd => format!("write({}, \"\\1\\0\\0\\0\\0\\0\\0\\0\") = ?", ch.writer),
            ChanKind::Datagram => format!(
                "sendto({}, \"x\", 1, MSG_DONTWAIT, {}) = ?",
                ch.writer, ch.addr
            ),
        };
        self.line(a, &text);
        let ch = &mut self.chans[c];
        let was_empty = !ch.written;
        ch.written = true;
        ch.writes += 1;
        self.woke(Target::Chan(c), was_empty);
    }

    /// A read that cannot block, or a poll/ppoll that does not wait.
    fn chan_read_or_poll(&mut self) {
        let Some(a) = self.actor(false) else { return };
        if self.rng.random_bool(0.5) {
            let ok: Vec<usize> = (0..self.chans.len())
                .filter(|&c| self.chans[c].nonblock)
                .collect();
            if let Some(c) = self.pick(&ok) {
                let text = read_text(&self.chans[c]);
                self.line(a, &format!("{text} = ?"));
            }
            return;
        }
        let fds = self.poll_fds(a);
        if fds.is_empty() {
            return;
        }
        let list = poll_list(&fds);
        if self.rng.random_bool(0.5) {
            self.line(a, &format!("poll([{list}], {}, 0) = ?", fds.len()));
        } else {
            self.line(
                a,
                &format!(
                    "ppoll([{list}], {}, {{tv_sec=0, tv_nsec=0}}, NULL, 8) = ?",
                    fds.len()
                ),
            );
        }
    }

    /// One to three of `a`'s watchable fds (never a blocking listener).
    fn poll_fds(&mut self, a: usize) -> Vec<(String, Target)> {
        let names: Vec<(String, Target)> = self.actors[a]
            .names
            .iter()
            .map(|n| (n.0.clone(), n.1))
            .collect();
        let mut out: Vec<(String, Target)> = vec![];
        for _ in 0..self.rng.random_range(1..=3) {
            if let Some(n) = self.pick(&names)
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }

    /// A worker blocks in read, recvfrom, poll or ppoll (for ever, or for a few ms), or in a
    /// timed epoll_wait.
    fn block_other(&mut self) {
        let Some(w) = self.idle_worker() else { return };
        let ms = self.rng.random_range(1..=3);
        match self.rng.random_range(0..3) {
            0 => {
                let Some(c) = self.pick(&(0..self.chans.len()).collect::<Vec<_>>()) else {
                    return;
                };
                if !self.watchers(Target::Chan(c)).is_empty() {
                    return;
                }
                let text = read_text(&self.chans[c]);
                self.line(w, &format!("{text} = ? &"));
                self.actors[w].busy = Busy::Wait {
                    watches: vec![Target::Chan(c)],
                    set: None,
                    certain: self.chans[c].nonblock,
                };
            }
            1 => {
                let fds = self.poll_fds(w);
                if fds.is_empty() {
                    return;
                }
                let list = poll_list(&fds);
                let n = fds.len();
                let timed = self.rng.random_bool(0.5);
                let text = match (self.rng.random_bool(0.5), timed) {
                    (true, true) => format!("poll([{list}], {n}, {ms})"),
                    (true, false) => format!("poll([{list}], {n}, -1)"),
                    (false, true) => format!(
                        "ppoll([{list}], {n}, {{tv_sec=0, tv_nsec={}}}, NULL, 8)",
                        ms * 1_000_000
                    ),
                    (false, false) => format!("ppoll([{list}], {n}, NULL, NULL, 8)"),
                };
                self.line(w, &format!("{text} = ? &"));
                self.actors[w].busy = Busy::Wait {
                    watches: fds.iter().map(|f| f.1).collect(),
                    set: None,
                    certain: timed,
                };
            }
            _ => {
                let sets: Vec<(String, usize)> = self.actors[w]
                    .sets
                    .iter()
                    .filter(|(_, s)| !self.set_busy(*s))
                    .cloned()
                    .collect();
                let Some((e, s)) = self.pick(&sets) else {
                    return;
                };
                self.line(w, &format!("epoll_wait({e}, 16, {ms}) = ? &"));
                let (watches, _) = self.set_watch(s);
                self.actors[w].busy = Busy::Wait {
                    watches,
                    set: Some(s),
                    certain: true,
                };
            }
        }
    }

    /// Interrupts a blocked epoll, poll or read waiter (a signal without SA_RESTART ends the
    /// call at once, or finds it returned) and awaits it. Never a blocked accept: one that was
    /// handed a connection could return EINTR and leave it queued.
    fn kill(&mut self) {
        let ok: Vec<usize> = (1..self.actors.len())
            .filter(|&a| matches!(self.actors[a].busy, Busy::Wait { .. }))
            .collect();
        let Some(w) = self.pick(&ok) else { return };
        let name = self.actors[w].name.clone();
        self.line(0, &format!("kill({name}, SIGUSR1) = ?"));
        self.line(0, &format!("await({name})"));
        self.actors[w].busy = Busy::Idle;
    }
}

fn read_text(ch: &Chan) -> String {
    match ch.kind {
        ChanKind::Pipe | ChanKind::SocketPair => format!("read({}, ..., 64)", ch.reader),
        ChanKind::Eventfd => format!("read({}, ..., 8)", ch.reader),
        ChanKind::Datagram => format!("recvfrom({}, ..., 64, 0)", ch.reader),
    }
}

fn poll_list(fds: &[(String, Target)]) -> String {
    fds.iter()
        .map(|(name, _)| format!("{{fd={name}, events=POLLIN}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

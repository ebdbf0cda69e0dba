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

use mixed::Chan;

mod background;
mod mixed;

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

    /// Writes one step of `actor`; a background call of its (surely returning: see
    /// [`Self::usable`]) is collected by that step first, as the runner does.
    fn line(&mut self, actor: usize, text: &str) {
        if self.actors[actor].busy != Busy::Idle {
            self.collected(actor);
        }
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

    fn action(&mut self) {
        let choice = self.rng.random_range(0..if self.mixed { 26 } else { 20 });
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
            18..=19 => self.burst(),
            20..=21 => self.chan_write(),
            22 => self.chan_read_or_poll(),
            23 => self.block_other(),
            24 => self.kill(),
            _ => {
                if let Some(w) = self.idle_worker() {
                    self.make_set(w);
                }
            }
        }
    }

    fn connect(&mut self) {
        let l = self.rng.random_range(0..self.listeners.len());
        self.connect_on(l);
    }

    /// Back-to-back connections to one non-blocking listener, then a look at an epoll set:
    /// the seed's question (is a second connection to an unaccepted edge-triggered listener a
    /// new edge?) in all its variations.
    fn burst(&mut self) {
        let ls: Vec<usize> = (0..self.listeners.len())
            .filter(|&l| !self.listeners[l].blocking)
            .collect();
        let Some(l) = self.pick(&ls) else { return };
        for _ in 0..self.rng.random_range(2..=3) {
            self.connect_on(l);
        }
        self.epoll_wait_now();
    }

    fn connect_on(&mut self, l: usize) {
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
        // Not on a set a blocked call waits on: which of the two gets an event is timing.
        let sets: Vec<String> = self.actors[a]
            .sets
            .iter()
            .filter(|(_, s)| !self.set_busy(*s))
            .map(|x| x.0.clone())
            .collect();
        let Some(e) = self.pick(&sets) else {
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
        if li.blocking && (li.queued == 0 || !li.acceptors.is_empty()) || self.contended(l) {
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
        if !self.listeners[l].acceptors.is_empty() || self.contended(l) {
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
}

#[cfg(test)]
mod tests;

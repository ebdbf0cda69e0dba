//! Background calls: who is blocked on what, when a blocked call surely returns, and the
//! steps that block, wake, count (`expect woken`) and collect (`await`) them.

use rand::RngExt;

use super::{Busy, Gen, Set, Target};

impl Gen {
    /// Whether `actor` may take a step: idle, or its background call surely returns.
    pub(super) fn usable(&self, actor: usize) -> bool {
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
    pub(super) fn collected(&mut self, actor: usize) {
        if let Busy::Accept(l) = self.actors[actor].busy {
            let l = &mut self.listeners[l];
            l.acceptors.retain(|&a| a != actor);
            l.handed -= 1;
        }
        self.actors[actor].busy = Busy::Idle;
    }

    /// A usable actor (a worker, if `workers_only`); its step will collect a background call.
    pub(super) fn actor(&mut self, workers_only: bool) -> Option<usize> {
        let from = usize::from(workers_only);
        let ok: Vec<usize> = (from..self.actors.len())
            .filter(|&a| self.usable(a))
            .collect();
        self.pick(&ok)
    }

    /// Whether taking a connection from nonblocking listener `l` now would race with a blocked
    /// epoll or poll waiter that watches it: a woken waiter that finds the readiness gone
    /// sleeps again, so whether it returned (and what `expect woken` counts) would be timing.
    pub(super) fn contended(&self, l: usize) -> bool {
        self.watchers(Target::Listener(l))
            .iter()
            .any(|&w| matches!(self.actors[w].busy, Busy::Wait { .. }))
    }

    /// An idle worker, for a new background call.
    pub(super) fn idle_worker(&mut self) -> Option<usize> {
        let ok: Vec<usize> = (1..self.actors.len())
            .filter(|&a| self.actors[a].busy == Busy::Idle)
            .collect();
        self.pick(&ok)
    }

    pub(super) fn watchers(&self, t: Target) -> Vec<usize> {
        (1..self.actors.len())
            .filter(|&a| match &self.actors[a].busy {
                Busy::Idle => false,
                Busy::Accept(l) => t == Target::Listener(*l),
                Busy::Wait { watches, .. } => watches.contains(&t),
            })
            .collect()
    }

    /// Whether set `s` has a waiter.
    pub(super) fn set_busy(&self, s: usize) -> bool {
        self.actors
            .iter()
            .any(|a| matches!(&a.busy, Busy::Wait { set: Some(x), .. } if *x == s))
    }

    /// `t` just became ready (from empty, if `was_empty`): a sole blocked watcher surely wakes,
    /// and is awaited at once, before any step could take the readiness back.
    pub(super) fn woke(&mut self, t: Target, was_empty: bool) {
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

    /// A worker blocks in accept on a blocking listener.
    pub(super) fn block_accept(&mut self) {
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

    /// What a blocked epoll_wait on set `s` watches, and whether it returns at once. An
    /// EPOLLEXCLUSIVE registration on a ready listener is no promise: the wake-up that made it
    /// ready may have gone to another set only, and this set's ready list never got it
    /// (scenarios/epollexclusive-later-sets-miss-event.scn).
    pub(super) fn set_watch(&self, s: usize) -> (Vec<Target>, bool) {
        let regs = &self.sets[s].regs;
        let at_once = regs.iter().any(|r| {
            matches!(r.target, Target::Listener(l) if self.listeners[l].queued > 0)
                && !r.flags.contains("EPOLLET")
                && !r.flags.contains("ONESHOT")
                && !r.flags.contains("EXCLUSIVE")
        });
        (regs.iter().map(|r| r.target).collect(), at_once)
    }

    /// A worker blocks in epoll_wait (for ever) on a set nobody else waits on.
    pub(super) fn block_epoll(&mut self) {
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
    pub(super) fn herd(&mut self) {
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

    pub(super) fn make_set_with(&mut self, w: usize, listener: &str, flags: &'static str) {
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
    pub(super) fn connect_to(&mut self, l: usize) {
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

    pub(super) fn expect_woken(&mut self) {
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

    pub(super) fn await_some(&mut self) {
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
}

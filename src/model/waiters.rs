//! Background calls (blocked waiters) and the `expect` aggregates over them: who may have
//! returned, and what a collected call may return.

use std::collections::VecDeque;

use nix::errno::Errno;

use super::apply::lose_connect;
use super::calls::{Look, judgement, look, taint};
use super::epoll;
use super::rules::{self, Rule};
use super::verdict::{Allowed, Judgement, Label, Res, label, result_text};
use super::world::{ERR, EXCLUSIVE, HUP, IN, Kind, ONESHOT, ObjId, SockState, Tri};
use super::{Model, WaitKind, Waiter};
use crate::scenario::StepResult;
use crate::scenario::ast::{Aggregate, Scenario, Span, Step};

type Rules = (Allowed, &'static Rule);

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn val(v: i64) -> Allowed {
    Allowed::one(Res::Val(v))
}

impl Model {
    /// A call started in the background.
    pub(super) fn start(&mut self, step: &Step) {
        let op = &step.op;
        let actor = step.actor.as_str();
        // Calls the model does not know may not even take an fd first (poll's array).
        let first = match op.args.first() {
            Some(crate::scenario::ast::Arg::Fd(fd)) => look(&self.w, actor, fd),
            _ => Look::Unknown,
        };
        let kind = match (op.name(), first) {
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
            ("epoll_wait" | "epoll_pwait", Look::Open(ep)) => WaitKind::Epoll {
                ep,
                max: op.int(2),
                timed: op.int::<i64>(3) >= 0,
            },
            ("epoll_pwait2", Look::Open(ep)) => WaitKind::Epoll {
                ep,
                max: op.int(2),
                timed: op.times(3).is_some(),
            },
            ("poll", _) if op.int::<i64>(2) < 0 => WaitKind::Poll {
                fds: op.poll_fds(0).to_vec(),
            },
            ("ppoll", _) if op.times(2).is_none() => WaitKind::Poll {
                fds: op.poll_fds(0).to_vec(),
            },
            // A read waits until the file is readable; then it may take what arrived at any
            // moment, so the model forgets the file's contents (after_step).
            ("read", Look::Open(obj)) if self.w.blocking(obj) => WaitKind::Read { obj },
            ("recvfrom", Look::Open(obj))
                if op.int::<i64>(3) & !i64::from(libc::MSG_PEEK) == 0 && self.w.blocking(obj) =>
            {
                WaitKind::Read { obj }
            }
            _ => {
                if op.name() == "connect" {
                    lose_connect(self, actor, op);
                }
                taint(self, actor, op);
                WaitKind::Other
            }
        };
        let kind_ep = match kind {
            WaitKind::Epoll { ep, .. } => Some(ep),
            _ => None,
        };
        self.waiters.push(Waiter {
            actor: actor.to_string(),
            kind,
            span: step.span,
            ever: Tri::No,
            interrupted: false,
            arrivals_at_start: match kind_ep {
                Some(ep) => self.w.arrivals(ep),
                None => 0,
            },
            ready_at_start: Tri::No,
        });
        self.after_step();
        if let Some(w) = self.waiters.last_mut() {
            w.ready_at_start = w.ever;
        }
    }

    /// After each step: pending epoll waiters may have returned and consumed edges.
    pub(super) fn after_step(&mut self) {
        epoll::update_edges(&mut self.w);
        for i in 0..self.waiters.len() {
            match &self.waiters[i].kind {
                WaitKind::Poll { fds } => {
                    let (now, _) = super::poll::ready_now(&self.w, &self.waiters[i].actor, fds);
                    self.waiters[i].ever = self.waiters[i].ever.max(now);
                    continue;
                }
                &WaitKind::Read { obj } => {
                    let before = self.waiters[i].ever;
                    let r = self.w.readiness(obj);
                    let bits = IN | HUP | ERR;
                    let now = if r.must & bits != 0 {
                        Tri::Yes
                    } else if r.may & bits != 0 {
                        Tri::Maybe
                    } else {
                        Tri::No
                    };
                    self.waiters[i].ever = self.waiters[i].ever.max(now);
                    if before == Tri::No && now != Tri::No {
                        self.w.lose(obj);
                    }
                    continue;
                }
                _ => {}
            }
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
                if let (Some(conn), Ok(v), Some(name)) = (conn, got.result, name) {
                    self.w.bind_fd_num(&waiter.actor, name, conn, Some(v));
                    self.w.release(conn);
                    self.w.proc_mut(&waiter.actor).nums.insert(name.clone(), v);
                }
                match (conn, peers) {
                    (None, _) if waiter.interrupted => {
                        (Allowed::one(Res::Err(Errno::EINTR)), &rules::SIGNAL_EINTR)
                    }
                    (Some(_), _) if waiter.interrupted => {
                        (Allowed::Unspecified, &rules::WAKE_WHICH)
                    }
                    (Some(_), 0) => (Allowed::one(Res::NewFd), &rules::ACCEPT_FIRST),
                    (Some(_), _) => (Allowed::Unspecified, &rules::WAKE_WHICH),
                    (None, _) => (Allowed::Unspecified, &rules::WAKE_WHICH),
                }
            }
            (&WaitKind::Epoll { ep, .. }, Some(step))
                if self.w.epoll(ep).is_some_and(|e| e.unknown) =>
            {
                // What the set holds is unknown: so is what the wait returned.
                let j = judgement(step, got, Allowed::Unspecified, &rules::NOT_MODELLED);
                self.after_step();
                return j;
            }
            (&WaitKind::Epoll { ep, max, timed }, Some(step)) => {
                let entries = self.w.epoll(ep).map_or(0, |e| e.entries.len());
                // A timed wait may have returned long before it is collected: what it did not
                // report says nothing about later edges (a full list skips that inference).
                let inference_max = if timed { 0 } else { max };
                let late = waiter.late(&self.w);
                let note = match got.result {
                    Ok(_) => epoll::apply_wait(&mut self.w, ep, inference_max, &got.events, late),
                    Err(_) => None,
                };
                let (allowed, rule) = if timed {
                    // It may have timed out before a signal came.
                    let mut set = vec![Res::Range(0, count(entries).min(max))];
                    if waiter.interrupted {
                        set.push(Res::Err(Errno::EINTR));
                    }
                    (
                        Allowed::Set(set),
                        Some(&rules::SIGNAL_EINTR).filter(|_| waiter.interrupted),
                    )
                } else {
                    interruptible(&waiter, Allowed::range(1, count(entries).min(max)))
                };
                let rule = rule.unwrap_or(&rules::WAIT_BLOCKING);
                let mut j = judgement(step, got, allowed, rule);
                if let Some(note) = note {
                    j.label = Label::Contradicts;
                    j.rule = &rules::WAIT_MASK;
                    j.note = Some(note);
                }
                self.after_step();
                return j;
            }
            (WaitKind::Poll { fds }, _) => {
                let (allowed, rule) = interruptible(&waiter, Allowed::range(1, count(fds.len())));
                (allowed, rule.unwrap_or(&rules::WAKE_POLL))
            }
            (&WaitKind::Read { obj }, _) => {
                if got.result.is_ok() {
                    // What it read, and when, the model did not follow.
                    self.w.lose(obj);
                }
                match interruptible(&waiter, Allowed::Unspecified) {
                    (a, Some(rule)) => (a, rule),
                    (a, None) => (a, &rules::WAKE_READ),
                }
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
            // How long a call took is measured, not a result the model derives.
            Aggregate::Elapsed(_) => (Allowed::Unspecified, &rules::NOT_MODELLED),
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
            if w.interrupted {
                // A caught signal ends the wait (signal(7)), if nothing ended it before.
                lo += 1;
                hi += 1;
                rule = &rules::SIGNAL_EINTR;
                continue;
            }
            match &w.kind {
                WaitKind::Poll { fds } => {
                    let (now, undocumented) = super::poll::ready_now(&self.w, &w.actor, fds);
                    if undocumented && w.ever != Tri::No {
                        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
                    }
                    if now == Tri::Yes {
                        lo += 1;
                    }
                    if w.ever != Tri::No {
                        hi += 1;
                        rule = &rules::WAKE_POLL;
                    }
                }
                WaitKind::Read { .. } => {
                    if w.ever != Tri::No {
                        hi += 1;
                        rule = &rules::WAKE_READ;
                    }
                }
                WaitKind::Accept { listener, .. } => {
                    if !accept_pools.contains(listener) {
                        accept_pools.push(*listener);
                    }
                }
                WaitKind::Epoll { timed: true, .. } => {
                    // It may have timed out, whatever happened.
                    return (Allowed::Unspecified, &rules::NOT_MODELLED);
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

/// What an interrupted waiter may return: only EINTR (signal(7)) when nothing it waits for
/// was ready, else also what it returns when woken (`woken`, unspecified for a read).
fn interruptible(w: &Waiter, woken: Allowed) -> (Allowed, Option<&'static Rule>) {
    let eintr = Res::Err(Errno::EINTR);
    match (w.interrupted, w.ever, woken) {
        (false, _, woken) => (woken, None),
        (true, Tri::No, _) => (Allowed::one(eintr), Some(&rules::SIGNAL_EINTR)),
        (true, _, Allowed::Set(mut set)) => {
            set.push(eintr);
            (Allowed::Set(set), Some(&rules::SIGNAL_EINTR))
        }
        (true, _, Allowed::Unspecified) => (Allowed::Unspecified, Some(&rules::SIGNAL_EINTR)),
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

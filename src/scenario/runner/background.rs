//! Background calls: waiting until they are asleep in their call (or returned), collecting
//! their replies, and the `expect` aggregates over them.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::{BLOCKED_CONFIRMATIONS, Run, fail, note, readable};
use crate::scenario::ast::{Aggregate, Expect, Span};
use crate::scenario::expect::check_aggregate;
use crate::scenario::report::{AggregateValue, Failure};
use crate::sys::procfs;
use crate::trace::{Ret, Stability};

impl Run<'_> {
    /// Waits for the background call of actor `idx` to return, and records it.
    pub(super) fn collect(&mut self, idx: usize, stability: Stability) -> Result<(), Failure> {
        let pending = self.actors[idx].pending.take().expect("caller checked");
        let step = pending.step;
        let (reply, fd) = self.receive(idx, &step)?;
        self.actors[idx].background_done = Some(true);
        self.finish(idx, &step, reply, fd, true, stability)
    }

    /// Whether actor `idx`'s background call has returned (its reply is waiting, unread).
    pub(super) fn returned(&self, idx: usize) -> bool {
        let actor = &self.actors[idx];
        match actor.pending {
            Some(_) => readable(&actor.chan, Duration::ZERO),
            None => actor.background_done == Some(true),
        }
    }

    /// [`Self::returned`] for every actor.
    pub(super) fn returned_all(&self) -> Vec<bool> {
        (0..self.actors.len()).map(|i| self.returned(i)).collect()
    }

    /// Waits until each of `idxs` has either returned or is confirmed asleep in its blocking
    /// call. Replies are left unread: `await` or the actor's next step records them, at a
    /// point of the script's choosing, so the trace order stays deterministic.
    pub(super) fn wait_blocked(&mut self, idxs: &[usize], span: Span) -> Result<(), Failure> {
        let deadline = (Instant::now() + self.scenario.step_timeout).min(self.deadline);
        // Evidence from before this point says nothing about now: the step since may have
        // woken a sleeper.
        for &idx in idxs {
            if let Some(pending) = self.actors[idx].pending.as_mut() {
                pending.confirmations = 0;
            }
        }
        loop {
            let mut settled = true;
            // A call that returns can wake a sleeper on its way out (epoll's level-triggered
            // chain wakes the next waiter before the first one replies), so a sleeper seen
            // asleep before another call returned may be awake now: the observations of one
            // pass count only if no call returned while they were made.
            let before = self.returned_all();
            for &idx in idxs {
                if before[idx] {
                    continue;
                }
                let actor = &mut self.actors[idx];
                let Some(pending) = actor.pending.as_mut() else {
                    continue;
                };
                let syscalls = pending
                    .step
                    .op
                    .call
                    .spec()
                    .blocking
                    .map_or(&[][..], |b| b.syscalls);
                let asleep = procfs::task_asleep_in(actor.pid, actor.tid, syscalls);
                pending.confirmations = if asleep { pending.confirmations + 1 } else { 0 };
                if pending.confirmations < BLOCKED_CONFIRMATIONS {
                    settled = false;
                }
            }
            if self.returned_all() != before {
                for &idx in idxs {
                    if let Some(pending) = self.actors[idx].pending.as_mut() {
                        pending.confirmations = 0;
                    }
                }
                settled = false;
            }
            if settled {
                return Ok(());
            }
            if Instant::now() > deadline {
                let who: Vec<&str> = idxs
                    .iter()
                    .filter(|&&i| !self.returned(i))
                    .map(|&i| self.actors[i].name.as_str())
                    .collect();
                return Err(fail(
                    self.scenario,
                    span,
                    format!(
                        "step hung: {} neither returned nor blocked within {:?}",
                        who.join(", "),
                        self.scenario.step_timeout
                    ),
                    None,
                ));
            }
            // Wake early if any of them replies; otherwise re-check /proc in a millisecond.
            let mut pollfds: Vec<_> = idxs
                .iter()
                .filter(|&&i| self.actors[i].pending.is_some())
                .map(|&i| {
                    nix::poll::PollFd::new(
                        self.actors[i].chan.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )
                })
                .collect();
            let _ = nix::poll::poll(&mut pollfds, 1u16);
        }
    }

    /// Records the replies of background calls nobody awaited (hidden from symbolic traces:
    /// whether they returned may vary), so the raw trace is complete.
    pub(super) fn collect_leftovers(&mut self) {
        for idx in 0..self.actors.len() {
            if self.actors[idx].pending.is_some() && self.returned(idx) {
                let _ = self.collect(idx, Stability::Hidden);
            }
        }
    }

    pub(super) fn aggregate(
        &mut self,
        aggregate: &Aggregate,
        expect: &Expect,
        span: Span,
    ) -> Result<(), Failure> {
        let actual = match aggregate {
            Aggregate::Woken(names) => {
                let mut idxs = vec![];
                for name in names {
                    let idx = self.actor_index(name, span)?;
                    if self.actors[idx].background_done.is_none() {
                        return Err(fail(
                            self.scenario,
                            span,
                            format!("woken({name}): {name} has not started a background call"),
                            None,
                        ));
                    }
                    idxs.push(idx);
                }
                self.wait_blocked(&idxs, span)?;
                idxs.iter().filter(|&&i| self.returned(i)).count() as i64
            }
            Aggregate::Elapsed(name) => {
                let idx = self.actor_index(name, span)?;
                if self.actors[idx].pending.is_some() {
                    return Err(fail(
                        self.scenario,
                        span,
                        format!("elapsed({name}): {name}'s background call has not been awaited"),
                        None,
                    ));
                }
                let Some(us) = self.actors[idx].last_dur_us else {
                    return Err(fail(
                        self.scenario,
                        span,
                        format!("elapsed({name}): {name} has made no call yet"),
                        None,
                    ));
                };
                // Not an aggregate to compare between runs: only its lower bound is exact.
                let text = format!("{} {}", aggregate.text(), expect.text());
                self.trace.push(note(&text));
                let actual = i64::try_from(us).unwrap_or(i64::MAX);
                return check_aggregate(expect, actual).map_err(|_| {
                    fail(
                        self.scenario,
                        span,
                        format!("expected {text}, took {us}us"),
                        Some(format!("{} = {us}us", aggregate.text())),
                    )
                });
            }
            Aggregate::Sum(vars) | Aggregate::Min(vars) | Aggregate::Max(vars) => {
                let values: Vec<i64> = vars
                    .iter()
                    .map(|v| self.captures.get(v).copied().unwrap_or(0))
                    .collect();
                match aggregate {
                    Aggregate::Sum(_) => values.iter().sum(),
                    Aggregate::Min(_) => values.iter().copied().min().unwrap_or(0),
                    _ => values.iter().copied().max().unwrap_or(0),
                }
            }
        };
        let text = format!("{} = {}", aggregate.text(), expect.text());
        let mut event = note(&text);
        // The symbolic rendering shows the expectation (stable); the value is for comparisons.
        event.ret = Ret::value(actual);
        self.aggregates.push(AggregateValue {
            at: self.trace.len(),
            what: aggregate.text(),
            value: actual,
        });
        self.trace.push(event);
        check_aggregate(expect, actual).map_err(|why| {
            fail(
                self.scenario,
                span,
                why,
                Some(format!("{} = {actual}", aggregate.text())),
            )
        })
    }
}

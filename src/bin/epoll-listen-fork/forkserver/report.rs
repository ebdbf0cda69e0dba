//! What waiters and their children tell the master, and what the master makes of it.
//!
//! Every process sends its messages on one shared [`epollscope::channel::Channel`] (one message per
//! send, so messages from different processes never interleave); the master reads them as they
//! arrive, prints one line per epoll event, and keeps the tallies the summary is made of.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use epollscope::addr::Family;
use epollscope::trace::epoll_events_name;

/// What a child's accept4 on the listener came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Accepted,
    /// EAGAIN: the connection was taken by someone else first; the fork was wasted.
    Wasted,
    /// Any other errno (EMFILE...), by name.
    Failed(String),
}

/// One message on the report channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Waiter `w` has its epoll set ready and is about to wait.
    Ready { w: usize, pid: i32 },
    /// Waiter `w` could not set up (the master turns this into a set-up error).
    SetupFailed { w: usize, why: String },
    /// Waiter `w` got its `k`th listener event, with this mask, and forked `pid` for it.
    Forked {
        w: usize,
        k: u64,
        pid: i32,
        mask: u32,
    },
    /// Waiter `w` got its `k`th listener event but fork failed with `errno`.
    ForkFailed {
        w: usize,
        k: u64,
        mask: u32,
        errno: String,
    },
    /// Child `pid` of waiter `w`, forked for event `k`, tried to accept.
    Result {
        w: usize,
        k: u64,
        pid: i32,
        mask: u32,
        outcome: Outcome,
    },
    /// Waiter `w` hit --max-children and took the listener out of its epoll set.
    Paused { w: usize, children: usize },
    /// Waiter `w` reaped `count` exited children.
    Reaped { w: usize, count: usize },
}

/// Counts for one waiter (also used for the totals).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Listener events epoll_wait returned to this waiter.
    pub events: u64,
    pub forks: u64,
    pub fork_failures: u64,
    pub accepted: u64,
    /// Children whose accept4 got EAGAIN.
    pub wasted: u64,
    /// Children whose accept4 failed with another errno.
    pub accept_errors: u64,
    /// Children killed at shutdown before they reported an accept4 result.
    pub killed: u64,
    /// Times the waiter took the listener out of its epoll set at --max-children.
    pub paused: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.forks += o.forks;
        self.fork_failures += o.fork_failures;
        self.accepted += o.accepted;
        self.wasted += o.wasted;
        self.accept_errors += o.accept_errors;
        self.killed += o.killed;
        self.paused += o.paused;
    }
}

/// A fork whose child has not reported yet (or a report that came before its fork message).
#[derive(Clone, Copy, Debug)]
struct Pending {
    pid: i32,
    mask: u32,
}

/// The master's view of the run, fed message by message.
#[derive(Debug, Default)]
pub struct Tally {
    pub per_waiter: Vec<Counts>,
    /// Numbers the event lines in the order the master prints them.
    printed_events: u64,
    /// (waiter, event) → forked child with no result yet.
    pending: HashMap<(usize, u64), Pending>,
    /// Results that overtook their fork message (the child ran before its parent wrote).
    early: HashMap<(usize, u64), ()>,
    /// Children reaped by their waiters, over all waiters.
    reaped: u64,
}

impl Tally {
    pub fn new(waiters: usize) -> Tally {
        Tally {
            per_waiter: vec![Counts::default(); waiters],
            ..Tally::default()
        }
    }

    fn counts(&mut self, w: usize) -> &mut Counts {
        // Waiters are numbered from 1; a bogus number must not panic the master.
        let i = w
            .saturating_sub(1)
            .min(self.per_waiter.len().saturating_sub(1));
        &mut self.per_waiter[i]
    }

    fn event_line(&mut self, w: usize, mask: u32, rest: &str) -> String {
        self.printed_events += 1;
        format!(
            "event {} [w{w}] {} -> {rest}",
            self.printed_events,
            epoll_events_name(mask)
        )
    }

    /// Records a fork or result message; returns the line to print for it, if any.
    pub fn record(&mut self, msg: &Msg) -> Option<String> {
        match msg {
            Msg::Forked { w, k, pid, mask } => {
                let c = self.counts(*w);
                c.events += 1;
                c.forks += 1;
                if self.early.remove(&(*w, *k)).is_none() {
                    self.pending.insert(
                        (*w, *k),
                        Pending {
                            pid: *pid,
                            mask: *mask,
                        },
                    );
                }
                None
            }
            Msg::ForkFailed { w, mask, errno, .. } => {
                let c = self.counts(*w);
                c.events += 1;
                c.fork_failures += 1;
                Some(self.event_line(*w, *mask, &format!("fork failed: {errno}")))
            }
            Msg::Result {
                w,
                k,
                pid,
                mask,
                outcome,
            } => {
                if self.pending.remove(&(*w, *k)).is_none() {
                    self.early.insert((*w, *k), ());
                }
                let c = self.counts(*w);
                let what = match outcome {
                    Outcome::Accepted => {
                        c.accepted += 1;
                        "accepted".to_string()
                    }
                    Outcome::Wasted => {
                        c.wasted += 1;
                        "EAGAIN (wasted fork)".to_string()
                    }
                    Outcome::Failed(e) => {
                        c.accept_errors += 1;
                        format!("accept4 failed: {e}")
                    }
                };
                Some(self.event_line(*w, *mask, &format!("child {pid}: {what}")))
            }
            Msg::Paused { w, .. } => {
                self.counts(*w).paused += 1;
                None
            }
            Msg::Reaped { count, .. } => {
                self.reaped += *count as u64;
                None
            }
            Msg::Ready { .. } | Msg::SetupFailed { .. } => None,
        }
    }

    /// At the end: the children that never reported (killed at shutdown), one line each.
    pub fn finish(&mut self) -> Vec<String> {
        let mut left: Vec<((usize, u64), Pending)> = self.pending.drain().collect();
        left.sort_by_key(|(key, _)| *key);
        left.into_iter()
            .map(|((w, _), p)| {
                self.counts(w).killed += 1;
                self.event_line(
                    w,
                    p.mask,
                    &format!("child {}: killed at shutdown before accept4", p.pid),
                )
            })
            .collect()
    }

    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for c in &self.per_waiter {
            t.add(c);
        }
        t
    }

    /// Forked children that their waiters have not reaped yet (as far as reports tell).
    pub fn live_children(&self) -> u64 {
        self.totals().forks.saturating_sub(self.reaped)
    }

    /// Forked children that have not reported an accept4 result yet.
    pub fn unresolved(&self) -> usize {
        self.pending.len()
    }

    pub fn accepted(&self) -> u64 {
        self.per_waiter.iter().map(|c| c.accepted).sum()
    }
}

/// One waiter in the JSON summary.
#[derive(Clone, Debug, Serialize)]
pub struct WaiterSummary {
    pub waiter: String,
    pub pid: i32,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The final report; `--json` prints it as one object.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub family: Family,
    pub address: String,
    pub mode: &'static str,
    pub waiters: usize,
    pub exclusive: bool,
    pub reuseport: bool,
    pub max_children: usize,
    pub sleep_ms: u64,
    /// Why the run ended: "3 connections accepted", "got SIGTERM", "--duration 0.3s elapsed"...
    pub stopped_by: String,
    /// Clients connected by --self-connect.
    pub connected: u64,
    #[serde(flatten)]
    pub totals: Counts,
    /// Connections still queued on the listener(s) after all children were gone.
    pub unaccepted: u64,
    pub per_waiter: Vec<WaiterSummary>,
}

impl Summary {
    /// The human-readable ending: the summary line, then one line per waiter.
    pub fn render_text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "summary: {} events, {} forks, {} accepted, {} wasted, {} left unaccepted",
            t.events, t.forks, t.accepted, t.wasted, self.unaccepted
        );
        // Rare outcomes only when they happened, so the usual line stays short and stable.
        for (n, what) in [
            (t.killed, "killed before accept4"),
            (t.fork_failures, "fork failures"),
            (t.accept_errors, "accept4 errors"),
        ] {
            if n > 0 {
                let _ = write!(out, ", {n} {what}");
            }
        }
        out.push('\n');
        for w in &self.per_waiter {
            let c = &w.counts;
            let _ = write!(
                out,
                "  {} (pid {}): {} events, {} accepted, {} wasted",
                w.waiter, w.pid, c.events, c.accepted, c.wasted
            );
            if c.paused > 0 {
                let _ = write!(out, ", paused {} times at --max-children", c.paused);
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_channel() {
        let msgs = [
            Msg::Ready { w: 1, pid: 42 },
            Msg::SetupFailed {
                w: 2,
                why: "epoll_ctl: EINVAL".into(),
            },
            Msg::Forked {
                w: 3,
                k: 7,
                pid: 99,
                mask: libc::EPOLLIN as u32,
            },
            Msg::ForkFailed {
                w: 1,
                k: 2,
                mask: 1,
                errno: "EAGAIN".into(),
            },
            Msg::Result {
                w: 1,
                k: 2,
                pid: 5,
                mask: 1,
                outcome: Outcome::Failed("EMFILE".into()),
            },
            Msg::Paused { w: 4, children: 8 },
            Msg::Reaped { w: 2, count: 3 },
        ];
        let (tx, mut rx) = epollscope::channel::pair::<Msg, ()>().unwrap();
        for m in &msgs {
            tx.send(m).unwrap();
        }
        drop(tx);
        for m in msgs {
            assert_eq!(rx.recv().unwrap(), Some(m));
        }
        assert_eq!(rx.recv().unwrap(), None);
    }

    #[test]
    fn results_before_forks_and_unreported_children() {
        let mut t = Tally::new(2);
        let res = |k, outcome| Msg::Result {
            w: 2,
            k,
            pid: 10 + k as i32,
            mask: 1,
            outcome,
        };
        let fork = |k| Msg::Forked {
            w: 2,
            k,
            pid: 10 + k as i32,
            mask: 1,
        };
        assert_eq!(
            t.record(&res(1, Outcome::Accepted)).unwrap(),
            "event 1 [w2] EPOLLIN -> child 11: accepted"
        );
        assert_eq!(t.record(&fork(1)), None);
        t.record(&fork(2));
        assert_eq!(
            t.record(&res(2, Outcome::Wasted)).unwrap(),
            "event 2 [w2] EPOLLIN -> child 12: EAGAIN (wasted fork)"
        );
        t.record(&fork(3));
        assert_eq!(
            t.finish(),
            ["event 3 [w2] EPOLLIN -> child 13: killed at shutdown before accept4"]
        );
        let c = t.totals();
        assert_eq!(
            (c.events, c.forks, c.accepted, c.wasted, c.killed),
            (3, 3, 1, 1, 1)
        );
        assert_eq!(t.per_waiter[0], Counts::default());
    }
}

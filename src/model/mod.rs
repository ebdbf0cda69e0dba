//! An executable model of what the man pages promise for the calls of the scenario language.
//!
//! Run over a scenario (and the results one run observed), it says for every checked step
//! which results the documentation allows and labels the observed one **promised** (the only
//! documented outcome), **allowed** (one of several), **unspecified** (the documentation is
//! silent, or the model lost track of what the call touches) or **contradicts** (excluded by
//! the documentation). Each judgement cites a rule from [`rules`].
//!
//! Where the documentation allows several outcomes, the model follows the one observed, so it
//! stays exact for the next step. Where it cannot follow something (a timer's expirations, a
//! signal's default action, a call through an fd number another fd may have taken), only the
//! files involved become unknown (`World::lose`), never the rest of the scenario. It depends
//! only on the scenario's typed AST and the per-step results, never on the runner.
//!
//! Where things are: sockets and epoll in `calls` (judging), `ctl` (epoll_ctl) and `apply`
//! (state changes); pipes, socketpairs, eventfds, timerfds, opened files, sendto/recvfrom,
//! kill and thread in `fdcalls`, their state and readiness in `files`; poll in `poll`;
//! background calls (blocked waiters, EINTR) in `waiters`.
//!
//! Adding a call: one arm in `calls::judge` or `fdcalls::judge` (what it returns) and in
//! `apply` or `fdcalls::apply` (how the state changes), its rules in [`rules`], readiness in
//! `files` if it makes a new file type, and an example step in `tests_calls::EXAMPLES`
//! (a test fails for a call of the language without one).

mod apply;
mod calls;
mod ctl;
mod epoll;
mod fdcalls;
mod files;
mod poll;
pub mod rules;
mod verdict;
mod waiters;
mod world;

use std::collections::{HashMap, VecDeque};

use crate::addr::Family;
use crate::scenario::ast::{Aggregate, Expect, Scenario, Stmt};
use crate::scenario::{AggregateValue, StepResult};
pub use verdict::{Allowed, Judgement, Label, Res};
use world::{ObjId, World};

/// A deliberately wrong rule, planted by tests to show the fuzzer finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// Textbook EPOLLET: a listener already readable never reports a second connection.
    TextbookEt,
}

/// A background call, waiting.
#[derive(Clone, Debug)]
struct Waiter {
    actor: String,
    kind: WaitKind,
    span: crate::scenario::Span,
    /// Whether what it waits for has been ready at some point since it started.
    ever: world::Tri,
    /// A caught signal (kill) reached it while it waited.
    interrupted: bool,
    /// Arrivals on the files it watches, counted at its start (see [`World::arrivals`]).
    arrivals_at_start: u64,
    /// Whether what it waits for was ready when it started (it may have returned at once).
    ready_at_start: world::Tri,
}

impl Waiter {
    /// Whether it may have returned before an arrival on what it watches: then that arrival
    /// is not in its result, and its result is not the state at its collection. One arrival
    /// after a start that found nothing ready is the one that woke it.
    fn late(&self, w: &World) -> bool {
        let arrivals = match self.kind {
            WaitKind::Epoll { ep, .. } => w.arrivals(ep).saturating_sub(self.arrivals_at_start),
            _ => return true,
        };
        arrivals >= 2 || (arrivals == 1 && self.ready_at_start != world::Tri::No)
    }
}

#[derive(Clone, Debug)]
enum WaitKind {
    Accept {
        listener: ObjId,
        name: Option<String>,
    },
    Epoll {
        ep: ObjId,
        max: i64,
        /// With a timeout: it may return 0, and when it returned the model does not know.
        timed: bool,
    },
    /// poll or ppoll with no timeout, on its array.
    Poll {
        fds: Vec<(crate::scenario::ast::FdArg, u32)>,
    },
    /// A blocking read (or recvfrom) of a file the model follows.
    Read { obj: ObjId },
    /// A call the model does not follow in the background.
    Other,
}

/// The model's state over one scenario instance.
#[derive(Clone)]
pub struct Model {
    w: World,
    family: Family,
    waiters: Vec<Waiter>,
    /// Connections handed to blocked accepts, per listener, not yet collected.
    handed: HashMap<ObjId, VecDeque<ObjId>>,
    /// What the documentation allowed for each captured value.
    captures: HashMap<String, bool>,
    plant: Option<Plant>,
    /// The scenario made a call the model does not know (none of the call table: a test
    /// holds every call to a rule): what it created and changed would be invisible here, so
    /// from then on the model could exclude no result and never says "contradicts".
    opaque: bool,
    /// Judge a run under the Fastsocket fast path: the documentation plus Fastsocket's own
    /// (rule `fastsocket-spawn`).
    fastpath: bool,
}

/// The model's word on a whole run.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub judgements: Vec<Judgement>,
    /// Steps the run did not reach (it failed first).
    pub unreached: usize,
    /// Background calls still blocked where the run's record ends: (script line, whether the
    /// documentation promises that something woke them by then).
    pub blocked: Vec<(usize, bool)>,
    /// The foreground step the record ends before (a run that failed there, e.g. a call that
    /// never returned): its script line, and whether the documentation determines its result.
    pub stalled: Option<(usize, bool)>,
}

impl Explanation {
    pub fn contradictions(&self) -> impl Iterator<Item = &Judgement> {
        self.judgements
            .iter()
            .filter(|j| j.label == Label::Contradicts)
    }
}

impl Model {
    pub fn new(family: Family) -> Model {
        let mut w = World::default();
        w.actors.insert("main".into(), Default::default());
        Model {
            w,
            family,
            waiters: vec![],
            handed: HashMap::new(),
            captures: HashMap::new(),
            plant: None,
            opaque: false,
            fastpath: false,
        }
    }

    /// The model of a run under the Fastsocket fast path (`--under fastsocket`).
    pub fn under_fastsocket(family: Family) -> Model {
        Model {
            fastpath: true,
            ..Model::new(family)
        }
    }

    /// The same model with a wrong rule planted (for tests of the fuzzer).
    pub fn planted(family: Family, plant: Plant) -> Model {
        Model {
            plant: Some(plant),
            ..Model::new(family)
        }
    }
}

/// Explains one run of `scenario` for `family`: `steps` and `aggregates` as the runner
/// recorded them.
pub fn explain(
    scenario: &Scenario,
    family: Family,
    steps: &[StepResult],
    aggregates: &[AggregateValue],
) -> Explanation {
    explain_with(Model::new(family), scenario, steps, aggregates)
}

/// [`explain`] with a given model (a planted one, in tests).
pub fn explain_with(
    mut m: Model,
    scenario: &Scenario,
    steps: &[StepResult],
    aggregates: &[AggregateValue],
) -> Explanation {
    walk(&mut m, scenario, steps, aggregates)
}

/// [`explain_with`] on a model the caller keeps (tests look at its state afterwards).
fn walk(
    m: &mut Model,
    scenario: &Scenario,
    steps: &[StepResult],
    aggregates: &[AggregateValue],
) -> Explanation {
    let mut results = steps.iter();
    let mut stalled = None;
    let mut aggs = aggregates.iter();
    let mut out = vec![];
    let mut reached = 0;
    let total = scenario.body.len();
    'body: for stmt in &scenario.body {
        match stmt {
            Stmt::Step(step) => {
                if let Some(i) = m.waiting(&step.actor) {
                    let Some(got) = results.next().filter(|g| m.collects(i, g)) else {
                        break;
                    };
                    out.push(m.collect(i, scenario, got));
                }
                if step.background {
                    m.start(step);
                } else if step.op.name() == "exit" {
                    m.exit(&step.actor);
                } else {
                    let Some(got) = results.next() else {
                        stalled = Some((step.span.line, m.determined(step)));
                        break;
                    };
                    if got.span != step.span || got.actor != step.actor {
                        break;
                    }
                    let j = calls::judge(m, step, got);
                    if let (Some(Expect::Capture(var)), Some(j)) = (&step.expect, &j) {
                        m.captures.insert(var.clone(), j.label == Label::Promised);
                    }
                    out.extend(j);
                    m.after_step();
                }
            }
            Stmt::Await { actors, .. } => {
                for actor in actors {
                    let Some(i) = m.waiting(actor) else {
                        break 'body;
                    };
                    let Some(got) = results.next().filter(|g| m.collects(i, g)) else {
                        break 'body;
                    };
                    out.push(m.collect(i, scenario, got));
                }
            }
            Stmt::Expect {
                aggregate,
                expect,
                span,
            } => {
                if let Aggregate::Elapsed(_) = aggregate {
                    // A duration is measured, not a result: the runner checks its lower bound
                    // and records no value to compare, so the model only says it has no rule.
                    let mut j = m.aggregate(aggregate, expect, *span, 0);
                    j.observed = format!("[{}]", expect.text());
                    j.actual = "a duration (checked by the runner)".into();
                    out.push(j);
                } else {
                    let Some(value) = aggs.next() else { break };
                    out.push(m.aggregate(aggregate, expect, *span, value.value));
                }
            }
        }
        reached += 1;
    }
    if m.opaque {
        for j in out.iter_mut().filter(|j| j.label == Label::Contradicts) {
            j.label = Label::Unspecified;
            j.rule = &rules::NOT_MODELLED;
            j.note = Some("the scenario uses calls the model does not know".into());
        }
    }
    let blocked = m
        .waiters
        .iter()
        .map(|w| (w.span.line, m.wake_promised(w)))
        .collect();
    Explanation {
        judgements: out,
        unreached: total - reached,
        blocked,
        stalled,
    }
}

impl Model {
    /// Whether `got` is background call `i`'s result (a run that failed may have recorded
    /// none: a call that never returned).
    fn collects(&self, i: usize, got: &StepResult) -> bool {
        let w = &self.waiters[i];
        got.span == w.span && got.actor == w.actor
    }

    /// Whether the documentation determines what foreground `step` returns here (judged on
    /// a copy of the model, with a stand-in result).
    fn determined(&self, step: &crate::scenario::ast::Step) -> bool {
        let mut probe = self.clone();
        let stand_in = StepResult {
            span: step.span,
            actor: step.actor.clone(),
            result: Err(nix::errno::Errno::EINTR),
            events: vec![],
        };
        calls::judge(&mut probe, step, &stand_in).is_some_and(|j| j.allowed != Allowed::Unspecified)
    }

    /// Whether waiter `w` is certainly woken by what happened so far: what it waits for was
    /// certainly ready at some point (an accept: a connection was handed to it alone).
    fn wake_promised(&self, w: &Waiter) -> bool {
        match &w.kind {
            WaitKind::Accept { listener, .. } => {
                let peers = self
                    .waiters
                    .iter()
                    .filter(|o| matches!(o.kind, WaitKind::Accept { listener: l, .. } if l == *listener))
                    .count();
                peers == 1 && self.handed.get(listener).is_some_and(|q| !q.is_empty())
            }
            WaitKind::Other => false,
            _ => w.ever == world::Tri::Yes,
        }
    }
}

impl Model {
    fn waiting(&self, actor: &str) -> Option<usize> {
        self.waiters.iter().position(|w| w.actor == actor)
    }

    fn exit(&mut self, actor: &str) {
        // exit(3) ends the whole process, every thread of it.
        let table = self.w.table(actor).to_string();
        let fds: Vec<ObjId> = self
            .w
            .actors
            .get_mut(&table)
            .map(|a| {
                a.exited = true;
                a.fds
                    .values_mut()
                    .filter(|f| f.open)
                    .map(|f| {
                        f.open = false;
                        f.obj
                    })
                    .collect()
            })
            .unwrap_or_default();
        for obj in fds {
            self.w.release(obj);
        }
        self.after_step();
    }
}

/// The explanation of one run as text: one line per checked step (its script line, what it
/// returned, the label and the rule), then the steps the run did not reach.
pub fn render(scenario: &Scenario, report: &crate::scenario::ScenarioReport) -> String {
    render_with(Model::new(report.family), scenario, report)
}

/// [`render`] with a given model (the fast path's, for a run under it).
pub fn render_with(
    model: Model,
    scenario: &Scenario,
    report: &crate::scenario::ScenarioReport,
) -> String {
    use std::fmt::Write as _;
    let ex = explain_with(model, scenario, &report.steps, &report.aggregates);
    let mut out = String::new();
    for j in &ex.judgements {
        let line = scenario.line(crate::scenario::Span {
            line: j.line,
            col: j.col,
        });
        let _ = writeln!(
            out,
            "{:>3}: {line}\n     -> {} {}",
            j.line,
            j.observed,
            j.explain()
        );
    }
    if ex.unreached > 0 {
        let _ = writeln!(
            out,
            "({} statements not reached: the run failed)",
            ex.unreached
        );
    }
    let n = ex.contradictions().count();
    if n > 0 {
        let _ = writeln!(
            out,
            "!!! {n} result(s) CONTRADICT the documentation: a kernel or documentation bug"
        );
    }
    out
}
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_calls;
#[cfg(test)]
mod tests_fastsocket;
#[cfg(test)]
mod tests_fds;
#[cfg(test)]
mod tests_late;

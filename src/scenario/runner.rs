//! Runs one family instance of a scenario: forks the actors, sends each step to its actor in
//! script order, checks the outcome, and always tears down (kill, reap, remove socket files).
//!
//! Blocking calls run in the background are confirmed blocked by reading the actor's
//! `/proc/PID/stat` (state S or D) and `/proc/PID/syscall` (the expected syscall number): a
//! condition, never a sleep. That is what makes "four workers block, one connect, how many
//! wake" deterministic.
//!
//! The parts: `lifecycle` (starting the main actor, an actor's exit, teardown), `step` (one
//! step sent, received, checked and recorded), `background` (calls left running, and the
//! aggregates over them), `active` (every run in progress, for a stop signal).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::ast::{Scenario, Span, Step, Stmt};
use super::protocol::RunnerEnd;
use super::report::{AggregateValue, Failure, ScenarioReport};
use crate::addr::{Family, SockAddr};
use crate::trace::{Call, Event, Ret, Stability};
use active::active;

mod active;
mod background;
mod lifecycle;
mod step;

pub use active::{abort_all, aborted};

/// How many consecutive polls must see a background call blocked before it counts as asleep.
const BLOCKED_CONFIRMATIONS: u32 = 3;

/// How the actors are started.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Exec this program (with the argument `__actor`) as the main actor instead of only
    /// forking: needed for anything that acts at exec time, such as an LD_PRELOAD shim. The
    /// program must call [`crate::scenario::actor_main`] for that argument.
    pub actor_exe: Option<PathBuf>,
    /// Environment added for the exec'd actor (e.g. `LD_PRELOAD`).
    pub env: Vec<(String, String)>,
    /// Capture every IP run's loopback traffic (not only scenarios that say `capture`) and
    /// write it to `DIR/<scenario>-<family>.pcap`.
    pub capture_dir: Option<PathBuf>,
}

/// Runs `scenario` once for `family`, with actors forked from this process.
pub fn run(scenario: &Scenario, family: Family) -> ScenarioReport {
    run_with(scenario, family, &RunOptions::default())
}

/// Runs `scenario` once for `family`, starting actors as `options` says.
pub fn run_with(scenario: &Scenario, family: Family, options: &RunOptions) -> ScenarioReport {
    let started = Instant::now();
    let mut run = Run::new(scenario, family, options);
    let wanted = scenario.capture || options.capture_dir.is_some();
    let recorder = match (wanted, family) {
        (false, _) => None,
        (true, Family::Unix) => Some(Err(
            "not captured: unix sockets put nothing on the wire".to_string()
        )),
        (true, _) => Some(super::capture::Recorder::start()),
    };
    let failure = run.start().and_then(|()| run.body()).err();
    run.collect_leftovers();
    run.teardown();
    let capture = recorder.map(|r| match r {
        Ok(recorder) => {
            let ports: Vec<u16> = run
                .addrs
                .values()
                .filter_map(SockAddr::port)
                .filter(|&p| p != 0)
                .collect();
            let path = options
                .capture_dir
                .as_ref()
                .map(|dir| dir.join(format!("{}-{family}.pcap", scenario.name())));
            recorder.finish(&ports, path.as_deref())
        }
        Err(why) => super::capture::CaptureReport::not_captured(&why),
    });
    ScenarioReport {
        name: scenario.name(),
        path: scenario.path.clone(),
        family,
        passed: failure.is_none(),
        skipped: None,
        failure,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        trace: run.trace,
        aggregates: run.aggregates,
        steps: run.steps,
        accept_cpus: run.accept_cpus,
        capture,
    }
}

struct Pending {
    step: Step,
    /// Consecutive polls that saw the call blocked.
    confirmations: u32,
}

struct Actor {
    name: String,
    pid: Pid,
    chan: RunnerEnd,
    /// The thread (task) that makes its calls: `pid` itself for a process.
    tid: Pid,
    /// Its process's table of script names of fds → numbers, in [`Run::tables`]: the
    /// threads of a process share it, as they share the fd table.
    table: usize,
    pending: Option<Pending>,
    /// Whether its latest background call has returned (for `woken`).
    background_done: Option<bool>,
    /// How long its latest finished call took, in microseconds (for `elapsed`).
    last_dur_us: Option<u64>,
    exited: bool,
}

struct Run<'a> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    family: Family,
    actors: Vec<Actor>,
    /// Per process: script names of fds → numbers.
    tables: Vec<HashMap<String, i32>>,
    addrs: HashMap<String, SockAddr>,
    dir: PathBuf,
    trace: Vec<Event>,
    aggregates: Vec<AggregateValue>,
    steps: Vec<super::report::StepResult>,
    accept_cpus: Vec<(String, i32, i32)>,
    captures: HashMap<String, i64>,
    deadline: Instant,
    /// This run's key in [`active::ACTIVE`].
    instance: usize,
}

/// A step that failed, with the line it came from.
fn fail(scenario: &Scenario, span: Span, message: String, actual: Option<String>) -> Failure {
    Failure {
        line: span.line,
        col: span.col,
        script: scenario.line(span).to_string(),
        actual,
        message,
    }
}

impl<'a> Run<'a> {
    fn new(scenario: &'a Scenario, family: Family, options: &'a RunOptions) -> Run<'a> {
        static INSTANCE: AtomicUsize = AtomicUsize::new(0);
        let instance = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("epollscope-{}-{instance}", std::process::id(),));
        Run {
            scenario,
            options,
            family,
            actors: vec![],
            tables: vec![],
            addrs: HashMap::new(),
            dir,
            trace: vec![],
            aggregates: vec![],
            steps: vec![],
            accept_cpus: vec![],
            captures: HashMap::new(),
            deadline: Instant::now() + scenario.timeout,
            instance,
        }
    }

    /// Adds an actor: a thread `tid` of process `pid` whose names are in table `table`; its
    /// pid is registered for [`abort_all`].
    fn add_actor(&mut self, name: String, (pid, tid): (Pid, Pid), chan: RunnerEnd, table: usize) {
        if let Some((pids, _)) = active().get_mut(&self.instance) {
            pids.push(pid);
        }
        self.actors.push(Actor {
            name,
            pid,
            tid,
            chan,
            table,
            pending: None,
            background_done: None,
            last_dur_us: None,
            exited: false,
        });
    }

    fn body(&mut self) -> Result<(), Failure> {
        let scenario = self.scenario;
        for stmt in &scenario.body {
            if Instant::now() > self.deadline {
                let span = stmt_span(stmt);
                return Err(fail(
                    scenario,
                    span,
                    format!("scenario timed out after {:?}", scenario.timeout),
                    None,
                ));
            }
            match stmt {
                Stmt::Step(step) => self.step(step)?,
                Stmt::Await { actors, span } => {
                    for name in actors {
                        let idx = self.actor_index(name, *span)?;
                        if self.actors[idx].pending.is_none() {
                            return Err(fail(
                                scenario,
                                *span,
                                format!("await({name}): {name} has no call in the background"),
                                None,
                            ));
                        }
                        self.collect(idx, Stability::Stable)?;
                    }
                }
                Stmt::Expect {
                    aggregate,
                    expect,
                    span,
                } => self.aggregate(aggregate, expect, *span)?,
            }
        }
        Ok(())
    }

    fn actor_index(&self, name: &str, span: Span) -> Result<usize, Failure> {
        let idx = self
            .actors
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| {
                fail(
                    self.scenario,
                    span,
                    format!("process {name} was never forked (its fork failed)"),
                    None,
                )
            })?;
        if self.actors[idx].exited {
            return Err(fail(
                self.scenario,
                span,
                format!("process {name} has exited"),
                None,
            ));
        }
        Ok(idx)
    }
}

fn note(text: &str) -> Event {
    Event {
        actor: "runner".into(),
        pid: std::process::id() as i32,
        time_us: 0,
        dur_us: 0,
        call: Call::Note { text: text.into() },
        ret: Ret::value(0),
        resumed: false,
        slept: false,
        stability: Stability::Stable,
    }
}

fn stmt_span(stmt: &Stmt) -> Span {
    match stmt {
        Stmt::Step(s) => s.span,
        Stmt::Await { span, .. } | Stmt::Expect { span, .. } => *span,
    }
}

fn readable(fd: &impl AsFd, timeout: Duration) -> bool {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut pfd = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut pfd, ms), Ok(n) if n > 0)
}

//! Runs one family instance of a scenario: forks the actors, sends each step to its actor in
//! script order, checks the outcome, and always tears down (kill, reap, remove socket files).
//!
//! Blocking calls run in the background are confirmed blocked by reading the actor's
//! `/proc/PID/stat` (state S or D) and `/proc/PID/syscall` (the expected syscall number): a
//! condition, never a sleep. That is what makes "four workers block, one connect, how many
//! wake" deterministic.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::actor;
use super::ast::{Arg, Expect, Returns, Scenario, Span, Step, Stmt, TaskRef};
use super::calls::Action;
use super::expect::check_step;
use super::protocol::{Command, Outcome, Reply, RunnerEnd};
use super::report::{AggregateValue, Failure, ScenarioReport};
use super::resolve::Resolved;
use crate::addr::{Family, SockAddr};
use crate::channel;
use crate::sys::process::{self, ForkResult};
use crate::sys::procfs;
use crate::trace::{Call, Event, Ret, Stability};

mod background;

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

/// Every run in progress in this process: its actors and its directory, so that a stop
/// signal can end them all ([`abort_all`]).
static ACTIVE: Mutex<BTreeMap<usize, (Vec<Pid>, PathBuf)>> = Mutex::new(BTreeMap::new());

fn active() -> std::sync::MutexGuard<'static, BTreeMap<usize, (Vec<Pid>, PathBuf)>> {
    // A panicking run thread must not stop the others' bookkeeping.
    ACTIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set by [`abort_all`]: no run starts any more.
static ABORTED: AtomicBool = AtomicBool::new(false);

/// Kills the actors of every run in progress and removes their directories, and lets no new
/// run start: for a program stopped by SIGINT or SIGTERM, which then exits without waiting
/// for the runs (they fail as their actors die; see [`aborted`]).
pub fn abort_all() {
    let active = active();
    ABORTED.store(true, Ordering::SeqCst);
    for (pids, dir) in active.values() {
        kill_and_wait(pids);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether [`abort_all`] was called: the runs that ended since failed because of it, and
/// their reports must not be taken for verdicts.
pub fn aborted() -> bool {
    ABORTED.load(Ordering::SeqCst)
}

/// SIGKILLs `pids` and waits (bounded) until each is gone or a zombie: a process that was in
/// the middle of a bind may still create its socket file until then.
fn kill_and_wait(pids: &[Pid]) {
    for &pid in pids {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&pid| !procfs::exited(pid)) && Instant::now() < deadline {
        std::thread::yield_now();
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
    /// This run's key in [`ACTIVE`].
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

    /// Adds an actor, and registers its pid for [`abort_all`].
    /// Adds an actor: a thread `tid` of process `pid` whose names are in table `table`.
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

    fn start(&mut self) -> Result<(), Failure> {
        let top = Span { line: 1, col: 1 };
        let setup = |what: &str, e: &dyn std::fmt::Display| {
            fail(
                self.scenario,
                top,
                format!("setting up the scenario: {what}: {e}"),
                None,
            )
        };
        {
            // Under the lock abort_all takes, so that a stop never misses a new directory.
            let mut active = active();
            if aborted() {
                return Err(setup("starting", &"the run was stopped"));
            }
            // create_dir, not create_dir_all: the directory is this run's own, made here.
            std::fs::create_dir(&self.dir).map_err(|e| setup("temporary directory", &e))?;
            active.insert(self.instance, (vec![], self.dir.clone()));
        }
        let (ours, theirs) =
            channel::pair::<Command, Reply>().map_err(|e| setup("socketpair", &e))?;
        // Everything exec needs is prepared before fork: the child only makes syscalls.
        let exec = match &self.options.actor_exe {
            Some(exe) => Some(
                actor::ExecPlan::new(exe, &exec_env(&self.options.env))
                    .map_err(|e| setup("preparing the actor program", &e))?,
            ),
            None => None,
        };
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let runner = nix::unistd::getpid();
        match process::fork().map_err(|e| setup("fork", &e))? {
            ForkResult::Child => {
                drop(ours);
                // If the runner dies, so do its actors (the signal survives exec); the
                // actors fork theirs with the same request, so the whole tree goes.
                if !matches!(process::die_with_parent(Signal::SIGKILL, runner), Ok(true)) {
                    std::process::exit(0);
                }
                crate::sys::signal::reset_for_child(crate::sys::signal::STOP);
                match exec {
                    Some(plan) => plan.exec(theirs.into_fd()),
                    None => actor::become_actor("main", theirs),
                }
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                self.tables.push(HashMap::new());
                self.add_actor("main".into(), (child, child), ours, 0);
                self.wait_ready()
            }
        }
    }

    /// Waits for the main actor's first message: it is serving, or it died starting (an exec
    /// that failed), told apart by the message rather than by when a later send notices.
    fn wait_ready(&mut self) -> Result<(), Failure> {
        let top = Span { line: 1, col: 1 };
        let deadline = (Instant::now() + self.scenario.step_timeout).min(self.deadline);
        loop {
            let chan = &self.actors[0].chan;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail(
                    self.scenario,
                    top,
                    format!(
                        "process main did not start within {:?}",
                        self.scenario.step_timeout
                    ),
                    None,
                ));
            }
            if readable(chan, left) {
                return match self.actors[0].chan.recv() {
                    Ok(Some(Reply::Ready)) => Ok(()),
                    Ok(Some(_)) => Err(fail(
                        self.scenario,
                        top,
                        "actor protocol error".into(),
                        None,
                    )),
                    _ => Err(fail(
                        self.scenario,
                        top,
                        "process main died before it could start serving \
                         (the actor program failed to start)"
                            .into(),
                        None,
                    )),
                };
            }
        }
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

    /// The step's call with names turned into this actor's fd numbers and addresses.
    fn resolve(&mut self, idx: usize, step: &Step) -> Result<Resolved, Failure> {
        let (family, dir, addrs) = (self.family, &self.dir, &mut self.addrs);
        // An address name gets its address on first use: a socket file in the run's own
        // directory, or loopback port 0 (replaced by the real port once bound).
        let addr = |name: &str| {
            addrs
                .entry(name.to_string())
                .or_insert_with(|| match family {
                    Family::Unix => SockAddr::unix(dir.join(format!("{name}.sock"))),
                    ip => SockAddr::ip(std::net::SocketAddr::new(ip.loopback().expect("IP"), 0)),
                })
                .clone()
        };
        let actors = &self.actors;
        // A process that has exited has no pid to signal: its name has no value any more.
        let task = |name: &str| {
            let actor = actors.iter().find(|a| a.name == name && !a.exited)?;
            Some(TaskRef {
                name: name.to_string(),
                tgid: actor.pid.as_raw(),
                tid: actor.tid.as_raw(),
            })
        };
        let names = &self.tables[actors[idx].table];
        super::resolve::resolve(&step.op, names, family, addr, task)
            .map_err(|why| fail(self.scenario, step.span, why.to_string(), None))
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        let idx = self.actor_index(&step.actor, step.span)?;
        if self.actors[idx].pending.is_some() {
            // A new call by a busy actor waits for its background call, as a real process would.
            self.collect(idx, Stability::Stable)?;
        }
        let Resolved { op, aliases } = self.resolve(idx, step)?;
        let name = match &step.expect {
            Some(Expect::Bind(n)) => n.clone(),
            _ => String::new(),
        };
        let exit = matches!(op.call.spec().action, Action::Exit);
        let command = Command {
            op,
            name,
            background: step.background,
            aliases,
        };
        self.actors[idx].chan.send(&command).map_err(|e| {
            fail(
                self.scenario,
                step.span,
                format!("process {} is gone: {e}", step.actor),
                None,
            )
        })?;
        if exit {
            return self.wait_exit(idx, step);
        }
        if step.background {
            match self.receive(idx, step)? {
                (Reply::Started(event), _) => self.trace.push(event),
                (Reply::Done { .. } | Reply::Ready, _) => {
                    return Err(fail(
                        self.scenario,
                        step.span,
                        "actor protocol error".into(),
                        None,
                    ));
                }
            }
            self.actors[idx].pending = Some(Pending {
                step: step.clone(),
                confirmations: 0,
            });
            self.actors[idx].background_done = Some(false);
            return self.wait_blocked(&[idx], step.span);
        }
        let (reply, fd) = self.receive(idx, step)?;
        self.finish(idx, step, reply, fd, false, Stability::Stable)
    }

    /// Waits for a message from actor `idx` within the step timeout.
    fn receive(&mut self, idx: usize, step: &Step) -> Result<(Reply, Option<OwnedFd>), Failure> {
        let deadline = (Instant::now() + self.scenario.step_timeout).min(self.deadline);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.hung(idx, step));
            }
            if readable(&self.actors[idx].chan, left) {
                return match self.actors[idx].chan.recv_with_fd() {
                    Ok(Some((reply, fd))) => Ok((reply, fd)),
                    _ => Err(fail(
                        self.scenario,
                        step.span,
                        format!("process {} died during this step", self.actors[idx].name),
                        None,
                    )),
                };
            }
        }
    }

    fn hung(&self, idx: usize, step: &Step) -> Failure {
        let actor = &self.actors[idx];
        let state =
            procfs::task_state(actor.pid, actor.tid).map_or_else(|| "gone".into(), String::from);
        fail(
            self.scenario,
            step.span,
            format!(
                "step hung: process {} (pid {}) did not return within {:?} (state: {state})",
                actor.name, actor.pid, self.scenario.step_timeout
            ),
            None,
        )
    }

    /// Records a finished call: its events, the check of its expectation, the names it binds.
    fn finish(
        &mut self,
        idx: usize,
        step: &Step,
        reply: Reply,
        fd: Option<OwnedFd>,
        resumed: bool,
        stability: Stability,
    ) -> Result<(), Failure> {
        let Reply::Done { events, outcome } = reply else {
            return Err(fail(
                self.scenario,
                step.span,
                "actor protocol error".into(),
                None,
            ));
        };
        let stability = match (&stability, &step.expect) {
            (Stability::Stable, Some(e)) if !e.is_exact() => Stability::Pattern(e.text()),
            _ => stability,
        };
        if let Some(call) = events
            .iter()
            .rev()
            .find(|e| !matches!(e.call, Call::Note { .. }))
        {
            self.actors[idx].last_dur_us = Some(call.dur_us);
        }
        for mut event in events {
            event.resumed = resumed;
            event.stability = stability.clone();
            self.trace.push(event);
        }
        let actual = self
            .trace
            .last()
            .map(|e| e.render(crate::trace::Format::SYMBOLIC.with_actors(true)));
        self.steps.push(super::report::StepResult {
            span: step.span,
            actor: step.actor.clone(),
            result: outcome.result,
            events: outcome.events.clone(),
        });
        if let Some((incoming, cpu)) = outcome.accept_cpus {
            self.accept_cpus.push((step.actor.clone(), incoming, cpu));
        }
        let names = &self.tables[self.actors[idx].table];
        if let Err(why) = check_step(step, &outcome, names) {
            return Err(fail(self.scenario, step.span, why, actual));
        }
        self.bind(idx, step, &outcome, fd);
        Ok(())
    }

    fn bind(&mut self, idx: usize, step: &Step, outcome: &Outcome, fd: Option<OwnedFd>) {
        let Ok(value) = outcome.result else { return };
        if let Some(bound) = &outcome.bound {
            for arg in &step.op.args {
                if let Arg::Addr(name) = arg {
                    self.addrs.insert(name.clone(), bound.clone());
                }
            }
        }
        let table = self.actors[idx].table;
        for arg in &step.op.args {
            if let Arg::NewFds(names) = arg {
                for (name, &fd) in names.iter().zip(&outcome.fds) {
                    self.tables[table].insert(name.clone(), fd);
                }
            }
        }
        // Values bound to names are fds and pids the kernel returned: they fit an i32.
        let number = i32::try_from(value).unwrap_or(-1);
        match (&step.expect, step.op.returns()) {
            (Some(Expect::Bind(child)), Returns::Actor) => {
                if let Some(chan) = fd {
                    // The child's fd table is a copy of its parent's.
                    self.tables.push(self.tables[table].clone());
                    let pid = Pid::from_raw(number);
                    let chan = channel::Channel::from_fd(chan);
                    self.add_actor(child.clone(), (pid, pid), chan, self.tables.len() - 1);
                }
            }
            (Some(Expect::Bind(thread)), Returns::Thread) => {
                if let Some(chan) = fd {
                    let ids = (self.actors[idx].pid, Pid::from_raw(number));
                    let chan = channel::Channel::from_fd(chan);
                    self.add_actor(thread.clone(), ids, chan, table);
                }
            }
            (Some(Expect::Bind(name)), _) => {
                self.tables[table].insert(name.clone(), number);
            }
            (Some(Expect::Capture(var)), _) => {
                self.captures.insert(var.clone(), value);
            }
            _ => {}
        }
    }

    /// After `exit()`: wait until the process is gone (a zombie or reaped) so that the fds it
    /// held are closed before the next step.
    fn wait_exit(&mut self, idx: usize, step: &Step) -> Result<(), Failure> {
        let deadline = Instant::now() + self.scenario.step_timeout;
        let pid = self.actors[idx].pid;
        while !procfs::exited(pid) {
            if Instant::now() > deadline {
                return Err(self.hung(idx, step));
            }
            // The channel reaches EOF as the process exits; until then re-check every ms.
            readable(&self.actors[idx].chan, Duration::from_millis(1));
        }
        // Every thread of the process is gone with it.
        for actor in &mut self.actors {
            if actor.pid == pid {
                actor.exited = true;
            }
        }
        let actor = &self.actors[idx];
        let mut event = note(&format!("{} exited", actor.name));
        event.actor = actor.name.clone();
        self.trace.push(event);
        Ok(())
    }

    fn teardown(&mut self) {
        let pids: Vec<Pid> = self.actors.iter().map(|a| a.pid).collect();
        kill_and_wait(&pids);
        if let Some(main) = self.actors.first() {
            let _ = process::reap(main.pid);
        }
        // The other actors were forked by actors, which never reap. Once their parents are
        // dead (kill_and_wait saw every actor exit, and the kernel re-parents children before
        // a parent turns zombie) they are ours if we are a subreaper, as `epollscope` is: reap
        // them now, by pid, or a long run (`--repeat`, fuzzing) piles up zombies until it
        // runs out of pids. Nobody else can reap them, so their pids cannot have been reused.
        if nix::sys::prctl::get_child_subreaper().unwrap_or(false) {
            for actor in self.actors.iter().skip(1) {
                let _ =
                    nix::sys::wait::waitpid(actor.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        active().remove(&self.instance);
    }
}

/// The environment of an exec'd main actor: the caller's, and after the first actor of this
/// process, the shim told not to announce its fast path again (once per run, not once per
/// scenario instance).
fn exec_env(env: &[(String, String)]) -> Vec<(String, String)> {
    static ANNOUNCED: AtomicBool = AtomicBool::new(false);
    let mut env = env.to_vec();
    if ANNOUNCED.swap(true, Ordering::SeqCst) {
        env.push((crate::shim::ENV_FASTPATH_QUIET.into(), "1".into()));
    }
    env
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

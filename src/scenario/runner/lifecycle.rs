//! The life of a run's processes: starting the main actor (forked, or exec'd with the
//! environment a shim needs) and waiting until it serves, an actor's `exit()`, and the
//! teardown that kills, reaps and removes everything the run made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::active::{aborted, active, kill_and_wait};
use super::{Run, fail, note, readable};
use crate::channel;
use crate::scenario::actor;
use crate::scenario::ast::{Span, Step};
use crate::scenario::protocol::{Command, Reply};
use crate::scenario::report::Failure;
use crate::sys::process::{self, ForkResult};
use crate::sys::procfs;

impl Run<'_> {
    pub(super) fn start(&mut self) -> Result<(), Failure> {
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
    pub(super) fn wait_ready(&mut self) -> Result<(), Failure> {
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

    /// After `exit()`: wait until the process is gone (a zombie or reaped) so that the fds it
    /// held are closed before the next step.
    pub(super) fn wait_exit(&mut self, idx: usize, step: &Step) -> Result<(), Failure> {
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

    pub(super) fn teardown(&mut self) {
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

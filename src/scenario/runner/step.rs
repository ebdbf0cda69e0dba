//! One step: its call resolved to this actor's fds and addresses, sent to the actor, its
//! reply received (or the actor found hung or dead), and the result checked and recorded,
//! with the names it binds.

use std::os::fd::OwnedFd;
use std::time::Instant;

use nix::unistd::Pid;

use super::{Pending, Run, fail, readable};
use crate::addr::{Family, SockAddr};
use crate::channel;
use crate::scenario::ast::{Arg, Expect, Returns, Step, TaskRef};
use crate::scenario::calls::Action;
use crate::scenario::expect::check_step;
use crate::scenario::protocol::{Command, Outcome, Reply};
use crate::scenario::report::Failure;
use crate::scenario::resolve::Resolved;
use crate::sys::procfs;
use crate::trace::{Call, Stability};

impl Run<'_> {
    /// The step's call with names turned into this actor's fd numbers and addresses.
    pub(super) fn resolve(&mut self, idx: usize, step: &Step) -> Result<Resolved, Failure> {
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
        crate::scenario::resolve::resolve(&step.op, names, family, addr, task)
            .map_err(|why| fail(self.scenario, step.span, why.to_string(), None))
    }

    pub(super) fn step(&mut self, step: &Step) -> Result<(), Failure> {
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
    pub(super) fn receive(
        &mut self,
        idx: usize,
        step: &Step,
    ) -> Result<(Reply, Option<OwnedFd>), Failure> {
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

    pub(super) fn hung(&self, idx: usize, step: &Step) -> Failure {
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
    pub(super) fn finish(
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
        self.steps.push(crate::scenario::report::StepResult {
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

    pub(super) fn bind(&mut self, idx: usize, step: &Step, outcome: &Outcome, fd: Option<OwnedFd>) {
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
}

//! An actor: one process of a scenario. It waits for commands from the runner, makes each call
//! through a [`Tracer`] as the call table says, and replies with the traced events and the
//! outcome.
//!
//! The channel ([`crate::channel`]) is parked on a high fd number, so the scenario's own fds
//! are numbered as in a fresh process. A `fork` makes a new channel for the child and hands
//! the runner its end along with the reply.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::calls::Action;
use super::protocol::{ActorEnd, Command, Outcome, Reply};
use crate::channel::{self, Channel};
use crate::sys::process::{self, ForkResult};
use crate::trace::{Event, Ret};
use crate::tracer::Tracer;

/// Where an actor keeps its channel: far above the fds a scenario creates.
const CHANNEL_FD_MIN: i32 = 900;

/// The fd on which an exec'd actor finds its channel.
pub const EXEC_CHANNEL_FD: i32 = 3;

/// An actor program to exec, prepared before fork (no allocation happens after it).
pub struct ExecPlan {
    exe: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
}

/// Why an actor program cannot be prepared: a path or variable with a NUL byte.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ExecPlanError(#[from] std::ffi::NulError);

impl ExecPlan {
    pub fn new(
        exe: &std::path::Path,
        extra_env: &[(String, String)],
    ) -> Result<ExecPlan, ExecPlanError> {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |b: &[u8]| std::ffi::CString::new(b);
        let mut envp = vec![];
        for (k, v) in std::env::vars_os() {
            if extra_env
                .iter()
                .any(|(ek, _)| ek.as_bytes() == k.as_bytes())
            {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstr(&kv)?);
        }
        for (k, v) in extra_env {
            envp.push(cstr(format!("{k}={v}").as_bytes())?);
        }
        Ok(ExecPlan {
            exe: cstr(exe.as_os_str().as_bytes())?,
            argv: vec![cstr(b"epollscope")?, cstr(b"__actor")?],
            envp,
        })
    }

    /// In the forked child: puts the channel on fd 3 and execs; exits 127 if exec fails.
    pub fn exec(self, chan: OwnedFd) -> ! {
        if process::place_for_exec(chan, EXEC_CHANNEL_FD).is_err() {
            std::process::exit(127);
        }
        process::exec(&self.exe, &self.argv, &self.envp);
        std::process::exit(127)
    }
}

/// The main of an exec'd actor (`epollscope __actor`): serve on the channel left on fd 3.
/// The parent-death signal set before exec survives it.
pub fn actor_main() -> ! {
    become_actor(
        "main",
        Channel::from_fd(process::take_inherited(EXEC_CHANNEL_FD)),
    )
}

/// Becomes an actor in a freshly forked (or exec'd) process: closes every fd but stdio and
/// the channel (so fd numbers start at 3 as in a new program) and serves commands until told
/// to exit.
pub fn become_actor(name: &str, chan: ActorEnd) -> ! {
    let chan = chan
        .park(CHANNEL_FD_MIN)
        .unwrap_or_else(|_| std::process::exit(120));
    let keep = u32::try_from(chan.as_raw_fd()).expect("a parked fd is positive");
    process::close_range(3, keep - 1);
    process::close_range(keep + 1, u32::MAX);
    // As servers do: a write to a reset connection fails with EPIPE instead of killing the
    // process, which is the behaviour scenarios want to show.
    crate::sys::signal::ignore_sigpipe();
    // A scenario's kill(w, SIGUSR1) interrupts w's blocked call, and does nothing else.
    if crate::sys::signal::interrupt_on_user_signals().is_err() {
        std::process::exit(121);
    }
    if chan.send(&Reply::Ready).is_err() {
        std::process::exit(0);
    }
    let mut tracer = Tracer::new(name);
    serve(&mut tracer, chan)
}

fn serve(tracer: &mut Tracer, mut chan: ActorEnd) -> ! {
    loop {
        let command: Command = match chan.recv() {
            Ok(Some(command)) => command,
            _ => std::process::exit(0),
        };
        for (addr, alias) in &command.aliases {
            tracer.set_alias(addr, alias);
        }
        let spec = command.op.call.spec();
        if command.background
            && let Some(blocking) = spec.blocking
        {
            let call = (blocking.unfinished)(tracer, &command.op);
            if chan
                .send(&Reply::Started(unfinished(tracer, call)))
                .is_err()
            {
                std::process::exit(0);
            }
        }
        let outcome = match spec.action {
            Action::Exit => std::process::exit(command.op.int(0)),
            Action::Fork => {
                chan = fork_actor(tracer, chan, &command.name);
                continue;
            }
            Action::Thread => {
                if start_thread(tracer, &chan, &command.name).is_err() {
                    std::process::exit(0);
                }
                continue;
            }
            Action::Call(run) => {
                let mut outcome = run(tracer, &command.name, &command.op);
                outcome.accept_cpus = accept_cpus(spec.name, &outcome);
                outcome
            }
        };
        let events = tracer.take_events();
        if chan.send(&Reply::Done { events, outcome }).is_err() {
            std::process::exit(0);
        }
    }
}

/// After a successful accept, where its connection was processed and accepted: measured
/// here, by the actor, so that native and shimmed runs are measured alike (the shim does not
/// trace the actors it only routes).
fn accept_cpus(call: &str, outcome: &Outcome) -> Option<(i32, i32)> {
    if !matches!(call, "accept" | "accept4") {
        return None;
    }
    let fd = i32::try_from(*outcome.result.as_ref().ok()?).ok()?;
    match crate::fastpath::locality::measure(fd) {
        (Some(incoming), Some(cpu)) => Some((incoming, cpu)),
        _ => None,
    }
}

/// Forks a new actor. Returns the channel this process goes on serving: its own in the
/// parent, the child's new one in the child.
fn fork_actor(tracer: &mut Tracer, chan: ActorEnd, child_name: &str) -> ActorEnd {
    let parent = nix::unistd::getpid();
    let failed = |chan: ActorEnd, tracer: &mut Tracer, errno: Errno| {
        let reply = Reply::Done {
            events: tracer.take_events(),
            outcome: Outcome::of(Err(errno)),
        };
        let _ = chan.send(&reply);
        chan
    };
    let (ours, theirs): (ActorEnd, Channel<Command, Reply>) = match channel::pair() {
        Ok(pair) => pair,
        Err(e) => return failed(chan, tracer, e),
    };
    match tracer.fork(child_name) {
        Ok(ForkResult::Child) => {
            drop(chan);
            drop(theirs);
            // Dies with the actor that forked it, and so with the runner: every process of
            // a run goes when the runner goes, even by SIGKILL.
            if !matches!(process::die_with_parent(Signal::SIGKILL, parent), Ok(true)) {
                std::process::exit(0);
            }
            ours.park(CHANNEL_FD_MIN)
                .unwrap_or_else(|_| std::process::exit(120))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ours);
            let reply = Reply::Done {
                events: tracer.take_events(),
                outcome: Outcome::of(Ok(i64::from(child.as_raw()))),
            };
            if chan.send_with_fd(&reply, theirs.as_fd()).is_err() {
                std::process::exit(0);
            }
            chan
        }
        Err(e) => failed(chan, tracer, e),
    }
}

/// Starts a thread of this process that serves as the actor `name`, and replies with its
/// task id and the runner's end of its channel (or the errno).
fn start_thread(
    tracer: &mut Tracer,
    chan: &ActorEnd,
    name: &str,
) -> Result<(), crate::channel::ChannelError> {
    let started = || -> Result<(ActorEnd, Channel<Command, Reply>), Errno> {
        let (ours, theirs): (ActorEnd, Channel<Command, Reply>) = channel::pair()?;
        // Parked high, as every actor channel: the scenario's fd numbers stay its own.
        Ok((ours.park(CHANNEL_FD_MIN)?, theirs))
    };
    let (ours, theirs) = match started() {
        Ok(pair) => pair,
        Err(errno) => {
            return chan.send(&Reply::Done {
                events: tracer.take_events(),
                outcome: Outcome::of(Err(errno)),
            });
        }
    };
    let shared = tracer.thread(name, 0);
    let name_owned = name.to_string();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let spawn = || -> Result<i32, Errno> {
        std::thread::Builder::new()
            .name(name_owned.clone())
            .spawn(move || {
                let tid = nix::unistd::gettid().as_raw();
                let _ = tid_tx.send(tid);
                let mut own = shared.thread(name_owned, tid);
                serve(&mut own, ours)
            })
            .map_err(|e| e.raw_os_error().map_or(Errno::EAGAIN, Errno::from_raw))?;
        tid_rx.recv().map_err(|_| Errno::ECHILD)
    };
    let result = tracer.sys("thread", spawn, |_, r| crate::tracer::Described {
        args: vec![],
        ret: match r {
            Ok(tid) => Ret::Ok {
                value: i64::from(*tid),
                name: Some(name.to_string()),
            },
            Err(e) => Ret::Err { errno: *e },
        },
        detail: None,
    });
    let reply = Reply::Done {
        events: tracer.take_events(),
        outcome: Outcome::of(result.map(i64::from)),
    };
    match result {
        Ok(_) => chan.send_with_fd(&reply, theirs.as_fd()),
        Err(_) => chan.send(&reply),
    }
}

/// The event for a background call that has not returned yet.
fn unfinished(tracer: &Tracer, call: crate::trace::Call) -> Event {
    Event {
        actor: tracer.actor().to_string(),
        pid: tracer.pid(),
        time_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        dur_us: 0,
        call,
        ret: Ret::Unfinished,
        resumed: false,
        slept: false,
        stability: Default::default(),
    }
}

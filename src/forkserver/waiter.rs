//! The waiter processes and their per-event children: the part of the server whose behaviour is
//! under study.
//!
//! A waiter has its own epoll set holding the listener and a signalfd (SIGCHLD to reap, SIGTERM
//! and SIGINT to stop). Each listener event makes it fork a child that tries one non-blocking
//! accept4, reports the outcome, holds the connection for `--sleep` and exits, the way a
//! pre-fork server hands a connection to a worker. Whether the child finds a connection to
//! accept is exactly what level- vs edge-triggered and EPOLLEXCLUSIVE change.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getppid};

use super::report::{Msg, Outcome};
use crate::sys::{self, RawFd};
use crate::trace::Format;
use crate::tracer::Tracer;

/// Prints the calls traced since the last flush (with --trace) and forgets them.
///
/// Used instead of the Tracer's echo, which panics when stdout is a closed pipe
/// (`... --trace | head`) and would kill the master mid-run; here printing just stops.
pub fn flush_trace(t: &mut Tracer, format: Option<Format>) {
    use std::io::Write as _;
    let events = t.take_events();
    if let Some(format) = format {
        let mut out = std::io::stdout().lock();
        for e in events {
            let _ = writeln!(out, "{}", e.render(format));
        }
    }
}

/// Prints a line on stdout, or stderr when stdout is reserved for JSON, ignoring a closed pipe.
pub fn say(to_stderr: bool, line: &str) {
    use std::io::Write as _;
    let _ = if to_stderr {
        writeln!(std::io::stderr().lock(), "{line}")
    } else {
        writeln!(std::io::stdout().lock(), "{line}")
    };
}

/// The signals every process of the server takes through a signalfd instead of a handler.
pub fn control_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGINT, Signal::SIGTERM] {
        set.add(s);
    }
    set
}

/// Blocks the control signals so they queue for a signalfd; done before the first fork, so
/// no waiter can be killed by a SIGTERM that arrives before it has its signalfd.
pub fn block_control_signals() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&control_signals()), None)
}

/// Gives a forked child the signal state of a freshly exec'd program: nothing blocked, default
/// dispositions. Without this it would inherit the blocked SIGTERM/SIGINT (and be unkillable
/// by Ctrl-C) and Rust's ignored SIGPIPE.
fn restore_default_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for s in [
        Signal::SIGPIPE,
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
    ] {
        // SAFETY: SIG_DFL installs no handler of ours, so no code can run in signal context;
        // the process is single-threaded (just forked).
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigDfl) };
    }
}

/// Writes one report line; a single write of < PIPE_BUF bytes, hence atomic.
pub fn send(fd: RawFd, msg: &Msg) {
    let line = msg.encode();
    loop {
        match sys::write(fd, line.as_bytes()) {
            Err(Errno::EINTR) => continue,
            // The master is gone (EPIPE): nobody is left to tell.
            _ => return,
        }
    }
}

/// What a waiter needs to know, set up by the master before forking it.
#[derive(Clone, Debug)]
pub struct WaiterCtx {
    /// 1-based waiter number (`w1`...).
    pub w: usize,
    pub listener: RawFd,
    /// The epoll_ctl events for the listener (EPOLLIN, plus EPOLLET / EPOLLEXCLUSIVE).
    pub events: u32,
    pub max_children: usize,
    pub sleep: Duration,
    /// Write end of the report pipe.
    pub report: RawFd,
    /// The master's descriptors (its epoll set, signalfd, pipe read end, other waiters'
    /// listeners): closed first, so children do not inherit them either.
    pub close_inherited: Vec<RawFd>,
    pub master_pid: i32,
    /// --trace: how to print this process's calls.
    pub trace: Option<Format>,
}

/// Runs a waiter in the just-forked process and exits it; never returns to the master's code.
pub fn run(t: &mut Tracer, ctx: &WaiterCtx) -> ! {
    let code = match serve(t, ctx) {
        Ok(()) => 0,
        Err(why) => {
            send(ctx.report, &Msg::SetupFailed { w: ctx.w, why });
            1
        }
    };
    // process::exit runs no destructors: the master's objects copied into this process (the
    // socket file guard, the signalfd) stay untouched.
    std::process::exit(code)
}

struct Waiter<'a> {
    ctx: &'a WaiterCtx,
    ep: RawFd,
    sig: SignalFd,
    children: HashSet<i32>,
    /// Whether the listener is in the epoll set (it is taken out at --max-children).
    watching: bool,
    /// Listener events so far; numbers the events in reports.
    k: u64,
}

fn serve(t: &mut Tracer, ctx: &WaiterCtx) -> Result<(), String> {
    // If the master dies without stopping us, SIGTERM (via the signalfd) makes us clean up
    // rather than linger; the ppid check covers a master that died before the prctl.
    set_pdeathsig(Signal::SIGTERM).map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    if getppid().as_raw() != ctx.master_pid {
        return Ok(());
    }
    for &fd in &ctx.close_inherited {
        let _ = sys::close(fd);
    }
    let sig = SignalFd::with_flags(
        &control_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| format!("signalfd: {e}"))?;
    t.name_fd(sig.as_raw_fd(), "SIG");
    let ep = t
        .epoll_create1("E", libc::EPOLL_CLOEXEC)
        .map_err(|e| format!("epoll_create1: {e}"))?;
    let sfd = sig.as_raw_fd();
    t.epoll_ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        sfd,
        Some((libc::EPOLLIN as u32, sfd as u64)),
    )
    .map_err(|e| format!("epoll_ctl(ADD, signalfd): {e}"))?;
    t.epoll_ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        ctx.listener,
        Some((ctx.events, ctx.listener as u64)),
    )
    .map_err(|e| {
        format!(
            "epoll_ctl(ADD, listener, {}): {e}",
            crate::trace::epoll_events_name(ctx.events)
        )
    })?;
    send(
        ctx.report,
        &Msg::Ready {
            w: ctx.w,
            pid: std::process::id() as i32,
        },
    );
    let mut waiter = Waiter {
        ctx,
        ep,
        sig,
        children: HashSet::new(),
        watching: true,
        k: 0,
    };
    let result = waiter.serve_loop(t);
    waiter.kill_children();
    result
}

impl Waiter<'_> {
    fn serve_loop(&mut self, t: &mut Tracer) -> Result<(), String> {
        let listener = self.ctx.listener as u64;
        let sfd = self.sig.as_raw_fd() as u64;
        loop {
            flush_trace(t, self.ctx.trace);
            let events = t.epoll_wait(self.ep, 8, -1, false);
            flush_trace(t, self.ctx.trace);
            let events = match events {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            };
            let mut stop = false;
            for (mask, data) in events {
                if data == listener {
                    self.on_listener_event(t, mask)?;
                } else if data == sfd {
                    stop |= self.on_signals();
                }
            }
            if stop {
                return Ok(());
            }
            if !self.watching && self.children.len() < self.ctx.max_children {
                // Back in the set, but note: re-added EPOLLEXCLUSIVE waiters queue at the
                // tail of the listener's wait queue, so this changes who is "first".
                t.epoll_ctl(
                    self.ep,
                    libc::EPOLL_CTL_ADD,
                    self.ctx.listener,
                    Some((self.ctx.events, listener)),
                )
                .map_err(|e| format!("epoll_ctl(ADD, listener): {e}"))?;
                self.watching = true;
            }
        }
    }

    fn on_listener_event(&mut self, t: &mut Tracer, mask: u32) -> Result<(), String> {
        self.k += 1;
        let (w, k) = (self.ctx.w, self.k);
        let waiter_pid = std::process::id() as i32;
        flush_trace(t, self.ctx.trace);
        let forked = t.fork(&format!("w{w}.c{k}"));
        if !matches!(forked, Ok(ForkResult::Child)) {
            flush_trace(t, self.ctx.trace);
        }
        match forked {
            Ok(ForkResult::Child) => child(t, self.ctx, k, mask, waiter_pid, &self.sig, self.ep),
            Ok(ForkResult::Parent { child }) => {
                self.children.insert(child.as_raw());
                send(
                    self.ctx.report,
                    &Msg::Forked {
                        w,
                        k,
                        pid: child.as_raw(),
                        mask,
                    },
                );
            }
            Err(errno) => {
                send(
                    self.ctx.report,
                    &Msg::ForkFailed {
                        w,
                        k,
                        mask,
                        errno: format!("{errno:?}"),
                    },
                );
                // Level-triggered epoll would report the same connection again at once: back
                // off, by waiting for a child to exit if there is one, or briefly otherwise.
                if self.children.is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                    return Ok(());
                }
                return self.pause(t);
            }
        }
        if self.children.len() >= self.ctx.max_children {
            self.pause(t)?;
        }
        Ok(())
    }

    /// Takes the listener out of the epoll set until a child exits: the --max-children cap.
    /// (DEL rather than MOD: EPOLL_CTL_MOD is refused for EPOLLEXCLUSIVE registrations.)
    fn pause(&mut self, t: &mut Tracer) -> Result<(), String> {
        if !self.watching {
            return Ok(());
        }
        t.epoll_ctl(self.ep, libc::EPOLL_CTL_DEL, self.ctx.listener, None)
            .map_err(|e| format!("epoll_ctl(DEL, listener): {e}"))?;
        self.watching = false;
        send(
            self.ctx.report,
            &Msg::Paused {
                w: self.ctx.w,
                children: self.children.len(),
            },
        );
        Ok(())
    }

    /// Reads the queued signals; reaps children; returns whether to stop.
    fn on_signals(&mut self) -> bool {
        let mut stop = false;
        while let Ok(Some(info)) = self.sig.read_signal() {
            if info.ssi_signo != Signal::SIGCHLD as u32 {
                stop = true;
            }
        }
        // SIGCHLDs coalesce, so reap everything that has exited, not one per signal.
        let mut count = 0;
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid()
                        && self.children.remove(&pid.as_raw())
                    {
                        count += 1;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if count > 0 {
            // Lets the master pace --self-connect clients until the server is really quiet.
            send(
                self.ctx.report,
                &Msg::Reaped {
                    w: self.ctx.w,
                    count,
                },
            );
        }
        stop
    }

    /// Shutdown: SIGKILL every child (they may be mid-sleep holding a connection) and reap them
    /// all, so that the master only drains the listener once nobody else can accept.
    fn kill_children(&mut self) {
        for &pid in &self.children {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for pid in self.children.drain() {
            while let Err(Errno::EINTR) = waitpid(Pid::from_raw(pid), None) {}
        }
    }
}

/// The per-event child: one non-blocking accept4, a report, a nap holding the connection, exit.
fn child(
    t: &mut Tracer,
    ctx: &WaiterCtx,
    k: u64,
    mask: u32,
    waiter_pid: i32,
    sig: &SignalFd,
    ep: RawFd,
) -> ! {
    restore_default_signals();
    // A child must not outlive a waiter that was killed outright (it would hold a connection
    // and the report pipe open forever).
    let _ = set_pdeathsig(Signal::SIGKILL);
    if getppid().as_raw() != waiter_pid {
        std::process::exit(0);
    }
    // Not ours to watch: the child must not consume the waiter's signals or events.
    let _ = sys::close(sig.as_raw_fd());
    let _ = sys::close(ep);
    let result = t.accept4("A", ctx.listener, libc::SOCK_NONBLOCK);
    let outcome = match result {
        Ok(_) => Outcome::Accepted,
        Err(Errno::EAGAIN) => Outcome::Wasted,
        Err(e) => Outcome::Failed(format!("{e:?}")),
    };
    send(
        ctx.report,
        &Msg::Result {
            w: ctx.w,
            k,
            pid: std::process::id() as i32,
            mask,
            outcome,
        },
    );
    // Only after the report: with default SIGPIPE restored, printing to a closed stdout kills us.
    flush_trace(t, ctx.trace);
    if let Ok(conn) = result {
        std::thread::sleep(ctx.sleep);
        let _ = t.close(conn);
        flush_trace(t, ctx.trace);
    }
    std::process::exit(0)
}

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
use nix::sys::signal::{Signal, kill};

use super::report::{Msg, Outcome};
use epollscope::channel::Channel;
use epollscope::sys::process::{self, ForkResult, Pid};
use epollscope::sys::signal::{self as signals, SignalSource};
use epollscope::sys::{self, RawFd};
use epollscope::trace::Format;
use epollscope::tracer::Tracer;

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

/// Sends one report; one message per send, so reports of different processes never mix.
pub fn send(report: &Channel<Msg, ()>, msg: &Msg) {
    // The master is gone (EPIPE): nobody is left to tell.
    let _ = report.send(msg);
}

/// What a waiter needs to know, set up by the master before forking it.
#[derive(Clone, Debug)]
pub struct WaiterCtx<'a> {
    /// 1-based waiter number (`w1`...).
    pub w: usize,
    pub listener: RawFd,
    /// The epoll_ctl events for the listener (EPOLLIN, plus EPOLLET / EPOLLEXCLUSIVE).
    pub events: u32,
    pub max_children: usize,
    pub sleep: Duration,
    /// The sending end of the report channel.
    pub report: &'a Channel<Msg, ()>,
    /// The master's descriptors (its epoll set, signalfd, pipe read end, other waiters'
    /// listeners): closed first, so children do not inherit them either.
    pub close_inherited: Vec<RawFd>,
    pub master_pid: Pid,
    /// --trace: how to print this process's calls.
    pub trace: Option<Format>,
}

/// Runs a waiter in the just-forked process and exits it; never returns to the master's code.
pub fn run(t: &mut Tracer, ctx: &WaiterCtx<'_>) -> ! {
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
    ctx: &'a WaiterCtx<'a>,
    ep: RawFd,
    sig: SignalSource,
    children: HashSet<i32>,
    /// Whether the listener is in the epoll set (it is taken out at --max-children).
    watching: bool,
    /// Listener events so far; numbers the events in reports.
    k: u64,
}

fn serve(t: &mut Tracer, ctx: &WaiterCtx<'_>) -> Result<(), String> {
    // If the master dies without stopping us, SIGTERM (via the signalfd) makes us clean up
    // rather than linger; a master that died before the prctl means stop now.
    let master_alive = process::die_with_parent(Signal::SIGTERM, ctx.master_pid)
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    if !master_alive {
        return Ok(());
    }
    for &fd in &ctx.close_inherited {
        let _ = sys::close(fd);
    }
    let sig = SignalSource::new(signals::STOP_AND_CHILD).map_err(|e| format!("signalfd: {e}"))?;
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
            epollscope::trace::epoll_events_name(ctx.events)
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
        let waiter_pid = nix::unistd::getpid();
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
        let stop = self.sig.drain().iter().any(|&s| s != Signal::SIGCHLD);
        // SIGCHLDs coalesce, so reap everything that has exited, not one per signal.
        let count = process::reap_exited()
            .into_iter()
            .filter(|(pid, _)| self.children.remove(&pid.as_raw()))
            .count();
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
            let _ = process::reap(Pid::from_raw(pid));
        }
    }
}

/// The per-event child: one non-blocking accept4, a report, a nap holding the connection, exit.
fn child(
    t: &mut Tracer,
    ctx: &WaiterCtx<'_>,
    k: u64,
    mask: u32,
    waiter_pid: Pid,
    sig: &SignalSource,
    ep: RawFd,
) -> ! {
    // The signal state of a freshly exec'd program: without it the child would inherit the
    // blocked SIGTERM/SIGINT (unkillable by Ctrl-C) and Rust's ignored SIGPIPE.
    signals::reset_for_child(&[
        Signal::SIGPIPE,
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
    ]);
    // A child must not outlive a waiter that was killed outright (it would hold a connection
    // and the report channel open forever).
    if !matches!(
        process::die_with_parent(Signal::SIGKILL, waiter_pid),
        Ok(true)
    ) {
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

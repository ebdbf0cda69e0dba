//! The forking epoll server behind `epoll-listen-fork`: waiters, per-event children, reports.
//!
//! The command line's choices are a [`Config`] ([`config`]). Process layout: the master sets
//! up the listener(s), forks `--waiters` waiter processes ([`waiter`]) one at a time, and then
//! only coordinates: it drives `--self-connect` clients,
//! prints the waiters' reports ([`report`]) as they arrive, and decides when to stop. It never
//! waits on the listener itself, so every listener event in the output belongs to a waiter.
//!
//! Shutdown order matters for the "left unaccepted" count: waiters are told to stop, they kill
//! and reap their children, the master reaps the waiters and reads the report pipe to its end
//! (end of file means no process can still write, so none can still accept), and only then
//! drains the listener(s).

pub mod config;
pub mod report;
mod shutdown;
pub mod waiter;

pub use config::{Config, Mode};

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::signal::Signal;

use epollscope::channel::{self, Channel, TryRecv};
use epollscope::sys::process::{self, ForkResult, Pid};
use epollscope::sys::procfs;
use epollscope::sys::signal::{self as signals, SignalSource};

use epollscope::addr::SockAddr;
use epollscope::net::{ListenOptions, SocketFileGuard, listen_on, prepare_unix_path};
use epollscope::sys::{self, RawFd};
use epollscope::trace::epoll_events_name;
use epollscope::tracer::Tracer;
use report::{Msg, Outcome, Summary, Tally};
use waiter::WaiterCtx;

/// The tool's name, used in error lines and default socket paths.
pub const TOOL: &str = "epoll-listen-fork";

/// How long shutdown waits for waiters to clean up before SIGKILLing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a one-at-a-time client waits for the server to settle before connecting anyway.
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// A waiter as the master tracks it.
#[derive(Debug)]
struct WaiterProc {
    pid: i32,
    ready: bool,
    alive: bool,
}

/// Something that happened while the master polled.
#[derive(Debug)]
enum Happening {
    Accepted,
    Stop(Signal),
    WaiterExited(usize),
    WaiterFailed(usize, String),
}

struct Master<'a> {
    cfg: &'a Config,
    t: Tracer,
    ep: RawFd,
    sig: SignalSource,
    report_r: Channel<(), Msg>,
    /// Our copy of the sending end, closed once all waiters exist (so end of file can come).
    report_w: Option<Channel<Msg, ()>>,
    tally: Tally,
    waiters: Vec<WaiterProc>,
    pipe_open: bool,
    listeners: Vec<RawFd>,
    clients: Vec<RawFd>,
    /// Self-connect clients whose connect succeeded.
    connected: u64,
}

/// Runs the server until it should stop; returns the summary (already printed lines aside).
/// Errors are set-up failures (exit 2); anything the kernel does afterwards is a result.
pub fn run(cfg: &Config) -> anyhow::Result<Summary> {
    cfg.validate()?;
    // Blocked before anything else, so a SIGTERM during set-up waits for the signalfd instead
    // of killing us with a socket file left behind.
    signals::block(signals::STOP_AND_CHILD).context("blocking signals")?;
    // Traced calls are printed by waiter::flush_trace at points of our choosing, not echoed.
    let mut t = Tracer::new("master");

    let opened = open_listeners(&mut t, cfg);
    waiter::flush_trace(&mut t, cfg.trace);
    let (listeners, addr, _guard) = opened?;
    let (report_w, report_r) = channel::pair::<Msg, ()>().context("socketpair")?;
    t.name_fd(report_r.as_raw_fd(), "REPORT");
    let sig = SignalSource::new(signals::STOP_AND_CHILD).context("signalfd")?;
    t.name_fd(sig.as_raw_fd(), "MSIG");
    let ep = t
        .epoll_create1("ME", libc::EPOLL_CLOEXEC)
        .context("epoll_create1")?;
    for fd in [report_r.as_raw_fd(), sig.as_raw_fd()] {
        t.epoll_ctl(
            ep,
            libc::EPOLL_CTL_ADD,
            fd,
            Some((libc::EPOLLIN as u32, fd as u64)),
        )
        .context("epoll_ctl")?;
    }
    let mut m = Master {
        cfg,
        t,
        ep,
        sig,
        report_r,
        report_w: Some(report_w),
        tally: Tally::new(cfg.waiters),
        waiters: Vec::new(),
        pipe_open: true,
        listeners,
        clients: Vec::new(),
        connected: 0,
    };
    let started = m.start_waiters();
    m.report_w = None;
    let stop = match started {
        Ok(stop) => stop,
        Err(e) => {
            m.shutdown();
            m.close_all();
            return Err(e);
        }
    };
    m.say(&format!(
        "listening on {addr} ({}): {}, events {} ({}), max {} children per waiter, children hold connections {} ms",
        addr.family(),
        waiter_layout(cfg),
        epoll_events_name(cfg.epoll_events()),
        cfg.mode.long_name(),
        cfg.max_children,
        cfg.sleep.as_millis()
    ));
    let stopped_by = match stop {
        Some(reason) => reason,
        None => m.serve(&addr)?,
    };
    m.say(&format!("stopping: {stopped_by}"));
    m.shutdown();
    let unaccepted = m.drain_listeners();
    m.close_all();
    for line in m.tally.finish() {
        m.say(&line);
    }
    Ok(m.summary(addr, stopped_by, unaccepted))
}

fn waiter_layout(cfg: &Config) -> String {
    let n = cfg.waiters;
    if cfg.reuseport && n == 1 {
        "1 waiter with its own SO_REUSEPORT listener".to_string()
    } else if cfg.reuseport {
        format!("{n} waiters, each with its own SO_REUSEPORT listener")
    } else if n == 1 {
        "1 waiter".to_string()
    } else {
        format!("{n} waiters sharing one listener")
    }
}

/// Opens the listener, or one SO_REUSEPORT listener per waiter, all non-blocking so a child
/// that lost the race gets EAGAIN instead of blocking in accept4.
fn open_listeners(
    t: &mut Tracer,
    cfg: &Config,
) -> anyhow::Result<(Vec<RawFd>, SockAddr, SocketFileGuard)> {
    if let Some(path) = cfg.addr.path() {
        prepare_unix_path(path)?;
    }
    let options = ListenOptions {
        nonblocking: true,
        reuseport: cfg.reuseport,
        ..ListenOptions::default()
    };
    let count = if cfg.reuseport { cfg.waiters } else { 1 };
    let mut fds = Vec::new();
    let mut bound: Option<SockAddr> = None;
    for i in 1..=count {
        let name = if count == 1 {
            "L".to_string()
        } else {
            format!("L{i}")
        };
        // The later SO_REUSEPORT listeners join the port the first one got.
        let want = bound.clone().unwrap_or_else(|| cfg.addr.clone());
        match listen_on(t, &name, &want, options) {
            Ok(l) => {
                fds.push(l.fd);
                bound.get_or_insert(l.addr);
            }
            Err(e) => {
                for fd in fds {
                    let _ = sys::close(fd);
                }
                return Err(e.into());
            }
        }
    }
    let addr = bound.expect("at least one listener");
    // Only now: a guard made before a failed bind could remove a file that is not ours.
    let guard = SocketFileGuard::new(&addr);
    Ok((fds, addr, guard))
}

impl Master<'_> {
    fn say(&mut self, line: &str) {
        waiter::flush_trace(&mut self.t, self.cfg.trace);
        waiter::say(self.cfg.json, line);
    }

    /// Forks the waiters one at a time, each registered in its epoll set before the next
    /// starts, so that w1 is reliably first in the listener's wait queue (which is the one
    /// EPOLLEXCLUSIVE wakes while all are idle). Returns a stop reason if a signal came.
    fn start_waiters(&mut self) -> anyhow::Result<Option<String>> {
        let master_pid = nix::unistd::getpid();
        let mut stop = None;
        for w in 1..=self.cfg.waiters {
            let listener = self.listeners[if self.cfg.reuseport { w - 1 } else { 0 }];
            let mut close_inherited =
                vec![self.ep, self.sig.as_raw_fd(), self.report_r.as_raw_fd()];
            close_inherited.extend(self.listeners.iter().filter(|&&fd| fd != listener));
            let ctx = WaiterCtx {
                w,
                listener,
                events: self.cfg.epoll_events(),
                max_children: self.cfg.max_children,
                sleep: self.cfg.sleep,
                report: self
                    .report_w
                    .as_ref()
                    .expect("sending end open during start"),
                close_inherited,
                master_pid,
                trace: self.cfg.trace,
            };
            waiter::flush_trace(&mut self.t, self.cfg.trace);
            match self.t.fork(&format!("w{w}")) {
                Ok(ForkResult::Child) => waiter::run(&mut self.t, &ctx),
                Ok(ForkResult::Parent { child }) => self.waiters.push(WaiterProc {
                    pid: child.as_raw(),
                    ready: false,
                    alive: true,
                }),
                Err(e) => bail!("fork of waiter w{w}: {e}"),
            }
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while !self.waiters[w - 1].ready {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("waiter w{w} did not get ready within {SHUTDOWN_GRACE:?}");
                }
                for h in self.poll(ms_ceil(left))? {
                    match h {
                        Happening::WaiterFailed(i, why) => bail!("waiter w{i}: {why}"),
                        Happening::WaiterExited(i) => bail!("waiter w{i} exited during set-up"),
                        Happening::Stop(s) => stop = Some(s.as_str().to_string()),
                        Happening::Accepted => {}
                    }
                }
            }
            if stop.is_some() {
                break;
            }
        }
        Ok(stop)
    }

    /// The main loop: clients, reports, and the three ways to stop.
    fn serve(&mut self, addr: &SockAddr) -> anyhow::Result<String> {
        let deadline = self.cfg.duration.map(|d| Instant::now() + d);
        let target = self.cfg.target();
        // When the next one-at-a-time client is due (it connects once things have settled).
        let mut due: Option<Instant> = None;
        if self.cfg.burst {
            for _ in 0..self.cfg.self_connect {
                self.connect_client(addr);
            }
        } else if self.cfg.self_connect > 0 {
            due = Some(Instant::now());
        }
        // A burst of our own clients and no --duration: when nothing more can happen (see
        // stuck()), stop rather than wait forever for accepts that cannot come.
        let watch_stuck = self.cfg.burst
            && deadline.is_none()
            && self
                .cfg
                .connections
                .is_none_or(|n| n <= self.cfg.self_connect);
        loop {
            let mut timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let secs = self.cfg.duration.unwrap_or_default().as_secs_f64();
                        return Ok(format!("--duration {secs}s elapsed"));
                    }
                    ms_ceil(left)
                }
                None => -1,
            };
            if due.is_some() || watch_stuck {
                // Settling is observed by polling /proc, so wake up often meanwhile.
                timeout = if timeout < 0 { 1 } else { timeout.min(1) };
            }
            let mut happenings = self.poll(timeout)?;
            let idle = due.is_some() && self.waiters_idle();
            if idle {
                // Whatever the now idle waiters wrote before sleeping is read before judging.
                happenings.extend(self.poll(0)?);
            }
            for h in happenings {
                match h {
                    Happening::Accepted => {
                        if target.is_some_and(|n| self.tally.accepted() >= n) {
                            self.settle();
                            return Ok(format!("{} connections accepted", self.tally.accepted()));
                        }
                        if !self.cfg.burst && (self.clients.len() as u64) < self.cfg.self_connect {
                            due.get_or_insert_with(Instant::now);
                        }
                    }
                    Happening::Stop(s) => return Ok(format!("got {}", s.as_str())),
                    Happening::WaiterExited(w) => {
                        return Ok(format!("waiter w{w} exited unexpectedly"));
                    }
                    Happening::WaiterFailed(w, why) => {
                        return Ok(format!("waiter w{w} failed: {why}"));
                    }
                }
            }
            // One client at a time, each meeting a quiet server: every waiter asleep in
            // epoll_wait and every child of the previous connection exited and reaped (a
            // SIGCHLD arriving with the connection would find a waiter busy, and EPOLLEXCLUSIVE
            // would skip it). That is what makes the counts reproducible: EPOLLEXCLUSIVE then
            // wakes w1 every time. It also means --sleep paces the clients. If that state
            // never comes, go ahead after a while.
            if watch_stuck && let Some(why) = self.stuck()? {
                return Ok(why);
            }
            if let Some(since) = due
                && ((idle && self.tally.live_children() == 0)
                    || since.elapsed() > self.cfg.sleep + SETTLE_MAX)
            {
                due = None;
                self.connect_client(addr);
            }
        }
    }

    /// Whether nothing more can happen in a run whose only clients are ours and all connected:
    /// every waiter asleep in epoll_wait, no child alive or unreported, and then either
    /// connections still queued that no event will report (edge-triggered wakeups merged or
    /// missed), or nothing queued at all (every client that connected was accepted, the
    /// others failed). Read from the kernel's state, not from a timeout.
    fn stuck(&mut self) -> anyhow::Result<Option<String>> {
        if !self.waiters_idle() || self.tally.live_children() > 0 || self.tally.unresolved() > 0 {
            return Ok(None);
        }
        // What the idle waiters and children wrote before going quiet counts first.
        for h in self.poll(0)? {
            if let Happening::Stop(s) = h {
                return Ok(Some(format!("got {}", s.as_str())));
            }
        }
        if !self.waiters_idle() || self.tally.live_children() > 0 || self.tally.unresolved() > 0 {
            return Ok(None);
        }
        let queued = self
            .listeners
            .iter()
            .any(|&fd| sys::readable_now(fd).unwrap_or(false));
        let accepted = self.tally.accepted();
        Ok(Some(if queued {
            format!(
                "{accepted} accepted, and the waiters are asleep with connections still queued: no event will report them (use --duration to wait anyway)"
            )
        } else {
            format!(
                "{accepted} accepted and nothing left to accept ({} of {} clients connected)",
                self.connected, self.cfg.self_connect
            )
        }))
    }

    /// Lets the children still in flight report, so that a run stopped by --connections ends
    /// with every fork accounted for (in level-triggered mode the last connection usually has
    /// a few more children on their way to an EAGAIN). Bounded; a signal cuts it short.
    fn settle(&mut self) {
        let since = Instant::now();
        while since.elapsed() < SETTLE_MAX {
            if self.waiters_idle() {
                match self.poll(0) {
                    Ok(hs) if hs.iter().any(|h| matches!(h, Happening::Stop(_))) => return,
                    Ok(_) if self.tally.unresolved() == 0 => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            match self.poll(1) {
                Ok(hs) if hs.iter().any(|h| matches!(h, Happening::Stop(_))) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Whether every live waiter is asleep in epoll_wait, i.e. on the listener's wait queue:
    /// the crate's one "asleep in a system call" test (sys::procfs). Where the kernel does not
    /// say (no /proc/PID/syscall), no waiter counts as idle: one-at-a-time clients then go
    /// ahead after SETTLE_MAX, and a burst waits like a run with --duration would.
    fn waiters_idle(&self) -> bool {
        const EPOLL_WAITS: &[i64] = &[
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_pwait2,
        ];
        self.waiters
            .iter()
            .filter(|p| p.alive)
            .all(|p| procfs::asleep_in(Pid::from_raw(p.pid), EPOLL_WAITS))
    }

    /// Connects the next self-connect client; it stays open until the end of the run.
    fn connect_client(&mut self, addr: &SockAddr) {
        let i = self.clients.len() + 1;
        let n = self.cfg.self_connect;
        let fd = match self
            .t
            .socket(&format!("C{i}"), addr.family(), libc::SOCK_STREAM)
        {
            Ok(fd) => fd,
            Err(e) => return self.say(&format!("client {i}/{n}: socket failed: {e}")),
        };
        // Counted even if connect fails, so a failing client is not retried forever.
        self.clients.push(fd);
        match self.t.connect(fd, addr) {
            Ok(()) => {
                self.connected += 1;
                self.say(&format!("client {i}/{n} connected"));
            }
            Err(e) => self.say(&format!("client {i}/{n}: connect failed: {e}")),
        }
    }

    /// One epoll_wait on the report pipe and the signalfd, and whatever followed from it.
    fn poll(&mut self, timeout_ms: i32) -> anyhow::Result<Vec<Happening>> {
        waiter::flush_trace(&mut self.t, self.cfg.trace);
        let events = self.t.epoll_wait(self.ep, 4, timeout_ms, false);
        waiter::flush_trace(&mut self.t, self.cfg.trace);
        let events = match events {
            Ok(events) => events,
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => bail!("epoll_wait: {e}"),
        };
        let mut out = Vec::new();
        for (_, data) in events {
            if data == self.report_r.as_raw_fd() as u64 {
                self.read_reports(&mut out);
            } else if data == self.sig.as_raw_fd() as u64 {
                self.read_signals(&mut out);
            }
        }
        Ok(out)
    }

    fn read_reports(&mut self, out: &mut Vec<Happening>) {
        // Everything queued now: epoll said readable, and each message is one receive.
        loop {
            let msg = match self.report_r.try_recv() {
                Ok(TryRecv::Msg(msg)) => msg,
                Ok(TryRecv::Empty) => return,
                Ok(TryRecv::Closed) => {
                    // Every sender is gone; stop polling an end that stays readable at EOF.
                    self.pipe_open = false;
                    let _ = self.t.epoll_ctl(
                        self.ep,
                        libc::EPOLL_CTL_DEL,
                        self.report_r.as_raw_fd(),
                        None,
                    );
                    return;
                }
                Err(e) => {
                    self.say(&format!("(unreadable report: {e})"));
                    continue;
                }
            };
            match &msg {
                Msg::Ready { w, .. } => {
                    if let Some(p) = self.waiters.get_mut(w.saturating_sub(1)) {
                        p.ready = true;
                    }
                }
                Msg::SetupFailed { w, why } => out.push(Happening::WaiterFailed(*w, why.clone())),
                Msg::Result {
                    outcome: Outcome::Accepted,
                    ..
                } => out.push(Happening::Accepted),
                _ => {}
            }
            if let Some(text) = self.tally.record(&msg) {
                self.say(&text);
            }
        }
    }

    fn read_signals(&mut self, out: &mut Vec<Happening>) {
        for s in self.sig.drain() {
            if s != Signal::SIGCHLD {
                out.push(Happening::Stop(s));
            }
        }
        for (pid, _) in process::reap_exited() {
            if let Some(i) = self.waiters.iter().position(|p| p.pid == pid.as_raw()) {
                self.waiters[i].alive = false;
                out.push(Happening::WaiterExited(i + 1));
            }
        }
    }
}

/// A duration as an epoll timeout, rounded up so a deadline is never woken for too early.
fn ms_ceil(d: Duration) -> i32 {
    let ms = d.as_micros().div_ceil(1000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

//! The edge-trigger probe behind `epoll-socket-test`: the seed experiment, traced.
//!
//! Listen, register the listener with epoll, `epoll_wait(0)`; then for each of N connects (made
//! by a child process, or inline) wait twice without accepting; then accept one connection and
//! wait, close it and wait. The question it answers: does an edge-triggered listener report
//! again for a second pending connection while the first is still unaccepted? (On Linux it
//! does; epoll(7) permits but does not promise it.)
//!
//! The child and the parent take turns over a [`Channel`], so the merged trace has one order
//! on every run: the parent tells the child to connect, the child sends its traced calls back
//! with the outcome, and only then does the parent wait.

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use epollscope::addr::{Family, SockAddr};
use epollscope::channel::{self, Channel};
use epollscope::epoll::TriggerMode;
use epollscope::net::{
    ListenOptions, SetupError, SocketFileGuard, connect_to, listen_on, prepare_unix_path,
};
use epollscope::sys::RawFd;
use epollscope::sys::process::{self, ForkResult, Pid};
use epollscope::trace::{Event, Format};
use epollscope::tracer::Tracer;

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub addr: SockAddr,
    pub mode: TriggerMode,
    /// Connections to make without accepting (at least 1; 2 is the seed's experiment).
    pub connects: usize,
    /// Connect from this process instead of a forked child.
    pub inline_connect: bool,
    /// Print each event as it happens, and a `# ...` line before each phase.
    pub echo: Option<Format>,
}

/// One `epoll_wait(0)` of the probe: when it happened and what it returned.
#[derive(Clone, Debug, Serialize)]
pub struct WaitStep {
    pub label: String,
    /// Connections queued on the listener at the time (made and not yet accepted).
    pub pending: usize,
    /// The return value of epoll_wait (events reported), or -1 on error.
    pub returned: i64,
}

/// The outcome of a probe run.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub family: Family,
    pub mode: TriggerMode,
    pub address: String,
    pub connects: usize,
    pub connected: usize,
    pub inline_connect: bool,
    /// The return value of every epoll_wait, in order.
    pub waits: Vec<i64>,
    pub steps: Vec<WaitStep>,
    /// Did the listener report again for a later connection while an earlier one was still
    /// pending (the first wait after connect 2, 3... returned an event)?
    pub retriggered: bool,
    pub verdict: String,
    pub trace: Vec<Event>,
}

/// Where the connects come from.
trait Connector {
    /// Makes connection number `n` (1-based); its calls end up in `tracer`. Returns whether
    /// the connect succeeded.
    fn connect(&mut self, tracer: &mut Tracer, n: usize) -> anyhow::Result<bool>;
    fn finish(&mut self, tracer: &mut Tracer) -> anyhow::Result<()>;
}

struct InlineConnector {
    addr: SockAddr,
    clients: Vec<RawFd>,
}

impl Connector for InlineConnector {
    fn connect(&mut self, tracer: &mut Tracer, n: usize) -> anyhow::Result<bool> {
        connect_one(tracer, &self.addr, n, &mut self.clients)
    }

    fn finish(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        for fd in self.clients.drain(..) {
            let _ = tracer.close(fd);
        }
        Ok(())
    }
}

/// Connects client `Cn`; a refused connect is part of the result, not an error.
fn connect_one(
    tracer: &mut Tracer,
    addr: &SockAddr,
    n: usize,
    clients: &mut Vec<RawFd>,
) -> anyhow::Result<bool> {
    match connect_to(tracer, &format!("C{n}"), addr, false) {
        Ok(fd) => {
            clients.push(fd);
            Ok(true)
        }
        Err(SetupError::Call {
            call: "connect", ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A forked child that connects on command and sends its traced calls back.
struct ChildConnector {
    /// `None` once reaped.
    pid: Option<Pid>,
    /// Dropping it (end of file) tells the child to exit.
    chan: Option<Channel<Connect, Connected>>,
}

/// Parent to child: make connection number `n`.
#[derive(Serialize, Deserialize)]
struct Connect {
    n: usize,
}

/// Child to parent: the calls it made, and whether the connect succeeded.
#[derive(Serialize, Deserialize)]
struct Connected {
    events: Vec<Event>,
    ok: bool,
}

impl ChildConnector {
    fn spawn(tracer: &mut Tracer, addr: &SockAddr) -> anyhow::Result<ChildConnector> {
        let (ours, theirs) = channel::pair().context("creating the child's channel")?;
        let parent = nix::unistd::getpid();
        match tracer
            .fork("child")
            .context("forking the connecting child")?
        {
            ForkResult::Child => {
                drop(ours);
                tracer.set_echo(None);
                let code = match process::die_with_parent(Signal::SIGKILL, parent) {
                    Ok(true) => child_main(tracer, addr, theirs),
                    _ => 0,
                };
                // Leave without running the parent's destructors (its socket-file guard and
                // buffers belong to the parent).
                std::process::exit(code);
            }
            ForkResult::Parent { child } => Ok(ChildConnector {
                pid: Some(child),
                chan: Some(ours),
            }),
        }
    }
}

fn child_main(tracer: &mut Tracer, addr: &SockAddr, mut chan: Channel<Connected, Connect>) -> i32 {
    let mut clients = Vec::new();
    // End of file (the parent is done, or died) ends the child.
    while let Ok(Some(Connect { n })) = chan.recv() {
        let ok = connect_one(tracer, addr, n, &mut clients).unwrap_or(false);
        let events = tracer.take_events();
        if chan.send(&Connected { events, ok }).is_err() {
            return 3;
        }
    }
    0
}

impl Connector for ChildConnector {
    fn connect(&mut self, tracer: &mut Tracer, n: usize) -> anyhow::Result<bool> {
        let chan = self
            .chan
            .as_mut()
            .context("the connecting child was already stopped")?;
        chan.send(&Connect { n })
            .context("asking the child to connect")?;
        let Some(reply) = chan.recv().context("reading the child's trace")? else {
            bail!("the connecting child exited unexpectedly");
        };
        for event in reply.events {
            tracer.absorb(event);
        }
        Ok(reply.ok)
    }

    fn finish(&mut self, _tracer: &mut Tracer) -> anyhow::Result<()> {
        self.chan = None;
        if let Some(pid) = self.pid.take() {
            process::reap(pid).context("reaping the connecting child")?;
        }
        Ok(())
    }
}

impl Drop for ChildConnector {
    /// On an error path the child must not outlive us: end of file makes it exit, then reap it.
    fn drop(&mut self) {
        self.chan = None;
        if let Some(pid) = self.pid.take() {
            let _ = process::reap(pid);
        }
    }
}

/// Prints one line of the live trace; a closed stdout must not stop (or panic) the experiment.
fn print_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Runs the probe. Errors are set-up failures (the address, fork, pipes); whatever the kernel
/// does with the connections is a result, not an error.
pub fn run_probe(config: &ProbeConfig) -> anyhow::Result<ProbeReport> {
    if config.connects == 0 {
        bail!("--connects must be at least 1");
    }
    let mut tracer = Tracer::new("main");
    tracer.set_echo(config.echo.map(|format| (format, print_line as fn(&str))));
    let phase = |label: &str| {
        if config.echo.is_some() {
            println!("# {label}");
        }
    };

    if let Some(path) = config.addr.path()
        && prepare_unix_path(path)?
    {
        eprintln!(
            "epoll-socket-test: removed stale socket file {}",
            path.display()
        );
    }
    let options = ListenOptions {
        backlog: 1024,
        nonblocking: true,
        reuseport: false,
    };
    let listener = listen_on(&mut tracer, "L", &config.addr, options)?;
    let _socket_file = SocketFileGuard::new(&listener.addr);
    let alias = tracer.alias(&listener.addr).unwrap_or_default();
    phase(&format!("listening on {} ({alias})", listener.addr));
    let result = probe_listener(config, &mut tracer, listener.fd, &listener.addr, &phase);
    let _ = tracer.close(listener.fd);
    let (steps, connected) = result?;

    let waits: Vec<i64> = steps.iter().map(|s| s.returned).collect();
    let (retriggered, verdict) = judge(config, &steps, connected);
    Ok(ProbeReport {
        family: listener.addr.family(),
        mode: config.mode,
        address: listener.addr.to_string(),
        connects: config.connects,
        connected,
        inline_connect: config.inline_connect,
        waits,
        steps,
        retriggered,
        verdict,
        trace: tracer.take_events(),
    })
}

fn probe_listener(
    config: &ProbeConfig,
    tracer: &mut Tracer,
    listener: RawFd,
    addr: &SockAddr,
    phase: &dyn Fn(&str),
) -> anyhow::Result<(Vec<WaitStep>, usize)> {
    let epfd = tracer
        .epoll_create1("E", libc::EPOLL_CLOEXEC)
        .context("epoll_create1")?;
    let outcome = (|| {
        tracer
            .epoll_add(epfd, listener, config.mode.interest())
            .context("registering the listener with epoll")?;
        let mut connector: Box<dyn Connector> = if config.inline_connect {
            Box::new(InlineConnector {
                addr: addr.clone(),
                clients: Vec::new(),
            })
        } else {
            Box::new(ChildConnector::spawn(tracer, addr)?)
        };
        let mut steps = Vec::new();
        let mut pending = 0;
        let mut wait = |tracer: &mut Tracer, label: String, pending: usize| {
            let returned = tracer
                .epoll_wait(epfd, 16, 0, false)
                .map_or(-1, |evs| evs.len() as i64);
            steps.push(WaitStep {
                label,
                pending,
                returned,
            });
        };

        phase("before any connect");
        wait(tracer, "before any connect".into(), pending);
        let mut connected = 0;
        for n in 1..=config.connects {
            let who = if config.inline_connect {
                "inline"
            } else {
                "from the child"
            };
            phase(&format!("connect {n} ({who}), not accepted"));
            if connector.connect(tracer, n)? {
                connected += 1;
                pending += 1;
            }
            phase(&format!("wait after connect {n}, then again"));
            wait(tracer, format!("after connect {n}"), pending);
            wait(tracer, format!("after connect {n}, again"), pending);
        }
        let mut accepted = None;
        if connected > 0 {
            phase("accept one connection");
            accepted = tracer.accept4("A1", listener, libc::SOCK_NONBLOCK).ok();
            if accepted.is_some() {
                pending -= 1;
            }
            wait(tracer, "after accept".into(), pending);
        }
        if let Some(fd) = accepted {
            phase("close the accepted connection");
            let _ = tracer.close(fd);
            wait(tracer, "after close".into(), pending);
        }
        connector.finish(tracer)?;
        Ok((steps, connected))
    })();
    let _ = tracer.close(epfd);
    outcome
}

/// The verdict in plain words, from what the waits returned.
fn judge(config: &ProbeConfig, steps: &[WaitStep], connected: usize) -> (bool, String) {
    let first_after = |n: usize| {
        steps
            .iter()
            .find(|s| s.label == format!("after connect {n}"))
            .map_or(0, |s| s.returned)
    };
    let later: Vec<usize> = (2..=config.connects)
        .filter(|&n| first_after(n) > 0)
        .collect();
    let retriggered = !later.is_empty();
    if connected < config.connects {
        let note = format!(
            "only {connected} of {} connects succeeded; see the trace",
            config.connects
        );
        return (retriggered, note);
    }
    if config.connects < 2 {
        return (
            false,
            "one connect only: nothing to compare (use --connects 2 or more)".into(),
        );
    }
    let list = |ns: &[usize]| {
        ns.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verdict = match config.mode {
        TriggerMode::Et if retriggered => format!(
            "YES: the edge-triggered listener reported EPOLLIN again for connection {} \
             although connection 1 was never accepted (epoll(7) allows this; it is not promised)",
            list(&later)
        ),
        TriggerMode::Et => "no: after its first report the edge-triggered listener stayed silent \
             while connections were pending, as the textbook reading of EPOLLET predicts"
            .into(),
        TriggerMode::Lt => {
            let pending: Vec<&WaitStep> = steps.iter().filter(|s| s.pending > 0).collect();
            let reported = pending.iter().filter(|s| s.returned > 0).count();
            format!(
                "level-triggered: the listener was reported on {reported} of {} waits while \
                 connections were pending (documented LT behaviour: ready while the queue is non-empty)",
                pending.len()
            )
        }
        TriggerMode::Oneshot if retriggered => format!(
            "oneshot reported again for connection {} without being re-armed (unexpected)",
            list(&later)
        ),
        TriggerMode::Oneshot => "no: EPOLLONESHOT reported connection 1 once, then stayed silent \
             for every later connection until re-armed with EPOLL_CTL_MOD"
            .into(),
    };
    (retriggered, verdict)
}

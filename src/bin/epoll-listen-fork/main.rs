//! `epoll-listen-fork`: a pre-forking epoll server that forks a child per epoll event, to show
//! level- vs edge-triggered wakeups, the thundering herd, EPOLLEXCLUSIVE and SO_REUSEPORT.
//! The logic lives in [`forkserver`]; this is the command line around it.

use std::io::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::anyhow;
use epollscope::addr::{Family, default_endpoint, parse_endpoint};
mod forkserver;

use epollscope::trace::Format;
use forkserver::{Config, Mode, TOOL};

/// A forking epoll server: each waiter forks a child per listener event; the child tries one
/// non-blocking accept4 and holds the connection for --sleep ms. Every event is reported as
/// accepted or EAGAIN (a wasted fork), then a summary with per-waiter counts.
///
/// Level-triggered (lt) keeps reporting a pending connection until a child accepts it, so one
/// connection can cost several forks; edge-triggered (et) reports it once. With several
/// waiters on one listener, a connection wakes 1..N of them (the thundering herd) unless
/// --exclusive (EPOLLEXCLUSIVE: one waiter) or --reuseport (a listener per waiter).
///
/// --self-connect N connects N clients from the master, one at a time: each connects once the
/// previous one was accepted and the server is quiet again (every waiter asleep in epoll_wait,
/// every child exited), so --sleep paces them and the accepted counts and every et count are
/// reproducible (lt's wasted forks are a race with the scheduler: see the README). With --burst
/// they connect all at once instead, which lets edge-triggered waiters miss connections.
/// Clients stay open until the end.
#[derive(clap::Parser, Debug)]
#[command(name = "epoll-listen-fork", version)]
struct Args {
    /// Socket family: unix, inet or inet6.
    #[arg(default_value = "unix")]
    family: String,
    /// Unix socket path, or port / HOST:PORT for inet and inet6 (0 picks a free port).
    /// Default: a per-process path under the temporary directory, or a free loopback port.
    address: Option<String>,
    /// Register the listener level-triggered (lt) or edge-triggered (et, EPOLLET).
    #[arg(long, default_value = "lt", value_name = "lt|et")]
    mode: String,
    /// Register the listener with EPOLLEXCLUSIVE: one waiter woken per connection.
    #[arg(long)]
    exclusive: bool,
    /// Give each waiter its own SO_REUSEPORT listener on the same port (inet/inet6 only).
    #[arg(long)]
    reuseport: bool,
    /// Number of pre-forked waiter processes, each with its own epoll set.
    #[arg(long, default_value_t = 1, value_name = "N")]
    waiters: usize,
    /// Milliseconds each child holds its accepted connection before exiting.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    sleep: u64,
    /// Stop after N connections were accepted (default: the --self-connect count).
    #[arg(long, value_name = "N")]
    connections: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "S", allow_hyphen_values = true,
          value_parser = epollscope::cli::duration_secs)]
    duration: Option<Duration>,
    /// Connect N clients from the master itself, one at a time (see above).
    #[arg(long, default_value_t = 0, value_name = "N")]
    self_connect: u64,
    /// With --self-connect: connect all clients at once rather than one at a time.
    #[arg(long)]
    burst: bool,
    /// Per-waiter cap on live children; at the cap the waiter stops watching the listener
    /// until a child exits (level-triggered mode would otherwise fork without bound).
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_children: usize,
    /// Print the summary as one JSON object on stdout (progress lines go to stderr).
    #[arg(long, conflicts_with = "trace")]
    json: bool,
    /// Print every traced call of every process: symbolic (names) or raw (numbers, times).
    #[arg(long, value_name = "symbolic|raw", num_args = 0..=1, default_missing_value = "symbolic")]
    trace: Option<String>,
}

fn config(args: Args) -> anyhow::Result<Config> {
    let family = Family::from_str(&args.family)?;
    let addr = match &args.address {
        Some(text) => parse_endpoint(family, text)?,
        None => default_endpoint(family, TOOL),
    };
    let trace = match args.trace.as_deref() {
        None => None,
        Some("symbolic") => Some(Format::SYMBOLIC.with_actors(true)),
        Some("raw") => Some(Format::RAW.with_actors(true)),
        Some(other) => {
            return Err(anyhow!(
                "unknown trace format '{other}': expected symbolic or raw"
            ));
        }
    };
    Ok(Config {
        addr,
        mode: Mode::from_str(&args.mode).map_err(|e| anyhow!(e))?,
        exclusive: args.exclusive,
        reuseport: args.reuseport,
        waiters: args.waiters,
        sleep: Duration::from_millis(args.sleep),
        connections: args.connections,
        duration: args.duration,
        self_connect: args.self_connect,
        burst: args.burst,
        max_children: args.max_children,
        json: args.json,
        trace,
    })
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = config(args)?;
    let summary = forkserver::run(&cfg)?;
    // A closed stdout (`| head`) is no reason to fail a run that already happened.
    let mut out = std::io::stdout().lock();
    let _ = if cfg.json {
        writeln!(out, "{}", serde_json::to_string(&summary)?)
    } else {
        write!(out, "{}", summary.render_text())
    };
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    epollscope::cli::main(TOOL, run)
}

//! `socket-connect`: open N connections to a listener at once, report what the kernel did with
//! them (successes, failures grouped by errno, connect latency), and hold them open.
//!
//! The storm itself lives in [`storm`]; this is arguments and printing.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use epollscope::addr::{Family, SockAddr, parse_endpoint};
use epollscope::cli;
mod storm;

use epollscope::trace::errno_text;
use storm::{
    DEFAULT_CONCURRENCY, DEFAULT_SEED, Hold, HoldEnd, StopSignals, StormConfig, StormReport,
    errno_by_name, raise_nofile_for, run_storm_until,
};

const TOOL: &str = "socket-connect";

/// Open N connections to a listening socket, report successes and failures (grouped by
/// errno) and connect latency, then hold them until a key, EOF on stdin, --hold or a signal.
#[derive(Debug, clap::Parser)]
#[command(name = "socket-connect", version)]
struct Args {
    /// Socket family: unix, inet or inet6.
    #[arg(value_parser = cli::family)]
    family: Family,

    /// Socket path (unix) or port, or HOST:PORT ([HOST]:PORT for inet6).
    endpoint: String,

    /// Number of connections to open.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = cli::count(1..=MAX_COUNT))]
    count: u64,

    /// Host to connect to (inet/inet6; default loopback).
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,

    /// Maximum connects in flight at once.
    #[arg(short = 'c', long, value_name = "C", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = cli::count_usize(1..=MAX_COUNT))]
    concurrency: usize,

    /// Connects started per second (default: as fast as concurrency allows).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Random extra delay per start, up to MS milliseconds (seeded by --seed).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    jitter: u64,

    /// Seed of the jitter generator.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Give up on a connect not established after MS milliseconds (counted as ETIMEDOUT).
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = cli::count(1..=u64::MAX))]
    timeout: u64,

    /// Hold the connections for MS milliseconds instead of until a key or EOF on stdin.
    #[arg(long, value_name = "MS")]
    hold: Option<u64>,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Far beyond what RLIMIT_NOFILE can hold (fs.nr_open is 1M by default), and small enough that
/// the per-connection bookkeeping stays in the tens of megabytes.
const MAX_COUNT: u64 = 10_000_000;

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{text}' is not a positive number of connects per second"
        )),
    }
}

fn main() -> ExitCode {
    epollscope::cli::main(TOOL, |args: Args| run(&args))
}

/// The positional endpoint, with --host applied.
fn target(args: &Args) -> anyhow::Result<SockAddr> {
    let addr = parse_endpoint(args.family, &args.endpoint)?;
    let Some(host) = &args.host else {
        return Ok(addr);
    };
    let SockAddr::Inet { addr } = addr else {
        bail!("--host applies to inet and inet6 only (a unix socket is named by its path)");
    };
    if !args.endpoint.chars().all(|c| c.is_ascii_digit()) {
        bail!("give the host either with --host or as HOST:PORT, not both");
    }
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = trimmed.parse().map_err(|_| {
        anyhow::anyhow!("invalid --host '{host}': expected an IP address such as 127.0.0.1 or ::1")
    })?;
    if ip.is_ipv4() != (args.family == Family::Inet) {
        bail!("--host {host} is not an {} address", args.family);
    }
    Ok(SockAddr::ip(SocketAddr::new(ip, addr.port())))
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let target = target(args)?;
    let stop = StopSignals::stop().context("cannot block SIGINT/SIGTERM")?;
    let (limit, room) = raise_nofile_for(args.count);
    if room < args.count {
        eprintln!(
            "{TOOL}: open-file limit is {} (hard {}): only about {room} of {} connections can be \
             open at once, the rest will fail with EMFILE",
            limit.soft, limit.hard, args.count
        );
    }
    let config = StormConfig {
        target,
        count: args.count,
        concurrency: args.concurrency,
        rate: args.rate,
        jitter: Duration::from_millis(args.jitter),
        seed: args.seed,
        timeout: Duration::from_millis(args.timeout),
        progress: std::io::stderr().is_terminal(),
    };
    let storm = run_storm_until(&config, Some(&stop))?;
    let report = &storm.report;
    report.check_reachable()?;
    if args.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", human(report));
    }
    if report.interrupted.is_some() || storm.held() == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let hold = match args.hold {
        Some(ms) => Hold::For(Duration::from_millis(ms)),
        None => Hold::UntilStdin,
    };
    let prompt = match hold {
        Hold::For(d) if d.is_zero() => None,
        Hold::For(d) => Some(format!(
            "holding {} connections for {} ms (Ctrl-C to end early)",
            storm.held(),
            d.as_millis()
        )),
        Hold::UntilStdin => Some(format!(
            "holding {} connections: press a key (or close stdin) to exit",
            storm.held()
        )),
    };
    // With --json, stdout carries the object alone.
    match prompt {
        Some(line) if args.json => eprintln!("{line}"),
        Some(line) => println!("{line}"),
        None => {}
    }
    if let HoldEnd::Signal(signal) = storm.hold(hold, Some(&stop))? {
        eprintln!("{TOOL}: {signal}: closing {} connections", storm.held());
    }
    drop(storm);
    Ok(ExitCode::SUCCESS)
}

/// The default, human summary: a few short lines.
fn human(r: &StormReport) -> String {
    let mut setup = format!("concurrency {}", r.concurrency);
    if let Some(rate) = r.rate {
        setup.push_str(&format!(", rate {rate}/s"));
    }
    if r.jitter_ms > 0 {
        setup.push_str(&format!(", jitter {} ms", r.jitter_ms));
    }
    setup.push_str(&format!(", seed {}", r.seed));
    let mut out = format!(
        "{TOOL}: {} of {} connected to {} in {:.2} s ({setup})\n",
        r.connected,
        r.attempted,
        r.target,
        r.elapsed_us as f64 / 1e6
    );
    match (r.latency_min_us, r.latency_median_us, r.latency_p99_us) {
        (Some(min), Some(median), Some(p99)) => out.push_str(&format!(
            "latency: min {}, median {}, p99 {}\n",
            micros(min),
            micros(median),
            micros(p99)
        )),
        _ => out.push_str("latency: none (nothing connected)\n"),
    }
    if r.failed == 0 {
        out.push_str("failures: none\n");
    } else {
        let groups: Vec<String> = r
            .errors_by_count()
            .into_iter()
            .map(|(name, n)| match errno_by_name(name) {
                Some(errno) => format!("{n} {name} ({})", errno_text(errno)),
                None => format!("{n} {name}"),
            })
            .collect();
        out.push_str(&format!("failures: {}\n", groups.join(", ")));
    }
    for hint in hints(r) {
        out.push_str(hint);
        out.push('\n');
    }
    if let Some(signal) = &r.interrupted {
        out.push_str(&format!(
            "interrupted by {signal} after {} of {} starts: {} connects abandoned in flight\n",
            r.attempted, r.requested, r.aborted
        ));
    }
    out
}

fn micros(us: u64) -> String {
    match us {
        1_000_000.. => format!("{:.2} s", us as f64 / 1e6),
        10_000.. => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{us} µs"),
    }
}

/// What the two overload signatures mean, since they are why people run this tool.
fn hints(r: &StormReport) -> Vec<&'static str> {
    let mut hints = Vec::new();
    if r.family != Family::Unix && r.latency_p99_us.is_some_and(|us| us >= 900_000) {
        hints.push(
            "note: connects taking 1 s or more had their SYN dropped and retransmitted: the \
             listener's accept queue was full",
        );
    }
    if r.family == Family::Unix && r.errors.contains_key("EAGAIN") {
        hints.push(
            "note: EAGAIN on a unix socket means the listener's backlog was full (connections \
             not yet accepted, even closed ones, count against it)",
        );
    }
    hints
}

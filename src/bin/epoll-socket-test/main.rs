//! epoll-socket-test: does an edge-triggered listening socket report again for a second
//! pending connection? Runs the seed experiment, prints its trace and a verdict.

use std::process::ExitCode;

use epollscope::addr::{Family, default_endpoint, parse_endpoint};
mod probe;

use epollscope::epoll::TriggerMode;
use epollscope::{Format, cli};
use probe::{ProbeConfig, ProbeReport, run_probe};

/// Listen on a socket, register it with epoll, connect twice without accepting, and see
/// whether the listener is reported again for the second pending connection.
#[derive(clap::Parser, Debug)]
#[command(
    version,
    after_help = "Exit status: 0 when the probe ran (whatever the kernel did), \
2 on bad arguments or set-up failure."
)]
struct Args {
    /// Socket family: unix, inet or inet6.
    family: String,
    /// Unix socket path, or port for inet/inet6 (0 = any free port; HOST:PORT also accepted).
    /// Default: a per-process path in the temporary directory, or port 0.
    address: Option<String>,
    /// How the listener is registered; repeat (or comma-separate) to compare modes.
    #[arg(long, value_delimiter = ',', default_value = "et", value_parser = parse_mode)]
    mode: Vec<TriggerMode>,
    /// Connections made without accepting (2 is the original experiment).
    #[arg(long, default_value_t = 2)]
    connects: usize,
    /// Connect from this process instead of a forked child.
    #[arg(long)]
    inline_connect: bool,
    /// Print real fd numbers, pids, times and durations instead of role names.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Print one JSON object (an array when several modes are compared).
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<TriggerMode, String> {
    s.parse()
}

fn main() -> ExitCode {
    cli::main("epoll-socket-test", run)
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let family: Family = args.family.parse()?;
    let addr = match &args.address {
        Some(text) => parse_endpoint(family, text)?,
        None => default_endpoint(family, "epoll-socket-test"),
    };
    let echo = if args.json {
        None
    } else if args.raw {
        Some(Format::RAW.with_actors(true))
    } else {
        Some(Format::SYMBOLIC.with_actors(!args.inline_connect))
    };
    let mut reports = Vec::new();
    for (i, &mode) in args.mode.iter().enumerate() {
        if echo.is_some() {
            if i > 0 {
                println!();
            }
            println!(
                "epoll-socket-test: {family} listener, mode {mode} ({}), {} connects {}",
                mode.interest(),
                args.connects,
                if args.inline_connect {
                    "inline"
                } else {
                    "from a child process"
                }
            );
        }
        let report = run_probe(&ProbeConfig {
            addr: addr.clone(),
            mode,
            connects: args.connects,
            inline_connect: args.inline_connect,
            echo,
        })?;
        if echo.is_some() {
            print_summary(&report);
        }
        reports.push(report);
    }
    if args.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        println!("{json}");
    } else if reports.len() > 1 {
        println!();
        println!("{:<8} {:<24} retriggered", "mode", "waits");
        for r in &reports {
            let waits: Vec<String> = r.waits.iter().map(i64::to_string).collect();
            let yes = if r.retriggered { "yes" } else { "no" };
            println!("{:<8} {:<24} {yes}", r.mode.name(), waits.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(report: &ProbeReport) {
    println!("# waits:");
    for step in &report.steps {
        println!(
            "#   {:<24} {} (pending {})",
            step.label, step.returned, step.pending
        );
    }
    println!("verdict: {}", report.verdict);
}

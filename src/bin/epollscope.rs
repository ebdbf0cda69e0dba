//! epollscope: run scripted epoll/listen-socket scenarios and check what the kernel does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use epollscope::addr::Family;
use epollscope::scenario::{self, Scenario, ScenarioReport};
use epollscope::{Format, cli};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Test and diagnose how Linux epoll and listening sockets behave"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run scenario files (or every .scn file in the given directories).
    #[command(
        after_help = "Exit status: 0 when every scenario passed, 1 when one failed, \
2 on bad input (an unreadable or malformed scenario, a bad flag)."
    )]
    Run(RunArgs),
    /// (internal) A scenario actor started by exec, serving the runner on fd 3.
    #[command(name = "__actor", hide = true)]
    Actor,
    /// Reassemble TCP flows from a pcap/pcapng file or live capture (mOS monitoring semantics).
    #[command(
        after_help = "Exit status: 0 when the input was read, 2 on bad input (unreadable, \
truncated or corrupt capture, unknown link type, no permission to capture)."
    )]
    Monitor(epollscope::monitor::cli::MonitorArgs),
    /// Run a program under the preload shim and print its socket and epoll calls, all processes.
    #[command(after_help = "Exit status: the program's own (128+N when killed by signal N).")]
    Trace(epollscope::shim::command::TraceArgs),
    /// Run a program traced, then under the Fastsocket fast path, and compare the two runs.
    Compare(epollscope::shim::command::CompareArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario files or directories [default: scenarios]
    paths: Vec<PathBuf>,
    /// Print one JSON object: every scenario instance with its trace, and the totals.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print each scenario's symbolic trace (role names; stable across runs).
    #[arg(long)]
    trace: bool,
    /// Print each scenario's raw trace (fd numbers, pids, times).
    #[arg(long)]
    raw: bool,
    /// Run everything N times and report scenarios whose trace or verdict differs (flaky).
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: usize,
    /// Only scenarios whose path contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// Only this family of each scenario's matrix.
    #[arg(long)]
    family: Option<String>,
    /// List the scenarios with what they demonstrate, and run nothing.
    #[arg(long)]
    list: bool,
    /// Record every IP scenario's loopback traffic to DIR/<scenario>-<family>.pcap and add
    /// its flows to the report (needs root or CAP_NET_RAW).
    #[arg(long, value_name = "DIR")]
    capture: Option<PathBuf>,
    /// Scenario instances run at once [default: 2 per CPU].
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

fn main() -> ExitCode {
    cli::init();
    // Actors forked by actors are orphaned when a run tears down; adopt and reap them here
    // rather than leave zombies to an init that may not reap.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let args = Args::parse();
    cli::finish(
        "epollscope",
        match args.command {
            Cmd::Run(run) => run_scenarios(run),
            Cmd::Actor => scenario::actor_main(),
            Cmd::Monitor(args) => epollscope::monitor::cli::run(args),
            Cmd::Trace(args) => epollscope::shim::command::trace(args),
            Cmd::Compare(args) => epollscope::shim::command::compare(args),
        },
    )
}

/// Expands directories into their `.scn` files, sorted.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![];
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "scn"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

#[derive(Serialize)]
struct Totals {
    passed: usize,
    failed: usize,
    flaky: usize,
}

#[derive(Serialize)]
struct JsonInstance<'a> {
    #[serde(flatten)]
    report: &'a ScenarioReport,
    symbolic_trace: String,
}

fn run_scenarios(args: RunArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.paths.clone()
    };
    let only_family: Option<Family> = args.family.as_deref().map(str::parse).transpose()?;
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let mut scenarios = vec![];
    for file in collect_files(&paths)? {
        if args
            .filter
            .as_deref()
            .is_some_and(|p| !file.to_string_lossy().contains(p))
        {
            continue;
        }
        match scenario::load(&file) {
            Ok(s) => scenarios.push(s),
            Err(scenario::LoadError::Parse(e)) => {
                // One line first (what tools grep for), then the line and a caret.
                eprintln!("{}", e.render());
                return Ok(ExitCode::from(cli::EXIT_BAD_INPUT));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if scenarios.is_empty() {
        bail!(
            "no scenario found in {} (files end in .scn{})",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if args.filter.is_some() {
                ", and --filter must match their path"
            } else {
                ""
            }
        );
    }
    if args.list {
        for s in &scenarios {
            let families: Vec<&str> = s.families.iter().map(|f| f.name()).collect();
            let first = s.description.lines().next().unwrap_or("(no description)");
            println!(
                "{:<40} {:<18} {first}",
                s.path.display(),
                families.join(",")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let instances: Vec<(&Scenario, Family)> = scenarios
        .iter()
        .flat_map(|s| s.families.iter().map(move |&f| (s, f)))
        .filter(|(_, f)| only_family.is_none_or(|o| o == *f))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Some(dir) = &args.capture {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the capture directory {}", dir.display()))?;
    }
    let options = scenario::RunOptions {
        capture_dir: args.capture.clone(),
        ..scenario::RunOptions::default()
    };
    let runs = run_all(&instances, args.repeat, jobs.max(1), &options);

    let mut flaky = vec![];
    let mut reports = vec![];
    for (i, attempts) in runs.into_iter().enumerate() {
        let first = &attempts[0];
        if scenario::is_flaky(&attempts) {
            flaky.push(i);
        }
        // Report the first failing attempt if any, so a flaky failure is shown.
        let shown = attempts.iter().find(|r| !r.passed).unwrap_or(first).clone();
        reports.push(shown);
    }

    let passed = reports.iter().filter(|r| r.passed).count();
    let failed = reports.len() - passed;
    if args.json {
        let items: Vec<JsonInstance> = reports
            .iter()
            .map(|r| JsonInstance {
                report: r,
                symbolic_trace: r.render_trace(Format::SYMBOLIC),
            })
            .collect();
        let doc = serde_json::json!({
            "scenarios": items,
            "totals": Totals { passed, failed, flaky: flaky.len() },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (i, r) in reports.iter().enumerate() {
            println!("{}", r.summary());
            if flaky.contains(&i) {
                println!(
                    "  FLAKY: the trace or verdict differed across {} runs",
                    args.repeat
                );
            }
            if args.trace {
                print_indented(&r.render_trace(Format::SYMBOLIC));
            }
            if args.raw {
                print_indented(&r.render_trace(Format::RAW));
            }
        }
        let mut line = format!("{passed} passed, {failed} failed");
        if args.repeat > 1 {
            line.push_str(&format!(
                " ({} flaky in {} runs each)",
                flaky.len(),
                args.repeat
            ));
        }
        println!("{line}");
    }
    if let Some(path) = &args.junit {
        write_junit(path, &reports)?;
    }
    reap_orphans();
    let ok = failed == 0 && flaky.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reaps every exited child (adopted orphan actors) without blocking.
fn reap_orphans() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

fn write_junit(path: &Path, reports: &[ScenarioReport]) -> anyhow::Result<()> {
    std::fs::write(path, scenario::junit(reports))
        .with_context(|| format!("writing the JUnit report {}", path.display()))
}

/// Runs every instance `repeat` times on `jobs` threads; results in instance order.
fn run_all(
    instances: &[(&Scenario, Family)],
    repeat: usize,
    jobs: usize,
    options: &scenario::RunOptions,
) -> Vec<Vec<ScenarioReport>> {
    let work: Vec<(usize, usize)> = (0..instances.len())
        .flat_map(|i| (0..repeat).map(move |r| (i, r)))
        .collect();
    let next = Mutex::new(0usize);
    let results = Mutex::new(BTreeMap::new());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && work.len() > 20;
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(work.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let item = {
                        let mut n = next.lock().expect("lock");
                        let item = work.get(*n).copied();
                        *n += 1;
                        item
                    };
                    let Some((i, r)) = item else { break };
                    let (scenario, family) = instances[i];
                    let report = scenario::run_with(scenario, family, options);
                    let mut done = results.lock().expect("lock");
                    done.insert((i, r), report);
                    if progress {
                        eprint!("\r{} of {} runs done", done.len(), work.len());
                    }
                }
            });
        }
    });
    if progress {
        eprintln!();
    }
    let mut by_instance: Vec<Vec<ScenarioReport>> = (0..instances.len()).map(|_| vec![]).collect();
    for ((i, _), report) in results.into_inner().expect("lock") {
        by_instance[i].push(report);
    }
    by_instance
}

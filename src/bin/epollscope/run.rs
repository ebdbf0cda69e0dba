//! `epollscope run`: selects scenario files, runs every family instance on a pool of threads
//! (natively, under the Fastsocket shim, or both to compare), and reports as text, JSON or
//! JUnit.

mod execute;
mod library;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use epollscope::addr::Family;
use epollscope::cli::{self, EXIT_BAD_INPUT};
use epollscope::scenario::{LoadError, RunOptions, Scenario, load};

use execute::{fastsocket_options, reap_orphans, run_all, stop_on_signals};
use library::{collect_files, default_library, list};
use report::{compare, report};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Scenario files or directories [default: ./scenarios, else the installed library]
    paths: Vec<PathBuf>,
    /// Print one JSON object: every scenario instance with its trace, and the totals.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a TAP (version 13) report to FILE.
    #[arg(long, value_name = "FILE")]
    tap: Option<PathBuf>,
    /// Also write an HTML page to FILE: a timeline per scenario run (one lane per actor), the
    /// failing step, the trace; self-contained (no network). With --under both or --kernel,
    /// each instance's runs stand side by side.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print each scenario's symbolic trace (role names; stable across runs).
    #[arg(long)]
    trace: bool,
    /// Label each checked step against the man pages: promised, allowed, unspecified, or
    /// CONTRADICTS (exit 1).
    #[arg(long)]
    explain: bool,
    /// Print each scenario's raw trace (fd numbers, pids, times).
    #[arg(long)]
    raw: bool,
    /// Run everything N times and report scenarios whose trace or verdict differs (flaky).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = cli::count_usize(1..=100_000))]
    repeat: usize,
    /// Only scenarios whose path contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// Only this family of each scenario's matrix.
    #[arg(long, value_parser = cli::family)]
    family: Option<Family>,
    /// List the scenarios with what they demonstrate, and run nothing.
    #[arg(long)]
    list: bool,
    /// Record every IP scenario's loopback traffic to DIR/<scenario>-<family>.pcap and add
    /// its flows to the report (needs root or CAP_NET_RAW).
    #[arg(long, value_name = "DIR")]
    capture: Option<PathBuf>,
    /// Run the actors natively, under the Fastsocket preload shim, or both ways and compare.
    #[arg(long, value_enum, default_value = "native")]
    under: Under,
    /// Scenario instances run at once [default: 2 per CPU].
    #[arg(long, short = 'j', value_parser = cli::count_usize(1..=1024))]
    jobs: Option<usize>,
    #[command(flatten)]
    kernel: crate::kernel::KernelArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Under {
    Native,
    Fastsocket,
    Both,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![default_library()]
    } else {
        args.paths.clone()
    };
    let only_family = args.family;
    // Output paths are checked before anything runs: a long run must not end in a write error.
    let junit_file = match &args.junit {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("opening the JUnit report {}", path.display()))?,
        ),
        None => None,
    };
    let outputs = crate::outputs::Outputs::open(&args.html, &args.tap)?;
    if let Some(dir) = &args.capture {
        check_capture_dir(dir)?;
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
        match load(&file) {
            Ok(mut s) => {
                // Timeouts only catch hangs; an emulated guest is slower, not hung.
                let scale = args.kernel.vm.timeout_scale;
                s.timeout = s.timeout.checked_mul(scale).unwrap_or(s.timeout);
                s.step_timeout = s.step_timeout.checked_mul(scale).unwrap_or(s.step_timeout);
                scenarios.push(s)
            }
            Err(LoadError::Parse(e)) => {
                // One line first (what tools grep for), then the line and a caret.
                eprintln!("{}", e.render());
                return Ok(ExitCode::from(EXIT_BAD_INPUT));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if scenarios.is_empty() {
        let searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no scenario found in {} (files end in .scn{})",
            searched.join(", "),
            if args.filter.is_some() {
                ", and --filter must match their path"
            } else {
                ""
            }
        );
    }
    if args.list {
        list(&scenarios, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }

    let instances: Vec<(&Scenario, Family)> = scenarios
        .iter()
        .flat_map(|s| s.families.iter().map(move |&f| (s, f)))
        .filter(|(_, f)| only_family.is_none_or(|o| o == *f))
        .collect();
    if let (true, Some(family)) = (instances.is_empty(), only_family) {
        bail!(
            "no scenario runs for --family {family}: none of the selected scenarios has it in its family: matrix"
        );
    }
    if !args.kernel.vm.kernels.is_empty() {
        let unsupported = [
            (args.trace, "--trace"),
            (args.raw, "--raw"),
            (args.repeat != 1, "--repeat"),
            (args.capture.is_some(), "--capture"),
            (args.under != Under::Native, "--under"),
        ];
        if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
            bail!("{flag} cannot be combined with --kernel");
        }
        let selection = crate::kernel::Selection {
            scenarios: &scenarios,
            family: only_family,
            jobs: args.jobs,
            json: args.json,
            junit: args.junit.as_deref().zip(junit_file),
            outputs,
        };
        return crate::kernel::run_matrix(&args.kernel, selection);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    stop_on_signals()?;
    let native = RunOptions {
        capture_dir: args.capture.clone(),
        ..RunOptions::default()
    };
    let code = match args.under {
        Under::Native => report(
            &args,
            junit_file,
            outputs,
            run_all(&instances, args.repeat, jobs, &native),
        )?,
        Under::Fastsocket => {
            let fast = fastsocket_options(&native)?;
            report(
                &args,
                junit_file,
                outputs,
                run_all(&instances, args.repeat, jobs, &fast),
            )?
        }
        Under::Both => {
            let fast = fastsocket_options(&native)?;
            let left = run_all(&instances, 1, jobs, &native);
            let right = run_all(&instances, 1, jobs, &fast);
            compare(&args, outputs, left, right)?
        }
    };
    reap_orphans();
    Ok(code)
}

/// The capture directory exists (or is made) and takes files.
fn check_capture_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the capture directory {}", dir.display()))?;
    let probe = dir.join(format!(".epollscope-probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .with_context(|| format!("the capture directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

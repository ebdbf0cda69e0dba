//! `epollscope run`: selects scenario files, runs every family instance on a pool of threads
//! (natively, under the Fastsocket shim, or both to compare), and reports as text, JSON or
//! JUnit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use serde::Serialize;

use epollscope::addr::Family;
use epollscope::cli::{self, EXIT_BAD_INPUT};
use epollscope::scenario::compare::{Difference, comparison_lines, differences, side_by_side};
use epollscope::scenario::{
    LoadError, RunOptions, Scenario, ScenarioReport, is_flaky, junit, load, run_with,
};
use epollscope::trace::Format;

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

/// `./scenarios` (a source tree), else the installed library next to the binary
/// (`/usr/bin` -> `/usr/share/epollscope/scenarios`).
fn default_library() -> PathBuf {
    let here = PathBuf::from("scenarios");
    if here.exists() {
        return here;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("../share/epollscope/scenarios")))
        .filter(|p| p.is_dir())
        .unwrap_or(here)
}

/// Expands directories into their `.scn` files, sorted, subdirectories included (the library
/// keeps the kernel's and LTP's tests in `scenarios/kernel-selftests/` and `scenarios/ltp/`).
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![];
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            scenario_files_under(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Every `.scn` file below `dir`: its own files first, sorted, then each subdirectory's
/// (`kernel-selftests/`, `ltp/`). A symbolic link to a directory is not followed, so a link
/// loop cannot make this endless.
fn scenario_files_under(dir: &std::path::Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut files = vec![];
    let mut dirs = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry.with_context(|| format!("{}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(path);
        } else if path.extension().is_some_and(|e| e == "scn") {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    found.extend(files);
    for sub in dirs {
        scenario_files_under(&sub, found)?;
    }
    Ok(())
}

/// How actors run under the Fastsocket shim: exec'd (LD_PRELOAD acts at exec) with the shim's
/// fast path on.
fn fastsocket_options(base: &RunOptions) -> anyhow::Result<RunOptions> {
    let mode = epollscope::shim::ShimMode {
        fastpath: Some(epollscope::fastpath::Requested::Auto),
        ..Default::default()
    };
    let env = epollscope::shim::preload_env(&mode).map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe().context("locating the epollscope binary")?;
    Ok(RunOptions {
        actor_exe: Some(exe),
        env,
        ..base.clone()
    })
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

#[derive(Serialize)]
struct Totals {
    passed: usize,
    failed: usize,
    skipped: usize,
    flaky: usize,
}

#[derive(Serialize)]
struct JsonInstance<'a> {
    #[serde(flatten)]
    report: &'a ScenarioReport,
    symbolic_trace: String,
}

/// Prints one run of every instance (the first failing attempt of each, if any) and the
/// totals; exit 1 when one failed or was flaky.
fn report(
    args: &RunArgs,
    junit_file: Option<std::fs::File>,
    outputs: crate::outputs::Outputs,
    runs: Vec<Vec<ScenarioReport>>,
) -> anyhow::Result<ExitCode> {
    let mut flaky = vec![];
    let mut contradictions = 0;
    let mut reports = vec![];
    for (i, attempts) in runs.into_iter().enumerate() {
        if is_flaky(&attempts) {
            flaky.push(i);
        }
        let shown = attempts
            .iter()
            .find(|r| !r.passed)
            .unwrap_or(&attempts[0])
            .clone();
        reports.push(shown);
    }
    let passed = reports.iter().filter(|r| r.passed).count();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    let failed = reports.len() - passed - skipped;
    if args.json {
        let items: Vec<JsonInstance> = reports
            .iter()
            .map(|r| JsonInstance {
                report: r,
                symbolic_trace: r.render_trace(Format::SYMBOLIC),
            })
            .collect();
        let totals = Totals {
            passed,
            failed,
            skipped,
            flaky: flaky.len(),
        };
        let doc = serde_json::json!({ "scenarios": items, "totals": totals });
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
            if args.explain {
                let (text, n) = crate::explain::explain(r, args.under == Under::Fastsocket);
                contradictions += n;
                print_indented(&text);
            }
        }
        let mut line = format!("{passed} passed, {failed} failed");
        if skipped > 0 {
            line.push_str(&format!(", {skipped} skipped"));
        }
        if args.repeat > 1 {
            line.push_str(&format!(
                " ({} flaky in {} runs each)",
                flaky.len(),
                args.repeat
            ));
        }
        println!("{line}");
    }
    if let (Some(path), Some(mut file)) = (&args.junit, junit_file) {
        std::io::Write::write_all(&mut file, junit(&reports).as_bytes())
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    outputs.single(&reports)?;
    let ok = failed == 0 && flaky.is_empty() && contradictions == 0;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Serialize)]
struct Comparison<'a> {
    name: &'a str,
    path: &'a Path,
    family: Family,
    same_trace: bool,
    differences: Vec<Difference>,
    native: JsonInstance<'a>,
    fastsocket: JsonInstance<'a>,
    /// Accepts processed and accepted on the same CPU, each side, in all and per actor.
    local_accepts: serde_json::Value,
}

/// Prints each instance's native and Fastsocket runs side by side. Exit 0 when the comparison
/// ran and every native run passed: what the shim changes is the result, not a failure.
fn compare(
    args: &RunArgs,
    outputs: crate::outputs::Outputs,
    native: Vec<Vec<ScenarioReport>>,
    fast: Vec<Vec<ScenarioReport>>,
) -> anyhow::Result<ExitCode> {
    let pairs: Vec<(&ScenarioReport, &ScenarioReport)> = native
        .iter()
        .zip(&fast)
        .map(|(n, f)| (&n[0], &f[0]))
        .collect();
    let verdict = |r: &ScenarioReport| match (r.passed, &r.skipped) {
        (true, _) => "PASS",
        (false, Some(_)) => "SKIP",
        (false, None) => "FAIL",
    };
    let mut comparisons = vec![];
    let mut differing = 0;
    for &(n, f) in &pairs {
        let (left, right) = (comparison_lines(n), comparison_lines(f));
        let same_trace = left == right;
        differing += usize::from(!same_trace);
        let diffs = differences(n, f);
        if args.json {
            let json = |r| JsonInstance {
                report: r,
                symbolic_trace: r.render_trace(Format::SYMBOLIC),
            };
            comparisons.push(Comparison {
                name: &n.name,
                path: &n.path,
                family: n.family,
                same_trace,
                differences: diffs,
                native: json(n),
                fastsocket: json(f),
                local_accepts: serde_json::json!({
                    "native": n.local_accepts_json(),
                    "fastsocket": f.local_accepts_json(),
                }),
            });
            continue;
        }
        println!(
            "{} [{}]: native {}, fastsocket {}{}",
            n.path.display(),
            n.family,
            verdict(n),
            verdict(f),
            if same_trace { ", same trace" } else { "" }
        );
        for d in &diffs {
            println!("  {}: native {}, fastsocket {}", d.what, d.left, d.right);
        }
        let (ln, lf) = (n.local_accepts(), f.local_accepts());
        if ln.measured + lf.measured > 0 {
            println!("  local accepts: native {ln}, fastsocket {lf}");
        }
        for r in [n, f].into_iter().filter(|r| !r.passed) {
            let under = if std::ptr::eq(r, n) {
                "native"
            } else {
                "fastsocket"
            };
            for line in r.summary().lines().skip(1) {
                println!("  {under}:{line}");
            }
        }
        if !same_trace {
            println!("  {:<70}   fastsocket", "native");
            print_indented(&side_by_side(&left, &right, 70));
        }
    }
    outputs.pairs(&pairs)?;
    let passed = |i: usize| pairs.iter().filter(|p| [p.0, p.1][i].passed).count();
    let local = |i: usize| {
        let mut all = epollscope::shim::merge::Local::default();
        for p in &pairs {
            all.add([p.0, p.1][i].local_accepts());
        }
        all
    };
    if args.json {
        let doc = serde_json::json!({
            "comparisons": comparisons,
            "totals": {
                "instances": pairs.len(),
                "native_passed": passed(0),
                "fastsocket_passed": passed(1),
                "traces_differ": differing,
                "local_accepts": {
                    "native": {"local": local(0).local, "measured": local(0).measured},
                    "fastsocket": {"local": local(1).local, "measured": local(1).measured},
                },
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "local accepts (processed and accepted on the same CPU): native {}, fastsocket {}",
            local(0),
            local(1)
        );
        println!(
            "native: {} passed, {} failed; fastsocket: {} passed, {} failed; {differing} of {} traces differ",
            passed(0),
            pairs.len() - passed(0),
            passed(1),
            pairs.len() - passed(1),
            pairs.len()
        );
    }
    let skipped = pairs.iter().filter(|p| p.0.skipped.is_some()).count();
    Ok(if passed(0) + skipped == pairs.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

#[derive(Serialize)]
struct Listed<'a> {
    path: &'a Path,
    families: Vec<&'a str>,
    description: &'a str,
}

/// `--list`: one line per scenario in aligned columns, or a JSON array.
fn list(scenarios: &[Scenario], json: bool) -> anyhow::Result<()> {
    let rows: Vec<Listed> = scenarios
        .iter()
        .map(|s| Listed {
            path: &s.path,
            families: s.families.iter().map(|f| f.name()).collect(),
            description: &s.description,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let paths: Vec<String> = rows.iter().map(|r| r.path.display().to_string()).collect();
    let families: Vec<String> = rows.iter().map(|r| r.families.join(",")).collect();
    let width =
        |col: &[String], min: usize| col.iter().map(|c| c.chars().count()).fold(min, usize::max);
    let (wp, wf) = (width(&paths, 44), width(&families, 16));
    for ((path, fams), row) in paths.iter().zip(&families).zip(&rows) {
        let first = row.description.lines().next().unwrap_or("(no description)");
        println!("{path:<wp$} {fams:<wf$} {first}");
    }
    Ok(())
}

/// SIGINT and SIGTERM end the run cleanly: every actor is killed and every run's temporary
/// directory removed, then the program exits 128+N as a killed program would.
fn stop_on_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked before any worker thread or actor starts, so only the waiting thread takes them.
    epollscope::sys::signal::block(epollscope::sys::signal::STOP)
        .context("blocking SIGINT/SIGTERM")?;
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            epollscope::scenario::abort_all();
            eprintln!("epollscope: stopped by {signal}; actors killed, temporary files removed");
            std::process::exit(128 + signal as i32);
        }
    });
    Ok(())
}

/// Reaps every exited child (adopted orphan actors) without blocking.
fn reap_orphans() {
    epollscope::sys::process::reap_exited();
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

/// Runs every instance `repeat` times on `jobs` threads; results in instance order.
/// Why `scenario` cannot run on this kernel (its `kernel:` header), if it cannot.
fn unmet_requirement(scenario: &Scenario) -> Option<String> {
    let requirement = scenario.kernel.as_ref()?;
    match epollscope::vm::release::running() {
        Ok(release) => requirement.unmet_by(&release),
        Err(e) => Some(format!(
            "needs kernel {requirement}; the running kernel's release: {e}"
        )),
    }
}

fn run_all(
    instances: &[(&Scenario, Family)],
    repeat: usize,
    jobs: usize,
    options: &RunOptions,
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
                    let report = match unmet_requirement(scenario) {
                        Some(reason) => ScenarioReport::skipped(scenario, family, reason),
                        None => run_with(scenario, family, options),
                    };
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
    if epollscope::scenario::aborted() {
        // A stop signal ended the runs: its thread reports that and exits 128+N. What the
        // killed runs say is not a verdict, so nothing of it is printed.
        loop {
            std::thread::park();
        }
    }
    by_instance
}

//! `epollscope fuzz`: seeded random scenarios, run for real and checked against the model of
//! the documented contract (and, under a shim, against the native run). Each finding is
//! shrunk to a minimal scenario file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;

use epollscope::cli;
use epollscope::model::{self, Model, Plant};
use epollscope::scenario::{RunOptions, Scenario, ScenarioReport, parse, run_with};
use epollscope::trace::Format;

use crate::fuzz_gen::{case_seed, generate};

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// The run's seed: the same seed generates byte-identical scenarios.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// How many random scenarios to generate and run.
    #[arg(long, default_value_t = 100, value_parser = cli::count(1..=100_000_000))]
    pub(crate) count: u64,
    /// Scenarios run at once [default: 2 per CPU].
    #[arg(long, short = 'j', value_parser = cli::count_usize(1..=1024))]
    pub(crate) jobs: Option<usize>,
    /// Also run each scenario under the preload shim and compare with the native run.
    #[arg(long, value_enum)]
    pub(crate) under: Option<Shim>,
    /// Write each finding, shrunk, to DIR/finding-<seed>.scn.
    #[arg(long, value_name = "DIR", default_value = "fuzz-findings")]
    pub(crate) out: PathBuf,
    /// Write every generated scenario to DIR/case-<seed>.scn (to inspect or diff a seed).
    #[arg(long, value_name = "DIR")]
    pub(crate) emit: Option<PathBuf>,
    /// Stop starting new cases once this many findings were made.
    #[arg(long, value_name = "N", value_parser = cli::count_usize(1..=1_000_000))]
    pub(crate) max_findings: Option<usize>,
    /// (testing) Judge with a deliberately wrong rule planted in the model.
    #[arg(long, value_enum, hide = true)]
    pub(crate) plant: Option<PlantArg>,
    /// (internal, set by --kernel) print the summary as JSON, for the kernel that ran it.
    #[arg(long, hide = true)]
    json: bool,
    #[command(flatten)]
    pub(crate) vm: crate::kernel::VmArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shim {
    Trace,
    Fastsocket,
}

impl Shim {
    fn name(self) -> &'static str {
        match self {
            Shim::Trace => "trace",
            Shim::Fastsocket => "fastsocket",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlantArg {
    TextbookEt,
}

/// What a finding is about; shrinking keeps a candidate only while the same check fails.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Check {
    /// The kernel returned what the model excludes (rule id).
    Model(String),
    /// The run failed (a bound name's call failed, a step hung, an actor died).
    RunFailed,
    /// The run under the shim failed (natively it passed).
    ShimRunFailed,
    /// The trace-mode shim changed the symbolic trace.
    ShimTrace,
    /// Under fastsocket, a result the model excludes.
    Fastsocket(String),
    /// A result the model says is determined differed between two native runs.
    Determinism,
}

impl Check {
    fn text(&self) -> String {
        match self {
            Check::Model(rule) => {
                format!("observed result outside the model's allowed set (rule {rule})")
            }
            Check::RunFailed => "the run failed".into(),
            Check::ShimRunFailed => "the run under the shim failed (natively it passed)".into(),
            Check::ShimTrace => "the trace-mode shim changed the symbolic trace".into(),
            Check::Fastsocket(rule) => {
                format!("under fastsocket, a result outside the model's allowed set (rule {rule})")
            }
            Check::Determinism => "a determined result differed between two native runs".into(),
        }
    }
}

struct Ctx {
    plant: Option<Plant>,
    /// Every scenario's timeouts multiplied by this (`--timeout-scale`, in emulated guests).
    scale: u32,
    shim: Option<(Shim, RunOptions)>,
    /// Where the time goes (µs, summed over threads): running scenarios, judging them.
    run_us: AtomicU64,
    model_us: AtomicU64,
}

fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    counter.fetch_add(
        u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    out
}

/// Runs one scenario text and returns the first failing check, with a detail line.
fn check(ctx: &Ctx, text: &str) -> Option<(Check, String)> {
    let mut scenario = parse(Path::new("fuzz.scn"), text).ok()?;
    // Timeouts only catch hangs; an emulated guest is slower, not hung.
    scenario.timeout = scenario.timeout.saturating_mul(ctx.scale);
    scenario.step_timeout = scenario.step_timeout.saturating_mul(ctx.scale);
    let family = scenario.families[0];
    let native = timed(&ctx.run_us, || {
        run_with(&scenario, family, &RunOptions::default())
    });
    if let Some(found) = judge(ctx, &scenario, &native, false) {
        return Some(found);
    }
    match &ctx.shim {
        None => {
            // The same scenario again: every promised result must repeat.
            let again = timed(&ctx.run_us, || {
                run_with(&scenario, family, &RunOptions::default())
            });
            if let Some(found) = judge(ctx, &scenario, &again, false) {
                return Some(found);
            }
            let explain = |r: &ScenarioReport| {
                model::explain(&scenario, family, &r.steps, &r.aggregates).judgements
            };
            if let Some(detail) = determined_differs(&explain(&native), &explain(&again)) {
                return Some((Check::Determinism, detail));
            }
        }
        Some((Shim::Trace, options)) => {
            let shimmed = timed(&ctx.run_us, || run_with(&scenario, family, options));
            let (x, y) = (
                native.render_trace(Format::SYMBOLIC),
                shimmed.render_trace(Format::SYMBOLIC),
            );
            if x != y || native.passed != shimmed.passed {
                return Some((Check::ShimTrace, first_difference(&x, &y)));
            }
        }
        Some((Shim::Fastsocket, options)) => {
            let shimmed = timed(&ctx.run_us, || run_with(&scenario, family, options));
            if let Some(found) = judge(ctx, &scenario, &shimmed, true) {
                return Some(found);
            }
        }
    }
    None
}

fn judge(
    ctx: &Ctx,
    scenario: &Scenario,
    r: &ScenarioReport,
    fast: bool,
) -> Option<(Check, String)> {
    let m = match ctx.plant {
        Some(p) => Model::planted(r.family, p),
        None if fast => Model::under_fastsocket(r.family),
        None => Model::new(r.family),
    };
    let ex = timed(&ctx.model_us, || {
        model::explain_with(m, scenario, &r.steps, &r.aggregates)
    });
    if let Some(j) = ex.contradictions().next() {
        let line = scenario.line(epollscope::scenario::Span {
            line: j.line,
            col: j.col,
        });
        let detail = format!("line {}: {line}: got {}, {}", j.line, j.actual, j.explain());
        let id = j.rule.id.to_string();
        return Some((
            if fast {
                Check::Fastsocket(id)
            } else {
                Check::Model(id)
            },
            detail,
        ));
    }
    if !r.passed && fast && hung_where_allowed(&ex, r) {
        // Under the fast path a connection may sit on another worker's listener: a waiter
        // the model does not promise a wake-up may sleep on (rule fastsocket-spawn).
        return None;
    }
    if !r.passed {
        // The failure's own line, not the summary's first (which says only FAIL).
        let detail = r.failure.as_ref().map_or_else(
            || r.summary(),
            |f| format!("line {}: {}: {}", f.line, f.script, f.message),
        );
        let check = if fast {
            Check::ShimRunFailed
        } else {
            Check::RunFailed
        };
        return Some((check, detail));
    }
    None
}

/// Whether `r` failed only because a call never returned whose outcome the model leaves
/// open: a background call it does not promise to be woken, or a foreground call whose result
/// it does not determine (a connect to a listener group whose chosen listener is full).
fn hung_where_allowed(ex: &model::Explanation, r: &ScenarioReport) -> bool {
    let Some(f) = &r.failure else { return false };
    f.message.contains("did not return")
        && (ex
            .blocked
            .iter()
            .any(|&(line, promised)| line == f.line && !promised)
            || ex.stalled == Some((f.line, false)))
}

/// The first result the model determined that differs between two runs of one scenario,
/// as long as every result before it was the same: once two runs took different allowed
/// outcomes (a timed wait that returned before a write in one run and after it in the other),
/// what the model determines next may differ too, and comparing stops.
fn determined_differs(a: &[model::Judgement], b: &[model::Judgement]) -> Option<String> {
    for (x, y) in a.iter().zip(b) {
        if (x.line, &x.actor) != (y.line, &y.actor) {
            return None;
        }
        let (kx, ky) = (outcome(x), outcome(y));
        if kx == ky {
            continue;
        }
        if x.label == model::Label::Promised && y.label == model::Label::Promised {
            return Some(format!(
                "line {}: [{}] got {kx} in one run and {ky} in the other, each promised",
                x.line, x.actor
            ));
        }
        return None;
    }
    None
}

/// What a judged step returned, comparable across runs: a new fd or a pid by the script's
/// name for it (numbers vary), anything else as the kernel returned it.
fn outcome(j: &model::Judgement) -> &str {
    use model::{Allowed, Res};
    match &j.allowed {
        Allowed::Set(set) if matches!(set.as_slice(), [Res::NewFd] | [Res::Pid]) => &j.observed,
        _ => &j.actual,
    }
}

fn first_difference(a: &str, b: &str) -> String {
    for (x, y) in a.lines().zip(b.lines()) {
        if x != y {
            return format!("native: {x} | shim: {y}");
        }
    }
    format!(
        "native {} lines, shim {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

/// One finding, shrunk.
struct Finding {
    seed: u64,
    check: Check,
    detail: String,
    original_lines: usize,
    text: String,
}

/// The fuzz summary a run on one kernel hands back (`--json`).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Summary {
    /// `uname -r` of the kernel that ran the scenarios.
    pub release: String,
    pub scenarios: u64,
    pub seconds: f64,
    pub findings: Vec<SummaryFinding>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SummaryFinding {
    /// The file's name in the findings directory.
    pub file: String,
    pub check: String,
    pub detail: String,
}

/// The running kernel's release, which each finding file names.
fn running_release() -> String {
    nix::sys::utsname::uname().map_or_else(
        |e| format!("unknown ({e})"),
        |u| u.release().to_string_lossy().into_owned(),
    )
}

pub fn fuzz(args: FuzzArgs) -> anyhow::Result<ExitCode> {
    if !args.vm.kernels.is_empty() {
        return crate::fuzz_kernel::fuzz_on_kernels(&args);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the findings directory {}", args.out.display()))?;
    if let Some(dir) = &args.emit {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let shim_dir = std::env::temp_dir().join(format!("epollscope-fuzz-{}", std::process::id()));
    let shim = match args.under {
        None => None,
        Some(which) => {
            // Both modes trace: the trace files are how the run knows the shim loaded at all
            // (tracing changes no result the actors see).
            std::fs::create_dir(&shim_dir)
                .with_context(|| format!("creating {}", shim_dir.display()))?;
            let mode = epollscope::shim::ShimMode {
                trace: Some(epollscope::shim::TraceTarget::Dir(shim_dir.clone())),
                fastpath: matches!(which, Shim::Fastsocket)
                    .then_some(epollscope::fastpath::Requested::Auto),
                ..Default::default()
            };
            let env = epollscope::shim::preload_env(&mode).map_err(anyhow::Error::msg)?;
            let exe = std::env::current_exe().context("locating the epollscope binary")?;
            Some((
                which,
                RunOptions {
                    actor_exe: Some(exe),
                    env,
                    ..RunOptions::default()
                },
            ))
        }
    };
    let ctx = Ctx {
        plant: args.plant.map(|PlantArg::TextbookEt| Plant::TextbookEt),
        scale: args.vm.timeout_scale,
        shim,
        run_us: AtomicU64::new(0),
        model_us: AtomicU64::new(0),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(0);
    let findings: Mutex<Vec<Finding>> = Mutex::new(vec![]);
    let gen_us = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let spawned = std::thread::scope(|s| {
        let mut spawned = 0;
        for _ in 0..jobs {
            // At a process or thread limit run with the threads there are (none: an error).
            let started = std::thread::Builder::new().spawn_scoped(s, || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let found = findings
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .len();
                    if i >= args.count
                        || epollscope::scenario::aborted()
                        || args.max_findings.is_some_and(|m| found >= m)
                    {
                        break;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    let seed = case_seed(args.seed, i);
                    let t = Instant::now();
                    let text = generate(seed);
                    gen_us.fetch_add(
                        u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    if let Some(dir) = &args.emit {
                        let _ = std::fs::write(dir.join(format!("case-{seed}.scn")), &text);
                    }
                    if let Some((check_kind, detail)) = check(&ctx, &text) {
                        let (text, detail) = crate::fuzz_shrink::shrink(&text, &detail, |t| {
                            check(&ctx, t)
                                .filter(|(c, _)| *c == check_kind)
                                .map(|(_, d)| d)
                        });
                        findings
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(Finding {
                                seed,
                                check: check_kind,
                                detail,
                                original_lines: generate(seed).lines().count(),
                                text,
                            });
                    }
                }
            });
            if started.is_ok() {
                spawned += 1;
            }
        }
        spawned
    });
    // A comparison with the shim means something only if the shim was there: it writes a
    // trace file for every actor it runs in.
    let shim_traced = std::fs::read_dir(&shim_dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("trace.")))
    });
    let _ = std::fs::remove_dir_all(&shim_dir);
    if spawned == 0 {
        anyhow::bail!("could not start any worker thread (a process or thread limit?)");
    }
    if let Some(which) = args.under
        && done.load(Ordering::Relaxed) > 0
        && !shim_traced
    {
        anyhow::bail!(
            "--under {}: the shim wrote no trace, so it did not load in the actors and \
             nothing was compared (see the dynamic loader's messages above; EPOLLSCOPE_PRELOAD \
             names the library)",
            which.name()
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut findings = findings
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    findings.sort_by_key(|f| f.seed);
    let ran = done.load(Ordering::Relaxed);
    let release = running_release();
    let mut summary = Summary {
        release: release.clone(),
        scenarios: ran,
        seconds: elapsed,
        findings: vec![],
    };
    for f in &findings {
        let path = args.out.join(format!("finding-{}.scn", f.seed));
        let body: String = f
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = format!(
            "# Found by `epollscope fuzz` (case seed {}) on kernel {release}, shrunk from {} to {} lines.\n# Check: {}\n# {}\n{body}",
            f.seed,
            f.original_lines,
            f.text.lines().count(),
            f.check.text(),
            f.detail.lines().next().unwrap_or(""),
        );
        std::fs::write(&path, file).with_context(|| format!("writing {}", path.display()))?;
        summary.findings.push(SummaryFinding {
            file: format!("finding-{}.scn", f.seed),
            check: f.check.text(),
            detail: f.detail.lines().next().unwrap_or("").to_string(),
        });
        if args.json {
            continue;
        }
        println!(
            "finding: {} ({}): {}",
            path.display(),
            f.check.text(),
            f.detail.lines().next().unwrap_or("")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(exit_status(summary.findings.is_empty()));
    }
    let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1000.0;
    println!(
        "time (summed over {jobs} threads): running scenarios {:.0} ms, model {:.0} ms, generating {:.0} ms",
        ms(&ctx.run_us),
        ms(&ctx.model_us),
        ms(&gen_us),
    );
    println!(
        "fuzz: {ran} scenarios (seed {}, {}), {} findings, {:.1} s, {:.1} scenarios/s",
        args.seed,
        mode_text(args.under),
        findings.len(),
        elapsed,
        ran as f64 / elapsed.max(1e-9),
    );
    Ok(exit_status(findings.is_empty()))
}

/// How each case runs, for the summary line.
pub(crate) fn mode_text(under: Option<Shim>) -> &'static str {
    match under {
        None => "native, each run twice",
        Some(Shim::Trace) => "native and under the trace shim",
        Some(Shim::Fastsocket) => "native and under fastsocket",
    }
}

/// 0 when nothing was found, 1 otherwise.
pub(crate) fn exit_status(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::determined_differs;
    use epollscope::model::{Allowed, Judgement, Label, Res, rules};

    fn j(line: usize, label: Label, actual: &str) -> Judgement {
        Judgement {
            line,
            col: 1,
            actor: "w1".into(),
            label,
            rule: &rules::WAIT_LT,
            allowed: Allowed::Set(vec![Res::Range(0, 1)]),
            observed: "[?]".into(),
            actual: actual.into(),
            note: None,
        }
    }

    /// One run's judgements: (line, label, what was returned).
    type Run<'a> = &'a [(usize, Label, &'a str)];

    #[test]
    fn a_promised_result_that_differs_after_identical_results_is_a_finding() {
        use Label::{Allowed as A, Promised as P};
        let cases: &[(Run, Run, bool)] = &[
            // Same prefix, then a promised result differs: the kernel (or the model) is wrong.
            (
                &[(1, P, "0"), (2, P, "1")],
                &[(1, P, "0"), (2, P, "0")],
                true,
            ),
            // The values the script leaves open (`= ?`) are compared by what was returned.
            (
                &[(1, A, "1"), (2, P, "1")],
                &[(1, A, "1"), (2, P, "0")],
                true,
            ),
            // An allowed result differed first: what follows may differ, nothing to report.
            (
                &[(1, A, "1"), (2, P, "1")],
                &[(1, A, "0"), (2, P, "0")],
                false,
            ),
            // Promised in one run only, after the runs diverged.
            (
                &[(1, A, "1"), (2, P, "1")],
                &[(1, A, "0"), (2, A, "0")],
                false,
            ),
            // One run has a judgement more (a background result collected): no difference.
            (&[(1, P, "0"), (2, P, "1")], &[(1, P, "0")], false),
        ];
        for (a, b, found) in cases {
            let a: Vec<Judgement> = a.iter().map(|&(l, lab, v)| j(l, lab, v)).collect();
            let b: Vec<Judgement> = b.iter().map(|&(l, lab, v)| j(l, lab, v)).collect();
            assert_eq!(
                determined_differs(&a, &b).is_some(),
                *found,
                "{a:?} vs {b:?}"
            );
        }
    }
}

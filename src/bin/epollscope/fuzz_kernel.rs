//! `epollscope fuzz --kernel ...`: the same fuzz run (seed, count, jobs, shim) on each kernel,
//! natively for `host` and inside a VM for an image (the VM machinery of `run --kernel`). The
//! run on each kernel is `epollscope fuzz --json` itself; its findings come back through the
//! guest's shared directory into `--out/<host or release>/`, each file naming its kernel.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use epollscope::scenario::parse;
use epollscope::vm::matrix::kernel_label;
use epollscope::vm::plan::{self, GuestRun, out_subdir};

use crate::fuzz::{FuzzArgs, PlantArg, Shim, Summary, exit_status};
use crate::fuzz_gen::{case_seed, generate};
use crate::kernel;

pub fn fuzz_on_kernels(args: &FuzzArgs) -> anyhow::Result<ExitCode> {
    if args.emit.is_some() {
        bail!(
            "--emit cannot be combined with --kernel (the scenarios are the same on every \
             kernel: emit them without --kernel)"
        );
    }
    let kernels = kernel::resolve_kernels(&args.vm.kernels)?;
    let mut seen = HashSet::new();
    for (spec, k) in &kernels {
        if !seen.insert(out_subdir(k)) {
            bail!(
                "--kernel {spec}: kernel {} is given twice",
                k.release().text
            );
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the findings directory {}", args.out.display()))?;
    let jobs = kernel::vm_jobs(args.jobs);
    let mut command: Vec<OsString> = ["fuzz", "--json", "--seed"]
        .into_iter()
        .map(OsString::from)
        .collect();
    command.extend([
        args.seed.to_string().into(),
        "--count".into(),
        args.count.to_string().into(),
        "--jobs".into(),
        jobs.to_string().into(),
    ]);
    if let Some(under) = args.under {
        let name = match under {
            Shim::Trace => "trace",
            Shim::Fastsocket => "fastsocket",
        };
        command.extend(["--under".into(), name.into()]);
    }
    if let Some(max) = args.max_findings {
        command.extend(["--max-findings".into(), max.to_string().into()]);
    }
    if let Some(PlantArg::TextbookEt) = args.plant {
        command.extend(["--plant".into(), "textbook-et".into()]);
    }
    let (mut plan, scale) = kernel::vm_plan(&args.vm, kernels, command, allowance(args, jobs))?;
    plan.out = Some(("--out".into(), args.out.clone()));
    if args.under.is_some() {
        // Found (and, from a release build, extracted) here, where the user's cache is
        // writable: the guest sees the same file but its root file system is read-only.
        let shim = epollscope::shim::preload_path().map_err(anyhow::Error::msg)?;
        plan.env
            .push((epollscope::shim::ENV_PRELOAD.into(), shim.into_os_string()));
    }
    let reports = plan::run_each(
        &plan,
        &|accel, why| kernel::say_accel(accel, &why, scale),
        &|g| report(args, &plan, g),
    )?;
    let mut clean = true;
    for (text, ok) in reports {
        print!("{text}");
        clean &= ok;
    }
    Ok(exit_status(clean))
}

/// The most one kernel's fuzz run may take once started: every case run twice (natively
/// twice, or natively and under the shim), each within its scenario timeout, laid out on
/// `jobs` slots, plus a minute. Generated cases take milliseconds: this catches a wedged
/// guest, not a slow case (a run that shrinks many findings may need more: --max-findings).
fn allowance(args: &FuzzArgs, jobs: usize) -> Duration {
    let timeout = parse(Path::new("fuzz.scn"), &generate(case_seed(args.seed, 0)))
        .map_or(Duration::from_secs(10), |s| s.timeout);
    let runs = args.count.saturating_mul(2);
    let jobs = u64::try_from(jobs.max(1)).unwrap_or(u64::MAX);
    let per_slot = u32::try_from(runs.div_ceil(jobs)).unwrap_or(u32::MAX);
    timeout.saturating_mul(per_slot) + timeout + Duration::from_secs(60)
}

/// One kernel's summary line and findings, and whether it ran and found nothing.
fn report(args: &FuzzArgs, plan: &plan::Plan, g: GuestRun) -> (String, bool) {
    let release = g
        .outcome
        .as_ref()
        .ok()
        .and_then(|o| o.release.clone())
        .unwrap_or_else(|| g.kernel.release().text.clone());
    let label = kernel_label(&release, g.accel);
    let outcome = match g.outcome {
        Ok(o) => o,
        Err(e) => {
            kernel::say_done(&label, None, 0.0, Some(&e.to_string()));
            return (format!("fuzz on {label}: no result: {e}\n"), false);
        }
    };
    let boot_s = outcome
        .boot_time
        .filter(|_| !g.host)
        .map(|d| d.as_secs_f64());
    let summary = match outcome.no_result("fuzz", (plan.boot_timeout, g.run_timeout)) {
        Some(why) => Err(why),
        None => serde_json::from_str::<Summary>(outcome.json.as_deref().unwrap_or(""))
            .map_err(|e| format!("the guest's fuzz summary does not parse: {e}")),
    };
    kernel::say_done(
        &label,
        boot_s,
        outcome.wall.as_secs_f64(),
        summary.as_ref().err().map(String::as_str),
    );
    let summary = match summary {
        Ok(s) => s,
        Err(why) => return (format!("fuzz on {label}: no result: {why}\n"), false),
    };
    let dir = args.out.join(out_subdir(g.kernel));
    let mut text = String::new();
    let _ = writeln!(
        text,
        "fuzz on {}: {} scenarios (seed {}, {}), {} findings, {:.1} s",
        kernel_label(&summary.release, g.accel),
        summary.scenarios,
        args.seed,
        crate::fuzz::mode_text(args.under),
        summary.findings.len(),
        summary.seconds,
    );
    let mut ok = summary.findings.is_empty();
    for f in &summary.findings {
        let missing = if outcome.files.contains(&f.file) {
            ""
        } else {
            ok = false;
            " [the file did not come back]"
        };
        let _ = writeln!(
            text,
            "finding: {}{missing} ({}): {}",
            dir.join(&f.file).display(),
            f.check,
            f.detail
        );
    }
    (text, ok)
}

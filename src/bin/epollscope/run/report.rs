//! Reporting the runs: one run of every instance (text or JSON, and the JUnit, HTML and TAP
//! files), or each instance's native and Fastsocket runs side by side.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use epollscope::addr::Family;
use epollscope::scenario::compare::{Difference, comparison_lines, differences, side_by_side};
use epollscope::scenario::{ScenarioReport, is_flaky, junit};
use epollscope::trace::Format;

use super::{RunArgs, Under};

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
pub(super) fn report(
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
pub(super) fn compare(
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

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

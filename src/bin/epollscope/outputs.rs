//! The report files `run` writes next to its output besides JUnit: `--html` (the timelines,
//! [`crate::html`]) and `--tap` (TAP version 13), for plain runs, `--under both` pairs and the
//! kernel matrix. Both files are opened before anything runs,
//! so a long run cannot end in an unwritable path.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use epollscope::scenario::report::{Failure, ScenarioReport};
use epollscope::vm::matrix::{Matrix, Verdict};

use crate::html::{self, Panel};

/// The opened report files.
pub struct Outputs {
    html: Option<(PathBuf, File)>,
    tap: Option<(PathBuf, File)>,
}

fn open(path: &Option<PathBuf>, what: &str) -> anyhow::Result<Option<(PathBuf, File)>> {
    path.as_ref()
        .map(|p| {
            File::create(p)
                .with_context(|| format!("opening the {what} {}", p.display()))
                .map(|f| (p.clone(), f))
        })
        .transpose()
}

impl Outputs {
    pub fn open(html: &Option<PathBuf>, tap: &Option<PathBuf>) -> anyhow::Result<Outputs> {
        Ok(Outputs {
            html: open(html, "HTML report")?,
            tap: open(tap, "TAP report")?,
        })
    }

    /// One run of each instance.
    pub fn single(self, reports: &[ScenarioReport]) -> anyhow::Result<()> {
        let rows: Vec<Vec<Panel>> = reports
            .iter()
            .map(|r| vec![Panel::of_report(r, "")])
            .collect();
        let tests: Vec<(&ScenarioReport, &str)> = reports.iter().map(|r| (r, "")).collect();
        self.write(&rows, &tests)
    }

    /// Native and Fastsocket runs of each instance, side by side. In TAP the Fastsocket run
    /// is a TODO test: what the shim changes is reported, not failed (as the exit code).
    pub fn pairs(self, pairs: &[(&ScenarioReport, &ScenarioReport)]) -> anyhow::Result<()> {
        let rows: Vec<Vec<Panel>> = pairs
            .iter()
            .map(|(n, f)| {
                vec![
                    Panel::of_report(n, "native"),
                    Panel::of_report(f, "fastsocket"),
                ]
            })
            .collect();
        let tests: Vec<(&ScenarioReport, &str)> = pairs
            .iter()
            .flat_map(|&(n, f)| [(n, "native"), (f, "fastsocket")])
            .collect();
        self.write(&rows, &tests)
    }

    /// The kernel matrix: each instance's run on every kernel side by side; in TAP one test
    /// per instance and kernel.
    pub fn matrix(self, m: &Matrix) -> anyhow::Result<()> {
        self.write_texts(
            || html::page("epollscope run --kernel", &html::matrix_rows(m)),
            || tap_matrix(m),
        )
    }

    fn write(self, rows: &[Vec<Panel>], tests: &[(&ScenarioReport, &str)]) -> anyhow::Result<()> {
        self.write_texts(|| html::page("epollscope run", rows), || tap(tests))
    }

    fn write_texts(
        self,
        html: impl FnOnce() -> String,
        tap: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if let Some((path, mut file)) = self.html {
            file.write_all(html().as_bytes())
                .with_context(|| format!("writing the HTML report {}", path.display()))?;
        }
        if let Some((path, mut file)) = self.tap {
            file.write_all(tap().as_bytes())
                .with_context(|| format!("writing the TAP report {}", path.display()))?;
        }
        Ok(())
    }
}

/// A TAP description: '#' would start a directive.
fn tap_text(text: &str) -> String {
    text.replace('#', "\\#")
}

/// The YAML block under a failed TAP test.
fn tap_failure(out: &mut String, at: &str, f: &Failure) {
    let yaml = |s: &str| serde_json::to_string(s).unwrap_or_default();
    out.push_str("  ---\n");
    out.push_str(&format!("  message: {}\n", yaml(&f.message)));
    out.push_str(&format!(
        "  at: {}\n",
        yaml(&format!("{at}:{}:{}", f.line, f.col))
    ));
    out.push_str(&format!("  expected: {}\n", yaml(&f.script)));
    if let Some(a) = &f.actual {
        out.push_str(&format!("  actual: {}\n", yaml(a)));
    }
    out.push_str("  ...\n");
}

/// TAP for the kernel matrix: one test per instance and kernel, a skip as `# SKIP`, a kernel
/// without a result as a failure with its reason.
pub fn tap_matrix(m: &Matrix) -> String {
    let tests = m.rows.len() * m.kernels.len();
    let mut out = format!("TAP version 13\n1..{tests}\n");
    let mut n = 0;
    for row in &m.rows {
        for cell in &row.kernels {
            n += 1;
            let what = tap_text(&format!(
                "{} [{}] on {}",
                row.path.display(),
                row.family,
                cell.kernel_release
            ));
            match &cell.verdict {
                Verdict::Pass => out.push_str(&format!("ok {n} - {what}\n")),
                Verdict::Skip { reason } => {
                    out.push_str(&format!("ok {n} - {what} # SKIP {}\n", tap_text(reason)))
                }
                Verdict::Fail { failure } => {
                    out.push_str(&format!("not ok {n} - {what}\n"));
                    if let Some(f) = failure {
                        tap_failure(&mut out, &row.path.display().to_string(), &f.into());
                    }
                }
                Verdict::Missing { reason } => {
                    out.push_str(&format!("not ok {n} - {what}\n"));
                    let yaml =
                        serde_json::to_string(&format!("no result: {reason}")).unwrap_or_default();
                    out.push_str(&format!("  ---\n  message: {yaml}\n  ...\n"));
                }
            }
        }
    }
    out
}

/// TAP version 13: one test per instance (per run with `--under both`), the failure as a YAML
/// block.
pub fn tap(tests: &[(&ScenarioReport, &str)]) -> String {
    let mut out = format!("TAP version 13\n1..{}\n", tests.len());
    for (i, (r, under)) in tests.iter().enumerate() {
        // A skip (a `kernel:` requirement not met) is not a failure; '#' in the reason
        // would start another directive.
        let directive = match (&r.skipped, *under) {
            (Some(reason), _) => format!(" # SKIP {}", tap_text(reason)),
            (None, "fastsocket") => " # TODO under fastsocket: reported, not failed".into(),
            (None, _) => String::new(),
        };
        let label = if under.is_empty() {
            String::new()
        } else {
            format!(" under {under}")
        };
        out.push_str(&format!(
            "{} {} - {} [{}]{label}{directive}\n",
            if r.passed || r.skipped.is_some() {
                "ok"
            } else {
                "not ok"
            },
            i + 1,
            tap_text(&r.path.display().to_string()),
            r.family
        ));
        if let Some(f) = &r.failure {
            tap_failure(&mut out, &r.path.display().to_string(), f);
        }
    }
    out
}

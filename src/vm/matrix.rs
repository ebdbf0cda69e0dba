//! The kernel matrix report: each kernel's `run --json` document, instance by instance, side
//! by side: PASS/FAIL/SKIP per kernel, whether the symbolic traces agree (the differing lines
//! marked against the first kernel that ran the instance), and a closing count per kernel.
//! Each instance keeps its raw events too, for the `--html` timelines side by side.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::VmError;
use super::guest::{Accel, GuestOutcome};
use crate::scenario::compare::side_by_side;
use crate::trace::Event;

/// A scenario failure as `run --json` writes it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Failure {
    pub line: usize,
    pub col: usize,
    pub script: String,
    pub actual: Option<String>,
    pub message: String,
}

/// One instance from a `run --json` document (the fields the matrix uses).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Instance {
    pub name: String,
    pub path: PathBuf,
    pub family: String,
    pub passed: bool,
    /// Why the instance did not run on this kernel (its `kernel:` requirement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(default)]
    pub failure: Option<Failure>,
    pub duration_ms: f64,
    #[serde(default)]
    pub symbolic_trace: String,
    /// The raw events with their times (the `--html` timelines). Older documents have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<Event>,
}

impl From<&Failure> for crate::scenario::report::Failure {
    fn from(f: &Failure) -> Self {
        crate::scenario::report::Failure {
            line: f.line,
            col: f.col,
            script: f.script.clone(),
            actual: f.actual.clone(),
            message: f.message.clone(),
        }
    }
}

#[derive(Deserialize)]
struct RunDocument {
    scenarios: Vec<Instance>,
}

/// Parses a `run --json` document.
pub fn parse_run_json(text: &str) -> Result<Vec<Instance>, VmError> {
    serde_json::from_str::<RunDocument>(text)
        .map(|d| d.scenarios)
        .map_err(|e| VmError::BadResult(e.to_string()))
}

/// Everything one kernel gave back.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRun {
    /// As given to `--kernel`.
    pub spec: String,
    /// `uname -r` where the scenarios ran (the image's header release when it never ran).
    pub release: String,
    pub host: bool,
    /// `None` for the host kernel (no VM).
    pub accel: Option<Accel>,
    pub boot_s: Option<f64>,
    pub wall_s: f64,
    pub exit_status: Option<i32>,
    /// Why this kernel has no (or partial) results: a boot that never finished, a run killed at
    /// its deadline, an unusable document.
    pub error: Option<String>,
    #[serde(skip)]
    pub instances: Vec<Instance>,
}

impl KernelRun {
    /// Builds a kernel's entry from what its run gave back.
    pub fn from_outcome(
        spec: String,
        image_release: String,
        host: bool,
        accel: Option<Accel>,
        outcome: &GuestOutcome,
        timeouts: (std::time::Duration, std::time::Duration),
    ) -> KernelRun {
        let mut error = outcome.no_result("run", timeouts);
        let mut instances = vec![];
        if let (None, Some(json)) = (&error, &outcome.json) {
            match parse_run_json(json) {
                Ok(list) => instances = list,
                Err(e) => error = Some(e.to_string()),
            }
        }
        KernelRun {
            spec,
            release: outcome.release.clone().unwrap_or(image_release),
            host,
            accel,
            boot_s: outcome.boot_time.map(|d| d.as_secs_f64()),
            wall_s: outcome.wall.as_secs_f64(),
            exit_status: outcome.status,
            error,
            instances,
        }
    }

    /// `6.1.0-57-amd64 (emulated (TCG))` or `6.18.4 (host)`.
    pub fn label(&self) -> String {
        kernel_label(&self.release, self.accel)
    }
}

/// `6.1.0-57-amd64 (emulated (TCG))` for a VM, `6.18.4 (host)` for the running kernel.
pub fn kernel_label(release: &str, accel: Option<Accel>) -> String {
    match accel {
        None => format!("{release} (host)"),
        Some(a) => format!("{release} ({})", a.describe()),
    }
}

/// An instance's verdict on one kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail {
        failure: Option<Failure>,
    },
    Skip {
        reason: String,
    },
    /// No result from this kernel (it did not boot, hung, or crashed).
    Missing {
        reason: String,
    },
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail { .. } => "FAIL",
            Verdict::Skip { .. } => "SKIP",
            Verdict::Missing { .. } => "NO RESULT",
        }
    }

    fn ran(&self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Fail { .. })
    }
}

/// One instance on one kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub kernel_release: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Whether the symbolic trace equals the reference kernel's (the first that ran it).
    pub same_trace_as_reference: Option<bool>,
    pub duration_ms: Option<f64>,
    pub symbolic_trace: Option<String>,
}

/// One scenario instance across the kernels.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub path: PathBuf,
    pub family: String,
    /// The release whose trace the others are compared with.
    pub reference: Option<String>,
    pub same_trace: bool,
    pub kernels: Vec<Cell>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub kernels: Vec<KernelRun>,
    pub rows: Vec<Row>,
}

/// Counts for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub missing: usize,
    /// Instances whose trace differs from the reference kernel's.
    pub traces_differ: usize,
}

impl Matrix {
    /// Lines up every kernel's instances: the `expected` ones (path, family, name) first, so a
    /// kernel that gave nothing back shows each as without result, then any others in the
    /// order they first appear.
    pub fn build(expected: Vec<(PathBuf, String, String)>, kernels: Vec<KernelRun>) -> Matrix {
        let mut keys = expected;
        for k in &kernels {
            for i in &k.instances {
                if !keys.iter().any(|(p, f, _)| *p == i.path && *f == i.family) {
                    keys.push((i.path.clone(), i.family.clone(), i.name.clone()));
                }
            }
        }
        let rows = keys
            .into_iter()
            .map(|(path, family, name)| {
                let mut cells: Vec<Cell> =
                    kernels.iter().map(|k| cell(k, &path, &family)).collect();
                let reference = cells.iter().position(|c| c.verdict.ran());
                let reference_trace = reference.and_then(|r| cells[r].symbolic_trace.clone());
                for c in &mut cells {
                    if c.verdict.ran() {
                        c.same_trace_as_reference = Some(c.symbolic_trace == reference_trace);
                    }
                }
                Row {
                    same_trace: cells
                        .iter()
                        .all(|c| c.same_trace_as_reference != Some(false)),
                    reference: reference.map(|r| cells[r].kernel_release.clone()),
                    name,
                    path,
                    family,
                    kernels: cells,
                }
            })
            .collect();
        Matrix { kernels, rows }
    }

    pub fn count(&self, kernel: usize) -> Count {
        let mut count = Count::default();
        for row in &self.rows {
            let c = &row.kernels[kernel];
            match c.verdict {
                Verdict::Pass => count.passed += 1,
                Verdict::Fail { .. } => count.failed += 1,
                Verdict::Skip { .. } => count.skipped += 1,
                Verdict::Missing { .. } => count.missing += 1,
            }
            count.traces_differ += usize::from(c.same_trace_as_reference == Some(false));
        }
        count
    }

    /// Whether every instance passed or was skipped on every kernel, and every kernel ran.
    pub fn all_passed(&self) -> bool {
        self.kernels.iter().all(|k| k.error.is_none())
            && (0..self.kernels.len()).all(|k| {
                let c = self.count(k);
                c.failed == 0 && c.missing == 0
            })
    }

    /// The side-by-side text report.
    pub fn render_text(&self, width: usize) -> String {
        let mut out = String::new();
        for k in &self.kernels {
            if let Some(e) = &k.error {
                let _ = writeln!(out, "{}: {e}", k.label());
            }
        }
        for row in &self.rows {
            let verdicts: Vec<String> = row
                .kernels
                .iter()
                .map(|c| format!("{} {}", c.kernel_release, c.verdict.word()))
                .collect();
            let ran = row.kernels.iter().filter(|c| c.verdict.ran()).count();
            let _ = writeln!(
                out,
                "{} [{}]: {}{}",
                row.path.display(),
                row.family,
                verdicts.join(", "),
                if row.same_trace && ran > 1 {
                    ", same trace"
                } else {
                    ""
                }
            );
            for c in &row.kernels {
                match &c.verdict {
                    Verdict::Fail {
                        failure: Some(f), ..
                    } => {
                        let _ = writeln!(
                            out,
                            "  {}: {}:{}:{}: {}\n  {}:   script: {}",
                            c.kernel_release,
                            row.path.display(),
                            f.line,
                            f.col,
                            f.message,
                            c.kernel_release,
                            f.script
                        );
                        if let Some(actual) = &f.actual {
                            let _ = writeln!(out, "  {}:   actual: {actual}", c.kernel_release);
                        }
                    }
                    Verdict::Skip { reason } => {
                        let _ = writeln!(out, "  {}: skipped: {reason}", c.kernel_release);
                    }
                    _ => {}
                }
            }
            let reference = row
                .kernels
                .iter()
                .find(|c| c.verdict.ran() && c.same_trace_as_reference == Some(true));
            for c in row
                .kernels
                .iter()
                .filter(|c| c.same_trace_as_reference == Some(false))
            {
                let (Some(reference), Some(trace)) = (reference, &c.symbolic_trace) else {
                    continue;
                };
                let lines = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
                let left = lines(reference.symbolic_trace.as_deref().unwrap_or(""));
                let right = lines(trace);
                let _ = writeln!(
                    out,
                    "  {:<width$}   {}",
                    reference.kernel_release, c.kernel_release
                );
                for line in side_by_side(&left, &right, width).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        let reference = self.kernels.first().map_or("", |k| k.release.as_str());
        for (i, k) in self.kernels.iter().enumerate() {
            let c = self.count(i);
            let mut line = format!(
                "{}: {} passed, {} failed, {} skipped",
                k.label(),
                c.passed,
                c.failed,
                c.skipped
            );
            if c.missing > 0 {
                let _ = write!(line, ", {} without result", c.missing);
            }
            if i > 0 {
                let _ = write!(line, "; {} traces differ from {reference}", c.traces_differ);
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// A Markdown table, one row per scenario (phenomenon) and one column per kernel, and
    /// below it each failure and each trace difference with its first differing line. A cell
    /// is one word when every family agrees, otherwise the word per family.
    pub fn render_markdown(&self) -> String {
        let mut out = String::from("| scenario | families |");
        for k in &self.kernels {
            let _ = write!(out, " {} |", k.label());
        }
        out.push_str("\n| --- | --- |");
        for _ in &self.kernels {
            out.push_str(" --- |");
        }
        out.push('\n');
        let mut groups: Vec<Vec<&Row>> = vec![];
        for row in &self.rows {
            match groups.iter_mut().find(|g| g[0].path == row.path) {
                Some(group) => group.push(row),
                None => groups.push(vec![row]),
            }
        }
        let word = |c: &Cell| {
            let mark = if c.same_trace_as_reference == Some(false) {
                " (trace differs)"
            } else {
                ""
            };
            format!("{}{mark}", c.verdict.word())
        };
        for group in groups {
            let families: Vec<&str> = group.iter().map(|r| r.family.as_str()).collect();
            let _ = write!(out, "| {} | {} |", group[0].name, families.join(" "));
            for k in 0..self.kernels.len() {
                let words: Vec<String> = group.iter().map(|r| word(&r.kernels[k])).collect();
                let cell = if words.iter().all(|w| *w == words[0]) {
                    words[0].clone()
                } else {
                    let per: Vec<String> = families
                        .iter()
                        .zip(&words)
                        .map(|(f, w)| format!("{f}: {w}"))
                        .collect();
                    per.join(", ")
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        let failures: Vec<(&Row, &Cell, &Failure)> = self
            .rows
            .iter()
            .flat_map(|r| r.kernels.iter().map(move |c| (r, c)))
            .filter_map(|(r, c)| match &c.verdict {
                Verdict::Fail { failure: Some(f) } => Some((r, c, f)),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            out.push_str("\nFailures:\n\n");
        }
        for (row, c, f) in failures {
            let _ = writeln!(
                out,
                "- {} [{}] on {}: line {}: {}",
                row.name, row.family, c.kernel_release, f.line, f.message
            );
        }
        let differing: Vec<&Row> = self.rows.iter().filter(|r| !r.same_trace).collect();
        if differing.is_empty() {
            out.push_str(
                "\nEvery instance that ran on more than one kernel has the same symbolic trace on each.\n",
            );
        } else {
            out.push_str("\nTrace differences (first differing line):\n\n");
        }
        for row in differing {
            let reference = row
                .kernels
                .iter()
                .find(|c| c.same_trace_as_reference == Some(true));
            for c in row
                .kernels
                .iter()
                .filter(|c| c.same_trace_as_reference == Some(false))
            {
                let Some(reference) = reference else { continue };
                let left = reference.symbolic_trace.as_deref().unwrap_or("");
                let right = c.symbolic_trace.as_deref().unwrap_or("");
                let first = left
                    .lines()
                    .map(Some)
                    .chain(std::iter::repeat(None))
                    .zip(right.lines().map(Some).chain(std::iter::repeat(None)))
                    .take(left.lines().count().max(right.lines().count()))
                    .find(|(l, r)| l != r);
                if let Some((l, r)) = first {
                    let _ = writeln!(
                        out,
                        "- {} [{}]: {} has `{}`, {} has `{}`",
                        row.name,
                        row.family,
                        reference.kernel_release,
                        l.unwrap_or("(nothing)").trim(),
                        c.kernel_release,
                        r.unwrap_or("(nothing)").trim()
                    );
                }
            }
        }
        out
    }

    /// The JSON document: kernels, every instance with each kernel's verdict and trace, totals.
    pub fn to_json(&self) -> serde_json::Value {
        let totals: Vec<serde_json::Value> = self
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| serde_json::json!({ "kernel_release": k.release, "counts": self.count(i) }))
            .collect();
        serde_json::json!({
            "kernels": self.kernels,
            "instances": self.rows,
            "totals": totals,
        })
    }

    /// JUnit XML: one testsuite per kernel, each test case named with its kernel's release.
    pub fn render_junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        for (i, k) in self.kernels.iter().enumerate() {
            let c = self.count(i);
            let _ = writeln!(
                out,
                "  <testsuite name=\"epollscope on {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
                xml(&k.release),
                self.rows.len(),
                c.failed,
                c.missing,
                c.skipped
            );
            for row in &self.rows {
                let cell = &row.kernels[i];
                let _ = write!(
                    out,
                    "    <testcase classname=\"{}\" name=\"{} [{}] on {}\" time=\"{:.3}\"",
                    xml(&row.path.display().to_string()),
                    xml(&row.name),
                    xml(&row.family),
                    xml(&k.release),
                    cell.duration_ms.unwrap_or(0.0) / 1000.0
                );
                match &cell.verdict {
                    Verdict::Pass => out.push_str("/>\n"),
                    Verdict::Fail { failure } => {
                        let message = failure.as_ref().map_or("failed", |f| f.message.as_str());
                        let _ = writeln!(
                            out,
                            ">\n      <failure message=\"{}\"/>\n    </testcase>",
                            xml(message)
                        );
                    }
                    Verdict::Skip { reason } => {
                        let _ = writeln!(
                            out,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            xml(reason)
                        );
                    }
                    Verdict::Missing { reason } => {
                        let _ = writeln!(
                            out,
                            ">\n      <error message=\"{}\"/>\n    </testcase>",
                            xml(reason)
                        );
                    }
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell(kernel: &KernelRun, path: &PathBuf, family: &str) -> Cell {
    let found = kernel
        .instances
        .iter()
        .find(|i| i.path == *path && i.family == family);
    let (verdict, duration_ms, symbolic_trace) = match found {
        Some(i) => match &i.skipped {
            Some(reason) => (
                Verdict::Skip {
                    reason: reason.clone(),
                },
                None,
                None,
            ),
            None if i.passed => (
                Verdict::Pass,
                Some(i.duration_ms),
                Some(i.symbolic_trace.clone()),
            ),
            None => (
                Verdict::Fail {
                    failure: i.failure.clone(),
                },
                Some(i.duration_ms),
                Some(i.symbolic_trace.clone()),
            ),
        },
        None => (
            Verdict::Missing {
                reason: kernel
                    .error
                    .clone()
                    .unwrap_or_else(|| "not in this kernel's results".into()),
            },
            None,
            None,
        ),
    };
    Cell {
        kernel_release: kernel.release.clone(),
        verdict,
        same_trace_as_reference: None,
        duration_ms,
        symbolic_trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(path: &str, family: &str, passed: bool, trace: &str) -> Instance {
        Instance {
            name: path.trim_end_matches(".scn").into(),
            path: path.into(),
            family: family.into(),
            passed,
            skipped: None,
            failure: (!passed).then(|| Failure {
                line: 3,
                col: 1,
                script: "accept(L) = A".into(),
                actual: Some("accept(L) = -1 EAGAIN".into()),
                message: "expected A".into(),
            }),
            duration_ms: 1.0,
            symbolic_trace: trace.into(),
            trace: vec![],
        }
    }

    fn kernel(release: &str, accel: Option<Accel>, instances: Vec<Instance>) -> KernelRun {
        KernelRun {
            spec: release.into(),
            release: release.into(),
            host: accel.is_none(),
            accel,
            boot_s: None,
            wall_s: 1.0,
            exit_status: Some(0),
            error: None,
            instances,
        }
    }

    fn sample() -> Matrix {
        let mut skipped = instance("b.scn", "inet", true, "");
        skipped.skipped = Some("needs kernel >= 7.0, this is 6.1.0".into());
        Matrix::build(
            vec![],
            vec![
                kernel(
                    "6.18.4",
                    None,
                    vec![
                        instance("a.scn", "inet", true, "x\ny\n"),
                        instance("b.scn", "inet", true, "b\n"),
                    ],
                ),
                kernel(
                    "6.1.0",
                    Some(Accel::Tcg),
                    vec![instance("a.scn", "inet", false, "x\nz\n"), skipped],
                ),
            ],
        )
    }

    #[test]
    fn side_by_side_marks_verdicts_traces_and_counts() {
        let m = sample();
        assert_eq!(
            m.render_text(10),
            "\
a.scn [inet]: 6.18.4 PASS, 6.1.0 FAIL
  6.1.0: a.scn:3:1: expected A
  6.1.0:   script: accept(L) = A
  6.1.0:   actual: accept(L) = -1 EAGAIN
  6.18.4       6.1.0
    x            x
    y          | z
b.scn [inet]: 6.18.4 PASS, 6.1.0 SKIP
  6.1.0: skipped: needs kernel >= 7.0, this is 6.1.0
6.18.4 (host): 2 passed, 0 failed, 0 skipped
6.1.0 (emulated (TCG)): 0 passed, 1 failed, 1 skipped; 1 traces differ from 6.18.4
"
        );
        assert!(!m.all_passed());
        assert_eq!(
            m.render_markdown(),
            "\
| scenario | families | 6.18.4 (host) | 6.1.0 (emulated (TCG)) |
| --- | --- | --- | --- |
| a | inet | PASS | FAIL (trace differs) |
| b | inet | PASS | SKIP |

Failures:

- a [inet] on 6.1.0: line 3: expected A

Trace differences (first differing line):

- a [inet]: 6.18.4 has `y`, 6.1.0 has `z`
"
        );
    }

    #[test]
    fn markdown_has_one_row_per_scenario_and_splits_only_disagreeing_cells() {
        let m = Matrix::build(
            vec![],
            vec![
                kernel(
                    "6.18.4",
                    None,
                    vec![
                        instance("a.scn", "unix", true, "x\n"),
                        instance("a.scn", "inet", true, "x\n"),
                    ],
                ),
                kernel(
                    "6.1.0",
                    Some(Accel::Tcg),
                    vec![
                        instance("a.scn", "unix", true, "x\n"),
                        instance("a.scn", "inet", true, "y\n"),
                    ],
                ),
            ],
        );
        let markdown = m.render_markdown();
        assert_eq!(
            markdown.lines().nth(2).unwrap(),
            "| a | unix inet | PASS | unix: PASS, inet: PASS (trace differs) |"
        );
    }

    #[test]
    fn json_and_junit_name_each_instance_kernel() {
        let m = sample();
        let json = m.to_json();
        let cells = &json["instances"][0]["kernels"];
        assert_eq!(cells[0]["kernel_release"], "6.18.4");
        assert_eq!(cells[1]["kernel_release"], "6.1.0");
        assert_eq!(cells[1]["verdict"], "fail");
        assert_eq!(json["instances"][1]["kernels"][1]["verdict"], "skip");
        assert_eq!(json["totals"][1]["counts"]["traces_differ"], 1);
        let junit = m.render_junit();
        assert!(junit.contains("name=\"a [inet] on 6.1.0\""), "{junit}");
        assert!(
            junit.contains("<skipped message=\"needs kernel &gt;= 7.0"),
            "{junit}"
        );
    }

    #[test]
    fn a_run_document_keeps_each_instances_raw_events() {
        let doc = r#"{"scenarios": [{"name": "a", "path": "a.scn", "family": "unix",
            "passed": true, "failure": null, "duration_ms": 1.5, "symbolic_trace": "x\n",
            "trace": [{"actor": "main", "pid": 9, "time_us": 100, "dur_us": 250,
                       "call": "listen", "fd": {"num": 3, "name": "L"}, "backlog": 128, "ret": {"ok": {"value": 0}}}]},
            {"name": "b", "path": "b.scn", "family": "unix", "passed": true,
             "failure": null, "duration_ms": 1.0}]}"#;
        let instances = parse_run_json(doc).unwrap();
        assert_eq!(instances[0].trace.len(), 1);
        let e = &instances[0].trace[0];
        assert_eq!(
            (e.actor.as_str(), e.pid, e.time_us, e.dur_us),
            ("main", 9, 100, 250)
        );
        assert!(instances[1].trace.is_empty());
    }

    #[test]
    fn a_kernel_without_results_is_no_result_not_pass() {
        let mut dead = kernel("5.10.0", Some(Accel::Tcg), vec![]);
        dead.error = Some("the guest did not start its scenarios within 120 s".into());
        let m = Matrix::build(
            vec![("a.scn".into(), "inet".into(), "a".into())],
            vec![
                kernel("6.18.4", None, vec![instance("a.scn", "inet", true, "x\n")]),
                dead,
            ],
        );
        assert_eq!(m.count(1).missing, 1);
        assert!(!m.all_passed());
        assert!(m.render_text(10).starts_with(
            "5.10.0 (emulated (TCG)): the guest did not start its scenarios within 120 s\n"
        ));
    }
}

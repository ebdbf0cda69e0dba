//! The matrix as reports: the side-by-side text, a Markdown table per scenario, the JSON
//! document and JUnit XML (one testsuite per kernel).

use std::fmt::Write as _;

use super::{Cell, Failure, Matrix, Row, Verdict};
use crate::scenario::compare::side_by_side;

impl Matrix {
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

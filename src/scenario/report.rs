//! What a scenario run reports: pass or the first mismatch (packetdrill style: the script line,
//! what it expected, what happened), its trace, and renderings as text, JSON and JUnit XML.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::addr::Family;
use crate::trace::{Event, Format, render_all};

/// The first step that did not go as the script said.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub line: usize,
    pub col: usize,
    /// The script line, as written.
    pub script: String,
    /// What happened instead, as a symbolic trace line (when a call was made).
    pub actual: Option<String>,
    pub message: String,
}

/// The value an `expect` aggregate had, typed (the trace shows it as a note).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AggregateValue {
    /// The index of its note in the trace.
    pub at: usize,
    /// As written: `woken(w1, w2)`.
    pub what: String,
    pub value: i64,
}

/// What one step returned, as the runner recorded it (a background call when collected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    pub span: super::ast::Span,
    pub actor: String,
    pub result: Result<i64, nix::errno::Errno>,
    /// epoll_wait's events, (mask, data).
    pub events: Vec<(u32, u64)>,
}

/// One run of one scenario for one family.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub path: PathBuf,
    pub family: Family,
    pub passed: bool,
    /// Why the instance did not run (its `kernel:` requirement is not met here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub failure: Option<Failure>,
    pub duration_ms: f64,
    pub trace: Vec<Event>,
    /// The aggregates evaluated, in order (for comparisons; the trace has them as notes).
    #[serde(skip)]
    pub aggregates: Vec<AggregateValue>,
    /// Every step's outcome, in the order the runner recorded them (for `--explain`).
    #[serde(skip)]
    pub steps: Vec<StepResult>,
    /// Per accept that returned a connection, in order: the accepting actor, the CPU the
    /// kernel processed the connection on and the CPU the actor ran on.
    #[serde(skip)]
    pub accept_cpus: Vec<(String, i32, i32)>,
    /// The wire traffic, when the scenario or the runner asked for a capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<super::capture::CaptureReport>,
}

impl ScenarioReport {
    /// An instance that did not run, and why.
    pub fn skipped(scenario: &super::Scenario, family: Family, reason: String) -> ScenarioReport {
        ScenarioReport {
            name: scenario.name(),
            path: scenario.path.clone(),
            family,
            passed: false,
            skipped: Some(reason),
            failure: None,
            duration_ms: 0.0,
            trace: vec![],
            aggregates: vec![],
            steps: vec![],
            accept_cpus: vec![],
            capture: None,
        }
    }

    /// Local accepts (processed and accepted on the same CPU) out of those measured.
    pub fn local_accepts(&self) -> crate::shim::merge::Local {
        let mut l = crate::shim::merge::Local::default();
        for (_, incoming, cpu) in &self.accept_cpus {
            l.measured += 1;
            l.local += usize::from(incoming == cpu);
        }
        l
    }

    /// [`ScenarioReport::local_accepts`] per accepting actor.
    pub fn local_accepts_per_actor(&self) -> BTreeMap<&str, crate::shim::merge::Local> {
        let mut per: BTreeMap<&str, crate::shim::merge::Local> = BTreeMap::new();
        for (actor, incoming, cpu) in &self.accept_cpus {
            let l = per.entry(actor.as_str()).or_default();
            l.measured += 1;
            l.local += usize::from(incoming == cpu);
        }
        per
    }

    /// The local accepts as JSON: in all and per accepting actor.
    pub fn local_accepts_json(&self) -> serde_json::Value {
        let l = |l: crate::shim::merge::Local| serde_json::json!({"local": l.local, "measured": l.measured});
        let per: serde_json::Map<String, serde_json::Value> = self
            .local_accepts_per_actor()
            .into_iter()
            .map(|(actor, v)| (actor.to_string(), l(v)))
            .collect();
        let mut all = l(self.local_accepts());
        all["per_actor"] = serde_json::Value::Object(per);
        all
    }

    /// `PASS name [family]` or `FAIL ...` followed by the mismatch report.
    pub fn summary(&self) -> String {
        if let Some(reason) = &self.skipped {
            return format!("SKIP {} [{}]: {reason}", self.path.display(), self.family);
        }
        let mut out = format!(
            "{} {} [{}] ({:.0} ms)",
            if self.passed { "PASS" } else { "FAIL" },
            self.path.display(),
            self.family,
            self.duration_ms
        );
        if let Some(f) = &self.failure {
            let _ = write!(
                out,
                "\n  {}:{}:{}: {}\n    script: {}",
                self.path.display(),
                f.line,
                f.col,
                f.message,
                f.script
            );
            if let Some(actual) = &f.actual {
                let _ = write!(out, "\n    actual: {actual}");
            }
        }
        if let Some(capture) = &self.capture {
            out.push('\n');
            out.push_str(&capture.render());
        }
        out
    }

    pub fn render_trace(&self, format: Format) -> String {
        render_all(&self.trace, format.with_actors(true))
    }
}

/// Whether repeated runs of one scenario instance disagree: a different verdict, or a different
/// symbolic trace (which shows only what a scenario declares stable).
pub fn is_flaky(attempts: &[ScenarioReport]) -> bool {
    let Some(first) = attempts.first() else {
        return false;
    };
    let trace = first.render_trace(Format::SYMBOLIC);
    attempts[1..]
        .iter()
        .any(|r| r.passed != first.passed || r.render_trace(Format::SYMBOLIC) != trace)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML document: one testsuite, one testcase per scenario instance.
pub fn junit(reports: &[ScenarioReport]) -> String {
    let failures = reports
        .iter()
        .filter(|r| !r.passed && r.skipped.is_none())
        .count();
    let total_s: f64 = reports.iter().map(|r| r.duration_ms).sum::<f64>() / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"epollscope\" tests=\"{}\" failures=\"{failures}\" time=\"{total_s:.3}\">",
        reports.len()
    );
    for r in reports {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{} [{}]\" time=\"{:.3}\"",
            xml_escape(&r.path.display().to_string()),
            xml_escape(&r.name),
            r.family,
            r.duration_ms / 1000.0
        );
        if let Some(reason) = &r.skipped {
            let _ = writeln!(
                out,
                ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                xml_escape(reason)
            );
            continue;
        }
        match &r.failure {
            None => out.push_str("/>\n"),
            Some(f) => {
                let _ = writeln!(
                    out,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    xml_escape(&f.message),
                    xml_escape(&r.summary())
                );
            }
        }
    }
    out.push_str("</testsuite>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Call, Ret, Stability};

    fn report(passed: bool, woke: i64, stability: Stability) -> ScenarioReport {
        let event = Event {
            actor: "w1".into(),
            pid: 1,
            time_us: 0,
            dur_us: 0,
            call: Call::Accept {
                fd: crate::trace::FdRef {
                    num: 3,
                    name: Some("L".into()),
                },
            },
            ret: Ret::value(woke),
            resumed: false,
            slept: false,
            stability,
        };
        ScenarioReport {
            name: "s".into(),
            path: "s.scn".into(),
            family: Family::Inet,
            passed,
            skipped: None,
            failure: None,
            duration_ms: 1.0,
            trace: vec![event],
            aggregates: vec![],
            steps: vec![],
            accept_cpus: vec![],
            capture: None,
        }
    }

    #[test]
    fn flaky_means_a_different_verdict_or_symbolic_trace() {
        let same = [
            report(true, 4, Stability::Stable),
            report(true, 4, Stability::Stable),
        ];
        assert!(!is_flaky(&same));
        let verdict = [
            report(true, 4, Stability::Stable),
            report(false, 4, Stability::Stable),
        ];
        assert!(is_flaky(&verdict));
        let trace = [
            report(true, 4, Stability::Stable),
            report(true, 5, Stability::Stable),
        ];
        assert!(is_flaky(&trace));
        // A value the scenario declared variable (a pattern) may differ.
        let declared = [
            report(true, 4, Stability::Pattern("?".into())),
            report(true, 5, Stability::Pattern("?".into())),
        ];
        assert!(!is_flaky(&declared));
    }
}

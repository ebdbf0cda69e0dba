//! The kernel matrix report: each kernel's `run --json` document, instance by instance, side
//! by side: PASS/FAIL/SKIP per kernel, whether the symbolic traces agree (the differing lines
//! marked against the first kernel that ran the instance), and a closing count per kernel.
//! Each instance keeps its raw events too, for the `--html` timelines side by side.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::VmError;
use super::guest::{Accel, GuestOutcome};
use crate::trace::Event;

mod render;

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
mod tests;

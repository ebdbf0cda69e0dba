//! The outcome of a storm: counts, failures grouped by errno, latency percentiles, and the
//! rule that tells a wrong address (nobody there) from an overloaded one.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::Serialize;

use epollscope::addr::Family;
use epollscope::trace::errno_text;

/// Errors that mean "the target cannot be reached at all", as opposed to a target that is
/// there but overloaded (EAGAIN, ETIMEDOUT among successes...).
const UNREACHABLE: [Errno; 5] = [
    Errno::ECONNREFUSED,
    Errno::ENOENT,
    Errno::ENETUNREACH,
    Errno::EHOSTUNREACH,
    Errno::ETIMEDOUT,
];

/// The outcome of a storm, as printed by `socket-connect --json`.
#[derive(Clone, Debug, Serialize)]
pub struct StormReport {
    pub target: String,
    pub family: Family,
    /// The `--count` asked for; `attempted` falls short only when a signal stopped the storm.
    pub requested: u64,
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    /// Connects still in flight when a signal stopped the storm (neither connected nor failed).
    pub aborted: u64,
    /// Failures by errno name (`"EAGAIN"`).
    pub errors: BTreeMap<String, u64>,
    /// First start to last completion.
    pub elapsed_us: u64,
    pub connects_per_sec: f64,
    pub latency_min_us: Option<u64>,
    pub latency_median_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    pub latency_max_us: Option<u64>,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub jitter_ms: u64,
    pub timeout_ms: u64,
    pub seed: u64,
    /// RLIMIT_NOFILE (soft, hard) in force during the storm.
    pub nofile_limit: u64,
    pub nofile_hard_limit: u64,
    /// The signal that cut the storm short, if one did.
    pub interrupted: Option<String>,
}

impl StormReport {
    /// Failures sorted by how many there were, most first: `(errno name, count)`.
    pub fn errors_by_count(&self) -> Vec<(&str, u64)> {
        let mut errors: Vec<(&str, u64)> =
            self.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        errors
    }

    /// `Err` when nothing connected and every failure says nobody is there: that is a wrong
    /// address, not an experiment result.
    pub fn check_reachable(&self) -> Result<(), StormError> {
        if self.connected > 0 || self.failed == 0 {
            return Ok(());
        }
        let mut most: Option<(Errno, u64)> = None;
        for (name, count) in self.errors_by_count() {
            match errno_by_name(name) {
                Some(errno) if UNREACHABLE.contains(&errno) => most.get_or_insert((errno, count)),
                _ => return Ok(()),
            };
        }
        match most {
            Some((errno, _)) => Err(StormError::Unreachable {
                target: self.target.clone(),
                errno,
                attempts: self.failed,
            }),
            None => Ok(()),
        }
    }
}

/// Why a storm could not run, or why its result means the target is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StormError {
    #[error("{0} exists and is not a socket (nothing can listen there)")]
    NotASocket(PathBuf),
    #[error("cannot reach {target}: {} ({})", errno_text(*errno), all_failed(*attempts))]
    Unreachable {
        target: String,
        errno: Errno,
        attempts: u64,
    },
    #[error("cannot set up the event loop: {0}")]
    Poll(io::Error),
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds (rounded).
pub(super) fn percentile_us(sorted_ns: &[u64], q: f64) -> Option<u64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    Some((sorted_ns[rank - 1] + 500) / 1000)
}

fn all_failed(attempts: u64) -> String {
    match attempts {
        1 => "the only attempt failed".into(),
        n => format!("all {n} attempts failed"),
    }
}

pub(super) fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

/// The errno a name in [`StormReport::errors`] stands for (`"EAGAIN"` → `EAGAIN`).
pub use epollscope::names::errno_from_name as errno_by_name;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storm::{StormConfig, run_storm};
    use epollscope::addr::SockAddr;

    #[test]
    fn percentiles_use_nearest_rank() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.0), Some(1));
        assert_eq!(percentile_us(&ns, 0.5), Some(50));
        assert_eq!(percentile_us(&ns, 0.99), Some(99));
        assert_eq!(percentile_us(&ns, 1.0), Some(100));
        assert_eq!(percentile_us(&[], 0.5), None);
    }

    #[test]
    fn unreachable_only_when_nothing_connected_and_errors_say_nobody_is_there() {
        let path = std::env::temp_dir().join(format!("es-storm-none-{}", std::process::id()));
        let storm = run_storm(&StormConfig::new(SockAddr::unix(&path), 3)).unwrap();
        assert_eq!(storm.report.errors.get("ENOENT"), Some(&3));
        let err = storm.report.check_reachable().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot reach {}: No such file or directory (all 3 attempts failed)",
                path.display()
            )
        );
        let mut report = storm.report.clone();
        report.errors.insert("EAGAIN".into(), 1);
        assert!(report.check_reachable().is_ok());
    }
}

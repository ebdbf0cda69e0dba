//! `epollscope run --explain`: each checked step labelled against the documented contract
//! ([`epollscope::model`]).

use epollscope::scenario::{ScenarioReport, load};

/// The explanation of one report, indented under its summary; `None` if the scenario file
/// can no longer be read (it was read once already, so say so rather than fail the run).
pub fn explain(report: &ScenarioReport) -> (String, usize) {
    match load(&report.path) {
        Ok(scenario) => {
            let text = epollscope::model::render(&scenario, report);
            let n = epollscope::model::explain(
                &scenario,
                report.family,
                &report.steps,
                &report.aggregates,
            )
            .contradictions()
            .count();
            (text, n)
        }
        Err(e) => (format!("(cannot explain: {e})\n"), 0),
    }
}

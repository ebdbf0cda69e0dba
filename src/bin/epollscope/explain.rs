//! `epollscope run --explain`: each checked step labelled against the documented contract
//! ([`epollscope::model`]), and under the fast path against Fastsocket's too.

use epollscope::model::Model;
use epollscope::scenario::{ScenarioReport, load};

/// The explanation of one report, indented under its summary, and its number of
/// contradictions; `fast` for a run under the Fastsocket shim. Says so if the scenario file
/// can no longer be read (it was read once already) rather than fail the run.
pub fn explain(report: &ScenarioReport, fast: bool) -> (String, usize) {
    let model = || match fast {
        true => Model::under_fastsocket(report.family),
        false => Model::new(report.family),
    };
    match load(&report.path) {
        Ok(scenario) => {
            let text = epollscope::model::render_with(model(), &scenario, report);
            let n = epollscope::model::explain_with(
                model(),
                &scenario,
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

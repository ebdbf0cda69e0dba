//! Every scenario in scenarios/ runs for each of its families, must pass, and its symbolic
//! trace must match the reviewed snapshot: a kernel or runner change that alters any call's
//! outcome shows up as a snapshot diff.

use epollscope::Format;
use epollscope::scenario;

#[test]
fn every_scenario_passes_and_matches_its_snapshot() {
    insta::glob!("../scenarios", "*.scn", |path| {
        let scenario = scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !scenario.description.is_empty(),
            "{}: start with a comment saying what the scenario demonstrates",
            path.display()
        );
        let mut snapshot = String::new();
        for &family in &scenario.families {
            let report = scenario::run(&scenario, family);
            assert!(report.passed, "{}", report.summary());
            snapshot.push_str(&format!("## family: {family}\n"));
            snapshot.push_str(&report.render_trace(Format::SYMBOLIC));
        }
        insta::assert_snapshot!(snapshot);
    });
}

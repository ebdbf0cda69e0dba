//! Every scenario in scenarios/ and its subdirectories (kernel-selftests/, ltp/) runs for each
//! of its families, must pass, and its symbolic trace must match the reviewed snapshot: a
//! kernel or runner change that alters any call's outcome shows up as a snapshot diff.
//! (A script waiting for a call the language does not have yet is named `*.scn.pending`, so
//! it is in no run set until it can run.)

use epollscope::Format;
use epollscope::scenario;

#[test]
fn every_scenario_passes_and_matches_its_snapshot() {
    insta::glob!("../scenarios", "**/*.scn", |path| {
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

/// Actors started by exec (as the preload shim needs) behave exactly as forked ones: same
/// verdict, same symbolic trace, for a scenario with several processes and background calls.
#[test]
fn exec_started_actors_trace_like_forked_ones() {
    let scenario = scenario::load(std::path::Path::new("scenarios/herd-epollexclusive.scn"))
        .expect("scenario");
    let exec = scenario::RunOptions {
        actor_exe: Some(assert_cmd::cargo::cargo_bin("epollscope")),
        env: vec![("EPOLLSCOPE_EXEC_TEST".into(), "1".into())],
        ..scenario::RunOptions::default()
    };
    for &family in &scenario.families {
        let forked = scenario::run(&scenario, family);
        let execd = scenario::run_with(&scenario, family, &exec);
        assert!(execd.passed, "{}", execd.summary());
        assert_eq!(
            forked.render_trace(Format::SYMBOLIC),
            execd.render_trace(Format::SYMBOLIC)
        );
    }
    // Exec really happens: a program that does not exist fails the run cleanly.
    let missing = scenario::RunOptions {
        actor_exe: Some("/nonexistent/epollscope".into()),
        ..scenario::RunOptions::default()
    };
    let report = scenario::run_with(&scenario, scenario.families[0], &missing);
    let failure = report.failure.expect("cannot pass without actors");
    assert!(
        failure.message.contains("process main died"),
        "{}",
        failure.message
    );
}

/// The glob above reaches every directory of the library: each `.scn` file, at any depth, has
/// a reviewed snapshot (a glob that silently skipped `kernel-selftests/` would fail here).
#[test]
fn every_scenario_file_at_any_depth_has_a_snapshot() {
    fn scn_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("scenarios dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                scn_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "scn") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new("scenarios");
    let mut files = vec![];
    scn_files(root, &mut files);
    let nested = files.iter().filter(|p| p.parent() != Some(root)).count();
    assert!(nested > 0, "no scenario in a subdirectory of scenarios/");
    for path in &files {
        let relative = path.strip_prefix(root).expect("under scenarios/");
        // insta names a glob snapshot after the path below the glob's base, '/' as "__".
        let name = relative.to_string_lossy().replace('/', "__");
        let snapshot = format!(
            "tests/snapshots/scenarios__every_scenario_passes_and_matches_its_snapshot@{name}.snap"
        );
        assert!(
            std::path::Path::new(&snapshot).exists(),
            "{} has no snapshot ({snapshot})",
            path.display()
        );
    }
}

//! `--explain` over the whole scenario library: every checked step of every scenario is
//! labelled against the documented contract (src/model), the labels are snapshotted, and no
//! step may contradict the documentation.

use epollscope::model;
use epollscope::scenario;

#[test]
fn every_scenario_is_explained_and_none_contradicts() {
    insta::glob!("../scenarios", "**/*.scn", |path| {
        let scenario = scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
        let mut snapshot = String::new();
        for &family in &scenario.families {
            let report = scenario::run(&scenario, family);
            assert!(report.passed, "{}", report.summary());
            let ex = model::explain(&scenario, family, &report.steps, &report.aggregates);
            let bad: Vec<String> = ex.contradictions().map(|j| format!("{j:?}")).collect();
            assert!(bad.is_empty(), "{} [{family}]: {bad:#?}", path.display());
            assert_eq!(
                ex.unreached,
                0,
                "{} [{family}]: a passing run reaches every statement",
                path.display()
            );
            snapshot.push_str(&format!("## family: {family}\n"));
            snapshot.push_str(&model::render(&scenario, &report));
        }
        insta::assert_snapshot!(snapshot);
    });
}

/// The seed's question, answered in one line: after a second connection to an
/// edge-triggered listener whose first connection was never accepted, the second EPOLLIN is
/// allowed by epoll(7), not promised.
#[test]
fn the_seeds_second_epollin_is_allowed_not_promised() {
    let scenario = scenario::load(std::path::Path::new("scenarios/seed-epoll-socket-test.scn"))
        .expect("scenario");
    for &family in &scenario.families {
        let report = scenario::run(&scenario, family);
        let ex = model::explain(&scenario, family, &report.steps, &report.aggregates);
        let second = ex
            .judgements
            .iter()
            .find(|j| j.line == 24)
            .expect("the wait after connect 2");
        assert_eq!(second.label, model::Label::Allowed, "{second:?}");
        assert_eq!(second.others(), vec!["0".to_string()]);
        let first = ex.judgements.iter().find(|j| j.line == 19).expect("wait 1");
        assert_eq!(first.label, model::Label::Promised, "{first:?}");
    }
}

/// A result the documentation excludes is labelled CONTRADICTS, whatever the script says:
/// feed the model a fabricated run in which an empty level-triggered set reports an event.
#[test]
fn a_result_outside_the_documented_set_contradicts() {
    let text = "# t\nfamily: unix\nepoll_create1(0) = E\nepoll_wait(E, [], 16, 0) = ?\n";
    let scenario = scenario::parse(std::path::Path::new("t.scn"), text).expect("parses");
    let span = |line| scenario::Span { line, col: 1 };
    let steps = vec![
        scenario::StepResult {
            span: span(3),
            actor: "main".into(),
            result: Ok(3),
            events: vec![],
        },
        scenario::StepResult {
            span: span(4),
            actor: "main".into(),
            result: Ok(1),
            events: vec![(1, 7)],
        },
    ];
    let ex = model::explain(&scenario, epollscope::addr::Family::Unix, &steps, &[]);
    let labels: Vec<model::Label> = ex.judgements.iter().map(|j| j.label).collect();
    assert_eq!(labels, [model::Label::Promised, model::Label::Contradicts]);
}

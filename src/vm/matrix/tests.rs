//! The matrix built from fabricated kernel runs (no VM needed), and each report of it.

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

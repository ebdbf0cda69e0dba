//! `kernel:` headers: a requirement the running kernel does not meet is a SKIP with the reason
//! (never a failure), one it meets runs the scenario, and a bad header is one line naming its
//! line and column. No VM is needed.

mod common;
mod kernel_support;

use common::{run_clean, stderr, stdout, tool};
use kernel_support::{needing, running_release, scenario_file};

#[test]
fn a_kernel_header_not_met_is_skip_with_the_reason_never_fail() {
    let host = running_release();
    let path = scenario_file("skip", &needing(">= 999.0"));
    let junit = path.with_extension("xml");
    let out = run_clean(
        tool("epollscope")
            .arg("run")
            .arg(&path)
            .arg("--junit")
            .arg(&junit),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(
        text,
        format!(
            "SKIP {} [unix]: needs kernel >= 999.0, this is {host}\n0 passed, 0 failed, 1 skipped\n",
            path.display()
        )
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains(&format!(
            "<skipped message=\"needs kernel &gt;= 999.0, this is {host}\"/>"
        )),
        "{xml}"
    );
    let out = run_clean(tool("epollscope").arg("run").arg("--json").arg(&path));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["totals"]["skipped"], 1);
    assert_eq!(doc["totals"]["failed"], 0);
    assert!(
        doc["scenarios"][0]["skipped"]
            .as_str()
            .unwrap()
            .starts_with("needs kernel")
    );
    // A requirement the running kernel meets runs the scenario.
    let met = scenario_file("met", &needing(">= 2.6, < 999"));
    let out = run_clean(tool("epollscope").arg("run").arg(&met));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("1 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(met.parent().unwrap()).unwrap();
}

#[test]
fn bad_kernel_headers_name_line_and_column() {
    let cases = [
        ("4.5", "3:9: '4.5': a bound starts with >=, >, <=, < or ="),
        (
            ">= 4.x",
            "3:12: '4.x' is not a version (expected e.g. 4.5 or 5.14.2)",
        ),
        (
            ">= 4.5,",
            "3:16: expected a bound such as '>= 4.5' or '< 5.14'",
        ),
    ];
    for (i, (header, message)) in cases.into_iter().enumerate() {
        let path = scenario_file(&format!("bad{i}"), &needing(header));
        let out = run_clean(tool("epollscope").arg("run").arg(&path));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{header}: {err}");
        assert_eq!(
            err.lines().next().unwrap(),
            format!("{}:{message}", path.display()),
            "{header}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
    let twice = needing(">= 4.5").replace("family: unix\n", "family: unix\nkernel: < 9\n");
    let path = scenario_file("twice", &twice);
    let out = run_clean(tool("epollscope").arg("run").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "{}:4:1: kernel: given twice (join the bounds with a comma)",
            path.display()
        )),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

//! `epollscope run` end to end: verdicts and exit codes, the mismatch report, machine-readable
//! outputs, bad input. Stopping a run (a hung step, signals, SIGKILL) is in
//! `epollscope_run_stop.rs`.

mod common;
mod epollscope_run_support;
mod shim_support;

use common::{run_clean, stderr, stdout, tool};
use epollscope_run_support::{PASSING, scenario_file};

#[test]
fn passing_scenarios_exit_0_with_a_summary_line() {
    let path = scenario_file("pass", PASSING);
    let out = run_clean(tool("epollscope").arg("run").arg(&path).arg("--trace"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("PASS ") && text.contains(" [unix] ") && text.contains(" [inet] "));
    assert!(text.contains("    [main] epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1"));
    assert_eq!(text.lines().last(), Some("2 passed, 0 failed"));
}

#[test]
fn a_directory_is_searched_recursively_without_following_link_loops() {
    // As scenarios/kernel-selftests/ and scenarios/ltp/ sit below scenarios/.
    let top = scenario_file("tree", PASSING);
    let deep = top.dir.0.join("sub/deeper");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("again.scn"), PASSING).unwrap();
    std::fs::write(deep.join("notes.txt"), "not a scenario").unwrap();
    std::os::unix::fs::symlink(&top.dir.0, top.dir.0.join("sub/loop")).unwrap();
    let out = run_clean(tool("epollscope").arg("run").arg(&top.dir.0));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sub/deeper/again.scn [unix]"), "{text}");
    assert_eq!(text.lines().last(), Some("4 passed, 0 failed"));
}

#[test]
fn a_mismatch_exits_1_and_shows_line_expected_and_actual() {
    let source = PASSING.replace("16, 0) = 1", "16, 0) = 2");
    let path = scenario_file("mismatch", &source);
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--family", "inet"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let file = path.display();
    let expected = format!(
        "  {file}:10:1: expected 2, got 1\n    script: epoll_wait(E, [{{events=EPOLLIN, data={{u64=L}}}}], 16, 0) = 2\n    \
         actual: [main] epoll_wait(E, [{{events=EPOLLIN, data={{u64=L}}}}], 16, 0) = 1"
    );
    assert!(text.contains(&expected), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn wrong_events_are_reported_as_such() {
    let source = PASSING.replace(
        "[{events=EPOLLIN, data={u64=L}}], 16, 0) = 1",
        "[{events=EPOLLOUT, data=L}], 16, 0) = 1",
    );
    let path = scenario_file("events", &source);
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--family", "unix"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("epoll events differ: expected [{EPOLLOUT, 3}], got [{EPOLLIN, 3}]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_and_junit_describe_every_instance() {
    let path = scenario_file("json", PASSING);
    let junit = path.path.with_extension("xml");
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--json", "--junit"])
            .arg(&junit)
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["totals"]["passed"], 2);
    assert_eq!(doc["totals"]["failed"], 0);
    let first = &doc["scenarios"][0];
    assert_eq!(first["family"], "unix");
    assert_eq!(first["passed"], true);
    assert!(first["trace"].as_array().unwrap().len() >= 8);
    assert!(
        first["symbolic_trace"]
            .as_str()
            .unwrap()
            .contains("listen(L, 8) = 0")
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"epollscope\" tests=\"2\" failures=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("name=\"json [inet]\""), "{xml}");
}

#[test]
fn list_and_filter() {
    let path = scenario_file("listed", PASSING);
    let dir = &path.dir.0;
    let out = run_clean(tool("epollscope").args(["run", "--list"]).arg(dir));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("unix,inet"));
    assert!(stdout(&out).contains("A listener with a pending connection is readable."));
    let none = run_clean(
        tool("epollscope")
            .args(["run", "--filter", "nothing-matches"])
            .arg(dir),
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("epollscope: error: no scenario found in"));
}

/// A directory's subdirectories are searched too (`run scenarios/` includes
/// `scenarios/ltp/`), their files after the directory's own.
#[test]
fn a_directory_includes_its_subdirectories() {
    let path = scenario_file("nested", PASSING);
    let dir = &path.dir.0;
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(sub.join("deeper.scn"), PASSING).expect("write");
    let out = run_clean(tool("epollscope").args(["run", "--list"]).arg(dir));
    std::fs::remove_file(sub.join("deeper.scn")).expect("rm");
    std::fs::remove_dir(&sub).expect("rmdir");
    assert_eq!(out.status.code(), Some(0));
    let listed = stdout(&out);
    let top = listed
        .find("/nested.scn")
        .expect("the top-level file is listed");
    let deep = listed
        .find("sub/deeper.scn")
        .expect("the nested file is listed");
    assert!(top < deep, "{listed}");
}

#[test]
fn bad_input_exits_2_with_file_line_column_and_caret() {
    let path = scenario_file(
        "bad",
        "socket(FAMILY, SOCK_STREAM, 0) = L\nlisten(L, x) = 0\n",
    );
    let out = run_clean(tool("epollscope").arg("run").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let mut lines = err.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{}:2:11: type mismatch: argument 2 of listen() must be a backlog (a number), not a name",
            path.display()
        )
    );
    assert_eq!(lines.next(), Some("2 | listen(L, x) = 0"));
    assert_eq!(lines.next(), Some("              ^"));

    let missing = run_clean(tool("epollscope").args(["run", "/nonexistent/x.scn"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).starts_with("epollscope: error: /nonexistent/x.scn: No such file"));
    let flag = run_clean(tool("epollscope").args(["run", "--repeat", "zero"]));
    assert_eq!(flag.status.code(), Some(2));
}

/// `--under both` runs each instance natively and under the Fastsocket shim and shows what
/// changed: four herd waiters all wake natively, one wakes when each has its own listener.
#[test]
fn under_both_shows_the_herd_disappear() {
    let lib = shim_support::preload_lib();
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--under", "both", "--family", "inet"])
            .arg("scenarios/herd-epoll-shared-listener.scn")
            .env("EPOLLSCOPE_PRELOAD", &lib),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "scenarios/herd-epoll-shared-listener.scn [inet]: native PASS, fastsocket PASS"
        ),
        "{text}"
    );
    // Natively at least two of the four wake (measured: all four); under the shim exactly one.
    let line = text
        .lines()
        .find(|l| l.starts_with("  woken(w1, w2, w3, w4): native "))
        .unwrap_or_else(|| panic!("no woken difference in:\n{text}"));
    let native: i64 = line
        .split("native ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("native count");
    assert!((2..=4).contains(&native), "{line}");
    assert!(line.ends_with("fastsocket 1"), "{line}");
    // The side-by-side view marks the changed line.
    assert!(text.contains(" | # woken(w1, w2, w3, w4) = 1"), "{text}");
    assert!(text.ends_with(
        "native: 1 passed, 0 failed; fastsocket: 1 passed, 0 failed; 1 of 1 traces differ\n"
    ));
    assert!(
        stderr(&out).contains("fast path: emulated"),
        "the shim reports its backend"
    );
}

/// The shim says which fast path it chose once per run, not once per scenario instance.
#[test]
fn under_fastsocket_the_fast_path_is_announced_once() {
    let lib = shim_support::preload_lib();
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--under", "both", "-j", "2"])
            .args(["scenarios/call-pipe2.scn", "scenarios/call-udp.scn"])
            .args(["scenarios/herd-epoll-shared-listener.scn"])
            .env("EPOLLSCOPE_PRELOAD", &lib),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out).matches("fast path: ").count();
    assert_eq!(said, 1, "{}", stderr(&out));
}

#[test]
fn under_fastsocket_without_the_shim_library_is_bad_input() {
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--under", "fastsocket"])
            .arg("scenarios/herd-epoll-shared-listener.scn")
            .env(
                "EPOLLSCOPE_PRELOAD",
                "/nonexistent/libepollscope_preload.so",
            ),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim_end(),
        "epollscope: error: EPOLLSCOPE_PRELOAD=/nonexistent/libepollscope_preload.so: no such file"
    );
}

/// The LT chain of herd-shared-epfd-lt (each waiter wakes the next on its way out) once
/// counted a waiter as asleep that the previous one was about to wake, under parallel jobs.
#[test]
fn parallel_repeats_of_a_wakeup_chain_agree() {
    let out = run_clean(tool("epollscope").args([
        "run",
        "--repeat",
        "60",
        "-j",
        "8",
        "scenarios/herd-shared-epfd-lt.scn",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).ends_with("3 passed, 0 failed (0 flaky in 60 runs each)\n"),
        "{}",
        stdout(&out)
    );
}

/// Numbers that fit no C type of their argument, and unbounded inputs, are bad input: one
/// line with file:line:col, exit 2, and nothing runs (`close(4294967299)` closed fd 3 and
/// passed; a huge timeout panicked).
#[test]
fn out_of_range_and_unbounded_inputs_exit_2_before_anything_runs() {
    for (tag, source, message) in [
        (
            "range",
            "# narrowed\nsocket(FAMILY, SOCK_STREAM, 0) = L\nclose(4294967299) = 0\n",
            ":3:7: out of range: argument 1 of close() must be -2147483648..2147483647, not 4294967299",
        ),
        (
            "timeout",
            "# overflow\ntimeout: 9223372036854775807s\n",
            ":2:10: a duration must be at most 3600s",
        ),
    ] {
        let path = scenario_file(tag, source);
        let out = run_clean(tool("epollscope").arg("run").arg(&path));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().next().unwrap(),
            format!("{}{message}", path.display())
        );
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn a_family_that_selects_nothing_is_bad_input() {
    let path = scenario_file("nofamily", PASSING);
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--family", "inet6"])
            .arg(&path),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "epollscope: error: no scenario runs for --family inet6: none of the selected \
         scenarios has it in its family: matrix\n"
    );
    assert_eq!(stdout(&out), "");
}

/// A report or capture path that cannot be written is found before anything runs.
#[test]
fn output_paths_are_checked_before_anything_runs() {
    let path = scenario_file("outputs", PASSING);
    let junit = run_clean(
        tool("epollscope")
            .args(["run", "--junit", "/nonexistent/dir/report.xml"])
            .arg(&path),
    );
    assert_eq!(junit.status.code(), Some(2));
    assert_eq!(stdout(&junit), "", "nothing ran");
    assert!(
        stderr(&junit).starts_with(
            "epollscope: error: opening the JUnit report /nonexistent/dir/report.xml: "
        ),
        "{}",
        stderr(&junit)
    );
    let file = path.dir.0.join("a-file");
    std::fs::write(&file, "").unwrap();
    let capture = run_clean(
        tool("epollscope")
            .arg("run")
            .arg("--capture")
            .arg(file.join("pcaps"))
            .arg(&path),
    );
    assert_eq!(capture.status.code(), Some(2));
    assert_eq!(stdout(&capture), "", "nothing ran");
    assert!(
        stderr(&capture).starts_with("epollscope: error: creating the capture directory "),
        "{}",
        stderr(&capture)
    );
}

/// `--list --json` is one JSON array; `--list` keeps its columns aligned for long names.
#[test]
fn list_as_json_and_in_aligned_columns() {
    let path = scenario_file("list", PASSING);
    let long = path
        .dir
        .0
        .join("a-scenario-with-a-name-much-longer-than-the-usual-column-width.scn");
    std::fs::write(
        &long,
        "# Long name.\nfamily: inet6 inet unix\nclose(3) = -1 EBADF\n",
    )
    .unwrap();
    let out = run_clean(
        tool("epollscope")
            .args(["run", "--list", "--json"])
            .arg(&path.dir.0),
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let items = doc.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["families"],
        serde_json::json!(["inet6", "inet", "unix"])
    );
    assert_eq!(
        items[1]["description"],
        "A listener with a pending connection is readable."
    );

    let out = run_clean(tool("epollscope").args(["run", "--list"]).arg(&path.dir.0));
    let text = stdout(&out);
    let columns: Vec<usize> = text.lines().map(|l| l.find(['L', 'A']).unwrap()).collect();
    assert_eq!(columns.len(), 2, "{text}");
    assert_eq!(columns[0], columns[1], "{text}");
}

//! `epollscope fuzz`: the same seed generates the same scenarios byte for byte, a clean model
//! finds nothing in a short run, and a deliberately wrong rule planted in the model is found
//! and shrunk to a minimal scenario within a bounded number of cases.

use assert_cmd::Command;

fn fuzz() -> Command {
    let mut cmd = Command::cargo_bin("epollscope").expect("binary");
    cmd.arg("fuzz");
    cmd
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "epollscope-fuzz-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_same_seed_emits_byte_identical_scenarios() {
    let (a, b, c) = (tempdir("emit-a"), tempdir("emit-b"), tempdir("emit-c"));
    for (dir, seed) in [(&a, "42"), (&b, "42"), (&c, "43")] {
        let out = tempdir("emit-out");
        fuzz()
            .args(["--seed", seed, "--count", "8", "-j", "2", "--emit"])
            .arg(dir)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let _ = std::fs::remove_dir_all(&out);
    }
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 8);
    assert_eq!(fa, fb, "seed 42 twice");
    assert_ne!(fa, fc, "another seed, other scenarios");
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_planted_wrong_rule_is_found_and_shrunk() {
    let out = tempdir("planted");
    let assert = fuzz()
        .args([
            "--seed",
            "7",
            "--count",
            "200",
            // One job: cases run in order and the first finding ends the run, so the bound is
            // on cases, not on which thread is faster (seed 7 finds it at case 54).
            "-j",
            "1",
            "--max-findings",
            "1",
        ])
        .args(["--plant", "textbook-et", "--out"])
        .arg(&out)
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("planted-wrong-rule"), "{stdout}");
    let found = files(&out);
    assert!(!found.is_empty(), "{stdout}");
    let text = String::from_utf8_lossy(&found[0].1).into_owned();
    assert!(text.contains("EPOLLET"), "{text}");
    // Shrunk: a listener, an edge-triggered set, two connects and the waits, no more.
    let calls = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('('))
        .count();
    assert!(calls <= 12, "not shrunk:\n{text}");
    // The shrunk scenario is a valid scenario that still shows the planted rule wrong.
    epollscope::scenario::parse(std::path::Path::new("f.scn"), &text).expect("parses");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn the_real_model_finds_nothing_in_a_short_run() {
    let out = tempdir("clean");
    let assert = fuzz()
        .args(["--seed", "7", "--count", "40", "-j", "2", "--out"])
        .arg(&out)
        .assert();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(
        stdout.contains("40 scenarios") && stdout.contains(" 0 findings"),
        "{stdout}"
    );
    assert.success();
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    for args in [
        &["--count", "0"][..],
        &["--seed", "x"],
        &["--under", "nope"],
    ] {
        let assert = fuzz().args(args).assert().code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

/// Findings that were the model's fault (FINDINGS.md F4 and its sequel), shrunk by the fuzzer
/// and kept in `tests/data/fuzz-regressions/`: each contradicted the model before its fix
/// (10 of 10 runs), and none may again.
#[test]
fn shrunk_model_findings_no_longer_contradict() {
    let dir = std::path::Path::new("tests/data/fuzz-regressions");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let out = Command::cargo_bin("epollscope")
            .expect("binary")
            .args(["run", "--explain"])
            .arg(&file)
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {text}", file.display());
        assert!(!text.contains("CONTRADICTS"), "{}: {text}", file.display());
    }
}

/// `--under` compares the runs with and without the shim: if the shim never loaded (here a
/// file that is not a library), the comparison was native against native, and the run must
/// say so instead of reporting nothing found.
#[test]
fn a_shim_that_never_loaded_is_an_error_not_a_clean_run() {
    let dir = tempdir("not-loaded");
    let fake = dir.join("not-a-library.so");
    std::fs::write(&fake, "not an ELF file\n").expect("write");
    for under in ["trace", "fastsocket"] {
        let out = fuzz()
            .args(["--under", under, "--count", "3", "--seed", "4", "--out"])
            .arg(dir.join("findings"))
            .env("EPOLLSCOPE_PRELOAD", &fake)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{under}: {err}");
        let want = format!("--under {under}: the shim wrote no trace");
        assert!(
            err.lines().last().is_some_and(|l| l.contains(&want)),
            "{under}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! `epollscope fuzz --kernel ...`: on the host kernel it finds what the plain run finds; on
//! Debian's 6.1 in a VM its cases really run in the guest.
//!
//! The VM test needs the tools `.ci/run` installs (see tests/kernel_matrix.rs); elsewhere it
//! skips with the reason printed.

mod common;
mod kernel_support;

use std::path::{Path, PathBuf};

use common::{run_clean, stderr, stdout, tool};
use kernel_support::{need_61, run_matrix, running_release, scratch};

/// `fuzz --kernel host` is the plain run, made through the kernel matrix: the same count and
/// findings (here from a rule planted wrong in the model), each finding file in `host/` naming
/// the running kernel, and nothing left behind.
#[test]
fn fuzz_on_the_host_kernel_finds_what_the_plain_run_finds() {
    let host = running_release();
    for (extra, found) in [(&[][..], 0), (&["--plant", "textbook-et"][..], 1)] {
        let dir = scratch("fuzz-host-out");
        let common = ["fuzz", "--seed", "6", "--count", "20", "-j", "1"];
        let plain = run_clean(
            tool("epollscope")
                .args(common)
                .args(extra)
                .arg("--out")
                .arg(dir.join("plain")),
        );
        let matrix_out = dir.join("matrix");
        let matrix = run_matrix(
            "fuzz-host",
            &[
                &common[..],
                extra,
                &["--kernel", "host", "--out", matrix_out.to_str().unwrap()],
            ]
            .concat(),
        );
        let expected_code = if found == 0 { 0 } else { 1 };
        assert_eq!(
            plain.status.code(),
            Some(expected_code),
            "{}",
            stderr(&plain)
        );
        assert_eq!(
            matrix.status.code(),
            Some(expected_code),
            "{}",
            stderr(&matrix)
        );
        let (plain_text, matrix_text) = (stdout(&plain), stdout(&matrix));
        let summary = format!("20 scenarios (seed 6, native, each run twice), {found} findings");
        assert!(
            plain_text.contains(&format!("fuzz: {summary}")),
            "{plain_text}"
        );
        assert!(
            matrix_text.starts_with(&format!("fuzz on {host} (host): {summary}, ")),
            "{matrix_text}"
        );
        // The same findings, line for line, but for where they were written.
        let plain_findings: Vec<String> = plain_text
            .lines()
            .filter(|l| l.starts_with("finding: "))
            .map(|l| l.replace(dir.join("plain").to_str().unwrap(), "OUT"))
            .collect();
        let matrix_findings: Vec<String> = matrix_text
            .lines()
            .filter(|l| l.starts_with("finding: "))
            .map(|l| l.replace(matrix_out.join("host").to_str().unwrap(), "OUT"))
            .collect();
        assert_eq!(plain_findings.len(), found, "{plain_text}");
        assert_eq!(plain_findings, matrix_findings);
        let files = |d: &Path| -> Vec<(String, String)> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .map(|e| {
                            let text = std::fs::read_to_string(e.path()).unwrap();
                            (e.file_name().to_string_lossy().into_owned(), text)
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let (a, b) = (files(&dir.join("plain")), files(&matrix_out.join("host")));
        assert_eq!(a, b, "the same finding files");
        assert_eq!(a.len(), found);
        for (_, text) in &a {
            assert!(text.contains(&format!(" on kernel {host}, ")), "{text}");
            epollscope::scenario::parse(Path::new("f.scn"), text).expect("parses");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The fuzz cases really run in the guest: its summary names the 6.1 kernel and the count,
/// and the finding a wrongly planted rule gives there comes back, naming that kernel.
#[test]
fn fuzz_on_debian_61_runs_its_cases_in_the_guest() {
    let (release, _vm) = need_61!();
    let dir = scratch("fuzz-vm-out");
    let out = run_matrix(
        "fuzz-vm",
        &[
            "fuzz",
            "--seed",
            "6",
            "--count",
            "20",
            "--plant",
            "textbook-et",
            "--accel",
            "tcg",
            "--kernel",
            &release,
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with(&format!(
            "fuzz on {release} (emulated (TCG)): 20 scenarios (seed 6, native, each run twice), "
        )),
        "{text}"
    );
    let findings: Vec<&str> = lines.collect();
    assert!(!findings.is_empty(), "{text}");
    let kernel_dir = dir.join(&release);
    for line in findings {
        let path = line
            .strip_prefix("finding: ")
            .and_then(|l| l.split_once(" ("))
            .map(|(p, _)| PathBuf::from(p))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(path.parent(), Some(kernel_dir.as_path()), "{text}");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.contains(&format!(" on kernel {release}, ")), "{file}");
        assert!(file.contains("planted-wrong-rule"), "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

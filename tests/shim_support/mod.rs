//! Helpers for the preload shim's tests: the shim library (built on demand: `cargo test` does
//! not build a cdylib), the example programs, and reading the per-process trace files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>/`, from where this test binary lives (`target/<profile>/deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The shim library, built (or found up to date) once per test binary. With
/// `EPOLLSCOPE_TEST_PRELOAD=PATH` the tests run against that build of the shim instead (the
/// examples are still built): how a regression test is shown to fail on an older shim.
pub fn preload_lib() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let other = std::env::var_os("EPOLLSCOPE_TEST_PRELOAD").map(PathBuf::from);
            let dir = profile_dir();
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .args(["build", "-q", "-p", "epollscope-preload"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cargo.arg("--release");
            }
            if let Some(target) = dir.parent() {
                cargo.arg("--target-dir").arg(target);
            }
            // The example programs and the epollscope binary the tests run, too: a lone
            // `cargo test --test shim_...` does not build examples.
            cargo.args([
                "-p",
                "epollscope",
                "--lib",
                "--example",
                "shim_probe",
                "--bin",
                "epollscope",
            ]);
            let out = cargo.output().expect("run cargo build for the shim");
            assert!(
                out.status.success(),
                "building the shim failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lib = other.unwrap_or_else(|| dir.join("libepollscope_preload.so"));
            assert!(lib.is_file(), "{} missing after the build", lib.display());
            lib
        })
        .clone()
}

/// An example program built by cargo for this test run.
pub fn example(name: &str) -> Command {
    preload_lib();
    Command::new(profile_dir().join("examples").join(name))
}

/// A fresh, empty directory for one test's trace files.
pub fn trace_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("es-shim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd` under the shim with the given settings (every other shim variable cleared).
pub fn under_shim<'a>(cmd: &'a mut Command, vars: &[(&str, &str)]) -> &'a mut Command {
    for v in [
        "EPOLLSCOPE_TRACE",
        "EPOLLSCOPE_TRACE_FORMAT",
        "EPOLLSCOPE_TRACE_BUFFER",
        "EPOLLSCOPE_FASTPATH",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("LD_PRELOAD", preload_lib());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// The pid a trace file belongs to: `trace.<pid>`, or `trace.<pid>.<n>` after an exec.
pub fn file_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("trace.")?;
    rest.split('.').next()?.parse().ok()
}

/// Every JSON trace line in `dir`, with the pid of the file it came from. Every line must
/// parse, but the last of a file, which a running process may be writing right now, and the
/// pieces of a stretch with zeros in it: a line a thread has reserved and not yet copied (or
/// one cut short by a kill) is zeros, and a read that races the writers may also see the
/// tail of a later line in a page read after that (the file is read an extent at a time).
pub fn trace_lines(dir: &Path) -> Vec<(i32, serde_json::Value)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_pid(&name) else {
            continue;
        };
        let bytes = epollscope::shim::merge::read_written(&entry.path()).unwrap();
        let stretches: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        for (i, stretch) in stretches.iter().enumerate() {
            let torn = stretch.contains(&0) || i + 1 == stretches.len();
            for line in stretch.split(|b| *b == 0) {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice(line) {
                    Ok(v) => out.push((pid, v)),
                    Err(_) if torn => {}
                    Err(e) => panic!(
                        "bad trace line in {name}: {e}: {}",
                        String::from_utf8_lossy(line)
                    ),
                }
            }
        }
    }
    out
}

/// The text of every trace file in `dir` (zero tails dropped).
pub fn trace_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = epollscope::shim::merge::read_written(&entry.path()).unwrap();
        for line in epollscope::shim::merge::lines(&bytes) {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
    }
    text
}

/// Lines of call `call` that succeeded.
pub fn ok_calls<'a>(
    lines: &'a [(i32, serde_json::Value)],
    call: &str,
) -> Vec<&'a (i32, serde_json::Value)> {
    lines
        .iter()
        .filter(|(_, v)| v["call"] == call && v["ret"].get("ok").is_some())
        .collect()
}

/// Asserts that a program run under test succeeded, showing its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

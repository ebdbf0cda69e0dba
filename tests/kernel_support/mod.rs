//! Helpers for the kernel-matrix tests: a TMPDIR of its own for each run of the tool and the
//! check that nothing it started or made is left behind, Debian's 6.1 image (or why the VM
//! tests skip here), one VM at a time, and scenarios with a `kernel:` header.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{run_clean, stderr, tool};

/// A fresh directory to be the tool's TMPDIR: every scratch directory the matrix makes lands
/// here, and every process it starts carries it in its environment.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("es-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Live processes whose environment holds `TMPDIR=<dir>` (the tool's children and theirs).
pub fn processes_with_tmpdir(dir: &Path) -> Vec<String> {
    let needle = format!("TMPDIR={}", dir.display());
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie
            && environ
                .split(|&b| b == 0)
                .any(|var| var.starts_with(needle.as_bytes()))
        {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{name} {}", comm.trim()));
        }
    }
    found
}

/// Runs the tool with its own TMPDIR and checks that afterwards no process it started lives on
/// and its scratch directories are gone.
pub fn run_matrix(tag: &str, args: &[&str]) -> Output {
    let tmp = scratch(tag);
    let out = run_clean(tool("epollscope").env("TMPDIR", &tmp).args(args));
    let left = processes_with_tmpdir(&tmp);
    assert!(
        left.is_empty(),
        "processes left behind: {left:?}\n{}",
        stderr(&out)
    );
    let files: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}\n{}", stderr(&out));
    std::fs::remove_dir(&tmp).unwrap();
    out
}

/// Debian's 6.1 image (`linux-image-amd64`, not the rt or cloud flavour) and the VM tools, or
/// why the VM tests cannot run here.
pub fn debian_61() -> Result<String, String> {
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    };
    for program in ["vng", "qemu-system-x86_64", "busybox"] {
        if !on_path(program) {
            return Err(format!("{program} is not installed (see .ci/run)"));
        }
    }
    let mut releases: Vec<String> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("vmlinuz-").map(str::to_string)
        })
        .filter(|r| {
            r.starts_with("6.1.")
                && r.ends_with("-amd64")
                && !r.contains("-rt-")
                && !r.contains("cloud")
        })
        .collect();
    releases.sort();
    releases
        .pop()
        .ok_or_else(|| "no /boot/vmlinuz-6.1.*-amd64 (install linux-image-amd64)".into())
}

/// One VM at a time: two emulated guests on a 2-core machine only slow each other down.
pub static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Debian 6.1 release and the VM lock, or return after printing why the test skips.
// Not every test binary that shares this module boots a VM.
#[allow(unused_macros)]
macro_rules! need_61 {
    () => {
        match $crate::kernel_support::debian_61() {
            Ok(release) => (
                release,
                $crate::kernel_support::ONE_VM
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use need_61;

pub fn running_release() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Writes a scenario into a fresh directory and returns its path.
pub fn scenario_file(tag: &str, source: &str) -> PathBuf {
    let dir = scratch(&format!("scn-{tag}"));
    let path = dir.join(format!("{tag}.scn"));
    std::fs::write(&path, source).unwrap();
    path
}

/// A scenario that passes on any kernel, with `kernel: HEADER`.
pub fn needing(header: &str) -> String {
    format!(
        "# Needs a kernel {header}.
family: unix
kernel: {header}
socket(FAMILY, SOCK_STREAM, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
"
    )
}

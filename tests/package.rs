//! The installed tool, as a user gets it: the Debian package installed with `dpkg -i`
//! (root only), and `cargo install` into an empty prefix. Both artefacts are built by
//! `.ci/run`, which names them in `EPOLLSCOPE_TEST_DEB` and `EPOLLSCOPE_TEST_PREFIX`; the tests
//! skip with the reason when they are absent. Everything runs from a directory without
//! `./scenarios`, with no `EPOLLSCOPE_PRELOAD`, and outside the source tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn artefact(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("skipped: {var} is not set (.ci/run builds it and sets it)");
            None
        }
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epollscope-pkg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs an installed program from `cwd` with a clean environment but PATH and HOME.
fn run(program: &Path, args: &[&str], cwd: &Path, home: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What both installs must do: run the library's herd scenario (natively and under the
/// Fastsocket shim), and trace a program.
fn check_installed(bin: &Path, cwd: &Path, home: &Path) {
    let out = run(
        bin,
        &["run", "--filter", "herd-epoll-shared-listener"],
        cwd,
        home,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("PASS "), "{}", text(&out));
    let out = run(
        bin,
        &[
            "run",
            "--under",
            "fastsocket",
            "--filter",
            "herd-epoll-shared-listener",
        ],
        cwd,
        home,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("fast path"), "{}", text(&out));
    let probe = bin.with_file_name("epoll-socket-test");
    let out = run(
        bin,
        &["trace", "--", probe.to_str().unwrap(), "unix"],
        cwd,
        home,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("epoll_wait("), "{}", text(&out));
    assert!(text(&out).contains("# accepts per pid"), "{}", text(&out));
}

#[test]
fn the_debian_package_installs_and_runs() {
    let Some(deb) = artefact("EPOLLSCOPE_TEST_DEB") else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dpkg -i needs root");
        return;
    }
    let status = Command::new("dpkg").arg("-i").arg(&deb).status().unwrap();
    assert!(status.success(), "dpkg -i {}", deb.display());
    for file in [
        "/usr/bin/epollscope",
        "/usr/bin/epoll-socket-test",
        "/usr/bin/epoll-listen-fork",
        "/usr/bin/socket-connect",
        "/usr/lib/epollscope/libepollscope_preload.so",
        "/usr/share/epollscope/scenarios/herd-epoll-shared-listener.scn",
        "/usr/share/epollscope/scenarios/kernel-selftests/epoll01.scn",
        "/usr/share/epollscope/scenarios/ltp/epoll_ctl01.scn",
        "/usr/share/bash-completion/completions/epollscope",
        "/usr/share/zsh/vendor-completions/_epollscope",
        "/usr/share/fish/vendor_completions.d/epollscope.fish",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    let man = [
        "/usr/share/man/man1/epollscope.1",
        "/usr/share/man/man1/epollscope.1.gz",
    ];
    assert!(man.iter().any(|m| Path::new(m).is_file()), "no man page");
    let dir = scratch("deb");
    // The packaged shim is used (no cache is written under HOME).
    check_installed(Path::new("/usr/bin/epollscope"), &dir, &dir);
    assert!(!dir.join(".cache/epollscope").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    let status = Command::new("dpkg")
        .args(["-r", "epollscope"])
        .status()
        .unwrap();
    assert!(status.success(), "dpkg -r epollscope");
}

#[test]
fn cargo_install_into_an_empty_prefix_is_complete() {
    let Some(prefix) = artefact("EPOLLSCOPE_TEST_PREFIX") else {
        return;
    };
    let bin = prefix.join("bin/epollscope");
    // Only the binaries: the shim travels inside epollscope.
    assert!(!prefix.join("bin/libepollscope_preload.so").exists());
    let dir = scratch("prefix");
    // No ./scenarios here and no installed library next to the binary: give the files.
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    std::os::unix::fs::symlink(&library, dir.join("scenarios")).unwrap();
    check_installed(&bin, &dir, &dir);
    // The embedded shim was extracted to the user's cache, closed to others.
    let cache = dir.join(".cache/epollscope");
    let shims: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(shims.len(), 1, "{shims:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    std::fs::remove_dir_all(&dir).unwrap();
}

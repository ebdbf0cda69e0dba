//! Embeds the preload shim in release builds, so that `cargo install` (which installs binaries
//! only) gives a complete tool: `epollscope` extracts its copy on first use
//! (`epollscope::shim::embedded`).
//!
//! The shim is a second crate (`preload/`, a cdylib that links this library), and cargo cannot
//! yet depend on another crate's cdylib, so the shim is built here by a nested cargo into
//! `OUT_DIR`. The nested build compiles this package again; `EPOLLSCOPE_SHIM_NESTED` tells that
//! inner build script to embed nothing, which ends the recursion.
//!
//! Debug builds embed nothing by default (the workspace build puts the shim next to the
//! binaries, where it is found first) to keep the edit-compile loop at one compile of the
//! library. `EPOLLSCOPE_EMBED_SHIM=1` forces embedding, `=0` turns it off.

use std::path::{Path, PathBuf};
use std::process::Command;

const NESTED: &str = "EPOLLSCOPE_SHIM_NESTED";
const EMBED: &str = "EPOLLSCOPE_EMBED_SHIM";
const LIBRARY: &str = "libepollscope_preload.so";

fn main() {
    println!("cargo:rerun-if-env-changed={NESTED}");
    println!("cargo:rerun-if-env-changed={EMBED}");
    // Without this line cargo reruns the script (and rebuilds the library) when any file of
    // the package changes, tests included.
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("shim.so");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let wanted = match std::env::var(EMBED).as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => release,
    };
    if std::env::var_os(NESTED).is_some() || !wanted {
        write_if_changed(&dest, &[]);
        return;
    }
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    for watched in ["preload", "src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    if !root.join("preload/Cargo.toml").is_file() {
        // Built from a package without the workspace (not how epollscope is distributed):
        // the binary then looks for the shim on disk only.
        println!("cargo:warning=preload/ not found: the shim is not embedded");
        write_if_changed(&dest, &[]);
        return;
    }
    let target_dir = out.join("shim-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--package")
        .arg("epollscope-preload")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env(NESTED, "1")
        // The embedded copy needs no debug info (18 MB of the shim's 19 with it); strip keeps
        // the dynamic symbol table, which is what LD_PRELOAD interposes.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        // The outer build's target dir must not be shared: cargo holds its lock.
        .env_remove("CARGO_TARGET_DIR");
    if std::env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    let status = cmd
        .status()
        .expect("running cargo to build the preload shim");
    assert!(status.success(), "building the preload shim failed");
    let built = target_dir.join("release").join(LIBRARY);
    let bytes = std::fs::read(&built).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    write_if_changed(&dest, &bytes);
}

/// Rewrites `dest` only when its content changes, so an unchanged shim does not relink.
fn write_if_changed(dest: &Path, bytes: &[u8]) {
    if std::fs::read(dest).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(dest, bytes).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

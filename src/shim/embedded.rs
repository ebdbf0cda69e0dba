//! The copy of the shim built into release binaries (see `build.rs`), and how it reaches the
//! disk: `LD_PRELOAD` needs a file.
//!
//! It is written once per user and per shim build to
//! `$XDG_CACHE_HOME/epollscope/libepollscope_preload-<checksum>.so` (else `~/.cache/...`): the
//! checksum of the content is in the name, so binaries of different versions never share a
//! file, and an existing file is used only when its bytes are exactly the embedded ones. The
//! directory must be the user's own and closed to others (0700), since whatever file is there
//! is loaded into every traced program; the file is written to a fresh temporary name and
//! renamed into place, so a concurrent run never loads half a library.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The shim's bytes, empty when this build did not embed it.
pub const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shim.so"));

/// Where the embedded shim goes: `$XDG_CACHE_HOME/epollscope`, else `$HOME/.cache/epollscope`.
pub fn cache_dir() -> Result<PathBuf, String> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
        return Ok(dir.join("epollscope"));
    }
    match std::env::var_os("HOME").and_then(absolute) {
        Some(home) => Ok(home.join(".cache").join("epollscope")),
        None => Err("neither XDG_CACHE_HOME nor HOME is set to an absolute path".into()),
    }
}

/// FNV-1a, 64 bits: names the file after its content. Not a defence (the full content is
/// compared before a file is trusted), only a way to keep versions apart.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `bytes` into `dir` (created 0700 if missing) unless an identical copy is there, and
/// returns the file's path.
pub fn extract(dir: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let at = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(at)?;
    let meta = std::fs::symlink_metadata(dir).map_err(at)?;
    let me = nix::unistd::getuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: not a directory owned by uid {me} and closed to others: the shim is not \
             written there (set EPOLLSCOPE_PRELOAD or XDG_CACHE_HOME)",
            dir.display()
        ));
    }
    let path = dir.join(format!("libepollscope_preload-{:016x}.so", checksum(bytes)));
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(path);
    }
    let tmp = dir.join(format!(
        ".shim-{}-{:016x}.tmp",
        std::process::id(),
        checksum(bytes)
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o500)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    let placed = written.and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing the shim to {}: {e}", path.display()));
    }
    // A file left 0700 by an older run is fine; only make sure others cannot write it.
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o500));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("epollscope-embed-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn extracts_once_and_replaces_a_tampered_copy() {
        let dir = scratch("once").join("cache");
        let a = extract(&dir, b"shim one").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"shim one");
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o500);
        // Same bytes: same file, untouched.
        let ino = std::fs::metadata(&a).unwrap().ino();
        assert_eq!(extract(&dir, b"shim one").unwrap(), a);
        assert_eq!(std::fs::metadata(&a).unwrap().ino(), ino);
        // Another build: another name.
        let b = extract(&dir, b"shim two").unwrap();
        assert_ne!(a, b);
        // A copy whose content differs from its name is replaced, not loaded.
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(&a, b"tampered").unwrap();
        assert_eq!(extract(&dir, b"shim one").unwrap(), a);
        assert_eq!(std::fs::read(&a).unwrap(), b"shim one");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let dir = scratch("open");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = extract(&dir, b"shim").unwrap_err();
        assert!(err.contains("closed to others"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

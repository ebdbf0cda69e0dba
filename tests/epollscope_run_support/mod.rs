//! What the `epollscope run` tests share: a directory of their own and scenario files in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A directory of the test's own, removed when dropped: a test run leaves nothing behind.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("es-run-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scenario written into a directory of its own.
pub struct ScenarioFile {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl std::ops::Deref for ScenarioFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for ScenarioFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// Writes a scenario into a fresh directory and returns it.
pub fn scenario_file(tag: &str, source: &str) -> ScenarioFile {
    let dir = TempDir::new(tag);
    let path = dir.0.join(format!("{tag}.scn"));
    std::fs::write(&path, source).unwrap();
    ScenarioFile { dir, path }
}

pub const PASSING: &str = "# A listener with a pending connection is readable.
family: unix inet
socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
epoll_create1(0) = E
epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data={u64=L}}) = 0
socket(FAMILY, SOCK_STREAM, 0) = C
connect(C, ADDR) = 0
epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1
";

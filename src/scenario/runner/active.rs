//! Every run in progress in this process, so that a program stopped by a signal can end their
//! actors and remove their directories ([`abort_all`]), and no new run starts after that.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::sys::procfs;

/// Every run in progress in this process: its actors and its directory, so that a stop
/// signal can end them all ([`abort_all`]).
static ACTIVE: Mutex<BTreeMap<usize, (Vec<Pid>, PathBuf)>> = Mutex::new(BTreeMap::new());

pub(super) fn active() -> std::sync::MutexGuard<'static, BTreeMap<usize, (Vec<Pid>, PathBuf)>> {
    // A panicking run thread must not stop the others' bookkeeping.
    ACTIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set by [`abort_all`]: no run starts any more.
static ABORTED: AtomicBool = AtomicBool::new(false);

/// Kills the actors of every run in progress and removes their directories, and lets no new
/// run start: for a program stopped by SIGINT or SIGTERM, which then exits without waiting
/// for the runs (they fail as their actors die; see [`aborted`]).
pub fn abort_all() {
    let active = active();
    ABORTED.store(true, Ordering::SeqCst);
    for (pids, dir) in active.values() {
        kill_and_wait(pids);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether [`abort_all`] was called: the runs that ended since failed because of it, and
/// their reports must not be taken for verdicts.
pub fn aborted() -> bool {
    ABORTED.load(Ordering::SeqCst)
}

/// SIGKILLs `pids` and waits (bounded) until each is gone or a zombie: a process that was in
/// the middle of a bind may still create its socket file until then.
pub(super) fn kill_and_wait(pids: &[Pid]) {
    for &pid in pids {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&pid| !procfs::exited(pid)) && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

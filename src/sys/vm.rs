//! What the kernel matrix needs from the OS for the processes it starts: a child that dies with
//! the thread that started it, and waiting for a child without reaping it (so its process group
//! id cannot be reused before the group is killed).

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

/// Makes the command's process get SIGKILL when the thread that spawned it exits, so a
/// killed epollscope leaves no direct child behind even before its guard knows the child.
pub fn die_with_spawner(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec; it only calls prctl(2),
    // which is async-signal-safe, and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Whether child `pid` has exited, without reaping it: the zombie keeps its pid (and so its
/// process group id) reserved until the caller reaps it.
pub fn has_exited(pid: Pid) -> Result<bool, Errno> {
    let status = waitid(
        Id::Pid(pid),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    )?;
    Ok(status != WaitStatus::StillAlive)
}

/// Reaps every exited child in process group `group` (members adopted by this process as
/// subreaper after their parent died), without blocking.
pub fn reap_group(group: Pid) {
    while let Ok(status) =
        nix::sys::wait::waitpid(Pid::from_raw(-group.as_raw()), Some(WaitPidFlag::WNOHANG))
    {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

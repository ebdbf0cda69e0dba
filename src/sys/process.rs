//! Processes: fork, exec, reaping, the parent-death signal, and moving an fd out of the way.
//!
//! Every process a tool starts must die with it, also when the tool is SIGKILLed: children
//! call [`die_with_parent`] first thing, which also covers a parent that died before the
//! request was made.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
pub use nix::unistd::{ForkResult, Pid};

use super::RawFd;

/// fork(2).
///
/// Callers fork from a process whose other threads (if any) hold no lock the child needs:
/// the tools and actors are single-threaded, and the scenario runner's children only make
/// system calls and exec or serve (glibc resets the allocator's lock in the child).
pub fn fork() -> Result<ForkResult, Errno> {
    // SAFETY: see the contract above; every caller in the crate keeps to it.
    unsafe { nix::unistd::fork() }
}

/// Asks the kernel to send `signal` to this process when its parent dies, and returns false
/// when the parent is already gone (it is no longer `parent`): the caller should then exit.
pub fn die_with_parent(signal: Signal, parent: Pid) -> Result<bool, Errno> {
    nix::sys::prctl::set_pdeathsig(signal)?;
    Ok(nix::unistd::getppid() == parent)
}

/// Makes the program `cmd` starts receive `signal` when this process dies (SIGKILL included),
/// so that it cannot outlive the tool; if this process is already gone by the time the
/// program would start, it does not start. The program also starts with no signal blocked
/// (a tool that takes its signals through a signalfd has them blocked).
pub fn die_with_parent_after_spawn(cmd: &mut std::process::Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    let sig = signal as libc::c_int;
    let parent_raw = parent.as_raw();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (sigemptyset, sigprocmask, prctl, getppid, kill) on its own
    // stack; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent_raw {
                libc::kill(libc::getpid(), sig);
            }
            Ok(())
        });
    }
}

/// Reaps one child, retrying on EINTR. `Err(ECHILD)` when it is not (or no longer) ours.
pub fn reap(pid: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Reaps every child that has exited, without blocking; returns their pids and statuses.
/// (SIGCHLDs coalesce, so one signal may stand for several exits.)
pub fn reap_exited() -> Vec<(Pid, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    out.push((pid, status));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out
}

/// Moves `fd` to the lowest free number at or above `min` (close-on-exec), closing the
/// original: a private fd parked there does not shift the numbers the code under study gets.
pub fn move_high(fd: OwnedFd, min: RawFd) -> Result<OwnedFd, Errno> {
    let high = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// Like [`move_high`] on a raw number the caller owns; on failure the original is kept.
pub fn move_high_raw(fd: RawFd, min: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new fd; it touches no memory.
    let high = super::check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    let _ = super::close(fd);
    Ok(high)
}

/// Puts `fd` on number `target` without close-on-exec, so that an exec'd program finds it
/// there. Consumes `fd` (it stays open only as `target`).
pub fn place_for_exec(fd: OwnedFd, target: RawFd) -> Result<(), Errno> {
    let raw = fd.as_raw_fd();
    if raw == target {
        // dup2 onto itself keeps FD_CLOEXEC: clear it by hand, and keep the number open.
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        std::mem::forget(fd);
        return Ok(());
    }
    // dup2 clears FD_CLOEXEC on the copy; the original closes when `fd` drops.
    super::dup2(raw, target).map(drop)
}

/// Closes every fd in `first..=last` (close_range(2)); errors are ignored, as for close.
pub fn close_range(first: u32, last: u32) {
    // SAFETY: closes fds the caller declares it owns; no memory is involved.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0);
    }
}

/// execve(2); returns only on failure.
pub fn exec(exe: &CString, argv: &[CString], envp: &[CString]) -> Errno {
    match nix::unistd::execve(exe, argv, envp) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

// --- added by H2 (scenario runner)

/// Takes ownership of an fd this program inherited at a known number (an exec'd child finds
/// its channel there). Exits if nothing is open there: the parent broke the contract.
pub fn take_inherited(fd: RawFd) -> OwnedFd {
    if super::fcntl_getfd(fd).is_err() {
        std::process::exit(120);
    }
    // SAFETY: the fd is open (checked above) and, by the exec contract, owned by nothing else
    // in this fresh program.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether `fd` has something to read (or a peer to accept) right now, without waiting.
pub fn readable(fd: RawFd) -> bool {
    let mut pfd = [nix::poll::PollFd::new(
        // SAFETY: the caller names an fd open for the duration of this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut pfd, 0u16), Ok(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_high_lands_at_or_above_the_minimum_and_closes_the_original() {
        let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let low = r.as_raw_fd();
        let high = move_high(r, 700).unwrap();
        assert!(high.as_raw_fd() >= 700);
        // The original number no longer names the pipe. It may name something else by now:
        // tests run on threads that share the fd table, so it is looked at, never closed.
        let link = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
        assert!(link(high.as_raw_fd()).is_some());
        assert_ne!(link(low), link(high.as_raw_fd()));
    }
}

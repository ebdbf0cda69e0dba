//! What `/proc` says about a process or thread, e.g. whether it is asleep in a system call.
//!
//! This is the crate's one test of "is this task asleep in a syscall": its state is S (an
//! interruptible sleep, i.e. waiting for an event; D is a lock or I/O wait on the way in or
//! out of a call, such as a woken epoll_wait waiting for its set's mutex) and
//! `/proc/PID/syscall` names one of the expected system calls.

use nix::unistd::Pid;

/// The one-letter state of a process (R, S, D, Z, ...), `None` if it is gone.
pub fn state(pid: Pid) -> Option<char> {
    state_at(&format!("/proc/{pid}"))
}

/// The state of thread `tid` of process `pid` (`/proc/PID/task/TID`).
pub fn task_state(pid: Pid, tid: Pid) -> Option<char> {
    state_at(&format!("/proc/{pid}/task/{tid}"))
}

/// Whether thread `tid` of process `pid` is asleep waiting for an event inside one of
/// `syscalls` (for a process, `tid` is `pid`: its main thread).
pub fn task_asleep_in(pid: Pid, tid: Pid, syscalls: &[i64]) -> bool {
    let dir = format!("/proc/{pid}/task/{tid}");
    state_at(&dir) == Some('S') && syscall_at(&dir).is_some_and(|nr| syscalls.contains(&nr))
}

fn state_at(dir: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name in parentheses may contain anything, so split after its last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
}

/// Whether `pid` is gone or a zombie: it holds no fds any more.
pub fn exited(pid: Pid) -> bool {
    matches!(state(pid), None | Some('Z' | 'X'))
}

/// The number of the system call `pid` is in, `None` when it runs in user space, is gone, or
/// the kernel does not say.
pub fn syscall(pid: Pid) -> Option<i64> {
    syscall_at(&format!("/proc/{pid}"))
}

fn syscall_at(dir: &str) -> Option<i64> {
    std::fs::read_to_string(format!("{dir}/syscall"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `pid` is asleep waiting for an event inside one of `syscalls`.
pub fn asleep_in(pid: Pid, syscalls: &[i64]) -> bool {
    state(pid) == Some('S') && syscall(pid).is_some_and(|nr| syscalls.contains(&nr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_asleep_in_read_is_seen_there_and_not_elsewhere() {
        // Close-on-exec, so that cat holds no copy of the write end and sees EOF at the end.
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::from(r))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        // cat blocks reading the empty pipe: wait for that condition, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !asleep_in(pid, &[libc::SYS_read]) {
            assert!(std::time::Instant::now() < deadline, "cat never blocked");
            std::thread::yield_now();
        }
        assert!(!asleep_in(pid, &[libc::SYS_accept]));
        drop(w);
        child.wait().unwrap();
        assert!(state(pid).is_none() || exited(pid));
    }
}

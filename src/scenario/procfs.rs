//! Reading /proc to know, without sleeping, whether an actor is asleep inside the blocking
//! call it was given: its state (S or D) and the syscall number it is in.

use nix::unistd::Pid;

use super::ast::Op;

/// The syscalls a blocked call of `op` can be sleeping in (glibc may route one call through
/// another, e.g. epoll_wait through epoll_pwait).
pub fn syscalls_of(op: &Op) -> &'static [i64] {
    match op {
        Op::EpollWait { .. } => &[
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_pwait2,
        ],
        Op::Accept { .. } | Op::Accept4 { .. } => &[libc::SYS_accept, libc::SYS_accept4],
        Op::Connect { .. } => &[libc::SYS_connect],
        Op::Read { .. } => &[libc::SYS_read],
        _ => &[],
    }
}

/// The one-letter state of a process from /proc/PID/stat, `None` if it is gone.
pub fn proc_state(pid: Pid) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Whether `pid` is asleep inside one of `syscalls`.
pub fn blocked_in(pid: Pid, syscalls: &[i64]) -> bool {
    // Only an interruptible sleep is a wait for an event. D is a lock or I/O wait on the way
    // in or out of the call (a woken epoll_wait waits for the set's mutex in D).
    if proc_state(pid).as_deref() != Some("S") {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok())
        })
        .is_some_and(|nr| syscalls.contains(&nr))
}

//! How a traced process ended, as far as its trace can tell: its own last word (the shim
//! traces main's return, exit, _exit and _Exit as `exit(STATUS)`), or what a traced parent's
//! wait returned for it. A process killed by a signal has no last word; only a parent that
//! reaped it knows the signal.

/// How a process ended, as far as a trace can know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its own last word: main returned, or it called exit, _exit or _Exit (the low 8 bits of
    /// the status, as a parent sees them).
    Exited(i32),
    /// What a traced parent's wait returned for it: exit code or signal, from the kernel.
    Reaped { by: i32, how: Ended },
    /// What the launcher's own wait returned (`epollscope trace` waits for its direct child).
    Waited(Ended),
}

/// The kernel's account of a process's end (a wait status decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
    /// Stopped or continued, not ended (a wait with WUNTRACED): says nothing of the end.
    NotEnded,
}

impl Ended {
    pub fn from_wait_status(status: i32) -> Ended {
        if libc::WIFEXITED(status) {
            Ended::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Ended::Signal(libc::WTERMSIG(status))
        } else {
            Ended::NotEnded
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Code(c) => write!(f, "exit {c}"),
            Ended::Signal(sig) => match nix::sys::signal::Signal::try_from(*sig) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            Ended::NotEnded => write!(f, "stopped"),
        }
    }
}

impl End {
    /// The end as the kernel reports it where known, else as the process said it.
    pub fn how(&self) -> Ended {
        match self {
            End::Exited(code) => Ended::Code(*code),
            End::Reaped { how, .. } | End::Waited(how) => *how,
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Exited(code) => write!(f, "exit {code}"),
            End::Reaped { by, how } => write!(f, "{how} (reaped by {by})"),
            End::Waited(how) => write!(f, "{how} (reaped by epollscope)"),
        }
    }
}

//! Trace events and their one formatter, in strace's syntax.
//!
//! Every call the tools, the scenario runner and the preload shim make becomes an [`Event`].
//! An event carries both the real values (fd numbers, ports, paths, pid, time) and the symbolic
//! names given to them when they were created (`L` for a listener, `PORT` for an ephemeral
//! port), so one event renders two ways:
//!
//! * [`Rendering::Symbolic`]: names instead of numbers, no times or pids; stable across runs,
//!   which is what snapshots compare.
//! * [`Rendering::Raw`]: real numbers, with `[pid N] HH:MM:SS.micros` like `strace -f -tt` and
//!   the call's duration like `strace -T`.
//!
//! Events serialise to JSON (serde), which is also how child processes ship theirs to a parent.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

mod format;
mod parts;
mod renderer;
#[cfg(test)]
mod tests;

pub use format::{Format, Rendering, render_all};
pub use parts::Part;
pub use renderer::{errno_text, quote_bytes};

use crate::addr::SockAddr;
pub use crate::names::{epoll_events_name, parse_epoll_events};

/// An fd as it appeared in a call: its number and, if it has one, its role name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdRef {
    pub num: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An address as it appeared in a call, with the alias its port or path has in symbolic traces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrRef {
    pub addr: SockAddr,
    pub len: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// One epoll_event: the event mask and the 64-bit user data (named when it holds a known fd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEv {
    pub events: u32,
    pub data: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_name: Option<String>,
}

/// A system call and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Socket {
        domain: i32,
        ty: i32,
        protocol: i32,
    },
    Setsockopt {
        fd: FdRef,
        level: i32,
        option: i32,
        value: i32,
    },
    Bind {
        fd: FdRef,
        addr: AddrRef,
    },
    Listen {
        fd: FdRef,
        backlog: i32,
    },
    Getsockname {
        fd: FdRef,
        addr: Option<AddrRef>,
    },
    Connect {
        fd: FdRef,
        addr: AddrRef,
    },
    Accept {
        fd: FdRef,
    },
    Accept4 {
        fd: FdRef,
        flags: i32,
    },
    Close {
        fd: FdRef,
    },
    Shutdown {
        fd: FdRef,
        how: i32,
    },
    Dup {
        fd: FdRef,
    },
    Dup2 {
        fd: FdRef,
        target: FdRef,
    },
    Read {
        fd: FdRef,
        data: Vec<u8>,
        count: usize,
    },
    Write {
        fd: FdRef,
        data: Vec<u8>,
    },
    EpollCreate1 {
        flags: i32,
    },
    EpollCtl {
        epfd: FdRef,
        op: i32,
        fd: FdRef,
        event: Option<EpollEv>,
    },
    EpollWait {
        epfd: FdRef,
        events: Vec<EpollEv>,
        maxevents: i32,
        timeout: i32,
        #[serde(default)]
        pwait: bool,
    },
    Fork,
    /// A built-in of the scenario runner (not a system call), e.g. `drain(L)`.
    Builtin {
        name: String,
        args: Vec<FdRef>,
    },
    /// A call rendered from its parts: `name(args...)`, and on success ` = N (detail)` as
    /// strace shows what poll wrote back.
    Sys {
        name: String,
        args: Vec<Part>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Part>,
    },
    /// A line the runner adds to a trace: a checked aggregate, a phase. Rendered `# text`.
    Note {
        text: String,
    },
}

/// What a call returned: a value (optionally named: a new fd's role, a child's name) or an errno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    Ok {
        value: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Err {
        #[serde(with = "errno_name")]
        errno: Errno,
    },
    /// The call was started in the background and has not returned yet.
    Unfinished,
}

impl Ret {
    pub fn value(v: i64) -> Ret {
        Ret::Ok {
            value: v,
            name: None,
        }
    }

    pub fn errno(&self) -> Option<Errno> {
        match self {
            Ret::Err { errno } => Some(*errno),
            Ret::Ok { .. } | Ret::Unfinished => None,
        }
    }
}

/// One traced call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The process's role in the experiment (`main`, `child`, `w2`...).
    pub actor: String,
    pub pid: i32,
    /// Wall-clock start of the call, microseconds since the Unix epoch.
    pub time_us: u64,
    /// How long the call took, in microseconds.
    pub dur_us: u64,
    #[serde(flatten)]
    pub call: Call,
    pub ret: Ret,
    /// This is the return of a call whose start was traced earlier as unfinished.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resumed: bool,
    /// The calling thread slept in the call: it blocked and something woke it. The preload
    /// shim measures this (the thread's voluntary context switches across the call) for the
    /// calls that can block; the timelines mark such a return as a wake-up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub slept: bool,
    /// How the symbolic rendering treats an outcome that may differ between runs.
    #[serde(default, skip_serializing_if = "Stability::is_stable")]
    pub stability: Stability,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether an event's outcome is the same on every run. Symbolic traces are compared across
/// runs, so what may vary (which of four herd waiters woke) is shown as a pattern or left out;
/// the raw rendering always shows what happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    #[default]
    Stable,
    /// Symbolic rendering shows `= <pattern>` and hides output arguments.
    Pattern(String),
    /// Symbolic rendering leaves the event out.
    Hidden,
}

impl Stability {
    pub fn is_stable(&self) -> bool {
        *self == Stability::Stable
    }
}

pub use crate::names::errno_from_name;

/// Serialises an errno by its name (`"EAGAIN"`), as people read it.
mod errno_name {
    use nix::errno::Errno;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(errno: &Errno, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{errno:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Errno, D::Error> {
        let name = String::deserialize(d)?;
        super::errno_from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown errno name {name}")))
    }
}

//! The parsed form of a scenario: typed steps, checked before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use serde::Serialize;

use crate::addr::Family;

/// A position in a scenario file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

/// A whole scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Where it came from (for messages); `<string>` when parsed from memory.
    pub path: PathBuf,
    pub source: String,
    /// The leading comment block: what the scenario demonstrates.
    pub description: String,
    /// The `family:` matrix; the scenario runs once per family.
    pub families: Vec<Family>,
    pub timeout: Duration,
    pub step_timeout: Duration,
    /// `capture`: record the run's loopback traffic and summarise its flows.
    pub capture: bool,
    /// The statements, with `repeat` blocks already unrolled.
    pub body: Vec<Stmt>,
}

impl Scenario {
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    }

    /// The source line at `span`, for messages.
    pub fn line(&self, span: Span) -> &str {
        self.source.lines().nth(span.line - 1).unwrap_or("").trim()
    }
}

#[derive(Clone, Debug)]
pub enum Stmt {
    Step(Step),
    /// `await(w1, w2)`: wait for the actors' background calls to return.
    Await {
        actors: Vec<String>,
        span: Span,
    },
    /// `expect woken(w1, w2) = 1`: an aggregate across actors or captured values.
    Expect {
        aggregate: Aggregate,
        expect: Expect,
        span: Span,
    },
}

/// One call by one actor.
#[derive(Clone, Debug)]
pub struct Step {
    pub span: Span,
    pub actor: String,
    pub op: Op,
    pub expect: Option<Expect>,
    /// Ends with `&`: started in the background; the runner checks it is blocked.
    pub background: bool,
}

/// An fd argument: a name bound earlier, or a literal number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdArg {
    Name(String),
    Num(i32),
}

/// epoll user data: the number of a named fd, or a literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataArg {
    Name(String),
    Num(u64),
}

/// `{events=EPOLLIN|EPOLLET, data={u64=L}}`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventArg {
    pub events: u32,
    pub data: DataArg,
}

/// The family of a new socket: fixed, or the scenario's matrix family (`FAMILY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainArg {
    Matrix,
    Fixed(Family),
}

/// What a step does. Names here are script names; the runner maps them to numbers per actor.
#[derive(Clone, Debug)]
pub enum Op {
    Socket {
        domain: DomainArg,
        ty: i32,
    },
    Setsockopt {
        fd: FdArg,
        level: i32,
        option: i32,
        value: i32,
    },
    Bind {
        fd: FdArg,
        addr: String,
    },
    Listen {
        fd: FdArg,
        backlog: i32,
    },
    Connect {
        fd: FdArg,
        addr: String,
    },
    Accept {
        fd: FdArg,
    },
    Accept4 {
        fd: FdArg,
        flags: i32,
    },
    Close {
        fd: FdArg,
    },
    Shutdown {
        fd: FdArg,
        how: i32,
    },
    Dup {
        fd: FdArg,
    },
    Dup2 {
        fd: FdArg,
        target: FdArg,
    },
    Read {
        fd: FdArg,
        /// Expected bytes, when the script gives a string rather than `...`.
        expect_data: Option<Vec<u8>>,
        count: usize,
    },
    Write {
        fd: FdArg,
        data: Vec<u8>,
    },
    EpollCreate1 {
        flags: i32,
    },
    EpollCtl {
        epfd: FdArg,
        op: i32,
        fd: FdArg,
        event: Option<EventArg>,
    },
    EpollWait {
        epfd: FdArg,
        /// Expected events (any order), when the script gives them rather than `[...]`.
        expect_events: Option<Vec<EventArg>>,
        maxevents: i32,
        timeout: i32,
        pwait: bool,
    },
    Fork,
    /// Built-in: accept every queued connection (without blocking), close them, return the count.
    Drain {
        fd: FdArg,
    },
    /// Built-in: the actor exits (its fds close, as at a real exit).
    Exit {
        code: i32,
    },
}

impl Op {
    /// The call's name as written in scripts and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Socket { .. } => "socket",
            Op::Setsockopt { .. } => "setsockopt",
            Op::Bind { .. } => "bind",
            Op::Listen { .. } => "listen",
            Op::Connect { .. } => "connect",
            Op::Accept { .. } => "accept",
            Op::Accept4 { .. } => "accept4",
            Op::Close { .. } => "close",
            Op::Shutdown { .. } => "shutdown",
            Op::Dup { .. } => "dup",
            Op::Dup2 { .. } => "dup2",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::EpollCreate1 { .. } => "epoll_create1",
            Op::EpollCtl { .. } => "epoll_ctl",
            Op::EpollWait { pwait: false, .. } => "epoll_wait",
            Op::EpollWait { pwait: true, .. } => "epoll_pwait",
            Op::Fork => "fork",
            Op::Drain { .. } => "drain",
            Op::Exit { .. } => "exit",
        }
    }

    /// What a successful call returns, which decides what `= NAME` may bind.
    pub fn returns(&self) -> Returns {
        match self {
            Op::Socket { .. }
            | Op::Accept { .. }
            | Op::Accept4 { .. }
            | Op::Dup { .. }
            | Op::Dup2 { .. }
            | Op::EpollCreate1 { .. } => Returns::Fd,
            Op::Fork => Returns::Actor,
            Op::Exit { .. } => Returns::Nothing,
            _ => Returns::Number,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    Fd,
    Actor,
    Number,
    Nothing,
}

/// The right-hand side of `= ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `= 3`
    Value(i64),
    /// `= -1 EAGAIN`
    Errno(Errno),
    /// `= L`: success, and the new fd (or actor) is named L.
    Bind(String),
    /// `= 1..4` (inclusive)
    Range(i64, i64),
    /// `= ?`: anything, success or error.
    Any,
    /// `= $n`: success; remember the value as `$n`.
    Capture(String),
}

impl Expect {
    /// Whether the outcome is pinned to one value (so traces show it as it was).
    pub fn is_exact(&self) -> bool {
        matches!(self, Expect::Value(_) | Expect::Errno(_) | Expect::Bind(_))
    }

    /// As written in a script.
    pub fn text(&self) -> String {
        match self {
            Expect::Value(v) => v.to_string(),
            Expect::Errno(e) => format!("-1 {e:?}"),
            Expect::Bind(name) => name.clone(),
            Expect::Range(lo, hi) => format!("{lo}..{hi}"),
            Expect::Any => "?".into(),
            Expect::Capture(name) => format!("${name}"),
        }
    }
}

/// The left-hand side of an `expect` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// How many of these actors' background calls have returned (after they settle).
    Woken(Vec<String>),
    /// Sum, minimum or maximum of captured values.
    Sum(Vec<String>),
    Min(Vec<String>),
    Max(Vec<String>),
}

impl Aggregate {
    pub fn text(&self) -> String {
        let (name, items, prefix) = match self {
            Aggregate::Woken(a) => ("woken", a, ""),
            Aggregate::Sum(v) => ("sum", v, "$"),
            Aggregate::Min(v) => ("min", v, "$"),
            Aggregate::Max(v) => ("max", v, "$"),
        };
        let list: Vec<String> = items.iter().map(|i| format!("{prefix}{i}")).collect();
        format!("{name}({})", list.join(", "))
    }
}

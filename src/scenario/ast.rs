//! The parsed form of a scenario: typed steps, checked before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::addr::{Family, SockAddr};

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
    pub op: Op<Script>,
    pub expect: Option<Expect>,
    /// Ends with `&`: started in the background; the runner checks it is blocked.
    pub background: bool,
}

/// What the names in a call stand for at one stage: script names when parsed, numbers and
/// real addresses once resolved for one actor. One [`Op`] type serves both.
pub trait Stage: Clone + std::fmt::Debug {
    type Fd: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    type Addr: Clone + std::fmt::Debug + Serialize + DeserializeOwned;
    type Family: Clone + Copy + std::fmt::Debug + Serialize + DeserializeOwned;
    type Task: Clone + std::fmt::Debug + Serialize + DeserializeOwned;
}

/// A process (or thread) a signal goes to, once resolved: its name for traces and its ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub name: String,
    pub tgid: i32,
    pub tid: i32,
}

/// As written in the script.
#[derive(Clone, Debug)]
pub struct Script;

impl Stage for Script {
    type Fd = FdArg;
    type Addr = String;
    type Family = DomainArg;
    type Task = String;
}

/// As an actor makes the call: fd numbers, socket addresses, a concrete family.
#[derive(Clone, Debug)]
pub struct Live;

impl Stage for Live {
    type Fd = i32;
    type Addr = SockAddr;
    type Family = Family;
    type Task = TaskRef;
}

/// An fd argument: a name bound earlier, or a literal number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdArg {
    Name(String),
    Num(i32),
}

/// The family of a new socket: fixed, or the scenario's matrix family (`FAMILY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainArg {
    Matrix,
    Fixed(Family),
}

/// epoll user data: the number of an fd (by name in scripts), or a literal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Data<S: Stage> {
    Fd(S::Fd),
    Num(u64),
}

/// `{events=EPOLLIN|EPOLLET, data={u64=L}}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct EventArg<S: Stage> {
    pub events: u32,
    pub data: Data<S>,
}

/// One typed argument. Numbers are range-checked against their kind when parsed
/// ([`super::kinds::Param`]), so the accessors of [`Op`] convert them without loss.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Arg<S: Stage> {
    Fd(S::Fd),
    /// A number or a set of flags.
    Int(i64),
    Bytes(Vec<u8>),
    Addr(S::Addr),
    Family(S::Family),
    /// An epoll event, or `NULL`.
    Event(Option<EventArg<S>>),
    /// Bytes the call should produce (read's buffer), or `...` for any.
    ExpectBytes(Option<Vec<u8>>),
    /// Events the call should produce (epoll_wait's array, any order), or `[...]`.
    ExpectEvents(Option<Vec<EventArg<S>>>),
    /// Names for the fds the call makes and writes into an array (`pipe2([R, W], 0)`); a
    /// name stays a name at both stages: the actor gives it to the new fd.
    NewFds(Vec<String>),
    /// poll's array: `[{fd=E, events=POLLIN}, ...]`.
    PollFds(Vec<(S::Fd, u32)>),
    /// Timespecs as (seconds, nanoseconds): one for a timeout, two (interval, value) for an
    /// itimerspec; `None` for `NULL`.
    Times(Option<Vec<(i64, i64)>>),
    /// A process (or thread) by name: where a signal goes.
    Task(S::Task),
    /// An argument written for fidelity to strace and not used (`...`, a sigmask).
    Ignored,
}

/// Which call of the table ([`super::calls::CALLS`]) a step makes; `spec()` lives with the
/// table so that this module needs nothing from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallId(pub(super) usize);

/// A call and its typed arguments, in the order of its fullest spelling in the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Op<S: Stage> {
    pub call: CallId,
    pub args: Vec<Arg<S>>,
}

impl<S: Stage> Op<S> {
    /// The fd argument at `i`. Panics if the table says otherwise: a bug, not bad input.
    pub fn fd(&self, i: usize) -> S::Fd {
        match &self.args[i] {
            Arg::Fd(fd) => fd.clone(),
            other => panic!("{}: argument {i} is {other:?}, not an fd", self.name()),
        }
    }

    /// The number at `i`, as the range its kind was checked against allows.
    pub fn int<T: TryFrom<i64>>(&self, i: usize) -> T {
        match &self.args[i] {
            Arg::Int(n) => T::try_from(*n).unwrap_or_else(|_| {
                panic!(
                    "{}: argument {i} ({n}) escaped its range check",
                    self.name()
                )
            }),
            other => panic!("{}: argument {i} is {other:?}, not a number", self.name()),
        }
    }

    pub fn bytes(&self, i: usize) -> &[u8] {
        match &self.args[i] {
            Arg::Bytes(b) => b,
            other => panic!("{}: argument {i} is {other:?}, not bytes", self.name()),
        }
    }

    pub fn addr(&self, i: usize) -> &S::Addr {
        match &self.args[i] {
            Arg::Addr(a) => a,
            other => panic!("{}: argument {i} is {other:?}, not an address", self.name()),
        }
    }

    pub fn family(&self, i: usize) -> S::Family {
        match &self.args[i] {
            Arg::Family(f) => *f,
            other => panic!("{}: argument {i} is {other:?}, not a family", self.name()),
        }
    }

    pub fn task(&self, i: usize) -> &S::Task {
        match &self.args[i] {
            Arg::Task(t) => t,
            other => panic!("{}: argument {i} is {other:?}, not a task", self.name()),
        }
    }

    pub fn new_fds(&self, i: usize) -> &[String] {
        match &self.args[i] {
            Arg::NewFds(names) => names,
            other => panic!("{}: argument {i} is {other:?}, not new fds", self.name()),
        }
    }

    pub fn poll_fds(&self, i: usize) -> &[(S::Fd, u32)] {
        match &self.args[i] {
            Arg::PollFds(fds) => fds,
            other => panic!("{}: argument {i} is {other:?}, not poll fds", self.name()),
        }
    }

    /// The timespecs at `i`, `None` for NULL.
    pub fn times(&self, i: usize) -> Option<&[(i64, i64)]> {
        match &self.args[i] {
            Arg::Times(t) => t.as_deref(),
            other => panic!("{}: argument {i} is {other:?}, not a time", self.name()),
        }
    }

    pub fn event(&self, i: usize) -> Option<&EventArg<S>> {
        match &self.args[i] {
            Arg::Event(e) => e.as_ref(),
            other => panic!("{}: argument {i} is {other:?}, not an event", self.name()),
        }
    }

    /// Expected bytes or events written among the arguments, if any.
    pub fn expected(&self) -> (Option<&[u8]>, Option<&[EventArg<S>]>) {
        let mut out = (None, None);
        for arg in &self.args {
            match arg {
                Arg::ExpectBytes(Some(b)) => out.0 = Some(b.as_slice()),
                Arg::ExpectEvents(Some(e)) => out.1 = Some(e.as_slice()),
                _ => {}
            }
        }
        out
    }
}

/// What a successful call returns, which decides what `= NAME` may bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    Fd,
    /// A new process (fork).
    Actor,
    /// A new thread of the calling process.
    Thread,
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
    /// `>= 10ms` (in microseconds): only for `expect elapsed(...)`, where a lower bound is
    /// what the kernel guarantees and an upper bound would be timing luck.
    AtLeast(u64),
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
            Expect::AtLeast(us) => format!(">= {}", duration_text(*us)),
        }
    }
}

/// `10ms`, `1s`, `250us`: the largest unit that says it exactly.
pub fn duration_text(us: u64) -> String {
    match us {
        0 => "0ms".into(),
        _ if us.is_multiple_of(1_000_000) => format!("{}s", us / 1_000_000),
        _ if us.is_multiple_of(1000) => format!("{}ms", us / 1000),
        _ => format!("{us}us"),
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
    /// How long this actor's latest call took, as the actor measured it around the system call
    /// (on the monotonic clock); checked only against a lower bound.
    Elapsed(String),
}

impl Aggregate {
    pub fn text(&self) -> String {
        let (name, items, prefix) = match self {
            Aggregate::Woken(a) => ("woken", a, ""),
            Aggregate::Sum(v) => ("sum", v, "$"),
            Aggregate::Min(v) => ("min", v, "$"),
            Aggregate::Max(v) => ("max", v, "$"),
            Aggregate::Elapsed(a) => return format!("elapsed({a})"),
        };
        let list: Vec<String> = items.iter().map(|i| format!("{prefix}{i}")).collect();
        format!("{name}({})", list.join(", "))
    }
}

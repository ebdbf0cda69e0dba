//! What the command line of `epoll-listen-fork` decides, checked before anything is set up.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::addr::{Family, SockAddr};
use crate::trace::Format;

/// Level- or edge-triggered registration of the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Level,
    Edge,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Level => "lt",
            Mode::Edge => "et",
        }
    }

    pub fn long_name(self) -> &'static str {
        match self {
            Mode::Level => "level-triggered",
            Mode::Edge => "edge-triggered",
        }
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Mode> {
        match s {
            "lt" | "level" => Ok(Mode::Level),
            "et" | "edge" => Ok(Mode::Edge),
            other => bail!("unknown mode '{other}': expected lt or et"),
        }
    }
}

/// The most waiters a run may start: each is a process with its own epoll set, and far more
/// than cores only adds noise to a herd.
pub const MAX_WAITERS: usize = 1024;

/// The most live children per waiter (a process each).
pub const MAX_CHILDREN: usize = 65_536;

/// Everything the command line decides.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SockAddr,
    pub mode: Mode,
    pub exclusive: bool,
    pub reuseport: bool,
    pub waiters: usize,
    /// How long each child holds its accepted connection.
    pub sleep: Duration,
    /// Stop after this many accepts (defaults to `self_connect` when that is set).
    pub connections: Option<u64>,
    pub duration: Option<Duration>,
    /// Clients the master connects itself.
    pub self_connect: u64,
    /// Connect all self-connect clients at once instead of one per accept.
    pub burst: bool,
    pub max_children: usize,
    /// Human-readable lines go to stderr so stdout carries only the JSON summary.
    pub json: bool,
    pub trace: Option<Format>,
}

impl Config {
    /// Refuses combinations that cannot work, before anything is set up.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.waiters == 0 {
            bail!("--waiters must be at least 1");
        }
        if self.waiters > MAX_WAITERS {
            bail!("--waiters must be at most {MAX_WAITERS}");
        }
        if self.max_children == 0 {
            bail!("--max-children must be at least 1");
        }
        if self.max_children > MAX_CHILDREN {
            bail!("--max-children must be at most {MAX_CHILDREN}");
        }
        if self.reuseport && self.addr.family() == Family::Unix {
            bail!("--reuseport needs inet or inet6: SO_REUSEPORT does not apply to unix sockets");
        }
        if self.reuseport && self.exclusive {
            bail!("--reuseport and --exclusive are alternatives; choose one");
        }
        if self.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        if self.burst && self.self_connect == 0 {
            bail!("--burst needs --self-connect N");
        }
        Ok(())
    }

    /// The events each waiter registers the listener with.
    pub fn epoll_events(&self) -> u32 {
        let mut events = libc::EPOLLIN as u32;
        if self.mode == Mode::Edge {
            events |= libc::EPOLLET as u32;
        }
        if self.exclusive {
            events |= libc::EPOLLEXCLUSIVE as u32;
        }
        events
    }

    pub fn target(&self) -> Option<u64> {
        self.connections
            .or((self.self_connect > 0).then_some(self.self_connect))
    }
}

/// Parses `--duration` seconds (fractions allowed).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let secs: f64 = text
        .parse()
        .map_err(|_| anyhow!("invalid duration '{text}': expected seconds, e.g. 2 or 0.5"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        bail!("invalid duration '{text}': expected a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

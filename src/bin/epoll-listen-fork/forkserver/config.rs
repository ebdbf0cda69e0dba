//! What the command line of `epoll-listen-fork` decides, checked before anything is set up.

use std::time::Duration;

use anyhow::bail;

use epollscope::addr::{Family, SockAddr};
use epollscope::trace::Format;

/// Level- or edge-triggered registration of the listener (one-shot is refused by
/// [`Config::validate`]: a waiter never re-arms).
pub use epollscope::epoll::TriggerMode as Mode;

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
        if self.mode == Mode::Oneshot {
            bail!("unknown mode 'oneshot': expected lt or et (a waiter never re-arms)");
        }
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
        if self.mode == Mode::Et {
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

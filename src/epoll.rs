//! Typed epoll interest: what to watch (`IN`, `OUT`, `RDHUP`) and how (level-triggered by
//! default, `ET`, `ONESHOT`, `EXCLUSIVE`), combined with `|` and shown as strace does.
//!
//! Nothing is refused here: combinations the kernel rejects (EXCLUSIVE with ONESHOT) are worth
//! making, to see the EINVAL.

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::{epoll_events_name, parse_epoll_events};

/// A set of epoll event flags for `epoll_ctl`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interest(u32);

impl Interest {
    pub const IN: Interest = Interest(libc::EPOLLIN as u32);
    pub const OUT: Interest = Interest(libc::EPOLLOUT as u32);
    pub const PRI: Interest = Interest(libc::EPOLLPRI as u32);
    pub const RDHUP: Interest = Interest(libc::EPOLLRDHUP as u32);
    /// Edge-triggered.
    pub const ET: Interest = Interest(libc::EPOLLET as u32);
    /// Report once, then stay disabled until EPOLL_CTL_MOD re-arms.
    pub const ONESHOT: Interest = Interest(libc::EPOLLONESHOT as u32);
    /// Wake one of the waiters sharing the watched file (Linux 4.5).
    pub const EXCLUSIVE: Interest = Interest(libc::EPOLLEXCLUSIVE as u32);

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn from_bits(bits: u32) -> Interest {
        Interest(bits)
    }

    pub const fn contains(self, other: Interest) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl fmt::Display for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&epoll_events_name(self.0))
    }
}

impl FromStr for Interest {
    type Err = String;
    /// `EPOLLIN|EPOLLET`, or without the prefix: `in|et`.
    fn from_str(s: &str) -> Result<Interest, String> {
        parse_epoll_events(s).map(Interest)
    }
}

/// How a listener is registered, by the names the tools and scenarios use (`lt`, `et`,
/// `oneshot`; `level` and `edge` too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerMode {
    /// Level-triggered: `EPOLLIN`.
    Lt,
    /// Edge-triggered: `EPOLLIN|EPOLLET`.
    Et,
    /// One event, then disabled until re-armed: `EPOLLIN|EPOLLONESHOT`.
    Oneshot,
}

impl TriggerMode {
    pub fn interest(self) -> Interest {
        match self {
            TriggerMode::Lt => Interest::IN,
            TriggerMode::Et => Interest::IN | Interest::ET,
            TriggerMode::Oneshot => Interest::IN | Interest::ONESHOT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TriggerMode::Lt => "lt",
            TriggerMode::Et => "et",
            TriggerMode::Oneshot => "oneshot",
        }
    }

    pub fn long_name(self) -> &'static str {
        match self {
            TriggerMode::Lt => "level-triggered",
            TriggerMode::Et => "edge-triggered",
            TriggerMode::Oneshot => "one-shot",
        }
    }
}

impl fmt::Display for TriggerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TriggerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lt" | "level" => Ok(TriggerMode::Lt),
            "et" | "edge" => Ok(TriggerMode::Et),
            "oneshot" => Ok(TriggerMode::Oneshot),
            other => Err(format!(
                "unknown mode '{other}': expected lt, et or oneshot"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_show_and_parse() {
        let i = Interest::IN | Interest::ET;
        assert_eq!(i.to_string(), "EPOLLIN|EPOLLET");
        assert!(i.contains(Interest::ET) && !i.contains(Interest::ONESHOT));
        assert_eq!("in|et".parse::<Interest>(), Ok(i));
        assert_eq!(
            (Interest::IN | Interest::EXCLUSIVE).to_string(),
            "EPOLLIN|EPOLLEXCLUSIVE"
        );
        assert!("in|sideways".parse::<Interest>().is_err());
    }
}

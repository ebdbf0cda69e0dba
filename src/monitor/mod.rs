//! Flow monitor: passive TCP reassembly with mOS monitoring-socket semantics.
//!
//! A [`Monitor`] watches both directions of every TCP flow it is fed (from pcap/pcapng files
//! through [`pcap`], or live through [`live`]) and keeps, per flow, two emulated receive stacks:
//! the client side (bytes the client receives) and the server side (bytes the server receives).
//! Applications read them through [`FlowSocket`]s exactly as mOS applications do through
//! monitoring sockets: `peek`, `ppeek`, per-side buffer sizes and overlap policies, stop
//! monitoring, state and buffer getters, and events delivered to callbacks or drained as an
//! iterator.
//!
//! Layers, bottom up: [`pcap`] (files; a regular file is mapped by `sys::packet`), [`decode`]
//! (link types, tunnels, IP, TCP) and [`packet`] (segments, encoding), [`frag`] (IP fragment
//! reassembly), [`closed`] (ended connections' stragglers), [`stream`] (one side's ring buffer), [`flow`] (one flow's two TCP state
//! machines), [`engine`] (the bounded flow table, events), [`socket`] (what an application
//! reads and sets), [`filter`] (BPF-like flow filter), [`output`] and [`flowdir`] (how flows are
//! shown and written; the `epollscope monitor` command itself is `src/bin/epollscope/monitor.rs`).
//!
//! Invariant: the monitor depends on nothing else in the crate but `sys`.

pub mod closed;
pub mod decode;
pub mod engine;
pub mod error;
pub mod event;
pub mod filter;
pub mod flow;
pub mod flowdir;
pub mod frag;
mod fx;
pub mod live;
pub mod output;
pub mod packet;
pub mod pcap;
pub mod socket;
pub mod stream;

pub use engine::{Config, FlowId, FlowInfo, FlowSocket, Monitor, SockId, Stats};
pub use error::MonError;
pub use event::{Event, EventKind, EventMask};
pub use filter::Filter;
pub use stream::{BufInfo, Fragment, OverlapPolicy};

use serde::Serialize;

/// Which emulated stack: the client's (bytes the server sent) or the server's (bytes the client
/// sent). Numbering is mOS's (`MOS_SIDE_CLI` 0, `MOS_SIDE_SVR` 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Cli = 0,
    Svr = 1,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Cli, Side::Svr];

    pub fn other(self) -> Side {
        match self {
            Side::Cli => Side::Svr,
            Side::Svr => Side::Cli,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Cli => "cli",
            Side::Svr => "svr",
        }
    }
}

/// A side selector for options that accept `MOS_SIDE_BOTH` (2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sides {
    Cli = 0,
    Svr = 1,
    Both = 2,
}

impl Sides {
    pub fn contains(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Sides::Both, _) | (Sides::Cli, Side::Cli) | (Sides::Svr, Side::Svr)
        )
    }
}

impl From<Side> for Sides {
    fn from(side: Side) -> Sides {
        match side {
            Side::Cli => Sides::Cli,
            Side::Svr => Sides::Svr,
        }
    }
}

/// One side's TCP state, numbered as in mOS (`TCP_ST_CLOSED` 0 ... `TCP_ST_TIME_WAIT` 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Closed = 0,
    Listen = 1,
    SynSent = 2,
    SynRcvd = 3,
    Established = 4,
    FinWait1 = 5,
    FinWait2 = 6,
    CloseWait = 7,
    Closing = 8,
    LastAck = 9,
    TimeWait = 10,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRcvd => "SYN_RCVD",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

impl std::fmt::Display for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `part` starts in `whole`, if it lies wholly inside it (compares addresses only: a
/// payload's place in its frame, a frame's place in a mapped capture).
pub fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    let at = p.checked_sub(w)?;
    (at.checked_add(part.len())? <= whole.len()).then_some(at)
}

//! Monitor events: mOS's event bits, what each carries, and user-defined events.

use std::net::SocketAddr;

use serde::Serialize;

use super::{FlowId, Side, TcpState};

/// A set of events as mOS's bit flags; user-defined events get bits from 32 up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct EventMask(pub u64);

impl EventMask {
    pub const PKT_IN: EventMask = EventMask(1 << 0);
    pub const CONN_START: EventMask = EventMask(1 << 2);
    pub const CONN_NEW_DATA: EventMask = EventMask(1 << 4);
    pub const ERROR: EventMask = EventMask(1 << 5);
    pub const TIMEOUT: EventMask = EventMask(1 << 6);
    pub const TCP_STATE_CHANGE: EventMask = EventMask(1 << 7);
    pub const ORPHAN: EventMask = EventMask(1 << 8);
    pub const REXMIT: EventMask = EventMask(1 << 9);
    pub const CONN_END: EventMask = EventMask(1 << 10);
    /// Not in mOS: bytes the side does not hold before bytes it does (a hole the receiver
    /// acknowledged, or still open at the flow's end): missing from the capture, or dropped
    /// beyond the buffer after an ERROR event. Waited for by default, skipped with `skip_gaps`.
    pub const GAP: EventMask = EventMask(1 << 11);
    /// Not in mOS: a RST a Linux receiver would not accept (RFC 5961: not exactly at the
    /// expected sequence number; in the window it only draws a challenge ACK).
    pub const RST_IGNORED: EventMask = EventMask(1 << 12);
    /// Every built-in event but PKT_IN (which would double the queue for no information).
    pub const DEFAULT: EventMask = EventMask(
        Self::CONN_START.0
            | Self::CONN_NEW_DATA.0
            | Self::ERROR.0
            | Self::TIMEOUT.0
            | Self::TCP_STATE_CHANGE.0
            | Self::ORPHAN.0
            | Self::REXMIT.0
            | Self::CONN_END.0
            | Self::GAP.0
            | Self::RST_IGNORED.0,
    );
    pub const ALL: EventMask = EventMask(u64::MAX);
    pub const NONE: EventMask = EventMask(0);

    pub fn intersects(self, other: EventMask) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: EventMask) -> EventMask {
        EventMask(self.0 | rhs.0)
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    Fin,
    Rst,
    Timeout,
    /// The flow table was full (`max_flows`): the least recently active flow made room.
    Evicted,
}

/// What happened, with its details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    PktIn {
        len: u32,
    },
    ConnStart {
        /// Picked up without its SYN (`--midstream`, or resumed after a timeout or eviction):
        /// bytes before the first one seen are not known.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        midstream: bool,
    },
    NewData {
        bytes: u64,
    },
    /// CONN_NEW_DATA for a reader that takes every byte as it arrives
    /// ([`crate::monitor::Config::in_frame`]): `bytes` in-order bytes that were not copied
    /// into the side's buffer and that a peek does not return; they are the frame's bytes
    /// `at..at + bytes` (the frame just fed to [`crate::monitor::Monitor::feed`]).
    NewDataInFrame {
        bytes: u64,
        at: usize,
    },
    /// The side's buffer is full: drain it (peek) or enlarge it before the next packet, or the
    /// oldest unread bytes are overwritten.
    Overflow {
        needed: u64,
        capacity: usize,
    },
    Timeout,
    StateChange {
        from: TcpState,
        to: TcpState,
    },
    Orphan {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Rexmit {
        offset: u64,
        len: u32,
    },
    ConnEnd {
        reason: EndReason,
    },
    /// `len` bytes at stream offset `offset` are not in the capture; `skipped`: the bytes after
    /// them were delivered anyway (`--gaps skip`), else the side waits for them as mOS does.
    Gap {
        offset: u64,
        len: u64,
        skipped: bool,
    },
    /// A RST that did not end the flow: `seq` is not the `expected` one.
    RstIgnored {
        seq: u32,
        expected: u32,
    },
}

impl EventKind {
    /// The built-in event bit this kind is raised as.
    pub fn base_mask(&self) -> EventMask {
        match self {
            EventKind::PktIn { .. } => EventMask::PKT_IN,
            EventKind::ConnStart { .. } => EventMask::CONN_START,
            EventKind::NewData { .. } | EventKind::NewDataInFrame { .. } => {
                EventMask::CONN_NEW_DATA
            }
            EventKind::Overflow { .. } => EventMask::ERROR,
            EventKind::Timeout => EventMask::TIMEOUT,
            EventKind::StateChange { .. } => EventMask::TCP_STATE_CHANGE,
            EventKind::Orphan { .. } => EventMask::ORPHAN,
            EventKind::Rexmit { .. } => EventMask::REXMIT,
            EventKind::ConnEnd { .. } => EventMask::CONN_END,
            EventKind::Gap { .. } => EventMask::GAP,
            EventKind::RstIgnored { .. } => EventMask::RST_IGNORED,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EventKind::PktIn { .. } => "PKT_IN",
            EventKind::ConnStart { .. } => "CONN_START",
            EventKind::NewData { .. } | EventKind::NewDataInFrame { .. } => "CONN_NEW_DATA",
            EventKind::Overflow { .. } => "ERROR",
            EventKind::Timeout => "TIMEOUT",
            EventKind::StateChange { .. } => "TCP_STATE_CHANGE",
            EventKind::Orphan { .. } => "ORPHAN",
            EventKind::Rexmit { .. } => "REXMIT",
            EventKind::ConnEnd { .. } => "CONN_END",
            EventKind::Gap { .. } => "GAP",
            EventKind::RstIgnored { .. } => "RST_IGNORED",
        }
    }
}

/// One event: when (capture time, ns since the epoch), on which flow and side, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub ts_ns: u64,
    pub flow: Option<FlowId>,
    pub side: Option<Side>,
    /// The bit it was raised as: the built-in one, or a user-defined event's.
    pub mask: EventMask,
    #[serde(flatten)]
    pub kind: EventKind,
}

//! What the monitor hands out and is configured with: flow and socket ids, the
//! configuration, the counters, and a flow's snapshot.

use std::net::SocketAddr;

use serde::Serialize;

use crate::monitor::event::{EndReason, EventMask};
use crate::monitor::flow::Flow;
use crate::monitor::stream::OverlapPolicy;
use crate::monitor::{Side, TcpState};

/// A flow's monitoring-socket id: the monitor it belongs to and the flow's number (1, 2, ... in
/// order of the SYNs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub(in crate::monitor) ctx: u32,
    pub n: u64,
}

impl Serialize for FlowId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.n)
    }
}

/// A socket id: a flow's active socket, or the monitor's passive (listening) socket, which has
/// no bytestream (mOS's `MOS_SOCK_MONITOR_STREAM` vs `..._ACTIVE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockId {
    Passive(u32),
    Flow(FlowId),
}

impl From<FlowId> for SockId {
    fn from(id: FlowId) -> SockId {
        SockId::Flow(id)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Receive buffer per side, bytes (0: no buffering).
    pub buffer_size: usize,
    pub overlap: OverlapPolicy,
    /// A flow with no packet for this long (capture time) times out.
    pub idle_timeout_ns: u64,
    /// Events kept for [`crate::monitor::Monitor::events`].
    pub queue: EventMask,
    /// Flows held at most; beyond, the least recently active one is ended (CONN_END evicted).
    pub max_flows: usize,
    /// Pick up flows whose SYN is not in the capture from their first data (mOS does not).
    pub midstream: bool,
    /// Deliver the bytes after a hole in the capture, marked, instead of waiting for them.
    pub skip_gaps: bool,
    /// For an application that takes every byte as it arrives (counts or writes them at each
    /// CONN_NEW_DATA): in-order bytes of a side that holds nothing are not copied into its
    /// buffer but announced where they lie in the frame just fed
    /// ([`EventKind::NewDataInFrame`](crate::monitor::EventKind::NewDataInFrame)); bytes that
    /// must wait (out of order, before the side may be read, from reassembled IP fragments)
    /// still go through the buffer. Not in mOS, whose buffer holds every byte until peeked.
    pub in_frame: bool,
}

/// What one flow costs, in bytes, without its buffers (which hold only unread and
/// out-of-order bytes and are freed when drained): the flow, its two address-table entries,
/// its eviction-queue entry and its resume point, with the tables' spare capacity; measured
/// (tests/monitor_flows.rs), the basis of [`DEFAULT_MAX_FLOWS`].
pub const FLOW_COST: usize = 1536;
/// Flows held by default: about 256 MB of flow state.
pub const DEFAULT_MAX_FLOWS: usize = (256 << 20) / FLOW_COST;
/// IP fragments wait this long (capture time) for the rest of their datagram, as Linux's
/// `ipfrag_time`.
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

impl Default for Config {
    fn default() -> Config {
        Config {
            buffer_size: 256 * 1024,
            overlap: OverlapPolicy::First,
            idle_timeout_ns: 60_000_000_000,
            queue: EventMask::DEFAULT,
            max_flows: DEFAULT_MAX_FLOWS,
            midstream: false,
            skip_gaps: false,
            in_frame: false,
        }
    }
}

/// Packet counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub packets: u64,
    pub tcp_segments: u64,
    pub not_tcp: u64,
    pub fragments: u64,
    pub malformed: u64,
    pub filtered: u64,
    pub orphans: u64,
    pub flows: u64,
    /// IP datagrams rebuilt from fragments, and those given up (timed out, out of memory,
    /// inconsistent).
    pub reassembled: u64,
    pub fragments_dropped: u64,
    /// Flows ended to make room (`max_flows`).
    pub evicted: u64,
    /// Flows picked up without their SYN (`midstream`), and flows picked up again after a
    /// timeout or an eviction.
    pub midstream: u64,
    pub resumed: u64,
    /// RSTs that did not end their flow (RFC 5961).
    pub rst_ignored: u64,
    /// With `midstream`: orphans that are stragglers of a connection that ended by FIN or RST
    /// (not picked up as new flows).
    pub after_end: u64,
}

/// A snapshot of one flow.
#[derive(Clone, Debug, Serialize)]
pub struct FlowInfo {
    pub id: FlowId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub cli_state: TcpState,
    pub svr_state: TcpState,
    /// In-order bytes each side received: [cli, svr].
    pub bytes: [u64; 2],
    pub start_ns: u64,
    pub last_ns: u64,
    pub ended: Option<EndReason>,
    /// Picked up without its SYN: bytes before the first one seen are not known.
    pub midstream: bool,
    /// The flow this one continues (after a timeout or an eviction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes: Option<u64>,
}

pub(in crate::monitor) fn info(id: FlowId, f: &Flow) -> FlowInfo {
    FlowInfo {
        id,
        client: f.client,
        server: f.server,
        cli_state: f.side(Side::Cli).state,
        svr_state: f.side(Side::Svr).state,
        bytes: [f.side(Side::Cli).bytes, f.side(Side::Svr).bytes],
        start_ns: f.start_ns,
        last_ns: f.last_ns,
        ended: f.ended,
        midstream: f.midstream,
        resumes: f.resumes,
    }
}

//! One TCP flow seen from the middle: two emulated receive stacks (client side, server side),
//! each with its TCP state (mOS's list), its receive buffer and its peer's initial sequence
//! number, driven by the segments of both directions.
//!
//! A passive monitor sees a segment before its receiver does, so a segment sent by one end
//! changes the sender's stack (it sent a FIN: FIN_WAIT_1) and the receiver's (it got the FIN:
//! CLOSE_WAIT) at once, as mOS's emulation does.

use std::net::SocketAddr;

use super::event::{EndReason, EventKind};
use super::packet::{ACK, FIN, RST, SYN, Segment};
use super::stream::{OverlapPolicy, SideBuf};
use super::{Side, TcpState};

/// One side's emulated stack.
#[derive(Debug)]
pub struct SideStack {
    pub state: TcpState,
    pub buf: SideBuf,
    /// Initial sequence number of the peer that sends to this side.
    pub isn: Option<u32>,
    pub stopped: bool,
    /// Reading is allowed once the side has been ESTABLISHED (and stays allowed after close, so
    /// that what was buffered can still be read at CONN_END).
    pub readable: bool,
    /// Sequence number just past the FIN this side sent.
    fin_sent: Option<u32>,
    /// Bytes that became readable in order, over the flow's life.
    pub bytes: u64,
}

impl SideStack {
    fn new(state: TcpState, buf_size: usize, policy: OverlapPolicy) -> SideStack {
        SideStack {
            state,
            buf: SideBuf::new(buf_size, policy),
            isn: None,
            stopped: false,
            readable: false,
            fin_sent: None,
            bytes: 0,
        }
    }
}

/// A segment that overflowed its side's buffer, held until the application had its chance to
/// drain or enlarge (the next packet), then stored by overwriting.
#[derive(Debug)]
struct Pending {
    side: Side,
    off: u64,
    data: Vec<u8>,
}

/// An event before it is stamped and dispatched.
pub type RawEvent = (Option<Side>, EventKind);

#[derive(Debug)]
pub struct Flow {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub sides: [SideStack; 2],
    pub start_ns: u64,
    pub last_ns: u64,
    pub ended: Option<EndReason>,
    pending: Vec<Pending>,
}

/// `a` is at or after `b` in sequence space.
fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Flow {
    /// A flow opened by the client's SYN: the client enters SYN_SENT, the server SYN_RCVD, and
    /// each side raises CONN_START.
    pub fn from_syn(
        ts: u64,
        seg: &Segment,
        buf_size: usize,
        policy: OverlapPolicy,
        ev: &mut Vec<RawEvent>,
    ) -> Flow {
        let mut flow = Flow {
            client: seg.src,
            server: seg.dst,
            sides: [
                SideStack::new(TcpState::Closed, buf_size, policy),
                SideStack::new(TcpState::Listen, buf_size, policy),
            ],
            start_ns: ts,
            last_ns: ts,
            ended: None,
            pending: vec![],
        };
        flow.sides[Side::Svr.index()].isn = Some(seg.seq);
        ev.push((Some(Side::Cli), EventKind::PktIn { len: 0 }));
        flow.set_state(Side::Cli, TcpState::SynSent, ev);
        ev.push((Some(Side::Cli), EventKind::ConnStart));
        flow.set_state(Side::Svr, TcpState::SynRcvd, ev);
        ev.push((Some(Side::Svr), EventKind::ConnStart));
        flow
    }

    pub fn side(&self, side: Side) -> &SideStack {
        &self.sides[side.index()]
    }
    pub fn side_mut(&mut self, side: Side) -> &mut SideStack {
        &mut self.sides[side.index()]
    }

    fn emit(&self, side: Side, kind: EventKind, ev: &mut Vec<RawEvent>) {
        if !self.side(side).stopped {
            ev.push((Some(side), kind));
        }
    }

    fn set_state(&mut self, side: Side, to: TcpState, ev: &mut Vec<RawEvent>) {
        let s = self.side_mut(side);
        let from = s.state;
        if from == to {
            return;
        }
        s.state = to;
        if to == TcpState::Established {
            s.readable = true;
        }
        self.emit(side, EventKind::StateChange { from, to }, ev);
    }

    /// Processes a segment sent by `from`'s end.
    pub fn process(&mut self, ts: u64, from: Side, seg: &Segment, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        self.last_ns = ts;
        self.emit(
            to,
            EventKind::PktIn {
                len: seg.payload.len() as u32,
            },
            ev,
        );
        if self.ended.is_some() {
            return;
        }
        if seg.has(RST) {
            for side in Side::BOTH {
                self.set_state(side, TcpState::Closed, ev);
            }
            self.end(EndReason::Rst, ev);
            return;
        }
        if seg.has(SYN) {
            self.syn(from, seg, ev);
            return;
        }
        if seg.has(ACK) {
            self.ack(from, seg.ack, ev);
        }
        if self.side(to).isn.is_none() {
            // We missed the sender's SYN (a SYN/ACK lost from the capture): sync on this segment.
            self.side_mut(to).isn = Some(seg.seq.wrapping_sub(1));
        }
        if !seg.payload.is_empty() {
            self.data(to, seg.seq, seg.payload, ev);
        }
        if seg.has(FIN) {
            self.fin(from, seg, ev);
        }
        let done = |s: &SideStack| matches!(s.state, TcpState::Closed | TcpState::TimeWait);
        if done(&self.sides[0]) && done(&self.sides[1]) {
            self.end(EndReason::Fin, ev);
        }
    }

    fn syn(&mut self, from: Side, seg: &Segment, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if from == Side::Svr && seg.has(ACK) && self.side(Side::Cli).isn.is_none() {
            self.side_mut(Side::Cli).isn = Some(seg.seq);
            if self.side(Side::Cli).state == TcpState::SynSent {
                self.set_state(Side::Cli, TcpState::Established, ev);
            }
        } else {
            // A retransmitted SYN or SYN/ACK: no new CONN_START.
            self.emit(to, EventKind::Rexmit { offset: 0, len: 0 }, ev);
        }
    }

    fn ack(&mut self, from: Side, ack: u32, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if from == Side::Cli && self.side(Side::Svr).state == TcpState::SynRcvd {
            self.set_state(Side::Svr, TcpState::Established, ev);
        }
        if let Some(fin) = self.side(to).fin_sent
            && seq_ge(ack, fin)
        {
            let next = match self.side(to).state {
                TcpState::FinWait1 => TcpState::FinWait2,
                TcpState::Closing => TcpState::TimeWait,
                TcpState::LastAck => TcpState::Closed,
                other => other,
            };
            self.set_state(to, next, ev);
        }
    }

    /// Stream offset of `seq` on side `to`, unwrapped near the side's next expected byte; None
    /// for bytes before the stream's start.
    fn offset(&self, to: Side, seq: u32) -> Option<i64> {
        let s = self.side(to);
        let isn = s.isn?;
        let rel = seq.wrapping_sub(isn).wrapping_sub(1);
        let next = s.buf.next();
        let diff = i64::from(rel.wrapping_sub(next as u32) as i32);
        Some(next as i64 + diff)
    }

    fn data(&mut self, to: Side, seq: u32, payload: &[u8], ev: &mut Vec<RawEvent>) {
        if self.side(to).stopped {
            return;
        }
        let Some(off) = self.offset(to, seq) else {
            return;
        };
        let (off, payload) = if off < 0 {
            let skip = usize::try_from(-off).unwrap_or(usize::MAX);
            if skip >= payload.len() {
                self.emit(
                    to,
                    EventKind::Rexmit {
                        offset: 0,
                        len: payload.len() as u32,
                    },
                    ev,
                );
                return;
            }
            (0u64, &payload[skip..])
        } else {
            (off as u64, payload)
        };
        let got = self.side_mut(to).buf.insert(off, payload);
        if got.rexmit {
            self.emit(
                to,
                EventKind::Rexmit {
                    offset: off,
                    len: payload.len() as u32,
                },
                ev,
            );
        }
        if got.overflow {
            let s = self.side(to);
            let kind = EventKind::Overflow {
                needed: off + payload.len() as u64 - s.buf.read_offset(),
                capacity: s.buf.capacity(),
            };
            self.emit(to, kind, ev);
            self.pending.push(Pending {
                side: to,
                off,
                data: payload.to_vec(),
            });
        }
        self.new_data(to, got.new_bytes, ev);
    }

    fn new_data(&mut self, to: Side, n: u64, ev: &mut Vec<RawEvent>) {
        if n > 0 {
            self.side_mut(to).bytes += n;
            self.emit(to, EventKind::NewData { bytes: n }, ev);
        }
    }

    fn fin(&mut self, from: Side, seg: &Segment, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if self.side(from).fin_sent.is_some() {
            if seg.payload.is_empty() {
                self.emit(to, EventKind::Rexmit { offset: 0, len: 0 }, ev);
            }
            return;
        }
        let end = seg
            .seq
            .wrapping_add(seg.payload.len() as u32)
            .wrapping_add(1);
        self.side_mut(from).fin_sent = Some(end);
        let sender = match self.side(from).state {
            TcpState::CloseWait => TcpState::LastAck,
            TcpState::Established | TcpState::SynRcvd | TcpState::SynSent => TcpState::FinWait1,
            other => other,
        };
        self.set_state(from, sender, ev);
        let receiver = match self.side(to).state {
            TcpState::FinWait1 => TcpState::Closing,
            TcpState::FinWait2 => TcpState::TimeWait,
            TcpState::Established | TcpState::SynRcvd | TcpState::SynSent => TcpState::CloseWait,
            other => other,
        };
        self.set_state(to, receiver, ev);
    }

    pub fn end(&mut self, reason: EndReason, ev: &mut Vec<RawEvent>) {
        if self.ended.is_none() {
            self.ended = Some(reason);
            for side in Side::BOTH {
                self.emit(side, EventKind::ConnEnd { reason }, ev);
            }
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The application neither drained nor enlarged in time: store the held segments by
    /// overwriting the oldest bytes (or normally, if it did make room).
    pub fn resolve_pending(&mut self, ev: &mut Vec<RawEvent>) {
        for p in std::mem::take(&mut self.pending) {
            if self.side(p.side).stopped {
                continue;
            }
            let got = self.side_mut(p.side).buf.insert_overwriting(p.off, &p.data);
            self.new_data(p.side, got.new_bytes, ev);
        }
    }
}

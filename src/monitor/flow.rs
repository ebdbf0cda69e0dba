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

mod handshake;
mod holes;

pub use holes::SKIP_WAIT_NS;

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
    /// Bytes that became readable in order, over the flow's life (CONN_NEW_DATA's sum).
    pub bytes: u64,
    /// Bytes buffered in order before the side became readable: announced when it does, so
    /// that an event's count and what a peek returns always agree.
    unannounced: u64,
    /// The hole at this offset was reported (default: wait for it, report once).
    gap_reported: Option<u64>,
    /// `--gaps skip`: skip holes up to here once the bytes before them were read and the
    /// missing bytes had their chance to arrive late ([`SKIP_WAIT_NS`]).
    skip_to: Option<u64>,
    /// Capture time from which the acknowledged hole may be skipped.
    skip_at: Option<u64>,
}

impl SideStack {
    fn new(state: TcpState, buf: SideBuf) -> SideStack {
        SideStack {
            state,
            buf,
            isn: None,
            stopped: false,
            readable: false,
            fin_sent: None,
            bytes: 0,
            unannounced: 0,
            gap_reported: None,
            skip_to: None,
            skip_at: None,
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

/// Per-flow settings, from the monitor's configuration.
#[derive(Clone, Copy, Debug)]
pub struct FlowOpts {
    pub buf_size: usize,
    pub policy: OverlapPolicy,
    /// `--gaps skip`: deliver what follows a hole the receiver acknowledged (or still open at
    /// the end), marked, instead of waiting for it.
    pub skip_gaps: bool,
    /// In-order bytes of a side that holds nothing are not copied into its buffer: they are
    /// announced where they lie in the frame ([`EventKind::NewDataInFrame`]).
    pub in_frame: bool,
}

/// What a flow picked up without a SYN starts from (a flow resumed after a timeout keeps its
/// sequence numbers and offsets).
#[derive(Clone, Copy, Debug, Default)]
pub struct Resume {
    pub isn: [Option<u32>; 2],
    pub next: [u64; 2],
}

/// The client SYNs kept to pick the ISN the SYN-ACK acknowledges (a client may retry with a
/// new ISN from the same port).
const MAX_SYNS: usize = 8;

#[derive(Debug)]
pub struct Flow {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub sides: [SideStack; 2],
    pub start_ns: u64,
    pub last_ns: u64,
    pub ended: Option<EndReason>,
    /// Picked up without its SYN (`--midstream`, or resumed).
    pub midstream: bool,
    /// RSTs not accepted (RFC 5961).
    pub rst_ignored: u64,
    /// The flow this one continues (picked up again after a timeout or an eviction).
    pub resumes: Option<u64>,
    opts: FlowOpts,
    pending: Vec<Pending>,
    /// Client SYNs seen: ISN and the data on it (TCP Fast Open).
    syns: Vec<(u32, Vec<u8>)>,
    /// The SYN's data was delivered (or is not coming).
    syn_data_done: bool,
}

/// `a` is at or after `b` in sequence space.
fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Flow {
    fn blank(ts: u64, client: SocketAddr, server: SocketAddr, opts: FlowOpts) -> Flow {
        let buf = || SideBuf::new(opts.buf_size, opts.policy);
        Flow {
            client,
            server,
            sides: [
                SideStack::new(TcpState::Closed, buf()),
                SideStack::new(TcpState::Listen, buf()),
            ],
            start_ns: ts,
            last_ns: ts,
            ended: None,
            midstream: false,
            rst_ignored: 0,
            resumes: None,
            opts,
            pending: vec![],
            syns: vec![],
            syn_data_done: false,
        }
    }

    /// A flow opened by the client's SYN: the client enters SYN_SENT, the server SYN_RCVD, and
    /// each side raises CONN_START.
    pub fn from_syn(ts: u64, seg: &Segment, opts: FlowOpts, ev: &mut Vec<RawEvent>) -> Flow {
        let mut flow = Flow::blank(ts, seg.src, seg.dst, opts);
        flow.sides[Side::Svr.index()].isn = Some(seg.seq);
        if !seg.payload.is_empty() {
            // Most SYNs carry nothing: keep the list empty (a flow table of idle flows is
            // mostly this struct) until there is data or a retry to tell apart.
            flow.syns.push((seg.seq, seg.payload.to_vec()));
        }
        flow.syn_data_done = seg.payload.is_empty();
        ev.push((Some(Side::Cli), EventKind::PktIn { len: 0 }));
        flow.set_state(Side::Cli, TcpState::SynSent, ev);
        ev.push((Some(Side::Cli), EventKind::ConnStart { midstream: false }));
        flow.set_state(Side::Svr, TcpState::SynRcvd, ev);
        ev.push((Some(Side::Svr), EventKind::ConnStart { midstream: false }));
        flow
    }

    /// A flow whose SYN is not in the capture (or that timed out and resumed): both sides
    /// ESTABLISHED from here; a side whose sender's ISN is unknown syncs on its first segment.
    pub fn midstream(
        ts: u64,
        client: SocketAddr,
        server: SocketAddr,
        from: Resume,
        opts: FlowOpts,
        ev: &mut Vec<RawEvent>,
    ) -> Flow {
        let mut flow = Flow::blank(ts, client, server, opts);
        flow.midstream = true;
        flow.syn_data_done = true;
        for side in Side::BOTH {
            let s = flow.side_mut(side);
            s.buf = SideBuf::starting_at(opts.buf_size, opts.policy, from.next[side.index()]);
            s.isn = from.isn[side.index()];
            s.state = TcpState::Established;
            s.readable = true;
            ev.push((Some(side), EventKind::ConnStart { midstream: true }));
        }
        flow
    }

    /// Where this flow would continue from if picked up again.
    pub fn resume_point(&self) -> Resume {
        Resume {
            isn: [self.sides[0].isn, self.sides[1].isn],
            next: [self.sides[0].buf.next(), self.sides[1].buf.next()],
        }
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
        self.emit(side, EventKind::StateChange { from, to }, ev);
        if to == TcpState::Established {
            self.make_readable(side, ev);
        }
    }

    /// Reading becomes allowed: announce what was buffered before.
    fn make_readable(&mut self, side: Side, ev: &mut Vec<RawEvent>) {
        let s = self.side_mut(side);
        if s.readable {
            return;
        }
        s.readable = true;
        let n = std::mem::take(&mut s.unannounced);
        if n > 0 {
            self.emit(side, EventKind::NewData { bytes: n }, ev);
        }
    }

    /// Processes a segment sent by `from`'s end. `in_frame`: its payload lies in the frame
    /// being fed, so that its bytes may be announced there (with [`FlowOpts::in_frame`]).
    pub fn process(
        &mut self,
        ts: u64,
        from: Side,
        seg: &Segment,
        in_frame: bool,
        ev: &mut Vec<RawEvent>,
    ) {
        let to = from.other();
        self.last_ns = ts;
        self.emit(
            to,
            EventKind::PktIn {
                len: u32::try_from(seg.payload.len()).unwrap_or(u32::MAX),
            },
            ev,
        );
        if self.ended.is_some() {
            return;
        }
        if seg.has(RST) {
            self.rst(from, seg, ev);
            return;
        }
        if seg.has(SYN) {
            self.syn(from, seg, ev);
            return;
        }
        if to == Side::Cli && self.side(to).state == TcpState::SynSent && !self.acks_client_syn(seg)
        {
            // Linux in SYN_SENT drops a segment without SYN whose ACK does not acknowledge
            // its SYN (and answers it with a RST): a stray, not the sign of a SYN-ACK the
            // capture missed, so it neither synchronizes the client nor acknowledges anything.
            return;
        }
        if seg.has(ACK) {
            self.ack(from, seg.ack, ev);
        }
        if self.side(to).isn.is_none() {
            // We missed the sender's SYN and the peer's ACK of it: sync on this segment.
            self.side_mut(to).isn = Some(seg.seq.wrapping_sub(1));
            if to == Side::Cli && self.side(to).state == TcpState::SynSent {
                self.set_state(Side::Cli, TcpState::Established, ev);
            }
        }
        if !seg.payload.is_empty() {
            self.data(to, seg.seq, seg.payload, in_frame, ev);
        }
        if seg.has(FIN) {
            self.fin(from, seg, ev);
        }
        for side in Side::BOTH {
            self.retry_skip(side, ev);
        }
        let done = |s: &SideStack| matches!(s.state, TcpState::Closed | TcpState::TimeWait);
        if done(&self.sides[0]) && done(&self.sides[1]) {
            self.end(EndReason::Fin, ev);
        }
    }

    /// The sequence number the receiving side `to` expects next, if it is known.
    fn rcv_nxt(&self, to: Side) -> Option<u32> {
        let s = self.side(to);
        if s.stopped {
            return None;
        }
        let next = s.isn?.wrapping_add(1).wrapping_add(s.buf.next() as u32);
        // A FIN takes one sequence number once everything before it arrived.
        Some(match self.side(to.other()).fin_sent {
            Some(fin) if fin == next.wrapping_add(1) => fin,
            _ => next,
        })
    }

    /// RFC 5961 as Linux applies it: a RST resets the connection only exactly at the expected
    /// sequence number (or, after the peer's FIN, one before it); any other draws a challenge
    /// ACK (in the window) or is dropped, and the connection goes on.
    fn rst(&mut self, from: Side, seg: &Segment, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if let Some(expected) = self.rcv_nxt(to) {
            let s = self.side(to);
            let highest = s
                .isn
                .unwrap_or(0)
                .wrapping_add(1)
                .wrapping_add(s.buf.high() as u32);
            let after_fin = matches!(
                s.state,
                TcpState::CloseWait | TcpState::LastAck | TcpState::Closing
            ) && seg.seq == expected.wrapping_sub(1);
            // `highest`: bytes missing from the capture leave our `expected` behind the
            // receiver's; a RST just past the last byte seen is the one the sender would send.
            let accept = seg.seq == expected || seg.seq == highest || after_fin;
            if !accept {
                self.rst_ignored += 1;
                self.emit(
                    to,
                    EventKind::RstIgnored {
                        seq: seg.seq,
                        expected,
                    },
                    ev,
                );
                return;
            }
        }
        for side in Side::BOTH {
            self.set_state(side, TcpState::Closed, ev);
        }
        self.end(EndReason::Rst, ev);
    }

    /// Stream offset of `seq` on side `to`, unwrapped near the side's next expected byte; None
    /// before the sender's ISN is known.
    fn offset(&self, to: Side, seq: u32) -> Option<i64> {
        let s = self.side(to);
        let isn = s.isn?;
        let rel = seq.wrapping_sub(isn).wrapping_sub(1);
        let next = s.buf.next();
        let diff = i64::from(rel.wrapping_sub(next as u32) as i32);
        Some(next as i64 + diff)
    }

    fn data(&mut self, to: Side, seq: u32, payload: &[u8], in_frame: bool, ev: &mut Vec<RawEvent>) {
        let seg_payload = payload;
        if self.side(to).stopped {
            return;
        }
        let Some(off) = self.offset(to, seq) else {
            return;
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let (off, payload) = if off < 0 {
            let skip = usize::try_from(-off).unwrap_or(usize::MAX);
            if skip >= payload.len() {
                self.emit(to, EventKind::Rexmit { offset: 0, len }, ev);
                return;
            }
            (0u64, &payload[skip..])
        } else {
            (off as u64, payload)
        };
        let skipped = seg_payload.len() - payload.len();
        if in_frame && self.opts.in_frame && self.pass(to, off, payload.len(), skipped, ev) {
            return;
        }
        let got = self.side_mut(to).buf.insert(off, payload);
        if got.rexmit {
            self.emit(to, EventKind::Rexmit { offset: off, len }, ev);
        }
        if got.overflow {
            let s = self.side(to);
            let kind = EventKind::Overflow {
                needed: off + payload.len() as u64 - s.buf.read_offset(),
                capacity: s.buf.capacity(),
            };
            self.emit(to, kind, ev);
            if !got.beyond {
                self.pending.push(Pending {
                    side: to,
                    off,
                    data: payload.to_vec(),
                });
            }
        }
        self.new_data(to, got.new_bytes, ev);
    }

    /// Hands the in-order bytes `off..off+len` over in the frame (they start `at` bytes into
    /// the segment's payload) if the side holds nothing and may be read; false if they must
    /// go through its buffer.
    fn pass(&mut self, to: Side, off: u64, len: usize, at: usize, ev: &mut Vec<RawEvent>) -> bool {
        // An overflowed segment waits to be stored, or a hole to be skipped once the bytes
        // before it were read: those go as they would through the buffer.
        let waits = self.pending.iter().any(|p| p.side == to);
        let s = self.side_mut(to);
        if !s.readable || waits || s.skip_to.is_some() || !s.buf.pass(off, len as u64) {
            return false;
        }
        s.bytes += len as u64;
        self.emit(
            to,
            EventKind::NewDataInFrame {
                bytes: len as u64,
                at,
            },
            ev,
        );
        true
    }

    fn new_data(&mut self, to: Side, n: u64, ev: &mut Vec<RawEvent>) {
        if n == 0 {
            return;
        }
        let s = self.side_mut(to);
        s.bytes += n;
        if s.readable {
            self.emit(to, EventKind::NewData { bytes: n }, ev);
        } else {
            s.unannounced += n;
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
            self.flush_holes(ev);
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
            let before = self.side(p.side).buf.next();
            let got = self.side_mut(p.side).buf.insert_overwriting(p.off, &p.data);
            // The overwrite may have jumped over a hole below the new window.
            if got.skipped > 0 {
                let kind = EventKind::Gap {
                    offset: before,
                    len: got.skipped,
                    skipped: true,
                };
                self.emit(p.side, kind, ev);
            }
            self.new_data(p.side, got.new_bytes, ev);
        }
    }

    /// Frees the rings of sides whose bytes were all read (an idle flow then costs a few
    /// hundred bytes; a ring comes back at the next byte).
    pub fn shrink(&mut self) {
        for s in &mut self.sides {
            s.buf.shrink();
        }
    }
}

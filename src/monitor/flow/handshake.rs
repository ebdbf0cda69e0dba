//! The handshake and what an ACK settles: client SYNs (retries with new ISNs, data on the
//! SYN), the SYN-ACK that picks one, what a client in SYN_SENT takes from the server.

use super::{Flow, MAX_SYNS, RawEvent, seq_ge};
use crate::monitor::event::EventKind;
use crate::monitor::packet::{ACK, Segment};
use crate::monitor::{Side, TcpState};

impl Flow {
    /// Whether `seg` (from the server) acknowledges the client's SYN (and possibly bytes after
    /// it): what a server segment does once the SYN-ACK, captured or not, was sent.
    pub(super) fn acks_client_syn(&self, seg: &Segment) -> bool {
        // At most what the client was seen to send, plus what it may have sent uncaptured
        // (1 MiB): an ACK of anything else is a stray.
        let sent = self.side(Side::Svr).buf.high().saturating_add(1 << 20);
        let acks = |cisn: u32| u64::from(seg.ack.wrapping_sub(cisn.wrapping_add(1))) <= sent;
        // The client's ISN is settled by the SYN-ACK; until then, any SYN the client sent.
        let isns: Vec<u32> = match self.side(Side::Svr).isn {
            Some(cisn) => vec![cisn],
            None => self.syns.iter().map(|&(isn, _)| isn).collect(),
        };
        seg.has(ACK) && (isns.is_empty() || isns.into_iter().any(acks))
    }

    pub(super) fn syn(&mut self, from: Side, seg: &Segment, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if from == Side::Cli && !seg.has(ACK) {
            // A retransmitted SYN, or a retry with a new ISN: no new CONN_START; keep it so
            // that the SYN-ACK can say which one it answers.
            if self.syns.is_empty()
                && let Some(first) = self.side(Side::Svr).isn
            {
                self.syns.push((first, vec![]));
            }
            if !self.syns.iter().any(|(isn, _)| *isn == seg.seq) && self.syns.len() < MAX_SYNS {
                self.syns.push((seg.seq, seg.payload.to_vec()));
            }
            self.emit(to, EventKind::Rexmit { offset: 0, len: 0 }, ev);
            return;
        }
        if from == Side::Svr && seg.has(ACK) && self.side(Side::Cli).isn.is_none() {
            self.adopt_acked_syn(seg.ack);
            self.side_mut(Side::Cli).isn = Some(seg.seq);
            if self.side(Side::Cli).state == TcpState::SynSent {
                self.set_state(Side::Cli, TcpState::Established, ev);
            }
            if !self.syn_data_done {
                self.syn_data(seg.ack, ev);
            }
        } else {
            // A retransmitted SYN or SYN/ACK: no new CONN_START.
            self.emit(to, EventKind::Rexmit { offset: 0, len: 0 }, ev);
        }
    }

    /// The SYN-ACK acknowledges one of the client's SYNs (its ISN + 1, or + 1 + its data):
    /// that ISN is the client stream's, as long as no client byte was placed yet. If it
    /// acknowledges none we saw, the SYN it answers is not in the capture: its ISN is the
    /// acknowledgment's.
    pub(super) fn adopt_acked_syn(&mut self, ack: u32) {
        let svr = self.side(Side::Svr);
        if svr.buf.high() != svr.buf.next() || svr.buf.next() != 0 {
            return;
        }
        let first = svr.isn.map(|isn| (isn, Vec::new()));
        let known: Vec<&(u32, Vec<u8>)> = if self.syns.is_empty() {
            first.iter().collect()
        } else {
            self.syns.iter().collect()
        };
        let hit = known.into_iter().find(|(isn, data)| {
            let one = isn.wrapping_add(1);
            ack == one || ack == one.wrapping_add(data.len() as u32)
        });
        let (isn, done) = match hit {
            Some((isn, data)) => (*isn, data.is_empty()),
            None => (ack.wrapping_sub(1), true),
        };
        self.syn_data_done = done;
        self.side_mut(Side::Svr).isn = Some(isn);
    }

    pub(super) fn ack(&mut self, from: Side, ack: u32, ev: &mut Vec<RawEvent>) {
        let to = from.other();
        if from == Side::Cli && self.side(Side::Svr).state == TcpState::SynRcvd {
            self.set_state(Side::Svr, TcpState::Established, ev);
        }
        if self.side(from).isn.is_none() {
            // The SYN-ACK is not in the capture: the acknowledgment names the peer's ISN.
            self.side_mut(from).isn = Some(ack.wrapping_sub(1));
            if from == Side::Cli && self.side(from).state == TcpState::SynSent {
                self.set_state(Side::Cli, TcpState::Established, ev);
            }
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
        if from == Side::Svr && !self.syn_data_done {
            self.syn_data(ack, ev);
        }
        self.acked(from, ack, ev);
    }

    /// TCP Fast Open: the SYN's data counts once the server acknowledged it.
    pub(super) fn syn_data(&mut self, ack: u32, ev: &mut Vec<RawEvent>) {
        let Some(isn) = self.side(Side::Svr).isn else {
            return;
        };
        let Some(pos) = self.syns.iter().position(|(i, _)| *i == isn) else {
            return;
        };
        let len = self.syns[pos].1.len() as u32;
        if len == 0 || !seq_ge(ack, isn.wrapping_add(1).wrapping_add(len)) {
            return;
        }
        self.syn_data_done = true;
        let data = std::mem::take(&mut self.syns[pos].1);
        self.data(Side::Svr, isn.wrapping_add(1), &data, false, ev);
    }
}

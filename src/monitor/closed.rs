//! Connections that ended by FIN or RST, remembered for a while so that their stragglers (a
//! retransmission, data the peer had in flight when the RST came) stay theirs.
//!
//! Linux never makes a connection out of a segment without SYN: after a RST, what the peer
//! still sends is answered with another RST. Without this memory, `--midstream` would pick
//! each straggler up as a new connection and deliver bytes twice (a retransmitted segment
//! after a RST) or as connections that never existed (one per in-flight segment).
//!
//! A segment is a straggler when it comes within the idle timeout after the end, on the same
//! addresses, with a sequence number in the ended connection's sequence space (up to
//! [`WINDOW`] past what was received): a new connection on reused ports, whose SYN is not in
//! the capture, starts at a random ISN and is picked up as usual.

use std::net::SocketAddr;

use super::Side;
use super::flow::Resume;
use super::fx::FxMap;
use super::packet::Segment;

/// How far past the last byte received a straggler may start: what a sender can have in
/// flight (16 MiB, a large scaled window).
pub const WINDOW: u32 = 16 << 20;

#[derive(Clone, Copy, Debug)]
struct Record {
    ended_ns: u64,
    point: Resume,
}

/// Ended connections by (client, server), at most `limit` of them. Records older than the
/// idle timeout are dropped by [`Closed::expire`] (the engine's sweep); a full table drops its
/// older half, which only lets those connections' stragglers be picked up as before. A
/// new connection on the same addresses needs no forgetting: while it is open, its segments
/// find it first, and its own end replaces the record.
#[derive(Debug, Default)]
pub struct Closed {
    by_pair: FxMap<(SocketAddr, SocketAddr), Record>,
    /// When the next pass over the table is due: a quarter of the timeout after the last one
    /// (a record a little past its time is harmless: the lookup checks the time exactly).
    next_expiry: u64,
}

impl Closed {
    /// Remembers that the connection between `client` and `server` ended at `ended_ns`, with
    /// each side's ISN and stream position in `point`.
    pub fn remember(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        ended_ns: u64,
        point: Resume,
        limit: usize,
    ) {
        if self.by_pair.len() >= limit.max(1) {
            // Full: keep the newer half (one pass every limit/2 ends, so O(1) an end).
            let mut stamps: Vec<u64> = self.by_pair.values().map(|r| r.ended_ns).collect();
            let mid = stamps.len() / 2;
            let (_, &mut median, _) = stamps.select_nth_unstable(mid);
            self.by_pair.retain(|_, r| r.ended_ns > median);
        }
        self.by_pair
            .insert((client, server), Record { ended_ns, point });
    }

    /// Drops the records of connections that ended more than `timeout_ns` before `now`
    /// (at most every quarter of the timeout, however often it is called).
    pub fn expire(&mut self, now: u64, timeout_ns: u64) {
        if now < self.next_expiry {
            return;
        }
        self.next_expiry = now.saturating_add(timeout_ns / 4);
        self.by_pair
            .retain(|_, r| now.saturating_sub(r.ended_ns) <= timeout_ns);
    }

    /// True if `seg`, seen at `ts`, belongs to a connection that ended less than `timeout_ns`
    /// before (an older record does not count, whether or not a sweep dropped it yet).
    pub fn is_straggler(&self, ts: u64, seg: &Segment, timeout_ns: u64) -> bool {
        // Side svr receives what the client sends.
        let (rec, side) = match (
            self.by_pair.get(&(seg.src, seg.dst)),
            self.by_pair.get(&(seg.dst, seg.src)),
        ) {
            (Some(r), _) => (r, Side::Svr),
            (None, Some(r)) => (r, Side::Cli),
            (None, None) => return false,
        };
        if ts.saturating_sub(rec.ended_ns) > timeout_ns {
            return false;
        }
        let Some(isn) = rec.point.isn[side.index()] else {
            // Nothing was received that way: no sequence space to judge by, and Linux would
            // not have made a connection of it either.
            return true;
        };
        // Sequence numbers are modulo 2^32: the truncations below are that arithmetic. The
        // segment's distance from the next byte the receiver expected, as TCP compares.
        let next = rec.point.next[side.index()];
        let expected = isn.wrapping_add(1).wrapping_add(next as u32);
        let d = i64::from(seg.seq.wrapping_sub(expected) as i32);
        // Back to the stream's start (retransmissions; a little before it, the SYN's own
        // sequence number), ahead by what can be in flight.
        let back = i64::try_from(next)
            .unwrap_or(i64::MAX)
            .min(i64::from(i32::MAX));
        d <= i64::from(WINDOW) && d >= -(back + i64::from(WINDOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::packet::ACK;

    fn seg(src: &str, dst: &str, seq: u32) -> Segment<'static> {
        Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq,
            ack: 1,
            flags: ACK,
            window: 512,
            payload: b"x",
        }
    }

    const C: &str = "10.0.0.1:40000";
    const S: &str = "10.0.0.2:80";

    fn closed() -> Closed {
        let mut c = Closed::default();
        let point = Resume {
            isn: [Some(5_000), Some(1_000)],
            next: [300, 100],
        };
        c.remember(C.parse().unwrap(), S.parse().unwrap(), 10, point, 4);
        c
    }

    #[test]
    fn stragglers_are_told_from_new_connections() {
        // (segment, seen at, straggler?)
        let cases = [
            (seg(C, S, 1_001), 20, true), // a retransmission of the first byte
            (seg(C, S, 1_101), 20, true), // just past what was received
            (seg(S, C, 5_301 + WINDOW - 1), 20, true), // the server's data in flight
            (seg(S, C, 5_301 + WINDOW + 1), 20, false), // far ahead: a new connection
            (seg(C, S, 1_000), 20, true), // the SYN's own sequence number
            (seg(C, S, 900_000_000), 20, false), // another ISN
            (seg(C, S, 1_001), 10 + 60_000, false), // after the timeout
            (seg("10.0.0.3:1", S, 1_001), 20, false), // other addresses
        ];
        for (i, (s, ts, want)) in cases.iter().enumerate() {
            assert_eq!(closed().is_straggler(*ts, s, 60_000 - 1), *want, "case {i}");
        }
    }

    #[test]
    fn sequence_numbers_wrap_in_a_stream_longer_than_4_gib() {
        let mut c = Closed::default();
        let next = 5u64 << 30;
        let point = Resume {
            isn: [None, Some(u32::MAX - 10)],
            next: [0, next],
        };
        c.remember(C.parse().unwrap(), S.parse().unwrap(), 10, point, 4);
        let expected = (u32::MAX - 10)
            .wrapping_add(1)
            .wrapping_add((next % (1 << 32)) as u32);
        assert!(c.is_straggler(20, &seg(C, S, expected), 100));
        assert!(c.is_straggler(20, &seg(C, S, expected.wrapping_sub(1 << 20)), 100));
        assert!(!c.is_straggler(20, &seg(C, S, expected.wrapping_add(2 * WINDOW)), 100));
    }

    #[test]
    fn a_direction_with_nothing_received_has_no_new_connection_either() {
        let mut c = Closed::default();
        let point = Resume {
            isn: [None, Some(1_000)],
            next: [0, 6],
        };
        c.remember(C.parse().unwrap(), S.parse().unwrap(), 10, point, 4);
        assert!(c.is_straggler(20, &seg(S, C, 77), 100));
    }

    #[test]
    fn memory_is_bounded_and_old_records_expire() {
        let mut c = closed();
        for port in 1..=10u16 {
            let client = SocketAddr::from(([10, 0, 0, 9], port));
            c.remember(
                client,
                S.parse().unwrap(),
                11 + u64::from(port),
                Resume::default(),
                4,
            );
        }
        assert!(c.by_pair.len() <= 4);
        let newest = SocketAddr::from(([10, 0, 0, 9], 10));
        assert!(
            c.by_pair.contains_key(&(newest, S.parse().unwrap())),
            "the newest stays"
        );
        let mut c = closed();
        c.expire(10 + 100, 100);
        assert!(
            c.is_straggler(20, &seg(C, S, 1_001), 100),
            "not expired yet"
        );
        c.expire(10 + 101, 100);
        assert_eq!(
            c.by_pair.len(),
            1,
            "the next pass is due a quarter timeout later"
        );
        c.expire(10 + 125, 100);
        assert!(c.by_pair.is_empty());
        assert!(!c.is_straggler(20, &seg(C, S, 1_001), 100));
    }
}

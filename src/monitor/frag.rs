//! IPv4 and IPv6 fragment reassembly, bounded: at most [`MAX_HELD`] bytes across all datagrams
//! in progress (the oldest is dropped first), each datagram at most 64 KiB, and a datagram not
//! complete within the timeout (capture time; Linux's `ipfrag_time` is 30 s) is dropped.
//!
//! Overlapping fragments keep the first copy: RFC 5722 has IPv6 receivers drop such datagrams
//! outright, and both choices deliver no byte the receiver could not have seen first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::decode::Frag;

/// Bytes held across all incomplete datagrams (Linux's `ipfrag_high_thresh` is 4 MB).
pub const MAX_HELD: usize = 4 << 20;
/// What one datagram in progress costs beyond its bytes, counted so that many tiny fragments
/// are bounded too.
const OVERHEAD: usize = 128;
/// The largest datagram payload IPv4 or (non-jumbo) IPv6 can describe.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Debug)]
struct Partial {
    first_ns: u64,
    data: Vec<u8>,
    /// Received ranges, sorted and disjoint.
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (more = false) arrived.
    total: Option<usize>,
    depth: u8,
}

/// A complete datagram's payload and where it belongs.
#[derive(Debug)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub depth: u8,
    pub payload: Vec<u8>,
}

/// What happened to fragments, for the monitor's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragStats {
    pub reassembled: u64,
    /// Datagrams given up: timed out, evicted for memory, or inconsistent.
    pub dropped: u64,
}

#[derive(Debug)]
pub struct Reassembler {
    parts: HashMap<Key, Partial>,
    /// Keys in arrival order, for evicting the oldest (stale keys are skipped).
    order: VecDeque<Key>,
    next_expire_ns: u64,
    held: usize,
    max_held: usize,
    timeout_ns: u64,
    pub stats: FragStats,
}

impl Reassembler {
    pub fn new(timeout_ns: u64) -> Reassembler {
        Reassembler::with_limit(timeout_ns, MAX_HELD)
    }

    pub fn with_limit(timeout_ns: u64, max_held: usize) -> Reassembler {
        Reassembler {
            parts: HashMap::new(),
            order: VecDeque::new(),
            next_expire_ns: 0,
            held: 0,
            max_held,
            timeout_ns,
            stats: FragStats::default(),
        }
    }

    /// Bytes held for incomplete datagrams.
    pub fn held(&self) -> usize {
        self.held
    }

    fn drop_key(&mut self, key: &Key) {
        if let Some(p) = self.parts.remove(key) {
            self.held -= p.data.len() + OVERHEAD;
            self.stats.dropped += 1;
        }
    }

    /// Adds a fragment seen at `ts`; returns the datagram it completes.
    pub fn push(&mut self, ts: u64, f: &Frag) -> Option<Datagram> {
        self.expire(ts);
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            proto: f.proto,
        };
        let start = usize::try_from(f.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(f.payload.len());
        if end > MAX_DATAGRAM || (f.more && f.payload.is_empty()) {
            if !self.parts.contains_key(&key) {
                self.stats.dropped += 1;
            }
            self.drop_key(&key);
            return None;
        }
        let p = self.parts.entry(key).or_insert_with(|| {
            self.order.push_back(key);
            self.held += OVERHEAD;
            Partial {
                first_ns: ts,
                data: Vec::new(),
                have: Vec::new(),
                total: None,
                depth: f.depth,
            }
        });
        if !f.more {
            if p.total.is_some_and(|t| t != end) || p.have.last().is_some_and(|h| h.1 > end) {
                self.drop_key(&key);
                return None;
            }
            p.total = Some(end);
        } else if p.total.is_some_and(|t| end > t) {
            self.drop_key(&key);
            return None;
        }
        let before = p.data.len();
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        // First copy wins: write only the parts not yet held.
        let mut cur = start;
        for &(hs, he) in &p.have {
            if he <= cur || hs >= end {
                continue;
            }
            if hs > cur {
                p.data[cur..hs].copy_from_slice(&f.payload[cur - start..hs - start]);
            }
            cur = cur.max(he);
        }
        if cur < end {
            p.data[cur..end].copy_from_slice(&f.payload[cur - start..]);
        }
        let at = p.have.partition_point(|h| h.0 < start);
        p.have.insert(at, (start, end));
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(p.have.len());
        for &(s, e) in &p.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        p.have = merged;
        self.held += p.data.len() - before;
        let complete = p.total.is_some_and(|t| p.have == [(0, t)]);
        if complete {
            let p = self.parts.remove(&key)?;
            self.held -= p.data.len() + OVERHEAD;
            self.stats.reassembled += 1;
            return Some(Datagram {
                src: key.src,
                dst: key.dst,
                proto: key.proto,
                depth: p.depth,
                payload: p.data,
            });
        }
        while self.held > self.max_held {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.drop_key(&oldest);
        }
        None
    }

    /// Drops datagrams older than the timeout (checked once a second of capture time).
    fn expire(&mut self, ts: u64) {
        if self.parts.is_empty() || ts < self.next_expire_ns {
            return;
        }
        self.next_expire_ns = ts.saturating_add(1_000_000_000);
        self.order.retain(|k| self.parts.contains_key(k));
        let limit = self.timeout_ns;
        let old: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, p)| ts.saturating_sub(p.first_ns) > limit)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.drop_key(&k);
        }
    }
}

//! One side's receive buffer: a ring over absolute stream offsets (offset 0 is the first byte
//! after the initial sequence number), with out-of-order fragments, an overlap policy for
//! retransmitted bytes, and mOS's overflow rule (refuse first, overwrite only when told to).
//!
//! Offsets are 64-bit so that a stream longer than 4 GiB (sequence wrap) stays monotonic; the
//! flow layer unwraps 32-bit sequence numbers into them.

use serde::Serialize;

use super::MonError;

/// What to do with retransmitted bytes that overlap bytes already held (`MOS_OVERLAP_POLICY_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// Keep the first copy, never overwrite (0).
    #[default]
    First = 0,
    /// The last copy wins (1).
    Last = 1,
}

/// A buffered range, as `MOS_FRAGINFO_*BUF` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Fragment {
    pub offset: u64,
    pub len: u32,
}

/// `MOS_INFO_*BUF`: TCP sequence numbers of the side's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BufInfo {
    pub init_seq: u32,
    pub last_byte_read: u32,
    pub next_byte_expected: u32,
    pub last_byte_received: u32,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that became readable in order.
    pub new_bytes: u64,
    /// Some of the segment overlapped bytes already received.
    pub rexmit: bool,
    /// The segment does not fit without overwriting unread bytes; nothing was stored.
    pub overflow: bool,
    /// ...and it starts after a hole: it is dropped, not held for overwriting.
    pub beyond: bool,
    /// An overwrite moved the window over a hole: that many never-received bytes were skipped.
    pub skipped: u64,
}

/// Holes are bounded so that a hostile capture cannot grow the fragment list without limit;
/// segments that would open more are dropped (as a kernel drops out-of-window segments).
const MAX_FRAGS: usize = 1024;

/// The ring starts this small and doubles up to the side's capacity as unread bytes need it,
/// so that an idle flow or one whose reader keeps up costs a few KiB, not its capacity.
const MIN_RING: usize = 4096;

/// Bytes skipped over a hole (`--gaps skip`), as the next peek reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Hole {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
pub struct SideBuf {
    ring: Vec<u8>,
    cap: usize,
    disabled: bool,
    pub policy: OverlapPolicy,
    /// Oldest offset still physically held.
    base: u64,
    /// The peek offset.
    read: u64,
    /// First missing byte: everything in `base..next` is held.
    next: u64,
    /// One past the highest byte ever received.
    high: u64,
    /// Out-of-order ranges above `next`: sorted, disjoint, not touching.
    frags: Vec<(u64, u64)>,
    /// Set by an overwrite: the next peek fails once with this many bytes lost.
    lost: Option<u64>,
    /// Set by a skipped hole: the next peek (after `lost`) fails once naming it.
    hole: Option<Hole>,
}

impl SideBuf {
    pub fn new(cap: usize, policy: OverlapPolicy) -> SideBuf {
        SideBuf {
            ring: Vec::new(),
            cap,
            disabled: cap == 0,
            policy,
            base: 0,
            read: 0,
            next: 0,
            high: 0,
            frags: Vec::new(),
            lost: None,
            hole: None,
        }
    }

    /// A buffer whose stream starts at `off` (a flow picked up again after a timeout keeps
    /// its offsets).
    pub fn starting_at(cap: usize, policy: OverlapPolicy, off: u64) -> SideBuf {
        let mut b = SideBuf::new(cap, policy);
        b.base = off;
        b.read = off;
        b.next = off;
        b.high = off;
        b
    }

    /// Start of the first held out-of-order range, if any.
    pub fn first_fragment(&self) -> Option<u64> {
        self.frags.first().map(|f| f.0)
    }

    /// Bytes of memory the ring holds now.
    pub fn footprint(&self) -> usize {
        self.ring.capacity()
    }

    /// Skips the hole at `next` (up to the first held fragment, or to `target` when none is
    /// below it), once every byte before it was read: returns the hole and how many held bytes
    /// became readable in order. None while unread bytes precede the hole (the caller retries).
    pub fn skip_hole(&mut self, target: u64) -> Option<(Hole, u64)> {
        if self.read != self.next || self.hole.is_some() {
            return None;
        }
        let to = self.first_fragment().map_or(target, |f| f.min(target));
        if to <= self.next {
            return None;
        }
        let hole = Hole {
            offset: self.next,
            len: to - self.next,
        };
        self.next = to;
        self.read = to;
        // The hole's bytes were never received: nothing below it is readable any more.
        self.base = to;
        self.high = self.high.max(to);
        let before = self.next;
        self.coalesce();
        self.hole = Some(hole);
        Some((hole, self.next - before))
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn disabled(&self) -> bool {
        self.disabled
    }
    pub fn next(&self) -> u64 {
        self.next
    }
    pub fn read_offset(&self) -> u64 {
        self.read
    }
    pub fn high(&self) -> u64 {
        self.high
    }
    /// Bytes readable by peek now.
    pub fn unread(&self) -> u64 {
        self.next - self.read
    }

    fn is_held(&self, s: u64, e: u64) -> bool {
        s < self.next || self.frags.iter().any(|&(fs, fe)| fs < e && s < fe)
    }

    /// Stores `data` at `off`, unless it would overwrite unread bytes (then `overflow` is set
    /// and nothing changes: the caller raises the error event and retries later).
    pub fn insert(&mut self, off: u64, data: &[u8]) -> Inserted {
        let mut out = Inserted::default();
        let end = off.saturating_add(data.len() as u64);
        if data.is_empty() {
            return out;
        }
        if end <= self.next {
            // Entirely below what we already have contiguously: a pure retransmission.
            out.rexmit = true;
            return out;
        }
        out.rexmit = self.is_held(off, end);
        if !self.disabled && end > self.read + self.cap as u64 {
            // Beyond the window after a hole: dropped, as mOS drops payload beyond its receive
            // window (overwriting unread bytes for a segment that is not next would let one
            // stray segment far ahead push every later byte below the window).
            out.overflow = true;
            out.beyond = off > self.next;
            return out;
        }
        if !out.rexmit && off > self.next && self.frags.len() >= MAX_FRAGS {
            return out;
        }
        self.store(off, data);
        out.new_bytes = self.add_range(off.max(self.base), end);
        self.high = self.high.max(end);
        out
    }

    /// Stores `data` at `off` after an unanswered overflow: the oldest bytes are overwritten and
    /// the peek offset jumps to the oldest byte still held; the next peek fails once.
    pub fn insert_overwriting(&mut self, off: u64, data: &[u8]) -> Inserted {
        let end = off.saturating_add(data.len() as u64);
        let cap = self.cap as u64;
        if self.disabled || end <= self.read + cap {
            return self.insert(off, data);
        }
        let new_base = end - cap;
        let old_next = self.next;
        // Never-received bytes between what we had and this segment: a hole, not a loss.
        let hole = off.min(new_base).saturating_sub(old_next);
        // Lost: unread bytes overwritten, and this segment's own bytes that do not fit (they
        // were received and count as new data, then lost, so that the counts agree).
        let lost = (new_base.min(old_next) - self.read.min(old_next))
            + new_base.saturating_sub(off.max(old_next));
        let (off, data) = if off < new_base {
            let skip = usize::try_from(new_base - off).unwrap_or(data.len());
            (new_base, &data[skip.min(data.len())..])
        } else {
            (off, data)
        };
        if lost > 0 {
            self.lost = Some(self.lost.unwrap_or(0) + lost);
        }
        self.read = self.read.max(new_base);
        self.base = self.base.max(new_base);
        self.next = self.next.max(self.base);
        self.frags.retain(|&(_, fe)| fe > new_base);
        if let Some(first) = self.frags.first_mut() {
            first.0 = first.0.max(new_base);
        }
        self.coalesce();
        let mut out = self.insert(off, data);
        out.overflow = false;
        out.skipped = hole;
        // Held fragments the jump joined to the stream became readable too.
        out.new_bytes = self.next - old_next - hole;
        out
    }

    /// For a reader that takes every byte as it arrives ([`crate::monitor::Config::in_frame`]):
    /// when nothing is held, `off` is the next expected byte and `len` bytes would fit, records them as
    /// received and read at once, without storing them (the caller hands them over from where
    /// they lie). The buffer is left as a peek of everything would leave it, except that no
    /// already-read byte stays behind for `ppeek`. False, with nothing changed, otherwise.
    pub fn pass(&mut self, off: u64, len: u64) -> bool {
        let idle = self.read == self.next && self.frags.is_empty();
        // A segment larger than the buffer overflows it, in place or not.
        let fits = len <= self.cap as u64;
        if self.disabled || !idle || !fits || off != self.next {
            return false;
        }
        if self.lost.is_some() || self.hole.is_some() {
            return false;
        }
        self.next += len;
        self.read = self.next;
        self.base = self.next;
        self.high = self.high.max(self.next);
        true
    }

    /// Frees the ring once every byte was read and nothing waits out of order.
    pub fn shrink(&mut self) {
        if self.read == self.next && self.frags.is_empty() && !self.ring.is_empty() {
            self.ring = Vec::new();
            self.base = self.read;
        }
    }

    /// Copies into the ring, respecting the overlap policy, and reclaims already-read space.
    fn store(&mut self, off: u64, data: &[u8]) {
        if self.disabled {
            return;
        }
        let end = off + data.len() as u64;
        self.ensure(end);
        let phys = self.ring.len() as u64;
        // Space below `read` is free: let the window slide over it.
        self.base = self.base.max(end.saturating_sub(phys)).min(self.read);
        let off_c = off.max(self.base);
        let data = &data[(off_c - off) as usize..];
        match self.policy {
            OverlapPolicy::Last => self.copy_in(off_c, data),
            OverlapPolicy::First => {
                // Only the gaps: walk the held ranges and write around them.
                let mut cur = off_c;
                let mut held: Vec<(u64, u64)> = Vec::with_capacity(self.frags.len() + 1);
                held.push((self.base, self.next));
                held.extend_from_slice(&self.frags);
                for (hs, he) in held {
                    if he <= cur {
                        continue;
                    }
                    if hs >= end {
                        break;
                    }
                    if hs > cur {
                        self.copy_in(cur, &data[(cur - off_c) as usize..(hs - off_c) as usize]);
                    }
                    cur = he;
                    if cur >= end {
                        break;
                    }
                }
                if cur < end {
                    self.copy_in(cur, &data[(cur - off_c) as usize..]);
                }
            }
        }
    }

    /// One past the highest byte held (in order or not).
    fn held_end(&self) -> u64 {
        self.frags.last().map_or(self.next, |f| f.1).max(self.next)
    }

    /// Grows the ring (doubling, up to the capacity) so that it holds `read..end` and every
    /// fragment above.
    fn ensure(&mut self, end: u64) {
        let cap = self.cap as u64;
        let need = end.max(self.held_end()) - self.read;
        if need <= self.ring.len() as u64 {
            return;
        }
        if need > cap {
            // Fragments further ahead than the window can hold are given up.
            let limit = self.read + cap;
            self.frags.retain(|&(fs, _)| fs < limit);
            if let Some(last) = self.frags.last_mut() {
                last.1 = last.1.min(limit);
            }
        }
        let want = usize::try_from(need.next_power_of_two())
            .unwrap_or(usize::MAX)
            .max(MIN_RING)
            .min(self.cap);
        self.relayout(want);
    }

    /// Moves the held bytes into a ring of `phys` bytes.
    fn relayout(&mut self, phys: usize) {
        let hi = self.held_end();
        let keep_from = self
            .base
            .max(hi.saturating_sub(phys as u64))
            .min(self.read.max(self.base));
        let mut held = vec![0u8; usize::try_from(hi - keep_from).unwrap_or(0)];
        if !self.ring.is_empty() && !held.is_empty() {
            self.copy_out(keep_from, &mut held);
        }
        self.ring = vec![0; phys];
        self.base = keep_from;
        if !held.is_empty() {
            self.copy_in(keep_from, &held);
        }
    }

    fn copy_in(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let phys = self.ring.len();
        let idx = (off % phys as u64) as usize;
        let first = data.len().min(phys - idx);
        self.ring[idx..idx + first].copy_from_slice(&data[..first]);
        self.ring[..data.len() - first].copy_from_slice(&data[first..]);
    }

    fn copy_out(&self, off: u64, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let phys = self.ring.len();
        let idx = (off % phys as u64) as usize;
        let first = buf.len().min(phys - idx);
        buf[..first].copy_from_slice(&self.ring[idx..idx + first]);
        let rest = buf.len() - first;
        buf[first..].copy_from_slice(&self.ring[..rest]);
    }

    /// Records `s..e` as received; returns how many bytes became contiguous.
    fn add_range(&mut self, s: u64, e: u64) -> u64 {
        let before = self.next;
        if s <= self.next {
            self.next = self.next.max(e);
        } else {
            let at = self.frags.partition_point(|&(fs, _)| fs < s);
            self.frags.insert(at, (s, e));
        }
        self.coalesce();
        self.next - before
    }

    fn coalesce(&mut self) {
        if self.frags.is_empty() {
            return;
        }
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.frags.len());
        for &(s, e) in &self.frags {
            if s <= self.next {
                self.next = self.next.max(e);
                continue;
            }
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        // A range merged into `next` may have closed the gap to the following ones.
        merged.retain(|&(s, e)| {
            if s <= self.next {
                self.next = self.next.max(e);
                false
            } else {
                true
            }
        });
        self.frags = merged;
    }

    /// `mtcp_peek`: reads from the peek offset and advances it.
    pub fn peek(&mut self, buf: &mut [u8]) -> Result<usize, MonError> {
        let mut n = 0;
        self.peek_in_place(buf.len(), |part| {
            buf[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        })
    }

    /// [`SideBuf::peek`] without the copy: hands up to `max` bytes at the peek offset to
    /// `read` where they lie in the buffer (in one or two parts: it is a ring), and advances.
    pub fn peek_in_place(
        &mut self,
        max: usize,
        mut read: impl FnMut(&[u8]),
    ) -> Result<usize, MonError> {
        if self.disabled {
            return Err(MonError::BufferDisabled);
        }
        if let Some(lost) = self.lost.take() {
            return Err(MonError::Overwritten { lost });
        }
        if let Some(h) = self.hole.take() {
            return Err(MonError::Hole {
                offset: h.offset,
                len: h.len,
            });
        }
        let avail = self.next - self.read;
        if avail == 0 {
            return Err(MonError::NoData);
        }
        let n = max.min(usize::try_from(avail).unwrap_or(usize::MAX));
        if n > 0 {
            let phys = self.ring.len();
            let idx = (self.read % phys as u64) as usize;
            let first = n.min(phys - idx);
            read(&self.ring[idx..idx + first]);
            if n > first {
                read(&self.ring[..n - first]);
            }
        }
        self.read += n as u64;
        Ok(n)
    }

    /// `mtcp_ppeek`: reads at an absolute offset, from in-order data or a stored fragment,
    /// without moving the peek offset.
    pub fn ppeek(&self, buf: &mut [u8], offset: u64) -> Result<usize, MonError> {
        if self.disabled {
            return Err(MonError::BufferDisabled);
        }
        let end = if offset >= self.base && offset < self.next {
            self.next
        } else if let Some(&(_, fe)) = self
            .frags
            .iter()
            .find(|&&(fs, fe)| fs <= offset && offset < fe)
        {
            fe
        } else {
            return Err(MonError::NoData);
        };
        let n = buf
            .len()
            .min(usize::try_from(end - offset).unwrap_or(usize::MAX));
        self.copy_out(offset, &mut buf[..n]);
        Ok(n)
    }

    /// `MOS_CLIBUF`/`MOS_SVRBUF`: resize, or disable buffering with 0 (for good).
    pub fn resize(&mut self, cap: usize) -> Result<(), MonError> {
        if self.disabled {
            return Err(MonError::BufferDisabled);
        }
        if cap == 0 {
            self.disabled = true;
            self.cap = 0;
            self.ring = Vec::new();
            return Ok(());
        }
        let hi = self.held_end();
        if hi - self.read > cap as u64 {
            return Err(MonError::InvalidValue(
                "buffer size smaller than the unread and out-of-order bytes it holds",
            ));
        }
        self.cap = cap;
        if !self.ring.is_empty() && self.ring.len() > cap {
            self.relayout(cap);
        }
        Ok(())
    }

    pub fn fragments(&self) -> Vec<Fragment> {
        let mut out = vec![];
        let mut push = |s: u64, e: u64| {
            let mut s = s;
            while s < e {
                let len = (e - s).min(u32::MAX as u64);
                out.push(Fragment {
                    offset: s,
                    len: len as u32,
                });
                s += len;
            }
        };
        if !self.disabled && self.next > self.base {
            push(self.base, self.next);
        }
        for &(s, e) in &self.frags {
            push(s, e);
        }
        out
    }
}

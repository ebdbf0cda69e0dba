//! Holes: bytes the receiver acknowledged that the capture does not have, reported once or
//! (`--gaps skip`) skipped once they had their chance to arrive late.

use super::{Flow, RawEvent, seq_ge};
use crate::monitor::Side;
use crate::monitor::event::EventKind;

/// How long (capture time) an acknowledged hole waits for its bytes before `--gaps skip` skips
/// it: Linux's minimum retransmission timeout. A capture often has the receiver's ACK before
/// the data it acknowledges (queues, interfaces, offloads reorder what the capture sees); the
/// data then arrives within microseconds and must not be taken for a retransmission of bytes
/// already skipped. The wait ends early when what is held after the hole fills half the
/// buffer, and at the end of the flow or of the input.
pub const SKIP_WAIT_NS: u64 = 200_000_000;

impl Flow {
    /// The end at `side` acknowledged up to `ack`: bytes it acknowledged that we never saw are
    /// missing from the capture (a hole).
    pub(super) fn acked(&mut self, side: Side, ack: u32, ev: &mut Vec<RawEvent>) {
        let ack = match self.side(side.other()).fin_sent {
            Some(fin) if seq_ge(ack, fin) => fin.wrapping_sub(1),
            _ => ack,
        };
        let Some(off) = self.offset(side, ack) else {
            return;
        };
        let next = self.side(side).buf.next();
        if off > next as i64 && off - (next as i64) < 1 << 30 {
            self.gap(side, off as u64, ev);
        }
    }

    /// Bytes up to `target` are missing: skip them (`--gaps skip`) or report the hole once.
    pub(super) fn gap(&mut self, side: Side, target: u64, ev: &mut Vec<RawEvent>) {
        let skip = self.opts.skip_gaps;
        let wait_until = self.last_ns.saturating_add(SKIP_WAIT_NS);
        let s = self.side_mut(side);
        if s.stopped {
            return;
        }
        if skip {
            s.skip_to = Some(s.skip_to.map_or(target, |t| t.max(target)));
            s.skip_at.get_or_insert(wait_until);
            self.retry_skip(side, ev);
            return;
        }
        let next = s.buf.next();
        if s.gap_reported == Some(next) {
            return;
        }
        s.gap_reported = Some(next);
        let end = s.buf.first_fragment().map_or(target, |f| f.min(target));
        self.emit(
            side,
            EventKind::Gap {
                offset: next,
                len: end - next,
                skipped: false,
            },
            ev,
        );
    }

    /// Skips the next hole if every byte before it was read and its wait is over.
    pub(super) fn retry_skip(&mut self, side: Side, ev: &mut Vec<RawEvent>) {
        let now = self.last_ns;
        let s = self.side_mut(side);
        let Some(target) = s.skip_to else {
            return;
        };
        if s.buf.next() >= target {
            (s.skip_to, s.skip_at) = (None, None);
            return;
        }
        let held = s.buf.high().saturating_sub(s.buf.read_offset());
        let due = s.skip_at.is_none_or(|at| now >= at)
            || s.buf.disabled()
            || held >= s.buf.capacity() as u64 / 2;
        if !due {
            return;
        }
        if let Some((hole, n)) = s.buf.skip_hole(target) {
            if s.buf.next() >= target {
                (s.skip_to, s.skip_at) = (None, None);
            }
            self.emit(
                side,
                EventKind::Gap {
                    offset: hole.offset,
                    len: hole.len,
                    skipped: true,
                },
                ev,
            );
            self.new_data(side, n, ev);
        }
    }

    /// At the end of the flow or of the input: holes still open are reported (or, with
    /// `--gaps skip`, skipped one at a time as the reader drains). True if something happened.
    pub fn flush_holes(&mut self, ev: &mut Vec<RawEvent>) -> bool {
        let before = ev.len();
        for side in Side::BOTH {
            let s = self.side(side);
            if s.stopped {
                continue;
            }
            if let Some(f) = s.buf.first_fragment() {
                let high = s.buf.high();
                if self.opts.skip_gaps {
                    // Nothing more can arrive: no wait.
                    self.side_mut(side).skip_at = Some(0);
                    self.gap(side, high, ev);
                } else {
                    self.gap(side, f, ev);
                }
            }
        }
        ev.len() > before
    }

    /// Whether a hole still waits to be skipped (`--gaps skip`).
    pub fn has_holes(&self) -> bool {
        self.opts.skip_gaps
            && self
                .sides
                .iter()
                .any(|s| !s.stopped && s.buf.first_fragment().is_some())
    }
}

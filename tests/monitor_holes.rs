//! The flow monitor on holes (issue 13): bytes a capture does not have, reported and waited
//! for as mOS does, or skipped with `--gaps skip` once they had their chance to arrive late;
//! every captured byte at its place. Built packet by packet; every case also checks that
//! CONN_NEW_DATA's counts agree with what a peek returns.

mod monitor_support;

use epollscope::monitor::flow::SKIP_WAIT_NS;
use epollscope::monitor::packet::{ACK, FIN, PSH};
use epollscope::monitor::{Config, EventKind, Side};
use monitor_support::{CISN, Harness, SISN, c, handshake, s, seg, skip_gaps};

/// A hole the receiver acknowledged: the bytes before it, 100 missing, the bytes after it.
fn holed(h: &mut Harness) {
    handshake(h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"before "));
    // 100 bytes at offset 7 were not captured.
    h.seg(&seg(c(), s(), CISN + 108, SISN + 1, ACK | PSH, b"after"));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 113, ACK, b""));
}

#[test]
fn a_hole_is_an_event_and_waits_by_default_as_in_mos() {
    let mut h = Harness::new(Config::default());
    holed(&mut h);
    let gap = h
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Gap { .. }))
        .expect("a GAP event");
    assert_eq!(gap.side, Some(Side::Svr));
    assert_eq!(
        gap.kind,
        EventKind::Gap {
            offset: 7,
            len: 100,
            skipped: false
        }
    );
    assert_eq!(h.stream(1, Side::Svr), b"before ");
    h.finish();
    assert_eq!(h.stream(1, Side::Svr), b"before ", "waits for the bytes");
    h.assert_counts_agree();
}

#[test]
fn gaps_skip_delivers_what_follows_a_hole_marked() {
    let mut h = Harness::new(skip_gaps());
    holed(&mut h);
    // The acknowledged hole waits a while for its bytes (they may come later in the capture)...
    assert_eq!(h.stream(1, Side::Svr), b"before ");
    // ...and is skipped at the flow's first packet after the wait.
    h.ts += SKIP_WAIT_NS;
    h.seg(&seg(s(), c(), SISN + 1, CISN + 113, ACK, b""));
    assert_eq!(h.stream(1, Side::Svr), b"before after");
    assert_eq!(h.holes[&(1, Side::Svr)], [(7, 100)]);
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::Gap {
            offset: 7,
            len: 100,
            skipped: true
        }));
    h.assert_counts_agree();
    // A hole nobody acknowledged is skipped at the end of the input.
    let mut h = Harness::new(skip_gaps());
    handshake(&mut h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"one "));
    h.seg(&seg(c(), s(), CISN + 9, SISN + 1, ACK | PSH, b"three "));
    h.seg(&seg(c(), s(), CISN + 20, SISN + 1, ACK | PSH, b"five"));
    assert_eq!(h.stream(1, Side::Svr), b"one ");
    h.finish();
    assert_eq!(h.stream(1, Side::Svr), b"one three five");
    assert_eq!(h.holes[&(1, Side::Svr)], [(4, 4), (10, 5)]);
    h.assert_counts_agree();
}

#[test]
fn bytes_captured_after_their_ack_are_not_skipped_as_a_hole() {
    // The capture has the server's ACK before the client's data it acknowledges (reordered
    // by the capture, as in suricata-verify's bug-5392 capture): the bytes come a millisecond
    // later and belong in the stream, not among retransmissions of a skipped hole.
    let mut h = Harness::new(skip_gaps());
    handshake(&mut h);
    h.seg(&seg(s(), c(), SISN + 1, CISN + 11, ACK, b""));
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"0123456789"));
    h.seg(&seg(c(), s(), CISN + 11, SISN + 1, ACK | PSH, b"abc"));
    assert_eq!(h.stream(1, Side::Svr), b"0123456789abc");
    assert!(!h.holes.contains_key(&(1, Side::Svr)), "{:?}", h.holes);
    h.finish();
    assert_eq!(h.stream(1, Side::Svr), b"0123456789abc");
    h.assert_counts_agree();
}

#[test]
fn holes_still_waiting_when_the_flow_ends_are_all_skipped_at_the_end_of_input() {
    // As in suricata-verify's http-gap-double capture: two holes, each acknowledged, with
    // bytes after each, then the FIN handshake and the end of the capture, all within the
    // wait: every captured byte comes out, in order.
    let mut h = Harness::new(skip_gaps());
    handshake(&mut h);
    let hole = |h: &mut Harness, at: u32| h.seg(&seg(s(), c(), SISN + 1, CISN + 1 + at, ACK, b""));
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"one "));
    hole(&mut h, 8);
    h.seg(&seg(c(), s(), CISN + 9, SISN + 1, ACK | PSH, b"three "));
    hole(&mut h, 20);
    h.seg(&seg(
        c(),
        s(),
        CISN + 21,
        SISN + 1,
        ACK | PSH | FIN,
        b"five",
    ));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 26, ACK | FIN, b""));
    h.seg(&seg(c(), s(), CISN + 26, SISN + 2, ACK, b""));
    h.finish();
    assert_eq!(h.stream(1, Side::Svr), b"one three five");
    assert_eq!(h.holes[&(1, Side::Svr)], [(4, 4), (10, 6)]);
    h.assert_counts_agree();
}

#[test]
fn a_hole_stops_waiting_when_what_follows_fills_half_the_buffer() {
    let mut h = Harness::new(Config {
        buffer_size: 4096,
        ..skip_gaps()
    });
    handshake(&mut h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"head"));
    // 10 bytes lost, acknowledged, then a bulk transfer: no wait may cost bytes.
    h.seg(&seg(s(), c(), SISN + 1, CISN + 15, ACK, b""));
    let bulk: Vec<u8> = (0..6000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (k, chunk) in bulk.chunks(1000).enumerate() {
        let seq = CISN + 15 + 1000 * k as u32;
        h.seg(&seg(c(), s(), seq, SISN + 1, ACK | PSH, chunk));
    }
    let want = [&b"head"[..], &bulk].concat();
    assert_eq!(h.stream(1, Side::Svr), &want[..]);
    assert_eq!(h.holes[&(1, Side::Svr)], [(4, 10)]);
    h.assert_counts_agree();
}

#[test]
fn a_stray_segment_far_ahead_does_not_push_later_bytes_out() {
    let mut h = Harness::new(Config::default());
    handshake(&mut h);
    // Inside a scaled window, 10 MB ahead: more than the 256 KiB buffer holds.
    h.seg(&seg(
        c(),
        s(),
        CISN + 1 + 10_000_000,
        SISN + 1,
        ACK | PSH,
        b"stray",
    ));
    let mut want = vec![];
    for k in 0..400u32 {
        let chunk = vec![b'a' + (k % 26) as u8; 1000];
        h.seg(&seg(
            c(),
            s(),
            CISN + 1 + k * 1000,
            SISN + 1,
            ACK | PSH,
            &chunk,
        ));
        want.extend_from_slice(&chunk);
    }
    assert_eq!(h.stream(1, Side::Svr).len(), want.len());
    assert_eq!(h.stream(1, Side::Svr), &want[..]);
    h.assert_counts_agree();
}

/// Random captures of one known stream with segments lost, duplicated and reordered, the
/// receiver acknowledging what it really got: with `--gaps skip` every captured byte comes out
/// at its offset, holes exactly where bytes were not captured; by default the stream is the
/// longest captured prefix. The seed is printed on failure (EPOLLSCOPE_SEED replays one).
#[test]
fn random_losses_deliver_every_captured_byte_at_its_place() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let base: u64 = std::env::var("EPOLLSCOPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_90a5);
    for case in 0..300u64 {
        let seed = base.wrapping_add(case);
        let mut rng = StdRng::seed_from_u64(seed);
        let len = rng.random_range(1..20_000usize);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut segs = vec![];
        let mut at = 0;
        while at < len {
            let n = rng.random_range(1..1500).min(len - at);
            segs.push((at, n));
            at += n;
        }
        // Captured: most segments, some twice; shuffled a little.
        let mut captured: Vec<(usize, usize)> = vec![];
        for &sg in &segs {
            if rng.random_range(0..6) != 0 {
                captured.push(sg);
            }
            if rng.random_range(0..10) == 0 {
                captured.push(sg);
            }
        }
        for i in 1..captured.len() {
            if rng.random_range(0..4) == 0 {
                captured.swap(i - 1, i);
            }
        }
        for skip in [false, true] {
            let mut h = Harness::new(Config {
                skip_gaps: skip,
                ..Config::default()
            });
            handshake(&mut h);
            let mut acked = 0;
            for (i, &(off, n)) in captured.iter().enumerate() {
                let seq = CISN + 1 + off as u32;
                h.seg(&seg(
                    c(),
                    s(),
                    seq,
                    SISN + 1,
                    ACK | PSH,
                    &data[off..off + n],
                ));
                // The receiver got everything the sender sent so far (what the capture
                // missed included): now and then it says so. An acknowledgment does not pass
                // the monitor before the data it covers (a capture reorders, it does not
                // time-travel), so it stops below any captured segment still to come.
                let ahead = captured[i + 1..]
                    .iter()
                    .map(|&(o, _)| o)
                    .min()
                    .unwrap_or(len);
                acked = acked.max((off + n).min(ahead));
                if rng.random_range(0..3) == 0 {
                    h.seg(&seg(s(), c(), SISN + 1, CISN + 1 + acked as u32, ACK, b""));
                }
            }
            h.seg(&seg(
                c(),
                s(),
                CISN + 1 + len as u32,
                SISN + 1,
                FIN | ACK,
                b"",
            ));
            h.finish();
            let got = h.stream(1, Side::Svr);
            let mut covered = vec![false; len];
            for &(off, n) in &captured {
                covered[off..off + n].iter_mut().for_each(|b| *b = true);
            }
            let fail = |what: &str| {
                panic!("seed {seed} (EPOLLSCOPE_SEED={seed}) skip {skip}: {what}");
            };
            if skip {
                // Walk bytes and holes: bytes equal the original at their offset, holes
                // cover only bytes the capture did not have.
                let holes = h.holes.get(&(1, Side::Svr)).cloned().unwrap_or_default();
                let (mut pos, mut from) = (0usize, 0usize);
                for (at, missing) in holes.iter().map(|&(a, m)| (a, m as usize)) {
                    let piece = &got[from..at];
                    if data.get(pos..pos + piece.len()) != Some(piece) {
                        fail(&format!("bytes before the hole at {at} differ"));
                    }
                    pos += piece.len();
                    if covered[pos..pos + missing].iter().any(|&b| b) {
                        fail(&format!("hole {pos}+{missing} hides captured bytes"));
                    }
                    pos += missing;
                    from = at;
                }
                let rest = &got[from..];
                if data.get(pos..pos + rest.len()) != Some(rest) {
                    fail("bytes after the last hole differ");
                }
                pos += rest.len();
                if covered[pos..].iter().any(|&b| b) {
                    fail(&format!("captured bytes after {pos} never came out"));
                }
            } else {
                let prefix = covered.iter().position(|&b| !b).unwrap_or(len);
                if got != &data[..prefix] {
                    fail(&format!(
                        "got {} bytes, want the {prefix}-byte prefix",
                        got.len()
                    ));
                }
            }
            h.assert_counts_agree();
        }
    }
}

//! `Config::in_frame`: bytes a reader takes at once are announced where they lie in the frame
//! instead of being copied into the flow's buffer. It must change nothing else: random
//! captures (several flows, reordered, duplicated, lost and overlapping segments with
//! different bytes, FIN, RST, small or no buffers, both overlap policies, `--gaps skip`,
//! midstream pick-up, idle timeouts) give the same events, bytes, holes and losses with it as
//! without it. The seed is printed on failure (EPOLLSCOPE_SEED replays one).

mod monitor_support;

use std::net::SocketAddr;

use epollscope::monitor::packet::{ACK, FIN, PSH, RST, SYN, encode, linktype};
use epollscope::monitor::{Config, Event, EventKind, MonError, OverlapPolicy, Side};
use monitor_support::{Harness, seg};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// One captured frame and how long after the previous one it came.
struct Frame {
    lt: u32,
    bytes: Vec<u8>,
    after_ns: u64,
}

/// A random capture of up to three flows, interleaved.
fn capture(rng: &mut StdRng) -> Vec<Frame> {
    let flows = rng.random_range(1..=3u16);
    let mut per_flow: Vec<Vec<Frame>> = vec![];
    for f in 0..flows {
        let c: SocketAddr = format!("10.0.0.1:{}", 40000 + f).parse().unwrap();
        let s: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let (cisn, sisn) = (rng.random::<u32>(), rng.random::<u32>());
        let lt = [linktype::RAW, linktype::ETHERNET, linktype::LINUX_SLL][rng.random_range(0..3)];
        let mut out = vec![];
        let mut push = |rng: &mut StdRng, sg: &epollscope::monitor::packet::Segment| {
            let after_ns = if rng.random_range(0..40) == 0 {
                // Now and then a silence longer than the idle timeout the case may set.
                3_000_000_000
            } else {
                1_000_000
            };
            out.push(Frame {
                lt,
                bytes: encode(lt, sg),
                after_ns,
            });
        };
        if rng.random_range(0..4) != 0 {
            push(rng, &seg(c, s, cisn, 0, SYN, b""));
            push(rng, &seg(s, c, sisn, cisn.wrapping_add(1), SYN | ACK, b""));
            push(
                rng,
                &seg(c, s, cisn.wrapping_add(1), sisn.wrapping_add(1), ACK, b""),
            );
        }
        // Both directions' streams, cut into segments, some lost, repeated (sometimes with
        // other bytes: an overlap), swapped.
        let mut segs: Vec<(bool, usize, Vec<u8>)> = vec![];
        let lens = [
            rng.random_range(0..3000usize),
            rng.random_range(0..600usize),
        ];
        for (dir, &len) in lens.iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let mut at = 0;
            while at < len {
                let n = rng.random_range(1..400).min(len - at);
                let part = data[at..at + n].to_vec();
                if rng.random_range(0..8) != 0 {
                    segs.push((dir == 0, at, part.clone()));
                }
                if rng.random_range(0..8) == 0 {
                    let other = part.iter().map(|b| b ^ 0x5a).collect();
                    let again = if rng.random() { part } else { other };
                    segs.push((dir == 0, at, again));
                }
                at += n;
            }
        }
        for i in 1..segs.len() {
            if rng.random_range(0..3) == 0 {
                segs.swap(i - 1, i);
            }
        }
        let (mut acked_c, mut acked_s) = (0usize, 0usize);
        for (from_client, off, part) in &segs {
            let (src, dst, isn, peer_isn) = if *from_client {
                (c, s, cisn, sisn)
            } else {
                (s, c, sisn, cisn)
            };
            let end = off + part.len();
            let acked = if *from_client {
                &mut acked_s
            } else {
                &mut acked_c
            };
            let ack = peer_isn.wrapping_add(1).wrapping_add(*acked as u32);
            let seq = isn.wrapping_add(1).wrapping_add(*off as u32);
            push(rng, &seg(src, dst, seq, ack, ACK | PSH, part));
            // The peer acknowledges what was sent, now and then.
            if rng.random_range(0..3) == 0 {
                let peer_ack = isn.wrapping_add(1).wrapping_add(end as u32);
                let peer_seq = peer_isn.wrapping_add(1);
                push(rng, &seg(dst, src, peer_seq, peer_ack, ACK, b""));
            }
            let other = if *from_client {
                &mut acked_c
            } else {
                &mut acked_s
            };
            *other = (*other).max(end);
        }
        match rng.random_range(0..4) {
            0 => {
                let seq = cisn.wrapping_add(1).wrapping_add(lens[0] as u32);
                let ack = sisn.wrapping_add(1).wrapping_add(lens[1] as u32);
                push(rng, &seg(c, s, seq, ack, FIN | ACK, b""));
                push(rng, &seg(s, c, ack, seq.wrapping_add(1), FIN | ACK, b""));
            }
            1 => {
                let seq = cisn.wrapping_add(1).wrapping_add(lens[0] as u32);
                push(rng, &seg(c, s, seq, 0, RST, b""));
            }
            _ => {}
        }
        per_flow.push(out);
    }
    // Interleave the flows, each in its own order.
    let mut frames = vec![];
    let mut next = vec![0usize; per_flow.len()];
    while next.iter().zip(&per_flow).any(|(&i, f)| i < f.len()) {
        let f = rng.random_range(0..per_flow.len());
        if next[f] < per_flow[f].len() {
            let fr = &per_flow[f][next[f]];
            frames.push(Frame {
                lt: fr.lt,
                bytes: fr.bytes.clone(),
                after_ns: fr.after_ns,
            });
            next[f] += 1;
        }
    }
    frames
}

fn config(rng: &mut StdRng) -> Config {
    Config {
        buffer_size: [0, 64, 700, 256 * 1024][rng.random_range(0..4)],
        overlap: if rng.random() {
            OverlapPolicy::First
        } else {
            OverlapPolicy::Last
        },
        idle_timeout_ns: if rng.random_range(0..4) == 0 {
            2_000_000_000
        } else {
            60_000_000_000
        },
        midstream: rng.random(),
        skip_gaps: rng.random(),
        ..Config::default()
    }
}

fn run(config: Config, frames: &[Frame]) -> Harness {
    let mut h = Harness::new(config);
    for f in frames {
        h.ts += f.after_ns - 1_000_000;
        h.frame(f.lt, &f.bytes);
    }
    h.finish();
    h
}

/// An event as a reader that does not care where bytes lay sees it, without the monitor's
/// identity (each monitor numbers itself).
type Plain = (u64, Option<u64>, Option<Side>, u64, EventKind);

fn plain(events: &[Event]) -> Vec<Plain> {
    events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EventKind::NewDataInFrame { bytes, .. } => EventKind::NewData { bytes },
                ref k => k.clone(),
            };
            (e.ts_ns, e.flow.map(|f| f.n), e.side, e.mask.0, kind)
        })
        .collect()
}

#[test]
fn in_frame_changes_where_bytes_lie_and_nothing_else() {
    let base: u64 = std::env::var("EPOLLSCOPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1f4a_3e00);
    let (mut in_frame, mut buffered) = (0u64, 0u64);
    for case in 0..400u64 {
        let seed = base.wrapping_add(case);
        let mut rng = StdRng::seed_from_u64(seed);
        let frames = capture(&mut rng);
        let cfg = config(&mut rng);
        let want = run(cfg.clone(), &frames);
        let got = run(
            Config {
                in_frame: true,
                ..cfg.clone()
            },
            &frames,
        );
        let ctx = format!("seed {seed} ({cfg:?})");
        assert!(
            want.events
                .iter()
                .all(|e| !matches!(e.kind, EventKind::NewDataInFrame { .. })),
            "{ctx}: bytes announced in the frame without in_frame"
        );
        let (g, w) = (plain(&got.events), plain(&want.events));
        if let Some(i) = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)) {
            let around = |v: &[Plain]| v[i.saturating_sub(3)..(i + 3).min(v.len())].to_vec();
            panic!(
                "{ctx}: event {i} differs\nin frame: {:#?}\nbuffered: {:#?}",
                around(&g),
                around(&w)
            );
        }
        assert_eq!(got.streams, want.streams, "{ctx}: bytes");
        assert_eq!(got.holes, want.holes, "{ctx}: holes");
        assert_eq!(got.lost, want.lost, "{ctx}: losses");
        if cfg.buffer_size > 0 {
            // (With buffering off, CONN_NEW_DATA announces bytes no peek returns, as in mOS.)
            got.assert_counts_agree();
            want.assert_counts_agree();
        }
        for e in &got.events {
            match e.kind {
                EventKind::NewDataInFrame { .. } => in_frame += 1,
                EventKind::NewData { .. } => buffered += 1,
                _ => {}
            }
        }
    }
    // Both paths ran: bytes handed over in place, and bytes that had to wait in the buffer.
    assert!(in_frame > 1000, "{in_frame} in-frame announcements");
    assert!(buffered > 100, "{buffered} buffered announcements");
}

/// What lies in the frame is not in the buffer: a peek after an in-frame announcement finds
/// nothing, and bytes that arrive out of order wait in the buffer as before.
#[test]
fn in_frame_bytes_are_not_peeked_and_waiting_bytes_are() {
    use monitor_support::{CISN, SISN, c, handshake, s};
    let mut h = Harness::new(Config {
        in_frame: true,
        ..Config::default()
    });
    handshake(&mut h);
    let first = encode(
        linktype::RAW,
        &seg(c(), s(), CISN + 1, SISN + 1, ACK, b"hello "),
    );
    h.m.feed(h.ts, linktype::RAW, &first);
    let evs: Vec<Event> = h.m.events().collect();
    let Some(EventKind::NewDataInFrame { bytes: 6, at }) = evs.last().map(|e| &e.kind).cloned()
    else {
        panic!("no in-frame announcement: {evs:?}");
    };
    assert_eq!(&first[at..at + 6], b"hello ");
    let id = evs.last().and_then(|e| e.flow).unwrap();
    let mut buf = [0u8; 64];
    let peeked = h.m.socket(id).unwrap().peek(Side::Svr, &mut buf);
    assert!(matches!(peeked, Err(MonError::NoData)), "{peeked:?}");
    // Out of order: held, then delivered through the buffer once the hole fills.
    h.seg(&seg(c(), s(), CISN + 12, SISN + 1, ACK, b"!"));
    h.seg(&seg(c(), s(), CISN + 7, SISN + 1, ACK, b"world"));
    assert_eq!(h.stream(1, Side::Svr), b"world!");
    let last = h.events.last().map(|e| e.kind.clone());
    assert_eq!(last, Some(EventKind::NewData { bytes: 6 }));
}

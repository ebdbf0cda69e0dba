//! The flow monitor on what real captures contain (issue 13): each class of capture that lost
//! bytes, built here packet by packet, and the bytes that must come out. Every case also checks
//! that CONN_NEW_DATA's counts agree with what a peek returns. Holes are in `monitor_holes.rs`.

mod monitor_support;

use std::net::SocketAddr;

use epollscope::monitor::event::EndReason;
use epollscope::monitor::packet::{ACK, FIN, PSH, RST, SYN, encode, linktype};
use epollscope::monitor::{Config, EventKind, Side};
use monitor_support::{CISN, Harness, SISN, c, handshake, s, seg};

#[test]
fn ipv4_total_length_zero_is_read_from_the_captured_bytes() {
    let mut h = Harness::new(Config::default());
    handshake(&mut h);
    let mut f = encode(
        linktype::RAW,
        &seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"sent with TSO"),
    );
    f[2] = 0;
    f[3] = 0;
    h.frame(linktype::RAW, &f);
    assert_eq!(h.stream(1, Side::Svr), b"sent with TSO");
    assert_eq!(h.m.stats().malformed, 0);
    h.assert_counts_agree();
}

#[test]
fn data_on_the_syn_is_delivered_once_the_server_acknowledges_it() {
    // Accepted: the SYN-ACK acknowledges the SYN and its 5 bytes.
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), CISN, 0, SYN, b"hello"));
    h.seg(&seg(s(), c(), SISN, CISN + 6, SYN | ACK, b""));
    h.seg(&seg(c(), s(), CISN + 6, SISN + 1, ACK | PSH, b" world"));
    assert_eq!(h.stream(1, Side::Svr), b"hello world");
    h.assert_counts_agree();
    // Refused (the SYN-ACK acknowledges only the SYN): the client sends the bytes again.
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), CISN, 0, SYN, b"hello"));
    h.seg(&seg(s(), c(), SISN, CISN + 1, SYN | ACK, b""));
    assert_eq!(h.stream(1, Side::Svr), b"");
    h.seg(&seg(
        c(),
        s(),
        CISN + 1,
        SISN + 1,
        ACK | PSH,
        b"hello again",
    ));
    assert_eq!(h.stream(1, Side::Svr), b"hello again");
    h.assert_counts_agree();
}

#[test]
fn repeated_syns_with_new_isns_follow_the_one_the_syn_ack_acknowledges() {
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), 111, 0, SYN, b""));
    h.seg(&seg(c(), s(), 222_222, 0, SYN, b""));
    h.seg(&seg(c(), s(), 3_333_333, 0, SYN, b""));
    h.seg(&seg(s(), c(), SISN, 222_223, SYN | ACK, b""));
    h.seg(&seg(
        c(),
        s(),
        222_223,
        SISN + 1,
        ACK | PSH,
        b"GET / HTTP/1.1\r\n",
    ));
    h.seg(&seg(
        s(),
        c(),
        SISN + 1,
        222_223 + 16,
        ACK | PSH,
        b"HTTP/1.1 200 OK\r\n",
    ));
    assert_eq!(h.stream(1, Side::Svr), b"GET / HTTP/1.1\r\n");
    assert_eq!(h.stream(1, Side::Cli), b"HTTP/1.1 200 OK\r\n");
    let conn_starts = h.kinds().iter().filter(|k| **k == "CONN_START").count();
    assert_eq!(conn_starts, 2, "one flow, one CONN_START per side");
    h.assert_counts_agree();
}

#[test]
fn a_syn_ack_answering_a_syn_not_in_the_capture_sets_the_clients_isn() {
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), 111, 0, SYN, b""));
    // The client retried with ISN 777 and that SYN was not captured.
    h.seg(&seg(s(), c(), SISN, 778, SYN | ACK, b""));
    h.seg(&seg(c(), s(), 778, SISN + 1, ACK | PSH, b"hello"));
    assert_eq!(h.stream(1, Side::Svr), b"hello");
    assert!(!h.kinds().contains(&"GAP"), "{:?}", h.kinds());
    h.assert_counts_agree();
}

#[test]
fn a_stray_ack_before_the_syn_ack_does_not_synchronize_the_client() {
    // As in suricata-verify's base64-decode-5885 capture: the server answers the SYN with an
    // ACK of something else (the client resets it, as Linux does in SYN_SENT), then the SYN
    // is retransmitted and the real SYN-ACK comes. The stray must not set the server's ISN.
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), CISN, 0, SYN, b""));
    h.seg(&seg(s(), c(), 777_000, 900_000_000, ACK, b""));
    h.seg(&seg(c(), s(), 900_000_000, 0, RST, b""));
    h.seg(&seg(c(), s(), CISN, 0, SYN, b""));
    handshake(&mut h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"hello"));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 6, ACK | PSH, b"world"));
    assert_eq!(h.stream(1, Side::Svr), b"hello");
    assert_eq!(h.stream(1, Side::Cli), b"world");
    assert!(!h.kinds().contains(&"GAP"), "{:?}", h.kinds());
    h.assert_counts_agree();
}

#[test]
fn without_a_syn_ack_in_the_capture_both_sides_still_deliver_what_they_announce() {
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), CISN, 0, SYN, b""));
    // The SYN-ACK was not captured; the client's ACK names the server's ISN.
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK, b""));
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"request"));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 8, ACK | PSH, b"response"));
    assert_eq!(h.stream(1, Side::Svr), b"request");
    assert_eq!(h.stream(1, Side::Cli), b"response");
    h.assert_counts_agree();
    // Neither the SYN-ACK nor the ACK: the server's first segment sets its ISN.
    let mut h = Harness::new(Config::default());
    h.seg(&seg(c(), s(), CISN, 0, SYN, b""));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 1, ACK | PSH, b"banner"));
    assert_eq!(h.stream(1, Side::Cli), b"banner");
    h.assert_counts_agree();
}

#[test]
fn overwritten_bytes_are_counted_as_announced_and_lost() {
    let mut h = Harness::new(Config {
        buffer_size: 16,
        ..Config::default()
    });
    handshake(&mut h);
    // Each 17-byte segment overflows the 16-byte buffer: it is stored by overwriting at the
    // next packet, its first byte lost (and counted so by the failing peek).
    let mut sent = 0;
    let mut kept = vec![];
    for k in 0..6u32 {
        let chunk = format!("chunk{k}-abcdefghij");
        h.seg(&seg(
            c(),
            s(),
            CISN + 1 + sent,
            SISN + 1,
            ACK | PSH,
            chunk.as_bytes(),
        ));
        sent += chunk.len() as u32;
        kept.extend_from_slice(&chunk.as_bytes()[1..]);
    }
    h.finish();
    h.assert_counts_agree();
    assert_eq!(h.lost[&(1, Side::Svr)], 6);
    assert_eq!(h.stream(1, Side::Svr), &kept[..]);
}

#[test]
fn a_rst_away_from_the_expected_sequence_is_ignored_and_reported() {
    let mut h = Harness::new(Config::default());
    handshake(&mut h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"GET /"));
    // Spoofed RST/ACKs: in the window but not exact, and far away.
    h.seg(&seg(s(), c(), SISN + 100, CISN + 6, RST | ACK, b""));
    h.seg(&seg(s(), c(), SISN + 1_000_000, CISN + 6, RST | ACK, b""));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 6, ACK | PSH, b"200 OK"));
    assert_eq!(h.stream(1, Side::Cli), b"200 OK", "the flow goes on");
    let ignored: Vec<&EventKind> = h
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RstIgnored { .. }))
        .map(|e| &e.kind)
        .collect();
    assert_eq!(
        ignored,
        [
            &EventKind::RstIgnored {
                seq: SISN + 100,
                expected: SISN + 1
            },
            &EventKind::RstIgnored {
                seq: SISN + 1_000_000,
                expected: SISN + 1
            }
        ]
    );
    assert_eq!(h.m.stats().rst_ignored, 2);
    // Exactly at the expected sequence number: the flow ends.
    h.seg(&seg(s(), c(), SISN + 7, 0, RST, b""));
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::ConnEnd {
            reason: EndReason::Rst
        }));
    h.assert_counts_agree();
}

#[test]
fn a_rst_after_the_peers_fin_is_accepted_as_linux_does() {
    let mut h = Harness::new(Config::default());
    handshake(&mut h);
    h.seg(&seg(s(), c(), SISN + 1, CISN + 1, ACK | PSH | FIN, b"bye"));
    // The client got the FIN (CLOSE_WAIT) and the server resets at its FIN's sequence.
    h.seg(&seg(s(), c(), SISN + 4, 0, RST, b""));
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::ConnEnd {
            reason: EndReason::Rst
        }));
}

#[test]
fn a_flow_resumed_after_the_idle_timeout_loses_no_byte() {
    let mut h = Harness::new(Config {
        idle_timeout_ns: 60_000_000_000,
        ..Config::default()
    });
    handshake(&mut h);
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK | PSH, b"first "));
    h.seg(&seg(s(), c(), SISN + 1, CISN + 7, ACK | PSH, b"reply "));
    h.ts += 120_000_000_000;
    h.seg(&seg(c(), s(), CISN + 7, SISN + 7, ACK | PSH, b"second"));
    h.seg(&seg(s(), c(), SISN + 7, CISN + 13, ACK | PSH, b"answer"));
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::ConnEnd {
            reason: EndReason::Timeout
        }));
    let all = |side| {
        let mut v = h.stream(1, side).to_vec();
        v.extend_from_slice(h.stream(2, side));
        v
    };
    assert_eq!(all(Side::Svr), b"first second");
    assert_eq!(all(Side::Cli), b"reply answer");
    let flows = h.m.flows();
    assert_eq!(flows[0].resumes, Some(1));
    assert!(flows[0].midstream);
    assert_eq!(h.m.stats().resumed, 1);
    h.assert_counts_agree();
}

#[test]
fn flows_without_a_syn_are_orphans_by_default_and_picked_up_with_midstream() {
    let mid = |h: &mut Harness| {
        h.seg(&seg(c(), s(), 7000, 9000, ACK | PSH, b"in the middle"));
        h.seg(&seg(s(), c(), 9000, 7013, ACK | PSH, b"of a flow"));
        h.seg(&seg(c(), s(), 7013, 9009, ACK | PSH, b"!"));
    };
    let mut h = Harness::new(Config::default());
    mid(&mut h);
    assert_eq!(h.m.stats().orphans, 3);
    assert!(h.m.flows().is_empty(), "mOS does not monitor them");
    let mut h = Harness::new(Config {
        midstream: true,
        ..Config::default()
    });
    mid(&mut h);
    assert_eq!(h.stream(1, Side::Svr), b"in the middle!");
    assert_eq!(h.stream(1, Side::Cli), b"of a flow");
    let f = &h.m.flows()[0];
    assert!(f.midstream);
    assert_eq!(
        (f.client, f.server),
        (c(), s()),
        "the low port is the server"
    );
    assert!(
        h.events
            .iter()
            .any(|e| e.kind == EventKind::ConnStart { midstream: true })
    );
    assert_eq!(h.m.stats().midstream, 1);
    h.assert_counts_agree();
}

#[test]
fn stragglers_after_a_rst_stay_with_their_connection_even_with_midstream() {
    let mut h = Harness::new(Config {
        midstream: true,
        ..Config::default()
    });
    // Picked up mid-stream, reset by the server at the expected sequence number.
    h.seg(&seg(c(), s(), 7000, 9000, ACK | PSH, b"hello!"));
    h.seg(&seg(s(), c(), 9000, 0, RST, b""));
    // The client retransmits, and data the server had in flight arrives after its RST: both
    // belong to the reset connection (Linux answers them with RSTs, no connection comes of
    // them), so no flow delivers these bytes again.
    h.seg(&seg(c(), s(), 7000, 9000, ACK | PSH, b"hello!"));
    h.seg(&seg(s(), c(), 9000, 7006, ACK | PSH, b"in flight"));
    h.seg(&seg(c(), s(), 7006, 0, RST, b""));
    assert_eq!(h.m.stats().flows, 1, "no flow was made of the stragglers");
    assert_eq!(h.stream(1, Side::Svr), b"hello!");
    assert_eq!(h.m.stats().after_end, 3);
    assert_eq!(h.m.stats().orphans, 3);
    // A new connection on the same ports, its SYN not captured, starts at another ISN: a flow.
    h.seg(&seg(
        c(),
        s(),
        0x8000_0000,
        0x4000_0000,
        ACK | PSH,
        b"new one",
    ));
    assert_eq!(h.m.stats().flows, 2);
    assert_eq!(h.stream(2, Side::Svr), b"new one");
    assert_eq!(h.m.stats().midstream, 2);
    h.assert_counts_agree();
}

#[test]
fn the_flow_table_is_bounded_and_evicts_the_least_recently_active() {
    let mut h = Harness::new(Config {
        max_flows: 1000,
        ..Config::default()
    });
    // A long-lived flow that keeps talking survives; 300,000 SYN-only flows come and go.
    handshake(&mut h);
    let mut sent = 0u32;
    for i in 0..300_000u32 {
        let src = SocketAddr::new(
            [10, 9, (i >> 16) as u8, (i >> 8) as u8].into(),
            (i & 0xff) as u16 + 1024,
        );
        h.m.feed(
            h.ts + u64::from(i),
            linktype::RAW,
            &encode(linktype::RAW, &seg(src, s(), i, 0, SYN, b"")),
        );
        h.m.events().for_each(drop);
        if i % 1000 == 0 {
            h.ts += 1_000_000;
            h.seg(&seg(
                c(),
                s(),
                CISN + 1 + sent,
                SISN + 1,
                ACK | PSH,
                b"tick ",
            ));
            sent += 5;
        }
        if i % 25_000 == 0 {
            assert!(
                h.m.flows().len() <= 1001,
                "{} flows held",
                h.m.flows().len()
            );
        }
    }
    assert_eq!(
        h.stream(1, Side::Svr).len(),
        sent as usize,
        "the active flow kept every byte"
    );
    let st = h.m.stats();
    assert_eq!(st.flows, 300_001);
    assert!(st.evicted >= 299_000, "{} evicted", st.evicted);
    assert!(h.m.flows().len() <= 1001);
}

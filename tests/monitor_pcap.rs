//! pcap/pcapng reader and writer: round trips through every supported link type and both
//! formats, exact messages for bad files, and a seeded fuzz test (random and mutated files
//! never panic the reader or the engine). The seed is printed on failure; set EPOLLSCOPE_SEED
//! to replay one.

mod monitor_support;

use epollscope::monitor::packet::{ACK, FIN, PSH, SYN, Segment, encode, linktype};
use epollscope::monitor::pcap::{NgWriter, PcapError, Reader, Writer};
use epollscope::monitor::{Config, FlowId, MonError, Monitor, Side};
use monitor_support::seg;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A complete conversation (handshake, data both ways with one reordering, FIN close), as
/// (timestamp, segment) pairs; the expected streams are "hello server" / "hello client".
fn conversation(cli: &str, svr: &str) -> Vec<(u64, Segment<'static>)> {
    let c = cli.parse().unwrap();
    let s = svr.parse().unwrap();
    let segs = vec![
        seg(c, s, 100, 0, SYN, b""),
        seg(s, c, 900, 101, SYN | ACK, b""),
        seg(c, s, 101, 901, ACK, b""),
        seg(c, s, 107, 901, ACK | PSH, b"server"),
        seg(c, s, 101, 901, ACK | PSH, b"hello "),
        seg(s, c, 901, 113, ACK | PSH, b"hello client"),
        seg(c, s, 113, 913, FIN | ACK, b""),
        seg(s, c, 913, 114, FIN | ACK, b""),
        seg(c, s, 114, 914, ACK, b""),
    ];
    segs.into_iter()
        .enumerate()
        .map(|(i, s)| (1_700_000_000_000_000_000 + i as u64 * 1_000_000, s))
        .collect()
}

/// Reads a capture and returns each flow's two streams, [cli, svr].
fn reassemble(bytes: &[u8]) -> Result<Vec<[Vec<u8>; 2]>, PcapError> {
    let mut r = Reader::with_capacity(bytes, 256)?;
    let mut m = Monitor::new(Config::default());
    let mut flows: Vec<(FlowId, [Vec<u8>; 2])> = vec![];
    let mut evs = vec![];
    while let Some(p) = r.next_packet()? {
        m.feed(p.ts_ns, p.linktype, p.data);
        evs.extend(m.events());
        for ev in evs.drain(..) {
            let (Some(id), Some(side)) = (ev.flow, ev.side) else {
                continue;
            };
            if !flows.iter().any(|f| f.0 == id) {
                flows.push((id, [vec![], vec![]]));
            }
            let Ok(mut sock) = m.socket(id) else { continue };
            let mut buf = [0u8; 5];
            while let Ok(n) = sock.peek(side, &mut buf) {
                let f = flows.iter_mut().find(|f| f.0 == id).unwrap();
                f.1[side as usize].extend_from_slice(&buf[..n]);
            }
        }
    }
    Ok(flows.into_iter().map(|f| f.1).collect())
}

fn pcap_of(lt: u32, segs: &[(u64, Segment)]) -> Vec<u8> {
    let mut w = Writer::new(vec![], lt).unwrap();
    for (ts, s) in segs {
        let f = encode(lt, s);
        w.write(*ts, &f, f.len() as u32).unwrap();
    }
    w.into_inner()
}

const LINK_TYPES: [u32; 9] = [
    linktype::ETHERNET,
    linktype::RAW,
    linktype::NULL,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::LINUX_SLL2,
    linktype::PPP,
    linktype::C_HDLC,
    linktype::IPOIB,
];

#[test]
fn pcap_round_trip_for_every_link_type_and_ip_version() {
    for lt in LINK_TYPES {
        for (c, s) in [("10.0.0.1:5555", "10.0.0.2:80"), ("[::1]:5555", "[::1]:80")] {
            let flows = reassemble(&pcap_of(lt, &conversation(c, s))).unwrap();
            assert_eq!(
                flows,
                [[b"hello client".to_vec(), b"hello server".to_vec()]],
                "link type {lt} {c}"
            );
        }
    }
}

#[test]
fn pcapng_with_several_interfaces_and_big_endian_pcap() {
    let mut w = NgWriter::new(vec![]).unwrap();
    let a = conversation("10.0.0.1:1", "10.0.0.2:2");
    let b = conversation("[2001:db8::1]:3", "[2001:db8::2]:4");
    for ((ta, sa), (tb, sb)) in a.iter().zip(&b) {
        w.write(*ta, linktype::LINUX_SLL2, &encode(linktype::LINUX_SLL2, sa))
            .unwrap();
        w.write(*tb, linktype::RAW, &encode(linktype::RAW, sb))
            .unwrap();
    }
    let bytes = w.into_inner();
    let mut r = Reader::new(&bytes[..]).unwrap();
    let first = r.next_packet().unwrap().unwrap();
    assert_eq!(first.ts_ns, a[0].0, "nanosecond timestamps survive");
    assert_eq!(first.linktype, linktype::LINUX_SLL2);
    let flows = reassemble(&bytes).unwrap();
    assert_eq!(flows.len(), 2);
    assert!(
        flows
            .iter()
            .all(|f| f == &[b"hello client".to_vec(), b"hello server".to_vec()])
    );

    // Big-endian microsecond pcap, as written on a big-endian host.
    let le = pcap_of(linktype::ETHERNET, &a);
    let mut be = vec![];
    be.extend_from_slice(&[0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4]);
    be.extend_from_slice(&[0; 8]);
    be.extend_from_slice(&262_144u32.to_be_bytes());
    be.extend_from_slice(&1u32.to_be_bytes());
    let mut at = 24;
    while at < le.len() {
        for k in 0..4 {
            let v = u32::from_le_bytes(le[at + 4 * k..at + 4 * k + 4].try_into().unwrap());
            be.extend_from_slice(&v.to_be_bytes());
        }
        let len = u32::from_le_bytes(le[at + 8..at + 12].try_into().unwrap()) as usize;
        be.extend_from_slice(&le[at + 16..at + 16 + len]);
        at += 16 + len;
    }
    assert_eq!(reassemble(&be).unwrap(), reassemble(&le).unwrap());
}

fn err(bytes: &[u8]) -> String {
    match reassemble(bytes) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_fail_with_a_message_naming_the_problem() {
    let good = pcap_of(
        linktype::ETHERNET,
        &conversation("10.0.0.1:1", "10.0.0.2:2"),
    );
    assert_eq!(err(b""), "empty file (not a pcap or pcapng capture)");
    assert_eq!(
        err(b"GET / HTTP/1.1\r\n"),
        r#"not a pcap or pcapng file: it starts with "GET / HTTP/1.1\r\n" (47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a)"#
    );
    assert_eq!(
        err(b"\xd4\xc3"),
        r#"not a pcap or pcapng file: it starts with "\xd4\xc3" (d4 c3)"#
    );
    assert_eq!(
        err(&good[..20]),
        "truncated pcap file header at byte 0 (the file ends inside it)"
    );
    assert_eq!(
        err(&good[..30]),
        "truncated packet header at byte 24 (the file ends inside it)"
    );
    assert_eq!(
        err(&good[..50]),
        "truncated packet data at byte 24 (the file ends inside it)"
    );
    let mut lt = good.clone();
    lt[20] = 147;
    assert!(err(&lt).starts_with("unsupported link type 147 (supported: NULL 0, EN10MB 1"));
    let mut ver = good.clone();
    ver[4] = 9;
    assert_eq!(
        err(&ver),
        "corrupt pcap file header at byte 0: version 9 (want 2)"
    );
    let mut huge = good.clone();
    huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        err(&huge),
        "corrupt packet header at byte 24: captured length 4294967295"
    );

    let mut w = NgWriter::new(vec![]).unwrap();
    let (ts, s) = &conversation("10.0.0.1:1", "10.0.0.2:2")[0];
    w.write(*ts, linktype::RAW, &encode(linktype::RAW, s))
        .unwrap();
    let ng = w.into_inner();
    let mut bad = ng.clone();
    bad[28 + 4] = 13; // IDB length not a multiple of 4
    assert_eq!(
        err(&bad),
        "corrupt pcapng block at byte 28: block length 13"
    );
    let mut bad = ng.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        err(&bad),
        "corrupt pcapng block at byte 60: trailing length differs"
    );
    assert_eq!(
        err(&ng[..ng.len() - 3]),
        "truncated pcapng block at byte 60 (the file ends inside it)"
    );
    let mut bad = ng.clone();
    bad[60 + 8] = 5; // EPB names interface 5
    assert_eq!(
        err(&bad),
        "corrupt pcapng packet block at byte 60: interface 5 was not described"
    );
    let mut bad = ng.clone();
    bad[28 + 8] = 200; // IDB link type
    assert!(err(&bad).starts_with("unsupported link type 200"));
}

fn base_seed() -> u64 {
    std::env::var("EPOLLSCOPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9cab_5eed)
}

/// Reads every packet of `bytes` into a monitor with tiny buffers (so overflow paths run too),
/// peeking and ppeeking as it goes. Any error is fine; a panic is not.
fn chew(bytes: &[u8]) {
    let Ok(mut r) = Reader::with_capacity(bytes, 128) else {
        return;
    };
    let mut m = Monitor::new(Config {
        buffer_size: 32,
        ..Config::default()
    });
    let mut evs = vec![];
    for _ in 0..10_000 {
        let Ok(Some(p)) = r.next_packet() else { break };
        m.feed(p.ts_ns, p.linktype, p.data);
        evs.extend(m.events());
        for ev in evs.drain(..) {
            let Some(id) = ev.flow else { continue };
            let Ok(mut s) = m.socket(id) else { continue };
            let mut buf = [0u8; 16];
            for side in Side::BOTH {
                let _ = s.peek(side, &mut buf);
                let at = u64::from(buf[0]);
                let _ = s.ppeek(side, &mut buf, at);
                let _ = s.fragments(side);
                let _: Result<_, MonError> = s.buffer_info(side);
            }
        }
    }
    m.finish();
}

#[test]
fn random_and_mutated_captures_never_panic() {
    let mut seeds = vec![];
    for lt in LINK_TYPES {
        seeds.push(pcap_of(lt, &conversation("10.0.0.1:1", "10.0.0.2:2")));
        seeds.push(pcap_of(lt, &conversation("[::1]:1", "[::2]:2")));
        let mut w = NgWriter::new(vec![]).unwrap();
        for (ts, s) in conversation("10.0.0.1:1", "10.0.0.2:2") {
            w.write(ts, lt, &encode(lt, &s)).unwrap();
        }
        seeds.push(w.into_inner());
    }
    let base = base_seed();
    for case in 0..120_000u64 {
        let seed = base.wrapping_add(case);
        let mut rng = StdRng::seed_from_u64(seed);
        let bytes: Vec<u8> = match case % 3 {
            0 => {
                // Random bytes behind a valid magic, so the parser gets past the first check.
                let magic: &[u8] = if rng.random() {
                    b"\xd4\xc3\xb2\xa1"
                } else {
                    b"\x0a\x0d\x0d\x0a"
                };
                let len = rng.random_range(0..200);
                magic
                    .iter()
                    .copied()
                    .chain((0..len).map(|_| rng.random::<u8>()))
                    .collect()
            }
            _ => {
                let mut b = seeds[rng.random_range(0..seeds.len())].clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
                if rng.random_range(0..4) == 0 {
                    b.truncate(rng.random_range(0..b.len()));
                }
                b
            }
        };
        if let Err(panic) = std::panic::catch_unwind(|| chew(&bytes)) {
            eprintln!("failing seed: EPOLLSCOPE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

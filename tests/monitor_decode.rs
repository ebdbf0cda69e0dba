//! The monitor opens every link type and tunnel real captures carry TCP in (issue 13), and
//! treats IP edge cases as a receiver does: a table of wrappers, one conversation through each.

mod monitor_support;

use std::net::SocketAddr;

use epollscope::monitor::decode::Frag;
use epollscope::monitor::frag::Reassembler;
use epollscope::monitor::packet::{ACK, PSH, SYN, Segment, encode, linktype};
use epollscope::monitor::{Config, Side};
use monitor_support::{Harness, seg};

/// A conversation: handshake, a request, a response. Expected: "request" / "response".
fn conversation(c: SocketAddr, s: SocketAddr) -> Vec<Segment<'static>> {
    vec![
        seg(c, s, 100, 0, SYN, b""),
        seg(s, c, 900, 101, SYN | ACK, b""),
        seg(c, s, 101, 901, ACK, b""),
        seg(c, s, 101, 901, ACK | PSH, b"request"),
        seg(s, c, 901, 108, ACK | PSH, b"response"),
    ]
}

fn be16(v: usize) -> [u8; 2] {
    u16::try_from(v).unwrap().to_be_bytes()
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ethertype_of(ip: &[u8]) -> u16 {
    if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 }
}

/// An outer IPv4 header around `payload` (checksum left 0: the monitor does not check it).
fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&be16(20 + payload.len()));
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(payload);
    p
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&be16(payload.len()));
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    p
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = 50_000u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&be16(8 + payload.len()));
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ppp_proto(ip: &[u8]) -> [u8; 2] {
    if ip[0] >> 4 == 6 {
        [0, 0x57]
    } else {
        [0, 0x21]
    }
}

type Wrap = fn(&[u8]) -> Vec<u8>;

/// (name, link type, wrapper of the inner IP packet).
fn wrappers() -> Vec<(&'static str, u32, Wrap)> {
    vec![
        ("PPP", linktype::PPP, |ip| {
            [&[0xff, 0x03][..], &ppp_proto(ip), ip].concat()
        }),
        ("PPP without address and control", linktype::PPP, |ip| {
            [&ppp_proto(ip)[..], ip].concat()
        }),
        ("Cisco HDLC frames in a PPP capture", linktype::PPP, |ip| {
            [&[0x0f, 0x00][..], &ethertype_of(ip).to_be_bytes(), ip].concat()
        }),
        ("Cisco HDLC", linktype::C_HDLC, |ip| {
            [&[0x0f, 0x00][..], &ethertype_of(ip).to_be_bytes(), ip].concat()
        }),
        // Linux's layout: 40 bytes of hardware addresses before RFC 4391's 4-byte header.
        ("IP over InfiniBand", linktype::IPOIB, |ip| {
            let mut addrs = [0u8; 40];
            addrs[20..26].copy_from_slice(&[0x80, 0, 0x05, 0x50, 0xfe, 0x80]);
            [&addrs[..], &ethertype_of(ip).to_be_bytes(), &[0, 0], ip].concat()
        }),
        ("PPPoE", linktype::ETHERNET, |ip| {
            let ppp = [&ppp_proto(ip)[..], ip].concat();
            let body = [&[0x11, 0x00, 0x00, 0x01][..], &be16(ppp.len()), &ppp].concat();
            eth(0x8864, &body)
        }),
        ("GRE", linktype::ETHERNET, |ip| {
            let gre = [&[0x00, 0x00][..], &ethertype_of(ip).to_be_bytes(), ip].concat();
            eth(0x0800, &ipv4(47, &gre))
        }),
        (
            "GRE with checksum, key and sequence over IPv6",
            linktype::ETHERNET,
            |ip| {
                let mut gre = vec![0xb0, 0x00];
                gre.extend_from_slice(&ethertype_of(ip).to_be_bytes());
                gre.extend_from_slice(&[0; 12]);
                gre.extend_from_slice(ip);
                eth(0x86dd, &ipv6(47, &gre))
            },
        ),
        ("GRE transparent Ethernet bridging", linktype::RAW, |ip| {
            let inner = eth(ethertype_of(ip), ip);
            ipv4(47, &[&[0x00, 0x00, 0x65, 0x58][..], &inner].concat())
        }),
        ("ERSPAN type II", linktype::ETHERNET, |ip| {
            let mut gre = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 7];
            gre.extend_from_slice(&[0x10, 0x01, 0x00, 0x05, 0, 0, 0, 0]);
            gre.extend_from_slice(&eth(ethertype_of(ip), ip));
            eth(0x0800, &ipv4(47, &gre))
        }),
        (
            "ERSPAN type III with platform subheader",
            linktype::ETHERNET,
            |ip| {
                let mut gre = vec![0x10, 0x00, 0x22, 0xeb, 0, 0, 0, 7];
                gre.extend_from_slice(&[0x20, 0x01, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 0x01]);
                gre.extend_from_slice(&[0; 8]);
                gre.extend_from_slice(&eth(ethertype_of(ip), ip));
                eth(0x0800, &ipv4(47, &gre))
            },
        ),
        ("VXLAN", linktype::ETHERNET, |ip| {
            let vx = [
                &[0x08, 0, 0, 0, 0, 0, 42, 0][..],
                &eth(ethertype_of(ip), ip),
            ]
            .concat();
            eth(0x0800, &ipv4(17, &udp(4789, &vx)))
        }),
        ("Geneve with an option", linktype::ETHERNET, |ip| {
            let mut g = vec![0x01, 0x00];
            g.extend_from_slice(&ethertype_of(ip).to_be_bytes());
            g.extend_from_slice(&[0, 0, 42, 0, 0x01, 0x02, 0x03, 0x00]);
            g.extend_from_slice(ip);
            eth(0x0800, &ipv4(17, &udp(6081, &g)))
        }),
        ("Geneve carrying Ethernet", linktype::ETHERNET, |ip| {
            let g = [
                &[0x00, 0x00, 0x65, 0x58, 0, 0, 42, 0][..],
                &eth(ethertype_of(ip), ip),
            ]
            .concat();
            eth(0x86dd, &ipv6(17, &udp(6081, &g)))
        }),
        ("IP in IPv4 (6in4 or IPIP)", linktype::RAW, |ip| {
            ipv4(if ip[0] >> 4 == 6 { 41 } else { 4 }, ip)
        }),
        ("IP in IPv6 (4in6 or 6in6)", linktype::RAW, |ip| {
            ipv6(if ip[0] >> 4 == 6 { 41 } else { 4 }, ip)
        }),
        ("MPLS, two labels", linktype::ETHERNET, |ip| {
            eth(
                0x8847,
                &[&[0x00, 0x01, 0x20, 0x40, 0x00, 0x02, 0x11, 0x40][..], ip].concat(),
            )
        }),
        ("MPLS over PPP", linktype::PPP, |ip| {
            [&[0xff, 0x03, 0x02, 0x81, 0x00, 0x01, 0x21, 0x40][..], ip].concat()
        }),
        (
            "MPLS pseudowire with a control word",
            linktype::ETHERNET,
            |ip| {
                let pw = [
                    &[0x00, 0x03, 0x01, 0x40, 0, 0, 0, 0][..],
                    &eth(ethertype_of(ip), ip),
                ]
                .concat();
                eth(0x8847, &pw)
            },
        ),
        ("WCCPv2 redirect in GRE", linktype::ETHERNET, |ip| {
            let gre = [&[0x00, 0x00, 0x88, 0x3e, 0x00, 0x00, 0x00, 0x00][..], ip].concat();
            eth(0x0800, &ipv4(47, &gre))
        }),
        ("GTP-U", linktype::ETHERNET, |ip| {
            let g = [&[0x30, 0xff][..], &be16(ip.len()), &[0, 0, 0, 9], ip].concat();
            eth(0x0800, &ipv4(17, &udp(2152, &g)))
        }),
        ("GTP-U with an extension header", linktype::ETHERNET, |ip| {
            let mut g = vec![0x34, 0xff];
            g.extend_from_slice(&be16(ip.len() + 8));
            g.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0x85, 1, 0x10, 0x09, 0x00]);
            g.extend_from_slice(ip);
            eth(0x0800, &ipv4(17, &udp(2152, &g)))
        }),
    ]
}

#[test]
fn every_link_type_and_tunnel_delivers_both_streams() {
    for (name, lt, wrap) in wrappers() {
        for (c, s) in [
            ("10.1.1.1:5555", "10.1.1.2:80"),
            ("[2001:db8::a]:5555", "[2001:db8::b]:80"),
        ] {
            let mut h = Harness::new(Config::default());
            for sg in conversation(c.parse().unwrap(), s.parse().unwrap()) {
                h.frame(lt, &wrap(&encode(linktype::RAW, &sg)));
            }
            assert_eq!(h.stream(1, Side::Svr), b"request", "{name} {c}");
            assert_eq!(h.stream(1, Side::Cli), b"response", "{name} {c}");
            let st = h.m.stats();
            assert_eq!((st.malformed, st.not_tcp), (0, 0), "{name} {c}");
        }
    }
}

#[test]
fn tunnels_nested_without_end_are_malformed_not_a_stack_overflow() {
    let sg = &conversation("10.1.1.1:1".parse().unwrap(), "10.1.1.2:2".parse().unwrap())[0];
    let mut p = encode(linktype::RAW, sg);
    for _ in 0..100 {
        p = ipv4(4, &p);
    }
    let mut h = Harness::new(Config::default());
    h.frame(linktype::RAW, &p);
    assert_eq!(h.m.stats().malformed, 1);
}

fn c() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}
fn s() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

fn handshake(h: &mut Harness) {
    for sg in &conversation(c(), s())[..3] {
        h.seg(sg);
    }
}

#[test]
fn an_ipv6_atomic_fragment_is_an_ordinary_packet() {
    let c6: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
    let s6: SocketAddr = "[2001:db8::2]:80".parse().unwrap();
    let mut h = Harness::new(Config::default());
    for sg in &conversation(c6, s6)[..3] {
        h.seg(sg);
    }
    let p = encode(linktype::RAW, &seg(c6, s6, 101, 901, ACK | PSH, b"atomic"));
    // Next header 44 then a fragment header: offset 0, M clear, id 77.
    let mut f = p[..40].to_vec();
    f[4..6].copy_from_slice(&be16(p.len() - 40 + 8));
    f[6] = 44;
    f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 77]);
    f.extend_from_slice(&p[40..]);
    h.frame(linktype::RAW, &f);
    assert_eq!(h.stream(1, Side::Svr), b"atomic");
}

#[test]
fn ipv4_with_malformed_options_is_dropped_as_the_receiver_drops_it() {
    let mut h = Harness::new(Config::default());
    handshake(&mut h);
    let p = encode(linktype::RAW, &seg(c(), s(), 101, 901, ACK | PSH, b"X"));
    // Record route with length 2 (at least 3 is valid): Linux drops the packet.
    let mut bad = vec![0x46, 0];
    bad.extend_from_slice(&be16(p.len() + 4));
    bad.extend_from_slice(&p[4..20]);
    bad.extend_from_slice(&[7, 2, 0, 0]);
    bad.extend_from_slice(&p[20..]);
    h.frame(linktype::RAW, &bad);
    // The sender's retransmission carries the byte the receiver really got.
    h.seg(&seg(c(), s(), 101, 901, ACK | PSH, b"A"));
    assert_eq!(h.stream(1, Side::Svr), b"A");
    assert_eq!(h.m.stats().malformed, 1);
    // Well-formed options (NOP, NOP, timestamp) are fine.
    let p = encode(linktype::RAW, &seg(c(), s(), 102, 901, ACK | PSH, b"B"));
    let mut ok = vec![0x48, 0];
    ok.extend_from_slice(&be16(p.len() + 12));
    ok.extend_from_slice(&p[4..20]);
    ok.extend_from_slice(&[1, 1, 68, 8, 5, 0, 0, 0, 0, 0, 0, 0]);
    ok.extend_from_slice(&p[20..]);
    h.frame(linktype::RAW, &ok);
    assert_eq!(h.stream(1, Side::Svr), b"AB");
}

/// Splits an IPv4 packet into fragments of `size` payload bytes (a multiple of 8).
fn fragments_v4(p: &[u8], size: usize) -> Vec<Vec<u8>> {
    let body = &p[20..];
    body.chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let off = i * size / 8;
            let more = (i + 1) * size < body.len();
            let mut f = p[..20].to_vec();
            f[2..4].copy_from_slice(&be16(20 + chunk.len()));
            f[4..6].copy_from_slice(&[0x12, 0x34]);
            let word = u16::try_from(off).unwrap() | if more { 0x2000 } else { 0 };
            f[6..8].copy_from_slice(&word.to_be_bytes());
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

fn fragments_v6(p: &[u8], size: usize) -> Vec<Vec<u8>> {
    let body = &p[40..];
    body.chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * size < body.len();
            let mut f = p[..40].to_vec();
            f[4..6].copy_from_slice(&be16(chunk.len() + 8));
            f[6] = 44;
            let word = u16::try_from(i * size).unwrap() | u16::from(more);
            f.extend_from_slice(&[6, 0]);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x56, 0x78]);
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

#[test]
fn ipv4_and_ipv6_fragments_are_reassembled_in_any_order() {
    let body: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    for v6 in [false, true] {
        let (c, s): (SocketAddr, SocketAddr) = if v6 {
            (
                "[2001:db8::1]:1".parse().unwrap(),
                "[2001:db8::2]:2".parse().unwrap(),
            )
        } else {
            (c(), s())
        };
        let mut h = Harness::new(Config::default());
        for sg in &conversation(c, s)[..3] {
            h.seg(sg);
        }
        let p = encode(linktype::RAW, &seg(c, s, 101, 901, ACK | PSH, &body));
        let mut frags = if v6 {
            fragments_v6(&p, 48)
        } else {
            fragments_v4(&p, 48)
        };
        assert_eq!(frags.len(), 3);
        frags.swap(0, 2);
        // A duplicate of the middle one, as a retransmitting router would send.
        frags.push(frags[1].clone());
        for f in &frags {
            h.frame(linktype::RAW, f);
        }
        assert_eq!(h.stream(1, Side::Svr), &body[..], "v6 {v6}");
        assert_eq!(h.m.stats().reassembled, 1);
    }
}

fn frag(id: u32, offset: u32, more: bool, payload: &[u8]) -> Frag<'_> {
    Frag {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        id,
        proto: 6,
        offset,
        more,
        payload,
        depth: 0,
    }
}

#[test]
fn fragment_reassembly_is_bounded_in_memory_and_time() {
    let mut r = Reassembler::with_limit(30_000_000_000, 64 * 1024);
    let chunk = [7u8; 1000];
    // Ten thousand datagrams that never complete: the oldest are given up.
    for id in 0..10_000 {
        assert!(r.push(1, &frag(id, 0, true, &chunk)).is_none());
        assert!(r.held() <= 64 * 1024 + 1128, "held {}", r.held());
    }
    assert!(r.stats.dropped >= 9_900);
    // A datagram whose last fragment comes after the timeout is not rebuilt.
    let mut r = Reassembler::new(30_000_000_000);
    assert!(r.push(0, &frag(1, 0, true, &chunk[..8])).is_none());
    assert!(
        r.push(31_000_000_001, &frag(1, 8, false, &chunk[..8]))
            .is_none()
    );
    assert_eq!(r.stats.dropped, 1);
    // In time, it is.
    assert!(
        r.push(31_000_000_002, &frag(2, 0, true, &chunk[..8]))
            .is_none()
    );
    let d = r
        .push(31_000_000_003, &frag(2, 8, false, b"12345678"))
        .unwrap();
    assert_eq!(&d.payload[8..], b"12345678");
    // Longer than any IP datagram: dropped.
    assert!(
        r.push(31_000_000_004, &frag(3, 65_000, false, &chunk))
            .is_none()
    );
}

#[test]
fn mutated_tunnel_frames_never_panic_the_decoder() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let seed: u64 = std::env::var("EPOLLSCOPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e11);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = epollscope::monitor::Monitor::new(Config {
        buffer_size: 64,
        midstream: true,
        skip_gaps: true,
        ..Config::default()
    });
    let convo = conversation("10.1.1.1:1".parse().unwrap(), "10.1.1.2:2".parse().unwrap());
    for (i, (_, lt, wrap)) in wrappers().into_iter().enumerate() {
        for sg in &convo {
            let good = wrap(&encode(linktype::RAW, sg));
            for k in 0..500u64 {
                let mut f = good.clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..f.len());
                    f[at] = rng.random();
                }
                if rng.random_range(0..3) == 0 {
                    f.truncate(rng.random_range(0..f.len()));
                }
                m.feed(1_000 + i as u64 * 1_000_000 + k, lt, &f);
                m.events().for_each(drop);
            }
        }
    }
    while m.finish() {
        m.events().for_each(drop);
    }
    eprintln!("seed {seed}: fed {} frames", m.stats().packets);
}

//! Benchmark input for the flow monitor: a pcap of bulk TCP flows (Ethernet, IPv4), each with
//! a handshake, MSS-sized data segments from the client interleaved across flows, a pure ACK
//! from the server every second segment, a short reply, and a FIN close.
//!
//! Usage: gen_pcap OUT.pcap [MEGABYTES=1024] [FLOWS=64]

use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use epollscope::monitor::packet::{ACK, FIN, PSH, SYN, Segment, encode, linktype};
use epollscope::monitor::pcap::Writer;

const MSS: usize = 1448;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: gen_pcap OUT.pcap [MEGABYTES] [FLOWS]");
        std::process::exit(2);
    };
    let mb: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let flows: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let per_flow = (mb << 20) / u64::from(flows);
    let payload: Vec<u8> = (0..MSS)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect();
    let mut w = Writer::new(
        BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?),
        linktype::ETHERNET,
    )?;
    let mut ts = 1_700_000_000_000_000_000u64;
    let addr = |host: u32, port: u16| {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + host)), port)
    };
    let mut emit = |w: &mut Writer<_>, seg: Segment| -> std::io::Result<()> {
        ts += 1000;
        let f = encode(linktype::ETHERNET, &seg);
        w.write(ts, &f, f.len() as u32)
    };
    let seg = |src, dst, seq, ack, flags, payload| Segment {
        src,
        dst,
        seq,
        ack,
        flags,
        window: 65535,
        payload,
    };
    let ends: Vec<(SocketAddr, SocketAddr, u32, u32)> = (0..flows)
        .map(|i| {
            (
                addr(1 + i, 40000 + i as u16),
                addr(100_000 + i, 80),
                i.wrapping_mul(0x9e37_79b9),
                7 + i,
            )
        })
        .collect();
    for &(c, s, cisn, sisn) in &ends {
        emit(&mut w, seg(c, s, cisn, 0, SYN, &[]))?;
        emit(
            &mut w,
            seg(s, c, sisn, cisn.wrapping_add(1), SYN | ACK, &[]),
        )?;
        emit(
            &mut w,
            seg(c, s, cisn.wrapping_add(1), sisn.wrapping_add(1), ACK, &[]),
        )?;
    }
    let segments = per_flow.div_ceil(MSS as u64);
    for k in 0..segments {
        for &(c, s, cisn, sisn) in &ends {
            let seq = cisn.wrapping_add(1).wrapping_add((k * MSS as u64) as u32);
            emit(
                &mut w,
                seg(c, s, seq, sisn.wrapping_add(1), ACK | PSH, &payload),
            )?;
            if k % 2 == 1 {
                let ack = seq.wrapping_add(MSS as u32);
                emit(&mut w, seg(s, c, sisn.wrapping_add(1), ack, ACK, &[]))?;
            }
        }
    }
    let sent = (segments * MSS as u64) as u32;
    for &(c, s, cisn, sisn) in &ends {
        let cend = cisn.wrapping_add(1).wrapping_add(sent);
        emit(
            &mut w,
            seg(s, c, sisn.wrapping_add(1), cend, ACK | PSH, b"200 OK\r\n"),
        )?;
        emit(
            &mut w,
            seg(c, s, cend, sisn.wrapping_add(9), FIN | ACK, &[]),
        )?;
        emit(
            &mut w,
            seg(
                s,
                c,
                sisn.wrapping_add(9),
                cend.wrapping_add(1),
                FIN | ACK,
                &[],
            ),
        )?;
        emit(
            &mut w,
            seg(c, s, cend.wrapping_add(1), sisn.wrapping_add(10), ACK, &[]),
        )?;
    }
    w.flush()
}

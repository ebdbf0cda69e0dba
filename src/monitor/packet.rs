//! Link-layer, IP and TCP headers: decoding captured frames into TCP segments, and encoding
//! segments into frames (for the pcap writer's tests and the benchmark generator).
//!
//! Decoding (in [`super::decode`]) never panics: anything that is not a TCP segment is reported
//! as a [`Skip`] reason.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// pcap link types (LINKTYPE_* values) the decoder understands.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// DLT_RAW as some BSDs number it.
    pub const RAW_12: u32 = 12;
    pub const RAW_14: u32 = 14;
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like NULL, with the family in network order.
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
    pub const PPP: u32 = 9;
    /// Cisco HDLC.
    pub const C_HDLC: u32 = 104;
    /// IP over InfiniBand.
    pub const IPOIB: u32 = 242;

    /// Every supported link type, for messages: (name, number).
    pub const ALL: [(&str, u32); 13] = [
        ("NULL", NULL),
        ("EN10MB", ETHERNET),
        ("PPP", PPP),
        ("RAW", RAW_12),
        ("RAW", RAW_14),
        ("RAW", RAW),
        ("C_HDLC", C_HDLC),
        ("LOOP", LOOP),
        ("LINUX_SLL", LINUX_SLL),
        ("IPV4", IPV4),
        ("IPV6", IPV6),
        ("IPOIB", IPOIB),
        ("LINUX_SLL2", LINUX_SLL2),
    ];

    /// "NULL 0, EN10MB 1, PPP 9, RAW 12/14/101, ...", for messages.
    pub fn list() -> String {
        let mut out: Vec<(&str, Vec<String>)> = vec![];
        for (name, n) in ALL {
            match out.last_mut() {
                Some((last, nums)) if *last == name => nums.push(n.to_string()),
                _ => out.push((name, vec![n.to_string()])),
            }
        }
        out.iter()
            .map(|(name, nums)| format!("{name} {}", nums.join("/")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn supported(lt: u32) -> bool {
        ALL.iter().any(|&(_, n)| n == lt)
    }

    pub fn name(lt: u32) -> &'static str {
        match lt {
            NULL => "NULL",
            ETHERNET => "EN10MB",
            RAW_12 | RAW_14 | RAW => "RAW",
            LOOP => "LOOP",
            LINUX_SLL => "LINUX_SLL",
            IPV4 => "IPV4",
            IPV6 => "IPV6",
            LINUX_SLL2 => "LINUX_SLL2",
            PPP => "PPP",
            C_HDLC => "C_HDLC",
            IPOIB => "IPOIB",
            _ => "unknown",
        }
    }
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A TCP segment, borrowed from the frame it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Why a frame yielded no segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    NotIp,
    NotTcp,
    /// An IP fragment: the engine reassembles it (see [`super::frag`]).
    Fragment,
    Malformed,
}

/// Decodes one captured frame of link type `lt` into its TCP segment (see [`super::decode`];
/// an IP fragment is [`Skip::Fragment`] here: the engine reassembles through
/// [`super::decode::layer`]).
pub fn decode(lt: u32, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    match super::decode::layer(lt, frame)? {
        super::decode::Layer::Tcp(seg) => Ok(seg),
        super::decode::Layer::Frag(_) => Err(Skip::Fragment),
    }
}

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Encodes `seg` as a frame of link type `lt` (any supported one but the RAW aliases and
/// IPV4/IPV6, which are RAW's bytes), with valid
/// IP and TCP checksums. Addresses must both be IPv4 or both IPv6.
pub fn encode(lt: u32, seg: &Segment) -> Vec<u8> {
    let mut ip = Vec::with_capacity(60 + seg.payload.len());
    let mut tcp = Vec::with_capacity(20 + seg.payload.len());
    tcp.extend_from_slice(&seg.src.port().to_be_bytes());
    tcp.extend_from_slice(&seg.dst.port().to_be_bytes());
    tcp.extend_from_slice(&seg.seq.to_be_bytes());
    tcp.extend_from_slice(&seg.ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, seg.flags]);
    tcp.extend_from_slice(&seg.window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(seg.payload);
    let tcp_len = tcp.len() as u32;
    let (ethertype, family) = match (seg.src.ip(), seg.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let pseudo = checksum_add(checksum_add(6 + tcp_len, &s.octets()), &d.octets());
            let sum = checksum_fold(checksum_add(pseudo, &tcp));
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            let total = (20 + tcp.len()) as u16;
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let hsum = checksum_fold(checksum_add(0, &ip));
            ip[10..12].copy_from_slice(&hsum.to_be_bytes());
            (0x0800u16, 2u32)
        }
        (s, d) => {
            let s = to_v6(s);
            let d = to_v6(d);
            let pseudo = checksum_add(checksum_add(6 + tcp_len, &s.octets()), &d.octets());
            let sum = checksum_fold(checksum_add(pseudo, &tcp));
            tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[6, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            (0x86ddu16, 10u32)
        }
    };
    ip.extend_from_slice(&tcp);
    let mut frame = Vec::with_capacity(ip.len() + 20);
    match lt {
        linktype::ETHERNET => {
            frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1]);
            frame.extend_from_slice(&ethertype.to_be_bytes());
        }
        linktype::NULL => frame.extend_from_slice(&family.to_le_bytes()),
        linktype::LOOP => frame.extend_from_slice(&family.to_be_bytes()),
        linktype::LINUX_SLL => {
            frame.extend_from_slice(&[0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 1, 0, 0]);
            frame.extend_from_slice(&ethertype.to_be_bytes());
        }
        linktype::LINUX_SLL2 => {
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 1, 0, 0]);
        }
        linktype::PPP => {
            let proto: u8 = if ethertype == 0x0800 { 0x21 } else { 0x57 };
            frame.extend_from_slice(&[0xff, 0x03, 0x00, proto]);
        }
        linktype::C_HDLC => {
            frame.extend_from_slice(&[0x0f, 0x00]);
            frame.extend_from_slice(&ethertype.to_be_bytes());
        }
        linktype::IPOIB => {
            // Source (zero, as Linux writes it) and destination hardware addresses.
            frame.extend_from_slice(&[0; 20]);
            frame.extend_from_slice(&[0x80, 0, 0x05, 0x50, 0xfe, 0x80]);
            frame.extend_from_slice(&[0; 14]);
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
        }
        _ => {}
    }
    frame.extend_from_slice(&ip);
    frame
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_link_type() {
        for lt in [
            linktype::ETHERNET,
            linktype::RAW,
            linktype::NULL,
            linktype::LOOP,
            linktype::LINUX_SLL,
            linktype::LINUX_SLL2,
            linktype::PPP,
            linktype::C_HDLC,
            linktype::IPOIB,
        ] {
            for (s, d) in [
                ("10.0.0.1:1234", "10.0.0.2:80"),
                ("[::1]:1234", "[2001:db8::2]:80"),
            ] {
                let seg = Segment {
                    src: s.parse().unwrap(),
                    dst: d.parse().unwrap(),
                    seq: 0xfffffff0,
                    ack: 7,
                    flags: ACK | PSH,
                    window: 512,
                    payload: b"hello",
                };
                let frame = encode(lt, &seg);
                assert_eq!(decode(lt, &frame), Ok(seg.clone()), "link type {lt}");
            }
        }
    }

    #[test]
    fn skips_non_tcp_and_fragments() {
        let seg = Segment {
            src: "10.0.0.1:1".parse().unwrap(),
            dst: "10.0.0.2:2".parse().unwrap(),
            seq: 1,
            ack: 0,
            flags: SYN,
            window: 0,
            payload: b"",
        };
        let mut f = encode(linktype::RAW, &seg);
        f[6] = 0x20; // more fragments
        assert_eq!(decode(linktype::RAW, &f), Err(Skip::Fragment));
        f[6] = 0x40;
        f[9] = 17;
        assert_eq!(decode(linktype::RAW, &f), Err(Skip::NotTcp));
        assert_eq!(decode(linktype::RAW, &f[..10]), Err(Skip::Malformed));
        assert_eq!(decode(linktype::ETHERNET, &[0; 13]), Err(Skip::Malformed));
    }
}

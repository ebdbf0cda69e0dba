//! Decoding captured frames down to the TCP segment: link types, tunnels (PPPoE, MPLS, GRE
//! with ERSPAN and WCCP, VXLAN, Geneve, IP in IP, GTP-U), IPv4 and IPv6 (with their fragments handed to the
//! reassembler), then TCP.
//!
//! Every field is read through bounds-checked slices, tunnels nest at most [`MAX_NESTING`]
//! deep, and anything that is not TCP is a [`Skip`] reason: a frame never panics the decoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::packet::{Segment, Skip, linktype};

/// Tunnels inside tunnels: deeper than this is treated as malformed (a crafted frame cannot
/// recurse without bound).
pub const MAX_NESTING: u8 = 8;

/// One IP fragment, for the reassembler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frag<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// The transport protocol of the datagram (IPv4 protocol, IPv6 next header after the
    /// fragment header).
    pub proto: u8,
    /// Byte offset of this fragment's payload in the datagram's payload.
    pub offset: u32,
    pub more: bool,
    pub payload: &'a [u8],
    /// The tunnel depth the fragment was found at (a reassembled datagram continues there).
    pub depth: u8,
}

/// What a frame holds: a TCP segment, or an IP fragment to reassemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer<'a> {
    Tcp(Segment<'a>),
    Frag(Frag<'a>),
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}
fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}
fn from(d: &[u8], at: usize) -> Result<&[u8], Skip> {
    d.get(at..).ok_or(Skip::Malformed)
}

/// Decodes one captured frame of link type `lt`.
pub fn layer(lt: u32, frame: &[u8]) -> Result<Layer<'_>, Skip> {
    let m = Skip::Malformed;
    match lt {
        linktype::ETHERNET => ethernet(frame, 0),
        linktype::LINUX_SLL => by_ethertype(be16(frame, 14).ok_or(m)?, from(frame, 16)?, 0),
        linktype::LINUX_SLL2 => by_ethertype(be16(frame, 0).ok_or(m)?, from(frame, 20)?, 0),
        // The family word's byte order depends on the capturing host; the IP version nibble
        // does not.
        linktype::NULL | linktype::LOOP => ip(from(frame, 4)?, 0),
        linktype::PPP => ppp(frame, 0),
        // Cisco HDLC: address, control, then an Ethernet type.
        linktype::C_HDLC => by_ethertype(be16(frame, 2).ok_or(m)?, from(frame, 4)?, 0),
        // IP over InfiniBand as Linux captures it: two 20-byte hardware addresses, then RFC
        // 4391's header (an Ethernet type and two reserved bytes), 44 bytes in all, as
        // tcpdump's print-ipoib.c reads it (a real capture, tcpdump's ipoib.pcap, has this).
        linktype::IPOIB => by_ethertype(be16(frame, 40).ok_or(m)?, from(frame, 44)?, 0),
        _ => ip(frame, 0),
    }
}

fn deeper(depth: u8) -> Result<u8, Skip> {
    if depth >= MAX_NESTING {
        Err(Skip::Malformed)
    } else {
        Ok(depth + 1)
    }
}

fn ethernet(frame: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let mut ethertype = be16(frame, 12).ok_or(Skip::Malformed)?;
    let mut at = 14;
    // 802.1Q and QinQ tags.
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        ethertype = be16(frame, at + 2).ok_or(Skip::Malformed)?;
        at += 4;
    }
    by_ethertype(ethertype, from(frame, at)?, depth)
}

fn by_ethertype(ethertype: u16, d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    match ethertype {
        0x0800 => ipv4(d, depth),
        0x86dd => ipv6(d, depth),
        // PPPoE session stage: version/type, code, session id, length, then PPP's protocol.
        0x8864 => {
            let len = usize::from(be16(d, 4).ok_or(Skip::Malformed)?);
            let body = d.get(6..6 + len).unwrap_or(from(d, 6)?);
            ppp_proto(body, deeper(depth)?)
        }
        // Transparent Ethernet bridging (GRE, Geneve).
        0x6558 => ethernet(d, deeper(depth)?),
        // MPLS, unicast and multicast.
        0x8847 | 0x8848 => mpls(d, deeper(depth)?),
        _ => Err(Skip::NotIp),
    }
}

/// Label stacks deeper than this are malformed (real ones hold a few labels).
const MAX_LABELS: usize = 16;

/// An MPLS label stack (4 bytes a label, the last with the bottom-of-stack bit), then what it
/// carries. Nothing in MPLS names the payload: as tshark does, an IP version nibble means IP,
/// a zero nibble a pseudowire control word before an Ethernet frame.
fn mpls(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let mut at = 0;
    for _ in 0..MAX_LABELS {
        let bottom = d.get(at + 2).ok_or(Skip::Malformed)? & 1 != 0;
        at += 4;
        if bottom {
            let body = from(d, at)?;
            return match body.first().map(|b| b >> 4) {
                Some(4 | 6) => ip(body, depth),
                Some(0) => ethernet(from(body, 4)?, deeper(depth)?),
                _ => Err(Skip::NotIp),
            };
        }
    }
    Err(Skip::Malformed)
}

/// PPP with or without the HDLC address and control bytes (0xff 0x03). Routers' PPP captures
/// may hold Cisco HDLC frames instead (address 0x0f unicast or 0x8f broadcast, then an
/// Ethernet type), which tshark and tcpdump read as such.
fn ppp(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    match d {
        [0xff, 0x03, rest @ ..] => ppp_proto(rest, depth),
        [0x0f | 0x8f, 0x00, ..] => {
            by_ethertype(be16(d, 2).ok_or(Skip::Malformed)?, from(d, 4)?, depth)
        }
        _ => ppp_proto(d, depth),
    }
}

/// A PPP protocol field (one byte when compressed: odd first byte) and its payload.
fn ppp_proto(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let first = *d.first().ok_or(Skip::Malformed)?;
    let (proto, body) = if first & 1 == 1 {
        (u16::from(first), from(d, 1)?)
    } else {
        (be16(d, 0).ok_or(Skip::Malformed)?, from(d, 2)?)
    };
    match proto {
        0x21 => ipv4(body, depth),
        0x57 => ipv6(body, depth),
        0x281 | 0x283 => mpls(body, deeper(depth)?),
        _ => Err(Skip::NotIp),
    }
}

/// An IP packet of either version, by its version nibble.
pub fn ip(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    match d.first().map(|b| b >> 4) {
        Some(4) => ipv4(d, depth),
        Some(6) => ipv6(d, depth),
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::Malformed),
    }
}

/// IPv4 options as Linux checks them (`ip_options_compile`): a packet whose options do not
/// parse is dropped by the receiver, so its bytes never reached the stream.
fn options_ok(opts: &[u8]) -> bool {
    let mut at = 0;
    while at < opts.len() {
        let kind = opts[at];
        match kind {
            0 => return true,
            1 => at += 1,
            _ => {
                let Some(&len) = opts.get(at + 1) else {
                    return false;
                };
                let len = usize::from(len);
                if len < 2 || at + len > opts.len() {
                    return false;
                }
                let ptr = opts.get(at + 2).copied().map_or(0, usize::from);
                let ok = match kind {
                    // Record route, loose and strict source route.
                    7 | 131 | 137 => len >= 3 && ptr >= 4,
                    // Timestamp.
                    68 => len >= 4 && ptr >= 5,
                    _ => true,
                };
                if !ok {
                    return false;
                }
                at += len;
            }
        }
    }
    true
}

fn ipv4(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let ihl = usize::from(d.first().ok_or(Skip::Malformed)? & 0x0f) * 4;
    let total = usize::from(be16(d, 2).ok_or(Skip::Malformed)?);
    // Total length 0: a TSO/GRO/BIG TCP packet captured on the sending host; the captured
    // bytes are the packet (as tshark reads it).
    let total = if total == 0 { d.len() } else { total };
    if ihl < 20 || total < ihl || d.len() < ihl {
        return Err(Skip::Malformed);
    }
    if !options_ok(&d[20..ihl]) {
        return Err(Skip::Malformed);
    }
    let src = IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19]));
    // Ethernet pads short frames: the IP total length, not the frame, bounds the payload.
    let body = &d[ihl..total.min(d.len())];
    let frag = be16(d, 6).ok_or(Skip::Malformed)?;
    if frag & 0x3fff != 0 {
        return Ok(Layer::Frag(Frag {
            src,
            dst,
            id: u32::from(be16(d, 4).ok_or(Skip::Malformed)?),
            proto: d[9],
            offset: u32::from(frag & 0x1fff) * 8,
            more: frag & 0x2000 != 0,
            payload: body,
            depth,
        }));
    }
    transport(d[9], src, dst, body, depth)
}

fn ipv6(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    if d.len() < 40 {
        return Err(Skip::Malformed);
    }
    let plen = usize::from(be16(d, 4).ok_or(Skip::Malformed)?);
    let src: [u8; 16] = d[8..24].try_into().map_err(|_| Skip::Malformed)?;
    let dst: [u8; 16] = d[24..40].try_into().map_err(|_| Skip::Malformed)?;
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    );
    let end = if plen == 0 {
        d.len()
    } else {
        (40 + plen).min(d.len())
    };
    let mut next = d[6];
    let mut at = 40;
    loop {
        match next {
            0 | 43 | 60 => {
                next = *d.get(at).ok_or(Skip::Malformed)?;
                at += (usize::from(*d.get(at + 1).ok_or(Skip::Malformed)?) + 1) * 8;
            }
            51 => {
                next = *d.get(at).ok_or(Skip::Malformed)?;
                at += (usize::from(*d.get(at + 1).ok_or(Skip::Malformed)?) + 2) * 4;
            }
            44 => {
                let off_m = be16(d, at + 2).ok_or(Skip::Malformed)?;
                let proto = *d.get(at).ok_or(Skip::Malformed)?;
                if off_m & 0xfff9 == 0 {
                    // An atomic fragment (offset 0, no more fragments, RFC 6946): the whole
                    // packet, to be processed as if the header were absent.
                    next = proto;
                    at += 8;
                } else {
                    return Ok(Layer::Frag(Frag {
                        src,
                        dst,
                        id: be32(d, at + 4).ok_or(Skip::Malformed)?,
                        proto,
                        offset: u32::from(off_m & 0xfff8),
                        more: off_m & 1 != 0,
                        payload: d.get(at + 8..end).ok_or(Skip::Malformed)?,
                        depth,
                    }));
                }
            }
            _ => break,
        }
        if at > end {
            return Err(Skip::Malformed);
        }
    }
    let body = d.get(at..end).ok_or(Skip::Malformed)?;
    transport(next, src, dst, body, depth)
}

/// The payload of an IP packet (or a reassembled datagram) carrying protocol `proto`.
pub fn transport(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    body: &[u8],
    depth: u8,
) -> Result<Layer<'_>, Skip> {
    match proto {
        6 => tcp(src, dst, body).map(Layer::Tcp),
        4 => ipv4(body, deeper(depth)?),
        41 => ipv6(body, deeper(depth)?),
        47 => gre(body, deeper(depth)?),
        17 => udp(body, deeper(depth)?),
        _ => Err(Skip::NotTcp),
    }
}

fn gre(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let flags = be16(d, 0).ok_or(Skip::Malformed)?;
    let proto = be16(d, 2).ok_or(Skip::Malformed)?;
    let version = flags & 7;
    if flags & 0x4000 != 0 || version > 1 {
        // Source routing (obsolete) or an unknown version.
        return Err(Skip::NotTcp);
    }
    let mut at = 4;
    for bit in [0x8000, 0x2000, 0x1000] {
        if flags & bit != 0 {
            at += 4;
        }
    }
    if version == 1 && flags & 0x0080 != 0 {
        // Enhanced GRE (PPTP): acknowledgment number.
        at += 4;
    }
    let body = from(d, at)?;
    match proto {
        // ERSPAN type II (type I has no sequence number and no header).
        0x88be if flags & 0x1000 != 0 => ethernet(from(body, 8)?, depth),
        0x88be => ethernet(body, depth),
        // ERSPAN type III, with its optional 8-byte platform subheader (O bit).
        0x22eb => {
            let o = body.get(11).ok_or(Skip::Malformed)? & 1 != 0;
            ethernet(from(body, if o { 20 } else { 12 })?, depth)
        }
        0x880b => ppp(body, depth),
        // WCCP redirection: WCCPv2 puts a 4-byte redirect header before the IP packet,
        // WCCPv1 none (told apart by the IP version nibble, as tshark does).
        0x883e => match body.first().map(|b| b >> 4) {
            Some(4) => ip(body, depth),
            _ => ip(from(body, 4)?, depth),
        },
        et => by_ethertype(et, body, depth),
    }
}

const VXLAN: u16 = 4789;
const GENEVE: u16 = 6081;
const GTP_U: u16 = 2152;

fn udp(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let sport = be16(d, 0).ok_or(Skip::Malformed)?;
    let dport = be16(d, 2).ok_or(Skip::Malformed)?;
    let len = usize::from(be16(d, 4).ok_or(Skip::Malformed)?);
    // Length 0 is UDP over a jumbogram; otherwise it bounds the payload.
    let end = if len >= 8 { len.min(d.len()) } else { d.len() };
    let body = d.get(8..end).ok_or(Skip::Malformed)?;
    let port = [dport, sport]
        .into_iter()
        .find(|p| matches!(*p, VXLAN | GENEVE | GTP_U))
        .ok_or(Skip::NotTcp)?;
    match port {
        VXLAN => ethernet(from(body, 8)?, depth),
        GENEVE => {
            let opts = usize::from(body.first().ok_or(Skip::Malformed)? & 0x3f) * 4;
            let proto = be16(body, 2).ok_or(Skip::Malformed)?;
            by_ethertype(proto, from(body, 8 + opts)?, depth)
        }
        _ => gtp_u(body, depth),
    }
}

/// GTP-U (3GPP TS 29.281): only G-PDUs (message type 255) carry user IP packets.
fn gtp_u(d: &[u8], depth: u8) -> Result<Layer<'_>, Skip> {
    let flags = *d.first().ok_or(Skip::Malformed)?;
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(Skip::NotTcp);
    }
    if *d.get(1).ok_or(Skip::Malformed)? != 0xff {
        return Err(Skip::NotTcp);
    }
    let mut at = 8;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number and the first extension header's type.
        let mut next = *d.get(11).ok_or(Skip::Malformed)?;
        at = 12;
        while next != 0 {
            let units = usize::from(*d.get(at).ok_or(Skip::Malformed)?);
            if units == 0 {
                return Err(Skip::Malformed);
            }
            at += units * 4;
            next = *d.get(at - 1).ok_or(Skip::Malformed)?;
        }
    }
    ip(from(d, at)?, depth)
}

pub fn tcp(src: IpAddr, dst: IpAddr, d: &[u8]) -> Result<Segment<'_>, Skip> {
    let off = usize::from(*d.get(12).ok_or(Skip::Malformed)? >> 4) * 4;
    if off < 20 || off > d.len() {
        return Err(Skip::Malformed);
    }
    Ok(Segment {
        src: SocketAddr::new(src, be16(d, 0).ok_or(Skip::Malformed)?),
        dst: SocketAddr::new(dst, be16(d, 2).ok_or(Skip::Malformed)?),
        seq: be32(d, 4).ok_or(Skip::Malformed)?,
        ack: be32(d, 8).ok_or(Skip::Malformed)?,
        flags: d[13],
        window: be16(d, 14).ok_or(Skip::Malformed)?,
        payload: &d[off..],
    })
}

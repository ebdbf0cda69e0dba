//! pcap and pcapng files: a streaming reader (both formats, either byte order, micro- or
//! nanosecond pcap, pcapng's per-interface link types and timestamp resolutions) and writers.
//!
//! The reader is zero-copy (a packet borrows the read buffer until the next call) because the
//! monitor's throughput goal is above 1 GB/s, and it never panics: a truncated or corrupt file
//! is a [`PcapError`] naming what broke and at which byte.

use std::io::{self, Read, Write};

use thiserror::Error;

use super::packet::linktype;

#[derive(Debug, Error)]
pub enum PcapError {
    #[error("empty file (not a pcap or pcapng capture)")]
    Empty,
    #[error("not a pcap or pcapng file: it starts with {}", show_head(.0))]
    NotPcap(Vec<u8>),
    #[error("truncated {what} at byte {offset} (the file ends inside it)")]
    Truncated { what: &'static str, offset: u64 },
    #[error("corrupt {what} at byte {offset}: {why}")]
    Corrupt {
        what: &'static str,
        offset: u64,
        why: String,
    },
    #[error("unsupported link type {lt} (supported: {})", linktype::list(), lt = .0)]
    LinkType(u32),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The first bytes of a file that is not a capture, as text and hex: `"GET " (47 45 54 20)`.
fn show_head(head: &[u8]) -> String {
    let text: String = head
        .iter()
        .map(|&b| match b {
            b'"' => "\\\"".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            b'\n' => "\\n".into(),
            b'\r' => "\\r".into(),
            b'\t' => "\\t".into(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{text}\" ({})", hex.join(" "))
}

/// One captured packet, borrowed from the reader.
#[derive(Debug)]
pub struct Packet<'a> {
    pub ts_ns: u64,
    pub linktype: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units: u128,
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    Ng {
        big: bool,
        ifaces: Vec<Iface>,
    },
}

/// Larger than any sane record, so a corrupt length cannot make us allocate gigabytes.
const MAX_RECORD: usize = 64 << 20;

pub struct Reader<R> {
    src: R,
    buf: Storage,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    pos: u64,
    format: Format,
}

/// Where the reader's bytes are: its own buffer, refilled from the source, or the whole file
/// mapped in memory (no copy at all).
#[derive(Debug)]
enum Storage {
    Owned(Vec<u8>),
    Mapped(std::sync::Arc<crate::sys::packet::Mapped>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

impl Reader<io::Empty> {
    /// A reader over a mapped file: packets borrow the mapping, nothing is copied (shared, so
    /// that a writer may keep ranges of it, see [`crate::monitor::flowdir`]).
    pub fn mapped(
        map: std::sync::Arc<crate::sys::packet::Mapped>,
    ) -> Result<Reader<io::Empty>, PcapError> {
        let end = map.len();
        Reader::init(Reader {
            src: io::empty(),
            buf: Storage::Mapped(map),
            start: 0,
            end,
            eof: true,
            pos: 0,
            format: Format::Ng {
                big: false,
                ifaces: vec![],
            },
        })
    }
}

fn u16_at(d: &[u8], at: usize, big: bool) -> u16 {
    let b = [d[at], d[at + 1]];
    if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}
fn u32_at(d: &[u8], at: usize, big: bool) -> u32 {
    let b = [d[at], d[at + 1], d[at + 2], d[at + 3]];
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

impl<R: Read> Reader<R> {
    /// Reads the file header; fails on anything that is not a supported capture.
    pub fn new(src: R) -> Result<Reader<R>, PcapError> {
        Reader::with_capacity(src, 4 << 20)
    }

    /// As [`Reader::new`], with a read buffer of `capacity` bytes (it grows for larger records).
    pub fn with_capacity(src: R, capacity: usize) -> Result<Reader<R>, PcapError> {
        Reader::init(Reader {
            src,
            buf: Storage::Owned(vec![0; capacity.max(64)]),
            start: 0,
            end: 0,
            eof: false,
            pos: 0,
            format: Format::Ng {
                big: false,
                ifaces: vec![],
            },
        })
    }

    /// The mapped file the packets borrow, if the reader maps one.
    pub fn mapping(&self) -> Option<std::sync::Arc<crate::sys::packet::Mapped>> {
        match &self.buf {
            Storage::Mapped(m) => Some(m.clone()),
            Storage::Owned(_) => None,
        }
    }

    /// File offset of the next record: after an error, where the readable part ends.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    /// Reads the file header.
    fn init(mut r: Reader<R>) -> Result<Reader<R>, PcapError> {
        if !r.fill(4)? {
            return if r.avail() == 0 {
                Err(PcapError::Empty)
            } else {
                Err(PcapError::NotPcap(r.head().to_vec()))
            };
        }
        let magic: [u8; 4] = [r.buf[0], r.buf[1], r.buf[2], r.buf[3]];
        let (big, nanos) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x0a, 0x0d, 0x0d, 0x0a] => return Ok(r),
            _ => {
                let head = r.head();
                return Err(PcapError::NotPcap(head[..head.len().min(16)].to_vec()));
            }
        };
        if !r.fill(24)? {
            return Err(r.truncated("pcap file header"));
        }
        let h = r.head();
        let major = u16_at(h, 4, big);
        // The top bits of the link-type word carry FCS information.
        let lt = u32_at(h, 20, big) & 0x0fff_ffff;
        if major != 2 {
            return Err(r.corrupt("pcap file header", format!("version {major} (want 2)")));
        }
        if !linktype::supported(lt) {
            return Err(PcapError::LinkType(lt));
        }
        r.consume(24);
        r.format = Format::Pcap {
            big,
            nanos,
            linktype: lt,
        };
        Ok(r)
    }

    fn avail(&self) -> usize {
        self.end - self.start
    }
    fn head(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }
    fn truncated(&self, what: &'static str) -> PcapError {
        PcapError::Truncated {
            what,
            offset: self.pos,
        }
    }
    fn corrupt(&self, what: &'static str, why: String) -> PcapError {
        PcapError::Corrupt {
            what,
            offset: self.pos,
            why,
        }
    }

    /// Makes `n` bytes available at `start`; false if the file ends first.
    fn fill(&mut self, n: usize) -> Result<bool, PcapError> {
        if self.avail() >= n {
            return Ok(true);
        }
        let Storage::Owned(buf) = &mut self.buf else {
            // A mapped file is all there already.
            return Ok(false);
        };
        if self.start + n > buf.len() {
            buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n && !self.eof {
            if self.end == buf.len() {
                // Grow by doubling, only as far as the file really goes: a corrupt length must
                // not cost a large allocation before the short read reveals it.
                let len = (buf.len() * 2).min(self.start + n);
                buf.resize(len, 0);
            }
            match self.src.read(&mut buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.avail() >= n)
    }

    /// The next packet, or None at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        match self.format {
            Format::Pcap {
                big,
                nanos,
                linktype,
            } => self.next_pcap(big, nanos, linktype),
            Format::Ng { .. } => self.next_ng(),
        }
    }

    fn next_pcap(
        &mut self,
        big: bool,
        nanos: bool,
        lt: u32,
    ) -> Result<Option<Packet<'_>>, PcapError> {
        if !self.fill(16)? {
            return if self.avail() == 0 {
                Ok(None)
            } else {
                Err(self.truncated("packet header"))
            };
        }
        let h = self.head();
        let sec = u64::from(u32_at(h, 0, big));
        let frac = u64::from(u32_at(h, 4, big));
        let caplen = u32_at(h, 8, big) as usize;
        let orig_len = u32_at(h, 12, big);
        if caplen > MAX_RECORD {
            return Err(self.corrupt("packet header", format!("captured length {caplen}")));
        }
        if !self.fill(16 + caplen)? {
            return Err(self.truncated("packet data"));
        }
        let at = self.start + 16;
        self.consume(16 + caplen);
        // The next record's header is needed next: its memory loads while this one is used.
        crate::sys::packet::prefetch(&self.buf, self.start);
        let frac_ns = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        Ok(Some(Packet {
            ts_ns: sec.saturating_mul(1_000_000_000).saturating_add(frac_ns),
            linktype: lt,
            orig_len,
            data: &self.buf[at..at + caplen],
        }))
    }

    fn next_ng(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        loop {
            if !self.fill(12)? {
                return if self.avail() == 0 {
                    Ok(None)
                } else {
                    Err(self.truncated("pcapng block header"))
                };
            }
            let Format::Ng { big, .. } = self.format else {
                return Ok(None);
            };
            let h = self.head();
            let mut big = big;
            let btype = u32_at(h, 0, big);
            if btype == 0x0a0d_0d0a {
                big = match [h[8], h[9], h[10], h[11]] {
                    [0x1a, 0x2b, 0x3c, 0x4d] => true,
                    [0x4d, 0x3c, 0x2b, 0x1a] => false,
                    m => {
                        return Err(self.corrupt(
                            "pcapng section header",
                            format!("byte-order magic {m:02x?}"),
                        ));
                    }
                };
            }
            let blen = u32_at(h, 4, big) as usize;
            if blen < 12 || !blen.is_multiple_of(4) || blen > MAX_RECORD {
                return Err(self.corrupt("pcapng block", format!("block length {blen}")));
            }
            if !self.fill(blen)? {
                return Err(self.truncated("pcapng block"));
            }
            let b = &self.buf[self.start..self.start + blen];
            if u32_at(b, blen - 4, big) as usize != blen {
                return Err(self.corrupt("pcapng block", "trailing length differs".into()));
            }
            match btype {
                0x0a0d_0d0a => {
                    if blen < 28 {
                        return Err(self.corrupt("pcapng section header", "too short".into()));
                    }
                    self.format = Format::Ng {
                        big,
                        ifaces: vec![],
                    };
                }
                1 => {
                    let iface = self.interface(big, blen)?;
                    if let Format::Ng { ifaces, .. } = &mut self.format {
                        ifaces.push(iface);
                    }
                }
                2 | 3 | 6 => {
                    let (id, ts, caplen, orig, at) = match btype {
                        3 => {
                            let orig = u32_at(b, 8, big);
                            (0, 0u64, (orig as usize).min(blen - 16), orig, 12)
                        }
                        _ => {
                            let id = if btype == 2 {
                                u32::from(u16_at(b, 8, big))
                            } else {
                                u32_at(b, 8, big)
                            };
                            if blen < 32 {
                                return Err(self.corrupt("pcapng packet block", "too short".into()));
                            }
                            let ts = (u64::from(u32_at(b, 12, big)) << 32)
                                | u64::from(u32_at(b, 16, big));
                            (id, ts, u32_at(b, 20, big) as usize, u32_at(b, 24, big), 28)
                        }
                    };
                    if at + caplen > blen - 4 {
                        return Err(self.corrupt(
                            "pcapng packet block",
                            format!("captured length {caplen} exceeds the block"),
                        ));
                    }
                    let Format::Ng { ifaces, .. } = &self.format else {
                        return Ok(None);
                    };
                    let Some(iface) = ifaces.get(id as usize).copied() else {
                        return Err(self.corrupt(
                            "pcapng packet block",
                            format!("interface {id} was not described"),
                        ));
                    };
                    let ts_ns = (u128::from(ts) * 1_000_000_000 / iface.units) as i128
                        + i128::from(iface.offset_s) * 1_000_000_000;
                    let start = self.start + at;
                    self.consume(blen);
                    return Ok(Some(Packet {
                        ts_ns: ts_ns.clamp(0, i128::from(u64::MAX)) as u64,
                        linktype: iface.linktype,
                        orig_len: orig,
                        data: &self.buf[start..start + caplen],
                    }));
                }
                _ => {}
            }
            self.consume(blen);
        }
    }

    fn interface(&self, big: bool, blen: usize) -> Result<Iface, PcapError> {
        if blen < 20 {
            return Err(self.corrupt("pcapng interface block", "too short".into()));
        }
        let b = &self.buf[self.start..self.start + blen];
        let lt = u32::from(u16_at(b, 8, big));
        if !linktype::supported(lt) {
            return Err(PcapError::LinkType(lt));
        }
        let mut iface = Iface {
            linktype: lt,
            units: 1_000_000,
            offset_s: 0,
        };
        let mut at = 16;
        while at + 4 <= blen - 4 {
            let code = u16_at(b, at, big);
            let len = usize::from(u16_at(b, at + 2, big));
            let val = at + 4;
            if code == 0 || val + len > blen - 4 {
                break;
            }
            match (code, len) {
                (9, 1) => {
                    let r = b[val];
                    let exp = u32::from(r & 0x7f);
                    let units = if r & 0x80 == 0 {
                        10u128.checked_pow(exp)
                    } else {
                        2u128.checked_pow(exp)
                    };
                    iface.units =
                        units
                            .filter(|&u| u > 0 && u <= 1u128 << 64)
                            .ok_or_else(|| {
                                self.corrupt(
                                    "pcapng interface block",
                                    format!("timestamp resolution {r:#x}"),
                                )
                            })?;
                }
                (14, 8) => {
                    let hi = u64::from(u32_at(b, val, big));
                    let lo = u64::from(u32_at(b, val + 4, big));
                    iface.offset_s = if big {
                        (hi << 32 | lo) as i64
                    } else {
                        (lo << 32 | hi) as i64
                    };
                }
                _ => {}
            }
            at = val + len.div_ceil(4) * 4;
        }
        Ok(iface)
    }
}

/// Writes classic pcap (microsecond timestamps, this host's byte order), which every tool reads.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, linktype: u32) -> io::Result<Writer<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        h.extend_from_slice(&2u16.to_ne_bytes());
        h.extend_from_slice(&4u16.to_ne_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&262_144u32.to_ne_bytes());
        h.extend_from_slice(&linktype.to_ne_bytes());
        out.write_all(&h)?;
        Ok(Writer { out })
    }

    pub fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1000) as u32).to_ne_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&orig_len.max(data.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Writes pcapng (one section; interfaces added on demand; nanosecond timestamps).
pub struct NgWriter<W: Write> {
    out: W,
    ifaces: Vec<u32>,
}

impl<W: Write> NgWriter<W> {
    pub fn new(mut out: W) -> io::Result<NgWriter<W>> {
        let mut b = vec![];
        b.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        out.write_all(&b)?;
        Ok(NgWriter {
            out,
            ifaces: vec![],
        })
    }

    fn iface(&mut self, lt: u32) -> io::Result<u32> {
        if let Some(i) = self.ifaces.iter().position(|&l| l == lt) {
            return Ok(i as u32);
        }
        let mut b = vec![];
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        b.extend_from_slice(&(lt as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&262_144u32.to_le_bytes());
        // if_tsresol = 9 (nanoseconds), then opt_endofopt.
        b.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&32u32.to_le_bytes());
        self.out.write_all(&b)?;
        self.ifaces.push(lt);
        Ok(self.ifaces.len() as u32 - 1)
    }

    pub fn write(&mut self, ts_ns: u64, linktype: u32, data: &[u8]) -> io::Result<()> {
        let id = self.iface(linktype)?;
        let padded = data.len().div_ceil(4) * 4;
        let blen = (32 + padded) as u32;
        let mut b = Vec::with_capacity(blen as usize);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&blen.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b.resize(28 + padded, 0);
        b.extend_from_slice(&blen.to_le_bytes());
        self.out.write_all(&b)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

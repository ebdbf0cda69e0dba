//! How `epollscope monitor` shows things: a side's bytes with the holes marked (text, hex,
//! JSON), one-line event and flow descriptions, and tcpflow-style file names.

use std::net::SocketAddr;

use super::FlowInfo;
use super::event::{Event, EventKind};

/// Bytes of one side as shown, with the holes skipped over (`--gaps skip`) at their positions.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    pub data: Vec<u8>,
    /// (position in `data`, bytes missing there).
    pub gaps: Vec<(usize, u64)>,
}

impl Shown {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.gaps.is_empty()
    }

    pub fn extend(&mut self, other: &Shown) {
        let base = self.data.len();
        self.gaps
            .extend(other.gaps.iter().map(|&(at, n)| (base + at, n)));
        self.data.extend_from_slice(&other.data);
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.gaps.clear();
    }

    /// The pieces between holes, each followed by the hole after it (if any).
    fn pieces(&self) -> Vec<(&[u8], Option<u64>)> {
        let mut out = vec![];
        let mut from = 0;
        for &(at, n) in &self.gaps {
            out.push((&self.data[from..at], Some(n)));
            from = at;
        }
        out.push((&self.data[from..], None));
        out
    }

    /// Escaped text or a hex dump, a hole as its own line: `[N bytes missing]` (tshark's
    /// words); a hex dump's offsets count the bytes shown.
    pub fn render(&self, hex: bool) -> String {
        let mut s = String::new();
        let mut at = 0;
        for (piece, gap) in self.pieces() {
            let text = if hex {
                hexdump_at(piece, at)
            } else {
                escape(piece)
            };
            at += piece.len();
            s.push_str(&text);
            if let Some(n) = gap {
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push('\n');
                }
                s.push_str(&format!("[{n} bytes missing]\n"));
            }
        }
        s
    }
}

/// Printable ASCII as is, newlines kept (after a visible `\n`), the rest escaped.
pub fn escape(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\n' => s.push_str("\\n\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

pub fn hexdump(data: &[u8]) -> String {
    hexdump_at(data, 0)
}

fn hexdump_at(data: &[u8], start: usize) -> String {
    let mut s = String::new();
    for (i, row) in data.chunks(16).enumerate() {
        let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = row
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        s.push_str(&format!(
            "{:08x}  {:<47}  |{text}|\n",
            start + i * 16,
            hex.join(" ")
        ));
    }
    s
}

pub fn flow_line(i: &FlowInfo) -> String {
    let end = match i.ended {
        Some(r) => format!(
            "ended ({})",
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
        None => "open".into(),
    };
    let mut marks = String::new();
    if i.midstream {
        marks.push_str("  midstream (no SYN seen)");
    }
    if let Some(n) = i.resumes {
        marks.push_str(&format!("  resumes flow {n}"));
    }
    format!(
        "flow {}: {} -> {}  cli {} svr {}  {end}  bytes cli {} svr {}{marks}",
        i.id.n, i.client, i.server, i.cli_state, i.svr_state, i.bytes[0], i.bytes[1]
    )
}

pub fn describe(ev: &Event, ts: &str) -> String {
    let who = match (ev.flow, ev.side) {
        (Some(f), Some(s)) => format!("flow {} {}", f.n, s.name()),
        (Some(f), None) => format!("flow {}", f.n),
        _ => "-".into(),
    };
    let user = if ev.mask == ev.kind.base_mask() {
        String::new()
    } else {
        format!(" (user event {:#x})", ev.mask.0)
    };
    let detail = match &ev.kind {
        EventKind::PktIn { len } => format!(" {len} bytes"),
        EventKind::NewData { bytes } | EventKind::NewDataInFrame { bytes, .. } => {
            format!(" {bytes} bytes")
        }
        EventKind::Overflow { needed, capacity } => {
            format!(" buffer overflow: {needed} bytes needed, {capacity} held")
        }
        EventKind::StateChange { from, to } => format!(" {from} -> {to}"),
        EventKind::Orphan { src, dst } => format!(" {src} -> {dst}"),
        EventKind::Rexmit { offset, len } => format!(" offset {offset} len {len}"),
        EventKind::ConnEnd { reason } => format!(" {reason:?}").to_lowercase(),
        EventKind::ConnStart { midstream: true } => " midstream (no SYN seen)".into(),
        EventKind::Gap {
            offset,
            len,
            skipped,
        } => format!(
            " {len} bytes missing at offset {offset} ({})",
            if *skipped { "skipped" } else { "waiting" }
        ),
        EventKind::RstIgnored { seq, expected } => {
            format!(" seq {seq} (expected {expected}): not accepted (RFC 5961)")
        }
        EventKind::ConnStart { midstream: false } | EventKind::Timeout => String::new(),
    };
    format!("{ts} {who} {}{detail}{user}", ev.kind.name())
}

/// One end as tcpflow names it: IPv4 octets and the port zero-padded (`010.000.000.001.40000`).
pub fn endpoint_name(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            format!(
                "{:03}.{:03}.{:03}.{:03}.{:05}",
                o[0],
                o[1],
                o[2],
                o[3],
                v4.port()
            )
        }
        SocketAddr::V6(v6) => format!("{}.{:05}", v6.ip(), v6.port()),
    }
}

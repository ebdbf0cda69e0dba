//! `epollscope monitor`: reassemble the TCP flows of a capture file or of live traffic and show
//! flows, events in time order, and each side's bytes (or only count them, `--stats`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::Serialize;

use super::event::{Event, EventKind, EventMask};
use super::live::{Capture, LiveError};
use super::pcap::{Reader, Writer};
use super::{Config, Filter, FlowInfo, Monitor, OverlapPolicy, Side};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SideArg {
    Cli,
    Svr,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OverlapArg {
    First,
    Last,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["pcap", "live"])))]
pub struct MonitorArgs {
    /// Read a pcap or pcapng file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Capture live on an interface (needs root or CAP_NET_RAW); stops on SIGINT/SIGTERM.
    #[arg(long, value_name = "IFACE")]
    pub live: Option<String>,
    /// Only flows matching a BPF-like expression: tcp, [src|dst] host|net|port|portrange, and, or, not.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Which side's bytes and events to show: cli (what the client received), svr, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub side: SideArg,
    /// One JSON object (with --follow: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Show bytes as a hex dump instead of escaped text.
    #[arg(long)]
    pub hex: bool,
    /// Print events and bytes as they arrive instead of at the end.
    #[arg(long)]
    pub follow: bool,
    /// Also write the captured packets to FILE (pcap).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Stop after N packets.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop a live capture after SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Only reassemble and count: one summary line (for benchmarks).
    #[arg(long, alias = "quiet")]
    pub stats: bool,
    /// Receive buffer per side, bytes (0 disables buffering).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    pub buffer: usize,
    /// Overlap policy for retransmitted bytes.
    #[arg(long, value_enum, default_value = "first")]
    pub overlap: OverlapArg,
    /// Idle timeout per flow, seconds of capture time.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub idle_timeout: f64,
}

#[derive(Default, Serialize)]
struct FlowOut {
    #[serde(flatten)]
    info: Option<FlowInfo>,
    #[serde(skip)]
    data: [Vec<u8>; 2],
}

struct Run {
    args: MonitorArgs,
    m: Monitor,
    flows: BTreeMap<u64, FlowOut>,
    events: Vec<Event>,
    pending: Vec<Event>,
    scratch: Vec<u8>,
    first_ts: Option<u64>,
    counted: [u64; 2],
    writer: Option<(Writer<BufWriter<File>>, u32)>,
    out: BufWriter<std::io::StdoutLock<'static>>,
    packets: u64,
}

pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .filter
        .as_deref()
        .map(Filter::parse)
        .transpose()
        .map_err(|e| anyhow!("--filter: {e}"))?;
    if args.idle_timeout.is_nan() || args.idle_timeout < 0.0 {
        bail!("--idle-timeout must be a number of seconds");
    }
    let queue = if args.stats {
        EventMask::CONN_NEW_DATA
    } else {
        EventMask::DEFAULT
    };
    let mut m = Monitor::new(Config {
        buffer_size: args.buffer,
        overlap: match args.overlap {
            OverlapArg::First => OverlapPolicy::First,
            OverlapArg::Last => OverlapPolicy::Last,
        },
        idle_timeout_ns: (args.idle_timeout * 1e9) as u64,
        queue,
    });
    if let Some(f) = filter {
        m.set_filter(f);
    }
    let writer = None;
    let mut run = Run {
        m,
        flows: BTreeMap::new(),
        events: vec![],
        pending: vec![],
        scratch: vec![0; 1 << 16],
        first_ts: None,
        counted: [0; 2],
        writer,
        out: BufWriter::new(std::io::stdout().lock()),
        packets: 0,
        args,
    };
    let started = Instant::now();
    if let Some(path) = run.args.pcap.clone() {
        let name = path.display().to_string();
        let file = File::open(&path).with_context(|| name.clone())?;
        let mut reader = Reader::new(file).with_context(|| name.clone())?;
        while run.args.count.is_none_or(|c| run.packets < c) {
            let Some(p) = reader.next_packet().with_context(|| name.clone())? else {
                break;
            };
            let (ts, lt, orig, data) = (p.ts_ns, p.linktype, p.orig_len, p.data);
            run.packet(ts, lt, orig, data)?;
        }
    } else if let Some(iface) = run.args.live.clone() {
        run.live(&iface)?;
    }
    run.m.finish();
    run.drain()?;
    run.finish(started.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

impl Run {
    fn live(&mut self, iface: &str) -> anyhow::Result<()> {
        let mut cap = Capture::open(iface).map_err(|e| match e {
            LiveError::Io(io) => anyhow!("{iface}: {io}"),
            e => anyhow!("{iface}: {e}"),
        })?;
        // Tells a caller (a test, a script) that packets from now on are seen.
        eprintln!("epollscope: capturing on {iface}");
        // Signals become readable events, so a capture stops between packets, cleanly.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().context("blocking SIGINT/SIGTERM")?;
        let sig = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("signalfd")?;
        let deadline = self
            .args
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        loop {
            if self.args.count.is_some_and(|c| self.packets >= c) {
                break;
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    left.min(Duration::from_millis(500))
                }
                None => Duration::from_millis(500),
            };
            let ms = u16::try_from(wait.as_millis()).unwrap_or(500).max(1);
            let mut fds = [
                PollFd::new(cap.as_fd_ref(), PollFlags::POLLIN),
                PollFd::new(std::os::fd::AsFd::as_fd(&sig), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(anyhow!("{iface}: poll: {e}")),
            }
            if fds[1].any().unwrap_or(false) {
                break;
            }
            while self.args.count.is_none_or(|c| self.packets < c) {
                let Some(p) = cap.try_next().map_err(|e| anyhow!("{iface}: {e}"))? else {
                    break;
                };
                let (ts, lt, orig) = (p.ts_ns, p.linktype, p.orig_len);
                let data = p.data.to_vec();
                self.packet(ts, lt, orig, &data)?;
            }
        }
        Ok(())
    }

    fn packet(&mut self, ts: u64, lt: u32, orig: u32, data: &[u8]) -> anyhow::Result<()> {
        self.packets += 1;
        self.first_ts.get_or_insert(ts);
        if let Some(path) = &self.args.write {
            if self.writer.is_none() {
                let f = File::create(path).with_context(|| path.display().to_string())?;
                let w = Writer::new(BufWriter::new(f), lt)
                    .with_context(|| path.display().to_string())?;
                self.writer = Some((w, lt));
            }
            if let Some((w, wlt)) = &mut self.writer
                && *wlt == lt
            {
                w.write(ts, data, orig)
                    .with_context(|| path.display().to_string())?;
            }
        }
        self.m.feed(ts, lt, data);
        self.drain()
    }

    fn shows(&self, side: Option<Side>) -> bool {
        match (self.args.side, side) {
            (SideArg::Both, _) | (_, None) => true,
            (SideArg::Cli, Some(s)) => s == Side::Cli,
            (SideArg::Svr, Some(s)) => s == Side::Svr,
        }
    }

    /// Handles the events of the last packet: read new bytes, record or print.
    fn drain(&mut self) -> anyhow::Result<()> {
        // Reuse one vector: this runs once per packet.
        let mut evs = std::mem::take(&mut self.pending);
        evs.extend(self.m.events());
        for ev in evs.drain(..) {
            let mut chunk = vec![];
            if let (Some(id), Some(side)) = (ev.flow, ev.side)
                && let Ok(mut sock) = self.m.socket(id)
            {
                if matches!(ev.kind, EventKind::NewData { .. }) {
                    loop {
                        match sock.peek(side, &mut self.scratch) {
                            Ok(n) => {
                                self.counted[side.index()] += n as u64;
                                if !self.args.stats {
                                    chunk.extend_from_slice(&self.scratch[..n]);
                                }
                            }
                            Err(super::MonError::Overwritten { .. }) => continue,
                            Err(_) => break,
                        }
                    }
                }
                if !self.args.stats {
                    let rec = self.flows.entry(id.n).or_default();
                    rec.info = Some(sock.info());
                    if !self.args.follow {
                        rec.data[side.index()].extend_from_slice(&chunk);
                    }
                }
            }
            if self.args.stats || !self.shows(ev.side) {
                continue;
            }
            if self.args.follow {
                self.print_event(&ev, &chunk)?;
            } else if !matches!(ev.kind, EventKind::PktIn { .. }) {
                self.events.push(ev);
            }
        }
        self.pending = evs;
        Ok(())
    }

    fn rel(&self, ts: u64) -> String {
        let d = ts.saturating_sub(self.first_ts.unwrap_or(ts));
        format!("{}.{:06}", d / 1_000_000_000, d % 1_000_000_000 / 1000)
    }

    fn print_event(&mut self, ev: &Event, chunk: &[u8]) -> anyhow::Result<()> {
        if self.args.json {
            let mut v = serde_json::to_value(ev)?;
            if !chunk.is_empty() {
                v["data"] = serde_json::Value::String(self.render(chunk));
            }
            writeln!(self.out, "{v}")?;
        } else {
            let line = describe(ev, &self.rel(ev.ts_ns));
            writeln!(self.out, "{line}")?;
            if !chunk.is_empty() {
                let text = self.render(chunk);
                for l in text.lines() {
                    writeln!(self.out, "    {l}")?;
                }
            }
        }
        self.out.flush()?;
        Ok(())
    }

    fn render(&self, data: &[u8]) -> String {
        if self.args.hex {
            hexdump(data)
        } else {
            escape(data)
        }
    }

    fn finish(&mut self, took: Duration) -> anyhow::Result<()> {
        if let Some((w, _)) = &mut self.writer {
            w.flush().context("writing the capture")?;
        }
        for info in self.m.flows() {
            let n = info.id.n;
            self.flows.entry(n).or_default().info = Some(info);
        }
        let stats = self.m.stats().clone();
        if self.args.stats {
            let bytes = self.counted[0] + self.counted[1];
            let secs = took.as_secs_f64().max(1e-9);
            if self.args.json {
                let doc = serde_json::json!({"stats": stats, "bytes": {"cli": self.counted[0], "svr": self.counted[1]}, "seconds": secs});
                writeln!(self.out, "{doc}")?;
            } else {
                writeln!(
                    self.out,
                    "packets {} tcp {} flows {} orphans {} bytes {} (cli {} svr {}) in {:.3} s: {:.1} MB/s reassembled",
                    stats.packets,
                    stats.tcp_segments,
                    stats.flows,
                    stats.orphans,
                    bytes,
                    self.counted[0],
                    self.counted[1],
                    secs,
                    bytes as f64 / secs / 1e6
                )?;
            }
            self.out.flush()?;
            return Ok(());
        }
        let sides: Vec<Side> = Side::BOTH
            .into_iter()
            .filter(|&s| self.shows(Some(s)))
            .collect();
        if self.args.json && !self.args.follow {
            let flows: Vec<serde_json::Value> = self
                .flows
                .values()
                .filter_map(|f| {
                    let mut v = serde_json::to_value(f.info.as_ref()?).ok()?;
                    for &s in &sides {
                        v[format!("{}_data", s.name())] =
                            serde_json::Value::String(self.render(&f.data[s.index()]));
                    }
                    Some(v)
                })
                .collect();
            let doc = serde_json::json!({"flows": flows, "events": self.events, "stats": stats});
            writeln!(self.out, "{}", serde_json::to_string_pretty(&doc)?)?;
            self.out.flush()?;
            return Ok(());
        }
        if self.args.json {
            return Ok(());
        }
        writeln!(self.out, "flows: {}", self.flows.len())?;
        for f in self.flows.values() {
            if let Some(i) = &f.info {
                writeln!(self.out, "  {}", flow_line(i))?;
            }
        }
        if !self.args.follow {
            writeln!(self.out, "events:")?;
            for ev in &self.events {
                writeln!(self.out, "  {}", describe(ev, &self.rel(ev.ts_ns)))?;
            }
            for (n, f) in &self.flows {
                for &s in &sides {
                    let data = &f.data[s.index()];
                    let dir = match s {
                        Side::Cli => "server -> client",
                        Side::Svr => "client -> server",
                    };
                    writeln!(
                        self.out,
                        "flow {n} {} ({dir}, {} bytes):",
                        s.name(),
                        data.len()
                    )?;
                    let text = self.render(data);
                    for l in text.lines() {
                        writeln!(self.out, "    {l}")?;
                    }
                }
            }
        }
        writeln!(
            self.out,
            "packets {} (tcp {}, not tcp {}, malformed {}, filtered {}, orphans {})",
            stats.packets,
            stats.tcp_segments,
            stats.not_tcp,
            stats.malformed,
            stats.filtered,
            stats.orphans
        )?;
        self.out.flush()?;
        Ok(())
    }
}

fn flow_line(i: &FlowInfo) -> String {
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
    format!(
        "flow {}: {} -> {}  cli {} svr {}  {end}  bytes cli {} svr {}",
        i.id.n, i.client, i.server, i.cli_state, i.svr_state, i.bytes[0], i.bytes[1]
    )
}

fn describe(ev: &Event, ts: &str) -> String {
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
        EventKind::NewData { bytes } => format!(" {bytes} bytes"),
        EventKind::Overflow { needed, capacity } => {
            format!(" buffer overflow: {needed} bytes needed, {capacity} held")
        }
        EventKind::StateChange { from, to } => format!(" {from} -> {to}"),
        EventKind::Orphan { src, dst } => format!(" {src} -> {dst}"),
        EventKind::Rexmit { offset, len } => format!(" offset {offset} len {len}"),
        EventKind::ConnEnd { reason } => format!(" {reason:?}").to_lowercase(),
        EventKind::ConnStart | EventKind::Timeout => String::new(),
    };
    format!("{ts} {who} {}{detail}{user}", ev.kind.name())
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
            i * 16,
            hex.join(" ")
        ));
    }
    s
}

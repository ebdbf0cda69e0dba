//! `epollscope monitor`: reassemble the TCP flows of a capture file or of live traffic and show
//! flows, events in time order, and each side's bytes (or only count them, `--stats`, or write
//! one file per direction, `--flows DIR`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use serde::Serialize;

use epollscope::monitor::engine::DEFAULT_MAX_FLOWS;
use epollscope::monitor::event::{Event, EventKind, EventMask};
use epollscope::monitor::flowdir::{FileId, FlowDir};
use epollscope::monitor::live::{Capture, LiveError};
use epollscope::monitor::output::{Shown, describe};
use epollscope::monitor::pcap::{PcapError, Reader, Writer};
use epollscope::monitor::{Config, Filter, FlowInfo, MonError, Monitor, OverlapPolicy, Side};

mod input;
mod report;

use input::{Input, Stop, Stopped};
use report::gaps_json;

/// Exit status when a capture file is damaged after its header (truncated, corrupt): every
/// packet before the damage was read and shown; stderr says at which byte it ends.
pub const EXIT_DAMAGED: u8 = 3;

/// The longest `--duration`/`--idle-timeout` accepted: a year of seconds. Anything longer (or
/// `inf`, `nan`, negative) is a mistake, refused in one line.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// The most bytes one peek hands over (as the 64 KiB read buffer it replaced did).
const PEEK_MAX: usize = 1 << 16;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GapsArg {
    /// Wait for missing bytes, as mOS does (what follows a hole is not delivered).
    Wait,
    /// Deliver what follows a hole the receiver acknowledged (after 200 ms of capture time
    /// for its bytes to arrive late) or still open at the end, marked "[N bytes missing]".
    Skip,
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
    /// Also write the captured packets to FILE (pcap); with --filter, only the TCP packets it
    /// matches (as `tcpdump -w` with a filter).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Stop after N packets.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop a live capture after SECONDS (at most a year).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Only reassemble and count: one summary line (for benchmarks).
    #[arg(long, alias = "quiet")]
    pub stats: bool,
    /// Write each direction's bytes to its own file in DIR, named as tcpflow names them
    /// (SRCIP.SRCPORT-DSTIP.DSTPORT); print only the flows and the counters.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["stats", "follow", "json"])]
    pub flows: Option<PathBuf>,
    /// Receive buffer per side, bytes (0 disables buffering).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    pub buffer: usize,
    /// Overlap policy for retransmitted bytes.
    #[arg(long, value_enum, default_value = "first")]
    pub overlap: OverlapArg,
    /// Idle timeout per flow, seconds of capture time (a flow that resumes later is picked up
    /// again where it stopped).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Flows held at most; beyond, the least recently active one is ended (CONN_END evicted).
    /// The default holds about 256 MB of flow state.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,
    /// Bytes missing from the capture: wait for them (mOS) or skip them, marked.
    #[arg(long, value_enum, default_value = "wait")]
    pub gaps: GapsArg,
    /// Also monitor flows whose SYN is not in the capture, from their first data (marked
    /// "midstream" everywhere). By default they are not monitored, as in mOS. A segment after
    /// its connection ended by FIN or RST is not such a flow: it stays an orphan ("after end").
    #[arg(long)]
    pub midstream: bool,
}

/// The help text's exit-status paragraph (the binary shows it under `monitor --help`).
pub const EXIT_HELP: &str = "Exit status: 0 when the input was read, 2 on bad input \
(unreadable or not a capture, unknown link type, bad option, no permission to capture), 3 when \
a capture file is damaged after its header (truncated or corrupt): every packet before the \
damage was read and shown, and stderr says at which byte the file stops being readable; \
130 or 143 when SIGINT or SIGTERM stopped the reading of a capture file (between two packets: \
what came before was shown or written).";

#[derive(Default, Serialize)]
struct FlowOut {
    #[serde(flatten)]
    info: Option<FlowInfo>,
    #[serde(skip)]
    data: [Shown; 2],
}

struct Run {
    args: MonitorArgs,
    duration: Option<Duration>,
    m: Monitor,
    flows: BTreeMap<u64, FlowOut>,
    events: Vec<Event>,
    pending: Vec<Event>,
    chunk: Shown,
    first_ts: Option<u64>,
    counted: [u64; 2],
    writer: Option<(Writer<BufWriter<File>>, u32)>,
    /// `--filter` for `--write` (the monitor holds its own copy).
    write_filter: Option<Filter>,
    dir: Option<FlowDir>,
    out: BufWriter<std::io::StdoutLock<'static>>,
    packets: u64,
}

/// A number of seconds from the command line, checked: finite, not negative, at most a year.
fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(0.0..=MAX_SECONDS).contains(&v) {
        bail!("{flag}: {v:?} is not a number of seconds from 0 to {MAX_SECONDS} (a year)");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Why reading a capture file ended before the file did.
enum Cut {
    /// Truncated or corrupt: what came before was read.
    Damaged(PcapError),
    /// SIGINT or SIGTERM.
    Stopped(Signal),
}

/// The exit status of a run stopped by `signal`, as a shell reports a process it killed.
fn stopped_status(signal: Signal) -> ExitCode {
    ExitCode::from(u8::try_from(128 + signal as i32).unwrap_or(u8::MAX))
}

pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let filter = args
        .filter
        .as_deref()
        .map(Filter::parse)
        .transpose()
        .map_err(|e| anyhow!("--filter: {e}"))?;
    let idle = seconds("--idle-timeout", args.idle_timeout)?;
    let duration = args
        .duration
        .map(|d| seconds("--duration", d))
        .transpose()?;
    if args.max_flows == 0 {
        bail!("--max-flows: must be at least 1");
    }
    let queue = if args.stats {
        EventMask::CONN_NEW_DATA | EventMask::GAP
    } else {
        EventMask::DEFAULT
    };
    let mut m = Monitor::new(Config {
        buffer_size: args.buffer,
        overlap: match args.overlap {
            OverlapArg::First => OverlapPolicy::First,
            OverlapArg::Last => OverlapPolicy::Last,
        },
        idle_timeout_ns: u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX),
        queue,
        max_flows: args.max_flows,
        midstream: args.midstream,
        skip_gaps: args.gaps == GapsArg::Skip,
        // Every byte is taken (counted, written or kept) at each CONN_NEW_DATA.
        in_frame: true,
    });
    let write_filter = filter.clone().filter(|_| args.write.is_some());
    if let Some(f) = filter {
        m.set_filter(f);
    }
    // Bad input is refused before DIR is made.
    let (input, stop, input_file) = match args.pcap.as_deref().map(input::open).transpose() {
        Ok(Some(o)) => (Some(o.input), Some(o.stop), o.file),
        Ok(None) => (None, None, None),
        Err(e) => {
            // Stopped while waiting for the file's header (a quiet pipe): nothing was done.
            let signal = e
                .chain()
                .find_map(|c| c.downcast_ref::<PcapError>().and_then(Stopped::of));
            if let Some(signal) = signal {
                eprintln!("epollscope: stopped by {signal} before the capture's header came");
                return Ok(stopped_status(signal));
            }
            return Err(e);
        }
    };
    // Writing the capture being read would truncate it under the reader.
    if let (Some(w), Some(id)) = (&args.write, input_file)
        && std::fs::metadata(w).is_ok_and(|m| FileId::of(&m) == id)
    {
        bail!(
            "--write {}: is the capture being read (--pcap): not overwritten",
            w.display()
        );
    }
    let dir = match args.flows.as_deref() {
        Some(d) => {
            // Bytes that lie in the mapped capture are written from it. (Only the reader and
            // the files hold the mapping: it is gone once both are done.)
            let capture = match &input {
                Some(Input::Mapped(r)) => r.mapping(),
                _ => None,
            };
            let mut dir = FlowDir::create(d, capture).map_err(|e| anyhow!("--flows {e}"))?;
            if let Some(id) = input_file {
                dir.spare(id);
            }
            Some(dir)
        }
        None => None,
    };
    let mut run = Run {
        m,
        duration,
        flows: BTreeMap::new(),
        events: vec![],
        pending: vec![],
        chunk: Shown::default(),
        first_ts: None,
        counted: [0; 2],
        writer: None,
        write_filter,
        dir,
        out: BufWriter::new(std::io::stdout().lock()),
        packets: 0,
        args,
    };
    let started = Instant::now();
    let mut cut = None;
    let stop = match (input, stop) {
        (Some(Input::Mapped(r)), Some(mut stop)) => {
            cut = run.read_file(r, &mut stop)?;
            Some(stop)
        }
        (Some(Input::Read(r)), Some(mut stop)) => {
            cut = run.read_file(r, &mut stop)?;
            Some(stop)
        }
        _ => match run.args.live.clone() {
            Some(iface) => Some(run.live(&iface)?),
            None => None,
        },
    };
    // Each call settles overflows and skips one more hole per flow (`--gaps skip`).
    while run.m.finish() {
        run.drain(&[])?;
    }
    run.drain(&[])?;
    run.finish(started.elapsed(), stop)?;
    let name = run
        .args
        .pcap
        .as_deref()
        .unwrap_or(std::path::Path::new("-"));
    match cut {
        Some(Cut::Damaged(e)) => {
            eprintln!(
                "epollscope: {}: capture damaged: {e}; the {} packets before it were read (exit {EXIT_DAMAGED})",
                name.display(),
                run.packets
            );
            Ok(ExitCode::from(EXIT_DAMAGED))
        }
        Some(Cut::Stopped(signal)) => {
            eprintln!(
                "epollscope: {}: stopped by {signal}; the {} packets before it were read and their bytes shown or written",
                name.display(),
                run.packets
            );
            Ok(stopped_status(signal))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

impl Run {
    /// Reads packets until the end, `--count`, damage or a stop signal (returned, after what
    /// came before).
    fn read_file<R: std::io::Read>(
        &mut self,
        mut reader: Reader<R>,
        stop: &mut Stop,
    ) -> anyhow::Result<Option<Cut>> {
        while self.args.count.is_none_or(|c| self.packets < c) {
            if let Some(signal) = stop.requested() {
                return Ok(Some(Cut::Stopped(signal)));
            }
            match reader.next_packet() {
                Ok(Some(p)) => {
                    let (ts, lt, orig, data) = (p.ts_ns, p.linktype, p.orig_len, p.data);
                    self.packet(ts, lt, orig, data)?;
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(signal) = Stopped::of(&e) {
                        return Ok(Some(Cut::Stopped(signal)));
                    }
                    if let PcapError::Io(e) = e {
                        let name = self.args.pcap.as_deref().map(|p| p.display().to_string());
                        return Err(anyhow!("{}: {e}", name.unwrap_or_default()));
                    }
                    return Ok(Some(Cut::Damaged(e)));
                }
            }
        }
        Ok(None)
    }

    /// Captures until `--count`, `--duration` or a stop signal; returns where the signals are
    /// held (released once the outputs are complete).
    fn live(&mut self, iface: &str) -> anyhow::Result<Stop> {
        let mut cap = Capture::open(iface).map_err(|e| match e {
            LiveError::Io(io) => anyhow!("{iface}: {io}"),
            e => anyhow!("{iface}: {e}"),
        })?;
        // Tells a caller (a test, a script) that packets from now on are seen.
        eprintln!("epollscope: capturing on {iface}");
        // Signals become readable events, so a capture stops between packets, cleanly.
        let sig = Stop::new()?;
        let deadline = self.duration.map(|d| Instant::now() + d);
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
            // The signal that ends a live capture is taken: it has done its work.
            if fds[1].any().unwrap_or(false) && sig.take().is_some() {
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
        Ok(sig)
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
            let wanted = match &self.write_filter {
                None => true,
                Some(f) => {
                    epollscope::monitor::packet::decode(lt, data).is_ok_and(|seg| f.matches(&seg))
                }
            };
            if let Some((w, wlt)) = &mut self.writer
                && *wlt == lt
                && wanted
            {
                w.write(ts, data, orig)
                    .with_context(|| path.display().to_string())?;
            }
        }
        self.m.feed(ts, lt, data);
        self.drain(data)
    }

    fn shows(&self, side: Option<Side>) -> bool {
        match (self.args.side, side) {
            (SideArg::Both, _) | (_, None) => true,
            (SideArg::Cli, Some(s)) => s == Side::Cli,
            (SideArg::Svr, Some(s)) => s == Side::Svr,
        }
    }

    /// Handles the events of the last packet (`frame`: the frame just fed, where bytes
    /// announced in place lie): read new bytes, record, write or print.
    fn drain(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        // Reuse one vector: this runs once per packet.
        let mut evs = std::mem::take(&mut self.pending);
        evs.extend(self.m.events());
        let keep_bytes = !self.args.stats;
        for mut ev in evs.drain(..) {
            self.chunk.clear();
            if let (Some(id), Some(side)) = (ev.flow, ev.side)
                && let Ok(mut sock) = self.m.socket(id)
            {
                let data_event = matches!(
                    ev.kind,
                    EventKind::NewData { .. }
                        | EventKind::NewDataInFrame { .. }
                        | EventKind::Gap { .. }
                );
                if keep_bytes {
                    // A flow's record is refreshed by its other events (and for the flows
                    // still open, at the end): data events, one per packet, leave it be,
                    // but for bytes after its end (holes skipped at the end of the input).
                    let rec = self.flows.entry(id.n).or_default();
                    let ended = rec.info.as_ref().is_none_or(|i| i.ended.is_some());
                    if !data_event || ended {
                        rec.info = Some(sock.info());
                    }
                }
                let info = match keep_bytes {
                    true => self.flows.get(&id.n).and_then(|r| r.info.as_ref()),
                    false => None,
                };
                if let EventKind::NewDataInFrame { bytes, at } = ev.kind {
                    // Bytes not copied into the flow's buffer: taken from the frame.
                    let data = usize::try_from(bytes)
                        .ok()
                        .and_then(|n| frame.get(at..at.checked_add(n)?))
                        .ok_or_else(|| {
                            anyhow!(
                                "internal: bytes {at}+{bytes} outside a frame of {}",
                                frame.len()
                            )
                        })?;
                    self.counted[side.index()] += bytes;
                    match (&mut self.dir, info) {
                        (Some(dir), Some(info)) => dir.write(info, side, data)?,
                        _ if keep_bytes => self.chunk.data.extend_from_slice(data),
                        _ => {}
                    }
                    // Shown as the CONN_NEW_DATA it is: where the bytes were is no news.
                    ev.kind = EventKind::NewData { bytes };
                } else if matches!(ev.kind, EventKind::NewData { .. } | EventKind::Gap { .. }) {
                    loop {
                        // The bytes where they lie in the flow's buffer: counted, written to
                        // the direction's file or kept for printing, never copied to read.
                        let mut written = Ok(());
                        let (dir, chunk) = (&mut self.dir, &mut self.chunk);
                        let peeked =
                            sock.peek_in_place(side, PEEK_MAX, |bytes| match (&mut *dir, info) {
                                (Some(dir), Some(info)) if written.is_ok() => {
                                    written = dir.write(info, side, bytes);
                                }
                                _ if keep_bytes => chunk.data.extend_from_slice(bytes),
                                _ => {}
                            });
                        written?;
                        match peeked {
                            Ok(n) => self.counted[side.index()] += n as u64,
                            Err(MonError::Hole { len, .. }) => {
                                self.chunk.gaps.push((self.chunk.data.len(), len));
                            }
                            Err(MonError::Overwritten { .. }) => continue,
                            Err(_) => break,
                        }
                    }
                }
                if keep_bytes {
                    if let Some(dir) = &mut self.dir
                        && matches!(ev.kind, EventKind::ConnEnd { .. })
                    {
                        dir.close(id.n, side)?;
                    }
                    if !self.args.follow
                        && self.dir.is_none()
                        && let Some(rec) = self.flows.get_mut(&id.n)
                    {
                        rec.data[side.index()].extend(&self.chunk);
                    }
                }
            }
            if self.args.stats || self.dir.is_some() || !self.shows(ev.side) {
                continue;
            }
            if self.args.follow {
                let chunk = std::mem::take(&mut self.chunk);
                self.print_event(&ev, &chunk)?;
                self.chunk = chunk;
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

    fn print_event(&mut self, ev: &Event, chunk: &Shown) -> anyhow::Result<()> {
        if self.args.json {
            let mut v = serde_json::to_value(ev)?;
            if !chunk.is_empty() {
                v["data"] = serde_json::Value::String(self.render(chunk));
                if !chunk.gaps.is_empty() {
                    v["gaps"] = gaps_json(chunk);
                }
            }
            if let Some(info) = ev.flow.and_then(|id| self.flows.get(&id.n)?.info.as_ref())
                && info.midstream
            {
                v["midstream"] = serde_json::Value::Bool(true);
            }
            writeln!(self.out, "{v}")?;
        } else {
            let mut line = describe(ev, &self.rel(ev.ts_ns));
            if let Some(info) = ev.flow.and_then(|id| self.flows.get(&id.n)?.info.as_ref())
                && info.midstream
                && !matches!(ev.kind, EventKind::ConnStart { .. })
            {
                line.push_str(" [midstream]");
            }
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

    fn render(&self, data: &Shown) -> String {
        data.render(self.args.hex)
    }
}

//! Recording a scenario's wire traffic: a loopback capture runs for the length of the run, the
//! packets of the scenario's own ports are kept (parallel runs share `lo`), optionally written
//! as a pcap, and the flow monitor summarises each connection: states, bytes each way, SYNs,
//! retransmissions, resets. This is how a backlog overflow shows its dropped handshakes.
//!
//! The summary stays out of the symbolic trace: packet timing (a SYN retransmitted after a
//! second) is not part of what a scenario pins down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::monitor::live::{Capture, LiveError};
use crate::monitor::packet::{self, RST, SYN};
use crate::monitor::{Config, EventKind, Monitor, TcpState, pcap};

/// What the capture of one run saw.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureReport {
    /// Where the packets were written, if asked.
    pub pcap: Option<PathBuf>,
    pub packets: usize,
    pub flows: Vec<FlowSummary>,
    /// Why nothing was captured, or a problem writing the file.
    pub note: Option<String>,
}

/// One TCP connection as seen on the wire.
#[derive(Clone, Debug, Serialize)]
pub struct FlowSummary {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub client_state: TcpState,
    pub server_state: TcpState,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// SYNs the client sent: more than one means the first went unanswered (a full backlog).
    pub syns: u64,
    pub retransmissions: u64,
    pub resets: u64,
}

impl CaptureReport {
    pub fn not_captured(why: &str) -> CaptureReport {
        CaptureReport {
            pcap: None,
            packets: 0,
            flows: vec![],
            note: Some(why.to_string()),
        }
    }

    /// Indented lines for the human report.
    pub fn render(&self) -> String {
        let mut out = match (&self.note, &self.pcap) {
            (Some(note), _) if self.packets == 0 => return format!("  capture: {note}"),
            (_, Some(path)) => format!(
                "  capture: {} packets, {} flows, written to {}",
                self.packets,
                self.flows.len(),
                path.display()
            ),
            _ => format!(
                "  capture: {} packets, {} flows",
                self.packets,
                self.flows.len()
            ),
        };
        for f in &self.flows {
            out.push_str(&format!(
                "\n    {} -> {}  client {} server {}  bytes sent {}/{}  syn {} rexmit {} rst {}",
                f.client,
                f.server,
                f.client_state,
                f.server_state,
                f.bytes_to_server,
                f.bytes_to_client,
                f.syns,
                f.retransmissions,
                f.resets
            ));
            if f.client_state == TcpState::SynSent {
                out.push_str("  (its SYN got no answer: dropped, e.g. by a full accept queue)");
            }
        }
        if let (Some(note), true) = (&self.note, self.packets > 0) {
            out.push_str(&format!("\n    note: {note}"));
        }
        out
    }
}

struct Frame {
    ts_ns: u64,
    linktype: u32,
    data: Vec<u8>,
}

/// A capture on `lo` running in a thread until [`Recorder::finish`].
pub struct Recorder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Frame>>,
}

impl Recorder {
    /// Starts capturing on loopback. Fails (with the reason to report) without CAP_NET_RAW.
    pub fn start() -> Result<Recorder, String> {
        let mut capture = Capture::open("lo").map_err(|e| match e {
            LiveError::Permission(_) => {
                "not captured: live capture needs root or CAP_NET_RAW".to_string()
            }
            other => format!("not captured: {other}"),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut frames = vec![];
            loop {
                // Read everything queued; then either stop (the run is over, and loopback
                // delivers before the sending call returns) or wait for more.
                while let Ok(Some(p)) = capture.try_next() {
                    frames.push(Frame {
                        ts_ns: p.ts_ns,
                        linktype: p.linktype,
                        data: p.data.to_vec(),
                    });
                }
                if flag.load(Ordering::Acquire) {
                    return frames;
                }
                let mut pfd = [nix::poll::PollFd::new(
                    capture.as_fd_ref(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut pfd, 20u16);
            }
        });
        Ok(Recorder { stop, thread })
    }

    /// Stops the capture and summarises the packets to or from `ports`, writing them to
    /// `pcap_path` if given.
    pub fn finish(self, ports: &[u16], pcap_path: Option<&Path>) -> CaptureReport {
        self.stop.store(true, Ordering::Release);
        let frames = self.thread.join().unwrap_or_default();
        let ours: Vec<&Frame> = frames
            .iter()
            .filter(|f| {
                packet::decode(f.linktype, &f.data)
                    .is_ok_and(|s| ports.contains(&s.src.port()) || ports.contains(&s.dst.port()))
            })
            .collect();
        let mut report = summarise(&ours);
        if let Some(path) = pcap_path {
            match write_pcap(path, &ours) {
                Ok(()) => report.pcap = Some(path.to_path_buf()),
                Err(e) => report.note = Some(format!("writing {}: {e}", path.display())),
            }
        }
        report
    }
}

fn write_pcap(path: &Path, frames: &[&Frame]) -> std::io::Result<()> {
    let linktype = frames
        .first()
        .map_or(packet::linktype::ETHERNET, |f| f.linktype);
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = pcap::Writer::new(file, linktype)?;
    for f in frames.iter().filter(|f| f.linktype == linktype) {
        writer.write(f.ts_ns, &f.data, f.data.len() as u32)?;
    }
    writer.flush()
}

fn summarise(frames: &[&Frame]) -> CaptureReport {
    let mut monitor = Monitor::new(Config::default());
    // Per connection (client, server): SYNs from the client and RSTs either way.
    let mut syns: HashMap<(SocketAddr, SocketAddr), u64> = HashMap::new();
    let mut resets: HashMap<(SocketAddr, SocketAddr), u64> = HashMap::new();
    let mut rexmits: HashMap<crate::monitor::FlowId, u64> = HashMap::new();
    // The monitor frees a flow at the packet after its end: keep each flow's last snapshot.
    let mut latest: HashMap<crate::monitor::FlowId, crate::monitor::FlowInfo> = HashMap::new();
    for f in frames {
        if let Ok(seg) = packet::decode(f.linktype, &f.data) {
            if seg.has(SYN) && !seg.has(packet::ACK) {
                *syns.entry((seg.src, seg.dst)).or_default() += 1;
            }
            if seg.has(RST) {
                *resets.entry(key(seg.src, seg.dst)).or_default() += 1;
            }
        }
        monitor.feed(f.ts_ns, f.linktype, &f.data);
        latest.extend(monitor.flows().into_iter().map(|info| (info.id, info)));
        for event in monitor.events() {
            if let (EventKind::Rexmit { .. }, Some(flow)) = (&event.kind, event.flow) {
                *rexmits.entry(flow).or_default() += 1;
            }
        }
    }
    let mut infos: Vec<_> = latest.into_values().collect();
    infos.sort_by_key(|info| (info.start_ns, info.client));
    let flows = infos
        .into_iter()
        .map(|info| FlowSummary {
            client: info.client,
            server: info.server,
            client_state: info.cli_state,
            server_state: info.svr_state,
            bytes_to_server: info.bytes[1],
            bytes_to_client: info.bytes[0],
            syns: syns.get(&(info.client, info.server)).copied().unwrap_or(0),
            retransmissions: rexmits.get(&info.id).copied().unwrap_or(0),
            resets: resets
                .get(&key(info.client, info.server))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    CaptureReport {
        pcap: None,
        packets: frames.len(),
        flows,
        note: None,
    }
}

/// The same key for both directions of a connection.
fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

//! Hand-built TCP segments for the flow monitor's tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use epollscope::monitor::packet::Segment;

/// A segment with a fixed window: the monitor's tests vary everything else.
pub fn seg<'a>(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &'a [u8],
) -> Segment<'a> {
    Segment {
        src,
        dst,
        seq,
        ack,
        flags,
        window: 1000,
        payload,
    }
}

use std::collections::BTreeMap;

use epollscope::monitor::packet::{ACK, SYN, encode, linktype};
use epollscope::monitor::{Config, Event, EventKind, MonError, Monitor, Side};

/// A monitor fed frame by frame that reads every side as an application would (peek on each
/// CONN_NEW_DATA and GAP), recording the events, the bytes, the holes and the losses, so that
/// a test can check both what was delivered and that the counts agree.
pub struct Harness {
    pub m: Monitor,
    pub ts: u64,
    pub events: Vec<Event>,
    /// Bytes peeked, by (flow number, side).
    pub streams: BTreeMap<(u64, Side), Vec<u8>>,
    /// CONN_NEW_DATA's byte counts, summed.
    pub announced: BTreeMap<(u64, Side), u64>,
    /// Bytes a peek said were overwritten, and holes a peek reported (position, length).
    pub lost: BTreeMap<(u64, Side), u64>,
    pub holes: BTreeMap<(u64, Side), Vec<(usize, u64)>>,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness {
            m: Monitor::new(config),
            ts: 1_700_000_000_000_000_000,
            events: vec![],
            streams: BTreeMap::new(),
            announced: BTreeMap::new(),
            lost: BTreeMap::new(),
            holes: BTreeMap::new(),
        }
    }

    /// Feeds one frame of link type `lt`, a millisecond after the previous one.
    pub fn frame(&mut self, lt: u32, frame: &[u8]) {
        self.ts += 1_000_000;
        self.m.feed(self.ts, lt, frame);
        self.drain_frame(frame);
    }

    /// Feeds `s` as a raw IP packet.
    pub fn seg(&mut self, s: &Segment) {
        self.frame(linktype::RAW, &encode(linktype::RAW, s));
    }

    pub fn drain(&mut self) {
        self.drain_frame(&[]);
    }

    /// Reads after feeding `frame` (where bytes announced in the frame lie, with
    /// `Config::in_frame`).
    pub fn drain_frame(&mut self, frame: &[u8]) {
        let evs: Vec<Event> = self.m.events().collect();
        for ev in evs {
            if let (Some(id), Some(side)) = (ev.flow, ev.side) {
                let key = (id.n, side);
                if let EventKind::NewData { bytes } = ev.kind {
                    *self.announced.entry(key).or_default() += bytes;
                }
                if let EventKind::NewDataInFrame { bytes, at } = ev.kind {
                    *self.announced.entry(key).or_default() += bytes;
                    let data = &frame[at..at + bytes as usize];
                    self.streams.entry(key).or_default().extend_from_slice(data);
                }
                if matches!(ev.kind, EventKind::NewData { .. } | EventKind::Gap { .. })
                    && let Ok(mut sock) = self.m.socket(id)
                {
                    let mut buf = [0u8; 1000];
                    loop {
                        match sock.peek(side, &mut buf) {
                            Ok(n) => self
                                .streams
                                .entry(key)
                                .or_default()
                                .extend_from_slice(&buf[..n]),
                            Err(MonError::Overwritten { lost }) => {
                                *self.lost.entry(key).or_default() += lost
                            }
                            Err(MonError::Hole { len, .. }) => {
                                let at = self.streams.get(&key).map_or(0, Vec::len);
                                self.holes.entry(key).or_default().push((at, len));
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            self.events.push(ev);
        }
    }

    /// End of input: settles and skips what is left, reading as it goes.
    pub fn finish(&mut self) {
        while self.m.finish() {
            self.drain();
        }
        self.drain();
    }

    pub fn stream(&self, flow: u64, side: Side) -> &[u8] {
        self.streams.get(&(flow, side)).map_or(&[], Vec::as_slice)
    }

    /// Every byte CONN_NEW_DATA announced was either peeked or reported overwritten.
    pub fn assert_counts_agree(&self) {
        for (key, &n) in &self.announced {
            let got = self.streams.get(key).map_or(0, |s| s.len() as u64);
            let lost = self.lost.get(key).copied().unwrap_or(0);
            assert_eq!(
                n,
                got + lost,
                "{key:?}: announced {n}, peeked {got}, lost {lost}"
            );
        }
        for (key, s) in &self.streams {
            assert!(
                self.announced.contains_key(key) || s.is_empty(),
                "{key:?}: {} bytes peeked, none announced",
                s.len()
            );
        }
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.name()).collect()
    }
}

/// A directory under `$TMPDIR` for one test, removed when dropped (a test run leaves nothing
/// behind).
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("epollscope-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `segs` as a pcap of raw IP packets, a millisecond apart.
pub fn write_pcap(path: &std::path::Path, segs: &[Segment]) {
    write_pcap_every(path, segs, 1_000_000);
}

/// Writes `segs` as a pcap of raw IP packets, `step_ns` apart.
pub fn write_pcap_every(path: &std::path::Path, segs: &[Segment], step_ns: u64) {
    let mut w = epollscope::monitor::pcap::Writer::new(
        std::io::BufWriter::new(std::fs::File::create(path).unwrap()),
        linktype::RAW,
    )
    .unwrap();
    for (i, s) in segs.iter().enumerate() {
        let f = encode(linktype::RAW, s);
        w.write(
            1_700_000_000_000_000_000 + i as u64 * step_ns,
            &f,
            f.len() as u32,
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// The client and server of the hand-built flows.
pub fn c() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}
pub fn s() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

pub const CISN: u32 = 1000;
pub const SISN: u32 = 5000;

/// SYN, SYN-ACK, ACK with the ISNs above.
pub fn handshake(h: &mut Harness) {
    h.seg(&seg(c(), s(), CISN, 0, SYN, b""));
    h.seg(&seg(s(), c(), SISN, CISN + 1, SYN | ACK, b""));
    h.seg(&seg(c(), s(), CISN + 1, SISN + 1, ACK, b""));
}

pub fn skip_gaps() -> Config {
    Config {
        skip_gaps: true,
        ..Config::default()
    }
}

/// A tool's run succeeded (exit 0); otherwise fails showing what it said on stderr.
pub fn assert_exit_0(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `epollscope monitor --pcap /dev/stdin --flows DIR`, started with its stdin, stdout and
/// stderr piped.
pub fn spawn_flows_from_stdin(dir: &std::path::Path) -> std::process::Child {
    use std::process::Stdio;
    std::process::Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
        .args(["monitor", "--pcap", "/dev/stdin", "--flows"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A `--flows` file takes the blocks of its bytes and no more (blocks reserved ahead of its
/// writes were given back; slack for the filesystem's own).
pub fn assert_no_blocks_past_end(path: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    let room = meta.blocks() * 512;
    assert!(
        room <= meta.len().next_multiple_of(4096) + (64 << 10),
        "{}: {} bytes take {room} bytes of disk",
        path.display(),
        meta.len()
    );
}

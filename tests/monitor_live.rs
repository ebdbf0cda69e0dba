//! Live capture on loopback, cross-checked: a Rust client and server exchange data both ways on
//! 127.0.0.1 while `epollscope monitor --live lo --write F` captures; the monitor's reassembly
//! of F must equal what was sent, and equal `tshark -z follow,tcp,raw` byte for byte.
//! Skips (with the reason printed) without CAP_NET_RAW, and the tshark half without tshark.

mod monitor_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use epollscope::monitor::live::{Capture, LiveError};
use epollscope::monitor::pcap::Reader;
use epollscope::monitor::{Config, Monitor};
use monitor_support::Scratch;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The monitor's two streams of the first flow in a capture: [cli, svr].
fn reassemble(path: &Path) -> [Vec<u8>; 2] {
    let mut r = Reader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut m = Monitor::new(Config::default());
    let mut out = [vec![], vec![]];
    let mut buf = vec![0u8; 1 << 16];
    let mut evs = vec![];
    while let Some(p) = r.next_packet().unwrap() {
        m.feed(p.ts_ns, p.linktype, p.data);
        evs.extend(m.events());
        for ev in evs.drain(..) {
            let (Some(id), Some(side)) = (ev.flow, ev.side) else {
                continue;
            };
            if id.n != 1 {
                continue;
            }
            let mut s = m.socket(id).unwrap();
            while let Ok(n) = s.peek(side, &mut buf) {
                out[side as usize].extend_from_slice(&buf[..n]);
            }
        }
    }
    out
}

/// `tshark -z follow,tcp,raw,0`: [server -> client, client -> server].
fn tshark_follow(path: &Path) -> Option<[Vec<u8>; 2]> {
    let out = Command::new("tshark")
        .args(["-r", path.to_str()?, "-q", "-z", "follow,tcp,raw,0"])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut streams = [vec![], vec![]];
    let mut body = false;
    for line in text.lines() {
        if line.starts_with("Node 1:") {
            body = true;
            continue;
        }
        if !body || line.starts_with("====") || line.is_empty() {
            continue;
        }
        // Node 0 (the client) unindented, node 1 (the server) after a tab.
        let (side, hex) = match line.strip_prefix('\t') {
            Some(h) => (0, h),
            None => (1, line),
        };
        for i in (0..hex.len()).step_by(2) {
            streams[side].push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    Some(streams)
}

#[test]
fn live_loopback_capture_matches_what_was_sent_and_tshark() {
    match Capture::open("lo") {
        Err(LiveError::Permission(e)) => {
            eprintln!("skipped: live capture needs root or CAP_NET_RAW ({e})");
            return;
        }
        Err(e) => panic!("opening a capture on lo: {e}"),
        Ok(_) => {}
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Removed when the test ends, passed or failed.
    let dir = Scratch::new("monitor-live");
    let file = dir.path("live.pcap");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
        .args([
            "monitor",
            "--live",
            "lo",
            "--follow",
            "--json",
            "--duration",
            "60",
        ])
        .args([
            "--filter",
            &format!("port {port}"),
            "--write",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "epollscope: capturing on lo");

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });

    let request = pattern(200_000, 7);
    let reply = pattern(150_000, 99);
    let (req, rep) = (request.clone(), reply.clone());
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = vec![0u8; req.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, req);
        c.write_all(&rep).unwrap();
        let mut rest = vec![];
        c.read_to_end(&mut rest).unwrap();
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&request).unwrap();
    let mut got = vec![0u8; reply.len()];
    c.read_exact(&mut got).unwrap();
    drop(c);
    server.join().unwrap();

    // Wait until the monitor has seen the flow end on both sides.
    let mut ends = 0;
    while ends < 2 {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the monitor reports the end of the flow");
        if l.contains("\"event\":\"conn_end\"") {
            ends += 1;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM ends the capture cleanly");

    let [cli, svr] = reassemble(&file);
    assert_eq!(svr.len(), request.len());
    assert!(svr == request, "server side = what the client sent");
    assert!(cli == reply, "client side = what the server sent");
    match tshark_follow(&file) {
        None => eprintln!("skipped the tshark half: tshark is not installed"),
        Some([to_cli, to_svr]) => {
            assert!(
                to_svr == svr,
                "tshark's client->server stream differs ({} vs {} bytes)",
                to_svr.len(),
                svr.len()
            );
            assert!(
                to_cli == cli,
                "tshark's server->client stream differs ({} vs {} bytes)",
                to_cli.len(),
                cli.len()
            );
        }
    }
}

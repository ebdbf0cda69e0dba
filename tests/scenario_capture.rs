//! `capture` in a scenario (or `--capture DIR`) records the run's loopback traffic: the
//! backlog-overflow scenario must show its dropped handshakes on the wire.

use std::path::Path;

use epollscope::monitor::{TcpState, pcap};
use epollscope::scenario::{self, RunOptions};

fn can_capture() -> bool {
    match epollscope::monitor::live::Capture::open("lo") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: live capture is not possible here ({e})");
            false
        }
    }
}

#[test]
fn backlog_overflow_shows_unanswered_syns_on_the_wire() {
    if !can_capture() {
        return;
    }
    let scenario = scenario::load(Path::new("scenarios/backlog-tcp-syn-sent.scn")).unwrap();
    assert!(scenario.capture, "the scenario asks for a capture");
    let dir = std::env::temp_dir().join(format!("es-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = RunOptions {
        capture_dir: Some(dir.clone()),
        ..RunOptions::default()
    };
    let report = scenario::run_with(&scenario, epollscope::Family::Inet, &options);
    assert!(report.passed, "{}", report.summary());
    let capture = report.capture.expect("a capture report");
    assert_eq!(capture.flows.len(), 5, "{}", capture.render());
    let dropped = capture
        .flows
        .iter()
        .filter(|f| f.client_state == TcpState::SynSent && f.bytes_to_client == 0)
        .count();
    assert_eq!(dropped, 2, "{}", capture.render());
    // The third accepted client had sent a byte nobody read: its close was a reset.
    assert!(
        capture
            .flows
            .iter()
            .any(|f| f.resets > 0 && f.bytes_to_server == 1)
    );

    // The pcap holds exactly the packets summarised, readable by the monitor's reader.
    let path = capture.pcap.expect("written");
    let mut reader = pcap::Reader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut packets = 0;
    while let Some(_p) = reader.next_packet().unwrap() {
        packets += 1;
    }
    assert_eq!(packets, capture.packets);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unix_runs_say_why_nothing_was_captured() {
    let source = "# c\nfamily: unix\ncapture\nsocket(FAMILY, SOCK_STREAM, 0) = L\n";
    let scenario = scenario::parse(Path::new("c.scn"), source).unwrap();
    let report = scenario::run(&scenario, epollscope::Family::Unix);
    let capture = report.capture.expect("asked for");
    assert_eq!(
        capture.note.as_deref(),
        Some("not captured: unix sockets put nothing on the wire")
    );
}

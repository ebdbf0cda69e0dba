//! The monitor holds a bounded number of flows (issue 8): 300,000 SYNs with the default
//! `--max-flows` stay within about 256 MB, the oldest idle flows evicted with an event.
//! Its own test binary: it reads the peak RSS of its children (getrusage), which other tests'
//! children would blur.

mod monitor_support;

use std::net::SocketAddr;

use epollscope::monitor::engine::DEFAULT_MAX_FLOWS;
use epollscope::monitor::packet::{SYN, Segment};
use monitor_support::{Scratch, assert_exit_0, seg, write_pcap_every};

#[test]
fn three_hundred_thousand_syns_stay_within_the_default_flow_bound() {
    let d = Scratch::new("monitor-syns");
    let f = d.path("syns.pcap");
    let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let clients: Vec<SocketAddr> = (0..300_000u32)
        .map(|i| {
            SocketAddr::new(
                [10, 1, (i >> 16) as u8, (i >> 8) as u8].into(),
                1024 + (i & 0xff) as u16,
            )
        })
        .collect();
    let segs: Vec<Segment> = clients
        .iter()
        .map(|&c| seg(c, server, 7, 0, SYN, b""))
        .collect();
    // A SYN flood: 300,000 SYNs in 0.3 s of capture time, so none times out.
    write_pcap_every(&f, &segs, 1000);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
        .args([
            "monitor",
            "--stats",
            "--json",
            "--pcap",
            f.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_exit_0(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["flows"], 300_000);
    let evicted = v["stats"]["evicted"].as_u64().unwrap();
    assert_eq!(evicted as usize, 300_000 - DEFAULT_MAX_FLOWS);
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    // ru_maxrss is in KiB.
    let peak_mb = usage.max_rss() / 1024;
    eprintln!("peak RSS {peak_mb} MB for {DEFAULT_MAX_FLOWS} flows held");
    assert!(peak_mb <= 300, "peak RSS {peak_mb} MB");
}

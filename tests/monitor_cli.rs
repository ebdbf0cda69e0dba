//! `epollscope monitor` on files: human and JSON output, and exit 2 with one line for every
//! kind of bad input (missing, non-pcap, truncated, corrupt, unknown link type, no permission).

mod monitor_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use epollscope::monitor::packet::{ACK, FIN, PSH, SYN, encode, linktype};
use epollscope::monitor::pcap::Writer;
use monitor_support::{Scratch, seg};

fn bin() -> std::process::Command {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
}

thread_local! {
    static DIR: Scratch = Scratch::new("monitor-cli");
}

fn tmp(name: &str) -> PathBuf {
    DIR.with(|d| d.path(name))
}

/// A GET and its answer over IPv4 on Ethernet, with one retransmitted client segment.
fn write_capture(path: &Path, lt: u32) {
    let c = "192.168.1.10:51000".parse().unwrap();
    let s = "192.168.1.20:8080".parse().unwrap();
    let segs = [
        seg(c, s, 10, 0, SYN, b""),
        seg(s, c, 50, 11, SYN | ACK, b""),
        seg(c, s, 11, 51, ACK, b""),
        seg(c, s, 11, 51, ACK | PSH, b"GET /\r\n"),
        seg(c, s, 11, 51, ACK | PSH, b"GET /\r\n"),
        seg(s, c, 51, 18, ACK | PSH, b"ok\x00\xff"),
        seg(c, s, 18, 55, FIN | ACK, b""),
        seg(s, c, 55, 19, FIN | ACK, b""),
        seg(c, s, 19, 56, ACK, b""),
    ];
    let mut w = Writer::new(std::fs::File::create(path).unwrap(), lt).unwrap();
    for (i, sg) in segs.iter().enumerate() {
        let f = encode(lt, sg);
        w.write(1_000_000_000 + i as u64 * 1000, &f, f.len() as u32)
            .unwrap();
    }
}

fn run(args: &[&str]) -> Output {
    bin().arg("monitor").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn human_output_lists_flows_events_and_both_streams() {
    let f = tmp("get.pcap");
    write_capture(&f, linktype::ETHERNET);
    let out = run(&["--pcap", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    for want in [
        "flows: 1",
        "flow 1: 192.168.1.10:51000 -> 192.168.1.20:8080  cli TIME_WAIT svr CLOSED  ended (fin)  bytes cli 4 svr 7",
        "0.000000 flow 1 cli CONN_START",
        "0.000003 flow 1 svr CONN_NEW_DATA 7 bytes",
        "0.000004 flow 1 svr REXMIT offset 0 len 7",
        "flow 1 svr (client -> server, 7 bytes):\n    GET /\\r\\n\n",
        "flow 1 cli (server -> client, 4 bytes):\n    ok\\x00\\xff\n",
        "packets 9 (tcp 9, not tcp 0, malformed 0, filtered 0, orphans 0)",
    ] {
        assert!(o.contains(want), "missing {want:?} in\n{o}");
    }
    let out = run(&["--pcap", f.to_str().unwrap(), "--side", "cli", "--hex"]);
    let o = text(&out.stdout);
    assert!(o.contains("00000000  6f 6b 00 ff"), "{o}");
    assert!(!o.contains("flow 1 svr"), "{o}");
}

#[test]
fn json_output_and_stats_mode() {
    let f = tmp("get-sll2.pcap");
    write_capture(&f, linktype::LINUX_SLL2);
    let out = run(&["--pcap", f.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["flows"][0]["svr_data"], "GET /\\r\\n\n");
    assert_eq!(v["flows"][0]["cli_state"], "TIME_WAIT");
    assert_eq!(v["stats"]["flows"], 1);
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "conn_end")
    );
    let out = run(&["--pcap", f.to_str().unwrap(), "--stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes"]["svr"], 7);
    assert_eq!(v["bytes"]["cli"], 4);
    let out = run(&["--pcap", f.to_str().unwrap(), "--follow", "--json"]);
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|e| e["data"] == "ok\\x00\\xff"));
}

fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout {}", text(&out.stdout));
    let e = text(&out.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    e.trim_end().to_string()
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let good = tmp("good.pcap");
    write_capture(&good, linktype::ETHERNET);
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty.pcap",
            vec![],
            "empty file (not a pcap or pcapng capture)",
        ),
        (
            "text.pcap",
            b"THDI is text\n".to_vec(),
            r#"not a pcap or pcapng file: it starts with "THDI is text\n" (54 48 44 49 20 69 73 20 74 65 78 74 0a)"#,
        ),
        (
            "short.pcap",
            bytes[..20].to_vec(),
            "truncated pcap file header at byte 0",
        ),
        (
            "lt.pcap",
            {
                let mut b = bytes.clone();
                b[20] = 99;
                b
            },
            "unsupported link type 99",
        ),
    ];
    for (name, content, msg) in cases {
        let p = tmp(name);
        std::fs::write(&p, content).unwrap();
        let e = one_line_error(&run(&["--pcap", p.to_str().unwrap()]));
        let prefix = format!("epollscope: error: {}: {msg}", p.display());
        assert!(e.starts_with(&prefix), "{e}\nwant {prefix}");
    }
    let e = one_line_error(&run(&["--pcap", "/nonexistent/x.pcap"]));
    assert_eq!(
        e,
        "epollscope: error: /nonexistent/x.pcap: No such file or directory (os error 2)"
    );
    let e = one_line_error(&run(&["--live", "nosuchif0"]));
    assert_eq!(e, "epollscope: error: nosuchif0: no such interface");
    let e = one_line_error(&run(&[
        "--pcap",
        good.to_str().unwrap(),
        "--filter",
        "port",
    ]));
    assert_eq!(e, "epollscope: error: --filter: expected a port at the end");
    let g = good.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--pcap", "/tmp"],
            "epollscope: error: /tmp: is a directory, not a capture file",
        ),
        (
            vec!["--pcap", g, "--filter", "port abc"],
            "epollscope: error: --filter: bad port 'abc' (want a number 0-65535)",
        ),
        (
            vec!["--live", "lo", "--duration", "inf"],
            "epollscope: error: --duration: inf is not a number of seconds from 0 to 31536000 (a year)",
        ),
        (
            vec!["--live", "lo", "--duration", "1e300"],
            "epollscope: error: --duration: 1e300 is not a number of seconds from 0 to 31536000 (a year)",
        ),
        (
            vec!["--live", "lo", "--duration", "NaN"],
            "epollscope: error: --duration: NaN is not a number of seconds from 0 to 31536000 (a year)",
        ),
        (
            vec!["--pcap", g, "--idle-timeout", "inf"],
            "epollscope: error: --idle-timeout: inf is not a number of seconds from 0 to 31536000 (a year)",
        ),
        (
            vec!["--pcap", g, "--max-flows", "0"],
            "epollscope: error: --max-flows: must be at least 1",
        ),
    ] {
        assert_eq!(one_line_error(&run(&args)), want, "{args:?}");
    }
    assert_eq!(run(&[]).status.code(), Some(2), "an input is required");
}

#[test]
fn live_capture_without_permission_exits_2() {
    // As root, drop to nobody with no capabilities; as a user, try directly.
    let is_root = nix::unistd::Uid::effective().is_root();
    let out = if is_root {
        if std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: running as root and setpriv (util-linux) is not installed");
            return;
        }
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(assert_cmd::cargo::cargo_bin("epollscope"))
            .args(["monitor", "--live", "lo", "--count", "1"])
            .output()
            .unwrap()
    } else {
        run(&["--live", "lo", "--count", "1"])
    };
    if out.status.code() == Some(0) {
        eprintln!("skipped: this user may capture (CAP_NET_RAW)");
        return;
    }
    let e = one_line_error(&out);
    assert_eq!(
        e,
        "epollscope: error: lo: live capture needs root or CAP_NET_RAW (socket(AF_PACKET): EPERM: Operation not permitted)"
    );
}

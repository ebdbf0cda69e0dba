//! `epollscope monitor` on damaged and incomplete captures (issue 13): what a damaged file
//! still delivers and its exit status, holes marked in every output, midstream flows marked
//! in every output, one file per direction (`--flows`), and a bounded flow table.

mod monitor_support;

use std::net::SocketAddr;
use std::process::Output;

use epollscope::monitor::packet::{ACK, FIN, PSH, RST, SYN, Segment};
use monitor_support::{Scratch, seg, write_pcap};

fn run(args: &[&str]) -> Output {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
        .arg("monitor")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn c() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}
fn s() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

/// A request with 100 bytes missing from the capture (acknowledged by the server).
fn holed() -> Vec<Segment<'static>> {
    vec![
        seg(c(), s(), 1000, 0, SYN, b""),
        seg(s(), c(), 5000, 1001, SYN | ACK, b""),
        seg(c(), s(), 1001, 5001, ACK, b""),
        seg(c(), s(), 1001, 5001, ACK | PSH, b"before "),
        seg(c(), s(), 1108, 5001, ACK | PSH, b"after"),
        seg(s(), c(), 5001, 1113, ACK | PSH, b"ok"),
        seg(c(), s(), 1113, 5003, FIN | ACK, b""),
        seg(s(), c(), 5003, 1114, FIN | ACK, b""),
        seg(c(), s(), 1114, 5004, ACK, b""),
    ]
}

#[test]
fn a_truncated_capture_delivers_what_came_before_and_exits_3() {
    let d = Scratch::new("monitor-damaged");
    let whole = d.path("whole.pcap");
    write_pcap(&whole, &holed()[..6]);
    let bytes = std::fs::read(&whole).unwrap();
    // Killed mid-write: the last record is cut short.
    let cut = d.path("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let out = run(&["--pcap", cut.to_str().unwrap(), "--gaps", "skip"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("    before \n    [100 bytes missing]\n    after"),
        "{o}"
    );
    let e = text(&out.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    let last = bytes.len() - (16 + 20 + 20 + 2);
    assert_eq!(
        e.trim_end(),
        format!(
            "epollscope: {}: capture damaged: truncated packet data at byte {last} (the file ends inside it); the 5 packets before it were read (exit 3)",
            cut.display()
        )
    );
    // A corrupt record (a captured length no record has) after the third packet.
    let mut bad = bytes.clone();
    let mut at = 24;
    for _ in 0..3 {
        let len = u32::from_ne_bytes(bad[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    bad[at + 8..at + 12].copy_from_slice(&u32::MAX.to_ne_bytes());
    let corrupt = d.path("corrupt.pcap");
    std::fs::write(&corrupt, &bad).unwrap();
    let out = run(&["--pcap", corrupt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains(&format!(
            "capture damaged: corrupt packet header at byte {at}: captured length 4294967295; the 3 packets before it were read"
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("flows: 1"));
    let help = text(&run(&["--help"]).stdout);
    assert!(help.contains("3 when a capture file is damaged"), "{help}");
}

#[test]
fn holes_are_marked_in_text_hex_and_json() {
    let d = Scratch::new("monitor-gaps");
    let f = d.path("holed.pcap");
    write_pcap(&f, &holed());
    let p = f.to_str().unwrap();
    let out = run(&["--pcap", p, "--gaps", "skip"]);
    assert_eq!(out.status.code(), Some(0));
    let o = text(&out.stdout);
    for want in [
        "flow 1 svr (client -> server, 12 bytes, 100 missing):\n    before \n    [100 bytes missing]\n    after\n",
        "flow 1 svr GAP 100 bytes missing at offset 7 (skipped)",
    ] {
        assert!(o.contains(want), "missing {want:?} in\n{o}");
    }
    let o = text(&run(&["--pcap", p, "--gaps", "skip", "--hex", "--side", "svr"]).stdout);
    assert!(
        o.contains("|before |\n    [100 bytes missing]\n    00000007  61 66 74 65 72"),
        "{o}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["--pcap", p, "--gaps", "skip", "--json"]).stdout).unwrap();
    assert_eq!(
        v["flows"][0]["svr_data"],
        "before \n[100 bytes missing]\nafter"
    );
    assert_eq!(
        v["flows"][0]["svr_gaps"],
        serde_json::json!([{"at": 7, "missing": 100}])
    );
    let follow = text(&run(&["--pcap", p, "--gaps", "skip", "--json", "--follow"]).stdout);
    assert!(
        follow
            .lines()
            .any(|l| l.contains(r#""gaps":[{"at":0,"missing":100}]"#)
                && l.contains(r#""event":"gap""#)),
        "{follow}"
    );
    // By default the side waits for the bytes, as mOS does, and says so.
    let o = text(&run(&["--pcap", p]).stdout);
    assert!(
        o.contains("flow 1 svr GAP 100 bytes missing at offset 7 (waiting)"),
        "{o}"
    );
    assert!(
        o.contains("flow 1 svr (client -> server, 7 bytes):\n    before \n"),
        "{o}"
    );
}

fn midstream_capture() -> Vec<Segment<'static>> {
    vec![
        seg(c(), s(), 7000, 9000, ACK | PSH, b"GET /"),
        seg(s(), c(), 9000, 7005, ACK | PSH, b"200 OK"),
    ]
}

#[test]
fn midstream_flows_are_marked_in_every_output() {
    let d = Scratch::new("monitor-midstream");
    let f = d.path("mid.pcap");
    write_pcap(&f, &midstream_capture());
    let p = f.to_str().unwrap();
    let o = text(&run(&["--pcap", p]).stdout);
    assert!(o.contains("flows: 0") && o.contains("orphans 2"), "{o}");
    let o = text(&run(&["--pcap", p, "--midstream"]).stdout);
    assert!(
        o.contains("flow 1: 10.0.0.1:40000 -> 10.0.0.2:80  cli ESTABLISHED svr ESTABLISHED  open  bytes cli 6 svr 5  midstream (no SYN seen)"),
        "{o}"
    );
    assert!(
        o.contains("flow 1 svr CONN_START midstream (no SYN seen)"),
        "{o}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["--pcap", p, "--midstream", "--json"]).stdout).unwrap();
    assert_eq!(v["flows"][0]["midstream"], true);
    assert_eq!(v["flows"][0]["cli_data"], "200 OK");
    let follow = text(&run(&["--pcap", p, "--midstream", "--follow"]).stdout);
    assert!(
        follow.contains("flow 1 svr CONN_NEW_DATA 5 bytes [midstream]"),
        "{follow}"
    );
    let follow = text(&run(&["--pcap", p, "--midstream", "--follow", "--json"]).stdout);
    assert!(
        follow
            .lines()
            .filter(|l| l.contains("conn_new_data"))
            .all(|l| l.contains(r#""midstream":true"#)),
        "{follow}"
    );
}

#[test]
fn flows_dir_writes_one_file_per_direction_named_as_tcpflow_does() {
    let d = Scratch::new("monitor-flows");
    let f = d.path("holed.pcap");
    let mut segs = holed();
    // A second connection on the same addresses after the first ended.
    segs.extend([
        seg(c(), s(), 20_000, 0, SYN, b""),
        seg(s(), c(), 30_000, 20_001, SYN | ACK, b""),
        seg(c(), s(), 20_001, 30_001, ACK | PSH, b"again"),
    ]);
    write_pcap(&f, &segs);
    let dir = d.path("out");
    let out = run(&[
        "--pcap",
        f.to_str().unwrap(),
        "--gaps",
        "skip",
        "--flows",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    assert_eq!(
        read("010.000.000.001.40000-010.000.000.002.00080"),
        b"before after"
    );
    assert_eq!(read("010.000.000.002.00080-010.000.000.001.40000"), b"ok");
    assert_eq!(
        read("010.000.000.001.40000-010.000.000.002.00080c1"),
        b"again"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    let o = text(&out.stdout);
    assert!(o.contains("flows: 2"), "{o}");
}

#[test]
fn a_flow_resumed_after_a_timeout_continues_its_file() {
    let d = Scratch::new("monitor-resume");
    let f = d.path("idle.pcap");
    let segs = [
        seg(c(), s(), 1000, 0, SYN, b""),
        seg(s(), c(), 5000, 1001, SYN | ACK, b""),
        seg(c(), s(), 1001, 5001, ACK | PSH, b"first "),
        // Two minutes of silence (write_pcap_every spaces packets 70 s apart).
        seg(c(), s(), 1007, 5001, ACK | PSH, b"second"),
    ];
    monitor_support::write_pcap_every(&f, &segs, 70_000_000_000);
    let dir = d.path("out");
    let out = run(&[
        "--pcap",
        f.to_str().unwrap(),
        "--flows",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("resumes flow 1"), "{o}");
    assert_eq!(
        std::fs::read(dir.join("010.000.000.001.40000-010.000.000.002.00080")).unwrap(),
        b"first second"
    );
}

#[test]
fn write_with_a_filter_keeps_only_the_packets_it_matches() {
    let d = Scratch::new("monitor-write");
    let f = d.path("two.pcap");
    let other: SocketAddr = "10.0.0.3:81".parse().unwrap();
    let mut segs = holed();
    segs.push(seg(c(), other, 1, 0, SYN, b""));
    segs.push(seg(other, c(), 9, 2, SYN | ACK, b""));
    write_pcap(&f, &segs);
    let out_file = d.path("out.pcap");
    let out = run(&[
        "--pcap",
        f.to_str().unwrap(),
        "--filter",
        "port 80",
        "--write",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let mut r =
        epollscope::monitor::pcap::Reader::new(std::fs::File::open(&out_file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet().unwrap() {
        let seg = epollscope::monitor::packet::decode(p.linktype, p.data).unwrap();
        assert!(seg.src.port() == 80 || seg.dst.port() == 80, "{seg:?}");
        n += 1;
    }
    assert_eq!(n, holed().len());
}

/// Bytes after a hole that is still open when the flow ends (by RST) can come out after
/// CONN_END (`--gaps skip` skips one hole a packet): the flow's line counts them too.
#[test]
fn bytes_delivered_after_a_flow_ended_count_in_its_line() {
    let d = Scratch::new("monitor-late");
    let f = d.path("late.pcap");
    let other: SocketAddr = "10.0.0.3:40001".parse().unwrap();
    let segs = [
        seg(c(), s(), 1000, 0, SYN, b""),
        seg(s(), c(), 5000, 1001, SYN | ACK, b""),
        seg(c(), s(), 1001, 5001, ACK | PSH, b"aaaa"),
        // 1005..1009 and 1013..1017 are not in the capture.
        seg(c(), s(), 1009, 5001, ACK | PSH, b"cccc"),
        seg(c(), s(), 1017, 5001, ACK | PSH, b"eeee"),
        // The server resets, acknowledging only what came before the holes: the flow ends
        // with both open; the first is skipped before CONN_END, the second after it.
        seg(s(), c(), 5001, 1005, RST | ACK, b""),
        // Two more packets (another client's SYNs): the first skips the second hole, the
        // second lets the ended flow go before the end of the input.
        seg(other, s(), 7000, 0, SYN, b""),
        seg(other, s(), 7000, 0, SYN, b""),
    ];
    write_pcap(&f, &segs);
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["--pcap", f.to_str().unwrap(), "--gaps", "skip"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let o = text(&out.stdout);
        if extra.is_empty() {
            assert!(o.contains("ended (rst)  bytes cli 0 svr 12"), "{o}");
            assert!(
                o.contains(
                    "aaaa\n    [4 bytes missing]\n    cccc\n    [4 bytes missing]\n    eeee"
                ),
                "{o}"
            );
        } else {
            let v: serde_json::Value = serde_json::from_str(&o).unwrap();
            assert_eq!(v["flows"][0]["bytes"], serde_json::json!([0, 12]), "{o}");
        }
    }
}

/// No output overwrites the capture being read (it was truncated under the reader: a bus
/// error, and the user's capture gone): `--write` to it under any name, or a `--flows` file
/// whose name leads to it, is one line and exit 2, and the capture is as it was.
#[test]
fn outputs_never_overwrite_the_capture_being_read() {
    let d = Scratch::new("monitor-spare");
    // Named as the flow's client -> server file, in the directory `--flows` writes.
    let f = d.path("010.000.000.001.40000-010.000.000.002.00080");
    write_pcap(&f, &holed());
    let before = std::fs::read(&f).unwrap();
    let link = d.path("link.pcap");
    std::fs::hard_link(&f, &link).unwrap();
    let (file, link, dir) = (
        f.to_str().unwrap(),
        link.to_str().unwrap(),
        d.0.to_str().unwrap(),
    );
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["--pcap", file, "--write", file], None),
        (&["--pcap", file, "--write", link], None),
        (&["--pcap", "/dev/stdin", "--write", link], Some(file)),
        (&["--pcap", file, "--flows", dir], None),
    ];
    for (args, stdin) in cases {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("epollscope"));
        cmd.arg("monitor").args(args);
        if let Some(path) = stdin {
            cmd.stdin(std::fs::File::open(path).unwrap());
        }
        let out = cmd.output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("is the capture being read"), "{args:?}: {err}");
        assert!(std::fs::read(file).unwrap() == before, "{args:?}");
    }
}

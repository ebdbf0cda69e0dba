//! `monitor --flows DIR` writes every byte of every direction, in order, whichever way the
//! bytes reach the file: gathered straight from the mapped capture, copied out of a flow's
//! buffer (reordered segments), or copied from a capture read through a pipe; with more flows
//! than files kept open (closed and reopened for appending) and more pieces than one `writev`
//! takes.

mod monitor_support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use epollscope::monitor::flowdir::MAX_OPEN;
use epollscope::monitor::packet::{ACK, PSH, SYN, Segment};
use monitor_support::{
    Scratch, assert_exit_0, assert_no_blocks_past_end, seg, spawn_flows_from_stdin, write_pcap,
};

const SERVER_ISN: u32 = 9000;

fn client(i: usize) -> SocketAddr {
    SocketAddr::new([10, 1, (i >> 8) as u8, i as u8].into(), 40000)
}

fn server() -> SocketAddr {
    "10.0.0.2:80".parse().unwrap()
}

/// The name `--flows` gives client `i`'s bytes.
fn file_of(i: usize) -> String {
    format!(
        "010.001.{:03}.{:03}.40000-010.000.000.002.00080",
        i >> 8,
        i & 0xff
    )
}

/// Flow `i`'s bytes, cut into `parts` segments of `size` bytes.
fn stream(i: usize, parts: usize, size: usize) -> Vec<u8> {
    (0..parts * size)
        .map(|k| (k as u32).wrapping_mul(31).wrapping_add(i as u32 * 7) as u8)
        .collect()
}

/// Handshakes of `flows` clients, then their segments round-robin (client 0 sends `long`
/// segments, the others `parts`), every fifth pair swapped so that it waits in the buffer.
fn capture(
    flows: usize,
    parts: usize,
    long: usize,
    size: usize,
) -> (Vec<Vec<u8>>, Vec<Segment<'static>>) {
    let streams: Vec<Vec<u8>> = (0..flows)
        .map(|i| stream(i, if i == 0 { long } else { parts }, size))
        .collect();
    let mut segs = vec![];
    for i in 0..flows {
        let isn = 1000 + i as u32;
        segs.push(seg(client(i), server(), isn, 0, SYN, b""));
        segs.push(seg(
            server(),
            client(i),
            SERVER_ISN,
            isn + 1,
            SYN | ACK,
            b"",
        ));
    }
    let mut per_flow: Vec<Vec<Segment<'static>>> = vec![];
    for (i, data) in streams.iter().enumerate() {
        let data: &'static [u8] = data.clone().leak();
        let isn = 1000 + i as u32;
        let mut mine: Vec<Segment<'static>> = data
            .chunks(size)
            .enumerate()
            .map(|(k, part)| {
                let sq = isn + 1 + (k * size) as u32;
                seg(client(i), server(), sq, SERVER_ISN + 1, ACK | PSH, part)
            })
            .collect();
        for k in (1..mine.len()).step_by(5) {
            mine.swap(k - 1, k);
        }
        per_flow.push(mine);
    }
    let most = per_flow.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..most {
        for mine in &per_flow {
            if let Some(s) = mine.get(k) {
                segs.push(s.clone());
            }
        }
    }
    (streams, segs)
}

fn check(dir: &Path, streams: &[Vec<u8>]) {
    for (i, want) in streams.iter().enumerate() {
        let got = std::fs::read(dir.join(file_of(i))).unwrap_or_default();
        assert!(
            got == *want,
            "flow {i}: {} bytes written, {} sent; first difference at {:?}",
            got.len(),
            want.len(),
            got.iter().zip(want).position(|(a, b)| a != b)
        );
    }
    let files = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(files, streams.len());
    // Blocks reserved ahead of the writes (flow 0's file, written in full writevs) are given
    // back at the end.
    for i in 0..streams.len() {
        assert_no_blocks_past_end(&dir.join(file_of(i)));
    }
}

#[test]
fn every_byte_reaches_its_file_from_the_map_the_buffer_or_a_pipe() {
    let d = Scratch::new("monitor-flowdir");
    let f = d.path("many.pcap");
    // More flows than open files, and one flow of more small segments than a writev takes.
    let (streams, segs) = capture(MAX_OPEN + 44, 12, 3000, 10);
    write_pcap(&f, &segs);
    let bin = assert_cmd::cargo::cargo_bin("epollscope");

    let mapped = d.path("mapped");
    let out = Command::new(&bin)
        .args(["monitor", "--pcap"])
        .arg(&f)
        .arg("--flows")
        .arg(&mapped)
        .output()
        .unwrap();
    assert_exit_0(&out);
    check(&mapped, &streams);

    // Through a pipe (read, not mapped): every byte is copied.
    let piped = d.path("piped");
    let mut child = spawn_flows_from_stdin(&piped);
    let mut stdin = child.stdin.take().unwrap();
    let bytes = std::fs::read(&f).unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert_exit_0(&out);
    check(&piped, &streams);
}

/// With few descriptors (`ulimit -n 16`) the files take turns: every byte still reaches its
/// file (the run once stopped at the first open that found the table full).
#[test]
fn a_low_descriptor_limit_makes_files_take_turns() {
    let d = Scratch::new("monitor-flowdir-nofile");
    let f = d.path("many.pcap");
    let (streams, segs) = capture(40, 12, 30, 10);
    write_pcap(&f, &segs);
    let dir = d.path("flows");
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 16 && exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin("epollscope"))
        .args(["monitor", "--pcap"])
        .arg(&f)
        .arg("--flows")
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit_0(&out);
    check(&dir, &streams);
}

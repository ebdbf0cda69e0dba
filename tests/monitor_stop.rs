//! SIGINT and SIGTERM stop `epollscope monitor --pcap` between packets, not in the middle of
//! its output: what it read is shown or written (`--flows` files complete up to there, their
//! reserved blocks given back), stderr says how far it got, and it exits 128+N. A quiet pipe
//! does not keep it from stopping. Each test waits on the process's state in /proc, never on
//! time.

mod monitor_support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use epollscope::monitor::packet::{ACK, PSH, SYN, Segment};
use epollscope::sys::procfs;
use monitor_support::{
    Scratch, assert_no_blocks_past_end, c, s, seg, spawn_flows_from_stdin, write_pcap,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SIZE: usize = 1448;

/// A handshake, then `parts` segments of [`SIZE`] bytes from the client; and those bytes.
fn bulk(parts: usize) -> (Vec<Segment<'static>>, Vec<u8>) {
    let data: Vec<u8> = (0..parts * SIZE).map(|k| (k % 251) as u8).collect();
    let leaked: &'static [u8] = data.clone().leak();
    let mut segs = vec![
        seg(c(), s(), 1000, 0, SYN, b""),
        seg(s(), c(), 5000, 1001, SYN | ACK, b""),
    ];
    for (k, part) in leaked.chunks(SIZE).enumerate() {
        let sq = 1001 + (k * SIZE) as u32;
        segs.push(seg(c(), s(), sq, 5001, ACK | PSH, part));
    }
    (segs, data)
}

/// `epollscope monitor ARGS...` started with stdout and stderr piped.
fn spawn_monitor(args: &[&std::ffi::OsStr]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("epollscope"))
        .arg("monitor")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// Waits (bounded) until `child` sleeps in one of `syscalls`.
fn wait_asleep_in(child: &mut Child, syscalls: &[i64], what: &str) {
    let pid = pid_of(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !procfs::asleep_in(pid, syscalls) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the monitor ended ({status}) before it waited in {what}");
        }
        assert!(
            Instant::now() < deadline,
            "the monitor never waited in {what}"
        );
        std::thread::yield_now();
    }
}

/// The syscalls `poll` may sleep in.
fn polls() -> Vec<i64> {
    let mut v = vec![libc::SYS_ppoll];
    #[cfg(target_arch = "x86_64")]
    v.push(libc::SYS_poll);
    v
}

const FILE: &str = "010.000.000.001.40000-010.000.000.002.00080";

/// Through a pipe that stays open: the monitor read all it was given and waits for more;
/// SIGINT ends the run with every byte it read in the flow's file.
#[test]
fn sigint_while_a_pipe_is_quiet_keeps_what_was_read() {
    let d = Scratch::new("monitor-stop-pipe");
    let f = d.path("bulk.pcap");
    let (segs, data) = bulk(2000);
    write_pcap(&f, &segs);
    let dir = d.path("flows");
    let mut child = spawn_flows_from_stdin(&dir);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(&f).unwrap()).unwrap();
    // Everything is in the pipe: once the monitor sleeps in poll, it has read and handled it.
    wait_asleep_in(&mut child, &polls(), "poll");
    kill(pid_of(&child), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!(
            "stopped by SIGINT; the {} packets before it were read",
            segs.len()
        )),
        "{err}"
    );
    let got = std::fs::read(dir.join(FILE)).unwrap();
    assert!(got == data, "{} bytes written of {}", got.len(), data.len());
    assert_no_blocks_past_end(&dir.join(FILE));
}

/// Before the capture's header came: nothing was made, and the run says so.
#[test]
fn sigterm_before_the_header_makes_nothing() {
    let d = Scratch::new("monitor-stop-header");
    let dir = d.path("flows");
    let mut child = spawn_flows_from_stdin(&dir);
    let stdin = child.stdin.take().unwrap();
    wait_asleep_in(&mut child, &polls(), "poll");
    kill(pid_of(&child), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert_eq!(
        err,
        "epollscope: stopped by SIGTERM before the capture's header came\n"
    );
    assert!(!dir.exists());
}

/// A mapped capture never blocks, so the signal is looked for between packets: the run is
/// held in a write to a FIFO nobody reads yet (`--write`), signalled there, and let go; it
/// stops at its next look, long before the capture's end, with its files complete up to
/// there.
#[test]
fn sigint_during_a_mapped_capture_stops_between_packets() {
    let d = Scratch::new("monitor-stop-mapped");
    let f = d.path("bulk.pcap");
    let (segs, data) = bulk(40_000);
    write_pcap(&f, &segs);
    let fifo = d.path("copy.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let dir = d.path("flows");
    let mut child = spawn_monitor(&[
        "--pcap".as_ref(),
        f.as_ref(),
        "--write".as_ref(),
        fifo.as_ref(),
        "--flows".as_ref(),
        dir.as_ref(),
    ]);
    // Opening blocks until the monitor opens its end, at its first packet.
    let mut copy = std::fs::File::open(&fifo).unwrap();
    wait_asleep_in(&mut child, &[libc::SYS_write], "write");
    kill(pid_of(&child), Signal::SIGINT).unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = vec![];
        copy.read_to_end(&mut all).unwrap();
        all.len()
    });
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let read: usize = err
        .split("the ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count: {err}"));
    assert!(read < segs.len(), "{read} packets of {}: {err}", segs.len());
    let got = std::fs::read(dir.join(FILE)).unwrap();
    // The handshake and `read - 2` segments, in order.
    assert_eq!(got.len(), (read - 2) * SIZE, "{err}");
    assert!(got[..] == data[..got.len()]);
    assert_no_blocks_past_end(&dir.join(FILE));
}

/// Once the capture is read, Ctrl-C acts as it does by default again: a long report (here
/// held in a write to a pipe nobody reads yet) is interrupted, not finished.
#[test]
fn sigint_during_the_report_interrupts_it() {
    use std::os::unix::process::ExitStatusExt;
    let d = Scratch::new("monitor-stop-report");
    let f = d.path("bulk.pcap");
    let (segs, _) = bulk(2000);
    write_pcap(&f, &segs);
    let mut child = spawn_monitor(&["--pcap".as_ref(), f.as_ref()]);
    wait_asleep_in(&mut child, &[libc::SYS_write], "write");
    kill(pid_of(&child), Signal::SIGINT).unwrap();
    // Were the signal still held, the run would finish its report once read: exit 0.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGINT),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

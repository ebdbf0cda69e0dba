//! The library's errors as the tools print them: one line, `{:#}` of an `anyhow` chain (see
//! `cli::finish`), naming the cause once. An error whose message holds its cause and also
//! gives it as its `source` would print it twice ("x: No space left on device (os error 28):
//! No space left on device (os error 28)").

use std::io;
use std::path::PathBuf;

use assert_cmd::Command;
use epollscope::channel::ChannelError;
use epollscope::monitor::flowdir::FileError;
use epollscope::monitor::live::LiveError;
use epollscope::monitor::pcap::PcapError;
use epollscope::scenario::LoadError;
use epollscope::shim::merge::ReadError;
use epollscope::vm::VmError;
use nix::errno::Errno;

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

#[test]
fn each_error_names_its_cause_once() {
    let path = PathBuf::from("/x/y");
    let cases: Vec<(&str, anyhow::Error)> = vec![
        (
            "FileError",
            FileError {
                path: path.clone(),
                error: enospc(),
            }
            .into(),
        ),
        (
            "ReadError",
            ReadError {
                path: path.clone(),
                error: enospc(),
            }
            .into(),
        ),
        (
            "LoadError::Read",
            LoadError::Read {
                path: "/x/y".into(),
                error: enospc(),
            }
            .into(),
        ),
        ("ChannelError::Os", ChannelError::Os(Errno::ENOSPC).into()),
        ("PcapError::Io", PcapError::Io(enospc()).into()),
        ("LiveError::Io", LiveError::Io(enospc()).into()),
        (
            "VmError::Io",
            VmError::Io {
                what: "writing /x/y".into(),
                error: enospc(),
            }
            .into(),
        ),
    ];
    let cause = "No space left on device";
    for (name, err) in cases {
        let line = format!("{err:#}");
        assert_eq!(line.matches(cause).count(), 1, "{name}: {line}");
        assert!(!line.contains('\n'), "{name}: {line}");
    }
}

#[test]
fn a_directory_that_cannot_be_made_is_one_line_with_its_cause() {
    // A capture with no packets (the pcap header alone: little-endian, v2.4, Ethernet): the
    // input opens, then DIR cannot be made.
    let mut header = vec![];
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    let out = Command::cargo_bin("epollscope")
        .unwrap()
        .args([
            "monitor",
            "--pcap",
            "/dev/stdin",
            "--flows",
            "/proc/no/such/dir",
        ])
        .write_stdin(header)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/proc/no/such/dir"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

//! The capture file a `monitor --pcap` run reads, and how SIGINT/SIGTERM stop a run (the
//! reading of that file, or a live capture).
//!
//! A regular file is mapped in memory (no copy); anything else (a pipe, a device) is read in
//! large blocks. Either way the stop signals are taken from a signalfd instead of killing the
//! process, so that a stopped run still writes what it holds (`--flows`, `--write`), gives
//! back the blocks it reserved, and says how far it got.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::{Context, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use epollscope::monitor::flowdir::FileId;
use epollscope::monitor::pcap::{PcapError, Reader};
use epollscope::sys::packet::Mapped;
use epollscope::sys::signal::{self as signals, SignalSource};

/// How many packets of a mapped capture are read between two looks for a stop signal (a
/// mapped capture never blocks: at most a millisecond of work goes by unchecked).
const CHECK_EVERY: u64 = 4096;

pub(super) enum Input {
    Mapped(Reader<io::Empty>),
    Read(Reader<Stoppable>),
}

/// An opened capture: how it is read, where stop signals are looked for, and which file it
/// is (when it is a regular file: outputs must not overwrite it).
pub(super) struct Opened {
    pub input: Input,
    pub stop: Stop,
    pub file: Option<FileId>,
}

/// Blocks SIGINT and SIGTERM (they become readable on a signalfd) and opens the capture.
pub(super) fn open(path: &std::path::Path) -> anyhow::Result<Opened> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).with_context(|| name.clone())?;
    if meta.is_dir() {
        bail!("{name}: is a directory, not a capture file");
    }
    let file = File::open(path).with_context(|| name.clone())?;
    // Through the descriptor: `/dev/stdin` redirected from a file is that file.
    let id = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| FileId::of(&m));
    let stop = Stop::new()?;
    let signals = stop.signals.clone();
    if meta.is_file()
        && meta.len() > 0
        && let Ok(map) = Mapped::new(&file)
    {
        let reader = Reader::mapped(Arc::new(map)).with_context(|| name.clone())?;
        return Ok(Opened {
            input: Input::Mapped(reader),
            stop,
            file: id,
        });
    }
    let stoppable = Stoppable { file, signals };
    let reader = Reader::with_capacity(stoppable, 1 << 20).with_context(|| name.clone())?;
    Ok(Opened {
        input: Input::Read(reader),
        stop,
        file: id,
    })
}

/// Where a run looks for a stop signal between packets.
pub(super) struct Stop {
    signals: Arc<SignalSource>,
    seen: u64,
}

impl AsFd for Stop {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.signals.as_fd()
    }
}

impl Stop {
    /// Blocks SIGINT and SIGTERM: they become readable here (a live capture polls for them).
    pub(super) fn new() -> anyhow::Result<Stop> {
        let signals = SignalSource::stop().context("blocking SIGINT/SIGTERM")?;
        Ok(Stop {
            signals: Arc::new(signals),
            seen: 0,
        })
    }

    /// A stop signal that arrived (consumed: it no longer acts once released).
    pub(super) fn take(&self) -> Option<Signal> {
        self.signals.take()
    }

    /// A stop signal that arrived, looked for once every [`CHECK_EVERY`] calls.
    pub(super) fn requested(&mut self) -> Option<Signal> {
        self.seen += 1;
        if !self.seen.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        self.signals.take()
    }

    /// Reading is over: SIGINT and SIGTERM act as they do by default again (one that came
    /// since is delivered now), so that a long report can be interrupted.
    pub(super) fn release(self) {
        drop(self.signals);
        let _ = signals::unblock(signals::STOP);
    }
}

/// The signal that stopped a read, as the error the reader returns.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {0}")]
pub(super) struct Stopped(pub Signal);

impl Stopped {
    /// The signal, if `e` is a read stopped by one.
    pub(super) fn of(e: &PcapError) -> Option<Signal> {
        match e {
            PcapError::Io(io) => io.get_ref()?.downcast_ref::<Stopped>().map(|s| s.0),
            _ => None,
        }
    }
}

/// A capture read in blocks that waits for data and for a stop signal at once: a pipe that
/// stays quiet does not keep Ctrl-C from stopping the run.
pub(super) struct Stoppable {
    file: File,
    signals: Arc<SignalSource>,
}

impl Read for Stoppable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut fds = [
                PollFd::new(self.file.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[1].any().unwrap_or(false)
                && let Some(signal) = self.signals.take()
            {
                return Err(io::Error::other(Stopped(signal)));
            }
            // Readable, at its end, or in error: read says which.
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                return self.file.read(buf);
            }
        }
    }
}

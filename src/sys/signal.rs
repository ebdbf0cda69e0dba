//! Signals: dispositions, and the signalfd through which the tools take SIGINT/SIGTERM (and
//! SIGCHLD where they reap) as events instead of handlers.

use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

fn set_disposition(signal: Signal, handler: SigHandler) {
    // SAFETY: SIG_DFL and SIG_IGN install no handler code, so nothing can run in signal
    // context; the only effect is the kernel's default or ignoring.
    let _ = unsafe { nix::sys::signal::signal(signal, handler) };
}

/// SIGPIPE back to its default: a closed stdout pipe (`tool | head`) ends the program quietly,
/// as for any Unix filter, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
pub fn default_sigpipe() {
    set_disposition(Signal::SIGPIPE, SigHandler::SigDfl);
}

/// SIGPIPE ignored: a write to a reset connection fails with EPIPE instead of killing the
/// process, as servers arrange it.
pub fn ignore_sigpipe() {
    set_disposition(Signal::SIGPIPE, SigHandler::SigIgn);
}

extern "C" fn interrupt(_: libc::c_int) {}

/// SIGUSR1 and SIGUSR2 get a handler that does nothing, installed without SA_RESTART: the
/// signal interrupts a blocked call (`-1 EINTR`) and changes nothing else, as in the kernel's
/// and LTP's epoll tests.
pub fn interrupt_on_user_signals() -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(interrupt),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: the handler does nothing at all, so it is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Gives a forked child the signal state of a freshly exec'd program: nothing blocked and
/// default dispositions for `signals` (without it the child would inherit a blocked
/// SIGTERM/SIGINT, unkillable by Ctrl-C).
pub fn reset_for_child(signals: &[Signal]) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for &s in signals {
        set_disposition(s, SigHandler::SigDfl);
    }
}

/// Signals blocked and read from a non-blocking signalfd (close-on-exec).
#[derive(Debug)]
pub struct SignalSource {
    fd: SignalFd,
}

/// The signals that ask a tool to stop.
pub const STOP: &[Signal] = &[Signal::SIGINT, Signal::SIGTERM];

/// The stop signals and SIGCHLD, for a process that reaps children in its event loop.
pub const STOP_AND_CHILD: &[Signal] = &[Signal::SIGCHLD, Signal::SIGINT, Signal::SIGTERM];

/// Blocks `signals` for the calling thread (before any thread or child is started, so that
/// none of them is killed by a signal meant for the event loop).
pub fn block(signals: &[Signal]) -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set_of(signals)), None)
}

/// Unblocks `signals` for the calling thread: one that is pending is delivered now.
pub fn unblock(signals: &[Signal]) -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set_of(signals)), None)
}

fn set_of(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for &s in signals {
        set.add(s);
    }
    set
}

impl SignalSource {
    /// Blocks `signals` and opens a signalfd for them.
    pub fn new(signals: &[Signal]) -> Result<SignalSource, Errno> {
        block(signals)?;
        let fd = SignalFd::with_flags(
            &set_of(signals),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        Ok(SignalSource { fd })
    }

    /// The stop source: SIGINT and SIGTERM.
    pub fn stop() -> Result<SignalSource, Errno> {
        SignalSource::new(STOP)
    }

    /// The next pending signal, if any (consumed).
    pub fn take(&self) -> Option<Signal> {
        loop {
            let info = self.fd.read_signal().ok().flatten()?;
            if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                return Some(s);
            }
        }
    }

    /// The next pending signal, if any (consumed), and whether a process sent it with kill(2)
    /// rather than the kernel (a terminal's Ctrl-C reaches the whole process group by itself).
    pub fn take_with_origin(&self) -> Option<(Signal, bool)> {
        loop {
            let info = self.fd.read_signal().ok().flatten()?;
            if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                let by_process = info.ssi_code == libc::SI_USER || info.ssi_code == libc::SI_QUEUE;
                return Some((s, by_process));
            }
        }
    }

    /// Every pending signal (consumed).
    pub fn drain(&self) -> Vec<Signal> {
        std::iter::from_fn(|| self.take()).collect()
    }
}

impl std::os::fd::AsFd for SignalSource {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SignalSource {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

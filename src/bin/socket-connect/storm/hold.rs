//! Holding the connections of a finished storm open until the user is done with them: a key
//! (a terminal is switched to single-key input for the hold) or any byte or EOF on stdin, a
//! fixed time, or SIGINT/SIGTERM.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::Storm;

/// SIGINT and SIGTERM, blocked and delivered through a signalfd so that the storm and the hold
/// can end cleanly (closing every connection) instead of dying mid-way. Install it before
/// starting any thread.
pub use epollscope::sys::signal::SignalSource as StopSignals;

/// A terminal on stdin in non-canonical mode without echo for as long as this lives, so that
/// one key (not a whole line) ends the hold; the previous settings come back on drop.
struct SingleKeyStdin {
    saved: Option<nix::sys::termios::Termios>,
}

impl SingleKeyStdin {
    fn enter() -> SingleKeyStdin {
        use nix::sys::termios::{
            LocalFlags, SetArg, SpecialCharacterIndices, tcgetattr, tcsetattr,
        };
        let stdin = io::stdin();
        // Not a terminal (a pipe, /dev/null): nothing to change.
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return SingleKeyStdin { saved: None };
        };
        let mut single = saved.clone();
        single
            .local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        single.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        single.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        let changed = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &single).is_ok();
        SingleKeyStdin {
            saved: changed.then_some(saved),
        }
    }
}

impl Drop for SingleKeyStdin {
    fn drop(&mut self) {
        use nix::sys::termios::{FlushArg, SetArg, tcflush, tcsetattr};
        if let Some(saved) = &self.saved {
            let stdin = io::stdin();
            // The key that ended the hold is consumed, not left for the shell to read.
            let _ = tcflush(stdin.as_fd(), FlushArg::TCIFLUSH);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// How long [`Storm::hold`] keeps the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Until a character or EOF (or an error) on stdin.
    UntilStdin,
    For(Duration),
}

/// Why [`Storm::hold`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    Stdin,
    Elapsed,
    Signal(Signal),
}

impl Storm {
    /// Keeps the connections open until `hold` says otherwise or a stop signal arrives.
    pub fn hold(&self, hold: Hold, stop: Option<&StopSignals>) -> io::Result<HoldEnd> {
        let deadline = match hold {
            Hold::For(d) => Some(Instant::now() + d),
            Hold::UntilStdin => None,
        };
        let stdin = io::stdin();
        let _single_key = (hold == Hold::UntilStdin).then(SingleKeyStdin::enter);
        loop {
            if let Some(signal) = stop.and_then(StopSignals::take) {
                return Ok(HoldEnd::Signal(signal));
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(HoldEnd::Elapsed);
                    }
                    // Round up so that we never wake just before the deadline and spin.
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128);
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = Vec::with_capacity(2);
            if let Some(stop) = stop {
                fds.push(PollFd::new(stop.as_fd(), PollFlags::POLLIN));
            }
            if hold == Hold::UntilStdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Any readiness on stdin (data, EOF as POLLHUP, or a closed fd as POLLNVAL) ends it.
            let stdin_ready = hold == Hold::UntilStdin
                && fds
                    .last()
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty());
            if stdin_ready {
                return Ok(HoldEnd::Stdin);
            }
        }
    }
}

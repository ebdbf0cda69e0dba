//! The end of a run: the waiters stopped and gone, what is left on the listener(s) counted,
//! everything closed, the summary.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use epollscope::addr::SockAddr;
use epollscope::sys::process::Pid;

use super::report::{Summary, WaiterSummary};
use super::{Master, SHUTDOWN_GRACE, ms_ceil, waiter};

impl Master<'_> {
    /// Stops the waiters and waits until they and their children are gone: all reaped and the
    /// report pipe at end of file. SIGKILL after a grace period, as a last resort.
    pub(super) fn shutdown(&mut self) {
        for p in self.waiters.iter().filter(|p| p.alive) {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
        }
        let mut deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut killed = false;
        while self.waiters.iter().any(|p| p.alive) || self.pipe_open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if killed {
                    self.say("warning: gave up waiting for the waiters' processes to end");
                    break;
                }
                // A waiter's own children die with it (PR_SET_PDEATHSIG SIGKILL).
                for p in self.waiters.iter().filter(|p| p.alive) {
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
                killed = true;
                deadline = Instant::now() + Duration::from_secs(2);
                continue;
            }
            // Happenings no longer matter: late results are still tallied and printed.
            if self.poll(ms_ceil(left)).is_err() {
                break;
            }
        }
    }

    /// Accepts (non-blocking) whatever is still queued on the listener(s) and counts it.
    pub(super) fn drain_listeners(&mut self) -> u64 {
        let mut left = 0;
        for &fd in &self.listeners {
            while let Ok(conn) = self.t.accept4("Q", fd, libc::SOCK_NONBLOCK) {
                left += 1;
                let _ = self.t.close(conn);
            }
        }
        left
    }

    pub(super) fn close_all(&mut self) {
        for fd in std::mem::take(&mut self.clients) {
            let _ = self.t.close(fd);
        }
        for fd in std::mem::take(&mut self.listeners) {
            let _ = self.t.close(fd);
        }
        let _ = self.t.close(self.ep);
        waiter::flush_trace(&mut self.t, self.cfg.trace);
    }

    pub(super) fn summary(&self, addr: SockAddr, stopped_by: String, unaccepted: u64) -> Summary {
        let cfg = self.cfg;
        Summary {
            family: addr.family(),
            address: addr.to_string(),
            mode: cfg.mode.name(),
            waiters: cfg.waiters,
            exclusive: cfg.exclusive,
            reuseport: cfg.reuseport,
            max_children: cfg.max_children,
            sleep_ms: u64::try_from(cfg.sleep.as_millis()).unwrap_or(u64::MAX),
            stopped_by,
            connected: self.connected,
            totals: self.tally.totals(),
            unaccepted,
            per_waiter: self
                .tally
                .per_waiter
                .iter()
                .enumerate()
                .map(|(i, c)| WaiterSummary {
                    waiter: format!("w{}", i + 1),
                    pid: self.waiters.get(i).map_or(0, |p| p.pid),
                    counts: c.clone(),
                })
                .collect(),
        }
    }
}

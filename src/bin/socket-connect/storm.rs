//! Connect storms for `socket-connect`: N non-blocking connects on mio, paced and measured.
//!
//! [`run_storm_until`] opens the connections and returns a [`Storm`] that holds the established ones
//! (closing them when dropped) together with a serialisable [`StormReport`]: how many connected,
//! every failure grouped by errno, and connect latency. [`Storm::hold`] then keeps them open
//! until stdin says so, a time has passed, or SIGINT/SIGTERM arrives ([`StopSignals`]).
//!
//! TCP connects are started non-blocking (EINPROGRESS) and finish when epoll reports them
//! writable; `SO_ERROR` decides whether they succeeded. (On loopback the handshake is usually
//! over before connect(2) returns, which one getpeername detects, sparing the epoll round.)
//! AF_UNIX connects finish (or fail) inside
//! `connect` itself: a full backlog fails at once with EAGAIN, which is counted, not retried,
//! because seeing it is the point.

mod hold;
mod report;

pub use hold::{Hold, HoldEnd, StopSignals};
pub use report::{StormError, StormReport, errno_by_name};

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use epollscope::addr::SockAddr;
use report::{errno_name, percentile_us};

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_CONCURRENCY: usize = 512;
#[cfg(test)]
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Descriptors a storm opens besides the connections: the epoll instance.
const FD_OVERHEAD: u64 = 1;

/// Starts made back to back before the event loop looks at its events again. Small, because a
/// connect that completed during the burst is only seen (and its latency measured) after it;
/// capped at all because AF_UNIX connects complete synchronously and a long storm must still
/// notice Ctrl-C.
const START_BURST: usize = 32;

/// Longest wait for events while stop signals are watched: the signalfd cannot join mio's poll
/// (that needs mio's `os-ext` feature), so the loop looks at it between waits.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// What to connect to and how hard.
#[derive(Clone, Debug)]
pub struct StormConfig {
    pub target: SockAddr,
    pub count: u64,
    /// Connects in flight at most (TCP; AF_UNIX connects never stay in flight).
    pub concurrency: usize,
    /// Starts per second; `None` starts as fast as concurrency allows.
    pub rate: Option<f64>,
    /// Each start is delayed by a random extra amount in `[0, jitter)`.
    pub jitter: Duration,
    pub seed: u64,
    /// A connect not established after this long (SYN dropped by a full backlog) counts as
    /// ETIMEDOUT and is closed.
    pub timeout: Duration,
    /// Draw an indicatif progress bar on stderr.
    pub progress: bool,
}

#[cfg(test)]
impl StormConfig {
    pub fn new(target: SockAddr, count: u64) -> StormConfig {
        StormConfig {
            target,
            count,
            concurrency: DEFAULT_CONCURRENCY,
            rate: None,
            jitter: Duration::ZERO,
            seed: DEFAULT_SEED,
            timeout: DEFAULT_TIMEOUT,
            progress: false,
        }
    }
}

/// A finished storm: its report and the connections it established, closed on drop.
#[derive(Debug)]
pub struct Storm {
    pub report: StormReport,
    held: Vec<OwnedFd>,
}

impl Storm {
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Raises RLIMIT_NOFILE for `count` connections; returns the limits in force and how many
/// connections they leave room for, counting the descriptors already open.
pub fn raise_nofile_for(count: u64) -> (epollscope::net::NofileLimit, u64) {
    // The directory's own descriptor is listed too, and is closed again by the time it matters.
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(3, |d| d.count() as u64 - 1);
    let reserve = in_use + FD_OVERHEAD;
    let limit = epollscope::net::raise_nofile_limit(count.saturating_add(reserve));
    (limit, limit.soft.saturating_sub(reserve))
}

/// Runs a storm without stop signals (what tests use).
#[cfg(test)]
pub fn run_storm(config: &StormConfig) -> Result<Storm, StormError> {
    run_storm_until(config, None)
}

/// Runs a storm; a stop signal ends it early, abandoning the connects still in flight.
pub fn run_storm_until(
    config: &StormConfig,
    stop: Option<&StopSignals>,
) -> Result<Storm, StormError> {
    let target = match &config.target {
        SockAddr::Unix { path } => {
            // connect(2) on a regular file says ECONNREFUSED, which would send the user
            // looking for a missing server instead of at the path.
            if let Ok(meta) = std::fs::metadata(path)
                && !meta.file_type().is_socket()
            {
                return Err(StormError::NotASocket(path.clone()));
            }
            let addr =
                std::os::unix::net::SocketAddr::from_pathname(path).map_err(StormError::Poll)?;
            Target::Unix(addr)
        }
        SockAddr::Inet { addr } => Target::Tcp(*addr),
    };
    let poll = Poll::new().map_err(StormError::Poll)?;
    let progress = config.progress.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(config.count),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut run = Run {
        config,
        target,
        poll,
        schedule: Schedule::new(config),
        pending: Vec::new(),
        free: Vec::new(),
        in_flight: 0,
        deadlines: VecDeque::new(),
        held: Vec::with_capacity(usize::try_from(config.count).unwrap_or(0).min(1 << 20)),
        latencies: Vec::with_capacity(usize::try_from(config.count).unwrap_or(0).min(1 << 20)),
        errors: BTreeMap::new(),
        started: 0,
        failed: 0,
        interrupted: None,
    };
    let began = Instant::now();
    let finished = run.event_loop(began, progress.as_ref(), stop)?;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    Ok(run.into_storm(finished.duration_since(began)))
}

enum Target {
    Tcp(std::net::SocketAddr),
    Unix(std::os::unix::net::SocketAddr),
}

/// When each start is due, as an offset from the beginning of the storm.
enum Schedule {
    /// `i / rate`, or all at once without a rate.
    Paced { interval_ns: f64 },
    /// Paced plus a seeded random delay per start, sorted so that starts stay in time order.
    Jittered(Vec<u64>),
}

impl Schedule {
    fn new(config: &StormConfig) -> Schedule {
        let interval_ns = config.rate.map_or(0.0, |r| 1e9 / r);
        let jitter_ns = config.jitter.as_nanos().min(u64::MAX as u128) as u64;
        if jitter_ns == 0 {
            return Schedule::Paced { interval_ns };
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut due: Vec<u64> = (0..config.count)
            .map(|i| (i as f64 * interval_ns) as u64 + rng.random_range(0..jitter_ns))
            .collect();
        due.sort_unstable();
        Schedule::Jittered(due)
    }

    fn due(&self, i: u64) -> Duration {
        match self {
            Schedule::Paced { interval_ns } => {
                Duration::from_nanos((i as f64 * interval_ns) as u64)
            }
            Schedule::Jittered(due) => Duration::from_nanos(due[i as usize]),
        }
    }
}

/// A TCP connect in flight, in its slot of [`Run::pending`] (the slot index is its token).
struct Pending {
    stream: TcpStream,
    attempt: u64,
    started: Instant,
}

/// The state of one storm while it runs.
struct Run<'a> {
    config: &'a StormConfig,
    target: Target,
    poll: Poll,
    schedule: Schedule,
    /// Slots reused through `free`, so the table stays as small as the concurrency.
    pending: Vec<Option<Pending>>,
    free: Vec<usize>,
    in_flight: usize,
    /// (slot, attempt, deadline) in start order, hence in deadline order; entries of connects
    /// that already finished are skipped when they reach the front.
    deadlines: VecDeque<(usize, u64, Instant)>,
    held: Vec<OwnedFd>,
    latencies: Vec<u64>,
    errors: BTreeMap<i32, u64>,
    started: u64,
    failed: u64,
    interrupted: Option<Signal>,
}

impl Run<'_> {
    /// Returns when the last connect finished (or when a signal stopped the storm).
    fn event_loop(
        &mut self,
        began: Instant,
        progress: Option<&indicatif::ProgressBar>,
        stop: Option<&StopSignals>,
    ) -> Result<Instant, StormError> {
        let mut events = Events::with_capacity(1024);
        let mut last_done = began;
        loop {
            let mut burst = 0;
            while self.started < self.config.count
                && self.in_flight < self.config.concurrency
                && burst < START_BURST
            {
                // A clock read per start (vDSO, tens of ns) keeps latencies honest.
                let now = Instant::now();
                if began + self.schedule.due(self.started) > now {
                    break;
                }
                self.start(now)?;
                burst += 1;
            }
            if self.started == self.config.count && self.in_flight == 0 {
                return Ok(Instant::now().max(last_done));
            }
            let mut timeout = self.poll_timeout(began, burst == START_BURST);
            if stop.is_some() {
                timeout = Some(timeout.map_or(SIGNAL_CHECK, |t| t.min(SIGNAL_CHECK)));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StormError::Poll(e)),
            }
            // One clock read per batch: the time the kernel told us, not when we got to it.
            let seen = Instant::now();
            for event in events.iter() {
                self.complete(event, seen);
                last_done = seen;
            }
            self.expire(Instant::now());
            if let Some(bar) = progress {
                bar.set_position(self.held.len() as u64 + self.failed);
            }
            self.interrupted = stop.and_then(StopSignals::take);
            if self.interrupted.is_some() {
                return Ok(Instant::now());
            }
        }
    }

    /// How long to wait for events: until the next start is due, the oldest connect times out,
    /// or not at all when more starts are ready right now.
    fn poll_timeout(&mut self, began: Instant, more_ready: bool) -> Option<Duration> {
        if more_ready {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        if self.started < self.config.count && self.in_flight < self.config.concurrency {
            wake = Some(began + self.schedule.due(self.started));
        }
        while let Some(&(slot, attempt, deadline)) = self.deadlines.front() {
            if self.is_pending(slot, attempt) {
                wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
                break;
            }
            self.deadlines.pop_front();
        }
        wake.map(|w| w.saturating_duration_since(now))
    }

    fn is_pending(&self, slot: usize, attempt: u64) -> bool {
        matches!(&self.pending[slot], Some(p) if p.attempt == attempt)
    }

    fn start(&mut self, now: Instant) -> Result<(), StormError> {
        let attempt = self.started;
        self.started += 1;
        match &self.target {
            Target::Unix(addr) => match UnixStream::connect_addr(addr) {
                Ok(stream) => self.succeed(stream.into(), now.elapsed()),
                Err(e) => self.fail(&e),
            },
            Target::Tcp(addr) => match TcpStream::connect(*addr) {
                // On loopback the handshake runs inside connect(2) itself, which still says
                // EINPROGRESS: one getpeername spares the epoll_ctl, wakeup and SO_ERROR.
                Ok(stream) if stream.peer_addr().is_ok() => {
                    self.succeed(stream.into(), now.elapsed());
                }
                Ok(mut stream) => {
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.pending.push(None);
                        self.pending.len() - 1
                    });
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(slot), Interest::WRITABLE)
                    {
                        self.free.push(slot);
                        self.fail(&e);
                        return Ok(());
                    }
                    self.pending[slot] = Some(Pending {
                        stream,
                        attempt,
                        started: now,
                    });
                    self.in_flight += 1;
                    self.deadlines
                        .push_back((slot, attempt, now + self.config.timeout));
                }
                Err(e) => self.fail(&e),
            },
        }
        Ok(())
    }

    fn complete(&mut self, event: &mio::event::Event, seen: Instant) {
        let slot = event.token().0;
        let Some(p) = self.pending.get_mut(slot).and_then(Option::take) else {
            return;
        };
        match p.stream.take_error() {
            // Writable with no pending error: the handshake is done. (Edge-triggered epoll
            // reports a connecting socket only when its state changes, so this is no guess.)
            Ok(None) if event.is_writable() => {
                self.release(slot);
                self.succeed(p.stream.into(), seen.saturating_duration_since(p.started));
            }
            Ok(None) => self.pending[slot] = Some(p),
            Ok(Some(e)) | Err(e) => {
                self.release(slot);
                self.fail(&e);
            }
        }
    }

    /// Closes connects that have been in flight longer than the timeout.
    fn expire(&mut self, now: Instant) {
        while let Some(&(slot, attempt, deadline)) = self.deadlines.front() {
            if self.is_pending(slot, attempt) {
                if deadline > now {
                    break;
                }
                self.pending[slot] = None;
                self.release(slot);
                self.count_failure(Errno::ETIMEDOUT as i32);
            }
            self.deadlines.pop_front();
        }
    }

    fn release(&mut self, slot: usize) {
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn succeed(&mut self, fd: OwnedFd, latency: Duration) {
        self.held.push(fd);
        self.latencies
            .push(latency.as_nanos().min(u64::MAX as u128) as u64);
    }

    fn fail(&mut self, error: &io::Error) {
        // Errors without an errno do not come out of connect(2); EIO keeps the sums right.
        self.count_failure(error.raw_os_error().unwrap_or(libc::EIO));
    }

    fn count_failure(&mut self, errno: i32) {
        self.failed += 1;
        *self.errors.entry(errno).or_insert(0) += 1;
    }

    fn into_storm(mut self, elapsed: Duration) -> Storm {
        let config = self.config;
        let aborted = self.in_flight as u64;
        // Abandoned connects close here, before the report is read.
        self.pending.clear();
        self.latencies.sort_unstable();
        let pick = |q: f64| percentile_us(&self.latencies, q);
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .unwrap_or((0, 0));
        let connected = self.held.len() as u64;
        let report = StormReport {
            target: config.target.to_string(),
            family: config.target.family(),
            requested: config.count,
            attempted: self.started,
            connected,
            failed: self.failed,
            aborted,
            errors: self
                .errors
                .iter()
                .map(|(e, n)| (errno_name(Errno::from_raw(*e)), *n))
                .collect(),
            elapsed_us: elapsed.as_micros() as u64,
            connects_per_sec: if elapsed.is_zero() {
                0.0
            } else {
                connected as f64 / elapsed.as_secs_f64()
            },
            latency_min_us: pick(0.0),
            latency_median_us: pick(0.5),
            latency_p99_us: pick(0.99),
            latency_max_us: pick(1.0),
            concurrency: config.concurrency,
            rate: config.rate,
            jitter_ms: config.jitter.as_millis() as u64,
            timeout_ms: config.timeout.as_millis() as u64,
            seed: config.seed,
            nofile_limit: soft,
            nofile_hard_limit: hard,
            interrupted: self.interrupted.map(|s| s.as_str().to_string()),
        };
        Storm {
            report,
            held: self.held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_schedule_is_seeded_and_sorted() {
        let mut config = StormConfig::new(SockAddr::unix("/nonexistent"), 50);
        config.jitter = Duration::from_millis(10);
        let a = Schedule::new(&config);
        let b = Schedule::new(&config);
        let due: Vec<Duration> = (0..50).map(|i| a.due(i)).collect();
        assert_eq!(due, (0..50).map(|i| b.due(i)).collect::<Vec<_>>());
        assert!(due.windows(2).all(|w| w[0] <= w[1]));
        assert!(due.iter().all(|d| *d < Duration::from_millis(10)));
        config.seed = 2;
        assert_ne!(due[0], Schedule::new(&config).due(0));
    }
}

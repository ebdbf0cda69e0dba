//! Turning one intercepted call into one trace line: the event (with the shared formatter's
//! types), its rendering (JSON or raw strace-like), and the append to the sink.

use epollscope::trace::{Call, Event, FdRef, Format, Ret, Stability};
use nix::errno::Errno;

use crate::Shim;
use epollscope::shim::LineFormat;

thread_local! {
    /// A reused buffer for formatting one line: no allocation per traced call.
    static LINE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Wall-clock microseconds (clock_gettime through the vDSO: no system call).
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

pub fn fd(num: i32) -> FdRef {
    FdRef { num, name: None }
}

/// What a C call's return value and errno mean as a trace result.
pub fn ret(value: i64, errno: i32) -> Ret {
    if value < 0 {
        Ret::Err {
            errno: Errno::from_raw(errno),
        }
    } else {
        Ret::value(value)
    }
}

impl Shim {
    /// Records a finished call that started at `start` (from [`now_us`]).
    /// `call` is only built when tracing, so an untraced fast path pays nothing for it.
    pub fn record(
        &self,
        pid: i32,
        start: u64,
        call: impl FnOnce() -> Call,
        value: i64,
        errno: i32,
    ) {
        self.record_call(pid, start, call, (value, errno), false)
    }

    /// [`Shim::record`] for a call that may have slept (its `(value, errno)` as returned).
    pub fn record_call(
        &self,
        pid: i32,
        start: u64,
        call: impl FnOnce() -> Call,
        (value, errno): (i64, i32),
        slept: bool,
    ) {
        let Some(sink) = &self.sink else { return };
        let _ = crate::guarded(|| {
            let event = Event {
                actor: String::new(),
                pid,
                time_us: start,
                dur_us: now_us().saturating_sub(start),
                call: call(),
                ret: ret(value, errno),
                resumed: false,
                slept,
                stability: Stability::Stable,
            };
            // This thread's line buffer, taken out while in use: a signal handler that records
            // meanwhile finds none and makes its own.
            let mut line = LINE.take();
            line.clear();
            match self.format {
                LineFormat::Json => {
                    let _ = serde_json::to_writer(&mut line, &event);
                }
                LineFormat::Raw => {
                    line.extend_from_slice(event.render(Format::RAW.with_actors(true)).as_bytes())
                }
            }
            line.push(b'\n');
            sink.append(&line);
            if line.capacity() <= 64 << 10 {
                LINE.set(line);
            }
        });
    }
}

//! epollscope's LD_PRELOAD shim: intercepts the socket, epoll and process calls of any
//! dynamically linked program, traces them (one [`epollscope::trace::Event`] per call) and/or
//! routes them through the Fastsocket fast path ([`epollscope::fastpath`]).
//!
//! Configured by environment variables (see [`epollscope::shim`]). Ground rules, because the
//! host program is somebody else's:
//! * never kill it: no panic crosses the C boundary (every piece of shim logic runs under
//!   `catch_unwind`, and a failure falls back to the plain call); a bad setting prints one
//!   line and leaves the program untouched;
//! * never change what it sees: errno is restored exactly as the real call left it, and no
//!   lock is held across a real call;
//! * never trace ourselves: a thread-local guard sends the shim's own calls (listen_spawn's
//!   sockets, the fast path's bookkeeping) straight to the C library. The guard is down while
//!   the host's own call runs, so a signal handler that interrupts a blocking accept or
//!   epoll_wait has its calls traced;
//! * hold no fd and never write to one that is not the shim's (see [`sink`]), never raise
//!   SIGPIPE (see [`os::write_quietly`]);
//! * never let a vfork or CLONE_VM child, which shares the parent's memory, change the
//!   parent's state: the calls that change state ask the kernel who is calling
//!   ([`Entered::shared_vm_child`]).

mod hooks_epoll;
mod hooks_exit;
mod hooks_fds;
mod hooks_net;
mod hooks_proc;
mod mapped;
mod os;
mod real;
mod record;
mod sink;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use epollscope::fastpath::{self, EmulationOptions, FastPath};
use epollscope::shim::{LineFormat, Settings};

use crate::sink::Sink;

/// The shim's state for this process image.
pub struct Shim {
    pub sink: Option<Sink>,
    pub format: LineFormat,
    pub fastpath: Option<Box<dyn FastPath>>,
}

static SHIM: OnceLock<Shim> = OnceLock::new();
/// This process's pid, kept current across fork (getpid is a real system call nowadays).
/// Set by the constructor, before any vfork child could share it.
static PID: AtomicI32 = AtomicI32::new(0);

/// Set once the program made a child that shares its memory but not this thread's TLS (clone
/// with CLONE_VM and CLONE_SETTLS): from then on every state-changing call asks the kernel.
static SHARED_VM_ANYWHERE: AtomicBool = AtomicBool::new(!cfg!(target_arch = "x86_64"));

/// [`SHARED_VM`] values.
const NO_CHILD: u8 = 0;
/// A vfork-like child (CLONE_VFORK): this thread waits until it execs or exits.
const VFORK_CHILD: u8 = 1;
/// A child that runs alongside this thread with its TLS: ask the kernel from now on.
const SHARED_CHILD: u8 = 2;

thread_local! {
    /// Whether this thread made a child that shares its memory and its TLS (vfork, clone with
    /// CLONE_VM): that child sees this flag too, as it runs on this thread's TLS.
    static SHARED_VM: Cell<u8> = const { Cell::new(NO_CHILD) };
    /// Set while the shim itself is at work on this thread.
    static IN_SHIM: Cell<bool> = const { Cell::new(false) };
    /// IN_SHIM as it was when this thread entered fork's prepare handler.
    static BEFORE_FORK: Cell<bool> = const { Cell::new(false) };
}

/// The pid of the process that owns the shim's state (in a vfork child: its parent's).
pub fn pid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        0 => os::getpid(),
        p => p,
    }
}

/// One line on stderr, prefixed with who says it: no std locks, no panic if stderr is
/// closed, and no SIGPIPE if it is a pipe nobody reads.
pub fn say(text: &str) {
    let line = format!("epollscope-preload[{}]: {text}\n", os::getpid());
    let saved = errno();
    os::write_quietly(2, line.as_bytes());
    set_errno(saved);
}

fn build() -> Shim {
    let passthrough = Shim {
        sink: None,
        format: LineFormat::Json,
        fastpath: None,
    };
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(why) => {
            say(&format!("{why}; running the program untouched"));
            return passthrough;
        }
    };
    if let Some(epollscope::shim::TraceTarget::Dir(dir)) = &settings.trace
        && !dir.is_dir()
    {
        say(&format!(
            "EPOLLSCOPE_TRACE: {} is not a directory; running the program untouched",
            dir.display()
        ));
        return passthrough;
    }
    let fastpath = match settings.fastpath {
        None => None,
        Some(requested) => {
            let options = EmulationOptions {
                pin: settings.pin,
                steer: settings.steer,
            };
            match fastpath::choose(requested, &settings.device, options) {
                Ok(choice) => {
                    if settings.announce {
                        say(&format!(
                            "fast path: {} ({})",
                            choice.fastpath.backend().name(),
                            choice.reason
                        ));
                    }
                    Some(choice.fastpath)
                }
                Err(why) => {
                    say(&format!("{why}; fast path off"));
                    None
                }
            }
        }
    };
    Shim {
        sink: settings.trace.map(|t| Sink::new(t, settings.buffer)),
        format: settings.format,
        fastpath,
    }
}

/// The shim's state, built on first use (by the constructor, or earlier by a call from another
/// library's constructor). Callers hold the guard, so building it makes no traced calls.
fn shim() -> &'static Shim {
    SHIM.get_or_init(|| {
        let built = catch_unwind(build).unwrap_or_else(|_| Shim {
            sink: None,
            format: LineFormat::Json,
            fastpath: None,
        });
        register_atfork();
        built
    })
}

/// The shim at work on this thread; dropping it ends the shim's turn.
pub struct Entered {
    pub shim: &'static Shim,
    /// Whose call this is (a vfork child's own pid once [`Entered::shared_vm_child`] found one).
    pub pid: i32,
    /// Set when the caller is a vfork or CLONE_VM child: it must not touch the shim's state.
    pub vm_child: bool,
    /// The host's call slept (see [`Entered::blocking`]); its trace line says so.
    pub slept: Cell<bool>,
}

impl Entered {
    /// Makes the host's own call with the guard down, so a signal handler that runs during it
    /// (a blocking accept, an epoll_wait) has its calls traced, and a handler that jumps out
    /// of it leaves no guard up behind it.
    pub fn plain<T>(&self, call: impl FnOnce() -> T) -> T {
        IN_SHIM.with(|g| g.set(false));
        let result = call();
        IN_SHIM.with(|g| g.set(true));
        result
    }

    /// [`Entered::plain`] for a call that can block (a wait, an accept, a connect): when
    /// tracing, also whether the thread slept in it, from its voluntary context switches
    /// (two getrusage calls, so only for these calls and only when tracing). A signal handler
    /// that sleeps while the call is interrupted counts as the call's sleep.
    pub fn blocking<T>(&self, call: impl FnOnce() -> T) -> T {
        if self.shim.sink.is_none() {
            return self.plain(call);
        }
        let before = os::voluntary_switches();
        let result = self.plain(call);
        let saved = errno();
        let after = os::voluntary_switches();
        set_errno(saved);
        self.slept
            .set(matches!((before, after), (Some(b), Some(a)) if a > b));
        result
    }

    /// Whether the caller is a child that shares this process's memory (vfork, clone with
    /// CLONE_VM): its pid, from the kernel, is not the one the shim's state belongs to.
    /// Asked only by the calls that change the shim's state (close, dup, listen...), and only
    /// after this thread made such a child (the vfork and clone hooks say so), so the usual
    /// cost is one thread-local read; then one getpid system call.
    pub fn shared_vm_child(&mut self) -> bool {
        let made = SHARED_VM.with(Cell::get);
        if made == NO_CHILD && !SHARED_VM_ANYWHERE.load(Ordering::Relaxed) {
            return self.vm_child;
        }
        let real = os::getpid();
        if real != self.pid {
            self.pid = real;
            self.vm_child = true;
        } else if made == VFORK_CHILD {
            // The parent, running again: its vfork child has exec'd or exited.
            SHARED_VM.with(|c| c.set(NO_CHILD));
        }
        self.vm_child
    }

    /// The fast path, unless the caller is a vfork child (which gets the plain calls: its fd
    /// table is its own, the listen table in the shared memory is its parent's).
    /// Checks who is calling first, so the trace line names the right process too.
    pub fn fastpath(&mut self) -> Option<&'static dyn FastPath> {
        if self.shared_vm_child() {
            None
        } else {
            self.shim.fastpath.as_deref()
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        IN_SHIM.with(|g| g.set(false));
    }
}

/// Enters the shim, unless this thread is already in it (then the caller makes the plain
/// call) or there is nothing to do.
pub fn enter() -> Option<Entered> {
    if IN_SHIM.with(|g| g.replace(true)) {
        return None;
    }
    match catch_unwind(shim) {
        Ok(shim) if shim.sink.is_some() || shim.fastpath.is_some() => Some(Entered {
            shim,
            pid: pid(),
            vm_child: false,
            slept: Cell::new(false),
        }),
        _ => {
            IN_SHIM.with(|g| g.set(false));
            None
        }
    }
}

/// The program is about to make a child that shares its memory: `flags` as clone's.
pub fn note_shared_vm(flags: i32) {
    if flags & libc::CLONE_VM == 0 {
        return;
    }
    if flags & libc::CLONE_SETTLS != 0 {
        SHARED_VM_ANYWHERE.store(true, Ordering::Relaxed);
    } else if flags & libc::CLONE_VFORK != 0 {
        SHARED_VM.with(|c| {
            if c.get() == NO_CHILD {
                c.set(VFORK_CHILD)
            }
        });
    } else {
        SHARED_VM.with(|c| c.set(SHARED_CHILD));
    }
}

/// Runs shim logic that must not unwind into C: `None` if it panicked.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// Writes out the trace buffer (exit, exec, _exit).
pub fn flush() {
    if let Some(Some(sink)) = SHIM.get().map(|s| s.sink.as_ref()) {
        let _ = guarded(|| sink.flush());
    }
}

extern "C" fn prepare_fork() {
    let was = IN_SHIM.with(|g| g.replace(true));
    BEFORE_FORK.with(|b| b.set(was));
    if let Some(Some(sink)) = SHIM.get().map(|s| s.sink.as_ref()) {
        sink.before_fork();
    }
}

extern "C" fn parent_after_fork() {
    if let Some(Some(sink)) = SHIM.get().map(|s| s.sink.as_ref()) {
        sink.after_fork_parent();
    }
    if let Some(Some(fp)) = SHIM.get().map(|s| s.fastpath.as_ref()) {
        let _ = guarded(|| fp.after_fork_parent());
    }
    IN_SHIM.with(|g| g.set(BEFORE_FORK.with(Cell::get)));
}

extern "C" fn child_after_fork() {
    PID.store(os::getpid(), Ordering::Relaxed);
    if let Some(Some(sink)) = SHIM.get().map(|s| s.sink.as_ref()) {
        sink.after_fork_child();
    }
    if let Some(Some(fp)) = SHIM.get().map(|s| s.fastpath.as_ref()) {
        let _ = guarded(|| fp.after_fork_child());
    }
    IN_SHIM.with(|g| g.set(BEFORE_FORK.with(Cell::get)));
}

fn register_atfork() {
    // SAFETY: the handlers are plain extern "C" functions that live as long as the library.
    unsafe {
        libc::pthread_atfork(
            Some(prepare_fork),
            Some(parent_after_fork),
            Some(child_after_fork),
        );
    }
}

extern "C" fn constructor() {
    PID.store(os::getpid(), Ordering::Relaxed);
    if IN_SHIM.with(|g| g.replace(true)) {
        return;
    }
    if let Ok(shim) = catch_unwind(shim)
        && let Some(sink) = &shim.sink
    {
        // The trace file is made now, while the program has not started threads or fds of
        // its own: its short-lived fd cannot take a number the program is about to get.
        let _ = guarded(|| sink.start(pid()));
    }
    IN_SHIM.with(|g| g.set(false));
}

extern "C" fn destructor() {
    IN_SHIM.with(|g| g.set(true));
    if let Some(Some(sink)) = SHIM.get().map(|s| s.sink.as_ref()) {
        let _ = guarded(|| {
            sink.flush();
            sink.unbuffer();
        });
    }
    IN_SHIM.with(|g| g.set(false));
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

#[used]
#[unsafe(link_section = ".fini_array")]
static DESTRUCTOR: extern "C" fn() = destructor;

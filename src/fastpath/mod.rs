//! The Fastsocket fast path: one [`FastPath`] trait with two backends, and the choice
//! between them.
//!
//! * [`module::ModuleBackend`]: the real Fastsocket kernel module, through ioctls on
//!   `/dev/fastsocket` (byte-exact ABI in [`abi`]). Used when the device can be opened.
//! * [`emulated::EmulatedBackend`]: Fastsocket's per-core listen table reproduced in user space
//!   on a modern kernel with SO_REUSEPORT: a worker's epoll_ctl(ADD) of an inherited listener
//!   replaces it with the worker's own listener bound to the same address.
//!
//! The preload shim (crate `epollscope-preload`) routes intercepted calls here in fastsocket
//! mode. Every method makes the real calls through libc; inside the shim those land on the
//! shim's own symbols, whose re-entrancy guard sends them straight to the C library.

/// The module's ioctl ABI; it lives in `sys` with the one call that uses it.
pub use crate::sys::fastsocket_abi as abi;
pub mod emulated;
pub mod locality;
pub mod module;
pub mod table;

use std::path::Path;

use nix::errno::Errno;

use crate::sys::RawFd;
pub use locality::Steer;
pub use table::ListenTable;

/// Where the Fastsocket module's channel is.
pub const DEVICE: &str = "/dev/fastsocket";

/// Which backend a user asked for (`EPOLLSCOPE_FASTPATH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// The module when its device opens, else the emulation.
    Auto,
    Module,
    Emulated,
}

impl std::str::FromStr for Requested {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "1" | "on" | "yes" => Ok(Requested::Auto),
            "module" => Ok(Requested::Module),
            "emulated" | "emulation" | "reuseport" => Ok(Requested::Emulated),
            other => Err(format!(
                "unknown fast path '{other}' (expected auto, module or emulated)"
            )),
        }
    }
}

/// The backend in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Module,
    Emulated,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Module => "module",
            Backend::Emulated => "emulated",
        }
    }
}

/// A peer address buffer for accept: what the kernel wrote and its full length.
pub type PeerAddr = crate::sys::RawAddr;

/// What a backend did at an epoll_ctl(ADD) of a listener (reported in traces and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spawn {
    /// Not a listener, not an ADD, or already spawned here: nothing to do.
    NotNeeded,
    /// This process now has its own listener under the same fd number.
    Spawned,
    /// A spawn was attempted and failed with this errno; the shared listener stays in use.
    Failed(Errno),
}

/// The Fastsocket operations, as libfsocket routes them.
pub trait FastPath: Send + Sync {
    fn backend(&self) -> Backend;
    /// The listeners this process knows about.
    fn table(&self) -> &ListenTable;
    /// An fd the backend keeps open for itself (the module's channel), to protect from the host.
    fn private_fd(&self) -> Option<RawFd> {
        None
    }
    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<RawFd, Errno>;
    /// Called before the real bind of `fd` (the emulation sets SO_REUSEPORT here).
    fn before_bind(&self, fd: RawFd);
    fn listen(&self, fd: RawFd, backlog: i32) -> Result<(), Errno>;
    fn accept4(&self, fd: RawFd, peer: Option<&mut PeerAddr>, flags: i32) -> Result<RawFd, Errno>;
    fn close(&self, fd: RawFd) -> Result<(), Errno>;
    fn shutdown(&self, fd: RawFd, how: i32) -> Result<(), Errno>;
    /// listen_spawn: give this process its own copy of listener `fd`.
    fn spawn_listen(&self, fd: RawFd, cpu: i32) -> Result<(), Errno>;
    /// Whether an epoll_ctl(ADD) of `fd` in process `pid` should spawn first.
    fn wants_spawn(&self, fd: RawFd, pid: i32) -> bool;
    /// Whether connections wait in listener `fd`'s queue (then a spawn waits).
    fn has_queue(&self, _fd: RawFd) -> bool {
        false
    }
    /// Called in a new child process right after fork, before it runs any of its own code.
    fn after_fork_child(&self) {}
    /// Called in the parent right after a fork.
    fn after_fork_parent(&self) {}
    /// What steered this process's spawned listeners (see [`locality`]), once it spawned.
    fn locality_notice(&self) -> Option<String> {
        None
    }

    /// epoll_ctl with the listen_spawn heuristic: an ADD of a listener not yet spawned in this
    /// process spawns first. A failed spawn is not the caller's failure: the registration
    /// goes ahead on the shared listener, as without the fast path.
    ///
    /// The program sees what this ADD does natively. It first registers the shared listener,
    /// as the native call would: if that fails (EEXIST because the set, inherited from the
    /// parent, already holds it; EINVAL; ELOOP...), the failure is the answer and nothing is
    /// spawned. If connections are queued on the shared listener, the registration stays
    /// and nothing is spawned either: a new listener would hide them from the worker.
    /// Otherwise that registration is taken back and the worker's own listener is
    /// registered under the same number. The registration exists for a moment in a set the
    /// parent may share, which the parent could see natively too: it is the same one.
    fn epoll_ctl(
        &self,
        epfd: RawFd,
        op: i32,
        fd: RawFd,
        mut event: Option<&mut libc::epoll_event>,
    ) -> (Result<(), Errno>, Spawn) {
        use crate::sys::epoll_ctl_raw;
        let pid = std::process::id() as i32;
        if op != libc::EPOLL_CTL_ADD || !self.wants_spawn(fd, pid) {
            return (epoll_ctl_raw(epfd, op, fd, event), Spawn::NotNeeded);
        }
        if let Err(e) = epoll_ctl_raw(epfd, op, fd, event.as_deref_mut()) {
            return (Err(e), Spawn::NotNeeded);
        }
        // Connections wait on the shared listener: the worker's own would not show them, so
        // it keeps the shared one for now (a later ADD tries again).
        if self.has_queue(fd) {
            return (Ok(()), Spawn::NotNeeded);
        }
        // Before the spawn: once the number names the worker's listener, the shared one's
        // registration could no longer be named (epoll keys on file and number).
        let _ = epoll_ctl_raw(epfd, libc::EPOLL_CTL_DEL, fd, None);
        // Do not try again at every ADD (nginx with accept_mutex adds repeatedly).
        self.table().mark_spawned(fd, pid);
        let spawn = match self.spawn_listen(fd, -1) {
            Ok(()) => Spawn::Spawned,
            Err(e) => Spawn::Failed(e),
        };
        (epoll_ctl_raw(epfd, op, fd, event), spawn)
    }
}

/// Options of the emulation (see [`locality`]). The default neither pins nor steers; the
/// shim's fastsocket mode does both unless told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulationOptions {
    /// Pin each worker to one CPU at its listen_spawn, round-robin in fork order.
    pub pin: bool,
    /// How a worker's listener takes the connections processed on its CPU.
    pub steer: Steer,
}

impl Default for EmulationOptions {
    fn default() -> Self {
        EmulationOptions {
            pin: false,
            steer: Steer::Hash,
        }
    }
}

impl EmulationOptions {
    /// Fastsocket's default mode: workers pinned, connections steered to their CPU.
    pub fn fastsocket() -> EmulationOptions {
        EmulationOptions {
            pin: true,
            steer: Steer::Auto,
        }
    }
}

/// The backend chosen, and why (printed once when the shim starts in fastsocket mode).
pub struct Choice {
    pub fastpath: Box<dyn FastPath>,
    pub reason: String,
}

/// Chooses a backend: `device` is normally [`DEVICE`] (tests pass a fake one).
/// Fails only when the module was asked for and its device does not open.
pub fn choose(
    requested: Requested,
    device: &Path,
    options: EmulationOptions,
) -> Result<Choice, String> {
    let emulated = |why: String| Choice {
        fastpath: Box::new(emulated::EmulatedBackend::new(options)),
        reason: format!(
            "{why}; {}; {}",
            locality::plan(options.pin, options.steer),
            emulated::migrate_note()
        ),
    };
    if requested == Requested::Emulated {
        return Ok(emulated("emulated backend requested".into()));
    }
    match module::ModuleBackend::open(device) {
        Ok(m) => Ok(Choice {
            fastpath: Box::new(m),
            reason: format!("{} opened", device.display()),
        }),
        Err(e) if requested == Requested::Auto => Ok(emulated(format!(
            "{}: {} (module not loaded), using the SO_REUSEPORT emulation",
            device.display(),
            crate::trace::errno_text(e)
        ))),
        Err(e) => Err(format!(
            "module backend requested but {}: {}",
            device.display(),
            crate::trace::errno_text(e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_module_when_the_device_opens_else_the_emulation() {
        let fake = std::env::temp_dir().join(format!("fake-fastsocket-{}", std::process::id()));
        std::fs::write(&fake, b"").unwrap();
        let c = choose(Requested::Auto, &fake, EmulationOptions::default()).unwrap();
        assert_eq!(c.fastpath.backend(), Backend::Module);
        assert!(c.reason.contains("opened"), "{}", c.reason);
        // A regular file is no Fastsocket module: its ioctls fail, and are reported as such.
        assert_eq!(c.fastpath.listen(0, 1), Err(Errno::ENOTTY));
        std::fs::remove_file(&fake).unwrap();

        let c = choose(Requested::Auto, &fake, EmulationOptions::default()).unwrap();
        assert_eq!(c.fastpath.backend(), Backend::Emulated);
        assert!(
            c.reason.contains("No such file or directory"),
            "{}",
            c.reason
        );
        let err = choose(Requested::Module, &fake, EmulationOptions::default())
            .err()
            .unwrap();
        assert!(err.contains("module backend requested"), "{err}");
        let c = choose(Requested::Emulated, &fake, EmulationOptions::default()).unwrap();
        assert_eq!(c.fastpath.backend(), Backend::Emulated);
    }

    #[test]
    fn requested_parses() {
        assert_eq!("auto".parse(), Ok(Requested::Auto));
        assert_eq!("module".parse(), Ok(Requested::Module));
        assert_eq!("emulated".parse(), Ok(Requested::Emulated));
        assert!("fast".parse::<Requested>().is_err());
    }
}

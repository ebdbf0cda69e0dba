//! Setting up listeners the way the tools need them: stale unix socket files cleaned up (and
//! nothing else ever removed), ephemeral ports reported, socket files removed again on exit,
//! and errors that say what to do about them.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::addr::SockAddr;
use crate::sys::RawFd;
use crate::tracer::Tracer;

/// Why a listener could not be set up. Each message names the address and suggests a way out.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0} exists and is not a socket; refusing to remove it (choose another path)")]
    NotASocket(PathBuf),
    #[error("{0} is in use: a process is listening on it (stop it or choose another path)")]
    PathInUse(PathBuf),
    #[error("cannot inspect {0}: {1}")]
    Inspect(PathBuf, std::io::Error),
    #[error("cannot remove stale socket {0}: {1}")]
    RemoveStale(PathBuf, Errno),
    #[error("{addr} is already in use (another listener has it; choose another port or 0)")]
    AddrInUse { addr: SockAddr },
    #[error("permission denied for {addr} (ports below 1024 need root; paths need write access)")]
    Permission { addr: SockAddr },
    #[error("{call} {addr}: {errno:?} ({})", crate::trace::errno_text(*errno))]
    Call {
        call: &'static str,
        addr: SockAddr,
        errno: Errno,
    },
}

/// Options for [`listen_on`].
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    pub backlog: i32,
    pub nonblocking: bool,
    pub reuseport: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 1024,
            nonblocking: false,
            reuseport: false,
        }
    }
}

/// A listening socket made by [`listen_on`]: its fd and the address it really has
/// (the kernel's choice when port 0 was asked for).
#[derive(Debug)]
pub struct Listening {
    pub fd: RawFd,
    pub addr: SockAddr,
}

/// Whether a live socket is bound to the socket file at `path`, asked of the file itself (a
/// connect to it) rather than by comparing path strings, which any other spelling of the same
/// file (a symlink, `..`, a relative path) defeats.
///
/// ECONNREFUSED means no socket is attached to the file's inode (its owner is gone: stale).
/// Anything else means it has an owner: accepted or queued (a listener), EAGAIN (a listener
/// with a full backlog), EPROTOTYPE (a live socket of another type). A stream socket bound and
/// not yet listening also refuses; that window of another program's start-up is not covered.
fn unix_socket_file_is_live(path: &Path) -> Result<bool, SetupError> {
    let probe = SockAddr::unix(path);
    let fd = crate::sys::socket(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
    )
    .map_err(|e| SetupError::Call {
        call: "socket",
        addr: probe.clone(),
        errno: e,
    })?;
    let result = crate::sys::connect(fd, &crate::sys::RawAddr::from(&probe));
    let _ = crate::sys::close(fd);
    match result {
        Err(Errno::ECONNREFUSED) => Ok(false),
        Err(Errno::EACCES | Errno::EPERM) => Err(SetupError::Permission { addr: probe }),
        Ok(()) | Err(_) => Ok(true),
    }
}

/// Makes `path` free for a new unix listener: removes a stale socket file, refuses to touch
/// anything that is not a socket or that a live process is bound to.
/// Returns whether a stale file was removed.
pub fn prepare_unix_path(path: &Path) -> Result<bool, SetupError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SetupError::Inspect(path.to_path_buf(), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SetupError::NotASocket(path.to_path_buf()));
    }
    if unix_socket_file_is_live(path)? {
        return Err(SetupError::PathInUse(path.to_path_buf()));
    }
    crate::sys::unlink(path).map_err(|e| SetupError::RemoveStale(path.to_path_buf(), e))?;
    Ok(true)
}

/// socket + (SO_REUSEPORT) + bind + listen + getsockname, all traced; the fd is named `name`.
pub fn listen_on(
    tracer: &mut Tracer,
    name: &str,
    addr: &SockAddr,
    options: ListenOptions,
) -> Result<Listening, SetupError> {
    let fail = |call: &'static str, errno: Errno| match errno {
        Errno::EADDRINUSE => SetupError::AddrInUse { addr: addr.clone() },
        Errno::EACCES | Errno::EPERM => SetupError::Permission { addr: addr.clone() },
        errno => SetupError::Call {
            call,
            addr: addr.clone(),
            errno,
        },
    };
    let mut ty = libc::SOCK_STREAM;
    if options.nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    let fd = tracer
        .socket(name, addr.family(), ty)
        .map_err(|e| fail("socket", e))?;
    let setup = (|| {
        if options.reuseport {
            tracer
                .setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
                .map_err(|e| fail("setsockopt SO_REUSEPORT", e))?;
        }
        tracer.bind(fd, addr).map_err(|e| fail("bind", e))?;
        tracer
            .listen(fd, options.backlog)
            .map_err(|e| fail("listen", e))?;
        // Only an IP listener has something to learn: the port the kernel chose for port 0.
        match addr {
            SockAddr::Unix { .. } => Ok(addr.clone()),
            SockAddr::Inet { .. } => tracer.getsockname(fd).map_err(|e| fail("getsockname", e)),
        }
    })();
    match setup {
        Ok(bound) => Ok(Listening { fd, addr: bound }),
        Err(e) => {
            let _ = crate::sys::close(fd);
            Err(e)
        }
    }
}

/// socket + connect, traced; the fd is named `name`. Non-blocking when asked, in which case a
/// TCP connect that is still in progress (EINPROGRESS) counts as success.
pub fn connect_to(
    tracer: &mut Tracer,
    name: &str,
    addr: &SockAddr,
    nonblocking: bool,
) -> Result<RawFd, SetupError> {
    let fail = |call: &'static str, errno: Errno| SetupError::Call {
        call,
        addr: addr.clone(),
        errno,
    };
    let mut ty = libc::SOCK_STREAM;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    let fd = tracer
        .socket(name, addr.family(), ty)
        .map_err(|e| fail("socket", e))?;
    match tracer.connect(fd, addr) {
        Ok(()) => Ok(fd),
        Err(Errno::EINPROGRESS) if nonblocking => Ok(fd),
        Err(e) => {
            let _ = crate::sys::close(fd);
            Err(fail("connect", e))
        }
    }
}

/// Removes a unix socket file when dropped, but only in the process that created it (a forked
/// child dropping its copy must not pull the path from under its parent) and only if the path
/// is still the file it created (same device and inode): a file put there since, a regular
/// file or another server's socket, is not the tool's to remove.
#[derive(Debug)]
pub struct SocketFileGuard {
    file: Option<(PathBuf, FileId)>,
    owner: u32,
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn socket_file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

impl SocketFileGuard {
    /// Guards the socket file of `addr`, as it is now (call it right after bind; a no-op
    /// guard for IP addresses, or when there is no socket file at the path).
    pub fn new(addr: &SockAddr) -> SocketFileGuard {
        let file = addr
            .path()
            .and_then(|path| Some((path.to_path_buf(), socket_file_id(path)?)));
        SocketFileGuard {
            file,
            owner: std::process::id(),
        }
    }
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Some((path, id)) = &self.file
            && std::process::id() == self.owner
            && socket_file_id(path) == Some(*id)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The outcome of [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises RLIMIT_NOFILE so that `wanted` descriptors fit: the soft limit to the hard one, and
/// the hard one too when privileged (up to fs.nr_open). Returns the limits now in force.
pub fn raise_nofile_limit(wanted: u64) -> NofileLimit {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return NofileLimit { soft: 0, hard: 0 };
    };
    if wanted > hard {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let target = wanted.min(nr_open);
        if target > hard && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
            return NofileLimit {
                soft: target,
                hard: target,
            };
        }
    }
    let target = wanted.clamp(soft, hard);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        return NofileLimit { soft: target, hard };
    }
    NofileLimit { soft, hard }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Family;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("epollscope-net-{tag}-{}.sock", std::process::id()))
    }

    #[test]
    fn stale_socket_is_removed_live_one_and_plain_file_refused() {
        let path = temp_path("stale");
        let addr = SockAddr::unix(&path);
        let mut t = Tracer::new("main");
        let live = listen_on(&mut t, "L", &addr, ListenOptions::default()).unwrap();
        assert!(matches!(
            prepare_unix_path(&path),
            Err(SetupError::PathInUse(_))
        ));
        crate::sys::close(live.fd).unwrap();
        // The file stays behind after close: a stale socket, removable.
        assert!(prepare_unix_path(&path).unwrap());
        assert!(!path.exists());

        std::fs::write(&path, b"precious").unwrap();
        let err = prepare_unix_path(&path).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn clients_connect_and_an_unreachable_address_says_so() {
        let mut t = Tracer::new("main");
        let any = SockAddr::ip("[::1]:0".parse().unwrap());
        let listener = listen_on(&mut t, "L", &any, ListenOptions::default()).unwrap();
        let c = connect_to(&mut t, "C", &listener.addr, false).unwrap();
        let e = t.epoll_create1("E", 0).unwrap();
        t.epoll_add(e, listener.fd, crate::Interest::IN | crate::Interest::ET)
            .unwrap();
        assert_eq!(t.epoll_wait(e, 4, 0, false).unwrap().len(), 1);
        assert_eq!(t.epoll_delete(e, listener.fd), Ok(()));
        for fd in [c, e, listener.fd] {
            crate::sys::close(fd).unwrap();
        }
        let err = connect_to(&mut t, "C2", &listener.addr, false).unwrap_err();
        assert!(err.to_string().contains("connect [::1]:"), "{err}");
        assert!(
            err.to_string()
                .ends_with("ECONNREFUSED (Connection refused)"),
            "{err}"
        );
    }

    #[test]
    fn port_taken_is_reported_as_such() {
        let mut t = Tracer::new("main");
        let any = SockAddr::ip(std::net::SocketAddr::new(
            Family::Inet.loopback().unwrap(),
            0,
        ));
        let first = listen_on(&mut t, "L1", &any, ListenOptions::default()).unwrap();
        let err = listen_on(&mut t, "L2", &first.addr, ListenOptions::default()).unwrap_err();
        assert!(matches!(err, SetupError::AddrInUse { .. }), "{err}");
        crate::sys::close(first.fd).unwrap();
    }
}

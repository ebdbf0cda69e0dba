//! Fastsocket's per-core listen table, emulated with SO_REUSEPORT on a modern kernel.
//!
//! What it reproduces:
//! * **listen_spawn**: at a worker's first epoll_ctl(ADD) of a listener inherited from the
//!   process that called listen() (so: after fork), the worker gets its own listener: a new
//!   socket with the same options, SO_REUSEPORT, bound to the same address, listening with the
//!   same backlog, dup3'd onto the same fd number with the original O_NONBLOCK/FD_CLOEXEC.
//!   The kernel then hashes new connections across the workers' listeners (the per-core
//!   listen table), and no worker is woken for another's connection (herd avoidance).
//! * **Retiring the global listener**: the inherited listener stays open in the master (and
//!   would stay in the reuseport group, getting a share of connections nobody accepts). The
//!   first worker to spawn therefore shuts it down for reading, which takes it out of the
//!   group while keeping it bound; a process that later registers it in its own epoll set
//!   (a master that serves) makes it listen again.
//! * **Privilege drop**: a reuseport group admits only sockets created by the same user, and
//!   servers switch their workers to an unprivileged user before registering the listener.
//!   So each forked child gets its socket right after fork, with its parent's credentials,
//!   and the spawn uses it.
//! * **Locality** (see [`super::locality`]): each worker pinned to a CPU at its spawn, and
//!   its listener steered to take the connections processed on that CPU.
//!
//! A master's listener with connections queued is not retired (they stay for the master to
//! accept); one that a connection reaches just as it is retired, and a worker's listener
//! that closes with connections queued, lose them (the kernel resets them), unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14), which
//! moves them to another listener of the group: the shim reports the setting at start and
//! leaves it alone (it is the system's). With it at 0, serve once the workers are ready.
//!
//! What it cannot: the per-core established table, Receive Flow Deliver and VFS-light sockets
//! are kernel internals without a user-space equivalent; unix sockets have no reuseport.

use nix::errno::Errno;

use super::locality::Locality;
use super::{Backend, EmulationOptions, FastPath, ListenTable, PeerAddr};
use crate::sys::{self, RawFd};

pub struct EmulatedBackend {
    table: ListenTable,
    options: EmulationOptions,
    locality: Locality,
}

impl EmulatedBackend {
    pub fn new(options: EmulationOptions) -> EmulatedBackend {
        EmulatedBackend {
            table: ListenTable::new(),
            options,
            locality: Locality::new(),
        }
    }
}

/// One line on what happens to connections queued on a listener when it is closed.
pub fn migrate_note() -> String {
    match std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").map(|s| s.trim().to_string()) {
        Ok(v) if v == "1" => "net.ipv4.tcp_migrate_req=1: connections queued on a retired or closing listener migrate to another".into(),
        Ok(_) => "net.ipv4.tcp_migrate_req=0: connections still queued on a listener when it is retired or closed are reset (set it to 1 to migrate them)".into(),
        Err(_) => "no tcp_migrate_req on this kernel: connections still queued on a listener when it is retired or closed are reset".into(),
    }
}

/// Whether `fd` is a TCP socket (the only kind with a reuseport group to join).
fn is_tcp(fd: RawFd) -> Option<(i32, i32, i32)> {
    let domain = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    let ty = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()?;
    let protocol = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()?;
    ((domain == libc::AF_INET || domain == libc::AF_INET6) && ty == libc::SOCK_STREAM)
        .then_some((domain, ty, protocol))
}

/// Options a spawned listener copies from the one it replaces (those accepted sockets inherit
/// or that change which connections the listener takes).
const COPIED: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
    (libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
];

/// The bound address of `fd`, in kernel layout.
fn local_addr(fd: RawFd) -> Result<PeerAddr, Errno> {
    sys::getsockname_raw(fd)
}

/// A new listener like `fd`: same family, options and address, SO_REUSEPORT, listening.
/// Returns the new fd (close-on-exec; the caller moves it).
fn new_listener_like(
    fd: RawFd,
    (domain, ty, protocol): (i32, i32, i32),
    backlog: i32,
    prepared: Option<RawFd>,
    options: EmulationOptions,
    locality: &Locality,
) -> Result<RawFd, Errno> {
    let addr = match local_addr(fd) {
        Ok(a) => a,
        Err(e) => {
            if let Some(p) = prepared {
                let _ = sys::close(p);
            }
            return Err(e);
        }
    };
    let new = match prepared {
        Some(p) => p,
        None => sys::socket(domain, ty | libc::SOCK_CLOEXEC, protocol)?,
    };
    let setup = (|| {
        for &(level, name) in COPIED {
            if let Ok(v) = sys::getsockopt_int(fd, level, name)
                && v != 0
            {
                sys::setsockopt_int(new, level, name, v)?;
            }
        }
        if domain == libc::AF_INET6 {
            let v6only = sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
            sys::setsockopt_int(new, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only)?;
        }
        sys::setsockopt_int(new, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        locality.before_listen(new, options.pin, options.steer)?;
        sys::bind(new, &addr)?;
        locality.listen(fd, new, backlog, options.steer)
    })();
    match setup {
        Ok(()) => Ok(new),
        Err(e) => {
            let _ = sys::close(new);
            Err(e)
        }
    }
}

/// Makes a retired listener listen again. A listener bound to port 0 lost its port when it
/// stopped listening, so it is bound again to the address it had (EINVAL: it kept its port).
fn revive(fd: RawFd, backlog: i32) {
    if let Ok(addr) = local_addr(fd) {
        let _ = sys::bind(fd, &addr);
    }
    let _ = sys::listen(fd, backlog);
}

impl FastPath for EmulatedBackend {
    fn backend(&self) -> Backend {
        Backend::Emulated
    }

    fn table(&self) -> &ListenTable {
        &self.table
    }

    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<RawFd, Errno> {
        sys::socket(domain, ty, protocol)
    }

    /// All sockets of a reuseport group must set SO_REUSEPORT before bind, the global one too.
    fn before_bind(&self, fd: RawFd) {
        if is_tcp(fd).is_some() {
            let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
        }
    }

    fn listen(&self, fd: RawFd, backlog: i32) -> Result<(), Errno> {
        sys::listen(fd, backlog)?;
        self.table
            .mark_listen(fd, std::process::id() as i32, backlog);
        Ok(())
    }

    /// An accept on a listener a worker retired (see `spawn_listen`), by the listening
    /// process or a worker that has not spawned, fails with EINVAL, which it would never see
    /// natively: the listener listens again and the accept is retried.
    fn accept4(
        &self,
        fd: RawFd,
        mut peer: Option<&mut PeerAddr>,
        flags: i32,
    ) -> Result<RawFd, Errno> {
        match sys::accept4_raw(fd, peer.as_deref_mut(), flags) {
            Err(Errno::EINVAL) => match self.table.get(fd) {
                Some(e) => {
                    self.locality.revive(fd, || revive(fd, e.backlog));
                    sys::accept4_raw(fd, peer, flags)
                }
                None => Err(Errno::EINVAL),
            },
            other => other,
        }
    }

    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        let pid = std::process::id() as i32;
        let spawned_here = self.table.get(fd).is_some_and(|e| e.spawned_in == pid);
        if let Some(prepared) = self.table.forget(fd) {
            let _ = sys::close(prepared);
        }
        self.locality
            .close_listener(fd, spawned_here, || sys::close(fd))
    }

    /// Creates, with the credentials the child still shares with its parent, the socket each
    /// inherited listener will be spawned on (see [`ListenTable::set_prepared`]).
    fn after_fork_child(&self) {
        self.locality.after_fork_child();
        let pid = std::process::id() as i32;
        for (fd, entry) in self.table.listeners() {
            if entry.owner == pid || entry.spawned_in == pid {
                continue;
            }
            let Some((domain, ty, protocol)) = is_tcp(fd) else {
                continue;
            };
            if let Ok(sock) = sys::socket(domain, ty | libc::SOCK_CLOEXEC, protocol)
                && let Some(old) = self.table.set_prepared(fd, sock)
            {
                // The parent's own prepared socket, inherited: this child has its own now.
                let _ = sys::close(old);
            }
        }
    }

    fn after_fork_parent(&self) {
        self.locality.after_fork_parent();
    }

    fn locality_notice(&self) -> Option<String> {
        self.locality.notice()
    }

    /// A listener the program shuts down itself is not one to revive (see `accept4`).
    fn shutdown(&self, fd: RawFd, how: i32) -> Result<(), Errno> {
        sys::shutdown(fd, how)?;
        if how != libc::SHUT_WR
            && let Some(prepared) = self.table.forget(fd)
        {
            let _ = sys::close(prepared);
        }
        Ok(())
    }

    fn spawn_listen(&self, fd: RawFd, _cpu: i32) -> Result<(), Errno> {
        let Some(entry) = self.table.get(fd) else {
            return Err(Errno::EINVAL);
        };
        let Some(kind) = is_tcp(fd) else {
            return Err(Errno::EOPNOTSUPP);
        };
        let status = sys::fcntl_getfl(fd)?;
        let fd_flags = sys::fcntl_getfd(fd)?;
        let prepared = self.table.take_prepared(fd);
        let new = new_listener_like(
            fd,
            kind,
            entry.backlog,
            prepared,
            self.options,
            &self.locality,
        )?;
        // The worker has its own listener now: take the shared one out of the reuseport group
        // so that it gets no share of the connections (nobody accepts on it). SHUT_RD on a
        // listener stops it listening but keeps it bound; ENOTCONN means another worker was
        // first. It also resets the connections queued on it, which the program may still
        // accept (its parent can): a listener with a queue is left listening. A connection
        // that completes between the look and the shutdown is still lost; nothing in the
        // socket API closes that window.
        if sys::tcp_accept_queue(fd) == Ok(0) {
            let _ = self.locality.retire(fd, new);
        }
        let result = (|| {
            if status & libc::O_NONBLOCK != 0 {
                sys::fcntl_setfl(new, libc::O_NONBLOCK)?;
            }
            let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 {
                libc::O_CLOEXEC
            } else {
                0
            };
            // Onto the number the caller registers: replacing it is the point.
            sys::dup3(new, fd, cloexec)
        })();
        let _ = sys::close(new);
        result.map(drop)
    }

    fn has_queue(&self, fd: RawFd) -> bool {
        sys::tcp_accept_queue(fd).is_ok_and(|n| n > 0)
    }

    /// Spawn only in a process other than the one that called listen (a forked worker).
    /// Registering its own, retired, listener makes the listening process listen again.
    fn wants_spawn(&self, fd: RawFd, pid: i32) -> bool {
        match self.table.get(fd) {
            Some(e) if e.owner != pid => e.spawned_in != pid,
            Some(e) => {
                if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(0) {
                    self.locality.revive(fd, || revive(fd, e.backlog));
                }
                false
            }
            None => false,
        }
    }
}

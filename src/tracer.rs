//! Traced system calls: a [`Tracer`] makes each call through [`crate::sys`] and records it as a
//! [`trace::Event`](crate::trace::Event), naming fds, ports and paths as it goes so that the
//! symbolic rendering stays stable across runs.
//!
//! A forked child keeps a copy of its parent's tracer (and so of its names), records its own
//! calls under its own actor name, and ships them back as JSON; the parent [`Tracer::absorb`]s
//! them in the order it chooses, which is what makes multi-process traces deterministic.

mod epoll;
mod generic;
mod sockets;
pub use generic::Described;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::unistd::ForkResult;

use crate::addr::SockAddr;
use crate::sys::{RawAddr, RawFd};
use crate::trace::{AddrRef, Call, Event, FdRef, Format, Ret};

/// Role names for the numbers that appear in a trace.
#[derive(Clone, Debug, Default)]
struct Names {
    fds: HashMap<RawFd, String>,
    /// epoll user data → the name it had when registered (outlives the fd, as in the kernel).
    data: HashMap<u64, String>,
    ports: HashMap<u16, String>,
    paths: HashMap<PathBuf, String>,
}

impl Names {
    fn alias(&mut self, addr: &SockAddr) -> Option<String> {
        match addr {
            SockAddr::Unix { path } => {
                let n = self.paths.len();
                Some(
                    self.paths
                        .entry(path.clone())
                        .or_insert_with(|| numbered("PATH", n))
                        .clone(),
                )
            }
            SockAddr::Inet { addr } if addr.port() == 0 => None,
            SockAddr::Inet { addr } => {
                let n = self.ports.len();
                Some(
                    self.ports
                        .entry(addr.port())
                        .or_insert_with(|| numbered("PORT", n))
                        .clone(),
                )
            }
        }
    }
}

/// `PORT`, `PORT2`, `PORT3`...: the first needs no number.
fn numbered(base: &str, existing: usize) -> String {
    if existing == 0 {
        base.to_string()
    } else {
        format!("{base}{}", existing + 1)
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A live rendering of the trace: the format, and where each rendered line goes.
pub type Echo = (Format, fn(&str));

/// Records the calls of one process (one actor), or of one thread of it.
#[derive(Debug)]
pub struct Tracer {
    actor: String,
    pid: i32,
    /// Shared by the threads of a process, as its fd table is; a clone or a fork copies it.
    names: Arc<Mutex<Names>>,
    events: Vec<Event>,
    /// Where each event goes as it is recorded, rendered (the library itself never prints).
    echo: Option<Echo>,
}

impl Clone for Tracer {
    fn clone(&self) -> Tracer {
        Tracer {
            actor: self.actor.clone(),
            pid: self.pid,
            names: Arc::new(Mutex::new(self.names().clone())),
            events: self.events.clone(),
            echo: self.echo,
        }
    }
}

impl Tracer {
    pub fn new(actor: impl Into<String>) -> Tracer {
        Tracer {
            actor: actor.into(),
            pid: std::process::id() as i32,
            names: Arc::default(),
            events: Vec::new(),
            echo: None,
        }
    }

    /// The tracer of a new thread `actor` (task `tid`) of this process: its own events, the
    /// same names (the threads share one fd table).
    pub fn thread(&self, actor: impl Into<String>, tid: i32) -> Tracer {
        Tracer {
            actor: actor.into(),
            pid: tid,
            names: Arc::clone(&self.names),
            events: Vec::new(),
            echo: self.echo,
        }
    }

    fn names(&self) -> MutexGuard<'_, Names> {
        // A thread that panicked holding the lock left the names whole: each change is one
        // insert or remove.
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Also hand each event, rendered in `format`, to `sink` as it is recorded (or absorbed).
    pub fn set_echo(&mut self, echo: Option<Echo>) {
        self.echo = echo;
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The id its events carry: the process's, or the thread's for a thread's tracer.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Adds an event recorded by another process (a forked child) to this trace.
    pub fn absorb(&mut self, event: Event) {
        self.push(event);
    }

    /// The role name of an fd number, if it has one.
    pub fn name_of(&self, fd: RawFd) -> Option<String> {
        self.names().fds.get(&fd).cloned()
    }

    /// Gives an fd a role name (for fds made outside the tracer, such as inherited ones).
    pub fn name_fd(&mut self, fd: RawFd, name: impl Into<String>) {
        self.names().fds.insert(fd, name.into());
    }

    /// The alias an address has (or now gets) in symbolic traces: `PATH`, `PORT2`...
    pub fn alias(&mut self, addr: &SockAddr) -> Option<String> {
        self.names().alias(addr)
    }

    /// The alias an address already has, without assigning one.
    pub fn alias_of(&self, addr: &SockAddr) -> Option<String> {
        match addr {
            SockAddr::Unix { path } => self.names().paths.get(path).cloned(),
            SockAddr::Inet { addr } => self.names().ports.get(&addr.port()).cloned(),
        }
    }

    /// Fixes the alias of an address's path or port (the scenario runner names them `ADDR`).
    /// Port 0 is never aliased: binding to it shows as `htons(0)`.
    pub fn set_alias(&mut self, addr: &SockAddr, alias: &str) {
        match addr {
            SockAddr::Unix { path } => {
                self.names().paths.insert(path.clone(), alias.to_string());
            }
            SockAddr::Inet { addr } if addr.port() != 0 => {
                self.names().ports.insert(addr.port(), alias.to_string());
            }
            SockAddr::Inet { .. } => {}
        }
    }

    fn fd_ref(&self, fd: RawFd) -> FdRef {
        FdRef {
            num: fd,
            name: self.names().fds.get(&fd).cloned(),
        }
    }

    fn addr_ref(&mut self, addr: &SockAddr, raw: &RawAddr) -> AddrRef {
        AddrRef {
            addr: addr.clone(),
            len: raw.len(),
            alias: self.names().alias(addr),
        }
    }

    fn push(&mut self, event: Event) {
        if let Some((format, sink)) = self.echo {
            sink(&event.render(format));
        }
        self.events.push(event);
    }

    /// Runs `f` and records the call that `describe` builds from its result.
    fn traced<T>(
        &mut self,
        f: impl FnOnce() -> Result<T, Errno>,
        describe: impl FnOnce(&mut Self, &Result<T, Errno>) -> (Call, Ret),
    ) -> Result<T, Errno> {
        let time_us = now_us();
        let started = Instant::now();
        let result = f();
        let dur_us = started.elapsed().as_micros() as u64;
        let (call, ret) = describe(self, &result);
        let event = Event {
            actor: self.actor.clone(),
            pid: self.pid,
            time_us,
            dur_us,
            call,
            ret,
            resumed: false,
            slept: false,
            stability: Default::default(),
        };
        self.push(event);
        result
    }

    /// The Ret for a call that returns a new fd, naming it on success. An empty name leaves
    /// the fd unnamed (shown by number), replacing any stale name the number had.
    fn new_fd_ret(&mut self, result: &Result<RawFd, Errno>, name: &str) -> Ret {
        match result {
            Ok(fd) if name.is_empty() => {
                self.names().fds.remove(fd);
                Ret::value(i64::from(*fd))
            }
            Ok(fd) => {
                self.names().fds.insert(*fd, name.to_string());
                Ret::Ok {
                    value: i64::from(*fd),
                    name: Some(name.to_string()),
                }
            }
            Err(e) => Ret::Err { errno: *e },
        }
    }

    /// fork(2). The parent records `fork() = <child_name>`; the child's tracer takes the actor
    /// name `child_name`, its own pid, and an empty event list (its calls are its own).
    ///
    /// Flushes stdout first so buffered output is not written twice (a bug of the original tools).
    pub fn fork(&mut self, child_name: &str) -> Result<ForkResult, Errno> {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let time_us = now_us();
        let started = Instant::now();
        // Callers fork from single-threaded processes (the tools), or from an actor whose
        // other threads are idle or asleep in a system call: none holds a lock the child
        // could inherit.
        let result = crate::sys::process::fork();
        let ret = match result {
            // The child's calls are its own: it starts a fresh list and records no fork.
            Ok(ForkResult::Child) => {
                self.events.clear();
                // The child's names are its own from now on (its fd table is a copy).
                let own = self.names().clone();
                self.names = Arc::new(Mutex::new(own));
                self.actor = child_name.to_string();
                self.pid = std::process::id() as i32;
                return result;
            }
            Ok(ForkResult::Parent { child }) => Ret::Ok {
                value: i64::from(child.as_raw()),
                name: Some(child_name.to_string()),
            },
            Err(e) => Ret::Err { errno: e },
        };
        let event = Event {
            actor: self.actor.clone(),
            pid: self.pid,
            time_us,
            dur_us: started.elapsed().as_micros() as u64,
            call: Call::Fork,
            ret,
            resumed: false,
            slept: false,
            stability: Default::default(),
        };
        self.push(event);
        result
    }
}

fn unit_ret(r: &Result<(), Errno>) -> Ret {
    match r {
        Ok(()) => Ret::value(0),
        Err(e) => Ret::Err { errno: *e },
    }
}

fn size_ret(r: &Result<usize, Errno>) -> Ret {
    match r {
        Ok(n) => Ret::value(*n as i64),
        Err(e) => Ret::Err { errno: *e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Family;
    use crate::sys;
    use crate::trace::render_all;

    #[test]
    fn socketpair_free_sequence_is_named_and_symbolic() {
        let mut t = Tracer::new("main");
        let l = t
            .socket("L", Family::Inet, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
            .unwrap();
        t.bind(l, &SockAddr::ip("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        t.listen(l, 8).unwrap();
        let bound = t.getsockname(l).unwrap();
        let e = t.epoll_create1("E", libc::EPOLL_CLOEXEC).unwrap();
        t.epoll_ctl(
            e,
            libc::EPOLL_CTL_ADD,
            l,
            Some(((libc::EPOLLIN | libc::EPOLLET) as u32, l as u64)),
        )
        .unwrap();
        assert!(t.epoll_wait(e, 16, 0, false).unwrap().is_empty());
        let c = t.socket("C1", Family::Inet, libc::SOCK_STREAM).unwrap();
        t.connect(c, &bound).unwrap();
        assert_eq!(t.epoll_wait(e, 16, 0, false).unwrap().len(), 1);
        let a = t.accept4("A1", l, libc::SOCK_NONBLOCK).unwrap();
        assert_eq!(t.accept4("A2", l, libc::SOCK_NONBLOCK), Err(Errno::EAGAIN));
        sys::close(a).unwrap();
        for fd in [c, l, e] {
            t.close(fd).unwrap();
        }
        let text = render_all(t.events(), Format::SYMBOLIC);
        let expected = "\
socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK, 0) = L
bind(L, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0
listen(L, 8) = 0
getsockname(L, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, [128 => 16]) = 0
epoll_create1(EPOLL_CLOEXEC) = E
epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN|EPOLLET, data={u64=L}}) = 0
epoll_wait(E, [], 16, 0) = 0
socket(AF_INET, SOCK_STREAM, 0) = C1
connect(C1, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, 16) = 0
epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1
accept4(L, ..., SOCK_NONBLOCK) = A1
accept4(L, ..., SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)
close(C1) = 0
close(L) = 0
close(E) = 0
";
        assert_eq!(text, expected);
    }
}

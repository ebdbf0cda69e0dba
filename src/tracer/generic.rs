//! Tracing a call described by its parts ([`Part`]): what the calls of the scenario language
//! beyond sockets and epoll (pipes, eventfds, timerfds, poll, datagrams) use, so that each needs
//! only its `sys` function and a description, not a new formatter.

use nix::errno::Errno;

use super::Tracer;
use crate::addr::SockAddr;
use crate::sys::{RawAddr, RawFd};
use crate::trace::{AddrRef, Call, Part, Ret};

/// How a finished call reads: its arguments, its return, and what it wrote back (shown after
/// the return value, as strace shows poll's revents).
pub struct Described {
    pub args: Vec<Part>,
    pub ret: Ret,
    pub detail: Option<Part>,
}

impl Tracer {
    /// Makes the call `f` and records it as `name(args)`, described from its result.
    pub fn sys<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<T, Errno>,
        describe: impl FnOnce(&mut Tracer, &Result<T, Errno>) -> Described,
    ) -> Result<T, Errno> {
        self.traced(f, |t, r| {
            let d = describe(t, r);
            (
                Call::Sys {
                    name: name.to_string(),
                    args: d.args,
                    detail: d.detail,
                },
                d.ret,
            )
        })
    }

    /// An fd argument, named if it has a name.
    pub fn fd_part(&self, fd: RawFd) -> Part {
        Part::Fd(self.fd_ref(fd))
    }

    /// An address argument, with the alias its port or path has (or now gets).
    pub fn addr_part(&mut self, addr: &SockAddr) -> Part {
        let raw = RawAddr::from(addr);
        Part::Addr(AddrRef {
            addr: addr.clone(),
            len: raw.len(),
            alias: self.names().alias(addr),
        })
    }

    /// An epoll event as the kernel reported it, its data named as when it was registered.
    pub fn epoll_event_part(&self, events: u32, data: u64) -> Part {
        Part::Struct(vec![
            (
                "events".into(),
                Part::text(crate::names::epoll_events_name(events)),
            ),
            (
                "data".into(),
                Part::Struct(vec![(
                    "u64".into(),
                    Part::Named {
                        name: self.names().data.get(&data).cloned(),
                        raw: data.to_string(),
                    },
                )]),
            ),
        ])
    }

    /// Names the fds a call made (`pipe2`'s two ends) and returns them as parts.
    pub fn name_new_fds(&mut self, fds: &[RawFd], names: &[String]) -> Vec<Part> {
        for (&fd, name) in fds.iter().zip(names) {
            self.names().fds.insert(fd, name.clone());
        }
        fds.iter().map(|&fd| self.fd_part(fd)).collect()
    }

    /// The return of a call that makes one fd, naming it (an empty name leaves it unnamed).
    pub fn fd_ret(&mut self, result: &Result<RawFd, Errno>, name: &str) -> Ret {
        self.new_fd_ret(result, name)
    }
}

//! Socket calls and the fd calls that go with them (close, shutdown, dup, read, write).

use nix::errno::Errno;

use super::{Tracer, size_ret, unit_ret};
use crate::addr::{Family, SockAddr};
use crate::sys::{self, RawAddr, RawFd};
use crate::trace::{Call, Event, Ret};

impl Tracer {
    pub fn socket(&mut self, name: &str, family: Family, ty: i32) -> Result<RawFd, Errno> {
        let domain = family.raw();
        self.traced(
            || sys::socket(domain, ty, 0),
            |t, r| {
                let ret = t.new_fd_ret(r, name);
                (
                    Call::Socket {
                        domain,
                        ty,
                        protocol: 0,
                    },
                    ret,
                )
            },
        )
    }

    pub fn setsockopt(
        &mut self,
        fd: RawFd,
        level: i32,
        option: i32,
        value: i32,
    ) -> Result<(), Errno> {
        self.traced(
            || sys::setsockopt_int(fd, level, option, value),
            |t, r| {
                (
                    Call::Setsockopt {
                        fd: t.fd_ref(fd),
                        level,
                        option,
                        value,
                    },
                    unit_ret(r),
                )
            },
        )
    }

    pub fn bind(&mut self, fd: RawFd, addr: &SockAddr) -> Result<(), Errno> {
        let raw = RawAddr::from(addr);
        self.traced(
            || sys::bind(fd, &raw),
            |t, r| {
                let addr = t.addr_ref(addr, &raw);
                (
                    Call::Bind {
                        fd: t.fd_ref(fd),
                        addr,
                    },
                    unit_ret(r),
                )
            },
        )
    }

    pub fn listen(&mut self, fd: RawFd, backlog: i32) -> Result<(), Errno> {
        self.traced(
            || sys::listen(fd, backlog),
            |t, r| {
                (
                    Call::Listen {
                        fd: t.fd_ref(fd),
                        backlog,
                    },
                    unit_ret(r),
                )
            },
        )
    }

    pub fn getsockname(&mut self, fd: RawFd) -> Result<SockAddr, Errno> {
        self.traced(
            || sys::getsockname(fd),
            |t, r| {
                let addr = r.as_ref().ok().map(|a| {
                    let raw = RawAddr::from(a);
                    t.addr_ref(a, &raw)
                });
                (
                    Call::Getsockname {
                        fd: t.fd_ref(fd),
                        addr,
                    },
                    r.as_ref()
                        .map_or_else(|e| Ret::Err { errno: *e }, |_| Ret::value(0)),
                )
            },
        )
    }

    pub fn connect(&mut self, fd: RawFd, addr: &SockAddr) -> Result<(), Errno> {
        let raw = RawAddr::from(addr);
        self.traced(
            || sys::connect(fd, &raw),
            |t, r| {
                let addr = t.addr_ref(addr, &raw);
                (
                    Call::Connect {
                        fd: t.fd_ref(fd),
                        addr,
                    },
                    unit_ret(r),
                )
            },
        )
    }

    /// accept4; the new fd gets `name`.
    pub fn accept4(&mut self, name: &str, fd: RawFd, flags: i32) -> Result<RawFd, Errno> {
        self.traced(
            || sys::accept4(fd, flags).map(|(new_fd, _peer)| new_fd),
            |t, r| {
                let call = Call::Accept4 {
                    fd: t.fd_ref(fd),
                    flags,
                };
                (call, t.new_fd_ret(r, name))
            },
        )
    }

    /// Plain accept (accept4 with no flags, traced under its own name).
    pub fn accept(&mut self, name: &str, fd: RawFd) -> Result<RawFd, Errno> {
        self.traced(
            || sys::accept4(fd, 0).map(|(new_fd, _peer)| new_fd),
            |t, r| {
                let call = Call::Accept { fd: t.fd_ref(fd) };
                (call, t.new_fd_ret(r, name))
            },
        )
    }

    /// close(2). The fd keeps its name until the number is reused, so a later call that uses
    /// the stale number (EPOLL_CTL_DEL after close) still reads `L` in symbolic traces.
    pub fn close(&mut self, fd: RawFd) -> Result<(), Errno> {
        self.traced(
            || sys::close(fd),
            |t, r| (Call::Close { fd: t.fd_ref(fd) }, unit_ret(r)),
        )
    }

    pub fn shutdown(&mut self, fd: RawFd, how: i32) -> Result<(), Errno> {
        self.traced(
            || sys::shutdown(fd, how),
            |t, r| {
                (
                    Call::Shutdown {
                        fd: t.fd_ref(fd),
                        how,
                    },
                    unit_ret(r),
                )
            },
        )
    }

    pub fn dup(&mut self, name: &str, fd: RawFd) -> Result<RawFd, Errno> {
        self.traced(
            || sys::dup(fd),
            |t, r| {
                let call = Call::Dup { fd: t.fd_ref(fd) };
                (call, t.new_fd_ret(r, name))
            },
        )
    }

    /// dup2 onto `target`, which takes the name `name`.
    pub fn dup2(&mut self, name: &str, fd: RawFd, target: RawFd) -> Result<RawFd, Errno> {
        let target_ref = self.fd_ref(target);
        self.traced(
            || sys::dup2(fd, target),
            |t, r| {
                let call = Call::Dup2 {
                    fd: t.fd_ref(fd),
                    target: target_ref,
                };
                (call, t.new_fd_ret(r, name))
            },
        )
    }

    pub fn read(&mut self, fd: RawFd, count: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; count];
        let n = self.traced(
            || sys::read(fd, &mut buf),
            |t, r| {
                let call = Call::Read {
                    fd: t.fd_ref(fd),
                    data: Vec::new(),
                    count,
                };
                (call, size_ret(r))
            },
        )?;
        buf.truncate(n);
        if let Some(Event {
            call: Call::Read { data, .. },
            ..
        }) = self.events.last_mut()
        {
            data.clone_from(&buf);
        }
        Ok(buf)
    }

    pub fn write(&mut self, fd: RawFd, data: &[u8]) -> Result<usize, Errno> {
        self.traced(
            || sys::write(fd, data),
            |t, r| {
                let call = Call::Write {
                    fd: t.fd_ref(fd),
                    data: data.to_vec(),
                };
                (call, size_ret(r))
            },
        )
    }
}

//! epoll calls: the instance, its interest list (data naming a registered fd is named after
//! it), and waits.

use nix::errno::Errno;

use super::{Tracer, unit_ret};
use crate::sys::{self, RawFd};
use crate::trace::{Call, EpollEv, Ret};

impl Tracer {
    pub fn epoll_create1(&mut self, name: &str, flags: i32) -> Result<RawFd, Errno> {
        self.traced(
            || sys::epoll_create1(flags),
            |t, r| {
                let ret = t.new_fd_ret(r, name);
                (Call::EpollCreate1 { flags }, ret)
            },
        )
    }

    /// epoll_ctl with `event = Some((mask, data))`, or `None` for DEL. Data that equals the
    /// number of a named fd is named after it in symbolic traces.
    pub fn epoll_ctl(
        &mut self,
        epfd: RawFd,
        op: i32,
        fd: RawFd,
        event: Option<(u32, u64)>,
    ) -> Result<(), Errno> {
        self.traced(
            || sys::epoll_ctl(epfd, op, fd, event),
            |t, r| {
                let event = event.map(|(events, data)| {
                    let data_name = i32::try_from(data)
                        .ok()
                        .and_then(|n| t.names().fds.get(&n).cloned());
                    if let Some(name) = &data_name {
                        t.names().data.insert(data, name.clone());
                    }
                    EpollEv {
                        events,
                        data,
                        data_name,
                    }
                });
                let call = Call::EpollCtl {
                    epfd: t.fd_ref(epfd),
                    op,
                    fd: t.fd_ref(fd),
                    event,
                };
                (call, unit_ret(r))
            },
        )
    }

    /// EPOLL_CTL_ADD of `fd` with `interest`, the fd's number as the user data (as most
    /// event loops do).
    pub fn epoll_add(
        &mut self,
        epfd: RawFd,
        fd: RawFd,
        interest: crate::epoll::Interest,
    ) -> Result<(), Errno> {
        self.epoll_register(epfd, libc::EPOLL_CTL_ADD, fd, interest)
    }

    /// EPOLL_CTL_MOD of `fd` to `interest` (re-arms a one-shot registration).
    pub fn epoll_modify(
        &mut self,
        epfd: RawFd,
        fd: RawFd,
        interest: crate::epoll::Interest,
    ) -> Result<(), Errno> {
        self.epoll_register(epfd, libc::EPOLL_CTL_MOD, fd, interest)
    }

    fn epoll_register(
        &mut self,
        epfd: RawFd,
        op: i32,
        fd: RawFd,
        interest: crate::epoll::Interest,
    ) -> Result<(), Errno> {
        self.epoll_ctl(epfd, op, fd, Some((interest.bits(), fd as u64)))
    }

    /// EPOLL_CTL_DEL of `fd`.
    pub fn epoll_delete(&mut self, epfd: RawFd, fd: RawFd) -> Result<(), Errno> {
        self.epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, None)
    }

    /// epoll_wait (or epoll_pwait), returning (events, data) pairs.
    pub fn epoll_wait(
        &mut self,
        epfd: RawFd,
        maxevents: usize,
        timeout_ms: i32,
        pwait: bool,
    ) -> Result<Vec<(u32, u64)>, Errno> {
        self.traced(
            || sys::epoll_wait(epfd, maxevents, timeout_ms, pwait),
            |t, r| {
                let events = r
                    .as_ref()
                    .map(|evs| {
                        evs.iter()
                            .map(|&(events, data)| EpollEv {
                                events,
                                data,
                                data_name: t.names().data.get(&data).cloned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let call = Call::EpollWait {
                    epfd: t.fd_ref(epfd),
                    events,
                    maxevents: maxevents as i32,
                    timeout: timeout_ms,
                    pwait,
                };
                let ret = match r {
                    Ok(evs) => Ret::value(evs.len() as i64),
                    Err(e) => Ret::Err { errno: *e },
                };
                (call, ret)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::SockAddr;
    use crate::trace::{Format, render_all};

    #[test]
    fn oneshot_registration_is_rearmed_by_epoll_modify() {
        use crate::epoll::Interest;
        let mut t = Tracer::new("main");
        let any = SockAddr::ip("127.0.0.1:0".parse().unwrap());
        let l =
            crate::net::listen_on(&mut t, "L", &any, crate::net::ListenOptions::default()).unwrap();
        let e = t.epoll_create1("E", 0).unwrap();
        let oneshot = Interest::IN | Interest::ONESHOT;
        t.epoll_add(e, l.fd, oneshot).unwrap();
        let c = crate::net::connect_to(&mut t, "C", &l.addr, false).unwrap();
        assert_eq!(
            t.epoll_wait(e, 4, 0, false).unwrap(),
            [(libc::EPOLLIN as u32, l.fd as u64)]
        );
        assert!(
            t.epoll_wait(e, 4, 0, false).unwrap().is_empty(),
            "disabled after one event"
        );
        t.epoll_modify(e, l.fd, oneshot).unwrap();
        assert_eq!(t.epoll_wait(e, 4, 0, false).unwrap().len(), 1, "re-armed");
        let text = render_all(t.events(), Format::SYMBOLIC);
        assert!(text.contains(
            "epoll_ctl(E, EPOLL_CTL_MOD, L, {events=EPOLLIN|EPOLLONESHOT, data={u64=L}}) = 0"
        ));
        for fd in [c, e, l.fd] {
            sys::close(fd).unwrap();
        }
    }
}

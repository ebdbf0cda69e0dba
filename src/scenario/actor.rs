//! An actor: one process of a scenario. It waits for commands from the runner, makes each call
//! through a [`Tracer`], and replies with the traced events and the outcome.
//!
//! The channel is a SOCK_SEQPACKET socketpair (one message per command or reply) parked on a
//! high fd number, so the scenario's own fds are numbered as in a fresh process. A `fork`
//! makes a new channel for the child and hands the runner its end with SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use crate::addr::{Family, SockAddr};
use crate::sys;
use crate::trace::{Call, Event, FdRef, Ret};
use crate::tracer::Tracer;

/// Where an actor keeps its channel: far above the fds a scenario creates.
const CHANNEL_FD_MIN: i32 = 900;
/// Largest message on the channel.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A call with every name resolved to a number and every address to a real one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Resolved {
    Socket {
        family: Family,
        ty: i32,
    },
    Setsockopt {
        fd: i32,
        level: i32,
        option: i32,
        value: i32,
    },
    Bind {
        fd: i32,
        addr: SockAddr,
    },
    Listen {
        fd: i32,
        backlog: i32,
    },
    Connect {
        fd: i32,
        addr: SockAddr,
    },
    Accept {
        fd: i32,
    },
    Accept4 {
        fd: i32,
        flags: i32,
    },
    Close {
        fd: i32,
    },
    Shutdown {
        fd: i32,
        how: i32,
    },
    Dup {
        fd: i32,
    },
    Dup2 {
        fd: i32,
        target: i32,
    },
    Read {
        fd: i32,
        count: usize,
    },
    Write {
        fd: i32,
        data: Vec<u8>,
    },
    EpollCreate1 {
        flags: i32,
    },
    EpollCtl {
        epfd: i32,
        op: i32,
        fd: i32,
        event: Option<(u32, u64)>,
    },
    EpollWait {
        epfd: i32,
        maxevents: i32,
        timeout: i32,
        pwait: bool,
    },
    Fork,
    Drain {
        fd: i32,
    },
    Exit {
        code: i32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Command {
    pub op: Resolved,
    /// The name a new fd (or forked actor) takes; empty for none.
    pub name: String,
    pub background: bool,
    /// Addresses and the names symbolic traces give them.
    pub aliases: Vec<(SockAddr, String)>,
}

/// What a call produced, beyond its trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The return value, or the errno name on failure.
    pub result: Result<i64, String>,
    /// epoll_wait's events, (mask, data).
    pub events: Vec<(u32, u64)>,
    /// read's bytes.
    pub data: Vec<u8>,
    /// After a bind: the address the kernel really bound (the port chosen for port 0).
    pub bound: Option<SockAddr>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            result: Ok(0),
            events: vec![],
            data: vec![],
            bound: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The actor is up and serving (its first message): a runner that gets EOF instead knows
    /// the actor never started, whatever the timing of its exit.
    Ready,
    /// A background call is about to start: its unfinished event.
    Started(Event),
    /// The call finished. A fork's reply carries the child's channel as SCM_RIGHTS.
    Done {
        events: Vec<Event>,
        outcome: Outcome,
    },
}

/// Sends one message, with an fd attached if given.
pub fn send(chan: RawFd, msg: &impl Serialize, fd: Option<RawFd>) -> Result<(), Errno> {
    let bytes = serde_json::to_vec(msg).expect("messages serialise");
    let iov = [IoSlice::new(&bytes)];
    let fds;
    let cmsgs: Vec<ControlMessage> = match fd {
        Some(fd) => {
            fds = [fd];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => vec![],
    };
    sendmsg::<()>(chan, &iov, &cmsgs, MsgFlags::empty(), None).map(drop)
}

/// Receives one message and any fd passed with it. `Ok(None)` at EOF (the peer is gone).
pub fn recv<T: for<'de> Deserialize<'de>>(
    chan: RawFd,
) -> Result<Option<(T, Option<OwnedFd>)>, Errno> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            chan,
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fd = None;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel just installed these fds in our table; we own them now.
                fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        return Ok(None);
    }
    let value = serde_json::from_slice(&buf[..len]).map_err(|_| Errno::EBADMSG)?;
    Ok(Some((value, fd)))
}

/// A SEQPACKET socketpair (close-on-exec: the channel is never the scenario's business).
pub fn channel_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Moves `fd` to a number at or above [`CHANNEL_FD_MIN`].
fn park(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    let high = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(CHANNEL_FD_MIN))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// The fd on which an exec'd actor finds its channel.
const EXEC_CHANNEL_FD: i32 = 3;

/// An actor program to exec, prepared before fork (no allocation happens after it).
pub struct ExecPlan {
    exe: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
}

impl ExecPlan {
    pub fn new(exe: &std::path::Path, extra_env: &[(String, String)]) -> Result<ExecPlan, String> {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |b: &[u8]| std::ffi::CString::new(b).map_err(|e| e.to_string());
        let mut envp = vec![];
        for (k, v) in std::env::vars_os() {
            if extra_env
                .iter()
                .any(|(ek, _)| ek.as_bytes() == k.as_bytes())
            {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstr(&kv)?);
        }
        for (k, v) in extra_env {
            envp.push(cstr(format!("{k}={v}").as_bytes())?);
        }
        Ok(ExecPlan {
            exe: cstr(exe.as_os_str().as_bytes())?,
            argv: vec![cstr(b"epollscope")?, cstr(b"__actor")?],
            envp,
        })
    }

    /// In the forked child: puts the channel on fd 3 and execs; exits 127 if exec fails.
    pub fn exec(self, chan: OwnedFd) -> ! {
        let raw = chan.as_raw_fd();
        // SAFETY: dup2 onto fd 3 in a child that owns its whole fd table; dup2 clears
        // FD_CLOEXEC on the copy, which is what lets the channel survive exec.
        let moved = unsafe { libc::dup2(raw, EXEC_CHANNEL_FD) };
        if moved < 0 {
            std::process::exit(127);
        }
        if raw == EXEC_CHANNEL_FD {
            // dup2 onto itself keeps FD_CLOEXEC; clear it by hand.
            let _ = nix::fcntl::fcntl(
                &chan,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
            std::mem::forget(chan);
        }
        let _ = nix::unistd::execve(&self.exe, &self.argv, &self.envp);
        std::process::exit(127)
    }
}

/// The main of an exec'd actor (`epollscope __actor`): serve on the channel left on fd 3.
pub fn actor_main() -> ! {
    // SAFETY: the runner put the channel on fd 3 before exec; nothing else in this fresh
    // program owns it.
    let chan = unsafe { OwnedFd::from_raw_fd(EXEC_CHANNEL_FD) };
    become_actor("main", chan)
}

/// Becomes an actor in a freshly forked process: closes every fd but stdio and the channel
/// (so fd numbers start at 3 as in a new program) and serves commands until told to exit.
pub fn become_actor(name: &str, chan: OwnedFd) -> ! {
    let chan = park(chan).unwrap_or_else(|_| std::process::exit(120));
    let keep = chan.as_raw_fd();
    // SAFETY: closing every fd but stdio and the channel; nothing in this fresh child owns them.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3, keep - 1, 0);
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0);
    }
    // As servers do: a write to a reset connection fails with EPIPE instead of killing the
    // process, which is the behaviour scenarios want to show.
    // SAFETY: SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    if send(chan.as_raw_fd(), &Reply::Ready, None).is_err() {
        std::process::exit(0);
    }
    let mut tracer = Tracer::new(name);
    serve(&mut tracer, chan)
}

fn serve(tracer: &mut Tracer, mut chan: OwnedFd) -> ! {
    loop {
        let command: Command = match recv(chan.as_raw_fd()) {
            Ok(Some((command, _))) => command,
            _ => std::process::exit(0),
        };
        for (addr, alias) in &command.aliases {
            tracer.set_alias(addr, alias);
        }
        if command.background {
            let started = unfinished(tracer, &command.op);
            if send(chan.as_raw_fd(), &Reply::Started(started), None).is_err() {
                std::process::exit(0);
            }
        }
        if let Resolved::Exit { code } = command.op {
            std::process::exit(code);
        }
        if let Resolved::Fork = command.op {
            chan = fork_actor(tracer, chan, &command.name);
            continue;
        }
        let outcome = execute(tracer, &command);
        let events = tracer.take_events();
        if send(chan.as_raw_fd(), &Reply::Done { events, outcome }, None).is_err() {
            std::process::exit(0);
        }
    }
}

/// Forks a new actor. Returns the channel this process goes on serving: its own in the
/// parent, the child's new one in the child.
fn fork_actor(tracer: &mut Tracer, chan: OwnedFd, child_name: &str) -> OwnedFd {
    let Ok((ours, theirs)) = channel_pair() else {
        let outcome = Outcome {
            result: Err("EMFILE".into()),
            ..Outcome::default()
        };
        let _ = send(
            chan.as_raw_fd(),
            &Reply::Done {
                events: vec![],
                outcome,
            },
            None,
        );
        return chan;
    };
    let result = tracer.fork(child_name);
    match result {
        Ok(ForkResult::Child) => {
            drop(chan);
            drop(theirs);
            park(ours).unwrap_or_else(|_| std::process::exit(120))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ours);
            let outcome = Outcome {
                result: Ok(i64::from(child.as_raw())),
                ..Outcome::default()
            };
            let events = tracer.take_events();
            let reply = Reply::Done { events, outcome };
            if send(chan.as_raw_fd(), &reply, Some(theirs.as_raw_fd())).is_err() {
                std::process::exit(0);
            }
            chan
        }
        Err(e) => {
            let outcome = Outcome {
                result: Err(format!("{e:?}")),
                ..Outcome::default()
            };
            let events = tracer.take_events();
            let _ = send(chan.as_raw_fd(), &Reply::Done { events, outcome }, None);
            chan
        }
    }
}

/// The event for a background call that has not returned yet.
fn unfinished(tracer: &Tracer, op: &Resolved) -> Event {
    let fd_ref = |fd: i32| FdRef {
        num: fd,
        name: tracer.name_of(fd).map(str::to_string),
    };
    let call = match op {
        Resolved::EpollWait {
            epfd,
            maxevents,
            timeout,
            pwait,
        } => Call::EpollWait {
            epfd: fd_ref(*epfd),
            events: vec![],
            maxevents: *maxevents,
            timeout: *timeout,
            pwait: *pwait,
        },
        Resolved::Accept { fd } => Call::Accept { fd: fd_ref(*fd) },
        Resolved::Accept4 { fd, flags } => Call::Accept4 {
            fd: fd_ref(*fd),
            flags: *flags,
        },
        Resolved::Read { fd, count } => Call::Read {
            fd: fd_ref(*fd),
            data: vec![],
            count: *count,
        },
        Resolved::Connect { fd, addr } => Call::Connect {
            fd: fd_ref(*fd),
            addr: crate::trace::AddrRef {
                addr: addr.clone(),
                len: sys::RawAddr::from(addr).len(),
                alias: tracer.alias_of(addr),
            },
        },
        other => unreachable!("the parser allows no {other:?} in the background"),
    };
    Event {
        actor: tracer.actor().to_string(),
        pid: std::process::id() as i32,
        time_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64),
        dur_us: 0,
        call,
        ret: Ret::Unfinished,
        resumed: false,
        stability: Default::default(),
    }
}

fn number(r: Result<i32, Errno>) -> Result<i64, String> {
    r.map(i64::from).map_err(|e| format!("{e:?}"))
}

fn unit(r: Result<(), Errno>) -> Result<i64, String> {
    r.map(|()| 0).map_err(|e| format!("{e:?}"))
}

fn execute(t: &mut Tracer, command: &Command) -> Outcome {
    let name = command.name.as_str();
    let mut outcome = Outcome::default();
    outcome.result = match &command.op {
        Resolved::Socket { family, ty } => number(t.socket(name, *family, *ty)),
        Resolved::Setsockopt {
            fd,
            level,
            option,
            value,
        } => unit(t.setsockopt(*fd, *level, *option, *value)),
        Resolved::Bind { fd, addr } => {
            let r = t.bind(*fd, addr);
            if r.is_ok() {
                outcome.bound = match addr {
                    SockAddr::Unix { .. } => Some(addr.clone()),
                    SockAddr::Inet { .. } => sys::getsockname(*fd).ok(),
                };
            }
            unit(r)
        }
        Resolved::Listen { fd, backlog } => unit(t.listen(*fd, *backlog)),
        Resolved::Connect { fd, addr } => unit(t.connect(*fd, addr)),
        Resolved::Accept { fd } => number(t.accept(name, *fd)),
        Resolved::Accept4 { fd, flags } => number(t.accept4(name, *fd, *flags)),
        Resolved::Close { fd } => unit(t.close(*fd)),
        Resolved::Shutdown { fd, how } => unit(t.shutdown(*fd, *how)),
        Resolved::Dup { fd } => number(t.dup(name, *fd)),
        Resolved::Dup2 { fd, target } => number(t.dup2(name, *fd, *target)),
        Resolved::Read { fd, count } => match t.read(*fd, *count) {
            Ok(data) => {
                let n = data.len() as i64;
                outcome.data = data;
                Ok(n)
            }
            Err(e) => Err(format!("{e:?}")),
        },
        Resolved::Write { fd, data } => t
            .write(*fd, data)
            .map(|n| n as i64)
            .map_err(|e| format!("{e:?}")),
        Resolved::EpollCreate1 { flags } => number(t.epoll_create1(name, *flags)),
        Resolved::EpollCtl {
            epfd,
            op,
            fd,
            event,
        } => unit(t.epoll_ctl(*epfd, *op, *fd, *event)),
        Resolved::EpollWait {
            epfd,
            maxevents,
            timeout,
            pwait,
        } => {
            let max = usize::try_from(*maxevents).unwrap_or(0);
            match t.epoll_wait(*epfd, max, *timeout, *pwait) {
                Ok(events) => {
                    let n = events.len() as i64;
                    outcome.events = events;
                    Ok(n)
                }
                Err(e) => Err(format!("{e:?}")),
            }
        }
        Resolved::Drain { fd } => Ok(drain(t, *fd)),
        Resolved::Fork | Resolved::Exit { .. } => unreachable!("handled by serve"),
    };
    outcome
}

/// Accepts every connection queued on `fd` without blocking, closes them, and traces the
/// whole as one `drain(L) = N` line.
fn drain(t: &mut Tracer, fd: i32) -> i64 {
    let start = std::time::Instant::now();
    let mut count = 0;
    loop {
        let mut pfd = [nix::poll::PollFd::new(
            // SAFETY: fd is the scenario's listener, open for the duration of this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::poll::PollFlags::POLLIN,
        )];
        if !matches!(nix::poll::poll(&mut pfd, 0u16), Ok(1)) {
            break;
        }
        match sys::accept4(fd, libc::SOCK_NONBLOCK) {
            Ok((conn, _)) => {
                let _ = sys::close(conn);
                count += 1;
            }
            Err(_) => break,
        }
    }
    let event = Event {
        actor: t.actor().to_string(),
        pid: std::process::id() as i32,
        time_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64),
        dur_us: start.elapsed().as_micros() as u64,
        call: Call::Builtin {
            name: "drain".into(),
            args: vec![FdRef {
                num: fd,
                name: t.name_of(fd).map(str::to_string),
            }],
        },
        ret: Ret::value(count),
        resumed: false,
        stability: Default::default(),
    };
    t.absorb(event);
    count
}

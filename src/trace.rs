//! Trace events and their one formatter, in strace's syntax.
//!
//! Every call the tools, the scenario runner and the preload shim make becomes an [`Event`].
//! An event carries both the real values (fd numbers, ports, paths, pid, time) and the symbolic
//! names given to them when they were created (`L` for a listener, `PORT` for an ephemeral
//! port), so one event renders two ways:
//!
//! * [`Rendering::Symbolic`]: names instead of numbers, no times or pids; stable across runs,
//!   which is what snapshots compare.
//! * [`Rendering::Raw`]: real numbers, with `[pid N] HH:MM:SS.micros` like `strace -f -tt` and
//!   the call's duration like `strace -T`.
//!
//! Events serialise to JSON (serde), which is also how child processes ship theirs to a parent.

use std::fmt::Write as _;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

mod parts;
pub use parts::Part;

use crate::addr::SockAddr;
use crate::names::{
    EPOLL_CREATE_FLAGS, EPOLL_OPS, SHUT_HOW, SOCK_FLAGS, domain_name, name_of, socket_type_name,
    sockopt_level_name, sockopt_name,
};
pub use crate::names::{epoll_events_name, parse_epoll_events};

/// An fd as it appeared in a call: its number and, if it has one, its role name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdRef {
    pub num: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An address as it appeared in a call, with the alias its port or path has in symbolic traces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrRef {
    pub addr: SockAddr,
    pub len: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// One epoll_event: the event mask and the 64-bit user data (named when it holds a known fd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEv {
    pub events: u32,
    pub data: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_name: Option<String>,
}

/// A system call and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Socket {
        domain: i32,
        ty: i32,
        protocol: i32,
    },
    Setsockopt {
        fd: FdRef,
        level: i32,
        option: i32,
        value: i32,
    },
    Bind {
        fd: FdRef,
        addr: AddrRef,
    },
    Listen {
        fd: FdRef,
        backlog: i32,
    },
    Getsockname {
        fd: FdRef,
        addr: Option<AddrRef>,
    },
    Connect {
        fd: FdRef,
        addr: AddrRef,
    },
    Accept {
        fd: FdRef,
    },
    Accept4 {
        fd: FdRef,
        flags: i32,
    },
    Close {
        fd: FdRef,
    },
    Shutdown {
        fd: FdRef,
        how: i32,
    },
    Dup {
        fd: FdRef,
    },
    Dup2 {
        fd: FdRef,
        target: FdRef,
    },
    Read {
        fd: FdRef,
        data: Vec<u8>,
        count: usize,
    },
    Write {
        fd: FdRef,
        data: Vec<u8>,
    },
    EpollCreate1 {
        flags: i32,
    },
    EpollCtl {
        epfd: FdRef,
        op: i32,
        fd: FdRef,
        event: Option<EpollEv>,
    },
    EpollWait {
        epfd: FdRef,
        events: Vec<EpollEv>,
        maxevents: i32,
        timeout: i32,
        #[serde(default)]
        pwait: bool,
    },
    Fork,
    /// A built-in of the scenario runner (not a system call), e.g. `drain(L)`.
    Builtin {
        name: String,
        args: Vec<FdRef>,
    },
    /// A call rendered from its parts: `name(args...)`, and on success ` = N (detail)` as
    /// strace shows what poll wrote back.
    Sys {
        name: String,
        args: Vec<Part>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Part>,
    },
    /// A line the runner adds to a trace: a checked aggregate, a phase. Rendered `# text`.
    Note {
        text: String,
    },
}

/// What a call returned: a value (optionally named: a new fd's role, a child's name) or an errno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    Ok {
        value: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Err {
        #[serde(with = "errno_name")]
        errno: Errno,
    },
    /// The call was started in the background and has not returned yet.
    Unfinished,
}

impl Ret {
    pub fn value(v: i64) -> Ret {
        Ret::Ok {
            value: v,
            name: None,
        }
    }

    pub fn errno(&self) -> Option<Errno> {
        match self {
            Ret::Err { errno } => Some(*errno),
            Ret::Ok { .. } | Ret::Unfinished => None,
        }
    }
}

/// One traced call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The process's role in the experiment (`main`, `child`, `w2`...).
    pub actor: String,
    pub pid: i32,
    /// Wall-clock start of the call, microseconds since the Unix epoch.
    pub time_us: u64,
    /// How long the call took, in microseconds.
    pub dur_us: u64,
    #[serde(flatten)]
    pub call: Call,
    pub ret: Ret,
    /// This is the return of a call whose start was traced earlier as unfinished.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resumed: bool,
    /// The calling thread slept in the call: it blocked and something woke it. The preload
    /// shim measures this (the thread's voluntary context switches across the call) for the
    /// calls that can block; the timelines mark such a return as a wake-up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub slept: bool,
    /// How the symbolic rendering treats an outcome that may differ between runs.
    #[serde(default, skip_serializing_if = "Stability::is_stable")]
    pub stability: Stability,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether an event's outcome is the same on every run. Symbolic traces are compared across
/// runs, so what may vary (which of four herd waiters woke) is shown as a pattern or left out;
/// the raw rendering always shows what happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stability {
    #[default]
    Stable,
    /// Symbolic rendering shows `= <pattern>` and hides output arguments.
    Pattern(String),
    /// Symbolic rendering leaves the event out.
    Hidden,
}

impl Stability {
    pub fn is_stable(&self) -> bool {
        *self == Stability::Stable
    }
}

/// Which values a rendering shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// Role names, no time or pid: stable across runs.
    Symbolic,
    /// Real numbers, pid, time of day and duration.
    Raw,
}

/// How to render events: which values, and whether to say which actor made each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub rendering: Rendering,
    pub actors: bool,
}

impl Format {
    pub const SYMBOLIC: Format = Format {
        rendering: Rendering::Symbolic,
        actors: false,
    };
    pub const RAW: Format = Format {
        rendering: Rendering::Raw,
        actors: false,
    };

    pub fn with_actors(self, actors: bool) -> Format {
        Format { actors, ..self }
    }
}

impl Event {
    /// Renders the event as one strace-like line (no trailing newline); `None` when the
    /// symbolic rendering leaves it out (see [`Stability`]).
    pub fn render_line(&self, format: Format) -> Option<String> {
        if format.rendering == Rendering::Symbolic && self.stability == Stability::Hidden {
            return None;
        }
        Some(self.render(format))
    }

    /// Renders the event as one strace-like line (no trailing newline).
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        if let Call::Note { text } = &self.call {
            out.push_str("# ");
            out.push_str(text);
            return out;
        }
        match format.rendering {
            Rendering::Symbolic => {
                if format.actors {
                    let _ = write!(out, "[{}] ", self.actor);
                }
            }
            Rendering::Raw => {
                if format.actors {
                    let _ = write!(out, "[pid {:>6}] ", self.pid);
                }
                out.push_str(&time_of_day(self.time_us));
                out.push(' ');
            }
        }
        let pattern = match (&self.stability, format.rendering) {
            (Stability::Pattern(p), Rendering::Symbolic) => Some(p.as_str()),
            _ => None,
        };
        let r = Renderer {
            rendering: format.rendering,
            hide_outputs: pattern.is_some() || self.ret == Ret::Unfinished,
        };
        if self.resumed {
            out.push_str("<... resumed> ");
        }
        r.call(&mut out, &self.call);
        match (pattern, &self.ret) {
            (_, Ret::Unfinished) => out.push_str(" <unfinished ...>"),
            (Some(p), _) => {
                out.push_str(" = ");
                out.push_str(p);
            }
            (None, ret) => {
                out.push_str(" = ");
                r.ret(&mut out, ret);
                if let (
                    Call::Sys {
                        detail: Some(detail),
                        ..
                    },
                    Ret::Ok { .. },
                ) = (&self.call, ret)
                {
                    out.push_str(" (");
                    r.part(&mut out, detail);
                    out.push(')');
                }
            }
        }
        if format.rendering == Rendering::Raw && self.ret != Ret::Unfinished {
            let _ = write!(
                out,
                " <{}.{:06}>",
                self.dur_us / 1_000_000,
                self.dur_us % 1_000_000
            );
        }
        out
    }
}

/// Renders a whole trace, one line per event.
pub fn render_all(events: &[Event], format: Format) -> String {
    let mut out = String::new();
    for line in events.iter().filter_map(|e| e.render_line(format)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `HH:MM:SS.micros` (UTC), as `strace -tt` prints it.
fn time_of_day(time_us: u64) -> String {
    let secs = time_us / 1_000_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        time_us % 1_000_000
    )
}

struct Renderer {
    rendering: Rendering,
    /// Show output arguments (epoll_wait's events, read's data) as `...`: they may vary.
    hide_outputs: bool,
}

impl Renderer {
    fn symbolic(&self) -> bool {
        self.rendering == Rendering::Symbolic
    }

    fn fd(&self, out: &mut String, fd: &FdRef) {
        match (&fd.name, self.symbolic()) {
            (Some(name), true) => out.push_str(name),
            _ => {
                let _ = write!(out, "{}", fd.num);
            }
        }
    }

    fn addr(&self, out: &mut String, a: &AddrRef) {
        let alias = a.alias.as_deref().filter(|_| self.symbolic());
        match &a.addr {
            SockAddr::Unix { path } => {
                out.push_str("{sa_family=AF_UNIX, sun_path=");
                match alias {
                    Some(alias) => out.push_str(alias),
                    None => {
                        let _ = write!(out, "{:?}", path.display().to_string());
                    }
                }
                out.push('}');
            }
            SockAddr::Inet { addr } => {
                let port = match alias {
                    Some(alias) => alias.to_string(),
                    None => addr.port().to_string(),
                };
                match addr {
                    std::net::SocketAddr::V4(v4) => {
                        let _ = write!(
                            out,
                            "{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr(\"{}\")}}",
                            v4.ip()
                        );
                    }
                    std::net::SocketAddr::V6(v6) => {
                        let _ = write!(
                            out,
                            "{{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl({}), \
                             inet_pton(AF_INET6, \"{}\", &sin6_addr), sin6_scope_id={}}}",
                            v6.flowinfo(),
                            v6.ip(),
                            v6.scope_id()
                        );
                    }
                }
            }
        }
        let _ = write!(out, ", {}", a.len);
    }

    /// Renders `items` separated by `, `.
    fn list<T>(&self, out: &mut String, items: &[T], item: fn(&Self, &mut String, &T)) {
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            item(self, out, x);
        }
    }

    fn epoll_event(&self, out: &mut String, ev: &EpollEv) {
        out.push_str("{events=");
        out.push_str(&epoll_events_name(ev.events));
        out.push_str(", data={u64=");
        match (&ev.data_name, self.symbolic()) {
            (Some(name), true) => out.push_str(name),
            _ => {
                let _ = write!(out, "{}", ev.data);
            }
        }
        out.push_str("}}");
    }

    fn call(&self, out: &mut String, call: &Call) {
        match call {
            Call::Socket {
                domain,
                ty,
                protocol,
            } => {
                let _ = write!(
                    out,
                    "socket({}, {}, {protocol})",
                    domain_name(*domain),
                    socket_type_name(*ty)
                );
            }
            Call::Setsockopt {
                fd,
                level,
                option,
                value,
            } => {
                out.push_str("setsockopt(");
                self.fd(out, fd);
                let _ = write!(
                    out,
                    ", {}, {}, [{value}], 4)",
                    sockopt_level_name(*level),
                    sockopt_name(*level, *option)
                );
            }
            Call::Bind { fd, addr } | Call::Connect { fd, addr } => {
                out.push_str(if matches!(call, Call::Bind { .. }) {
                    "bind("
                } else {
                    "connect("
                });
                self.fd(out, fd);
                out.push_str(", ");
                self.addr(out, addr);
                out.push(')');
            }
            Call::Listen { fd, backlog } => {
                out.push_str("listen(");
                self.fd(out, fd);
                let _ = write!(out, ", {backlog})");
            }
            Call::Getsockname { fd, addr } => {
                out.push_str("getsockname(");
                self.fd(out, fd);
                out.push_str(", ");
                match addr {
                    Some(a) => {
                        // strace shows the in/out length as [in => out]; ours is always full.
                        let mut tmp = String::new();
                        self.addr(&mut tmp, a);
                        let (sa, len) = tmp.rsplit_once(", ").unwrap_or((&tmp, "0"));
                        let _ = write!(out, "{sa}, [128 => {len}]");
                    }
                    None => out.push_str("..."),
                }
                out.push(')');
            }
            Call::Accept { fd } => {
                out.push_str("accept(");
                self.fd(out, fd);
                out.push_str(", ...)");
            }
            Call::Accept4 { fd, flags } => {
                out.push_str("accept4(");
                self.fd(out, fd);
                let _ = write!(
                    out,
                    ", ..., {})",
                    crate::names::flags_name(*flags, SOCK_FLAGS)
                );
            }
            Call::Close { fd } => {
                out.push_str("close(");
                self.fd(out, fd);
                out.push(')');
            }
            Call::Shutdown { fd, how } => {
                out.push_str("shutdown(");
                self.fd(out, fd);
                let _ = write!(out, ", {})", name_of(SHUT_HOW, *how));
            }
            Call::Dup { fd } => {
                out.push_str("dup(");
                self.fd(out, fd);
                out.push(')');
            }
            Call::Dup2 { fd, target } => {
                out.push_str("dup2(");
                self.fd(out, fd);
                out.push_str(", ");
                self.fd(out, target);
                out.push(')');
            }
            Call::Read { fd, data, count } => {
                out.push_str("read(");
                self.fd(out, fd);
                let shown = if self.hide_outputs {
                    "...".to_string()
                } else {
                    quote_bytes(data)
                };
                let _ = write!(out, ", {shown}, {count})");
            }
            Call::Write { fd, data } => {
                out.push_str("write(");
                self.fd(out, fd);
                let _ = write!(out, ", {}, {})", quote_bytes(data), data.len());
            }
            Call::EpollCreate1 { flags } => {
                let _ = write!(
                    out,
                    "epoll_create1({})",
                    crate::names::flags_name(*flags, EPOLL_CREATE_FLAGS)
                );
            }
            Call::EpollCtl {
                epfd,
                op,
                fd,
                event,
            } => {
                out.push_str("epoll_ctl(");
                self.fd(out, epfd);
                let _ = write!(out, ", {}, ", name_of(EPOLL_OPS, *op));
                self.fd(out, fd);
                out.push_str(", ");
                match event {
                    Some(ev) => self.epoll_event(out, ev),
                    None => out.push_str("NULL"),
                }
                out.push(')');
            }
            Call::EpollWait {
                epfd,
                events,
                maxevents,
                timeout,
                pwait,
            } => {
                out.push_str(if *pwait {
                    "epoll_pwait("
                } else {
                    "epoll_wait("
                });
                self.fd(out, epfd);
                if self.hide_outputs {
                    out.push_str(", [...]");
                } else {
                    out.push_str(", [");
                    self.list(out, events, Self::epoll_event);
                    out.push(']');
                }
                let _ = write!(out, ", {maxevents}, {timeout}");
                if *pwait {
                    out.push_str(", [], 8");
                }
                out.push(')');
            }
            Call::Fork => out.push_str("fork()"),
            Call::Builtin { name, args } => {
                out.push_str(name);
                out.push('(');
                self.list(out, args, Self::fd);
                out.push(')');
            }
            Call::Sys { name, args, .. } => {
                out.push_str(name);
                out.push('(');
                self.list(out, args, Self::part);
                out.push(')');
            }
            Call::Note { text } => {
                out.push_str("# ");
                out.push_str(text);
            }
        }
    }

    fn ret(&self, out: &mut String, ret: &Ret) {
        match ret {
            Ret::Ok {
                name: Some(name), ..
            } if self.symbolic() => out.push_str(name),
            Ret::Ok { value, .. } => {
                let _ = write!(out, "{value}");
            }
            Ret::Err { errno } => {
                let _ = write!(out, "-1 {errno:?} ({})", errno_text(*errno));
            }
            Ret::Unfinished => out.push('?'),
        }
    }
}

/// The C library's text for an errno, as strace prints it ("Resource temporarily unavailable";
/// nix's own table has the kernel headers' shorter wording, "Try again").
pub fn errno_text(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    match text.rsplit_once(" (os error") {
        Some((head, _)) => head.to_string(),
        None => text,
    }
}

/// Quotes bytes like strace: C escapes, octal for the rest, at most 32 bytes then `...`.
pub fn quote_bytes(data: &[u8]) -> String {
    const SHOWN: usize = 32;
    let mut out = String::from("\"");
    for &b in data.iter().take(SHOWN) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:o}");
            }
        }
    }
    out.push('"');
    if data.len() > SHOWN {
        out.push_str("...");
    }
    out
}

pub use crate::names::errno_from_name;

/// Serialises an errno by its name (`"EAGAIN"`), as people read it.
mod errno_name {
    use nix::errno::Errno;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(errno: &Errno, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{errno:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Errno, D::Error> {
        let name = String::deserialize(d)?;
        super::errno_from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown errno name {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(num: i32, name: &str) -> FdRef {
        FdRef {
            num,
            name: Some(name.into()),
        }
    }

    fn event(call: Call, ret: Ret) -> Event {
        Event {
            actor: "main".into(),
            pid: 4242,
            time_us: 1_700_000_000_123_456,
            dur_us: 12,
            call,
            ret,
            resumed: false,
            slept: false,
            stability: Stability::Stable,
        }
    }

    #[test]
    fn epoll_ctl_renders_like_strace_in_both_renderings() {
        let e = event(
            Call::EpollCtl {
                epfd: fd(4, "E"),
                op: libc::EPOLL_CTL_ADD,
                fd: fd(3, "L"),
                event: Some(EpollEv {
                    events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                    data: 3,
                    data_name: Some("L".into()),
                }),
            },
            Ret::value(0),
        );
        assert_eq!(
            e.render(Format::SYMBOLIC),
            "epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN|EPOLLET, data={u64=L}}) = 0"
        );
        assert_eq!(
            e.render(Format::RAW.with_actors(true)),
            "[pid   4242] 22:13:20.123456 epoll_ctl(4, EPOLL_CTL_ADD, 3, \
             {events=EPOLLIN|EPOLLET, data={u64=3}}) = 0 <0.000012>"
        );
    }

    #[test]
    fn epoll_wait_and_errors() {
        let wait = event(
            Call::EpollWait {
                epfd: fd(4, "E"),
                events: vec![EpollEv {
                    events: libc::EPOLLIN as u32,
                    data: 3,
                    data_name: Some("L".into()),
                }],
                maxevents: 16,
                timeout: 0,
                pwait: false,
            },
            Ret::value(1),
        );
        assert_eq!(
            wait.render(Format::SYMBOLIC),
            "epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1"
        );
        let accept = event(
            Call::Accept4 {
                fd: fd(3, "L"),
                flags: libc::SOCK_NONBLOCK,
            },
            Ret::Err {
                errno: Errno::EAGAIN,
            },
        );
        assert_eq!(
            accept.render(Format::SYMBOLIC),
            "accept4(L, ..., SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)"
        );
    }

    #[test]
    fn addresses_use_aliases_only_when_symbolic() {
        let e = event(
            Call::Connect {
                fd: fd(5, "C1"),
                addr: AddrRef {
                    addr: SockAddr::ip("127.0.0.1:40123".parse().unwrap()),
                    len: 16,
                    alias: Some("PORT".into()),
                },
            },
            Ret::Err {
                errno: Errno::EINPROGRESS,
            },
        );
        assert_eq!(
            e.render(Format::SYMBOLIC),
            "connect(C1, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, 16) \
             = -1 EINPROGRESS (Operation now in progress)"
        );
        assert!(e.render(Format::RAW).contains("htons(40123)"));
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = event(
            Call::Socket {
                domain: libc::AF_UNIX,
                ty: libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                protocol: 0,
            },
            Ret::Err {
                errno: Errno::EMFILE,
            },
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"call\":\"socket\""), "{json}");
        assert!(json.contains("\"errno\":\"EMFILE\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(
            e.render(Format::SYMBOLIC),
            "socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0) = -1 EMFILE (Too many open files)"
        );
    }

    #[test]
    fn background_calls_and_varying_outcomes() {
        let call = Call::EpollWait {
            epfd: fd(4, "E"),
            events: vec![EpollEv {
                events: libc::EPOLLIN as u32,
                data: 3,
                data_name: Some("L".into()),
            }],
            maxevents: 16,
            timeout: -1,
            pwait: false,
        };
        let mut started = event(call.clone(), Ret::Unfinished);
        started.actor = "w1".into();
        assert_eq!(
            started.render(Format::SYMBOLIC.with_actors(true)),
            "[w1] epoll_wait(E, [...], 16, -1) <unfinished ...>"
        );
        let mut done = event(call, Ret::value(1));
        done.resumed = true;
        done.stability = Stability::Pattern("0..1".into());
        assert_eq!(
            done.render(Format::SYMBOLIC),
            "<... resumed> epoll_wait(E, [...], 16, -1) = 0..1"
        );
        assert!(
            done.render(Format::RAW)
                .contains("[{events=EPOLLIN, data={u64=3}}], 16, -1) = 1")
        );
        done.stability = Stability::Hidden;
        assert_eq!(done.render_line(Format::SYMBOLIC), None);
        assert!(done.render_line(Format::RAW).is_some());
        let note = event(
            Call::Note {
                text: "woken(w1, w2) = 1".into(),
            },
            Ret::value(0),
        );
        assert_eq!(note.render(Format::SYMBOLIC), "# woken(w1, w2) = 1");
    }

    #[test]
    fn flags_parse_and_render() {
        let v = parse_epoll_events("in|ET|EPOLLRDHUP").unwrap();
        assert_eq!(epoll_events_name(v), "EPOLLIN|EPOLLRDHUP|EPOLLET");
        assert_eq!(epoll_events_name(0x10), "EPOLLHUP");
        assert_eq!(epoll_events_name(0x0800_0000), "0x8000000");
        assert!(parse_epoll_events("IN|BOGUS").is_err());
        assert_eq!(quote_bytes(b"hi\n\x01"), "\"hi\\n\\1\"");
    }
}

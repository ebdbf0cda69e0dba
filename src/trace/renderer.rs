//! How each call's arguments and return value read, in strace's syntax: fd names or numbers,
//! addresses with their aliases, epoll events, errnos, quoted bytes.

use std::fmt::Write as _;

use nix::errno::Errno;

use super::{AddrRef, Call, EpollEv, FdRef, Rendering, Ret, epoll_events_name};
use crate::addr::SockAddr;
use crate::names::{
    EPOLL_CREATE_FLAGS, EPOLL_OPS, SHUT_HOW, SOCK_FLAGS, domain_name, name_of, socket_type_name,
    sockopt_level_name, sockopt_name,
};

pub(super) struct Renderer {
    pub(super) rendering: Rendering,
    /// Show output arguments (epoll_wait's events, read's data) as `...`: they may vary.
    pub(super) hide_outputs: bool,
}

impl Renderer {
    pub(super) fn symbolic(&self) -> bool {
        self.rendering == Rendering::Symbolic
    }

    pub(super) fn fd(&self, out: &mut String, fd: &FdRef) {
        match (&fd.name, self.symbolic()) {
            (Some(name), true) => out.push_str(name),
            _ => {
                let _ = write!(out, "{}", fd.num);
            }
        }
    }

    pub(super) fn addr(&self, out: &mut String, a: &AddrRef) {
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
    pub(super) fn list<T>(&self, out: &mut String, items: &[T], item: fn(&Self, &mut String, &T)) {
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

    pub(super) fn call(&self, out: &mut String, call: &Call) {
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

    pub(super) fn ret(&self, out: &mut String, ret: &Ret) {
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

//! The arguments of calls traced as a list of parts ([`super::Call::Sys`]): pipes, eventfds,
//! timerfds, poll, datagrams. Each part knows how it reads symbolically (fd names, address
//! aliases) and raw (numbers), so a new call needs no new formatter code.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::renderer::Renderer;
use super::{AddrRef, FdRef};

/// One argument (or a piece of one) of a traced call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// An fd: its name when symbolic, its number when raw.
    Fd(FdRef),
    /// A value with a role name (epoll data that holds a named fd): the name when symbolic,
    /// `raw` when raw.
    Named { name: Option<String>, raw: String },
    /// Text that reads the same in both renderings: a number, flags, a timespec.
    Text(String),
    /// An address with the alias its port or path has, and its length.
    Addr(AddrRef),
    /// `[a, b]`
    List(Vec<Part>),
    /// `{key=value, ...}`
    Struct(Vec<(String, Part)>),
    /// What the kernel wrote back (read bytes, poll's revents): `...` while the call has not
    /// returned or when its outcome may vary between runs.
    Out(Box<Part>),
}

impl Part {
    pub fn text(text: impl Into<String>) -> Part {
        Part::Text(text.into())
    }

    pub fn num(n: impl std::fmt::Display) -> Part {
        Part::Text(n.to_string())
    }
}

impl Renderer {
    pub(super) fn part(&self, out: &mut String, part: &Part) {
        match part {
            Part::Fd(fd) => self.fd(out, fd),
            Part::Text(text) => out.push_str(text),
            Part::Named {
                name: Some(name), ..
            } if self.symbolic() => out.push_str(name),
            Part::Named { raw, .. } => out.push_str(raw),
            Part::Addr(addr) => self.addr(out, addr),
            Part::List(items) => {
                out.push('[');
                self.list(out, items, Self::part);
                out.push(']');
            }
            Part::Struct(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{key}=");
                    self.part(out, value);
                }
                out.push('}');
            }
            Part::Out(inner) if self.hide_outputs => out.push_str(match **inner {
                Part::List(_) => "[...]",
                _ => "...",
            }),
            Part::Out(inner) => self.part(out, inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Call, Event, Format, Ret, Stability};

    fn fd(num: i32, name: &str) -> Part {
        Part::Fd(FdRef {
            num,
            name: Some(name.into()),
        })
    }

    fn event(call: Call, ret: Ret) -> Event {
        Event {
            actor: "main".into(),
            pid: 7,
            time_us: 1_700_000_000_000_001,
            dur_us: 10_095,
            call,
            ret,
            resumed: false,
            slept: false,
            stability: Stability::Stable,
        }
    }

    #[test]
    fn parts_render_symbolic_and_raw() {
        let pipe = event(
            Call::Sys {
                name: "pipe2".into(),
                args: vec![
                    Part::List(vec![fd(3, "R"), fd(4, "W")]),
                    Part::text("O_NONBLOCK"),
                ],
                detail: None,
            },
            Ret::value(0),
        );
        assert_eq!(
            pipe.render(Format::SYMBOLIC),
            "pipe2([R, W], O_NONBLOCK) = 0"
        );
        assert_eq!(
            pipe.render(Format::RAW),
            "22:13:20.000001 pipe2([3, 4], O_NONBLOCK) = 0 <0.010095>"
        );
        let revents = Part::Struct(vec![
            ("fd".into(), fd(5, "E")),
            ("revents".into(), Part::text("POLLIN")),
        ]);
        let call = Call::Sys {
            name: "poll".into(),
            args: vec![Part::text("[...]"), Part::num(1), Part::num(-1)],
            detail: Some(Part::Out(Box::new(Part::List(vec![revents])))),
        };
        let poll = event(call.clone(), Ret::value(1));
        assert_eq!(
            poll.render(Format::SYMBOLIC),
            "poll([...], 1, -1) = 1 ([{fd=E, revents=POLLIN}])"
        );
        assert!(
            poll.render(Format::RAW)
                .contains("= 1 ([{fd=5, revents=POLLIN}])")
        );
        // Not returned yet, or an outcome that varies: what it wrote back is not shown.
        let started = event(call.clone(), Ret::Unfinished);
        assert_eq!(
            started.render(Format::SYMBOLIC),
            "poll([...], 1, -1) <unfinished ...>"
        );
        let mut varying = event(call, Ret::value(1));
        varying.stability = Stability::Pattern("0..1".into());
        assert_eq!(
            varying.render(Format::SYMBOLIC),
            "poll([...], 1, -1) = 0..1"
        );
        // An error shows no detail.
        let failed = event(
            Call::Sys {
                name: "poll".into(),
                args: vec![],
                detail: Some(Part::text("Timeout")),
            },
            Ret::Err {
                errno: nix::errno::Errno::EINTR,
            },
        );
        assert_eq!(
            failed.render(Format::SYMBOLIC),
            "poll() = -1 EINTR (Interrupted system call)"
        );
        let json = serde_json::to_string(&poll).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), poll);
    }

    #[test]
    fn named_values_show_their_name_only_symbolically() {
        let data = Part::Named {
            name: Some("L".into()),
            raw: "3".into(),
        };
        let e = event(
            Call::Sys {
                name: "x".into(),
                args: vec![data],
                detail: None,
            },
            Ret::value(0),
        );
        assert_eq!(e.render(Format::SYMBOLIC), "x(L) = 0");
        assert!(e.render(Format::RAW).contains("x(3) = 0"));
    }
}

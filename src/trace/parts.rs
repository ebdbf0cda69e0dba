//! The arguments of calls traced as a list of parts ([`super::Call::Sys`]): pipes, eventfds,
//! timerfds, poll, datagrams. Each part knows how it reads symbolically (fd names, address
//! aliases) and raw (numbers), so a new call needs no new formatter code.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{AddrRef, FdRef, Renderer};

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
            Part::Out(_) if self.hide_outputs => out.push_str("..."),
            Part::Out(inner) => self.part(out, inner),
        }
    }
}

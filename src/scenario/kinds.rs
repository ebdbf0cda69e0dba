//! Argument kinds: what each argument of a call may be, with the range of every number, so that
//! a value that fits no C type of the call is refused at parse time (file:line:col) instead of
//! being narrowed at run time. Typing a [`Val`] against a [`Param`] gives an [`Arg`].

use super::ast::{Arg, Data, DomainArg, EventArg, FdArg, Script, Span};
use super::error::ParseError;
use super::scope::{Kind, Scope};
use super::value::{FlagPart, Val};
use crate::addr::Family;
use structs::{ITIMERSPEC, struct_fields};

mod structs;

/// The most bytes a string argument (or a read) may carry: a command and its reply must each
/// fit in one message of the actor channel, with room for their JSON encoding.
pub const MAX_BYTES: usize = 16384;

const I32: (i64, i64) = (i32::MIN as i64, i32::MAX as i64);
const U32: (i64, i64) = (0, u32::MAX as i64);

/// The kind of one argument.
#[derive(Clone, Copy, Debug)]
pub enum Param {
    /// A name bound to an fd, or an fd number (any C int: -1 is a fine bad fd).
    Fd,
    /// A number in `min..=max`; `range` replaces the generic out-of-range message.
    Int {
        what: &'static str,
        min: i64,
        max: i64,
        range: Option<&'static str>,
    },
    /// Like `Int`, also written as a one-element array (`[1]`, as strace prints an int option).
    BoxedInt { what: &'static str },
    /// Names from `table` joined by `|`, or a number; C int flags.
    Flags {
        what: &'static str,
        table: fn() -> Vec<(&'static str, i32)>,
    },
    /// Like `Flags`, but a number may only have bits of the table: for calls a scenario may
    /// make only with some flags (read-only opens).
    OnlyFlags {
        what: &'static str,
        table: fn() -> Vec<(&'static str, i32)>,
    },
    /// `ADDR`, `ADDR2`, ...: an address the runner allocates per family.
    Addr,
    /// `FAMILY` (the matrix) or `AF_UNIX`, `AF_INET`, `AF_INET6`.
    Family,
    /// A string of at most [`MAX_BYTES`].
    Bytes,
    /// A byte count that must equal the length of the string at this index.
    LenOf(usize),
    /// `{events=FLAGS, data=NAME}` or `NULL`.
    EventOrNull,
    /// Expected bytes, a string, or `...`.
    ExpectBytes,
    /// Expected epoll events `[{...}, ...]`, or `...` / `[...]`.
    ExpectEvents,
    /// A process by name (`main`, `w1`): where a signal goes.
    Task,
    /// `[R, W]`: names for the `n` fds the call makes.
    NewFds(usize),
    /// poll's array `[{fd=E, events=POLLIN}, ...]`.
    PollFds,
    /// A count that must equal the length of the list at this index (poll's nfds).
    CountOf(usize),
    /// `{tv_sec=S, tv_nsec=N}` or `NULL`.
    Timespec,
    /// `{it_interval={tv_sec=S, tv_nsec=N}, it_value={tv_sec=S, tv_nsec=N}}`.
    Itimerspec,
    /// What poll wrote back, written after the result: `= 1 ([{fd=E, revents=POLLIN}])`.
    ExpectRevents,
    /// Must be `...`; `what` says why.
    Ellipsis { what: &'static str },
    /// Anything (written for fidelity to strace, not used).
    Any,
}

impl Param {
    /// A C int.
    pub const fn int(what: &'static str) -> Param {
        Param::Int {
            what,
            min: I32.0,
            max: I32.1,
            range: None,
        }
    }
}

/// What typing an argument needs to know about where it is.
pub struct Ctx<'a> {
    pub call: &'static str,
    pub scope: &'a Scope,
    pub actor: &'a str,
}

impl Ctx<'_> {
    fn mismatch(&self, i: usize, wanted: &str, val: &Val, span: Span) -> ParseError {
        ParseError::new(
            span,
            format!(
                "type mismatch: argument {} of {}() must be {wanted}, not {}",
                i + 1,
                self.call,
                val.describe()
            ),
        )
    }

    fn range(&self, i: usize, n: i64, (min, max): (i64, i64), span: Span) -> ParseError {
        ParseError::new(
            span,
            format!(
                "out of range: argument {} of {}() must be {min}..{max}, not {n}",
                i + 1,
                self.call
            ),
        )
    }

    fn fd_name(&self, name: &str, span: Span) -> Result<FdArg, ParseError> {
        self.scope.check_fd(name, self.actor, span)?;
        Ok(FdArg::Name(name.to_string()))
    }

    /// Types argument `i` (`val`, at `span`); `before` holds the arguments typed so far.
    pub fn type_arg(
        &self,
        i: usize,
        param: Param,
        val: &Val,
        span: Span,
        before: &[Arg<Script>],
    ) -> Result<Arg<Script>, ParseError> {
        let in_range = |n: i64, bounds: (i64, i64)| {
            if (bounds.0..=bounds.1).contains(&n) {
                Ok(n)
            } else {
                Err(self.range(i, n, bounds, span))
            }
        };
        Ok(match param {
            Param::Fd => match val {
                Val::Int(n) => {
                    let n = in_range(*n, I32)?;
                    Arg::Fd(FdArg::Num(i32::try_from(n).expect("in range")))
                }
                _ => match val.name() {
                    Some(name) => Arg::Fd(self.fd_name(name, span)?),
                    None => return Err(self.mismatch(i, "an fd (a name or a number)", val, span)),
                },
            },
            Param::Int {
                what,
                min,
                max,
                range,
            } => match val {
                Val::Int(n) if (min..=max).contains(n) => Arg::Int(*n),
                Val::Int(n) => {
                    return Err(match range {
                        Some(message) => ParseError::new(span, message.into()),
                        None => self.range(i, *n, (min, max), span),
                    });
                }
                _ => return Err(self.mismatch(i, what, val, span)),
            },
            Param::BoxedInt { what } => match val {
                Val::Int(n) => Arg::Int(in_range(*n, I32)?),
                Val::Array(items) if items.len() == 1 => match &items[0] {
                    (Val::Int(n), item_span) => {
                        if (I32.0..=I32.1).contains(n) {
                            Arg::Int(*n)
                        } else {
                            return Err(self.range(i, *n, I32, *item_span));
                        }
                    }
                    _ => return Err(self.mismatch(i, "a number", val, span)),
                },
                _ => return Err(self.mismatch(i, what, val, span)),
            },
            Param::Flags { what, table } => match val {
                Val::Int(n) => Arg::Int(in_range(*n, I32)?),
                Val::Names(parts) => Arg::Int(self.flags(i, parts, what, &table())?),
                _ => return Err(self.mismatch(i, what, val, span)),
            },
            Param::OnlyFlags { what, table } => {
                let table = table();
                let value = match val {
                    Val::Int(n) => in_range(*n, I32)?,
                    Val::Names(parts) => self.flags(i, parts, what, &table)?,
                    _ => return Err(self.mismatch(i, what, val, span)),
                };
                let allowed = table
                    .iter()
                    .fold(0i64, |all, (_, bit)| all | i64::from(*bit));
                if value & !allowed != 0 {
                    return Err(ParseError::new(
                        span,
                        format!(
                            "argument {} of {}() must be {what}, not {value:#x}",
                            i + 1,
                            self.call
                        ),
                    ));
                }
                Arg::Int(value)
            }
            Param::Addr => match val.name() {
                Some(name)
                    if name.starts_with("ADDR")
                        && name[4..].chars().all(|c| c.is_ascii_digit()) =>
                {
                    Arg::Addr(name.to_string())
                }
                _ => return Err(self.mismatch(i, "an address: ADDR, ADDR2, ...", val, span)),
            },
            Param::Family => match val.name() {
                Some("FAMILY") => Arg::Family(DomainArg::Matrix),
                Some(name) => match Family::from_af_name(name) {
                    Some(family) => Arg::Family(DomainArg::Fixed(family)),
                    None => {
                        // The names each family prints as (the table's aliases are accepted too).
                        let known: Vec<&str> = Family::ALL.iter().map(|f| f.af_name()).collect();
                        let (last, rest) = known.split_last().expect("there are families");
                        return Err(ParseError::new(
                            span,
                            format!(
                                "unknown family '{name}' (expected FAMILY, {} or {last})",
                                rest.join(", ")
                            ),
                        ));
                    }
                },
                None => {
                    return Err(self.mismatch(i, "a family such as FAMILY or AF_INET", val, span));
                }
            },
            Param::Bytes => match val {
                Val::Str(b) => Arg::Bytes(self.bytes(b, span)?),
                _ => return Err(self.mismatch(i, "a string", val, span)),
            },
            Param::LenOf(of) => match val {
                Val::Int(n) => {
                    let len = match before.get(of) {
                        Some(Arg::Bytes(b)) => b.len(),
                        _ => 0,
                    };
                    if usize::try_from(*n).ok() != Some(len) {
                        return Err(ParseError::new(
                            span,
                            format!("the string is {len} bytes long"),
                        ));
                    }
                    Arg::Int(*n)
                }
                _ => return Err(self.mismatch(i, "a byte count", val, span)),
            },
            Param::EventOrNull => match val.name() {
                Some("NULL") => Arg::Event(None),
                _ => Arg::Event(Some(self.event(val, span)?)),
            },
            Param::ExpectBytes => match val {
                Val::Ellipsis => Arg::ExpectBytes(None),
                Val::Str(b) => Arg::ExpectBytes(Some(self.bytes(b, span)?)),
                _ => return Err(self.mismatch(i, "a string", val, span)),
            },
            Param::ExpectEvents => match val {
                Val::Ellipsis => Arg::ExpectEvents(None),
                Val::Array(items) if matches!(items.as_slice(), [(Val::Ellipsis, _)]) => {
                    Arg::ExpectEvents(None)
                }
                Val::Array(items) => Arg::ExpectEvents(Some(
                    items
                        .iter()
                        .map(|(v, s)| self.event(v, *s))
                        .collect::<Result<Vec<_>, _>>()?,
                )),
                _ => return Err(self.mismatch(i, "a list of events [...]", val, span)),
            },
            Param::Ellipsis { what } => match val {
                Val::Ellipsis => Arg::Ignored,
                _ => return Err(self.mismatch(i, what, val, span)),
            },
            Param::Task => match val.name() {
                Some(name) => {
                    self.scope.check_actor(name, span)?;
                    Arg::Task(name.to_string())
                }
                None => return Err(self.mismatch(i, "a process (a name)", val, span)),
            },
            Param::NewFds(n) => match val {
                Val::Array(items) if items.len() == n => {
                    let mut names: Vec<String> = Vec::with_capacity(n);
                    for (item, item_span) in items {
                        let Some(name) = item.name() else {
                            return Err(self.mismatch(i, "a name for a new fd", item, *item_span));
                        };
                        if names.iter().any(|m| m == name) {
                            return Err(ParseError::new(
                                *item_span,
                                format!("'{name}' names two fds of {}()", self.call),
                            ));
                        }
                        self.scope.check_bindable(name, Kind::Fd, *item_span)?;
                        names.push(name.to_string());
                    }
                    Arg::NewFds(names)
                }
                _ => {
                    let wanted = format!("a list of {n} names for the new fds, such as [R, W]");
                    return Err(self.mismatch(i, &wanted, val, span));
                }
            },
            Param::PollFds => match val {
                Val::Array(items) => Arg::PollFds(
                    items
                        .iter()
                        .map(|(v, s)| self.pollfd(i, v, *s, "events"))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(self.mismatch(i, "a list of {fd=FD, events=POLLIN}", val, span)),
            },
            Param::CountOf(of) => match val {
                Val::Int(n) => {
                    let len = match before.get(of) {
                        Some(Arg::PollFds(fds)) => fds.len(),
                        _ => 0,
                    };
                    if usize::try_from(*n).ok() != Some(len) {
                        return Err(ParseError::new(
                            span,
                            format!("the list has {len} entries, not {n}"),
                        ));
                    }
                    Arg::Int(*n)
                }
                _ => return Err(self.mismatch(i, "the number of entries", val, span)),
            },
            Param::Timespec => match val.name() {
                Some("NULL") => Arg::Times(None),
                _ => Arg::Times(Some(vec![self.timespec(i, val, span)?])),
            },
            Param::Itimerspec => {
                let fields = struct_fields(val, &["it_interval", "it_value"], span)
                    .map_err(|e| e.unwrap_or_else(|| self.mismatch(i, ITIMERSPEC, val, span)))?;
                let interval = self.timespec(i, fields[0].0, fields[0].1)?;
                let value = self.timespec(i, fields[1].0, fields[1].1)?;
                Arg::Times(Some(vec![interval, value]))
            }
            Param::ExpectRevents => match val {
                Val::Array(items) => Arg::ExpectEvents(Some(
                    items
                        .iter()
                        .map(|(v, s)| {
                            self.pollfd(i, v, *s, "revents")
                                .map(|(fd, events)| EventArg {
                                    events,
                                    data: Data::Fd(fd),
                                })
                        })
                        .collect::<Result<_, _>>()?,
                )),
                _ => return Err(self.mismatch(i, "a list of {fd=FD, revents=POLLIN}", val, span)),
            },
            Param::Any => Arg::Ignored,
        })
    }

    fn bytes(&self, b: &[u8], span: Span) -> Result<Vec<u8>, ParseError> {
        if b.len() > MAX_BYTES {
            return Err(ParseError::new(
                span,
                format!(
                    "the string is {} bytes long; at most {MAX_BYTES} are allowed",
                    b.len()
                ),
            ));
        }
        Ok(b.to_vec())
    }

    fn flags(
        &self,
        i: usize,
        parts: &[(FlagPart, Span)],
        what: &str,
        table: &[(&str, i32)],
    ) -> Result<i64, ParseError> {
        let mut value = 0i64;
        for (part, span) in parts {
            match part {
                FlagPart::Num(n) => {
                    if !(I32.0..=I32.1).contains(n) {
                        return Err(self.range(i, *n, I32, *span));
                    }
                    value |= *n;
                }
                FlagPart::Name(name) => match table.iter().find(|(n, _)| n == name) {
                    Some((_, bit)) => value |= i64::from(*bit),
                    None => {
                        let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                        return Err(ParseError::new(
                            *span,
                            format!(
                                "unknown flag '{name}' for {what} of {}() (known: {})",
                                self.call,
                                known.join(", ")
                            ),
                        ));
                    }
                },
            }
        }
        Ok(value)
    }
}

//! Arguments that are structs, as strace prints them: timespecs and itimerspecs, poll's
//! `{fd=FD, events=POLLIN}` and epoll's `{events=FLAGS, data=NAME}`.

use super::{Ctx, U32};
use crate::names;
use crate::scenario::ast::{Data, EventArg, FdArg, Script, Span};
use crate::scenario::error::ParseError;
use crate::scenario::value::{FlagPart, Val};

impl Ctx<'_> {
    /// `{tv_sec=S, tv_nsec=N}`: any numbers (the kernel judges them: EINVAL).
    pub(super) fn timespec(
        &self,
        i: usize,
        val: &Val,
        span: Span,
    ) -> Result<(i64, i64), ParseError> {
        let fields = struct_fields(val, &["tv_sec", "tv_nsec"], span)
            .map_err(|e| e.unwrap_or_else(|| self.mismatch(i, TIMESPEC, val, span)))?;
        let mut out = [0i64; 2];
        for (slot, (v, s)) in out.iter_mut().zip(fields) {
            match v {
                Val::Int(n) => *slot = *n,
                other => return Err(self.mismatch(i, "a number in a timespec", other, s)),
            }
        }
        Ok((out[0], out[1]))
    }

    /// `{fd=FD, events=POLLIN}` (or `revents=`): the fd and the u16 of poll bits.
    pub(super) fn pollfd(
        &self,
        i: usize,
        val: &Val,
        span: Span,
        key: &str,
    ) -> Result<(FdArg, u32), ParseError> {
        let fields = struct_fields(val, &["fd", key], span).map_err(|e| {
            e.unwrap_or_else(|| {
                ParseError::new(
                    span,
                    format!(
                        "type mismatch: a pollfd is {{fd=FD, {key}=FLAGS}}, not {}",
                        val.describe()
                    ),
                )
            })
        })?;
        let (fd_val, fd_span) = fields[0];
        let fd = match fd_val {
            Val::Int(n) => FdArg::Num(i32::try_from(*n).map_err(|_| {
                ParseError::new(
                    fd_span,
                    format!("out of range: an fd must be an int, not {n}"),
                )
            })?),
            other => match other.name() {
                Some(name) => self.fd_name(name, fd_span)?,
                None => {
                    return Err(ParseError::new(
                        fd_span,
                        format!("type mismatch: fd= must be an fd, not {}", other.describe()),
                    ));
                }
            },
        };
        let (bits_val, bits_span) = fields[1];
        let bits = match bits_val {
            Val::Int(n) => *n,
            Val::Names(parts) => self.flags(i, parts, "poll events", names::POLL_BITS)?,
            other => {
                return Err(ParseError::new(
                    bits_span,
                    format!(
                        "type mismatch: {key}= must be flags, not {}",
                        other.describe()
                    ),
                ));
            }
        };
        let bits = u16::try_from(bits).map_err(|_| {
            ParseError::new(
                bits_span,
                format!("out of range: {key} must be 0..65535, not {bits}"),
            )
        })?;
        Ok((fd, u32::from(bits)))
    }

    pub(super) fn event(&self, val: &Val, span: Span) -> Result<EventArg<Script>, ParseError> {
        let Val::Struct(fields) = val else {
            return Err(ParseError::new(
                span,
                format!(
                    "type mismatch: an epoll event is {{events=FLAGS, data=NAME}}, not {}",
                    val.describe()
                ),
            ));
        };
        let mut events = None;
        let mut data = None;
        for (key, value, key_span) in fields {
            match key.as_str() {
                "events" => events = Some(event_bits(value, *key_span)?),
                "data" => data = Some(self.data(value, *key_span)?),
                other => {
                    return Err(ParseError::new(
                        *key_span,
                        format!(
                            "unknown field '{other}' in an epoll event (expected events, data)"
                        ),
                    ));
                }
            }
        }
        let events = events
            .ok_or_else(|| ParseError::new(span, "the epoll event needs events=...".into()))?;
        let data =
            data.ok_or_else(|| ParseError::new(span, "the epoll event needs data=...".into()))?;
        Ok(EventArg { events, data })
    }

    pub(super) fn data(&self, val: &Val, span: Span) -> Result<Data<Script>, ParseError> {
        match val {
            Val::Int(n) => u64::try_from(*n).map(Data::Num).map_err(|_| {
                ParseError::new(
                    span,
                    format!("out of range: epoll data must be 0..{}, not {n}", i64::MAX),
                )
            }),
            Val::Names(_) if val.name().is_some() => {
                let name = val.name().expect("checked");
                Ok(Data::Fd(self.fd_name(name, span)?))
            }
            // strace's {u64=L}
            Val::Struct(fields) if fields.len() == 1 && fields[0].0 == "u64" => {
                self.data(&fields[0].1, fields[0].2)
            }
            other => Err(ParseError::new(
                span,
                format!(
                    "type mismatch: data must be a name, a number or {{u64=...}}, not {}",
                    other.describe()
                ),
            )),
        }
    }
}

const TIMESPEC: &str = "a timespec {tv_sec=S, tv_nsec=N}";
pub(super) const ITIMERSPEC: &str =
    "an itimerspec {it_interval={tv_sec=S, tv_nsec=N}, it_value={tv_sec=S, tv_nsec=N}}";

/// The values of a struct with exactly the fields `keys`, in that order, with their places.
/// `Err(None)`: not a struct at all (the caller says what was wanted).
pub(super) fn struct_fields<'v>(
    val: &'v Val,
    keys: &[&str],
    span: Span,
) -> Result<Vec<(&'v Val, Span)>, Option<ParseError>> {
    let Val::Struct(fields) = val else {
        return Err(None);
    };
    for (key, _, key_span) in fields {
        if !keys.contains(&key.as_str()) {
            return Err(Some(ParseError::new(
                *key_span,
                format!("unknown field '{key}' (expected {})", keys.join(", ")),
            )));
        }
    }
    keys.iter()
        .map(|k| {
            fields
                .iter()
                .find(|(key, _, _)| key == k)
                .map(|(_, v, s)| (v, *s))
                .ok_or_else(|| Some(ParseError::new(span, format!("the struct needs {k}=..."))))
        })
        .collect()
}

/// `events=EPOLLIN|EPOLLET` or a number: the u32 of struct epoll_event.
fn event_bits(value: &Val, key_span: Span) -> Result<u32, ParseError> {
    let out_of_range = |n: i64, span: Span| {
        ParseError::new(
            span,
            format!("out of range: events must be {}..{}, not {n}", U32.0, U32.1),
        )
    };
    match value {
        Val::Names(parts) => {
            let mut bits = 0u32;
            for (part, span) in parts {
                bits |= match part {
                    FlagPart::Name(name) => {
                        names::parse_epoll_events(name).map_err(|e| ParseError::new(*span, e))?
                    }
                    FlagPart::Num(n) => u32::try_from(*n).map_err(|_| out_of_range(*n, *span))?,
                };
            }
            Ok(bits)
        }
        Val::Int(n) => u32::try_from(*n).map_err(|_| out_of_range(*n, key_span)),
        other => Err(ParseError::new(
            key_span,
            format!(
                "type mismatch: events must be flags, not {}",
                other.describe()
            ),
        )),
    }
}

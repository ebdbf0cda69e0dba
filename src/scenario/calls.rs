//! The calls a scenario can make: their argument syntax (as strace prints them), the typed
//! [`Op`] each builds, checked against the [`Scope`] of names bound so far.

use super::ast::{DataArg, DomainArg, EventArg, FdArg, Op, Span};
use super::error::ParseError;
use super::lexer::Tok;
use super::parser::Cursor;
use super::scope::Scope;
use crate::addr::Family;
use crate::names;

pub(super) fn err(span: Span, message: String) -> ParseError {
    ParseError::new(span, message)
}

/// An argument as written, before it is given a type.
#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    Str(Vec<u8>),
    /// One name, or several joined by `|` (flags), each with its position.
    Names(Vec<String>, Vec<Span>),
    /// `{key=value, ...}`
    Struct(Vec<(String, Val, Span)>),
    Array(Vec<(Val, Span)>),
    Ellipsis,
}

impl Val {
    fn describe(&self) -> &'static str {
        match self {
            Val::Int(_) => "a number",
            Val::Str(_) => "a string",
            Val::Names(n, _) if n.len() == 1 => "a name",
            Val::Names(..) => "flags",
            Val::Struct(_) => "a {...} struct",
            Val::Array(_) => "a [...] list",
            Val::Ellipsis => "'...'",
        }
    }
}

fn parse_val(cur: &mut Cursor) -> Result<(Val, Span), ParseError> {
    let span = cur.span();
    let val = match cur.next().map(|t| &t.tok) {
        Some(Tok::Int(n)) => {
            let mut flags_tail = vec![];
            while cur.eat('|') {
                flags_tail.push(cur.ident("a flag name")?.0);
            }
            if flags_tail.is_empty() {
                Val::Int(*n)
            } else {
                return Err(err(
                    span,
                    "put flag names before numbers: EPOLLIN|0x8".into(),
                ));
            }
        }
        Some(Tok::Str(bytes)) => Val::Str(bytes.clone()),
        Some(Tok::Ellipsis) => Val::Ellipsis,
        Some(Tok::Ident(name)) => {
            let mut names = vec![name.clone()];
            let mut spans = vec![span];
            while cur.eat('|') {
                let part_span = cur.span();
                match cur.next().map(|t| &t.tok) {
                    Some(Tok::Ident(n)) => names.push(n.clone()),
                    Some(Tok::Int(n)) => names.push(format!("{n:#x}")),
                    _ => return Err(err(part_span, "expected a flag after '|'".into())),
                }
                spans.push(part_span);
            }
            Val::Names(names, spans)
        }
        Some(Tok::Punct('{')) => {
            let mut fields = vec![];
            loop {
                let (key, key_span) = cur.ident("a field name such as events or data")?;
                cur.expect('=', "after the field name")?;
                let (value, _) = parse_val(cur)?;
                fields.push((key, value, key_span));
                if cur.eat('}') {
                    break;
                }
                cur.expect(',', "or '}' in the struct")?;
            }
            Val::Struct(fields)
        }
        Some(Tok::Punct('[')) => {
            let mut items = vec![];
            if !cur.eat(']') {
                loop {
                    items.push(parse_val(cur)?);
                    if cur.eat(']') {
                        break;
                    }
                    cur.expect(',', "or ']' in the list")?;
                }
            }
            Val::Array(items)
        }
        _ => {
            return Err(err(
                span,
                format!("expected an argument, found {}", cur_found(cur)),
            ));
        }
    };
    Ok((val, span))
}

fn cur_found(cur: &mut Cursor) -> String {
    // The failed token was consumed; step back for the description.
    cur.found()
}

/// The arguments of one call, with typed accessors that report type mismatches.
struct Args<'s> {
    call: String,
    vals: Vec<(Val, Span)>,
    close: Span,
    scope: &'s Scope,
    actor: &'s str,
}

impl Args<'_> {
    fn count(&self, allowed: &[usize], usage: &str) -> Result<(), ParseError> {
        if allowed.contains(&self.vals.len()) {
            Ok(())
        } else {
            let span = self
                .vals
                .get(allowed[allowed.len() - 1])
                .map_or(self.close, |v| v.1);
            Err(err(
                span,
                format!(
                    "{}() takes {} argument{}, got {}: {usage}",
                    self.call,
                    allowed
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    if allowed == [1] { "" } else { "s" },
                    self.vals.len()
                ),
            ))
        }
    }

    fn mismatch(&self, i: usize, wanted: &str) -> ParseError {
        let (val, span) = &self.vals[i];
        err(
            *span,
            format!(
                "type mismatch: argument {} of {}() must be {wanted}, not {}",
                i + 1,
                self.call,
                val.describe()
            ),
        )
    }

    fn fd(&self, i: usize) -> Result<FdArg, ParseError> {
        match &self.vals[i] {
            (Val::Int(n), _) => Ok(FdArg::Num(*n as i32)),
            (Val::Names(names, _), span) if names.len() == 1 => {
                self.scope.check_fd(&names[0], self.actor, *span)?;
                Ok(FdArg::Name(names[0].clone()))
            }
            _ => Err(self.mismatch(i, "an fd (a name or a number)")),
        }
    }

    fn int(&self, i: usize, what: &str) -> Result<i64, ParseError> {
        match &self.vals[i] {
            (Val::Int(n), _) => Ok(*n),
            _ => Err(self.mismatch(i, what)),
        }
    }

    fn is_ellipsis(&self, i: usize) -> bool {
        matches!(self.vals.get(i), Some((Val::Ellipsis, _)))
    }

    fn flags(&self, i: usize, table: &[(&str, i32)], what: &str) -> Result<i64, ParseError> {
        let (names, spans) = match &self.vals[i].0 {
            Val::Int(n) => return Ok(*n),
            Val::Names(names, spans) => (names, spans),
            _ => return Err(self.mismatch(i, what)),
        };
        let mut value = 0;
        for (name, span) in names.iter().zip(spans) {
            if let Some(hex) = name.strip_prefix("0x") {
                value |= i64::from_str_radix(hex, 16).unwrap_or(0);
                continue;
            }
            match table.iter().find(|(n, _)| n == name) {
                Some((_, bit)) => value |= i64::from(*bit),
                None => {
                    let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                    return Err(err(
                        *span,
                        format!(
                            "unknown flag '{name}' for {what} of {}() (known: {})",
                            self.call,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(value)
    }

    fn addr(&self, i: usize) -> Result<String, ParseError> {
        match &self.vals[i] {
            (Val::Names(names, _), _)
                if names.len() == 1
                    && names[0].starts_with("ADDR")
                    && names[0][4..].chars().all(|c| c.is_ascii_digit()) =>
            {
                Ok(names[0].clone())
            }
            _ => Err(self.mismatch(i, "an address: ADDR, ADDR2, ...")),
        }
    }

    fn bytes(&self, i: usize) -> Result<Vec<u8>, ParseError> {
        match &self.vals[i] {
            (Val::Str(b), _) => Ok(b.clone()),
            _ => Err(self.mismatch(i, "a string")),
        }
    }

    fn event(&self, val: &Val, span: Span) -> Result<EventArg, ParseError> {
        let Val::Struct(fields) = val else {
            return Err(err(
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
                "events" => {
                    let mut bits = 0;
                    match value {
                        Val::Names(names, spans) => {
                            for (name, span) in names.iter().zip(spans) {
                                bits |=
                                    names::parse_epoll_events(name).map_err(|e| err(*span, e))?;
                            }
                        }
                        Val::Int(n) => bits = *n as u32,
                        other => {
                            return Err(err(
                                *key_span,
                                format!(
                                    "type mismatch: events must be flags, not {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                    events = Some(bits);
                }
                "data" => data = Some(self.data(value, *key_span)?),
                other => {
                    return Err(err(
                        *key_span,
                        format!(
                            "unknown field '{other}' in an epoll event (expected events, data)"
                        ),
                    ));
                }
            }
        }
        let events = events.ok_or_else(|| err(span, "the epoll event needs events=...".into()))?;
        let data = data.ok_or_else(|| err(span, "the epoll event needs data=...".into()))?;
        Ok(EventArg { events, data })
    }

    fn data(&self, val: &Val, span: Span) -> Result<DataArg, ParseError> {
        match val {
            Val::Int(n) => Ok(DataArg::Num(*n as u64)),
            Val::Names(n, _) if n.len() == 1 => {
                self.scope.check_fd(&n[0], self.actor, span)?;
                Ok(DataArg::Name(n[0].clone()))
            }
            // strace's {u64=L}
            Val::Struct(fields) if fields.len() == 1 && fields[0].0 == "u64" => {
                self.data(&fields[0].1, fields[0].2)
            }
            other => Err(err(
                span,
                format!(
                    "type mismatch: data must be a name, a number or {{u64=...}}, not {}",
                    other.describe()
                ),
            )),
        }
    }
}

/// socket()'s type: SOCK_STREAM (the only type the runner supports) and the flags.
fn socket_type_table() -> Vec<(&'static str, i32)> {
    let stream = names::SOCK_TYPES
        .iter()
        .filter(|(n, _)| *n == "SOCK_STREAM");
    stream.chain(names::SOCK_FLAGS).copied().collect()
}

/// The option names a script may use (any level; the level argument is checked separately).
fn sockopt_table() -> Vec<(&'static str, i32)> {
    names::SOCKOPTS.iter().map(|&(n, _, v)| (n, v)).collect()
}

/// Every call a scenario can make, for "unknown call" messages.
pub const CALLS: &[&str] = &[
    "socket",
    "setsockopt",
    "bind",
    "listen",
    "connect",
    "accept",
    "accept4",
    "close",
    "shutdown",
    "dup",
    "dup2",
    "read",
    "write",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "fork",
    "drain",
    "exit",
];

/// Parses `CALL(ARGS)` (the name already read) into a typed operation.
pub fn build_op(
    call: &str,
    call_span: Span,
    cur: &mut Cursor,
    scope: &Scope,
    actor: &str,
) -> Result<Op, ParseError> {
    if !CALLS.contains(&call) {
        return Err(err(
            call_span,
            format!("unknown call '{call}' (known: {})", CALLS.join(", ")),
        ));
    }
    cur.expect('(', &format!("after '{call}'"))?;
    let mut vals = vec![];
    let close;
    if cur.peek().is_some_and(|t| t.tok == Tok::Punct(')')) {
        close = cur.span();
        cur.next();
    } else {
        loop {
            vals.push(parse_val(cur)?);
            let span = cur.span();
            if cur.eat(')') {
                close = span;
                break;
            }
            cur.expect(',', &format!("or ')' in the arguments of {call}()"))?;
        }
    }
    let a = Args {
        call: call.to_string(),
        vals,
        close,
        scope,
        actor,
    };
    let op = match call {
        "socket" => {
            a.count(&[3], "socket(FAMILY, SOCK_STREAM, 0)")?;
            let domain = match &a.vals[0].0 {
                Val::Names(n, _) if n.len() == 1 => match n[0].as_str() {
                    "FAMILY" => DomainArg::Matrix,
                    "AF_UNIX" | "AF_LOCAL" => DomainArg::Fixed(Family::Unix),
                    "AF_INET" => DomainArg::Fixed(Family::Inet),
                    "AF_INET6" => DomainArg::Fixed(Family::Inet6),
                    other => {
                        return Err(err(
                            a.vals[0].1,
                            format!(
                                "unknown family '{other}' (expected FAMILY, AF_UNIX, AF_INET or AF_INET6)"
                            ),
                        ));
                    }
                },
                _ => return Err(a.mismatch(0, "a family such as FAMILY or AF_INET")),
            };
            let ty = a.flags(1, &socket_type_table(), "the type")? as i32;
            if a.int(2, "a protocol number")? != 0 {
                return Err(err(a.vals[2].1, "only protocol 0 is supported".into()));
            }
            Op::Socket { domain, ty }
        }
        "setsockopt" => {
            a.count(&[4], "setsockopt(L, SOL_SOCKET, SO_REUSEPORT, 1)")?;
            let value = match &a.vals[3].0 {
                Val::Array(items) if items.len() == 1 => match items[0].0 {
                    Val::Int(n) => n,
                    _ => return Err(a.mismatch(3, "a number")),
                },
                _ => a.int(3, "a number")?,
            };
            Op::Setsockopt {
                fd: a.fd(0)?,
                level: a.flags(1, names::SOCKOPT_LEVELS, "the level")? as i32,
                option: a.flags(2, &sockopt_table(), "the option")? as i32,
                value: value as i32,
            }
        }
        "bind" | "connect" => {
            a.count(&[2], &format!("{call}(L, ADDR)"))?;
            let (fd, addr) = (a.fd(0)?, a.addr(1)?);
            if call == "bind" {
                Op::Bind { fd, addr }
            } else {
                Op::Connect { fd, addr }
            }
        }
        "listen" => {
            a.count(&[2], "listen(L, BACKLOG)")?;
            Op::Listen {
                fd: a.fd(0)?,
                backlog: a.int(1, "a backlog (a number)")? as i32,
            }
        }
        "accept" => {
            a.count(&[1, 2, 3], "accept(L) or accept(L, ..., ...)")?;
            Op::Accept { fd: a.fd(0)? }
        }
        "accept4" => {
            a.count(&[2, 3], "accept4(L, ..., SOCK_NONBLOCK)")?;
            let flags_at = a.vals.len() - 1;
            if a.vals.len() == 3 && !a.is_ellipsis(1) {
                return Err(a.mismatch(1, "'...' (the peer address is not checked)"));
            }
            Op::Accept4 {
                fd: a.fd(0)?,
                flags: a.flags(flags_at, names::SOCK_FLAGS, "the flags")? as i32,
            }
        }
        "close" | "dup" | "drain" => {
            a.count(&[1], &format!("{call}(FD)"))?;
            let fd = a.fd(0)?;
            match call {
                "close" => Op::Close { fd },
                "dup" => Op::Dup { fd },
                _ => Op::Drain { fd },
            }
        }
        "dup2" => {
            a.count(&[2], "dup2(FD, TARGET)")?;
            Op::Dup2 {
                fd: a.fd(0)?,
                target: a.fd(1)?,
            }
        }
        "shutdown" => {
            a.count(&[2], "shutdown(FD, SHUT_RD)")?;
            Op::Shutdown {
                fd: a.fd(0)?,
                how: a.flags(1, names::SHUT_HOW, "how")? as i32,
            }
        }
        "read" => {
            a.count(
                &[2, 3],
                "read(FD, \"expected\", COUNT) or read(FD, ..., COUNT)",
            )?;
            let count_at = a.vals.len() - 1;
            let expect_data = if a.vals.len() == 3 && !a.is_ellipsis(1) {
                Some(a.bytes(1)?)
            } else {
                None
            };
            let count = a.int(count_at, "a byte count")?;
            if !(0..=65536).contains(&count) {
                return Err(err(
                    a.vals[count_at].1,
                    "read count must be 0..65536".into(),
                ));
            }
            Op::Read {
                fd: a.fd(0)?,
                expect_data,
                count: count as usize,
            }
        }
        "write" => {
            a.count(&[2, 3], "write(FD, \"data\")")?;
            let data = a.bytes(1)?;
            if a.vals.len() == 3 && a.int(2, "a byte count")? != data.len() as i64 {
                return Err(err(
                    a.vals[2].1,
                    format!("the string is {} bytes long", data.len()),
                ));
            }
            Op::Write { fd: a.fd(0)?, data }
        }
        "epoll_create1" => {
            a.count(&[1], "epoll_create1(EPOLL_CLOEXEC) or epoll_create1(0)")?;
            Op::EpollCreate1 {
                flags: a.flags(0, names::EPOLL_CREATE_FLAGS, "the flags")? as i32,
            }
        }
        "epoll_ctl" => {
            a.count(
                &[4],
                "epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=L})",
            )?;
            let event = match &a.vals[3] {
                (Val::Names(n, _), _) if n.len() == 1 && n[0] == "NULL" => None,
                (val, span) => Some(a.event(val, *span)?),
            };
            Op::EpollCtl {
                epfd: a.fd(0)?,
                op: a.flags(1, names::EPOLL_OPS, "the operation")? as i32,
                fd: a.fd(2)?,
                event,
            }
        }
        "epoll_wait" | "epoll_pwait" => {
            let pwait = call == "epoll_pwait";
            let allowed: &[usize] = if pwait { &[3, 4, 5] } else { &[3, 4] };
            a.count(allowed, &format!("{call}(E, [...], 16, 0)"))?;
            // (E, MAX, TIMEOUT) or (E, EVENTS, MAX, TIMEOUT[, SIGMASK])
            let has_events = a.vals.len() >= 4;
            let expect_events = if has_events {
                match &a.vals[1].0 {
                    Val::Ellipsis => None,
                    Val::Array(items) if matches!(items.as_slice(), [(Val::Ellipsis, _)]) => None,
                    Val::Array(items) => Some(
                        items
                            .iter()
                            .map(|(v, s)| a.event(v, *s))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    _ => return Err(a.mismatch(1, "a list of events [...]")),
                }
            } else {
                None
            };
            let base = usize::from(has_events);
            let maxevents = a.int(1 + base, "maxevents (a number)")?;
            let timeout = a.int(2 + base, "a timeout in ms (a number)")?;
            Op::EpollWait {
                epfd: a.fd(0)?,
                expect_events,
                maxevents: maxevents as i32,
                timeout: timeout as i32,
                pwait,
            }
        }
        "fork" => {
            a.count(&[0], "fork() = NAME")?;
            Op::Fork
        }
        "exit" => {
            a.count(&[0, 1], "exit() or exit(CODE)")?;
            let code = if a.vals.is_empty() {
                0
            } else {
                a.int(0, "an exit code")?
            };
            Op::Exit { code: code as i32 }
        }
        _ => unreachable!("checked against CALLS"),
    };
    Ok(op)
}

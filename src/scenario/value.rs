//! A call's arguments as written, before they are given a type: numbers, strings, names or
//! flag sets, `{key=value}` structs, `[...]` lists and `...`. [`super::kinds`] types them.

use super::ast::Span;
use super::error::ParseError;
use super::lexer::{Cursor, Tok};

/// One part of a flag set `EPOLLIN|0x8`.
#[derive(Clone, Debug)]
pub enum FlagPart {
    Name(String),
    Num(i64),
}

/// An argument as written.
#[derive(Clone, Debug)]
pub enum Val {
    Int(i64),
    Str(Vec<u8>),
    /// One name, or several joined by `|` (flags), each with its position.
    Names(Vec<(FlagPart, Span)>),
    /// `{key=value, ...}`
    Struct(Vec<(String, Val, Span)>),
    Array(Vec<(Val, Span)>),
    Ellipsis,
}

impl Val {
    pub fn describe(&self) -> &'static str {
        match self {
            Val::Int(_) => "a number",
            Val::Str(_) => "a string",
            Val::Names(n) if n.len() == 1 => "a name",
            Val::Names(..) => "flags",
            Val::Struct(_) => "a {...} struct",
            Val::Array(_) => "a [...] list",
            Val::Ellipsis => "'...'",
        }
    }

    /// The name, when the value is exactly one name.
    pub fn name(&self) -> Option<&str> {
        match self {
            Val::Names(parts) => match parts.as_slice() {
                [(FlagPart::Name(n), _)] => Some(n),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Most levels of `{...}` and `[...]` an argument may nest: the parser recurses on them.
const MAX_NESTING: usize = 8;

/// Parses one argument.
pub fn parse_val(cur: &mut Cursor) -> Result<(Val, Span), ParseError> {
    parse_nested(cur, 0)
}

fn parse_nested(cur: &mut Cursor, depth: usize) -> Result<(Val, Span), ParseError> {
    let span = cur.span();
    if depth > MAX_NESTING {
        return Err(ParseError::new(
            span,
            format!("arguments nest deeper than {MAX_NESTING} levels"),
        ));
    }
    let val = match cur.next().map(|t| &t.tok) {
        Some(Tok::Int(n)) => {
            let mut tail = false;
            while cur.eat('|') {
                cur.ident("a flag name")?;
                tail = true;
            }
            if tail {
                return Err(ParseError::new(
                    span,
                    "put flag names before numbers: EPOLLIN|0x8".into(),
                ));
            }
            Val::Int(*n)
        }
        Some(Tok::Str(bytes)) => Val::Str(bytes.clone()),
        Some(Tok::Ellipsis) => Val::Ellipsis,
        Some(Tok::Ident(name)) => {
            let mut parts = vec![(FlagPart::Name(name.clone()), span)];
            while cur.eat('|') {
                let part_span = cur.span();
                let part = match cur.next().map(|t| &t.tok) {
                    Some(Tok::Ident(n)) => FlagPart::Name(n.clone()),
                    Some(Tok::Int(n)) => FlagPart::Num(*n),
                    _ => {
                        return Err(ParseError::new(
                            part_span,
                            "expected a flag after '|'".into(),
                        ));
                    }
                };
                parts.push((part, part_span));
            }
            Val::Names(parts)
        }
        Some(Tok::Punct('{')) => {
            let mut fields = vec![];
            loop {
                let (key, key_span) = cur.ident("a field name such as events or data")?;
                cur.expect('=', "after the field name")?;
                let (value, _) = parse_nested(cur, depth + 1)?;
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
                    items.push(parse_nested(cur, depth + 1)?);
                    if cur.eat(']') {
                        break;
                    }
                    cur.expect(',', "or ']' in the list")?;
                }
            }
            Val::Array(items)
        }
        _ => {
            return Err(ParseError::new(
                span,
                format!("expected an argument, found {}", cur.found()),
            ));
        }
    };
    Ok((val, span))
}

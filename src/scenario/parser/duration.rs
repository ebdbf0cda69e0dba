//! Durations as scripts write them: `timeout: 5s` and `expect elapsed(w1) >= 10ms`.

use std::time::Duration;

use super::at;
use crate::scenario::ast::Span;
use crate::scenario::error::ParseError;
use crate::scenario::lexer::{Tok, Token};

/// The longest `timeout:` or `step-timeout:`: a scenario is an experiment, not a service.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// `10ms`, `2s`, `500us`, and nothing after it: a duration in microseconds.
pub(super) fn parse_duration_us(rest: &[Token], span: Span) -> Result<u64, ParseError> {
    let wanted = "expected a duration such as 10ms, 2s or 500us";
    let (n, n_span) = match rest.first() {
        Some(Token {
            tok: Tok::Int(n),
            span,
        }) if *n >= 0 => (u64::try_from(*n).unwrap_or(u64::MAX), *span),
        Some(t) => return Err(at(t.span, wanted)),
        None => return Err(at(span, wanted)),
    };
    let scale = match rest.get(1).map(|t| &t.tok) {
        Some(Tok::Ident(u)) if u == "us" => 1,
        Some(Tok::Ident(u)) if u == "ms" => 1000,
        Some(Tok::Ident(u)) if u == "s" => 1_000_000,
        _ => {
            return Err(at(
                rest.get(1).map_or(n_span, |t| t.span),
                "expected a unit: us, ms or s",
            ));
        }
    };
    if let Some(extra) = rest.get(2) {
        return Err(at(extra.span, "unexpected text after the duration"));
    }
    n.checked_mul(scale)
        .filter(|&us| u128::from(us) <= MAX_TIMEOUT.as_micros())
        .ok_or_else(|| {
            at(
                n_span,
                &format!("a duration must be at most {}s", MAX_TIMEOUT.as_secs()),
            )
        })
}

pub(super) fn parse_duration(rest: &[Token], span: Span) -> Result<Duration, ParseError> {
    let (n, unit_span) = match rest.first().map(|t| &t.tok) {
        Some(Tok::Int(n)) if *n > 0 => (u64::try_from(*n).unwrap_or(u64::MAX), rest[0].span),
        _ => return Err(at(span, "expected a duration such as 5s or 500ms")),
    };
    // The lexer reads `5s` as one number token only when it is all digits; accept `5 s`/`5s`.
    let unit = match rest.get(1).map(|t| &t.tok) {
        Some(Tok::Ident(u)) => u.as_str(),
        None => "s",
        _ => return Err(at(unit_span, "expected a unit: s or ms")),
    };
    let duration = match unit {
        "s" => n.checked_mul(1000).map(Duration::from_millis),
        "ms" => Some(Duration::from_millis(n)),
        other => {
            return Err(at(
                unit_span,
                &format!("unknown unit '{other}': use s or ms"),
            ));
        }
    };
    match duration {
        Some(d) if d <= MAX_TIMEOUT => Ok(d),
        _ => Err(at(
            unit_span,
            &format!("a duration must be at most {}s", MAX_TIMEOUT.as_secs()),
        )),
    }
}

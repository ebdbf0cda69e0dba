//! Checking outcomes against what a script expects: return values, errnos, epoll events (as a
//! multiset: their order is the kernel's ready-list order, not part of the contract) and bytes.

use std::collections::HashMap;

use nix::errno::Errno;

use super::ast::{Data, Expect, Step};
use super::protocol::Outcome;
use crate::names::epoll_events_name;
use crate::trace::quote_bytes;

/// Ok, or why the outcome does not match the step's expectation.
pub fn check_step(
    step: &Step,
    outcome: &Outcome,
    names: &HashMap<String, i32>,
) -> Result<(), String> {
    if let Some(expect) = &step.expect {
        check_result(expect, &outcome.result)?;
    }
    if outcome.result.is_err() {
        return Ok(());
    }
    let (want_bytes, want_events) = step.op.expected();
    if let Some(wanted) = want_events {
        let mut want: Vec<(u32, u64)> = wanted
            .iter()
            .map(|e| {
                let data = match &e.data {
                    Data::Num(n) => *n,
                    Data::Fd(name) => match name {
                        super::ast::FdArg::Num(n) => u64::try_from(*n).unwrap_or(u64::MAX),
                        super::ast::FdArg::Name(n) => names
                            .get(n)
                            .map_or(u64::MAX, |&fd| u64::try_from(fd).unwrap_or(u64::MAX)),
                    },
                };
                (e.events, data)
            })
            .collect();
        let mut got = outcome.events.clone();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            return Err(format!(
                "epoll events differ: expected {}, got {}",
                events_text(&want),
                events_text(&got)
            ));
        }
    }
    if let Some(wanted) = want_bytes
        && wanted != outcome.data.as_slice()
    {
        return Err(format!(
            "read data differs: expected {}, got {}",
            quote_bytes(wanted),
            quote_bytes(&outcome.data)
        ));
    }
    Ok(())
}

fn events_text(events: &[(u32, u64)]) -> String {
    let items: Vec<String> = events
        .iter()
        .map(|(ev, data)| format!("{{{}, {data}}}", epoll_events_name(*ev)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn result_text(result: &Result<i64, Errno>) -> String {
    match result {
        Ok(v) => v.to_string(),
        Err(errno) => format!("-1 {errno:?}"),
    }
}

fn check_result(expect: &Expect, result: &Result<i64, Errno>) -> Result<(), String> {
    let ok = match (expect, result) {
        (Expect::Any, _) => true,
        (Expect::Value(-1), Err(_)) => true,
        (Expect::Value(v), Ok(got)) => v == got,
        (Expect::Errno(e), Err(got)) => e == got,
        (Expect::Bind(_) | Expect::Capture(_), Ok(_)) => true,
        (Expect::Range(lo, hi), Ok(got)) => (lo..=hi).contains(&got),
        (Expect::AtLeast(us), Ok(got)) => u64::try_from(*got).is_ok_and(|got| got >= *us),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let wanted = match expect {
            Expect::Bind(name) => format!("success (a new {name})"),
            Expect::Capture(var) => format!("success (captured as ${var})"),
            other => other.text(),
        };
        Err(format!("expected {wanted}, got {}", result_text(result)))
    }
}

/// Ok, or why an aggregate's value does not match.
pub fn check_aggregate(expect: &Expect, actual: i64) -> Result<(), String> {
    check_result(expect, &Ok(actual))
}

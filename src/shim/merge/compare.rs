//! Two runs' summaries side by side, on what is comparable across runs (whose pids differ).

use std::collections::BTreeMap;

use super::{Local, Summary};

/// Counts sorted high to low: comparable across runs, whose pids differ.
fn spread(map: &BTreeMap<i32, usize>) -> String {
    let mut v: Vec<usize> = map.values().copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    }
}

/// Each process's local fraction, highest first (pids differ between runs).
fn local_spread(s: &Summary) -> String {
    let mut v: Vec<Local> = s.locality.values().copied().collect();
    v.sort_by(|a, b| (b.local * a.measured).cmp(&(a.local * b.measured)));
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|l| format!("{}/{}", l.local, l.measured))
        .collect::<Vec<_>>()
        .join(",")
}

/// A side-by-side table of two runs' summaries.
pub fn compare_table(left: (&str, &Summary), right: (&str, &Summary)) -> String {
    let rows: Vec<(&str, String, String)> = vec![
        (
            "calls",
            left.1.total_calls().to_string(),
            right.1.total_calls().to_string(),
        ),
        (
            "processes",
            left.1.processes.to_string(),
            right.1.processes.to_string(),
        ),
        (
            "processes that accepted",
            left.1.accepts.len().to_string(),
            right.1.accepts.len().to_string(),
        ),
        (
            "accepts per process",
            spread(&left.1.accepts),
            spread(&right.1.accepts),
        ),
        (
            "listeners per process",
            spread(&left.1.listeners),
            spread(&right.1.listeners),
        ),
        (
            "listen_spawn",
            left.1
                .calls
                .get("listen_spawn")
                .copied()
                .unwrap_or(0)
                .to_string(),
            right
                .1
                .calls
                .get("listen_spawn")
                .copied()
                .unwrap_or(0)
                .to_string(),
        ),
        (
            "EAGAIN",
            left.1.eagain().to_string(),
            right.1.eagain().to_string(),
        ),
        (
            "epoll_wait calls",
            waits(left.1).to_string(),
            waits(right.1).to_string(),
        ),
        (
            "local accepts",
            left.1.local_total().to_string(),
            right.1.local_total().to_string(),
        ),
        (
            "local accepts per process",
            local_spread(left.1),
            local_spread(right.1),
        ),
        ("ends", left.1.ends_by_kind(), right.1.ends_by_kind()),
    ];
    let mut out = format!("{:<26}{:<20}{}\n", "", left.0, right.0);
    for (name, l, r) in rows {
        out.push_str(&format!("{name:<26}{l:<20}{r}\n"));
    }
    out
}

fn waits(s: &Summary) -> usize {
    s.calls.get("epoll_wait").copied().unwrap_or(0)
}

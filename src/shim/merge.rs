//! Reading back what the shim wrote: the per-process JSON trace files of one run, merged into
//! one trace in time order, and a summary of it (calls per kind, accepts and listeners per
//! process, errors) that two runs can be compared on.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;

use crate::trace::{Call, Event, Ret};

/// Every event in `dir`'s `trace.<pid>` files, ordered by start time (then pid).
/// Lines that do not parse (a process killed mid-write) are counted, not fatal.
pub fn read_dir(dir: &Path) -> anyhow::Result<(Vec<Event>, usize)> {
    let mut events = vec![];
    let mut bad = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("trace.") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("{}", entry.path().display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) => bad += 1,
            }
        }
    }
    events.sort_by_key(|e| (e.time_us, e.pid));
    Ok((events, bad))
}

/// The name a call is counted under (`accept4`, `listen_spawn`...).
pub fn call_name(call: &Call) -> String {
    match call {
        Call::Builtin { name, .. } | Call::Sys { name, .. } => name.clone(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.get("call").and_then(|c| c.as_str()).map(String::from))
            .unwrap_or_else(|| "?".into()),
    }
}

/// What a run did, in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub calls: BTreeMap<String, usize>,
    /// Successful accept/accept4 per pid.
    pub accepts: BTreeMap<i32, usize>,
    /// Successful listen and listen_spawn per pid: the listeners each process owns.
    pub listeners: BTreeMap<i32, usize>,
    pub errors: BTreeMap<String, usize>,
    pub processes: usize,
}

impl Summary {
    pub fn of(events: &[Event]) -> Summary {
        let mut s = Summary::default();
        let mut pids = std::collections::BTreeSet::new();
        for e in events {
            pids.insert(e.pid);
            let name = call_name(&e.call);
            *s.calls.entry(name.clone()).or_default() += 1;
            match &e.ret {
                Ret::Ok { .. } => match name.as_str() {
                    "accept" | "accept4" => *s.accepts.entry(e.pid).or_default() += 1,
                    "listen" | "listen_spawn" => *s.listeners.entry(e.pid).or_default() += 1,
                    _ => {}
                },
                Ret::Err { errno } => {
                    *s.errors.entry(format!("{errno:?}")).or_default() += 1;
                }
                Ret::Unfinished => {}
            }
        }
        s.processes = pids.len();
        s
    }

    pub fn eagain(&self) -> usize {
        self.errors
            .get(&format!("{:?}", Errno::EAGAIN))
            .copied()
            .unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.calls.values().sum()
    }

    /// `pid:count` pairs, for one line of a report.
    fn per_pid(map: &BTreeMap<i32, usize>) -> String {
        if map.is_empty() {
            return "-".into();
        }
        map.iter()
            .map(|(pid, n)| format!("{pid}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The summary as `# ` lines (so it can follow a trace and still be told apart).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "# {} calls in {} processes\n",
            self.total_calls(),
            self.processes
        ));
        let kinds: Vec<String> = self.calls.iter().map(|(k, n)| format!("{k}={n}")).collect();
        out.push_str(&format!("# calls: {}\n", kinds.join(" ")));
        out.push_str(&format!(
            "# accepts per pid: {}\n",
            Summary::per_pid(&self.accepts)
        ));
        out.push_str(&format!(
            "# listeners per pid: {}\n",
            Summary::per_pid(&self.listeners)
        ));
        if !self.errors.is_empty() {
            let errs: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            out.push_str(&format!("# errors: {}\n", errs.join(" ")));
        }
        out
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{FdRef, Stability};

    fn ev(pid: i32, t: u64, call: Call, ret: Ret) -> Event {
        Event {
            actor: String::new(),
            pid,
            time_us: t,
            dur_us: 1,
            call,
            ret,
            resumed: false,
            stability: Stability::Stable,
        }
    }

    #[test]
    fn merges_files_in_time_order_and_summarises() {
        let dir = std::env::temp_dir().join(format!("es-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fd = FdRef { num: 3, name: None };
        let a = [
            ev(
                10,
                5,
                Call::Listen {
                    fd: fd.clone(),
                    backlog: 8,
                },
                Ret::value(0),
            ),
            ev(
                10,
                30,
                Call::Accept4 {
                    fd: fd.clone(),
                    flags: 0,
                },
                Ret::Err {
                    errno: Errno::EAGAIN,
                },
            ),
        ];
        let b = [
            ev(
                11,
                20,
                Call::Builtin {
                    name: "listen_spawn".into(),
                    args: vec![fd.clone()],
                },
                Ret::value(0),
            ),
            ev(
                11,
                25,
                Call::Accept4 {
                    fd: fd.clone(),
                    flags: 0,
                },
                Ret::value(4),
            ),
        ];
        for (pid, events) in [(10, &a[..]), (11, &b[..])] {
            let text: String = events
                .iter()
                .map(|e| serde_json::to_string(e).unwrap() + "\n")
                .collect();
            std::fs::write(dir.join(format!("trace.{pid}")), text + "{truncated\n").unwrap();
        }
        let (events, bad) = read_dir(&dir).unwrap();
        assert_eq!(bad, 2);
        let times: Vec<u64> = events.iter().map(|e| e.time_us).collect();
        assert_eq!(times, vec![5, 20, 25, 30]);
        let s = Summary::of(&events);
        assert_eq!(s.processes, 2);
        assert_eq!(s.accepts, BTreeMap::from([(11, 1)]));
        assert_eq!(s.listeners, BTreeMap::from([(10, 1), (11, 1)]));
        assert_eq!(s.eagain(), 1);
        assert_eq!(s.calls["listen_spawn"], 1);
        let text = s.render();
        assert!(text.contains("# accepts per pid: 11:1\n"), "{text}");
        assert!(
            text.contains("# calls: accept4=2 listen=1 listen_spawn=1\n"),
            "{text}"
        );
        let table = compare_table(("traced", &s), ("fastsocket", &s));
        assert!(table.contains("EAGAIN"), "{table}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

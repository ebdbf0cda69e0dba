//! Reading back what the shim wrote: the per-process JSON trace files of one run, merged into
//! one trace in time order, and a summary of it (calls per kind, accepts and listeners per
//! process, errors) that two runs can be compared on.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;

pub use super::ends::{End, Ended};
use crate::trace::{Call, Event, Ret};

/// Every event in `dir`'s `trace.<pid>` (and `trace.<pid>.<n>`, a later image after exec)
/// files, ordered by start time (then pid). Lines that do not parse (the last line of a
/// process killed while writing it, cut short) are counted, not fatal.
pub fn read_dir(dir: &Path) -> anyhow::Result<(Vec<Event>, usize)> {
    let mut events = vec![];
    let mut bad = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("trace.") {
            continue;
        }
        let bytes =
            read_written(&entry.path()).with_context(|| format!("{}", entry.path().display()))?;
        for line in lines(&bytes) {
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) => bad += 1,
            }
        }
    }
    events.sort_by_key(|e| (e.time_us, e.pid));
    Ok((events, bad))
}

/// The lines of a trace file: separated by newlines, and by the zero bytes the shim's mapped
/// files hold where nothing was written (the unused tail, or a line a killed process had
/// reserved and not yet copied).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n' || *b == 0)
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

/// A trace file's data without its holes: the shim's files are sized far beyond what they hold
/// and sparse, so only the extents with data are read (the whole file where the file system
/// cannot tell holes apart).
pub fn read_written(path: &Path) -> std::io::Result<Vec<u8>> {
    use nix::unistd::{Whence, lseek};
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut out = vec![];
    let mut at = 0i64;
    loop {
        let start = match lseek(&file, at, Whence::SeekData) {
            Ok(s) => s,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) if at == 0 => {
                file.read_to_end(&mut out)?;
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        };
        let end = lseek(&file, start, Whence::SeekHole)?;
        file.seek(SeekFrom::Start(start as u64))?;
        (&mut file)
            .take((end - start) as u64)
            .read_to_end(&mut out)?;
        out.push(0);
        at = end;
    }
    Ok(out)
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
    /// How each process ended, where the trace says (see [`End`]); the pids of the trace
    /// missing here left no word: killed by a signal or crashed, and not reaped by a traced
    /// parent (or still running).
    pub ends: BTreeMap<i32, End>,
    /// Every pid the trace has a line of.
    pub pids: std::collections::BTreeSet<i32>,
    /// Per pid, accepts whose connection the kernel processed on the accepting thread's CPU,
    /// and accepts where both CPUs are known (the shim's `accept_cpu` lines).
    pub locality: BTreeMap<i32, Local>,
    /// The CPUs connections were processed on (from `accept_cpu`).
    pub incoming_cpus: std::collections::BTreeSet<i32>,
    /// What steered the workers' listeners (the shim's `locality:` notices).
    pub steering: std::collections::BTreeSet<String>,
}

/// Local accepts out of measured ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local {
    pub local: usize,
    pub measured: usize,
}

impl Local {
    pub fn add(&mut self, other: Local) {
        self.local += other.local;
        self.measured += other.measured;
    }
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.measured == 0 {
            return write!(f, "-");
        }
        let percent = 100.0 * self.local as f64 / self.measured as f64;
        write!(f, "{}/{} ({percent:.1}%)", self.local, self.measured)
    }
}

/// The CPUs a `locality:` notice says a listener is steered to.
fn steered_cpu(notice: &str) -> Option<i32> {
    let (_, cpu) = notice.rsplit_once("steers cpu ")?;
    cpu.trim().parse().ok()
}

impl Summary {
    pub fn of(events: &[Event]) -> Summary {
        let mut s = Summary::default();
        let mut pids = std::collections::BTreeSet::new();
        for e in events {
            pids.insert(e.pid);
            s.note_end(e);
            s.note_locality(e);
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
        s.pids = pids;
        s
    }

    /// Takes in an event that tells how a process ended: its own `exit(STATUS)`, or a
    /// parent's wait that reaped it (`wait4(WHO, STATUS) = PID`). The kernel's word (a wait)
    /// wins over the process's own.
    fn note_end(&mut self, e: &Event) {
        let Call::Builtin { name, args } = &e.call else {
            return;
        };
        match (name.as_str(), &e.ret) {
            ("exit", _) => {
                if let Some(code) = args.first()
                    && !matches!(
                        self.ends.get(&e.pid),
                        Some(End::Reaped { .. } | End::Waited(_))
                    )
                {
                    self.ends.insert(e.pid, End::Exited(code.num & 0xff));
                }
            }
            ("wait" | "waitpid" | "wait4", Ret::Ok { value, .. }) => {
                let (Ok(pid), Some(status)) = (i32::try_from(*value), args.get(1)) else {
                    return;
                };
                let how = Ended::from_wait_status(status.num);
                if pid > 0 && how != Ended::NotEnded {
                    self.ends.insert(pid, End::Reaped { by: e.pid, how });
                }
            }
            _ => {}
        }
    }

    /// Takes in the shim's locality lines: `accept_cpu(FD, INCOMING, CPU)` and its notices.
    fn note_locality(&mut self, e: &Event) {
        match &e.call {
            Call::Note { text } if text.starts_with(crate::fastpath::locality::NOTICE) => {
                self.steering.insert(text.clone());
            }
            Call::Builtin { name, args } if name == "accept_cpu" => {
                let (Some(incoming), Some(cpu)) = (args.get(1), args.get(2)) else {
                    return;
                };
                if incoming.num < 0 || cpu.num < 0 {
                    return;
                }
                self.incoming_cpus.insert(incoming.num);
                let l = self.locality.entry(e.pid).or_default();
                l.measured += 1;
                l.local += usize::from(incoming.num == cpu.num);
            }
            _ => {}
        }
    }

    /// Local accepts of all processes.
    pub fn local_total(&self) -> Local {
        let mut total = Local::default();
        for l in self.locality.values() {
            total.add(*l);
        }
        total
    }

    /// The lines on locality: per worker, in all, what steered, and the CPUs that had
    /// connections but no listener steered to them (their connections were hashed).
    fn locality_lines(&self) -> String {
        if self.locality.is_empty() && self.steering.is_empty() {
            return String::new();
        }
        let per: Vec<String> = self
            .locality
            .iter()
            .map(|(pid, l)| format!("{pid}:{l}"))
            .collect();
        let mut out = format!(
            "# local accepts per pid: {}; all: {}\n",
            if per.is_empty() {
                "-".into()
            } else {
                per.join(" ")
            },
            self.local_total()
        );
        for notice in &self.steering {
            out.push_str(&format!("# {notice}\n"));
        }
        let steered: std::collections::BTreeSet<i32> = self
            .steering
            .iter()
            .filter_map(|n| steered_cpu(n))
            .collect();
        if !steered.is_empty() {
            let unsteered: Vec<String> = self
                .incoming_cpus
                .difference(&steered)
                .map(i32::to_string)
                .collect();
            if !unsteered.is_empty() {
                out.push_str(&format!(
                    "# locality: fewer listeners than CPUs: no listener steered to cpu {}, its connections were hashed\n",
                    unsteered.join(",")
                ));
            }
        }
        out
    }

    /// Records how a process the trace cannot see the end of ended: the launcher's own child,
    /// from the launcher's wait.
    pub fn set_end(&mut self, pid: i32, end: End) {
        self.pids.insert(pid);
        self.ends.insert(pid, end);
    }

    /// One phrase per process: how it ended, or that nothing says.
    fn ends_line(&self) -> String {
        self.pids
            .iter()
            .map(|pid| match self.ends.get(pid) {
                Some(end) => format!("{pid} {end}"),
                None => format!(
                    "{pid} no exit record (killed or crashed, not reaped by a traced process)"
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Ends counted by kind (`exit 0` x3, `killed by SIGKILL` x1...), comparable across runs.
    pub fn ends_by_kind(&self) -> String {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for pid in &self.pids {
            let kind = match self.ends.get(pid) {
                Some(end) => end.how().to_string(),
                None => "no record".into(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        if kinds.is_empty() {
            return "-".into();
        }
        kinds
            .iter()
            .map(|(k, n)| format!("{n}x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
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
        out.push_str(&self.locality_lines());
        if !self.pids.is_empty() {
            out.push_str(&format!("# ended: {}\n", self.ends_line()));
        }
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
            slept: false,
            stability: Stability::Stable,
        }
    }

    #[test]
    fn local_accepts_are_counted_per_pid_and_unsteered_cpus_named() {
        let cpu = |fd: i32, incoming: i32, on: i32| Call::Builtin {
            name: "accept_cpu".into(),
            args: [fd, incoming, on]
                .iter()
                .map(|&num| FdRef { num, name: None })
                .collect(),
        };
        let events = vec![
            ev(
                7,
                1,
                Call::Note {
                    text: "locality: SO_INCOMING_CPU steers cpu 0".into(),
                },
                Ret::value(0),
            ),
            ev(7, 2, cpu(5, 0, 0), Ret::value(1)),
            ev(7, 3, cpu(6, 0, 0), Ret::value(1)),
            ev(8, 4, cpu(5, 1, 0), Ret::value(0)),
            // Unknown CPUs are not measured.
            ev(8, 5, cpu(6, -1, 0), Ret::value(0)),
        ];
        let s = Summary::of(&events);
        assert_eq!(
            s.local_total(),
            Local {
                local: 2,
                measured: 3
            }
        );
        let text = s.render();
        assert!(
            text.contains("# local accepts per pid: 7:2/2 (100.0%) 8:0/1 (0.0%); all: 2/3 (66.7%)"),
            "{text}"
        );
        assert!(text.contains("no listener steered to cpu 1"), "{text}");
        assert!(compare_table(("a", &s), ("b", &s)).contains("2/3 (66.7%)"));
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
            // The last line cut short, then the zero tail of a mapped file.
            let mut bytes = (text + "{\"actor\":\"\",\"pi").into_bytes();
            bytes.extend([0u8; 100]);
            std::fs::write(dir.join(format!("trace.{pid}")), bytes).unwrap();
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

    #[test]
    fn ends_come_from_last_words_and_from_the_parents_waits() {
        let exit = |pid, code| {
            ev(
                pid,
                50,
                Call::Builtin {
                    name: "exit".into(),
                    args: vec![FdRef {
                        num: code,
                        name: None,
                    }],
                },
                Ret::value(0),
            )
        };
        let reap = |by, who: i32, status| {
            ev(
                by,
                60,
                Call::Builtin {
                    name: "waitpid".into(),
                    args: vec![
                        FdRef {
                            num: -1,
                            name: None,
                        },
                        FdRef {
                            num: status,
                            name: None,
                        },
                    ],
                },
                Ret::value(i64::from(who)),
            )
        };
        let close = |pid| {
            ev(
                pid,
                10,
                Call::Close {
                    fd: FdRef { num: 3, name: None },
                },
                Ret::value(0),
            )
        };
        let events = [
            close(1),
            close(2),
            close(3),
            close(4),
            close(5),
            // 2 exits 3 (its own word, and its parent's wait agrees); 3 is killed by SIGKILL
            // and reaped; 4 says exit(256) (a parent sees 0); 5 is killed and nobody reaps it.
            exit(2, 3),
            reap(1, 2, 3 << 8),
            reap(1, 3, libc::SIGKILL),
            exit(4, 256),
            exit(1, 0),
        ];
        let s = Summary::of(&events);
        assert_eq!(s.ends[&1], End::Exited(0));
        assert_eq!(
            s.ends[&2],
            End::Reaped {
                by: 1,
                how: Ended::Code(3)
            }
        );
        assert_eq!(
            s.ends[&3],
            End::Reaped {
                by: 1,
                how: Ended::Signal(libc::SIGKILL)
            }
        );
        assert_eq!(s.ends[&4], End::Exited(0));
        assert_eq!(s.ends.get(&5), None);
        let text = s.render();
        assert!(
            text.contains(
                "# ended: 1 exit 0, 2 exit 3 (reaped by 1), 3 killed by SIGKILL (reaped by 1), \
                 4 exit 0, 5 no exit record (killed or crashed, not reaped by a traced process)\n"
            ),
            "{text}"
        );
        assert_eq!(
            s.ends_by_kind(),
            "2x exit 0, 1x exit 3, 1x killed by SIGKILL, 1x no record"
        );
    }

    #[test]
    fn a_line_cut_short_and_a_hole_between_lines_are_counted_not_fatal() {
        let good = serde_json::to_string(&ev(
            7,
            1,
            Call::Close {
                fd: FdRef { num: 3, name: None },
            },
            Ret::value(0),
        ))
        .unwrap();
        // A thread's reserved line never copied (zeros), another's complete, one cut short.
        let mut bytes = good.clone().into_bytes();
        bytes.push(b'\n');
        bytes.extend([0u8; 40]);
        bytes.extend(good.as_bytes());
        bytes.push(b'\n');
        bytes.extend(&good.as_bytes()[..good.len() / 2]);
        let lines: Vec<&[u8]> = lines(&bytes).collect();
        assert_eq!(lines.len(), 3);
        let parsed = lines
            .iter()
            .filter(|l| serde_json::from_slice::<Event>(l).is_ok())
            .count();
        assert_eq!(parsed, 2);
    }
}

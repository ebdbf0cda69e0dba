//! What a run did, in numbers: calls per kind, accepts and listeners per process, errors,
//! how each process ended, and where connections were processed and accepted (locality).

use std::collections::BTreeMap;

use nix::errno::Errno;

use super::{End, Ended};
use crate::trace::{Call, Event, Ret};

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

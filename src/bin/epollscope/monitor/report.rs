//! The end of a `monitor` run: the summary line of `--stats`, the JSON document, or the flows,
//! events, bytes and counters as text.

use std::io::Write;

use anyhow::Context;
use std::time::Duration;

use epollscope::monitor::Side;
use epollscope::monitor::output::{Shown, describe, flow_line};

use super::Run;
use super::input::Stop;

impl Run {
    /// Completes the outputs (`--write`, `--flows`), then lets `stop`'s signals act again and
    /// prints the report.
    pub(super) fn finish(&mut self, took: Duration, stop: Option<Stop>) -> anyhow::Result<()> {
        if let Some((w, _)) = &mut self.writer {
            w.flush().context("writing the capture")?;
        }
        for info in self.m.flows() {
            let n = info.id.n;
            self.flows.entry(n).or_default().info = Some(info);
        }
        let stats = self.m.stats().clone();
        if let Some(dir) = &mut self.dir {
            dir.finish()?;
        }
        if let Some(stop) = stop {
            stop.release();
        }
        if self.args.stats {
            let bytes = self.counted[0] + self.counted[1];
            let secs = took.as_secs_f64().max(1e-9);
            if self.args.json {
                let doc = serde_json::json!({"stats": stats, "bytes": {"cli": self.counted[0], "svr": self.counted[1]}, "seconds": secs});
                writeln!(self.out, "{doc}")?;
            } else {
                writeln!(
                    self.out,
                    "packets {} tcp {} flows {} orphans {} bytes {} (cli {} svr {}) in {:.3} s: {:.1} MB/s reassembled",
                    stats.packets,
                    stats.tcp_segments,
                    stats.flows,
                    stats.orphans,
                    bytes,
                    self.counted[0],
                    self.counted[1],
                    secs,
                    bytes as f64 / secs / 1e6
                )?;
            }
            self.out.flush()?;
            return Ok(());
        }
        let sides: Vec<Side> = Side::BOTH
            .into_iter()
            .filter(|&s| self.shows(Some(s)))
            .collect();
        if self.args.json && !self.args.follow {
            let flows: Vec<serde_json::Value> = self
                .flows
                .values()
                .filter_map(|f| {
                    let mut v = serde_json::to_value(f.info.as_ref()?).ok()?;
                    for &s in &sides {
                        let shown = &f.data[s.index()];
                        v[format!("{}_data", s.name())] =
                            serde_json::Value::String(self.render(shown));
                        if !shown.gaps.is_empty() {
                            v[format!("{}_gaps", s.name())] = gaps_json(shown);
                        }
                    }
                    Some(v)
                })
                .collect();
            let doc = serde_json::json!({"flows": flows, "events": self.events, "stats": stats});
            writeln!(self.out, "{}", serde_json::to_string_pretty(&doc)?)?;
            self.out.flush()?;
            return Ok(());
        }
        if self.args.json {
            return Ok(());
        }
        writeln!(self.out, "flows: {}", self.flows.len())?;
        for f in self.flows.values() {
            if let Some(i) = &f.info {
                writeln!(self.out, "  {}", flow_line(i))?;
            }
        }
        if !self.args.follow && self.dir.is_none() {
            writeln!(self.out, "events:")?;
            for ev in &self.events {
                writeln!(self.out, "  {}", describe(ev, &self.rel(ev.ts_ns)))?;
            }
            for (n, f) in &self.flows {
                for &s in &sides {
                    let data = &f.data[s.index()];
                    let dir = match s {
                        Side::Cli => "server -> client",
                        Side::Svr => "client -> server",
                    };
                    let missing: u64 = data.gaps.iter().map(|g| g.1).sum();
                    let missing = if missing > 0 {
                        format!(", {missing} missing")
                    } else {
                        String::new()
                    };
                    writeln!(
                        self.out,
                        "flow {n} {} ({dir}, {} bytes{missing}):",
                        s.name(),
                        data.data.len()
                    )?;
                    let text = self.render(data);
                    for l in text.lines() {
                        writeln!(self.out, "    {l}")?;
                    }
                }
            }
        }
        writeln!(
            self.out,
            "packets {} (tcp {}, not tcp {}, malformed {}, filtered {}, orphans {})",
            stats.packets,
            stats.tcp_segments,
            stats.not_tcp,
            stats.malformed,
            stats.filtered,
            stats.orphans
        )?;
        let extra = [
            ("fragments", stats.fragments),
            ("reassembled", stats.reassembled),
            ("fragments dropped", stats.fragments_dropped),
            ("evicted", stats.evicted),
            ("midstream", stats.midstream),
            ("resumed", stats.resumed),
            ("rst ignored", stats.rst_ignored),
            ("after end", stats.after_end),
        ];
        let extra: Vec<String> = extra
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        if !extra.is_empty() {
            writeln!(self.out, "also: {}", extra.join(", "))?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Where the holes are in a side's bytes shown: `[{"at": position, "missing": bytes}]`.
pub(super) fn gaps_json(s: &Shown) -> serde_json::Value {
    serde_json::Value::Array(
        s.gaps
            .iter()
            .map(|&(at, n)| serde_json::json!({"at": at, "missing": n}))
            .collect(),
    )
}

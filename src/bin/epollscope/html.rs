//! `--html FILE`: one self-contained page (inline CSS and SVG, no script, no network) with a
//! timeline per run: one lane per actor (or process), each call placed at its real start time
//! from the raw trace, calls that took time drawn as bars from call to return, a call still
//! blocked when the run ended drawn to the end, wake-ups (the return of a call that blocked)
//! marked, the failing step in red with expected and actual, and the symbolic trace alongside.
//! PASS/FAIL filters at the top are radio buttons driving CSS.

use std::fmt::Write as _;

use epollscope::scenario::report::{Failure, ScenarioReport};
use epollscope::trace::{Call, Event, Format, Ret};

/// One timeline: a scenario instance under one runner, or a traced program.
pub struct Panel<'a> {
    pub heading: String,
    /// `None` for a traced program (no verdict).
    pub passed: Option<bool>,
    pub events: &'a [Event],
    pub failure: Option<&'a Failure>,
    /// The symbolic trace shown alongside (scenarios), else the raw lines.
    pub listing: String,
    /// Lanes named by process id rather than by actor role.
    pub lanes_by_pid: bool,
}

impl<'a> Panel<'a> {
    pub fn of_report(r: &'a ScenarioReport, under: &str) -> Panel<'a> {
        Panel {
            heading: format!(
                "{} {} [{}]{}",
                if r.passed { "PASS" } else { "FAIL" },
                r.path.display(),
                r.family,
                if under.is_empty() {
                    String::new()
                } else {
                    format!(" under {under}")
                }
            ),
            passed: Some(r.passed),
            events: &r.trace,
            failure: r.failure.as_ref(),
            listing: r.render_trace(Format::SYMBOLIC),
            lanes_by_pid: false,
        }
    }
}

const STYLE: &str = "
body{font:14px system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 8px}
.filters{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ccc}
.filters label{margin-right:14px;cursor:pointer}
#only-pass:checked~main .instance.fail,#only-fail:checked~main .instance.pass{display:none}
.instance{display:flex;gap:12px;margin:14px 0;flex-wrap:wrap}
.panel{border:1px solid #ccc;border-radius:4px;padding:8px;flex:1 1 640px;min-width:0}
.panel.pass h2{color:#1a7f37}.panel.fail h2{color:#c62828}
h2{font-size:14px;margin:0 0 6px;font-family:monospace}
.failure{background:#fdecea;border-left:4px solid #c62828;padding:4px 8px;margin:6px 0;font-family:monospace;white-space:pre-wrap}
.body{display:flex;gap:10px;flex-wrap:wrap}
svg{flex:0 0 auto;background:#fafafa;border:1px solid #eee}
pre.listing{flex:1 1 300px;margin:0;font-size:12px;max-height:420px;overflow:auto;background:#f6f8fa;padding:6px}
pre.listing .failing{background:#fdecea;color:#c62828;font-weight:bold}
.lane-label{font:12px monospace;fill:#333}
.lane-line{stroke:#ddd}
.call{fill:#1565c0}.bar{fill:#90caf9;stroke:#1565c0}.bar.open{fill:#ffe0b2;stroke:#ef6c00;stroke-dasharray:3 2}
.err{fill:#8e24aa}.wake{fill:#2e7d32}
.failing-step{fill:#c62828;stroke:#c62828}
.axis{font:11px monospace;fill:#666}
";

const WIDTH: f64 = 720.0;
const LABEL: f64 = 90.0;
const LANE: f64 = 28.0;

/// The whole page: `rows` of panels, the panels of a row side by side.
pub fn page(title: &str, rows: &[Vec<Panel>]) -> String {
    let verdict = |row: &Vec<Panel>| row.iter().all(|p| p.passed != Some(false));
    let passed = rows.iter().filter(|r| verdict(r)).count();
    let failed = rows.len() - passed;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n\
         <input type=\"radio\" name=\"show\" id=\"all\" checked hidden>\
         <input type=\"radio\" name=\"show\" id=\"only-pass\" hidden>\
         <input type=\"radio\" name=\"show\" id=\"only-fail\" hidden>\n\
         <nav class=\"filters\"><label for=\"all\">all ({n})</label>\
         <label for=\"only-pass\">PASS ({passed})</label>\
         <label for=\"only-fail\">FAIL ({failed})</label></nav>\n<main>\n",
        t = esc(title),
        n = rows.len()
    );
    for row in rows {
        let class = if verdict(row) { "pass" } else { "fail" };
        let _ = writeln!(out, "<section class=\"instance {class}\">");
        for panel in row {
            panel_html(&mut out, panel);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main></body></html>\n");
    out
}

/// The lane of an event: its actor, or its process.
fn lane_of(e: &Event, by_pid: bool) -> String {
    if by_pid || e.actor.is_empty() {
        format!("pid {}", e.pid)
    } else {
        e.actor.clone()
    }
}

/// Whether `e` is the step the failure's `actual` line describes.
fn is_failing(e: &Event, failure: Option<&Failure>) -> bool {
    let Some(actual) = failure.and_then(|f| f.actual.as_deref()) else {
        return false;
    };
    let line = e.render(Format::SYMBOLIC);
    actual == line || actual.ends_with(&format!("] {line}"))
}

fn panel_html(out: &mut String, p: &Panel) {
    let class = match p.passed {
        Some(true) => "panel pass",
        Some(false) => "panel fail",
        None => "panel",
    };
    let _ = writeln!(out, "<div class=\"{class}\"><h2>{}</h2>", esc(&p.heading));
    if let Some(f) = p.failure {
        let _ = writeln!(
            out,
            "<div class=\"failure\">line {}:{}: {}\nexpected: {}\nactual:   {}</div>",
            f.line,
            f.col,
            esc(&f.message),
            esc(&f.script),
            esc(f.actual.as_deref().unwrap_or("(no call was made)"))
        );
    }
    out.push_str("<div class=\"body\">");
    timeline(out, p);
    out.push_str("<pre class=\"listing\">");
    let actual = p.failure.and_then(|f| f.actual.as_deref());
    for line in p.listing.lines() {
        let failing = actual.is_some_and(|a| a == line || a.ends_with(line.trim()));
        if failing {
            let _ = writeln!(out, "<span class=\"failing\">{}</span>", esc(line));
        } else {
            let _ = writeln!(out, "{}", esc(line));
        }
    }
    out.push_str("</pre></div></div>\n");
}

fn timeline(out: &mut String, p: &Panel) {
    let calls: Vec<&Event> = p
        .events
        .iter()
        .filter(|e| !matches!(e.call, Call::Note { .. }))
        .collect();
    let mut lanes: Vec<String> = vec![];
    for e in &calls {
        let lane = lane_of(e, p.lanes_by_pid);
        if !lanes.contains(&lane) {
            lanes.push(lane);
        }
    }
    let start = calls.iter().map(|e| e.time_us).min().unwrap_or(0);
    let end = calls
        .iter()
        .map(|e| e.time_us.saturating_add(e.dur_us))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let span = (end - start) as f64;
    let x = |t: u64| LABEL + (t.saturating_sub(start)) as f64 / span * (WIDTH - LABEL - 10.0);
    let height = LANE * lanes.len() as f64 + 24.0;
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">"
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = LANE * i as f64 + LANE / 2.0;
        let _ = writeln!(
            out,
            "<g class=\"lane\" data-lane=\"{l}\"><line class=\"lane-line\" x1=\"{LABEL}\" \
             x2=\"{WIDTH}\" y1=\"{y}\" y2=\"{y}\"/><text class=\"lane-label\" x=\"4\" \
             y=\"{ty}\">{l}</text></g>",
            l = esc(lane),
            ty = y + 4.0
        );
    }
    // A call that started blocked and never returned in the trace is open to the end.
    let resumed_starts: Vec<(i32, u64)> = calls
        .iter()
        .filter(|e| e.resumed)
        .map(|e| (e.pid, e.time_us))
        .collect();
    for e in &calls {
        let lane = lane_of(e, p.lanes_by_pid);
        let i = lanes.iter().position(|l| *l == lane).unwrap_or(0);
        let y = LANE * i as f64 + 6.0;
        let h = LANE - 12.0;
        let raw = e.render(Format::RAW);
        let title = format!("<title>{}</title>", esc(&raw));
        let failing = if is_failing(e, p.failure) {
            " failing-step"
        } else {
            ""
        };
        let x0 = x(e.time_us);
        match e.ret {
            Ret::Unfinished => {
                // Drawn by its resumed event when there is one; else still blocked at the end.
                let returned = resumed_starts
                    .iter()
                    .any(|&(pid, t)| pid == e.pid && t >= e.time_us);
                if !returned {
                    let _ = writeln!(
                        out,
                        "<rect class=\"bar open{failing}\" x=\"{x0:.1}\" y=\"{y}\" width=\"{w:.1}\" \
                         height=\"{h}\">{title}</rect>",
                        w = (x(end) - x0).max(2.0)
                    );
                }
            }
            _ => {
                let x1 = x(e.time_us.saturating_add(e.dur_us));
                let kind = if matches!(e.ret, Ret::Err { .. }) {
                    "err"
                } else {
                    "call"
                };
                if x1 - x0 >= 3.0 {
                    let _ = writeln!(
                        out,
                        "<rect class=\"bar{failing}\" x=\"{x0:.1}\" y=\"{y}\" width=\"{w:.1}\" \
                         height=\"{h}\">{title}</rect>",
                        w = x1 - x0
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "<rect class=\"{kind}{failing}\" x=\"{x0:.1}\" y=\"{y}\" width=\"2\" \
                         height=\"{h}\">{title}</rect>"
                    );
                }
                if e.resumed {
                    let (cy, top) = (y + h / 2.0, y - 3.0);
                    let _ = writeln!(
                        out,
                        "<path class=\"wake\" d=\"M{x1:.1} {top} l5 {half} l-5 {half} z\">\
                         <title>woke: {}</title></path>",
                        esc(&raw),
                        half = (cy - top)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "<text class=\"axis\" x=\"{LABEL}\" y=\"{ay}\">0 ms</text>\
         <text class=\"axis\" x=\"{ex}\" y=\"{ay}\" text-anchor=\"end\">{ms:.1} ms</text></svg>",
        ay = height - 6.0,
        ex = WIDTH - 10.0,
        ms = span / 1000.0
    );
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

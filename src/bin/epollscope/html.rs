//! `--html FILE`: one self-contained page (inline CSS and SVG, no script, no network) with a
//! timeline per run: one lane per actor (or process), each call placed at its real start time
//! from the raw trace, calls that took time drawn as bars from call to return, a call still
//! blocked when the run ended drawn to the end, wake-ups (the return of a call that blocked:
//! a scenario's background call, or a traced call the shim saw sleep) marked, the failing step in red with expected and actual, and the symbolic trace alongside.
//! PASS/FAIL filters at the top are radio buttons driving CSS.

use std::fmt::Write as _;

use epollscope::scenario::report::{Failure, ScenarioReport};
use epollscope::trace::{Call, Event, Format, Ret};
use epollscope::vm::matrix::{Matrix, Verdict};

/// One timeline: a scenario instance under one runner, or a traced program.
pub struct Panel<'a> {
    pub heading: String,
    /// `None` for a traced program (no verdict).
    pub passed: Option<bool>,
    pub events: &'a [Event],
    pub failure: Option<Failure>,
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
            failure: r.failure.clone(),
            listing: r.render_trace(Format::SYMBOLIC),
            lanes_by_pid: false,
        }
    }
}

/// The kernel matrix as rows of panels: one row per scenario instance, one panel per kernel
/// in the order the kernels were given, each with that kernel's own timeline. A kernel that
/// skipped the instance or gave no result has a panel saying why.
pub fn matrix_rows(m: &Matrix) -> Vec<Vec<Panel<'_>>> {
    m.rows
        .iter()
        .map(|row| {
            m.kernels
                .iter()
                .zip(&row.kernels)
                .map(|(kernel, cell)| {
                    let found = kernel
                        .instances
                        .iter()
                        .find(|i| i.path == row.path && i.family == row.family);
                    let heading = |word: &str| {
                        format!(
                            "{word} {} [{}] on {}",
                            row.path.display(),
                            row.family,
                            kernel.label()
                        )
                    };
                    let (passed, listing) = match &cell.verdict {
                        Verdict::Pass => (Some(true), None),
                        Verdict::Fail { .. } => (Some(false), None),
                        Verdict::Skip { reason } => (None, Some(format!("skipped: {reason}"))),
                        // Not a pass: the filters count it with the failures.
                        Verdict::Missing { reason } => {
                            (Some(false), Some(format!("no result: {reason}")))
                        }
                    };
                    Panel {
                        heading: heading(cell.verdict.word()),
                        passed,
                        events: found.map_or(&[][..], |i| &i.trace[..]),
                        failure: match &cell.verdict {
                            Verdict::Fail { failure: Some(f) } => Some(f.into()),
                            _ => None,
                        },
                        listing: listing
                            .or_else(|| cell.symbolic_trace.clone())
                            .unwrap_or_default(),
                        lanes_by_pid: false,
                    }
                })
                .collect()
        })
        .collect()
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
    // With the actor when the line names one: the same call by another actor is not it.
    actual == e.render(Format::SYMBOLIC.with_actors(true)) || actual == e.render(Format::SYMBOLIC)
}

fn panel_html(out: &mut String, p: &Panel) {
    let class = match p.passed {
        Some(true) => "panel pass",
        Some(false) => "panel fail",
        None => "panel",
    };
    let _ = writeln!(out, "<div class=\"{class}\"><h2>{}</h2>", esc(&p.heading));
    if let Some(f) = &p.failure {
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
    let actual = p.failure.as_ref().and_then(|f| f.actual.as_deref());
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
    if calls.is_empty() {
        out.push_str("<p class=\"no-calls\">no calls traced</p>");
        return;
    }
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
        let failing = if is_failing(e, p.failure.as_ref()) {
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
                // Resumed: a scenario's background call returned; slept: the shim saw the
                // traced thread sleep in the call. Either way something woke it.
                if e.resumed || e.slept {
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

#[cfg(test)]
mod tests {
    use super::*;
    use epollscope::trace::{FdRef, Stability};
    use epollscope::vm::Accel;
    use epollscope::vm::matrix::{Failure as RunFailure, Instance, KernelRun};

    fn listen(actor: &str, time_us: u64) -> Event {
        Event {
            actor: actor.into(),
            pid: 7,
            time_us,
            dur_us: 2,
            call: Call::Listen {
                fd: FdRef {
                    num: 3,
                    name: Some("L".into()),
                },
                backlog: 128,
            },
            ret: Ret::value(0),
            resumed: false,
            slept: false,
            stability: Stability::Stable,
        }
    }

    fn instance(path: &str, passed: bool, actors: &[&str]) -> Instance {
        Instance {
            name: path.trim_end_matches(".scn").into(),
            path: path.into(),
            family: "unix".into(),
            passed,
            skipped: None,
            failure: (!passed).then(|| RunFailure {
                line: 4,
                col: 1,
                script: "listen(L, 128) = -1 EINVAL".into(),
                actual: Some("[w2] listen(L, 128) = 0".into()),
                message: "expected EINVAL".into(),
            }),
            duration_ms: 1.0,
            symbolic_trace: "[main] listen(L, 128) = 0\n".into(),
            trace: actors
                .iter()
                .zip(1..)
                .map(|(a, t)| listen(a, 1000 * t))
                .collect(),
        }
    }

    fn kernel(release: &str, accel: Option<Accel>, instances: Vec<Instance>) -> KernelRun {
        KernelRun {
            spec: release.into(),
            release: release.into(),
            host: accel.is_none(),
            accel,
            boot_s: None,
            wall_s: 1.0,
            exit_status: Some(1),
            error: None,
            instances,
        }
    }

    #[test]
    fn matrix_panels_stand_side_by_side_one_per_kernel_with_its_own_events() {
        let mut skipped = instance("b.scn", true, &[]);
        skipped.skipped = Some("needs kernel >= 7.0".into());
        let m = Matrix::build(
            vec![],
            vec![
                kernel(
                    "6.18.4",
                    None,
                    vec![
                        instance("a.scn", true, &["main"]),
                        instance("b.scn", true, &["main", "w1"]),
                    ],
                ),
                kernel(
                    "6.1.0",
                    Some(Accel::Tcg),
                    vec![instance("a.scn", false, &["main", "w1", "w2"]), skipped],
                ),
            ],
        );
        let rows = matrix_rows(&m);
        let shape: Vec<Vec<(String, Option<bool>, usize)>> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|p| (p.heading.clone(), p.passed, p.events.len()))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            [
                vec![
                    ("PASS a.scn [unix] on 6.18.4 (host)".into(), Some(true), 1),
                    (
                        "FAIL a.scn [unix] on 6.1.0 (emulated (TCG))".into(),
                        Some(false),
                        3
                    ),
                ],
                vec![
                    ("PASS b.scn [unix] on 6.18.4 (host)".into(), Some(true), 2),
                    (
                        "SKIP b.scn [unix] on 6.1.0 (emulated (TCG))".into(),
                        None,
                        0
                    ),
                ],
            ]
        );
        assert_eq!(rows[0][1].failure.as_ref().unwrap().line, 4);
        assert_eq!(rows[1][1].listing, "skipped: needs kernel >= 7.0");
        let html = page("t", &rows);
        // Each row is one section holding its kernels' panels; each panel its own lanes.
        let sections: Vec<&str> = html.split("<section class=\"instance ").skip(1).collect();
        assert_eq!(sections.len(), 2);
        assert!(sections[0].starts_with("fail\">"), "{}", sections[0]);
        assert!(sections[1].starts_with("pass\">"), "{}", sections[1]);
        let lanes = |s: &str| s.matches("<g class=\"lane\"").count();
        let panels: Vec<&str> = sections[0].split("<div class=\"panel").skip(1).collect();
        assert_eq!(panels.iter().map(|p| lanes(p)).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(sections[0].matches("failing-step\"").count(), 1);
        assert!(sections[1].contains("<p class=\"no-calls\">"));
    }

    #[test]
    fn a_kernel_without_result_is_a_failing_panel_with_the_reason() {
        let mut dead = kernel("5.10.0", Some(Accel::Tcg), vec![]);
        dead.error = Some("the guest did not boot".into());
        let m = Matrix::build(
            vec![],
            vec![
                kernel("6.18.4", None, vec![instance("a.scn", true, &["main"])]),
                dead,
            ],
        );
        let rows = matrix_rows(&m);
        assert_eq!(rows[0].len(), 2);
        assert_eq!(rows[0][1].passed, Some(false));
        assert_eq!(rows[0][1].listing, "no result: the guest did not boot");
        assert!(page("t", &rows).contains("<label for=\"only-fail\">FAIL (1)</label>"));
    }
}

//! Shrinking a finding: drop actors (a fork and every line of its actor), connections (every
//! line naming a client), then single lines, while the scenario still parses and the same
//! check still fails. Greedy and bounded.
//!
//! Dropping a line can leave a background call that nothing wakes any more (the connect that
//! woke it is gone), so a candidate may hang: candidates run with a short step timeout, which
//! costs a hanging candidate a fraction of a second instead of the default two. A candidate
//! that hangs fails as a run failure; it stays only if that is the very check being shrunk.

/// Most check runs one shrink may spend.
const BUDGET: usize = 200;

/// The step timeout of a candidate: far above what any generated step takes (a few ms), far
/// below the default.
const CANDIDATE_STEP_TIMEOUT: &str = "step-timeout: 300ms";

/// Returns the smallest text found for which `fails` still reports, and its detail.
pub fn shrink(
    text: &str,
    detail: &str,
    mut fails: impl FnMut(&str) -> Option<String>,
) -> (String, String) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut detail = detail.to_string();
    let mut spent = 0;
    loop {
        let mut progress = false;
        for group in groups(&lines) {
            if spent >= BUDGET {
                return (join(&lines), detail);
            }
            let candidate: Vec<String> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| !group.contains(i))
                .map(|(_, l)| l.clone())
                .collect();
            let t = join(&candidate);
            if epollscope::scenario::parse(std::path::Path::new("shrink.scn"), &t).is_err() {
                continue;
            }
            spent += 1;
            if let Some(d) = fails(&with_short_steps(&t)) {
                lines = candidate;
                detail = d;
                progress = true;
                break;
            }
        }
        if !progress {
            return (join(&lines), detail);
        }
    }
}

/// `text` with [`CANDIDATE_STEP_TIMEOUT`] after its `family:` line (or first, without one).
fn with_short_steps(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + CANDIDATE_STEP_TIMEOUT.len() + 1);
    let mut added = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !added && line.starts_with("family:") {
            out.push_str(CANDIDATE_STEP_TIMEOUT);
            out.push('\n');
            added = true;
        }
    }
    if added {
        out
    } else {
        format!("{CANDIDATE_STEP_TIMEOUT}\n{text}")
    }
}

fn join(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Candidate removals, biggest first: each actor, each client, each line.
fn groups(lines: &[String]) -> Vec<Vec<usize>> {
    let mut out = vec![];
    let body: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i].trim();
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("family:")
        })
        .collect();
    for &i in &body {
        if let Some(actor) = lines[i].strip_prefix("fork() = ") {
            let tag = format!("[{}]", actor.trim());
            let mut g = vec![i];
            g.extend(body.iter().copied().filter(|&j| lines[j].starts_with(&tag)));
            out.push(g);
        }
    }
    for &i in &body {
        if let Some(name) = lines[i].split(" = ").nth(1).map(str::trim)
            && name.starts_with('C')
        {
            let g: Vec<usize> = body
                .iter()
                .copied()
                .filter(|&j| mentions(&lines[j], name))
                .collect();
            out.push(g);
        }
    }
    out.extend(body.iter().rev().map(|&i| vec![i]));
    out
}

fn mentions(line: &str, name: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == name)
}

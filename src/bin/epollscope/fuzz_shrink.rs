//! Shrinking a finding: drop actors (a fork and every line of its actor), connections (every
//! line naming a client), then single lines, while the scenario still parses and the same
//! check still fails, and where the finding names a failing statement ("line N: STATEMENT:
//! what happened"), the same statement still fails the same way: otherwise a run failure
//! (a hang, say) could shrink into a different one that dropping lines made. Greedy and
//! bounded.
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
    let wanted = signature(detail);
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
            if let Some(d) = fails(&with_short_steps(&t)).filter(|d| signature(d) == wanted) {
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

/// What must stay the same while shrinking: for a detail of the form "line N: STATEMENT:
/// what happened", the statement and what happened without the words that hold numbers (line
/// and fd numbers, pids, counts and timeouts change as lines go and candidates run); other
/// details (a comparison of two runs) are not tied to one statement.
fn signature(detail: &str) -> Option<String> {
    let rest = detail.strip_prefix("line ")?;
    let (_, rest) = rest.split_once(": ")?;
    let first = rest.lines().next().unwrap_or("");
    // Words with a digit go whole: "2s" against a candidate's "300ms" is the same hang.
    let words: Vec<&str> = first
        .split(' ')
        .filter(|w| !w.contains(|c: char| c.is_ascii_digit()))
        .collect();
    Some(words.join(" "))
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "socket(FAMILY, SOCK_STREAM, 0) = L\nbind(L, ADDR) = 0\n\
        listen(L, 8) = 0\nfork() = w1\n[w1] accept(L, NULL, NULL) = ? &\n\
        socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = ?\nawait(w1)\n";
    const HUNG: &str =
        "line 5: [w1] accept(L, NULL, NULL) = ? &: step hung: process w1 (pid 7) within 2s";

    #[test]
    fn a_run_failure_does_not_shrink_into_another_one() {
        // Every candidate fails, but another way (or another statement): nothing is dropped.
        let mut tried = 0;
        let (shrunk, _) = shrink(TEXT, HUNG, |t| {
            tried += 1;
            Some(if t.contains("accept") {
                "line 8: await(w1): step hung: process w1 (pid 9)".to_string()
            } else {
                "line 4: await(w1): await(w1): w1 has no call in the background".to_string()
            })
        });
        assert!(tried > 0);
        assert_eq!(shrunk, TEXT);
        // The same statement failing the same way, with other numbers: that shrinks.
        let (shrunk, _) = shrink(TEXT, HUNG, |t| {
            t.contains("accept").then(|| {
                "line 3: [w1] accept(L, NULL, NULL) = ? &: step hung: process w1 (pid 8) within 300ms"
                    .into()
            })
        });
        assert!(shrunk.lines().count() < TEXT.lines().count(), "{shrunk}");
    }

    #[test]
    fn a_comparison_of_two_runs_shrinks_on_the_check_alone() {
        let text = TEXT;
        let (shrunk, _) = shrink(text, "[(1, \"w1\")] vs []", |_| {
            Some("[] vs [(2, \"C1\")]".into())
        });
        assert!(shrunk.lines().count() < text.lines().count(), "{shrunk}");
    }

    #[test]
    fn candidates_run_with_a_short_step_timeout() {
        assert_eq!(
            with_short_steps("# x\nfamily: inet\n\nfork() = w1\n"),
            "# x\nfamily: inet\nstep-timeout: 300ms\n\nfork() = w1\n"
        );
        assert_eq!(
            with_short_steps("fork() = w1\n"),
            "step-timeout: 300ms\nfork() = w1\n"
        );
    }
}

//! Comparing two runs of one scenario instance (native and under the Fastsocket shim): both
//! traces side by side, aligned line by line with the differences marked, and the aggregates
//! whose values differ ("woken(w1, w2, w3, w4): native 4, fastsocket 1").

use serde::Serialize;

use super::report::ScenarioReport;
use crate::trace::{Event, Format, Stability};

/// A trace for comparison: symbolic, but with every outcome shown as it was (patterns and
/// hidden background returns included) and each aggregate with its value.
pub fn comparison_lines(report: &ScenarioReport) -> Vec<String> {
    report
        .trace
        .iter()
        .enumerate()
        .map(
            |(i, event)| match report.aggregates.iter().find(|a| a.at == i) {
                Some(a) => format!("# {} = {}", a.what, a.value),
                None => Event {
                    stability: Stability::Stable,
                    ..event.clone()
                }
                .render(Format::SYMBOLIC.with_actors(true)),
            },
        )
        .collect()
}

/// How a line pair of a side-by-side view relates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mark {
    Same,
    Changed,
    OnlyLeft,
    OnlyRight,
}

/// Aligns two traces (longest common subsequence; adjacent removals and additions pair up as
/// changes) into rows of (left, right, mark).
pub fn align(left: &[String], right: &[String]) -> Vec<(Option<String>, Option<String>, Mark)> {
    let (n, m) = (left.len(), right.len());
    // lcs[i][j]: common length of left[i..] and right[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if left[i] == right[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut rows = vec![];
    let (mut i, mut j) = (0, 0);
    let (mut only_left, mut only_right) = (vec![], vec![]);
    let flush = |rows: &mut Vec<_>, ol: &mut Vec<String>, or: &mut Vec<String>| {
        let pairs = ol.len().max(or.len());
        let (mut a, mut b) = (ol.drain(..), or.drain(..));
        for _ in 0..pairs {
            let (l, r) = (a.next(), b.next());
            let mark = match (&l, &r) {
                (Some(_), Some(_)) => Mark::Changed,
                (Some(_), None) => Mark::OnlyLeft,
                _ => Mark::OnlyRight,
            };
            rows.push((l, r, mark));
        }
    };
    while i < n || j < m {
        if i < n && j < m && left[i] == right[j] {
            flush(&mut rows, &mut only_left, &mut only_right);
            rows.push((Some(left[i].clone()), Some(right[j].clone()), Mark::Same));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            only_left.push(left[i].clone());
            i += 1;
        } else {
            only_right.push(right[j].clone());
            j += 1;
        }
    }
    flush(&mut rows, &mut only_left, &mut only_right);
    rows
}

/// Two columns of `width`, a marker between them: ` ` same, `|` changed, `<` `>` one side only.
pub fn side_by_side(left: &[String], right: &[String], width: usize) -> String {
    let cut = |s: &Option<String>| {
        let s = s.as_deref().unwrap_or("");
        if s.chars().count() > width {
            let head: String = s.chars().take(width.saturating_sub(1)).collect();
            format!("{head}…")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for (l, r, mark) in align(left, right) {
        let sign = match mark {
            Mark::Same => ' ',
            Mark::Changed => '|',
            Mark::OnlyLeft => '<',
            Mark::OnlyRight => '>',
        };
        let line = format!("{:<width$} {sign} {}", cut(&l), cut(&r));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An aggregate whose value differs between the two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub what: String,
    pub left: i64,
    pub right: i64,
}

/// The aggregates (`woken(...)`, `sum(...)`) evaluated in both runs with different values.
pub fn differences(left: &ScenarioReport, right: &ScenarioReport) -> Vec<Difference> {
    let values = |r: &ScenarioReport| -> Vec<(String, i64)> {
        r.aggregates
            .iter()
            .map(|a| (a.what.clone(), a.value))
            .collect()
    };
    let right_values = values(right);
    values(left)
        .into_iter()
        .zip(right_values)
        .filter(|((lw, lv), (rw, rv))| lw == rw && lv != rv)
        .map(|((what, left), (_, right))| Difference { what, left, right })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn alignment_pairs_changes_and_keeps_common_lines() {
        let left = lines("a\nb\nc\nd");
        let right = lines("a\nB\nc\nd\ne");
        let rows = align(&left, &right);
        let marks: Vec<Mark> = rows.iter().map(|r| r.2).collect();
        assert_eq!(
            marks,
            [
                Mark::Same,
                Mark::Changed,
                Mark::Same,
                Mark::Same,
                Mark::OnlyRight
            ]
        );
        assert_eq!(
            side_by_side(&left, &right, 3),
            "a     a\nb   | B\nc     c\nd     d\n    > e\n"
        );
    }
}

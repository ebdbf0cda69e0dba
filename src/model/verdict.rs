//! What the documentation allows for one step, and how an observed result is labelled
//! against it.

use nix::errno::Errno;
use serde::Serialize;

use super::rules::Rule;

/// One outcome the documentation allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Res {
    /// Exactly this return value.
    Val(i64),
    /// A new fd (its number is the caller's lowest free one, which the model does not track).
    NewFd,
    /// A child's pid (any positive number).
    Pid,
    /// Any value in this inclusive range.
    Range(i64, i64),
    Err(Errno),
}

impl Res {
    pub fn matches(&self, got: &Result<i64, Errno>) -> bool {
        match (self, got) {
            (Res::Val(v), Ok(g)) => v == g,
            (Res::NewFd, Ok(g)) => *g >= 0,
            (Res::Pid, Ok(g)) => *g > 0,
            (Res::Range(lo, hi), Ok(g)) => lo <= g && g <= hi,
            (Res::Err(e), Err(g)) => e == g,
            _ => false,
        }
    }

    /// How many distinct outcomes this stands for (a new fd is one outcome: "a new fd").
    fn width(&self) -> i64 {
        match self {
            Res::Range(lo, hi) => hi.saturating_sub(*lo).saturating_add(1),
            _ => 1,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Res::Val(v) => v.to_string(),
            Res::NewFd => "a new fd".into(),
            Res::Pid => "a child pid".into(),
            Res::Range(lo, hi) if lo == hi => lo.to_string(),
            Res::Range(lo, hi) => format!("{lo}..{hi}"),
            Res::Err(e) => format!("-1 {e:?}"),
        }
    }
}

/// What the documentation allows for one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// One of these outcomes, and nothing else.
    Set(Vec<Res>),
    /// The documentation says nothing (or the model does not know the state).
    Unspecified,
}

impl Allowed {
    pub fn one(res: Res) -> Allowed {
        Allowed::Set(vec![res])
    }

    /// A count in `lo..=hi` (an empty range allows nothing).
    pub fn range(lo: i64, hi: i64) -> Allowed {
        Allowed::Set(if lo <= hi {
            vec![Res::Range(lo, hi)]
        } else {
            vec![]
        })
    }

    /// Whether the documentation leaves a single outcome.
    pub fn is_determined(&self) -> bool {
        match self {
            Allowed::Set(set) => set.iter().map(Res::width).sum::<i64>() == 1,
            Allowed::Unspecified => false,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Allowed::Set(set) if set.is_empty() => "nothing".into(),
            Allowed::Set(set) => set.iter().map(Res::text).collect::<Vec<_>>().join(" or "),
            Allowed::Unspecified => "anything".into(),
        }
    }
}

/// The four labels of `--explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The only documented outcome.
    Promised,
    /// One of several documented outcomes.
    Allowed,
    /// The documentation says nothing.
    Unspecified,
    /// The kernel did what the documentation excludes.
    Contradicts,
}

impl Label {
    pub fn text(self) -> &'static str {
        match self {
            Label::Promised => "promised",
            Label::Allowed => "allowed",
            Label::Unspecified => "unspecified",
            Label::Contradicts => "CONTRADICTS",
        }
    }
}

/// The model's word on one checked step.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub line: usize,
    pub col: usize,
    pub actor: String,
    pub label: Label,
    pub rule: &'static Rule,
    pub allowed: Allowed,
    /// What happened, as shown (`3`, `-1 EAGAIN`; the script's name for a new fd, its
    /// pattern for a value it leaves open: both stable across runs).
    pub observed: String,
    /// What happened, as the kernel returned it.
    pub actual: String,
    /// Why, when the allowed set alone does not say (a mask the events broke).
    pub note: Option<String>,
}

impl Judgement {
    /// The outcomes the documentation allowed besides the one observed.
    pub fn others(&self) -> Vec<String> {
        match &self.allowed {
            Allowed::Set(set) => {
                let mut out = vec![];
                for r in set {
                    match r {
                        Res::Range(lo, hi) if hi.saturating_sub(*lo) <= 8 => {
                            out.extend((*lo..=*hi).map(|v| v.to_string()))
                        }
                        other => out.push(other.text()),
                    }
                }
                out.retain(|o| *o != self.observed);
                out
            }
            Allowed::Unspecified => vec![],
        }
    }

    /// One line: label, what else was possible, the rule and its citation.
    pub fn explain(&self) -> String {
        let what = match self.label {
            Label::Allowed => format!("allowed (also possible: {})", self.others().join(", ")),
            Label::Contradicts => {
                format!("CONTRADICTS (documented: {})", self.allowed.text())
            }
            Label::Unspecified if self.rule.id == "not-modelled" => {
                "unspecified (not modelled)".into()
            }
            label => label.text().into(),
        };
        let note = self
            .note
            .as_deref()
            .map_or(String::new(), |n| format!(" [{n}]"));
        format!("{what}: {}: {}{note}", self.rule.cite, self.rule.text)
    }
}

/// Labels `got` against `allowed`.
pub fn label(allowed: &Allowed, got: &Result<i64, Errno>) -> Label {
    match allowed {
        Allowed::Unspecified => Label::Unspecified,
        Allowed::Set(set) if !set.iter().any(|r| r.matches(got)) => Label::Contradicts,
        a if a.is_determined() => Label::Promised,
        Allowed::Set(_) => Label::Allowed,
    }
}

/// A result as written in scripts.
pub fn result_text(got: &Result<i64, Errno>) -> String {
    match got {
        Ok(v) => v.to_string(),
        Err(e) => format!("-1 {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_allowed_set() {
        let cases: &[(Allowed, Result<i64, Errno>, Label)] = &[
            (Allowed::one(Res::Val(0)), Ok(0), Label::Promised),
            (Allowed::one(Res::Val(0)), Ok(1), Label::Contradicts),
            (Allowed::range(0, 1), Ok(1), Label::Allowed),
            (Allowed::range(1, 1), Ok(1), Label::Promised),
            (Allowed::one(Res::NewFd), Ok(5), Label::Promised),
            (
                Allowed::one(Res::NewFd),
                Err(Errno::EAGAIN),
                Label::Contradicts,
            ),
            (
                Allowed::Set(vec![Res::Err(Errno::EBADF), Res::Err(Errno::EINVAL)]),
                Err(Errno::EINVAL),
                Label::Allowed,
            ),
            (Allowed::Unspecified, Ok(7), Label::Unspecified),
        ];
        for (allowed, got, want) in cases {
            assert_eq!(label(allowed, got), *want, "{allowed:?} {got:?}");
        }
    }
}

//! Kernel releases (`6.1.0-57-amd64`) and what a scenario needs of one (`kernel: >= 4.5`).
//!
//! Only the leading `major.minor.patch` of a release is compared: it is what upstream numbers
//! and what feature boundaries (EPOLLEXCLUSIVE in 4.5) are stated in. Distribution suffixes
//! (`-57-amd64`) name a build, not a feature level.

use std::fmt;

use serde::Serialize;

/// A kernel release string and its numeric version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    /// As the kernel states it (`uname -r`).
    pub text: String,
    #[serde(skip)]
    pub version: Version,
}

/// `major.minor.patch`; a missing part counts as 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Why a text is not a release or a requirement; `col` is 1-based in the text given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReleaseError {
    pub col: usize,
    pub message: String,
}

fn error(col: usize, message: impl Into<String>) -> ReleaseError {
    ReleaseError {
        col,
        message: message.into(),
    }
}

/// Parses `a[.b[.c]]` at the start of `text` (what follows a non-digit, non-dot is ignored);
/// returns the version and how many bytes it took.
fn leading_version(text: &str) -> Option<(Version, usize)> {
    let mut parts = [0u32; 3];
    let mut count = 0;
    let mut used = 0;
    for (i, piece) in text.split('.').enumerate() {
        let digits = piece.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || i == 3 {
            break;
        }
        // Parsed, not cast: a part too large for u32 is not a release.
        parts[i] = piece[..digits].parse().ok()?;
        count += 1;
        used += digits + usize::from(i > 0);
        if digits < piece.len() {
            break;
        }
    }
    (count > 0).then(|| (Version(parts[0], parts[1], parts[2]), used))
}

impl Release {
    /// Parses a release as `uname -r` prints it.
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let text = text.trim();
        match leading_version(text) {
            Some((version, _)) => Ok(Release {
                text: text.to_string(),
                version,
            }),
            None => Err(error(
                1,
                format!("'{text}' is not a kernel release (expected e.g. 6.1.0-57-amd64)"),
            )),
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Eq => "=",
        }
    }

    fn holds(self, have: Version, bound: Version) -> bool {
        match self {
            Cmp::Ge => have >= bound,
            Cmp::Gt => have > bound,
            Cmp::Le => have <= bound,
            Cmp::Lt => have < bound,
            Cmp::Eq => have == bound,
        }
    }
}

/// What a scenario needs of the kernel: every bound must hold (`>= 4.5, < 5.14` is a range).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    bounds: Vec<(Cmp, Version)>,
}

impl Requirement {
    /// Parses `>= 4.5`, `< 5.14`, `= 6.1` or several joined by commas. Errors carry the
    /// column in `text`.
    pub fn parse(text: &str) -> Result<Requirement, ReleaseError> {
        let mut bounds = vec![];
        let mut offset = 0;
        for piece in text.split(',') {
            let start = offset + (piece.len() - piece.trim_start().len());
            offset += piece.len() + 1;
            let piece = piece.trim();
            if piece.is_empty() {
                return Err(error(
                    start + 1,
                    "expected a bound such as '>= 4.5' or '< 5.14'",
                ));
            }
            let (cmp, rest) = [
                (">=", Cmp::Ge),
                ("<=", Cmp::Le),
                (">", Cmp::Gt),
                ("<", Cmp::Lt),
                ("=", Cmp::Eq),
            ]
            .into_iter()
            .find_map(|(sym, cmp)| piece.strip_prefix(sym).map(|rest| (cmp, rest)))
            .ok_or_else(|| {
                error(
                    start + 1,
                    format!("'{piece}': a bound starts with >=, >, <=, < or ="),
                )
            })?;
            let version_text = rest.trim_start();
            let version_col = start + piece.len() - version_text.len() + 1;
            let version = match leading_version(version_text) {
                Some((v, used)) if used == version_text.len() => v,
                _ => {
                    return Err(error(
                        version_col,
                        format!("'{version_text}' is not a version (expected e.g. 4.5 or 5.14.2)"),
                    ));
                }
            };
            bounds.push((cmp, version));
        }
        Ok(Requirement { bounds })
    }

    /// `None` when `release` meets every bound, otherwise why not (the SKIP reason).
    pub fn unmet_by(&self, release: &Release) -> Option<String> {
        self.bounds
            .iter()
            .find(|(cmp, bound)| !cmp.holds(release.version, *bound))
            .map(|_| format!("needs kernel {self}, this is {}", release.text))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (cmp, v)) in self.bounds.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            // Shown as written in the usual short form: 4.5 rather than 4.5.0.
            let short = if v.2 == 0 {
                format!("{}.{}", v.0, v.1)
            } else {
                v.to_string()
            };
            write!(f, "{} {short}", cmp.symbol())?;
        }
        Ok(())
    }
}

/// The release of the kernel this process runs on.
pub fn running() -> Result<Release, ReleaseError> {
    let uts = nix::sys::utsname::uname().map_err(|e| error(1, format!("uname: {e}")))?;
    Release::parse(&uts.release().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_by_their_leading_version() {
        for (text, version) in [
            ("6.1.0-57-amd64", Version(6, 1, 0)),
            ("6.18.44-fc-v657", Version(6, 18, 44)),
            ("5.14", Version(5, 14, 0)),
            ("4.5.0+", Version(4, 5, 0)),
            ("7", Version(7, 0, 0)),
        ] {
            assert_eq!(Release::parse(text).unwrap().version, version, "{text}");
        }
        for bad in ["", "amd64", "-6.1", "99999999999.1"] {
            assert!(Release::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requirements_hold_or_say_why_not() {
        let cases = [
            (">= 4.5", "6.1.0-57-amd64", None),
            (
                ">= 6.2",
                "6.1.0-57-amd64",
                Some("needs kernel >= 6.2, this is 6.1.0-57-amd64"),
            ),
            ("< 5.14", "5.13.19", None),
            (
                "< 5.14",
                "5.14.0",
                Some("needs kernel < 5.14, this is 5.14.0"),
            ),
            (">= 4.5, < 5.14", "5.10.1", None),
            (
                ">= 4.5, < 5.14",
                "4.4.302",
                Some("needs kernel >= 4.5, < 5.14, this is 4.4.302"),
            ),
            ("= 6.1", "6.1.0-57-rt-amd64", None),
            ("> 6.1", "6.1.0", Some("needs kernel > 6.1, this is 6.1.0")),
            ("<= 6.1.5", "6.1.5-1", None),
        ];
        for (req, release, want) in cases {
            let req = Requirement::parse(req).unwrap();
            let got = req.unmet_by(&Release::parse(release).unwrap());
            assert_eq!(got.as_deref(), want, "{req} on {release}");
        }
    }

    #[test]
    fn bad_requirements_name_the_column() {
        let cases = [
            ("4.5", 1, "a bound starts with"),
            (">= ", 3, "is not a version"),
            (">= 4.x", 4, "is not a version"),
            (">= 4.5,", 8, "expected a bound"),
            (">= 4.5,  ~ 5", 10, "a bound starts with"),
            ("< 5.14 rc", 3, "is not a version"),
        ];
        for (text, col, message) in cases {
            let err = Requirement::parse(text).unwrap_err();
            assert_eq!(err.col, col, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
    }
}

//! Scenario errors: a position, a message, and a rendering with the offending line and a
//! caret under the column, as compilers print them.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ast::Span;

/// An error at a position, before the file name and source are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
}

impl ParseError {
    pub fn new(span: Span, message: String) -> ParseError {
        ParseError { span, message }
    }
}

/// A parse error in a named file. `Display` is the one-line form
/// (`file:line:col: message`); [`ScenarioError::render`] adds the line and a caret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub path: PathBuf,
    pub span: Span,
    pub message: String,
    /// The offending source line, as written.
    pub line_text: String,
}

impl ScenarioError {
    pub fn new(path: &Path, source: &str, err: ParseError) -> ScenarioError {
        let line_text = source
            .lines()
            .nth(err.span.line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        ScenarioError {
            path: path.to_path_buf(),
            span: err.span,
            message: err.message,
            line_text,
        }
    }

    /// The one-line message, then the line and a caret under the column.
    pub fn render(&self) -> String {
        let gutter = format!("{} | ", self.span.line);
        // Tabs keep their width so the caret lines up.
        let pad: String = self
            .line_text
            .chars()
            .take(self.span.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{self}\n{gutter}{}\n{}{pad}^",
            self.line_text,
            " ".repeat(gutter.len())
        )
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.span.line,
            self.span.col,
            self.message
        )
    }
}

impl std::error::Error for ScenarioError {}

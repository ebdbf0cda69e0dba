//! Scripted scenarios: a small language in which a script reads like the trace it produces,
//! and a runner that executes it across several real processes in one deterministic order.
//!
//! [`parse`] turns a `.scn` file into a [`Scenario`] (or a [`ScenarioError`] with the line and
//! column); [`run`] executes one family instance of it and returns a [`ScenarioReport`].
//! [`load`] reads and parses a file.

//!
//! Module layering (no cycles): `error` and `ast` (data) <- `lexer` (tokens, cursor) <-
//! `value` (untyped arguments) <- `scope` and `kinds` (argument kinds with ranges) <- `calls`
//! (THE call table) <- `parser`; `resolve`, `protocol`, `expect` <- `actor` and `runner`.

mod actor;
pub mod ast;
pub mod calls;
pub mod capture;
pub mod compare;
pub mod error;
mod expect;
mod kinds;
mod lexer;
mod parser;
mod protocol;
pub mod report;
mod resolve;
mod runner;
mod scope;
mod value;

use std::path::Path;

pub use actor::actor_main;
pub use ast::{Scenario, Span};
pub use error::ScenarioError;
pub use parser::parse;
pub use report::{AggregateValue, Failure, ScenarioReport, StepResult, is_flaky, junit};
pub use runner::{RunOptions, abort_all, aborted, run, run_with};

/// Why a scenario file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The cause is in the message (not given again as a `source`).
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(transparent)]
    Parse(#[from] ScenarioError),
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let source = String::from_utf8_lossy(&bytes);
    Ok(parse(path, &source)?)
}

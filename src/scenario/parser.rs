//! The scenario parser: lines → blocks (with `repeat` unrolled) → typed statements, checking
//! as it goes that every name is defined where it is used and has the right kind.
//!
//! Grammar, one statement per line (`#` comments anywhere):
//! ```text
//! family: unix inet inet6          directives: family, timeout, step-timeout
//! [ACTOR] CALL(ARGS) [= RESULT] [&]
//! repeat N {  ...  }               $i in names and values is the iteration (1..N)
//! await(ACTOR, ...)
//! expect woken(ACTOR, ...) = RESULT | expect sum|min|max($a, ...) = RESULT
//! capture                          record the run's loopback traffic
//! ```

use std::path::Path;
use std::time::Duration;

use super::ast::{Scenario, Span, Stmt};
use super::error::{ParseError, ScenarioError};
use super::lexer::{Tok, Token, lex_line};
use super::scope::Scope;
use crate::addr::Family;

mod duration;
mod statement;

/// The most steps a scenario may unroll to: `repeat` is for dozens of connections, not millions.
const MAX_STEPS: usize = 100_000;
/// The deepest `repeat` blocks may nest.
const MAX_DEPTH: usize = 16;

/// Parses a scenario. `path` is used in messages only.
pub fn parse(path: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    parse_inner(path, source).map_err(|e| ScenarioError::new(path, source, e))
}

/// A line or a block before unrolling.
enum Block {
    Line(Vec<Token>),
    Repeat {
        count: usize,
        body: Vec<Block>,
        span: Span,
    },
}

fn parse_inner(path: &Path, source: &str) -> Result<Scenario, ParseError> {
    let description = source
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join("\n");

    // Build the block tree: a stack of open `repeat` blocks.
    let mut stack: Vec<(Span, usize, Vec<Block>)> = vec![(Span { line: 0, col: 0 }, 1, vec![])];
    let mut kernel = None;
    for (idx, line) in source.lines().enumerate() {
        // `kernel: >= 4.5, < 5.14` is read before lexing: its operators are not tokens.
        if let Some(rest) = line.trim_start().strip_prefix("kernel:") {
            let before = line[..line.len() - rest.len()].chars().count();
            let span = |col| Span {
                line: idx + 1,
                col: before + col,
            };
            if kernel.is_some() {
                let indent = line.chars().take_while(|c| c.is_whitespace()).count();
                let start = Span {
                    line: idx + 1,
                    col: indent + 1,
                };
                return Err(at(
                    start,
                    "kernel: given twice (join the bounds with a comma)",
                ));
            }
            kernel =
                Some(crate::vm::Requirement::parse(rest).map_err(|e| at(span(e.col), &e.message))?);
            continue;
        }
        let tokens = lex_line(line, idx + 1)?;
        let Some(first) = tokens.first() else {
            continue;
        };
        if first.tok == Tok::Ident("repeat".into()) {
            let count = match tokens.get(1).map(|t| &t.tok) {
                Some(Tok::Int(n)) if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
                _ => {
                    return Err(at(
                        tokens.get(1).map_or(end_of(line, idx + 1), |t| t.span),
                        "repeat needs a count: repeat N {",
                    ));
                }
            };
            match tokens.get(2) {
                Some(t) if t.tok == Tok::Punct('{') => {}
                other => {
                    let span = other.map_or(end_of(line, idx + 1), |t| t.span);
                    return Err(at(span, "expected '{' after the repeat count"));
                }
            }
            if let Some(extra) = tokens.get(3) {
                return Err(at(extra.span, "nothing may follow '{' on a repeat line"));
            }
            if stack.len() > MAX_DEPTH {
                return Err(at(
                    first.span,
                    &format!("repeat blocks nest deeper than {MAX_DEPTH} levels"),
                ));
            }
            stack.push((first.span, count, vec![]));
        } else if first.tok == Tok::Punct('}') {
            if let Some(extra) = tokens.get(1) {
                return Err(at(extra.span, "nothing may follow '}' on its line"));
            }
            if stack.len() == 1 {
                return Err(at(first.span, "'}' without an open repeat block"));
            }
            let (span, count, body) = stack.pop().expect("checked above");
            stack
                .last_mut()
                .expect("root")
                .2
                .push(Block::Repeat { count, body, span });
        } else {
            stack.last_mut().expect("root").2.push(Block::Line(tokens));
        }
    }
    if stack.len() > 1 {
        let (span, _, _) = stack.last().expect("open block");
        return Err(at(
            *span,
            "unterminated block: this repeat has no closing '}'",
        ));
    }
    let root = stack.pop().expect("root").2;

    // Count before unrolling: a huge count over an empty or tiny body must not spin.
    if let Err(span) = steps(&root) {
        return Err(at(
            span,
            &format!("scenario unrolls to more than {MAX_STEPS} steps"),
        ));
    }
    let mut lines = Vec::new();
    unroll(&root, None, &mut lines)?;

    let mut parser = StatementParser {
        families: vec![],
        timeout: Duration::from_secs(10),
        step_timeout: Duration::from_secs(2),
        capture: false,
        scope: Scope::new(),
        body: vec![],
    };
    for tokens in lines {
        parser.statement(&tokens)?;
    }
    let families = if parser.families.is_empty() {
        vec![Family::Inet]
    } else {
        parser.families
    };
    Ok(Scenario {
        path: path.to_path_buf(),
        source: source.to_string(),
        description,
        families,
        timeout: parser.timeout,
        step_timeout: parser.step_timeout,
        capture: parser.capture,
        kernel,
        body: parser.body,
    })
}

fn at(span: Span, message: &str) -> ParseError {
    ParseError::new(span, message.to_string())
}

fn end_of(line: &str, line_no: usize) -> Span {
    Span {
        line: line_no,
        col: line.chars().count() + 1,
    }
}

/// How many steps `blocks` unroll to, or the place where the count passes [`MAX_STEPS`].
fn steps(blocks: &[Block]) -> Result<usize, Span> {
    let mut total = 0usize;
    for block in blocks {
        let (n, span) = match block {
            Block::Line(tokens) => (
                1,
                tokens.first().map_or(Span { line: 1, col: 1 }, |t| t.span),
            ),
            Block::Repeat { count, body, span } => {
                let inner = steps(body)?;
                (count.checked_mul(inner).unwrap_or(usize::MAX), *span)
            }
        };
        total = total.saturating_add(n);
        if total > MAX_STEPS {
            return Err(span);
        }
    }
    Ok(total)
}

/// Flattens repeat blocks, replacing `$i` with the iteration number (innermost loop wins).
fn unroll(
    blocks: &[Block],
    index: Option<usize>,
    out: &mut Vec<Vec<Token>>,
) -> Result<(), ParseError> {
    for block in blocks {
        match block {
            Block::Line(tokens) => {
                if out.len() >= MAX_STEPS {
                    let span = tokens.first().map_or(Span { line: 1, col: 1 }, |t| t.span);
                    return Err(at(span, "scenario unrolls to more than 100000 steps"));
                }
                out.push(match index {
                    Some(i) => tokens.iter().map(|t| substitute(t, i)).collect(),
                    None => tokens.clone(),
                });
            }
            // A body with no step unrolls to nothing, however often it repeats.
            Block::Repeat { body, .. } if steps(body) == Ok(0) => {}
            Block::Repeat { count, body, .. } => {
                for i in 1..=*count {
                    unroll(body, Some(i), out)?;
                }
            }
        }
    }
    Ok(())
}

fn substitute(token: &Token, i: usize) -> Token {
    let tok = match &token.tok {
        Tok::Var(v) if v == "i" => Tok::Int(i64::try_from(i).unwrap_or(i64::MAX)),
        Tok::Ident(name) if name.contains("$i") => Tok::Ident(name.replace("$i", &i.to_string())),
        other => other.clone(),
    };
    Token {
        tok,
        span: token.span,
    }
}

struct StatementParser {
    families: Vec<Family>,
    timeout: Duration,
    step_timeout: Duration,
    capture: bool,
    scope: Scope,
    body: Vec<Stmt>,
}

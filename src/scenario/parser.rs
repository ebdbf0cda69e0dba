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

use super::ast::{Aggregate, Arg, Expect, Op, Returns, Scenario, Script, Span, Step, Stmt};
use super::calls::{blocking_names, build_op, returned_detail};
use super::error::{ParseError, ScenarioError};
use super::lexer::{Cursor, Tok, Token, lex_line};
use super::scope::{Kind, Scope};
use crate::addr::Family;

/// The most steps a scenario may unroll to: `repeat` is for dozens of connections, not millions.
const MAX_STEPS: usize = 100_000;
/// The deepest `repeat` blocks may nest.
const MAX_DEPTH: usize = 16;
/// The longest `timeout:` or `step-timeout:`: a scenario is an experiment, not a service.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

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
    for (idx, line) in source.lines().enumerate() {
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

impl StatementParser {
    fn statement(&mut self, tokens: &[Token]) -> Result<(), ParseError> {
        let mut cur = Cursor::new(tokens);
        let first = cur.peek().expect("blank lines are skipped");
        // Directive: `name: values`
        if let (Tok::Ident(name), Some(Tok::Punct(':'))) =
            (&first.tok, tokens.get(1).map(|t| &t.tok))
        {
            return self.directive(name, first.span, &tokens[2..]);
        }
        if let Tok::Ident(word) = &first.tok {
            match word.as_str() {
                "capture" if tokens.len() == 1 => {
                    self.capture = true;
                    return Ok(());
                }
                "await" => return self.await_stmt(&mut cur),
                "expect" => return self.expect_stmt(&mut cur),
                _ => {}
            }
        }
        self.step(&mut cur)
    }

    fn directive(&mut self, name: &str, span: Span, rest: &[Token]) -> Result<(), ParseError> {
        match name {
            "family" => {
                if rest.is_empty() {
                    return Err(at(span, "family: needs at least one of unix, inet, inet6"));
                }
                for t in rest {
                    let Tok::Ident(word) = &t.tok else {
                        return Err(at(t.span, "expected a family: unix, inet or inet6"));
                    };
                    let family: Family = word
                        .parse()
                        .map_err(|e: crate::addr::AddrError| at(t.span, &e.to_string()))?;
                    if !self.families.contains(&family) {
                        self.families.push(family);
                    }
                }
                Ok(())
            }
            "timeout" | "step-timeout" => {
                let duration = parse_duration(rest, span)?;
                if name == "timeout" {
                    self.timeout = duration;
                } else {
                    self.step_timeout = duration;
                }
                Ok(())
            }
            other => Err(at(
                span,
                &format!(
                    "unknown directive '{other}:' (expected family:, timeout: or step-timeout:)"
                ),
            )),
        }
    }

    fn actors_list(&mut self, cur: &mut Cursor) -> Result<Vec<String>, ParseError> {
        cur.expect('(', "after the name")?;
        let mut actors = Vec::new();
        loop {
            let (name, span) = cur.ident("an actor name")?;
            self.scope.check_actor(&name, span)?;
            actors.push(name);
            if cur.eat(')') {
                return Ok(actors);
            }
            cur.expect(',', "or ')' in the actor list")?;
        }
    }

    fn await_stmt(&mut self, cur: &mut Cursor) -> Result<(), ParseError> {
        let span = cur.span();
        cur.next();
        let actors = self.actors_list(cur)?;
        if let Some(t) = cur.peek() {
            let message = if t.tok == Tok::Punct('=') {
                "await(...) cannot have an expectation: it collects background calls; \
                 put the expectation on the call's own line"
            } else {
                "unexpected text after await(...)"
            };
            return Err(at(t.span, message));
        }
        self.body.push(Stmt::Await { actors, span });
        Ok(())
    }

    fn expect_stmt(&mut self, cur: &mut Cursor) -> Result<(), ParseError> {
        let span = cur.span();
        cur.next();
        let (func, func_span) = cur.ident("woken, sum, min or max")?;
        let aggregate = if func == "woken" {
            Aggregate::Woken(self.actors_list(cur)?)
        } else if func == "elapsed" {
            return self.elapsed_stmt(cur, span);
        } else {
            cur.expect('(', "after the function name")?;
            let mut vars = Vec::new();
            loop {
                let var_span = cur.span();
                match cur.next().map(|t| &t.tok) {
                    Some(Tok::Var(v)) => {
                        if !self.scope.captures.contains(v) {
                            return Err(at(var_span, &format!("undefined name '${v}'")));
                        }
                        vars.push(v.clone());
                    }
                    _ => {
                        return Err(at(
                            var_span,
                            "type mismatch: sum/min/max take captured values like $n",
                        ));
                    }
                }
                if cur.eat(')') {
                    break;
                }
                cur.expect(',', "or ')' in the list")?;
            }
            match func.as_str() {
                "sum" => Aggregate::Sum(vars),
                "min" => Aggregate::Min(vars),
                "max" => Aggregate::Max(vars),
                other => {
                    return Err(at(
                        func_span,
                        &format!("unknown aggregate '{other}' (expected woken, sum, min or max)"),
                    ));
                }
            }
        };
        cur.expect('=', "before the expected value")?;
        let expect_span = cur.span();
        let expect = parse_result(cur)?;
        if !matches!(expect, Expect::Value(_) | Expect::Range(..)) {
            return Err(at(
                expect_span,
                "type mismatch: an aggregate is a number; expect N or LO..HI",
            ));
        }
        if let Some(t) = cur.peek() {
            return Err(at(t.span, "unexpected text after the expected value"));
        }
        self.body.push(Stmt::Expect {
            aggregate,
            expect,
            span,
        });
        Ok(())
    }

    /// `expect elapsed(ACTOR) >= 10ms`: the actor's latest call took at least that long.
    fn elapsed_stmt(&mut self, cur: &mut Cursor, span: Span) -> Result<(), ParseError> {
        let list_span = cur.span();
        let actors = self.actors_list(cur)?;
        let [actor] = <[String; 1]>::try_from(actors).map_err(|_| {
            at(
                list_span,
                "elapsed() takes one process: expect elapsed(w1) >= 10ms",
            )
        })?;
        let op_span = cur.span();
        if !(cur.eat('>') && cur.eat('=')) {
            return Err(at(
                op_span,
                "elapsed() takes only a lower bound: expect elapsed(w1) >= 10ms \
                 (a timed wait never ends early; how late it ends is the scheduler's luck)",
            ));
        }
        let rest: Vec<Token> = std::iter::from_fn(|| cur.next().cloned()).collect();
        let us = parse_duration_us(&rest, op_span)?;
        self.body.push(Stmt::Expect {
            aggregate: Aggregate::Elapsed(actor),
            expect: Expect::AtLeast(us),
            span,
        });
        Ok(())
    }

    fn step(&mut self, cur: &mut Cursor) -> Result<(), ParseError> {
        let span = cur.span();
        let mut actor = "main".to_string();
        if cur.eat('[') {
            let (name, name_span) = cur.ident("an actor name")?;
            self.scope.check_actor(&name, name_span)?;
            cur.expect(']', "after the actor name")?;
            actor = name;
        }
        let (call, call_span) = cur.ident("a call such as socket(...) or epoll_wait(...)")?;
        let op = build_op(&call, call_span, cur, &self.scope, &actor)?;

        let mut op = op;
        let mut expect = None;
        if cur.eat('=') {
            let expect_span = cur.span();
            let e = parse_result(cur)?;
            self.check_result(&op, &e, expect_span)?;
            if cur.peek().is_some_and(|t| t.tok == Tok::Punct('(')) {
                returned_detail(&mut op, cur, &self.scope, &actor)?;
            }
            expect = Some(e);
        }
        let background_span = cur.span();
        let background = cur.eat('&');
        if background && op.call.spec().blocking.is_none() {
            return Err(at(
                background_span,
                &format!(
                    "{}() cannot run in the background: only calls that can block ({}) can",
                    op.name(),
                    blocking_names().join(", ")
                ),
            ));
        }
        if let Some(t) = cur.peek() {
            return Err(at(
                t.span,
                &format!("unexpected {} after the step", t.tok.describe()),
            ));
        }
        if !matches!(expect, Some(Expect::Bind(_))) {
            match op.returns() {
                Returns::Actor => {
                    return Err(at(span, "fork() must name the new process: fork() = w1"));
                }
                Returns::Thread => {
                    return Err(at(span, "thread() must name the new thread: thread() = t1"));
                }
                _ => {}
            }
        }
        self.scope.apply(&actor, op.returns(), expect.as_ref());
        if !matches!(expect, Some(Expect::Errno(_))) {
            for arg in &op.args {
                if let Arg::NewFds(names) = arg {
                    for name in names {
                        self.scope.bind_fd(&actor, name);
                    }
                }
            }
        }
        self.body.push(Stmt::Step(Step {
            span,
            actor,
            op,
            expect,
            background,
        }));
        Ok(())
    }

    fn check_result(&self, op: &Op<Script>, expect: &Expect, span: Span) -> Result<(), ParseError> {
        let name = op.name();
        match (op.returns(), expect) {
            (Returns::Nothing, _) => Err(at(
                span,
                &format!("{name}() cannot have an expectation: it does not return"),
            )),
            (Returns::Number, Expect::Bind(bound)) => Err(at(
                span,
                &format!(
                    "type mismatch: {name}() returns a number, not an fd or a process, \
                     so its result cannot be named '{bound}'"
                ),
            )),
            (Returns::Fd | Returns::Actor | Returns::Thread, Expect::Bind(bound)) => {
                let wanted = if op.returns() == Returns::Fd {
                    Kind::Fd
                } else {
                    Kind::Actor
                };
                self.scope.check_bindable(bound, wanted, span)
            }
            (Returns::Actor, _) => Err(at(span, "fork() must name the new process: fork() = w1")),
            (Returns::Thread, _) => {
                Err(at(span, "thread() must name the new thread: thread() = t1"))
            }
            _ => Ok(()),
        }
    }
}

/// `N`, `-1 ERRNO`, `NAME`, `LO..HI`, `?`, `$var`.
fn parse_result(cur: &mut Cursor) -> Result<Expect, ParseError> {
    let span = cur.span();
    match cur.next().map(|t| &t.tok) {
        Some(Tok::Int(n)) => {
            let n = *n;
            if cur.peek().is_some_and(|t| t.tok == Tok::Range) {
                cur.next();
                let hi_span = cur.span();
                match cur.next().map(|t| &t.tok) {
                    Some(Tok::Int(hi)) if *hi >= n => Ok(Expect::Range(n, *hi)),
                    Some(Tok::Int(_)) => Err(at(
                        hi_span,
                        "empty range: the upper bound is below the lower",
                    )),
                    _ => Err(at(hi_span, "expected the upper bound of the range")),
                }
            } else if n == -1 && matches!(cur.peek().map(|t| &t.tok), Some(Tok::Ident(_))) {
                let (name, name_span) = cur.ident("an errno name")?;
                let errno = crate::trace::errno_from_name(&name)
                    .ok_or_else(|| at(name_span, &format!("unknown errno '{name}'")))?;
                Ok(Expect::Errno(errno))
            } else {
                Ok(Expect::Value(n))
            }
        }
        Some(Tok::Ident(name)) => Ok(Expect::Bind(name.clone())),
        Some(Tok::Punct('?')) => Ok(Expect::Any),
        Some(Tok::Var(v)) => Ok(Expect::Capture(v.clone())),
        _ => Err(at(
            span,
            "expected a result: a number, -1 ERRNO, a name, LO..HI, ? or $var",
        )),
    }
}

/// `10ms`, `2s`, `500us`, and nothing after it: a duration in microseconds.
fn parse_duration_us(rest: &[Token], span: Span) -> Result<u64, ParseError> {
    let wanted = "expected a duration such as 10ms, 2s or 500us";
    let (n, n_span) = match rest.first() {
        Some(Token {
            tok: Tok::Int(n),
            span,
        }) if *n >= 0 => (u64::try_from(*n).unwrap_or(u64::MAX), *span),
        Some(t) => return Err(at(t.span, wanted)),
        None => return Err(at(span, wanted)),
    };
    let scale = match rest.get(1).map(|t| &t.tok) {
        Some(Tok::Ident(u)) if u == "us" => 1,
        Some(Tok::Ident(u)) if u == "ms" => 1000,
        Some(Tok::Ident(u)) if u == "s" => 1_000_000,
        _ => {
            return Err(at(
                rest.get(1).map_or(n_span, |t| t.span),
                "expected a unit: us, ms or s",
            ));
        }
    };
    if let Some(extra) = rest.get(2) {
        return Err(at(extra.span, "unexpected text after the duration"));
    }
    n.checked_mul(scale)
        .filter(|&us| u128::from(us) <= MAX_TIMEOUT.as_micros())
        .ok_or_else(|| {
            at(
                n_span,
                &format!("a duration must be at most {}s", MAX_TIMEOUT.as_secs()),
            )
        })
}

fn parse_duration(rest: &[Token], span: Span) -> Result<Duration, ParseError> {
    let (n, unit_span) = match rest.first().map(|t| &t.tok) {
        Some(Tok::Int(n)) if *n > 0 => (u64::try_from(*n).unwrap_or(u64::MAX), rest[0].span),
        _ => return Err(at(span, "expected a duration such as 5s or 500ms")),
    };
    // The lexer reads `5s` as one number token only when it is all digits; accept `5 s`/`5s`.
    let unit = match rest.get(1).map(|t| &t.tok) {
        Some(Tok::Ident(u)) => u.as_str(),
        None => "s",
        _ => return Err(at(unit_span, "expected a unit: s or ms")),
    };
    let duration = match unit {
        "s" => n.checked_mul(1000).map(Duration::from_millis),
        "ms" => Some(Duration::from_millis(n)),
        other => {
            return Err(at(
                unit_span,
                &format!("unknown unit '{other}': use s or ms"),
            ));
        }
    };
    match duration {
        Some(d) if d <= MAX_TIMEOUT => Ok(d),
        _ => Err(at(
            unit_span,
            &format!("a duration must be at most {}s", MAX_TIMEOUT.as_secs()),
        )),
    }
}

//! One statement of an unrolled scenario: a directive, `capture`, `await(...)`, an `expect`
//! over actors or captured values, or a step (a call with its expected result), each checked
//! against the names in scope as it is read.

use super::duration::{parse_duration, parse_duration_us};
use super::{StatementParser, at};
use crate::addr::Family;
use crate::scenario::ast::{Aggregate, Arg, Expect, Op, Returns, Script, Span, Step, Stmt};
use crate::scenario::calls::{blocking_names, build_op, returned_detail};
use crate::scenario::error::ParseError;
use crate::scenario::lexer::{Cursor, Tok, Token};
use crate::scenario::scope::Kind;

impl StatementParser {
    pub(super) fn statement(&mut self, tokens: &[Token]) -> Result<(), ParseError> {
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
                    "unknown directive '{other}:' (expected family:, kernel:, timeout: or step-timeout:)"
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

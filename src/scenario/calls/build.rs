//! Reading a call as a script writes it: `CALL(ARGS)` typed against its entry of the table
//! (the spelling chosen by the number of arguments), and what the call wrote back after its
//! result.

use super::CALLS;
use crate::scenario::ast::{Arg, CallId, Op, Script, Span};
use crate::scenario::error::ParseError;
use crate::scenario::kinds::{Ctx, Param};
use crate::scenario::lexer::{Cursor, Tok};
use crate::scenario::scope::Scope;
use crate::scenario::value::parse_val;

/// Parses `CALL(ARGS)` (the name already read) into a typed operation.
pub fn build_op(
    call: &str,
    call_span: Span,
    cur: &mut Cursor,
    scope: &Scope,
    actor: &str,
) -> Result<Op<Script>, ParseError> {
    let Some(id) = CallId::by_name(call) else {
        let known: Vec<&str> = CALLS.iter().map(|c| c.name).collect();
        return Err(ParseError::new(
            call_span,
            format!("unknown call '{call}' (known: {})", known.join(", ")),
        ));
    };
    let spec = id.spec();
    cur.expect('(', &format!("after '{call}'"))?;
    let mut vals = vec![];
    let close;
    if cur.peek().is_some_and(|t| t.tok == Tok::Punct(')')) {
        close = cur.span();
        cur.next();
    } else {
        loop {
            vals.push(parse_val(cur)?);
            let span = cur.span();
            if cur.eat(')') {
                close = span;
                break;
            }
            cur.expect(',', &format!("or ')' in the arguments of {call}()"))?;
        }
    }
    let Some(form) = spec.forms.iter().find(|f| f.len() == vals.len()) else {
        let allowed: Vec<usize> = spec.forms.iter().map(|f| f.len()).collect();
        let last = allowed[allowed.len() - 1];
        let span = vals.get(last).map_or(close, |v| v.1);
        return Err(ParseError::new(
            span,
            format!(
                "{call}() takes {} argument{}, got {}: {}",
                allowed
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                if allowed == [1] { "" } else { "s" },
                vals.len(),
                spec.usage
            ),
        ));
    };
    let ctx = Ctx {
        call: spec.name,
        scope,
        actor,
    };
    let mut args: Vec<Arg<Script>> = Vec::with_capacity(spec.params.len());
    for (index, &param) in spec.params.iter().enumerate() {
        let arg = match form.iter().position(|&p| p == index) {
            Some(written) => {
                let (val, span) = &vals[written];
                ctx.type_arg(written, param, val, *span, &args)?
            }
            None => default_arg(param),
        };
        args.push(arg);
    }
    Ok(Op { call: id, args })
}

/// The value of an argument a shorter spelling leaves out.
fn default_arg(param: Param) -> Arg<Script> {
    match param {
        Param::Int { .. } | Param::BoxedInt { .. } => Arg::Int(0),
        Param::ExpectBytes => Arg::ExpectBytes(None),
        Param::ExpectEvents | Param::ExpectRevents => Arg::ExpectEvents(None),
        Param::Timespec => Arg::Times(None),
        _ => Arg::Ignored,
    }
}

/// Parses what a call wrote back, written after its result as strace shows it
/// (`= 1 ([{fd=E, revents=POLLIN}])`), into the argument of kind [`Param::ExpectRevents`].
pub fn returned_detail(
    op: &mut Op<Script>,
    cur: &mut Cursor,
    scope: &Scope,
    actor: &str,
) -> Result<(), ParseError> {
    let open = cur.span();
    cur.expect('(', "before what the call wrote back")?;
    let spec = op.call.spec();
    let Some(index) = spec
        .params
        .iter()
        .position(|p| matches!(p, Param::ExpectRevents))
    else {
        return Err(ParseError::new(
            open,
            format!(
                "{}() shows nothing after its result: only poll() and ppoll() do",
                spec.name
            ),
        ));
    };
    let (val, span) = parse_val(cur)?;
    cur.expect(')', "after what the call wrote back")?;
    let ctx = Ctx {
        call: spec.name,
        scope,
        actor,
    };
    // strace's `= 0 (Timeout)`: nothing was ready.
    op.args[index] = if val.name() == Some("Timeout") {
        Arg::ExpectEvents(Some(vec![]))
    } else {
        ctx.type_arg(index, Param::ExpectRevents, &val, span, &op.args)?
    };
    Ok(())
}

//! Turning a step's call, written with script names, into the call an actor makes: names of
//! fds become that actor's numbers, `ADDR` names become real addresses (with the alias the
//! symbolic trace gives them), the matrix family becomes a family. `Op<Script>` in,
//! `Op<Live>` out: one type, two stages.

use std::collections::HashMap;

use super::ast::{Arg, Data, DomainArg, EventArg, FdArg, Live, Op, Script, TaskRef};
use crate::addr::{Family, SockAddr};

/// A name with no value: the step that should have bound it did not succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' has no value: the step that names it did not succeed")]
pub struct Unbound(pub String);

/// A call ready for an actor, and the addresses it uses with the names traces give them.
pub struct Resolved {
    pub op: Op<Live>,
    pub aliases: Vec<(SockAddr, String)>,
}

/// Resolves `op` for an actor whose fd names are `names`; `addr` gives (and allocates) the
/// address of an `ADDR` name. Also returns the addresses used, with their names.
pub fn resolve(
    op: &Op<Script>,
    names: &HashMap<String, i32>,
    family: Family,
    mut addr: impl FnMut(&str) -> SockAddr,
    task: impl Fn(&str) -> Option<TaskRef>,
) -> Result<Resolved, Unbound> {
    let fd = |arg: &FdArg| -> Result<i32, Unbound> {
        match arg {
            FdArg::Num(n) => Ok(*n),
            FdArg::Name(name) => names
                .get(name)
                .copied()
                .ok_or_else(|| Unbound(name.clone())),
        }
    };
    let event = |e: &EventArg<Script>| -> Result<EventArg<Live>, Unbound> {
        Ok(EventArg {
            events: e.events,
            data: match &e.data {
                Data::Num(n) => Data::Num(*n),
                Data::Fd(f) => Data::Fd(fd(f)?),
            },
        })
    };
    let mut aliases = vec![];
    let mut args = Vec::with_capacity(op.args.len());
    for arg in &op.args {
        args.push(match arg {
            Arg::Fd(f) => Arg::Fd(fd(f)?),
            Arg::Int(n) => Arg::Int(*n),
            Arg::Bytes(b) => Arg::Bytes(b.clone()),
            Arg::Addr(name) => {
                let a = addr(name);
                aliases.push((a.clone(), name.clone()));
                Arg::Addr(a)
            }
            Arg::Family(DomainArg::Matrix) => Arg::Family(family),
            Arg::Family(DomainArg::Fixed(f)) => Arg::Family(*f),
            Arg::Event(e) => Arg::Event(e.as_ref().map(event).transpose()?),
            // Expectations are the runner's to check; the actor only makes the call.
            Arg::ExpectBytes(_) => Arg::ExpectBytes(None),
            Arg::ExpectEvents(_) => Arg::ExpectEvents(None),
            Arg::NewFds(names) => Arg::NewFds(names.clone()),
            Arg::Task(name) => Arg::Task(task(name).ok_or_else(|| Unbound(name.clone()))?),
            Arg::PollFds(fds) => Arg::PollFds(
                fds.iter()
                    .map(|(f, events)| Ok((fd(f)?, *events)))
                    .collect::<Result<_, Unbound>>()?,
            ),
            Arg::Times(t) => Arg::Times(t.clone()),
            Arg::Ignored => Arg::Ignored,
        });
    }
    Ok(Resolved {
        op: Op {
            call: op.call,
            args,
        },
        aliases,
    })
}

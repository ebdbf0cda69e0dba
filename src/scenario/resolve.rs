//! Turning a step's call, written with script names, into the call an actor makes: names of
//! fds become that actor's numbers, `ADDR` names become real addresses (with the alias the
//! symbolic trace gives them), the matrix family becomes a family.

use std::collections::HashMap;

use super::actor::Resolved;
use super::ast::{DataArg, DomainArg, FdArg, Op};
use crate::addr::{Family, SockAddr};

/// Resolves `op` for an actor whose fd names are `names`; `addr` gives (and allocates) the
/// address of an `ADDR` name. The error says which name has no value.
pub fn resolve(
    op: &Op,
    names: &HashMap<String, i32>,
    family: Family,
    mut addr: impl FnMut(&str) -> SockAddr,
) -> Result<(Resolved, Vec<(SockAddr, String)>), String> {
    let fd = |arg: &FdArg| -> Result<i32, String> {
        match arg {
            FdArg::Num(n) => Ok(*n),
            FdArg::Name(name) => names.get(name).copied().ok_or_else(|| {
                format!("'{name}' has no value: the step that names it did not succeed")
            }),
        }
    };
    let data = |arg: &DataArg| -> Result<u64, String> {
        match arg {
            DataArg::Num(n) => Ok(*n),
            DataArg::Name(name) => fd(&FdArg::Name(name.clone())).map(|n| n as u64),
        }
    };
    let mut aliases = vec![];
    let resolved = match op {
        Op::Socket { domain, ty } => Resolved::Socket {
            family: match domain {
                DomainArg::Matrix => family,
                DomainArg::Fixed(f) => *f,
            },
            ty: *ty,
        },
        Op::Setsockopt {
            fd: f,
            level,
            option,
            value,
        } => Resolved::Setsockopt {
            fd: fd(f)?,
            level: *level,
            option: *option,
            value: *value,
        },
        Op::Bind { fd: f, addr: name } | Op::Connect { fd: f, addr: name } => {
            let f = fd(f)?;
            let a = addr(name);
            aliases.push((a.clone(), name.clone()));
            if matches!(op, Op::Bind { .. }) {
                Resolved::Bind { fd: f, addr: a }
            } else {
                Resolved::Connect { fd: f, addr: a }
            }
        }
        Op::Listen { fd: f, backlog } => Resolved::Listen {
            fd: fd(f)?,
            backlog: *backlog,
        },
        Op::Accept { fd: f } => Resolved::Accept { fd: fd(f)? },
        Op::Accept4 { fd: f, flags } => Resolved::Accept4 {
            fd: fd(f)?,
            flags: *flags,
        },
        Op::Close { fd: f } => Resolved::Close { fd: fd(f)? },
        Op::Shutdown { fd: f, how } => Resolved::Shutdown {
            fd: fd(f)?,
            how: *how,
        },
        Op::Dup { fd: f } => Resolved::Dup { fd: fd(f)? },
        Op::Dup2 { fd: f, target } => Resolved::Dup2 {
            fd: fd(f)?,
            target: fd(target)?,
        },
        Op::Read { fd: f, count, .. } => Resolved::Read {
            fd: fd(f)?,
            count: *count,
        },
        Op::Write { fd: f, data } => Resolved::Write {
            fd: fd(f)?,
            data: data.clone(),
        },
        Op::EpollCreate1 { flags } => Resolved::EpollCreate1 { flags: *flags },
        Op::EpollCtl {
            epfd,
            op,
            fd: f,
            event,
        } => Resolved::EpollCtl {
            epfd: fd(epfd)?,
            op: *op,
            fd: fd(f)?,
            event: match event {
                Some(e) => Some((e.events, data(&e.data)?)),
                None => None,
            },
        },
        Op::EpollWait {
            epfd,
            maxevents,
            timeout,
            pwait,
            ..
        } => Resolved::EpollWait {
            epfd: fd(epfd)?,
            maxevents: *maxevents,
            timeout: *timeout,
            pwait: *pwait,
        },
        Op::Fork => Resolved::Fork,
        Op::Drain { fd: f } => Resolved::Drain { fd: fd(f)? },
        Op::Exit { code } => Resolved::Exit { code: *code },
    };
    Ok((resolved, aliases))
}

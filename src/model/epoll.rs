//! epoll: registrations, edges, one-shot arming, and what one epoll_wait may return.

use super::rules::{self, Rule};
use super::verdict::Allowed;
use super::world::{ET, Entry, Kind, ONESHOT, Ready, Tri, World};

/// Why a registration may or may not be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Level,
    Edge,
    /// New input on an already-ready file, edge-triggered.
    MoreInput,
    /// The file's readiness is undocumented.
    Undocumented,
    /// A one-shot registration or an edge another waiter may have consumed.
    Consumed,
    /// An EPOLLEXCLUSIVE registration: only some of the epoll sets get the wake-up.
    Exclusive,
}

/// Whether `e` would be reported by an epoll_wait now, and why.
pub fn reportable(w: &World, e: &Entry) -> (Tri, Cause) {
    if e.armed == Tri::No {
        return (Tri::No, Cause::Level);
    }
    let r = w.readiness(e.obj).masked(e.filter());
    let undocumented = r.may != 0 && w.undocumented(e.obj);
    let (tri, cause) = if e.events & ET == 0 {
        match (r.must != 0, r.may != 0) {
            (true, _) => (Tri::Yes, Cause::Level),
            (false, true) => (Tri::Maybe, Cause::Undocumented),
            (false, false) => (Tri::No, Cause::Level),
        }
    } else {
        match (e.edge, r.must != 0, r.may != 0) {
            (Tri::No, _, _) | (_, false, false) => (Tri::No, Cause::Edge),
            (Tri::Yes, true, _) => (Tri::Yes, Cause::Edge),
            (Tri::Yes, false, true) => (Tri::Maybe, Cause::Undocumented),
            (Tri::Maybe, _, _) if undocumented => (Tri::Maybe, Cause::Undocumented),
            (Tri::Maybe, _, _) => (Tri::Maybe, Cause::MoreInput),
        }
    };
    if tri != Tri::No && e.armed == Tri::Maybe {
        return (Tri::Maybe, Cause::Consumed);
    }
    if tri == Tri::Yes && e.events & super::world::EXCLUSIVE != 0 {
        return (Tri::Maybe, Cause::Exclusive);
    }
    (tri, cause)
}

/// After a step: edge-triggered registrations gain an edge when their file became ready (or
/// may have), or saw new input while ready.
pub fn update_edges(w: &mut World) {
    // An epoll set's readiness comes from its own registrations: a change seen in an inner
    // set reaches the sets watching it on the next round (nesting is at most 5 deep).
    for _ in 0..8 {
        if !update_edges_once(w) {
            break;
        }
    }
}

/// One round of [`update_edges`]; whether anything changed.
fn update_edges_once(w: &mut World) -> bool {
    let mut changed = false;
    let mut updates = vec![];
    for (ep, o) in w.objs.iter().enumerate() {
        if let Kind::Epoll(epoll) = &o.kind {
            for (i, e) in epoll.entries.iter().enumerate() {
                let now = w.readiness(e.obj).masked(e.filter());
                let activity = w.objs[e.obj].activity;
                let mut edge = e.edge;
                if e.events & ET != 0 {
                    let gained_must = now.must & !(e.last.must | e.last.may);
                    let gained_may = (now.may | now.must) & !e.last.must;
                    if gained_must != 0 {
                        edge = Tri::Yes;
                    } else if (gained_may != 0 || activity != e.last_activity)
                        && (now.must | now.may) != 0
                    {
                        edge = edge.max(Tri::Maybe);
                    }
                }
                updates.push((ep, i, edge, now, activity));
            }
        }
    }
    for (ep, i, edge, now, activity) in updates {
        if let Kind::Epoll(epoll) = &mut w.objs[ep].kind {
            let e = &mut epoll.entries[i];
            changed |= e.edge != edge || e.last != now || e.last_activity != activity;
            e.edge = edge;
            e.last = now;
            e.last_activity = activity;
        }
    }
    changed
}

/// A new registration's starting state.
pub fn new_entry(w: &World, obj: usize, fd: &str, events: u32, data: Option<u64>) -> Entry {
    let now = w.readiness(obj);
    let mut e = Entry {
        obj,
        fd: fd.to_string(),
        events,
        data,
        edge: Tri::No,
        armed: Tri::Yes,
        last: Ready::default(),
        last_activity: w.objs[obj].activity,
    };
    let now = now.masked(e.filter());
    e.last = now;
    if now.must | now.may != 0 {
        // Whether a file that is ready at ADD time counts as an edge is not said.
        e.edge = Tri::Maybe;
    }
    e
}

/// Re-arms or changes a registration (EPOLL_CTL_MOD): a new chance to report.
pub fn modify(w: &World, e: &mut Entry, events: u32, data: Option<u64>) {
    e.events = events;
    e.data = data;
    e.armed = Tri::Yes;
    let now = w.readiness(e.obj).masked(e.filter());
    e.last = now;
    e.edge = if now.must != 0 {
        Tri::Yes
    } else if now.may != 0 {
        Tri::Maybe
    } else {
        Tri::No
    };
}

/// What an epoll_wait on `ep` with `max` may return right now, and the rule that decides it.
pub fn wait_allowed(w: &World, ep: usize, max: i64, blocking: bool) -> (Allowed, &'static Rule) {
    let Some(epoll) = w.epoll(ep).filter(|e| !e.unknown) else {
        return (Allowed::Unspecified, &rules::NOT_MODELLED);
    };
    let (mut sure, mut maybe) = (0i64, 0i64);
    let mut rule = &rules::WAIT_LT;
    let mut unspecified = false;
    for e in &epoll.entries {
        let (tri, cause) = reportable(w, e);
        if e.events & ET != 0 && rule.id == rules::WAIT_LT.id {
            rule = &rules::WAIT_ET;
        }
        if e.events & ONESHOT != 0 && tri != Tri::No && rule.id != rules::WAIT_ET_MORE.id {
            rule = &rules::WAIT_ONESHOT;
        }
        match tri {
            Tri::Yes => sure += 1,
            Tri::Maybe => {
                maybe += 1;
                match cause {
                    Cause::Undocumented | Cause::Consumed => unspecified = true,
                    Cause::MoreInput => rule = &rules::WAIT_ET_MORE,
                    Cause::Exclusive => rule = &rules::WAKE_EXCLUSIVE,
                    _ => {}
                }
            }
            Tri::No => {}
        }
    }
    if unspecified {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    if sure > max {
        rule = &rules::WAIT_MAXEVENTS;
    }
    let lo = if blocking { sure.max(1) } else { sure }.min(max);
    let hi = (sure + maybe).min(max);
    if blocking {
        rule = &rules::WAIT_BLOCKING;
    }
    (Allowed::range(lo, hi), rule)
}

/// Applies what an epoll_wait reported: reported edges are consumed and one-shot
/// registrations disarmed. Returns a note when a reported event breaks the documented mask.
/// Applies what an epoll_wait on `ep` reported. `late`: it is a background wait collected
/// after steps it may have returned before, so the state at its return is not the state now:
/// what it reported may have been ready then and not now, and arrivals after its return are
/// still pending; the model checks only that each report names a registration, and leaves
/// the edges of what it reported open.
pub fn apply_wait(
    w: &mut World,
    ep: usize,
    max: i64,
    events: &[(u32, u64)],
    late: bool,
) -> Option<String> {
    let max = if late { 0 } else { max };
    let mut note = None;
    let epoll = w.epoll(ep).filter(|e| !e.unknown)?;
    let entries = epoll.entries.clone();
    let mut reported = vec![Tri::No; entries.len()];
    let any_unknown_data = entries.iter().any(|e| e.data.is_none());
    let mut learned = vec![];
    for &(mask, data) in events {
        let ready = |i: usize, d: Option<u64>| {
            entries[i].data == d && (late || reportable(w, &entries[i]).0 != Tri::No)
        };
        let mut candidates: Vec<usize> = (0..entries.len())
            .filter(|&i| ready(i, Some(data)))
            .collect();
        if candidates.is_empty() {
            // No registration known to carry this data: if exactly one whose data the model
            // does not know (a pipe end's number) may be reported, this is it.
            let unknown: Vec<usize> = (0..entries.len()).filter(|&i| ready(i, None)).collect();
            if let [i] = unknown.as_slice() {
                learned.push((*i, data));
                candidates = unknown;
            }
        }
        match candidates.as_slice() {
            [] if !any_unknown_data => {
                note = Some(format!(
                    "reported data {data}, which no ready registration carries"
                ))
            }
            [] => reported.iter_mut().for_each(|r| *r = (*r).max(Tri::Maybe)),
            [i] if late => reported[*i] = Tri::Maybe,
            [i] => {
                reported[*i] = Tri::Yes;
                let e = &entries[*i];
                let r = w.readiness(e.obj).masked(e.filter());
                if (mask & r.must) != r.must || (mask & !(r.must | r.may)) != 0 {
                    note = Some(format!(
                        "mask {mask:#x} for data {data}: must hold {:#x}, may add {:#x}",
                        r.must, r.may
                    ));
                }
            }
            many => many
                .iter()
                .for_each(|&i| reported[i] = reported[i].max(Tri::Maybe)),
        }
    }
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= max;
    if let Some(Kind::Epoll(epoll)) = w.objs.get_mut(ep).map(|o| &mut o.kind) {
        for (i, data) in learned {
            epoll.entries[i].data = Some(data);
        }
        for (e, rep) in epoll.entries.iter_mut().zip(reported) {
            match rep {
                Tri::Yes => {
                    if e.events & ET != 0 {
                        e.edge = Tri::No;
                    }
                    if e.events & ONESHOT != 0 {
                        e.armed = Tri::No;
                    }
                }
                Tri::Maybe => {
                    if e.events & ET != 0 {
                        e.edge = e.edge.min(Tri::Maybe);
                    }
                    if e.events & ONESHOT != 0 {
                        e.armed = e.armed.min(Tri::Maybe);
                    }
                }
                // Not reported although it might have been: that edge did not exist, unless
                // maxevents cut the list short.
                Tri::No if !full && e.edge == Tri::Maybe => e.edge = Tri::No,
                Tri::No => {}
            }
        }
    }
    note
}

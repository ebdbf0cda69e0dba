//! poll(2) and ppoll(2): which entries of the array get revents, from the same readiness the
//! epoll rules use (`World::readiness`), and whether the reported revents fit.

use nix::errno::Errno;

use super::calls::{Look, look};
use super::rules::{self, Rule};
use super::verdict::{Allowed, Res};
use super::world::{ERR, HUP, IN, OUT, PRI, RDHUP, Tri, World};
use crate::scenario::ast::{FdArg, Op, Script};

type Rules = (Allowed, &'static Rule);

/// poll(2) POLLNVAL: the fd is not open.
const NVAL: u32 = libc::POLLNVAL as u32;
/// Every bit a revents short can carry.
const ALL_BITS: u32 = 0xffff;

/// What one entry of the array may get in revents.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub must: u32,
    pub may: u32,
    /// The fd number, when the model knows it (to match reported entries).
    pub num: Option<i64>,
    /// Its readiness depends on what the documentation does not describe.
    pub undocumented: bool,
}

/// The entries of a poll array, as the model sees them now.
pub(super) fn slots(w: &World, actor: &str, fds: &[(FdArg, u32)]) -> Vec<Slot> {
    fds.iter()
        .map(|(fd, events)| {
            let num = match fd {
                FdArg::Num(n) => Some(i64::from(*n)),
                FdArg::Name(name) => w.proc(actor).and_then(|a| a.nums.get(name)).copied(),
            };
            let slot = |must, may, undocumented| Slot {
                must,
                may,
                num,
                undocumented,
            };
            if matches!(fd, FdArg::Num(n) if *n < 0) {
                // poll(2): a negative fd is ignored and its revents is 0.
                return slot(0, 0, false);
            }
            match look(w, actor, fd) {
                Look::Open(o) => {
                    let followed = IN | PRI | OUT | RDHUP;
                    let r = w.readiness(o).masked((events & followed) | ERR | HUP);
                    // POLLRDNORM and the like: the model does not say when they are set.
                    let other = events & !(followed | ERR | HUP | NVAL);
                    slot(r.must, r.may | other, w.undocumented(o) || other != 0)
                }
                Look::Closed {
                    maybe_reused: false,
                } => slot(NVAL, 0, false),
                Look::Closed { maybe_reused: true } | Look::Unknown => slot(0, ALL_BITS, true),
            }
        })
        .collect()
}

/// How long a poll may wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Zero,
    Some,
    Forever,
}

/// The timeout of a poll or ppoll step, or the rule it breaks.
fn timeout(op: &Op<Script>) -> Result<Wait, Rules> {
    if op.name() == "poll" {
        return Ok(match op.int::<i64>(2) {
            0 => Wait::Zero,
            t if t < 0 => Wait::Forever,
            _ => Wait::Some,
        });
    }
    match op.times(2) {
        None => Ok(Wait::Forever),
        Some(t) => {
            let (sec, nsec) = t[0];
            if sec < 0 || (sec == 0 && nsec < 0) {
                Err((Allowed::one(Res::Err(Errno::EINVAL)), &rules::POLL_EINVAL))
            } else if !(0..1_000_000_000).contains(&nsec) {
                Err((Allowed::Unspecified, &rules::TIMESPEC_INVALID))
            } else if (sec, nsec) == (0, 0) {
                Ok(Wait::Zero)
            } else {
                Ok(Wait::Some)
            }
        }
    }
}

/// What a (foreground) poll or ppoll may return now.
pub(super) fn judge(w: &World, actor: &str, op: &Op<Script>) -> Rules {
    let wait = match timeout(op) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let slots = slots(w, actor, op.poll_fds(0));
    // An entry that may or may not get revents, for a reason the pages do not give.
    if slots
        .iter()
        .any(|s| s.undocumented && s.must == 0 && s.may != 0)
    {
        return (Allowed::Unspecified, &rules::READY_UNSPECIFIED);
    }
    let sure = count(slots.iter().filter(|s| s.must != 0).count());
    let maybe = count(slots.iter().filter(|s| s.must == 0 && s.may != 0).count());
    let lo = match wait {
        // Nothing ready yet: it waits until something is (here only what may already be).
        Wait::Forever if sure == 0 => 1,
        _ => sure,
    };
    (Allowed::range(lo, sure + maybe), &rules::POLL_REVENTS)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether the reported (revents, fd) list fits the array: every entry that must get
/// revents got them, each reported one holds what it must and nothing it may not, in array
/// order. A note says what does not fit.
pub(super) fn check(slots: &[Slot], events: &[(u32, u64)]) -> Option<String> {
    let fits = |s: &Slot, &(mask, fd): &(u32, u64)| {
        mask != 0
            && mask & s.must == s.must
            && mask & !(s.must | s.may) == 0
            && s.num
                .is_none_or(|n| u64::try_from(n).is_ok_and(|n| n == fd))
    };
    // can[i][j]: slots i.. can take events j.. exactly.
    let (n, k) = (slots.len(), events.len());
    let mut can = vec![vec![false; k + 1]; n + 1];
    can[n][k] = true;
    for i in (0..n).rev() {
        for j in (0..=k).rev() {
            let skip = slots[i].must == 0 && can[i + 1][j];
            let take = j < k && fits(&slots[i], &events[j]) && can[i + 1][j + 1];
            can[i][j] = skip || take;
        }
    }
    if can[0][0] {
        return None;
    }
    let must: Vec<String> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.must != 0)
        .map(|(i, s)| format!("entry {i} must get {:#x}", s.must))
        .collect();
    Some(format!(
        "revents {events:?} do not fit the array ({})",
        if must.is_empty() {
            "no entry must get revents".into()
        } else {
            must.join(", ")
        }
    ))
}

/// Whether anything a background poll waits for is ready now.
pub(super) fn ready_now(w: &World, actor: &str, fds: &[(FdArg, u32)]) -> (Tri, bool) {
    let slots = slots(w, actor, fds);
    let undocumented = slots
        .iter()
        .any(|s| s.undocumented && s.must == 0 && s.may != 0);
    let now = if slots.iter().any(|s| s.must != 0) {
        Tri::Yes
    } else if slots.iter().any(|s| s.may != 0) {
        Tri::Maybe
    } else {
        Tri::No
    };
    (now, undocumented)
}

//! Which fds are listening sockets, who made them listen, and where a worker already has its
//! own copy: the state behind the listen_spawn heuristic.
//!
//! libfsocket keeps this in a plain int array that is not thread-safe. Ours is an array of
//! atomics indexed by fd number: lock-free, so a thread calling fork() can never leave the
//! child holding a lock, and two threads marking fds at once cannot lose an update. Fds at or
//! above [`MAX_FD`] are not tracked (their calls take the ordinary path).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Tracked fd numbers are `0..MAX_FD` (libfsocket's first array size).
pub const MAX_FD: usize = 65536;

#[derive(Default)]
struct Slot {
    /// Pid of the process that called listen() on this fd; 0 when not a listener.
    owner: AtomicI32,
    /// Pid of the process in which the fd was replaced by a spawned local listener.
    spawned_in: AtomicI32,
    backlog: AtomicI32,
    /// A socket made for this listener's next spawn, plus one (0: none). See
    /// [`ListenTable::set_prepared`].
    prepared: AtomicI32,
}

/// A listener as the table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenEntry {
    pub owner: i32,
    pub spawned_in: i32,
    pub backlog: i32,
}

/// Listening fds of this process (inherited across fork with the rest of memory).
pub struct ListenTable {
    slots: Vec<Slot>,
    /// One past the highest fd ever marked: bounds the scan in [`ListenTable::listeners`].
    high_water: AtomicUsize,
}

impl Default for ListenTable {
    fn default() -> Self {
        ListenTable::new()
    }
}

impl ListenTable {
    pub fn new() -> ListenTable {
        ListenTable {
            slots: (0..MAX_FD).map(|_| Slot::default()).collect(),
            high_water: AtomicUsize::new(0),
        }
    }

    fn slot(&self, fd: i32) -> Option<&Slot> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get(i))
    }

    /// Records that `pid` made `fd` listen with `backlog`.
    pub fn mark_listen(&self, fd: i32, pid: i32, backlog: i32) {
        if let Some(s) = self.slot(fd) {
            self.high_water
                .fetch_max(fd as usize + 1, Ordering::Relaxed);
            s.backlog.store(backlog, Ordering::Relaxed);
            s.spawned_in.store(0, Ordering::Relaxed);
            s.owner.store(pid, Ordering::Release);
        }
    }

    /// Records that `fd` now refers to a local listener spawned in `pid`.
    pub fn mark_spawned(&self, fd: i32, pid: i32) {
        if let Some(s) = self.slot(fd) {
            s.spawned_in.store(pid, Ordering::Release);
        }
    }

    pub fn get(&self, fd: i32) -> Option<ListenEntry> {
        let s = self.slot(fd)?;
        let owner = s.owner.load(Ordering::Acquire);
        (owner != 0).then(|| ListenEntry {
            owner,
            spawned_in: s.spawned_in.load(Ordering::Acquire),
            backlog: s.backlog.load(Ordering::Relaxed),
        })
    }

    pub fn is_listen(&self, fd: i32) -> bool {
        self.slot(fd)
            .is_some_and(|s| s.owner.load(Ordering::Relaxed) != 0)
    }

    /// The fd was closed (or replaced by dup2 onto it): it is no longer a listener.
    /// Returns the socket prepared for it, if any, for the caller to close.
    pub fn forget(&self, fd: i32) -> Option<i32> {
        let s = self.slot(fd)?;
        s.owner.store(0, Ordering::Release);
        s.spawned_in.store(0, Ordering::Relaxed);
        self.take_prepared(fd)
    }

    /// Keeps `sock` for the next spawn of listener `fd`; returns the one it replaces.
    ///
    /// Why: a reuseport group only admits sockets created by the same user, and servers
    /// drop privileges in their workers before registering the listener (nginx runs its
    /// workers as `nobody`). A socket created right after fork, still with the master's
    /// credentials, can join the group later.
    pub fn set_prepared(&self, fd: i32, sock: i32) -> Option<i32> {
        let old = self.slot(fd)?.prepared.swap(sock + 1, Ordering::AcqRel);
        (old > 0).then_some(old - 1)
    }

    pub fn take_prepared(&self, fd: i32) -> Option<i32> {
        let old = self.slot(fd)?.prepared.swap(0, Ordering::AcqRel);
        (old > 0).then_some(old - 1)
    }

    /// Every listener: (fd, entry).
    pub fn listeners(&self) -> Vec<(i32, ListenEntry)> {
        let end = self.high_water.load(Ordering::Relaxed).min(MAX_FD);
        (0..end as i32)
            .filter_map(|fd| self.get(fd).map(|e| (fd, e)))
            .collect()
    }

    /// `new` became a duplicate of `old` (dup/dup2/dup3): it is a listener if `old` is.
    pub fn duplicate(&self, old: i32, new: i32) {
        match self.get(old) {
            Some(e) => {
                self.mark_listen(new, e.owner, e.backlog);
                if e.spawned_in != 0 {
                    self.mark_spawned(new, e.spawned_in);
                }
            }
            None => {
                self.forget(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_spawns_duplicates_and_forgets() {
        let t = ListenTable::new();
        assert_eq!(t.get(3), None);
        t.mark_listen(3, 100, 511);
        assert_eq!(
            t.get(3),
            Some(ListenEntry {
                owner: 100,
                spawned_in: 0,
                backlog: 511
            })
        );
        t.mark_spawned(3, 200);
        t.duplicate(3, 9);
        assert_eq!(t.get(9).unwrap().spawned_in, 200);
        t.duplicate(4, 9);
        assert!(!t.is_listen(9));
        assert_eq!(t.set_prepared(3, 40), None);
        assert_eq!(t.set_prepared(3, 41), Some(40));
        assert_eq!(t.listeners().len(), 1);
        assert_eq!(t.forget(3), Some(41));
        assert!(!t.is_listen(3));
        assert_eq!(t.take_prepared(3), None);
        // Out-of-range fds are ignored, not a panic.
        t.mark_listen(-1, 1, 1);
        t.mark_listen(MAX_FD as i32, 1, 1);
        assert_eq!(t.get(MAX_FD as i32), None);
    }
}

//! The order of each reuseport group's listeners, as the kernel keeps it, shared by all the
//! processes of a program: what the classic-BPF program indexes.
//!
//! The kernel keeps a group's listening sockets in an array: listen() appends a socket, and a
//! socket that stops listening (shutdown, its last close) is replaced by the last one (a
//! swap-remove; with `tcp_migrate_req` too, which only moves it to a closed section after the
//! listening ones). A classic-BPF reuseport program returns an index into that array, and no
//! system call reads the array back. So every change the shim makes to a group (a worker's
//! listener joining, the shared listener retired or revived, a worker closing its listener)
//! is made under one lock, the same change is applied to a copy of the array kept in memory
//! shared since before the first fork, and the program built from the copy is attached again
//! before the lock is released. Whatever order workers spawn in, the copy is the kernel's.
//!
//! What the copy cannot follow (the limits the README states): a listener leaving the group
//! by a process's death without a close (SIGKILL), a close or dup2 onto it that is not its last
//! reference, and sockets of other programs joining the same group. A group too large for the
//! table is marked lost, and its program then hashes every connection.

use std::sync::atomic::{AtomicI64, Ordering};

use nix::errno::Errno;

use crate::sys::{self, RawFd, cpu};

/// Groups one program can steer by classic BPF, and listeners per group.
pub const GROUPS: usize = 16;
pub const MEMBERS: usize = 64;

const LOCK: usize = 0;
const KEY: usize = 0;
const LEN: usize = 1;
const STATE: usize = 2;
const FIRST: usize = 3;
const GROUP_WORDS: usize = FIRST + 2 * MEMBERS;
const WORDS: usize = 1 + GROUPS * GROUP_WORDS;
const LOST: i64 = 1;

/// A listener in a group: its socket's inode and the CPU it is steered to (-1: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub inode: i64,
    pub cpu: i64,
}

/// The shared table; `None` when the mapping could not be made (then nothing is steered by
/// classic BPF).
pub struct Orders {
    words: Option<cpu::SharedWords>,
}

impl Orders {
    pub fn new() -> Orders {
        Orders {
            words: cpu::SharedWords::new(WORDS).ok(),
        }
    }

    /// Takes the table's lock: held by one thread of one process at a time, and taken over
    /// from a holder that died holding it.
    pub fn lock(&self) -> Option<Locked<'_>> {
        let words = self.words.as_deref()?;
        let me = i64::from(std::process::id());
        loop {
            match words[LOCK].compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(Locked { words }),
                Err(holder) if holder != me && is_gone(holder) => {
                    let _ = words[LOCK].compare_exchange(
                        holder,
                        0,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                // A holder makes a few system calls and lets go.
                Err(_) => std::thread::yield_now(),
            }
        }
    }
}

impl Default for Orders {
    fn default() -> Self {
        Orders::new()
    }
}

/// Whether process `pid` is dead (gone or a zombie, whose fds are closed).
fn is_gone(pid: i64) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) == Err(Errno::ESRCH) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{raw}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The socket's inode: the same socket has the same one in every process.
pub fn inode(fd: RawFd) -> Result<i64, Errno> {
    i64::try_from(cpu::inode(fd)?).map_err(|_| Errno::EOVERFLOW)
}

/// Whether `fd` is listening (so in its reuseport group).
pub fn listening(fd: RawFd) -> bool {
    sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(1)
}

/// The table, locked; dropping it lets go.
pub struct Locked<'a> {
    words: &'a [AtomicI64],
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.words[LOCK].store(0, Ordering::Release);
    }
}

impl Locked<'_> {
    fn word(&self, g: usize, i: usize) -> &AtomicI64 {
        &self.words[1 + g * GROUP_WORDS + i]
    }

    fn get(&self, g: usize, i: usize) -> i64 {
        self.word(g, i).load(Ordering::Relaxed)
    }

    fn set(&self, g: usize, i: usize, v: i64) {
        self.word(g, i).store(v, Ordering::Relaxed)
    }

    /// The group whose first listener (the shared one) has inode `key`.
    pub fn find(&self, key: i64) -> Option<usize> {
        (0..GROUPS).find(|&g| self.get(g, KEY) == key)
    }

    /// The group of `key`, made with `first` as its members if new; `None` if the table is
    /// full.
    pub fn find_or_make(&self, key: i64, first: &[Member]) -> Option<usize> {
        if let Some(g) = self.find(key) {
            return Some(g);
        }
        let g = (0..GROUPS).find(|&g| self.get(g, KEY) == 0)?;
        self.set(g, KEY, key);
        self.set(g, LEN, 0);
        self.set(g, STATE, 0);
        for &m in first {
            self.push(g, m);
        }
        Some(g)
    }

    /// The group that has a listener with this inode.
    pub fn group_of(&self, inode: i64) -> Option<usize> {
        (0..GROUPS)
            .find(|&g| self.get(g, KEY) != 0 && self.members(g).iter().any(|m| m.inode == inode))
    }

    pub fn members(&self, g: usize) -> Vec<Member> {
        let len = usize::try_from(self.get(g, LEN)).unwrap_or(0).min(MEMBERS);
        (0..len)
            .map(|i| Member {
                inode: self.get(g, FIRST + 2 * i),
                cpu: self.get(g, FIRST + 2 * i + 1),
            })
            .collect()
    }

    fn store(&self, g: usize, members: &[Member]) {
        for (i, m) in members.iter().enumerate() {
            self.set(g, FIRST + 2 * i, m.inode);
            self.set(g, FIRST + 2 * i + 1, m.cpu);
        }
        self.set(g, LEN, i64::try_from(members.len()).unwrap_or(0));
    }

    pub fn is_lost(&self, g: usize) -> bool {
        self.get(g, STATE) == LOST
    }

    /// listen(): appended. A group too large is lost.
    pub fn push(&self, g: usize, m: Member) {
        let mut members = self.members(g);
        if members.len() == MEMBERS {
            self.set(g, STATE, LOST);
            return;
        }
        members.push(m);
        self.store(g, &members);
    }

    /// Stopped listening: replaced by the last one, as the kernel does. Whether it was there.
    pub fn remove(&self, g: usize, inode: i64) -> bool {
        let mut members = self.members(g);
        let Some(i) = members.iter().position(|m| m.inode == inode) else {
            return false;
        };
        members.swap_remove(i);
        self.store(g, &members);
        if members.is_empty() {
            // No listener left: the kernel's group is gone, and the next listen makes a new
            // one (the slot is free, and a socket that reuses the inode starts afresh).
            self.set(g, KEY, 0);
        }
        true
    }

    /// The program for group `g`'s order (`members`, when given, instead of the table's):
    /// each CPU's listeners by index; every connection hashed when the group is lost.
    pub fn program(
        &self,
        g: usize,
        members: Option<&[Member]>,
    ) -> Result<Vec<libc::sock_filter>, Errno> {
        if self.is_lost(g) {
            return cpu::cpu_steering_program(&[]);
        }
        let members = members.map_or_else(|| self.members(g), <[Member]>::to_vec);
        cpu::cpu_steering_program(&by_cpu(&members)?)
    }
}

/// `(cpu, indexes of its listeners)`, CPUs ascending; listeners on no CPU are left out (they
/// get the connections the kernel hashes).
pub fn by_cpu(members: &[Member]) -> Result<Vec<(u32, Vec<u32>)>, Errno> {
    let mut pairs: Vec<(u32, Vec<u32>)> = vec![];
    for (i, m) in members.iter().enumerate() {
        let Ok(c) = u32::try_from(m.cpu) else {
            continue;
        };
        let i = u32::try_from(i).map_err(|_| Errno::EINVAL)?;
        match pairs.iter_mut().find(|(p, _)| *p == c) {
            Some((_, v)) => v.push(i),
            None => pairs.push((c, vec![i])),
        }
    }
    pairs.sort_by_key(|(c, _)| *c);
    // A CPU with more listeners than one branch can choose from gets its first ones.
    for (_, v) in &mut pairs {
        v.truncate(cpu::MAX_PER_CPU);
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(inode: i64, cpu: i64) -> Member {
        Member { inode, cpu }
    }

    #[test]
    fn the_copy_changes_as_the_kernels_array() {
        let orders = Orders::new();
        let t = orders.lock().unwrap();
        // The shared listener first, then workers joining out of fork order.
        let g = t.find_or_make(100, &[m(100, -1)]).unwrap();
        t.push(g, m(4, 1));
        assert!(t.remove(g, 100));
        t.push(g, m(3, 0));
        t.push(g, m(2, 1));
        t.push(g, m(1, 0));
        assert_eq!(t.members(g), [m(4, 1), m(3, 0), m(2, 1), m(1, 0)]);
        assert_eq!(
            by_cpu(&t.members(g)).unwrap(),
            [(0, vec![1, 3]), (1, vec![0, 2])]
        );
        // A worker leaving: the last takes its place.
        assert!(t.remove(g, 3));
        assert_eq!(t.members(g), [m(4, 1), m(1, 0), m(2, 1)]);
        assert!(!t.remove(g, 3));
        assert_eq!(t.group_of(2), Some(g));
        assert_eq!(t.find_or_make(100, &[]), Some(g));
        // The group's last listener gone: the group is forgotten.
        for inode in [4, 1, 2] {
            assert!(t.remove(g, inode));
        }
        assert_eq!(t.find(100), None);
        drop(t);
        // The lock was let go.
        assert!(orders.lock().is_some());
    }

    #[test]
    fn a_group_too_large_is_lost_and_hashes() {
        let orders = Orders::new();
        let t = orders.lock().unwrap();
        let g = t.find_or_make(7, &[]).unwrap();
        for i in 0..=MEMBERS {
            t.push(g, m(i64::try_from(i).unwrap() + 10, 0));
        }
        assert!(t.is_lost(g));
        let prog = t.program(g, None).unwrap();
        assert_eq!(prog.len(), 2);
        assert_eq!(prog[1].k, cpu::NO_INDEX);
        for k in 1..GROUPS {
            assert!(
                t.find_or_make(7 + i64::try_from(k).unwrap() * 1000, &[])
                    .is_some()
            );
        }
        assert_eq!(t.find_or_make(99_999, &[]), None);
    }
}

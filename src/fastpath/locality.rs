//! Fastsocket's point is locality: a connection is accepted and served on the CPU that
//! received it. Its per-core listen table gives each core its own listener, and its default
//! mode pins each worker to a core. The emulation does the same with what a modern kernel
//! offers:
//!
//! * **Pinning**: each worker, at its listen_spawn, is pinned to one CPU, round-robin over the
//!   CPUs the program may use (its affinity mask), in the order the listening process forked
//!   its workers. This changes the host's affinity: it is what Fastsocket mode is for, and
//!   `EPOLLSCOPE_FASTPATH_PIN=0` turns it off (a worker the program pinned itself to one CPU
//!   is still steered to it).
//! * **Steering**: the worker's listener takes the connections processed on its CPU. Where the
//!   kernel's reuseport selection honours SO_INCOMING_CPU (Linux 6.1 on), the listener sets
//!   it; elsewhere a classic-BPF reuseport program returns, for the CPU processing the
//!   connection, the index of that CPU's listener in the group, from the group's order as
//!   the kernel keeps it ([`order`]: every change of the group made under one lock shared
//!   by the program's processes, and the program attached again).
//! * **Hashing** where neither applies: a worker on no single CPU, or a CPU with no listener
//!   of its own (fewer workers than CPUs): the kernel hashes those connections as plain
//!   SO_REUSEPORT does.
//!
//! Locality is measured, not assumed: at every accept the shim reads SO_INCOMING_CPU on the
//! accepted socket (the CPU the kernel processed it on) and the CPU the accepting thread runs
//! on, and the trace summary reports the fraction of local accepts per worker.

pub mod order;

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

use nix::errno::Errno;

use crate::sys::{self, RawFd, cpu};

/// How a worker's listener is steered (`EPOLLSCOPE_FASTPATH_STEER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Steer {
    /// SO_INCOMING_CPU where the kernel honours it, else the classic-BPF program.
    #[default]
    Auto,
    IncomingCpu,
    Cbpf,
    /// No steering: the kernel's hash, as plain SO_REUSEPORT.
    Hash,
}

impl std::str::FromStr for Steer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "1" => Ok(Steer::Auto),
            "incoming-cpu" => Ok(Steer::IncomingCpu),
            "cbpf" => Ok(Steer::Cbpf),
            "hash" | "0" | "off" => Ok(Steer::Hash),
            other => Err(format!(
                "unknown steering '{other}' (expected auto, incoming-cpu, cbpf or hash)"
            )),
        }
    }
}

/// What steered a listener, as the trace's notice says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Used {
    None = 0,
    IncomingCpu = 1,
    Cbpf = 2,
    Hash = 3,
    /// Classic BPF asked for, but the group's order is not known (table full).
    Lost = 4,
}

impl Used {
    fn from_u8(v: u8) -> Used {
        match v {
            1 => Used::IncomingCpu,
            2 => Used::Cbpf,
            3 => Used::Hash,
            4 => Used::Lost,
            _ => Used::None,
        }
    }
}

/// The prefix of the notice a spawn records; the summary collects these lines.
pub const NOTICE: &str = "locality:";

/// The steering in effect, chosen for this kernel.
pub fn resolve(steer: Steer) -> Steer {
    match steer {
        Steer::Auto if cpu::kernel_honours_incoming_cpu() => Steer::IncomingCpu,
        Steer::Auto => Steer::Cbpf,
        other => other,
    }
}

/// One line for the shim's start message: the plan.
pub fn plan(pin: bool, steer: Steer) -> String {
    let cpus = cpu::allowed_cpus().unwrap_or_default();
    let pinning = if pin {
        format!("workers pinned round-robin over CPUs {}", cpu_list(&cpus))
    } else {
        "workers not pinned (EPOLLSCOPE_FASTPATH_PIN=0)".into()
    };
    let steering = match resolve(steer) {
        Steer::IncomingCpu => "connections steered by SO_INCOMING_CPU",
        Steer::Cbpf => "connections steered by a classic-BPF reuseport program",
        _ => "connections hashed (no steering)",
    };
    format!("{pinning}, {steering}")
}

/// `0-3,6` style.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = vec![];
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// This process's part in the round-robin, and what its spawns did.
#[derive(Default)]
pub struct Locality {
    /// Children forked so far by this process (the next child's index).
    forks: AtomicUsize,
    /// This process's index among its parent's children.
    index: AtomicUsize,
    /// The CPU this process's listeners are steered to, or -1.
    cpu: AtomicI32,
    used: AtomicU8,
    /// The order of the reuseport groups, shared with every process forked from here on.
    orders: order::Orders,
}

impl Locality {
    pub fn new() -> Locality {
        let l = Locality::default();
        l.cpu.store(-1, Ordering::Relaxed);
        l
    }

    /// In the parent, after a fork: the next child takes the next CPU.
    pub fn after_fork_parent(&self) {
        self.forks.fetch_add(1, Ordering::Relaxed);
    }

    /// In the child: its index is its parent's count before the fork (inherited memory).
    pub fn after_fork_child(&self) {
        self.index
            .store(self.forks.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.cpu.store(-1, Ordering::Relaxed);
        self.used.store(Used::None as u8, Ordering::Relaxed);
    }

    /// The CPU this worker serves: pins it there first when `pin`, else the one CPU its
    /// affinity allows (None: it may run on several, so nothing can be local by design).
    fn worker_cpu(&self, pin: bool) -> Option<usize> {
        let prior = self.cpu.load(Ordering::Relaxed);
        if prior >= 0 {
            return Some(prior as usize);
        }
        let cpus = cpu::allowed_cpus().ok()?;
        let chosen = if pin && !cpus.is_empty() {
            let c = cpus[self.index.load(Ordering::Relaxed) % cpus.len()];
            cpu::pin_to(c).ok()?;
            c
        } else if let [only] = cpus[..] {
            only
        } else {
            return None;
        };
        self.cpu
            .store(i32::try_from(chosen).ok()?, Ordering::Relaxed);
        Some(chosen)
    }

    /// Before a spawned listener `fd` listens: pins the worker and sets SO_INCOMING_CPU.
    pub fn before_listen(&self, fd: RawFd, pin: bool, steer: Steer) -> Result<(), Errno> {
        let steer = resolve(steer);
        let worker_cpu = self.worker_cpu(pin);
        let Some(c) = worker_cpu.filter(|_| steer != Steer::Hash) else {
            self.used.store(Used::Hash as u8, Ordering::Relaxed);
            return Ok(());
        };
        if steer == Steer::IncomingCpu {
            let c = i32::try_from(c).map_err(|_| Errno::EINVAL)?;
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, c)?;
            self.used.store(Used::IncomingCpu as u8, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes the spawned listener `new` (standing in for the shared listener `shared`) listen.
    /// When the classic-BPF program steers, under the group's lock: the listener joins the
    /// group at its end, and the program built from the group's order is attached. A program
    /// that cannot be attached takes the listener out of the group again, and fails the spawn.
    pub fn listen(
        &self,
        shared: RawFd,
        new: RawFd,
        backlog: i32,
        steer: Steer,
    ) -> Result<(), Errno> {
        if resolve(steer) != Steer::Cbpf {
            return sys::listen(new, backlog);
        }
        let Some(t) = self.orders.lock() else {
            sys::listen(new, backlog)?;
            self.used.store(Used::Lost as u8, Ordering::Relaxed);
            return Ok(());
        };
        let key = order::inode(shared)?;
        // A group seen for the first time holds the shared listener alone, if it listens.
        let first = [order::Member {
            inode: key,
            cpu: -1,
        }];
        let first = if order::listening(shared) {
            &first[..]
        } else {
            &[]
        };
        let group = t.find_or_make(key, first);
        sys::listen(new, backlog)?;
        let cpu = i64::from(self.cpu.load(Ordering::Relaxed));
        let Some(g) = group else {
            self.used.store(Used::Lost as u8, Ordering::Relaxed);
            return Ok(());
        };
        let me = order::inode(new)?;
        t.push(g, order::Member { inode: me, cpu });
        if let Err(e) = t
            .program(g, None)
            .and_then(|p| cpu::attach_reuseport_cbpf(new, &p))
        {
            if sys::shutdown(new, libc::SHUT_RD).is_ok() {
                t.remove(g, me);
            }
            return Err(e);
        }
        let used = match (t.is_lost(g), cpu >= 0) {
            (true, _) => Used::Lost,
            (false, true) => Used::Cbpf,
            (false, false) => Used::Hash,
        };
        self.used.store(used as u8, Ordering::Relaxed);
        Ok(())
    }

    /// Retires the shared listener `shared` (takes it out of its group: shutdown(SHUT_RD)
    /// stops it listening but keeps it bound) on behalf of the spawned listener `own`, which
    /// is in the group. When the group's order is kept, under its lock, and the program is
    /// attached again through `own`.
    pub fn retire(&self, shared: RawFd, own: RawFd) -> Result<(), Errno> {
        let shut = || sys::shutdown(shared, libc::SHUT_RD);
        let Some(t) = self.orders.lock() else {
            return shut();
        };
        let Some(g) = order::inode(shared).ok().and_then(|k| t.find(k)) else {
            return shut();
        };
        shut()?;
        if t.remove(g, order::inode(shared)?) {
            t.program(g, None)
                .and_then(|p| cpu::attach_reuseport_cbpf(own, &p))?;
        }
        Ok(())
    }

    /// Makes a retired shared listener `fd` listen again with `relisten`: it joins its group
    /// at the end (which moves no other listener), under the group's lock when its order is
    /// kept.
    pub fn revive(&self, fd: RawFd, relisten: impl FnOnce()) {
        let Some(t) = self.orders.lock() else {
            return relisten();
        };
        let was = order::listening(fd);
        relisten();
        let Ok(key) = order::inode(fd) else { return };
        if !was
            && order::listening(fd)
            && let Some(g) = t.find(key)
        {
            t.push(
                g,
                order::Member {
                    inode: key,
                    cpu: -1,
                },
            );
            let _ = t
                .program(g, None)
                .and_then(|p| cpu::attach_reuseport_cbpf(fd, &p));
        }
    }

    /// Closes `fd` with `close`. A listener spawned in this process whose group's order is
    /// kept leaves the group at its close (the last listener takes its index), so first the
    /// program for the order after it is attached through `fd`, leaving the moved listener
    /// out (its CPU's connections go to that CPU's other listeners, or are hashed) until the
    /// group's next change attaches the exact program again: this process has no member
    /// left to attach it through.
    pub fn close_listener(
        &self,
        fd: RawFd,
        spawned_here: bool,
        close: impl FnOnce() -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if !spawned_here {
            return close();
        }
        let Some(t) = self.orders.lock() else {
            return close();
        };
        let Some((me, g)) = order::inode(fd)
            .ok()
            .and_then(|me| t.group_of(me).map(|g| (me, g)))
        else {
            return close();
        };
        let mut after = t.members(g);
        if let Some(i) = after.iter().position(|m| m.inode == me) {
            after.swap_remove(i);
            if let Some(moved) = after.get_mut(i) {
                moved.cpu = -1;
            }
        }
        let _ = t
            .program(g, Some(&after))
            .and_then(|p| cpu::attach_reuseport_cbpf(fd, &p));
        close()?;
        t.remove(g, me);
        Ok(())
    }

    /// The notice of this process's last spawn (for the trace), if it spawned.
    pub fn notice(&self) -> Option<String> {
        let cpu = self.cpu.load(Ordering::Relaxed);
        let text = match Used::from_u8(self.used.load(Ordering::Relaxed)) {
            Used::None => return None,
            Used::IncomingCpu => format!("{NOTICE} SO_INCOMING_CPU steers cpu {cpu}"),
            Used::Cbpf => format!("{NOTICE} classic-BPF reuseport program steers cpu {cpu}"),
            Used::Hash if cpu >= 0 => {
                format!("{NOTICE} hashing (steering off), worker on cpu {cpu}")
            }
            Used::Hash => format!("{NOTICE} hashing (worker not on one CPU)"),
            Used::Lost => format!(
                "{NOTICE} hashing (classic-BPF: the group's order is not known: more than {} listeners or {} groups)",
                order::MEMBERS,
                order::GROUPS
            ),
        };
        Some(text)
    }
}

/// What the shim measures at one accept: where the kernel processed the connection and
/// where the accepting thread ran.
pub fn measure(accepted: RawFd) -> (Option<i32>, Option<i32>) {
    (cpu::incoming_cpu(accepted), sys::sched_getcpu())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_like_the_kernels() {
        for (cpus, want) in [
            (&[][..], "-"),
            (&[0][..], "0"),
            (&[0, 1][..], "0-1"),
            (&[0, 1, 2, 5, 7, 8][..], "0-2,5,7-8"),
        ] {
            assert_eq!(cpu_list(cpus), want);
        }
    }

    #[test]
    fn steering_parses() {
        assert_eq!("auto".parse(), Ok(Steer::Auto));
        assert_eq!("incoming-cpu".parse(), Ok(Steer::IncomingCpu));
        assert_eq!("cbpf".parse(), Ok(Steer::Cbpf));
        assert_eq!("hash".parse(), Ok(Steer::Hash));
        assert!("fast".parse::<Steer>().is_err());
    }

    #[test]
    fn children_take_cpus_in_fork_order() {
        let l = Locality::new();
        l.after_fork_parent();
        l.after_fork_parent();
        // A child forked now (a copy of this memory) is the third.
        let child = Locality::new();
        child
            .forks
            .store(l.forks.load(Ordering::Relaxed), Ordering::Relaxed);
        child.after_fork_child();
        assert_eq!(child.index.load(Ordering::Relaxed), 2);
        assert_eq!(child.forks.load(Ordering::Relaxed), 0);
    }
}

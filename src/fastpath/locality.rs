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
//!   connection, the index of that CPU's listener in the group.
//! * **Hashing** where neither applies: a worker on no single CPU, or a CPU with no listener
//!   of its own (fewer workers than CPUs): the kernel hashes those connections as plain
//!   SO_REUSEPORT does.
//!
//! Locality is measured, not assumed: at every accept the shim reads SO_INCOMING_CPU on the
//! accepted socket (the CPU the kernel processed it on) and the CPU the accepting thread runs
//! on, and the trace summary reports the fraction of local accepts per worker.

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
}

impl Used {
    fn from_u8(v: u8) -> Used {
        match v {
            1 => Used::IncomingCpu,
            2 => Used::Cbpf,
            3 => Used::Hash,
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

    /// After a spawned listener `fd` listens: the classic-BPF program, when that steers.
    ///
    /// The program indexes the group's socket array, which holds the listeners in the order
    /// they joined; the global listener, retired from the group when the first worker
    /// spawns, leaves it with that worker at index 0. Workers pinned round-robin in fork
    /// order and spawning in that order give index k to the k-th CPU, so the program maps
    /// the k-th allowed CPU to index k. Workers that spawn in another order get other
    /// indexes: the per-worker locality in the trace summary shows it.
    pub fn after_listen(&self, fd: RawFd, steer: Steer) -> Result<(), Errno> {
        if resolve(steer) != Steer::Cbpf || self.cpu.load(Ordering::Relaxed) < 0 {
            return Ok(());
        }
        let cpus = cpu::allowed_cpus()?;
        let mut pairs = vec![];
        for (k, &c) in cpus.iter().enumerate() {
            pairs.push((
                u32::try_from(c).map_err(|_| Errno::EINVAL)?,
                u32::try_from(k).map_err(|_| Errno::EINVAL)?,
            ));
        }
        cpu::attach_reuseport_cbpf(fd, &cpu::cpu_steering_program(&pairs))?;
        self.used.store(Used::Cbpf as u8, Ordering::Relaxed);
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

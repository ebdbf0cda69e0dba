//! CPUs: which ones this process may run on, pinning to one, where it runs now, the
//! classic-BPF reuseport program that steers a connection to the listener of its CPU, and the
//! shared words in which a program's processes keep the order of their reuseport groups.

use std::mem::{size_of, zeroed};
use std::sync::atomic::AtomicI64;

use nix::errno::Errno;

use super::{RawFd, check, getsockopt_int};

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> Result<Vec<usize>, Errno> {
    // SAFETY: cpu_set_t is plain bits; all zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: set is valid for writes of size_of::<cpu_set_t>() bytes; pid 0 is this thread.
    check(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) })?;
    let max = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set within its size (every i < max).
    Ok((0..max)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// Pins the calling thread to `cpu` alone.
pub fn pin_to(cpu: usize) -> Result<(), Errno> {
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: as in allowed_cpus.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: cpu is within the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is a valid cpu_set_t of the size given; pid 0 is this thread.
    check(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// The CPU the kernel processed a socket's traffic on last (SO_INCOMING_CPU); `None` if it
/// has not recorded one (-1) or the socket has no such option.
pub fn incoming_cpu(fd: RawFd) -> Option<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_INCOMING_CPU)
        .ok()
        .filter(|&c| c >= 0)
}

/// The index a reuseport program returns for "no listener of this CPU": no group has it, so
/// the kernel hashes the connection over the whole group.
pub const NO_INDEX: u32 = u32::MAX;

/// The most listeners one CPU's branch of [`cpu_steering_program`] can choose between (its
/// jumps are 8 bits).
pub const MAX_PER_CPU: usize = 100;

/// The classic-BPF reuseport program: for the CPU processing the connection, the index in the
/// group's socket array of one of that CPU's listeners (at random when it has several, as the
/// kernel's hash spreads a CPU's connections over its SO_INCOMING_CPU listeners), as
/// `(cpu, indexes)` pairs. A CPU with no pair gets [`NO_INDEX`]. Pairs with no index or more
/// than [`MAX_PER_CPU`] are an error (EINVAL).
pub fn cpu_steering_program(pairs: &[(u32, Vec<u32>)]) -> Result<Vec<libc::sock_filter>, Errno> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let modulo = libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K;
    // Loads from SKF_AD_OFF + n give ancillary data: the current CPU's number, a random u32.
    let ad_cpu = (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32;
    let ad_random = (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32;
    let mut prog = vec![op(ld_abs, 0, 0, ad_cpu)];
    for (cpu, indexes) in pairs {
        let n = indexes.len();
        if n == 0 || n > MAX_PER_CPU {
            return Err(Errno::EINVAL);
        }
        // The branch taken for this CPU; a mismatch skips it.
        let mut branch = vec![];
        if let [only] = indexes[..] {
            branch.push(op(ret, 0, 0, only));
        } else {
            branch.push(op(ld_abs, 0, 0, ad_random));
            branch.push(op(
                modulo,
                0,
                0,
                u32::try_from(n).map_err(|_| Errno::EINVAL)?,
            ));
            for (j, &index) in indexes.iter().enumerate() {
                if j + 1 < n {
                    branch.push(op(jeq, 0, 1, u32::try_from(j).map_err(|_| Errno::EINVAL)?));
                }
                branch.push(op(ret, 0, 0, index));
            }
        }
        let skip = u8::try_from(branch.len()).map_err(|_| Errno::EINVAL)?;
        prog.push(op(jeq, 0, skip, *cpu));
        prog.extend(branch);
    }
    prog.push(op(ret, 0, 0, NO_INDEX));
    Ok(prog)
}

/// The inode number of the file `fd` refers to (a socket's is the same in every process).
pub fn inode(fd: RawFd) -> Result<u64, Errno> {
    // SAFETY: stat is plain data; all zero is a valid value.
    let mut st: libc::stat = unsafe { zeroed() };
    // SAFETY: st is valid for writes of a struct stat.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_ino)
}

/// Words of memory shared with every process this one forks from now on (an anonymous
/// MAP_SHARED mapping), all zero at first.
pub struct SharedWords {
    base: *mut AtomicI64,
    len: usize,
}

// SAFETY: the words are atomics; sharing them between threads is what they are for.
unsafe impl Sync for SharedWords {}
// SAFETY: as above; the pointer is to a process-wide mapping, not thread-owned memory.
unsafe impl Send for SharedWords {}

impl SharedWords {
    pub fn new(len: usize) -> Result<SharedWords, Errno> {
        let bytes = len
            .checked_mul(size_of::<AtomicI64>())
            .filter(|&b| b > 0)
            .ok_or(Errno::EINVAL)?;
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(SharedWords {
            base: p.cast(),
            len,
        })
    }
}

impl std::ops::Deref for SharedWords {
    type Target = [AtomicI64];
    fn deref(&self) -> &[AtomicI64] {
        // SAFETY: the mapping holds `len` zero-initialised (valid) AtomicI64s, page-aligned,
        // and lives as long as self (it is unmapped in Drop).
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, of this size; no reference outlives self.
        unsafe { libc::munmap(self.base.cast(), self.len * size_of::<AtomicI64>()) };
    }
}

/// Attaches `program` (see [`cpu_steering_program`]) to the reuseport group of `fd`.
pub fn attach_reuseport_cbpf(fd: RawFd, program: &[libc::sock_filter]) -> Result<(), Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: fprog points at `program`, alive for the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Whether this kernel's reuseport selection prefers the listener whose SO_INCOMING_CPU is
/// the CPU processing the connection (Linux 6.1, "soreuseport: Fix socket selection for
/// SO_INCOMING_CPU"); before, the option only ranked sockets outside a reuseport group.
pub fn kernel_honours_incoming_cpu() -> bool {
    kernel_version().is_some_and(|v| v >= (6, 1))
}

/// The running kernel's major and minor version.
pub fn kernel_version() -> Option<(u32, u32)> {
    parse_release(&std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?)
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        for (release, want) in [
            ("6.18.44-fc-v657", Some((6, 18))),
            ("5.15.0-91-generic", Some((5, 15))),
            ("4.4", Some((4, 4))),
            ("x", None),
        ] {
            assert_eq!(parse_release(release), want, "{release}");
        }
    }

    #[test]
    fn the_program_maps_each_cpu_to_its_indexes_and_others_to_none() {
        let prog = cpu_steering_program(&[(0, vec![1]), (3, vec![0, 2])]).unwrap();
        let ks: Vec<u32> = prog.iter().map(|i| i.k).collect();
        // ld cpu; cpu 0? ret 1; cpu 3? (ld random; mod 2; ==0? ret 0; ret 2); ret none.
        assert_eq!(ks[1..3], [0, 1]);
        assert_eq!(prog[1].jf, 1);
        assert_eq!(ks[3], 3);
        assert_eq!(prog[3].jf, 5);
        assert_eq!(ks[5..], [2, 0, 0, 2, NO_INDEX]);
        assert_eq!(
            cpu_steering_program(&[(0, vec![])]).err(),
            Some(Errno::EINVAL)
        );
    }

    #[test]
    fn shared_words_start_zero_and_keep_stores() {
        use std::sync::atomic::Ordering;
        let words = SharedWords::new(3).unwrap();
        assert_eq!(words.len(), 3);
        assert_eq!(words[2].load(Ordering::Relaxed), 0);
        words[2].store(7, Ordering::Relaxed);
        assert_eq!(words[2].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.contains(&(crate::sys::sched_getcpu().unwrap() as usize)));
    }
}

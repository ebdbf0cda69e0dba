//! CPUs: which ones this process may run on, pinning to one, where it runs now, and the
//! classic-BPF reuseport program that steers a connection to the listener of its CPU.

use std::mem::{size_of, zeroed};

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

/// The classic-BPF reuseport program: the index in the group (in the order its sockets
/// joined) of the listener for the CPU processing the connection, as `(cpu, index)` pairs.
/// A CPU with no pair gets an index no group has, so the kernel hashes its connection.
pub fn cpu_steering_program(pairs: &[(u32, u32)]) -> Vec<libc::sock_filter> {
    const NONE: u32 = u32::MAX;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_cpu = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    // SKF_AD_OFF + SKF_AD_CPU: a load from this offset gives the current CPU's number.
    let ad_cpu = (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32;
    let mut prog = vec![op(ld_cpu, 0, 0, ad_cpu)];
    for &(cpu, index) in pairs {
        prog.push(op(jeq, 0, 1, cpu));
        prog.push(op(ret, 0, 0, index));
    }
    prog.push(op(ret, 0, 0, NONE));
    prog
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
    fn the_program_maps_each_cpu_to_its_index_and_others_to_none() {
        let prog = cpu_steering_program(&[(0, 1), (3, 0)]);
        assert_eq!(prog.len(), 1 + 2 * 2 + 1);
        assert_eq!(prog[1].k, 0);
        assert_eq!(prog[2].k, 1);
        assert_eq!(prog[3].k, 3);
        assert_eq!(prog[4].k, 0);
        assert_eq!(prog[5].k, u32::MAX);
    }

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.contains(&(crate::sys::sched_getcpu().unwrap() as usize)));
    }
}

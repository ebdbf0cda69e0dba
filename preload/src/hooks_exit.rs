//! How each process ends, as far as the shim can see it: its own last word (main returning,
//! exit, _exit, _Exit, each traced as `exit(STATUS)`), and what a traced parent learns when it
//! reaps a child (wait, waitpid, wait4, traced with the status they returned). A process killed
//! by a signal says nothing itself; its end is known only if a traced parent reaped it.
#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_char, c_int, c_void, pid_t};

use epollscope::trace::Call;

use crate::hooks_net::{enosys, finish};
use crate::record::{fd, now_us};
use crate::{enter, real};

/// Writes out a stream's buffer before the image goes (exec, _exit), unless the caller is a
/// vfork child: the buffer is its parent's, and the parent writes it out itself.
pub fn flush_own() {
    if crate::os::getpid() == crate::pid() {
        crate::flush();
    }
}

/// Traces `exit(status)` for the calling process, then writes out a stream's buffer.
fn last_word(status: c_int) {
    let saved = crate::errno();
    if let Some(mut e) = enter() {
        e.shared_vm_child();
        e.shim.record(
            e.pid,
            now_us(),
            || Call::Builtin {
                name: "exit".into(),
                args: vec![fd(status)],
            },
            0,
            0,
        );
    }
    flush_own();
    crate::set_errno(saved);
}

fn exit_group(status: c_int) -> ! {
    // SAFETY: exit_group ends the process; it does not return.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    loop {
        std::hint::spin_loop();
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    last_word(status);
    match real::exit() {
        // SAFETY: passing the caller's status on.
        Some(real) => unsafe { real(status) },
        None => exit_group(status),
    }
    exit_group(status)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    last_word(status);
    if let Some(real) = real::_exit() {
        // SAFETY: passing the caller's status on.
        unsafe { real(status) };
    }
    exit_group(status)
}

#[unsafe(no_mangle)]
#[allow(non_snake_case)] // the C name
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    last_word(status);
    if let Some(real) = real::_Exit() {
        // SAFETY: passing the caller's status on.
        unsafe { real(status) };
    }
    exit_group(status)
}

pub type Main = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;

/// The program's own main, for [`main_then_exit`].
static MAIN: AtomicUsize = AtomicUsize::new(0);

/// Runs the program's main and traces what it returned (glibc then calls exit with it
/// internally, which no hook sees).
unsafe extern "C" fn main_then_exit(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    // SAFETY: MAIN holds the main __libc_start_main was given, stored just before.
    let main = unsafe { std::mem::transmute::<usize, Main>(MAIN.load(Ordering::Relaxed)) };
    // SAFETY: the program's main with the arguments the C library prepared for it.
    let status = unsafe { main(argc, argv, envp) };
    last_word(status);
    status
}

/// glibc's program start, wrapped only to learn main's return value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_start_main(
    main: Main,
    argc: c_int,
    argv: *mut *mut c_char,
    init: *mut c_void,
    fini: *mut c_void,
    rtld_fini: *mut c_void,
    stack_end: *mut c_void,
) -> c_int {
    let Some(real) = real::__libc_start_main() else {
        return enosys();
    };
    MAIN.store(main as usize, Ordering::Relaxed);
    // SAFETY: the C library's own start with the caller's arguments, main wrapped.
    unsafe { real(main_then_exit, argc, argv, init, fini, rtld_fini, stack_end) }
}

/// Traces a wait that reaped (or failed): `name(pid, status)`.
fn reaped(name: &str, start: u64, who: pid_t, value: i64, status: *const c_int) -> i64 {
    let Some(e) = enter() else {
        return value;
    };
    let status = if value > 0 {
        // SAFETY: the caller's status slot, which the kernel filled as the wait reaped a child.
        unsafe { status.as_ref() }.copied()
    } else {
        None
    };
    finish(&e, start, value, || Call::Builtin {
        name: name.into(),
        args: std::iter::once(fd(who)).chain(status.map(fd)).collect(),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn waitpid(who: pid_t, status: *mut c_int, options: c_int) -> pid_t {
    let Some(real) = real::waitpid() else {
        return enosys();
    };
    let start = now_us();
    // SAFETY: the caller's arguments, passed through unchanged; no guard is up while it
    // blocks (the trace line is made after it returns).
    let value = unsafe { real(who, status, options) } as i64;
    reaped("waitpid", start, who, value, status) as pid_t
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn wait4(
    who: pid_t,
    status: *mut c_int,
    options: c_int,
    usage: *mut libc::rusage,
) -> pid_t {
    let Some(real) = real::wait4() else {
        return enosys();
    };
    let start = now_us();
    // SAFETY: as in waitpid.
    let value = unsafe { real(who, status, options, usage) } as i64;
    reaped("wait4", start, who, value, status) as pid_t
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn wait(status: *mut c_int) -> pid_t {
    let Some(real) = real::wait() else {
        return enosys();
    };
    let start = now_us();
    // SAFETY: as in waitpid.
    let value = unsafe { real(status) } as i64;
    reaped("wait", start, -1, value, status) as pid_t
}

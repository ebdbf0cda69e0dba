//! Calls that change the fd table or the process: dup, dup2, dup3, fork, the exec family and
//! _exit. Exec and _exit flush the trace first (the buffer would be lost with the image);
//! fork flushes in its prepare handler (see the crate root), so a line is written once.
#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.

use libc::{c_char, c_int, c_uint, pid_t};

use epollscope::trace::Call;

use crate::hooks_net::{enosys, finish};
use crate::record::{fd, now_us};
use crate::{Entered, enter, flush, real};

/// Keeps the listen table in step with the fd table, and the sink out of the way.
fn note_dup(e: &Entered, old: c_int, new: i64) {
    if new < 0 {
        return;
    }
    if let Some(fp) = &e.shim.fastpath {
        let _ = crate::guarded(|| fp.table().duplicate(old, new as c_int));
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(old: c_int) -> c_int {
    let Some(real) = real::dup() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = unsafe { real(old) } as i64;
    note_dup(&e, old, value);
    finish(&e, start, value, || Call::Dup { fd: fd(old) }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let Some(real) = real::dup2() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old, new) };
    };
    if let Some(sink) = &e.shim.sink {
        sink.protect(new);
    }
    let start = now_us();
    // SAFETY: as above.
    let value = unsafe { real(old, new) } as i64;
    note_dup(&e, old, value);
    finish(&e, start, value, || Call::Dup2 {
        fd: fd(old),
        target: fd(new),
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let Some(real) = real::dup3() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old, new, flags) };
    };
    if let Some(sink) = &e.shim.sink {
        sink.protect(new);
    }
    let start = now_us();
    // SAFETY: as above.
    let value = unsafe { real(old, new, flags) } as i64;
    note_dup(&e, old, value);
    // No Dup3 in the shared formatter: shown as dup3(old, new, flags) with flags as a number.
    finish(&e, start, value, || Call::Builtin {
        name: "dup3".into(),
        args: vec![fd(old), fd(new), fd(flags)],
    }) as c_int
}

/// close_range and closefrom close many fds at once (python's subprocess does, between fork
/// and exec): the sink's fd must not be closed under it, nor its number reused by the host.
fn release_sink(first: c_uint, last: c_uint) {
    let saved = crate::errno();
    if let Some(e) = enter()
        && let Some(sink) = &e.shim.sink
    {
        sink.release_if_in(first, last);
    }
    crate::set_errno(saved);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let Some(real) = real::close_range() else {
        return enosys();
    };
    release_sink(first, last);
    // SAFETY: the caller's arguments, passed through unchanged.
    unsafe { real(first, last, flags) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(first: c_int) {
    let Some(real) = real::closefrom() else {
        return;
    };
    release_sink(first.max(0) as c_uint, c_uint::MAX);
    // SAFETY: the caller's argument, passed through unchanged.
    unsafe { real(first) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> pid_t {
    let Some(real) = real::fork() else {
        return enosys();
    };
    let Some(e) = enter() else {
        // SAFETY: fork takes no arguments.
        return unsafe { real() };
    };
    let start = now_us();
    // SAFETY: as above. The atfork handlers flush the buffer and give the child its own file.
    let value = unsafe { real() } as i64;
    if value != 0 {
        // The parent's line (with the child's pid, or the error); the child's fork returns 0
        // and is not a call of its own, as in strace -f.
        finish(&e, start, value, || Call::Fork);
    }
    value as pid_t
}

/// Flushes before an exec replaces the image, then execs.
macro_rules! exec_hook {
    ($name:ident ($($arg:ident : $ty:ty),*)) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let Some(real) = real::$name() else {
                return enosys();
            };
            flush();
            // SAFETY: the caller's arguments, passed through unchanged.
            unsafe { real($($arg),*) }
        }
    };
}

exec_hook!(execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char));
exec_hook!(execv(path: *const c_char, argv: *const *const c_char));
exec_hook!(execvp(file: *const c_char, argv: *const *const c_char));
exec_hook!(execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char));

/// Ends the process without exit's handlers: flush first, or the buffer dies with it.
fn exit_now(status: c_int, real: Option<unsafe extern "C" fn(c_int)>) -> ! {
    flush();
    if let Some(real) = real {
        // SAFETY: passing the caller's status on.
        unsafe { real(status) };
    }
    // SAFETY: exit_group ends the process; it does not return.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    unreachable_exit()
}

fn unreachable_exit() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    exit_now(status, real::_exit())
}

#[unsafe(no_mangle)]
#[allow(non_snake_case)] // the C name
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    exit_now(status, real::_Exit())
}

//! Calls that change the fd table or the process: dup, dup2, dup3, close_range, closefrom,
//! fork and the exec family. Exec flushes a stream's buffer first (it would be lost with the
//! image); fork flushes in its prepare handler (see the crate root), so a line is written once.
//! A vfork child, which shares its parent's memory, changes none of the parent's state here.
#![allow(clippy::missing_safety_doc)] // C entry points: the contract is the C function's.

use libc::{c_char, c_int, c_uint, c_void, pid_t};

use epollscope::trace::Call;

use crate::hooks_net::{enosys, finish};
use crate::record::{fd, now_us};
use crate::{Entered, enter, real};

/// Keeps the listen table in step with the fd table.
fn note_dup(e: &mut Entered, old: c_int, new: i64) {
    if new < 0 {
        return;
    }
    if let Some(fp) = e.fastpath() {
        let _ = crate::guarded(|| fp.table().duplicate(old, new as c_int));
    }
}

/// Moves a stream sink's fd out of the way of the host's dup2/dup3 onto `new`.
fn protect(e: &mut Entered, new: c_int) {
    if !e.shared_vm_child()
        && let Some(sink) = &e.shim.sink
    {
        sink.protect(new);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(old: c_int) -> c_int {
    let Some(real) = real::dup() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old) };
    };
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(old) }) as i64;
    note_dup(&mut e, old, value);
    finish(&e, start, value, || Call::Dup { fd: fd(old) }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let Some(real) = real::dup2() else {
        return enosys();
    };
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old, new) };
    };
    protect(&mut e, new);
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(old, new) }) as i64;
    note_dup(&mut e, old, value);
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
    let Some(mut e) = enter() else {
        // SAFETY: the caller's arguments, passed through unchanged.
        return unsafe { real(old, new, flags) };
    };
    protect(&mut e, new);
    let start = now_us();
    // SAFETY: as above.
    let value = e.plain(|| unsafe { real(old, new, flags) }) as i64;
    note_dup(&mut e, old, value);
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
    if let Some(mut e) = enter()
        && !e.shared_vm_child()
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
    let value = e.plain(|| unsafe { real() }) as i64;
    if value != 0 {
        // The parent's line (with the child's pid, or the error); the child's fork returns 0
        // and is not a call of its own, as in strace -f.
        finish(&e, start, value, || Call::Fork);
    }
    value as pid_t
}

/// vfork, wrapped without a stack frame of its own: the child returns straight to the caller
/// on the caller's stack, so the hook only notes the coming child and jumps to the C
/// library's vfork, with the stack exactly as the caller left it.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    core::arch::naked_asm!(
        // Keep the stack 16-byte aligned for the call, and the caller's return address
        // where the real vfork expects it.
        "sub rsp, 8",
        "call {begin}",
        "add rsp, 8",
        "jmp rax",
        begin = sym vfork_begin,
    )
}

/// Notes the coming shared-memory child; returns the function to jump to.
#[cfg(target_arch = "x86_64")]
extern "C" fn vfork_begin() -> usize {
    crate::note_shared_vm(libc::CLONE_VM | libc::CLONE_VFORK);
    real::vfork().map_or(vfork_unavailable as *const () as usize, |f| f as usize)
}

#[cfg(target_arch = "x86_64")]
extern "C" fn vfork_unavailable() -> pid_t {
    enosys()
}

/// clone, variadic in C: the three optional arguments are passed through as they came (the
/// C library reads them only when `flags` says they were given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clone(
    f: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    stack: *mut c_void,
    flags: c_int,
    arg: *mut c_void,
    parent_tid: *mut pid_t,
    tls: *mut c_void,
    child_tid: *mut pid_t,
) -> c_int {
    let Some(real) = real::clone() else {
        return enosys();
    };
    crate::note_shared_vm(flags);
    // SAFETY: the caller's arguments, passed through unchanged.
    unsafe { real(f, stack, flags, arg, parent_tid, tls, child_tid) }
}

/// Flushes before an exec replaces the image, then execs.
macro_rules! exec_hook {
    ($name:ident ($($arg:ident : $ty:ty),*)) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let Some(real) = real::$name() else {
                return enosys();
            };
            crate::hooks_exit::flush_own();
            // SAFETY: the caller's arguments, passed through unchanged.
            unsafe { real($($arg),*) }
        }
    };
}

exec_hook!(execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char));
exec_hook!(execv(path: *const c_char, argv: *const *const c_char));
exec_hook!(execvp(file: *const c_char, argv: *const *const c_char));
exec_hook!(execvpe(file: *const c_char, argv: *const *const c_char, envp: *const *const c_char));

//! The C library's own functions, found with `dlsym(RTLD_NEXT, name)` on first use and cached
//! in an atomic: no lock, no initialisation order (another library's constructor may call
//! `socket` before ours ran), and safe to race (two threads resolve the same address).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Looks `name` up once; 0 when the C library lacks it (e.g. `epoll_pwait2` before glibc 2.35).
pub fn resolve(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let cached = cache.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only reads the name.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    cache.store(found, Ordering::Relaxed);
    found
}

/// Declares `real::NAME() -> Option<unsafe extern "C" fn(ARGS) -> RET>`.
macro_rules! real_fns {
    ($($name:ident : fn($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            #[allow(dead_code, non_snake_case)]
            pub fn $name() -> Option<unsafe extern "C" fn($($arg),*) -> $ret> {
                static CACHE: AtomicUsize = AtomicUsize::new(0);
                // The cached address first: this runs on every intercepted call.
                let addr = match CACHE.load(Ordering::Relaxed) {
                    0 => {
                        let cname = concat!(stringify!($name), "\0");
                        let name = std::ffi::CStr::from_bytes_with_nul(cname.as_bytes()).ok()?;
                        resolve(&CACHE, name)
                    }
                    cached => cached,
                };
                match addr {
                    0 => None,
                    // SAFETY: the symbol of that name in the C library has this C signature.
                    addr => Some(unsafe {
                        std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) -> $ret>(addr)
                    }),
                }
            }
        )*
    };
}

use libc::{
    c_char, c_int, c_uint, c_void, epoll_event, pid_t, sigset_t, sockaddr, socklen_t, timespec,
};

use crate::hooks_exit::Main;

real_fns! {
    socket: fn(c_int, c_int, c_int) -> c_int;
    bind: fn(c_int, *const sockaddr, socklen_t) -> c_int;
    listen: fn(c_int, c_int) -> c_int;
    accept: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    connect: fn(c_int, *const sockaddr, socklen_t) -> c_int;
    close: fn(c_int) -> c_int;
    shutdown: fn(c_int, c_int) -> c_int;
    dup: fn(c_int) -> c_int;
    dup2: fn(c_int, c_int) -> c_int;
    dup3: fn(c_int, c_int, c_int) -> c_int;
    close_range: fn(c_uint, c_uint, c_int) -> c_int;
    closefrom: fn(c_int) -> ();
    fork: fn() -> pid_t;
    vfork: fn() -> pid_t;
    clone: fn(Option<unsafe extern "C" fn(*mut c_void) -> c_int>, *mut c_void, c_int, *mut c_void, *mut pid_t, *mut c_void, *mut pid_t) -> c_int;
    pipe: fn(*mut c_int) -> c_int;
    pipe2: fn(*mut c_int, c_int) -> c_int;
    socketpair: fn(c_int, c_int, c_int, *mut c_int) -> c_int;
    eventfd: fn(c_uint, c_int) -> c_int;
    timerfd_create: fn(c_int, c_int) -> c_int;
    timerfd_settime: fn(c_int, c_int, *const libc::itimerspec, *mut libc::itimerspec) -> c_int;
    poll: fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
    ppoll: fn(*mut libc::pollfd, libc::nfds_t, *const timespec, *const sigset_t) -> c_int;
    epoll_create: fn(c_int) -> c_int;
    epoll_create1: fn(c_int) -> c_int;
    epoll_ctl: fn(c_int, c_int, c_int, *mut epoll_event) -> c_int;
    epoll_wait: fn(c_int, *mut epoll_event, c_int, c_int) -> c_int;
    epoll_pwait: fn(c_int, *mut epoll_event, c_int, c_int, *const sigset_t) -> c_int;
    epoll_pwait2: fn(c_int, *mut epoll_event, c_int, *const timespec, *const sigset_t) -> c_int;
    execve: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    execv: fn(*const c_char, *const *const c_char) -> c_int;
    execvp: fn(*const c_char, *const *const c_char) -> c_int;
    execvpe: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    exit: fn(c_int) -> ();
    _exit: fn(c_int) -> ();
    _Exit: fn(c_int) -> ();
    waitpid: fn(pid_t, *mut c_int, c_int) -> pid_t;
    wait4: fn(pid_t, *mut c_int, c_int, *mut libc::rusage) -> pid_t;
    wait: fn(*mut c_int) -> pid_t;
    __libc_start_main: fn(Main, c_int, *mut *mut c_char, *mut c_void, *mut c_void, *mut c_void, *mut c_void) -> c_int;
}

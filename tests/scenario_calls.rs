//! The calls for pipes, socketpairs, eventfds, timerfds, datagrams, poll and epoll_pwait2:
//! each misuse gets one message at its line and column (a table: script, message).

use std::path::Path;

use epollscope::scenario::parse;

const PIPE: &str = "pipe2([R, W], 0) = 0\n";

/// (script, the one-line error it must give).
const MISUSES: &[(&str, &str)] = &[
    // Arity.
    (
        "pipe2([R, W]) = 0\n",
        "t.scn:1:13: pipe2() takes 2 arguments, got 1: pipe2([R, W], O_NONBLOCK)",
    ),
    (
        "pipe([R, W], 0) = 0\n",
        "t.scn:1:14: pipe() takes 1 argument, got 2: pipe([R, W])",
    ),
    (
        "socketpair(AF_UNIX, SOCK_STREAM, 0) = 0\n",
        "t.scn:1:35: socketpair() takes 4 arguments, got 3: socketpair(AF_UNIX, SOCK_STREAM, 0, [S0, S1])",
    ),
    (
        "eventfd2(0) = EV\n",
        "t.scn:1:11: eventfd2() takes 2 arguments, got 1: eventfd2(0, EFD_NONBLOCK)",
    ),
    (
        "epoll_create() = E\n",
        "t.scn:1:14: epoll_create() takes 1 argument, got 0: epoll_create(1)",
    ),
    (
        "timerfd_create(CLOCK_MONOTONIC) = T\n",
        "t.scn:1:31: timerfd_create() takes 2 arguments, got 1: timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK)",
    ),
    (
        "poll([], 0) = 0\n",
        "t.scn:1:11: poll() takes 3 arguments, got 2: poll([{fd=E, events=POLLIN}], 1, 0)",
    ),
    // The wrong kind of name, or of value.
    (
        "pipe2(R, 0) = 0\n",
        "t.scn:1:7: type mismatch: argument 1 of pipe2() must be a list of 2 names for the new fds, such as [R, W], not a name",
    ),
    (
        "pipe2([R], 0) = 0\n",
        "t.scn:1:7: type mismatch: argument 1 of pipe2() must be a list of 2 names for the new fds, such as [R, W], not a [...] list",
    ),
    (
        "pipe2([R, 3], 0) = 0\n",
        "t.scn:1:11: type mismatch: argument 1 of pipe2() must be a name for a new fd, not a number",
    ),
    (
        "pipe2([R, R], 0) = 0\n",
        "t.scn:1:11: 'R' names two fds of pipe2()",
    ),
    (
        "fork() = w\npipe2([w, W], 0) = 0\n",
        "t.scn:2:8: type mismatch: 'w' is already a process, it cannot also name an fd",
    ),
    (
        "pipe2([R, W], O_NONBLOCK) = P\n",
        "t.scn:1:29: type mismatch: pipe2() returns a number, not an fd or a process, so its result cannot be named 'P'",
    ),
    (
        "pipe2([R, W], SOCK_NONBLOCK) = 0\n",
        "t.scn:1:15: unknown flag 'SOCK_NONBLOCK' for the flags of pipe2() (known: O_NONBLOCK, O_CLOEXEC, O_DIRECT)",
    ),
    (
        "eventfd2(-1, 0) = EV\n",
        "t.scn:1:10: out of range: argument 1 of eventfd2() must be 0..4294967295, not -1",
    ),
    (
        "eventfd2(0, TFD_NONBLOCK) = EV\n",
        "t.scn:1:13: unknown flag 'TFD_NONBLOCK' for the flags of eventfd2() (known: EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC)",
    ),
    (
        "timerfd_create(CLOCK_TAI, 0) = T\n",
        "t.scn:1:16: unknown flag 'CLOCK_TAI' for the clock of timerfd_create() (known: CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM)",
    ),
    (
        "timerfd_create(CLOCK_MONOTONIC, 0) = T\ntimerfd_settime(T, 0, {it_value={tv_sec=0, tv_nsec=1}}, NULL) = 0\n",
        "t.scn:2:23: the struct needs it_interval=...",
    ),
    (
        "timerfd_create(CLOCK_MONOTONIC, 0) = T\ntimerfd_settime(T, 0, {tv_sec=0, tv_nsec=1}, NULL) = 0\n",
        "t.scn:2:24: unknown field 'tv_sec' (expected it_interval, it_value)",
    ),
    (
        "timerfd_create(CLOCK_MONOTONIC, 0) = T\ntimerfd_settime(T, 0, 5, NULL) = 0\n",
        "t.scn:2:23: type mismatch: argument 3 of timerfd_settime() must be an itimerspec {it_interval={tv_sec=S, tv_nsec=N}, it_value={tv_sec=S, tv_nsec=N}}, not a number",
    ),
    (
        "fork() = w\nsendto(w, \"x\", 1, 0, ADDR) = 1\n",
        "t.scn:2:8: type mismatch: 'w' is a process, not an fd",
    ),
    (
        "socket(FAMILY, SOCK_DGRAM, 0) = U\nsendto(U, \"xy\", 1, 0, ADDR) = 1\n",
        "t.scn:2:17: the string is 2 bytes long",
    ),
    (
        "socket(FAMILY, SOCK_DGRAM, 0) = U\nsendto(U, \"x\", 1, 0, U) = 1\n",
        "t.scn:2:22: type mismatch: argument 5 of sendto() must be an address: ADDR, ADDR2, ..., not a name",
    ),
    (
        "socket(FAMILY, SOCK_DGRAM, 0) = U\nrecvfrom(U, \"x\", 20000, 0) = 1\n",
        "t.scn:2:18: read count must be 0..16384",
    ),
    (
        "fork() = w\npoll([{fd=w, events=POLLIN}], 1, 0) = 0\n",
        "t.scn:2:8: type mismatch: 'w' is a process, not an fd",
    ),
    (
        "epoll_create(1) = E\npoll([{fd=E, events=EPOLLIN}], 1, 0) = 0\n",
        "t.scn:2:21: unknown flag 'EPOLLIN' for poll events of poll() (known: POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND, POLLMSG, POLLRDHUP)",
    ),
    (
        "epoll_create(1) = E\npoll([{fd=E, events=POLLIN}], 2, 0) = 0\n",
        "t.scn:2:31: the list has 1 entries, not 2",
    ),
    (
        "epoll_create(1) = E\npoll([{fd=E, events=POLLIN}], 1, 0) = 1 ([{fd=E, events=POLLIN}])\n",
        "t.scn:2:50: unknown field 'events' (expected fd, revents)",
    ),
    (
        "epoll_create(1) = E\nepoll_wait(E, [], 16, 0) = 0 ([])\n",
        "t.scn:2:30: epoll_wait() shows nothing after its result: only poll() and ppoll() do",
    ),
    (
        "epoll_create(1) = E\nppoll([{fd=E, events=POLLIN}], 1, 5, NULL, 8) = 0\n",
        "t.scn:2:35: type mismatch: argument 3 of ppoll() must be a timespec {tv_sec=S, tv_nsec=N}, not a number",
    ),
    (
        "epoll_create(1) = E\nepoll_pwait2(E, [], 16, {tv_sec=0}, NULL, 8) = 0\n",
        "t.scn:2:25: the struct needs tv_nsec=...",
    ),
    (
        "epoll_create(1) = E\nepoll_pwait2(E, [], 16, {tv_sec=\"x\", tv_nsec=0}, NULL, 8) = 0\n",
        "t.scn:2:26: type mismatch: argument 4 of epoll_pwait2() must be a number in a timespec, not a string",
    ),
    // Signals go to processes, and only the ones every actor handles.
    (
        "pipe([R, W]) = 0\nkill(R, SIGUSR1) = 0\n",
        "t.scn:2:6: type mismatch: 'R' is an fd, not a process",
    ),
    (
        "kill(w, SIGUSR1) = 0\n",
        "t.scn:1:6: undefined name 'w': processes are main and those made by fork() = NAME or thread() = NAME",
    ),
    (
        "fork() = w\nkill(w, SIGKILL) = 0\n",
        "t.scn:2:9: unknown flag 'SIGKILL' for the signal of kill() (known: SIGUSR1, SIGUSR2)",
    ),
    (
        "fork() = w\nkill(w) = 0\n",
        "t.scn:2:7: kill() takes 2 arguments, got 1: kill(w1, SIGUSR1)",
    ),
    (
        "kill(3, SIGUSR1) = 0\n",
        "t.scn:1:6: type mismatch: argument 1 of kill() must be a process (a name), not a number",
    ),
    // Threads are named, are not fds, and see their process's fds (and only those).
    (
        "thread()\n",
        "t.scn:1:1: thread() must name the new thread: thread() = t1",
    ),
    (
        "thread() = 3\n",
        "t.scn:1:12: thread() must name the new thread: thread() = t1",
    ),
    (
        "pipe([R, W]) = 0\nthread() = R\n",
        "t.scn:2:12: type mismatch: 'R' is already an fd, it cannot also name a process",
    ),
    (
        "thread() = t1\nclose(t1) = 0\n",
        "t.scn:2:7: type mismatch: 't1' is a process, not an fd",
    ),
    (
        "thread() = t1\nthread() = t1\n",
        "t.scn:2:12: process 't1' already exists",
    ),
    (
        "thread() = t1\nfork() = w\n[w] pipe([R, W]) = 0\n[t1] close(R) = 0\n",
        "t.scn:4:12: undefined name 'R' in process t1 (another process made it after t1 was forked)",
    ),
    // Files are opened read-only, and only so.
    (
        "openat(AT_FDCWD, \"/tmp/x\", O_RDWR) = F\n",
        "t.scn:1:28: unknown flag 'O_RDWR' for read-only flags of openat() (known: O_RDONLY, O_NONBLOCK, O_CLOEXEC)",
    ),
    (
        "openat(AT_FDCWD, \"/tmp/x\", 0x41) = F\n",
        "t.scn:1:28: argument 3 of openat() must be read-only flags, not 0x41",
    ),
    (
        "openat(AT_FDCWD, 3, O_RDONLY) = F\n",
        "t.scn:1:18: type mismatch: argument 2 of openat() must be a string, not a number",
    ),
    // A timed wait is checked by a lower bound only: an upper bound would be timing luck.
    (
        "epoll_create(1) = E\nexpect elapsed(main) = 10ms\n",
        "t.scn:2:22: elapsed() takes only a lower bound: expect elapsed(w1) >= 10ms \
         (a timed wait never ends early; how late it ends is the scheduler's luck)",
    ),
    (
        "fork() = w\nexpect elapsed(main, w) >= 10ms\n",
        "t.scn:2:15: elapsed() takes one process: expect elapsed(w1) >= 10ms",
    ),
    (
        "expect elapsed(main) >= 10\n",
        "t.scn:1:25: expected a unit: us, ms or s",
    ),
    (
        "expect elapsed(main) >= 10 min\n",
        "t.scn:1:28: expected a unit: us, ms or s",
    ),
    (
        "expect elapsed(main) >= 10ms 3\n",
        "t.scn:1:30: unexpected text after the duration",
    ),
    (
        "expect elapsed(main) >= 7200s\n",
        "t.scn:1:25: a duration must be at most 3600s",
    ),
    (
        "expect elapsed(L) >= 1ms\n",
        "t.scn:1:16: undefined name 'L': processes are main and those made by fork() = NAME or thread() = NAME",
    ),
    // Names bound by an array are fds of the actor that made them, and only if it succeeded.
    (
        "fork() = w\n[w] pipe([R, W]) = 0\nclose(R) = 0\n",
        "t.scn:3:7: undefined name 'R' in process main (another process made it after main was forked)",
    ),
];

#[test]
fn each_misuse_of_the_new_calls_names_its_place() {
    let mut wrong = vec![];
    for (source, expected) in MISUSES {
        match parse(Path::new("t.scn"), source) {
            Ok(_) => wrong.push(format!("no error for:\n{source}")),
            Err(e) if e.to_string() != *expected => {
                wrong.push(format!("{source}  expected: {expected}\n  got:      {e}"));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn names_from_arrays_bind_like_results() {
    let ok = [
        format!("{PIPE}close(R) = 0\nclose(W) = 0\n"),
        "socketpair(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK, 0, [S0, S1]) = 0\nfork() = w\n[w] close(S1) = 0\n".into(),
        // `= 0 (Timeout)` is strace's spelling of "nothing ready".
        format!("{PIPE}poll([{{fd=R, events=POLLIN}}], 1, 0) = 0 (Timeout)\n"),
        "epoll_create(1) = E\nepoll_pwait2(E, [], 16, NULL, NULL, 8) = 0 &\n".into(),
        "write(1, \"\\1\\0\\377\") = 3\n".into(),
        // An fd one thread makes is every thread's; a forked thread's process inherits them.
        "thread() = t1\n[t1] pipe([R, W]) = 0\nclose(R) = 0\n[t1] fork() = w\n[w] close(W) = 0\n".into(),
        "fork() = w\n[w] thread() = t\n[t] pipe([R, W]) = 0\n[w] close(R) = 0\n".into(),
    ];
    for source in ok {
        if let Err(e) = parse(Path::new("t.scn"), &source) {
            panic!("{source}: {e}");
        }
    }
    // A failed pipe binds nothing: its names are unknown afterwards.
    let failed = "pipe2([R, W], 0x10000000) = -1 EINVAL\nclose(R) = 0\n";
    let err = parse(Path::new("t.scn"), failed).expect_err("R is not bound");
    assert_eq!(err.to_string(), "t.scn:2:7: undefined name 'R'");
}

#[test]
fn octal_escapes_over_a_byte_are_refused() {
    let err = parse(Path::new("t.scn"), "write(1, \"\\400\") = 1\n").expect_err("too big");
    assert_eq!(
        err.to_string(),
        "t.scn:1:11: octal escape \\400 is over \\377"
    );
}

/// `expect elapsed(...) >= D` passes for a wait that lasted D and fails, with the time it took,
/// for a bound the wait did not reach (a 1 ms wait never takes an hour).
#[test]
fn elapsed_is_a_lower_bound_on_the_latest_call() {
    use epollscope::scenario::run;
    let source = |bound: &str| {
        format!(
            "# t\nepoll_create(1) = E\n\
             epoll_pwait2(E, [], 16, {{tv_sec=0, tv_nsec=1000000}}, NULL, 8) = 0\n\
             expect elapsed(main) >= {bound}\n"
        )
    };
    let ok = parse(Path::new("t.scn"), &source("1ms")).unwrap();
    let report = run(&ok, ok.families[0]);
    assert!(report.passed, "{}", report.summary());
    let late = parse(Path::new("t.scn"), &source("3600s")).unwrap();
    let report = run(&late, late.families[0]);
    let failure = report.failure.expect("a 1 ms wait cannot take an hour");
    assert_eq!((failure.line, failure.col), (4, 1));
    assert!(
        failure
            .message
            .starts_with("expected elapsed(main) >= 3600s, took "),
        "{}",
        failure.message
    );
}

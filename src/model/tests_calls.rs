//! One case per rule for poll, signals (kill, EINTR), threads, background reads and polls,
//! and fd numbers (reuse after close, literal numbers); the random-scenario regressions; and
//! the test that every call of the language reaches a rule of the model.

use nix::errno::Errno;

use super::tests::{Got, errno, judge, ok};
use super::tests_fds::{Case, check};
use super::{Label, Model, rules, walk};
use crate::addr::Family;
use crate::scenario::ast::Stmt;
use crate::scenario::calls::CALLS;
use crate::scenario::{StepResult, parse};

use Label::{Allowed as A, Contradicts as X, Promised as P, Unspecified as U};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ERR: u32 = libc::EPOLLERR as u32;

#[test]
fn poll_rules() {
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nclose(R) = 0\npoll([{fd=W, events=POLLOUT}, {fd=R, events=POLLIN}, {fd=-1, events=POLLIN}], 3, 0) = ?\n";
    // W: POLLERR (no reader, POLLOUT may come with it); R: closed, POLLNVAL; -1: ignored.
    // The fd numbers of a pipe's ends are not in the results: matched by array order.
    let fits: &[(u32, u64)] = &[(ERR, 4), (0x20, 3)];
    let fits_out: &[(u32, u64)] = &[(ERR | OUT, 4), (0x20, 3)];
    let missing: &[(u32, u64)] = &[(0x20, 3)];
    let extra: &[(u32, u64)] = &[(ERR | IN, 4), (0x20, 3)];
    for (n, events, want) in [
        (2, fits, (P, rules::POLL_REVENTS.id)),
        (2, fits_out, (P, rules::POLL_REVENTS.id)),
        (1, missing, (X, rules::POLL_REVENTS.id)),
        (2, extra, (X, rules::POLL_REVENTS.id)),
    ] {
        let got = judge(Family::Unix, body, &[ok(0), ok(0), (Ok(n), events)]);
        assert_eq!(got[2], want, "{events:?}");
    }
    // Nothing ready, a zero timeout: 0; ppoll's negative timeout: EINVAL.
    check(&[Case {
        what: "timeouts",
        body: "pipe2([R, W], O_NONBLOCK) = 0\npoll([{fd=R, events=POLLIN}], 1, 0) = ?\n\
               ppoll([{fd=R, events=POLLIN}], 1, {tv_sec=-1, tv_nsec=0}, NULL, 8) = ?\n\
               ppoll([{fd=R, events=POLLIN}], 1, {tv_sec=0, tv_nsec=1000000000}, NULL, 8) = ?\n\
               epoll_create1(0) = E\nepoll_pwait2(E, [], 16, {tv_sec=0, tv_nsec=-1}, NULL, 8) = ?\n\
               epoll_pwait2(E, [], 16, {tv_sec=0, tv_nsec=0}, NULL, 8) = ?\n",
        got: &[
            ok(0),
            ok(0),
            errno(Errno::EINVAL),
            errno(Errno::EINVAL),
            ok(4),
            errno(Errno::EINVAL),
            ok(0),
        ],
        want: &[
            (1, P, rules::POLL_REVENTS.id),
            (2, P, rules::POLL_EINVAL.id),
            (3, U, rules::TIMESPEC_INVALID.id),
            (5, U, rules::TIMESPEC_INVALID.id),
            (6, P, rules::WAIT_LT.id),
        ],
    }]);
}

/// Results of a script with background steps, in the order the model consumes them: (body
/// line of the step, result).
fn judge_bg(body: &str, results: &[(usize, Got)]) -> Vec<(usize, Label, &'static str)> {
    let text = format!("# t\nfamily: unix\n{body}");
    let scenario = parse(std::path::Path::new("t.scn"), &text).expect("parses");
    let steps: Vec<StepResult> = results
        .iter()
        .map(|&(line, (result, events))| {
            let step = scenario
                .body
                .iter()
                .find_map(|s| match s {
                    Stmt::Step(step) if step.span.line == line + 2 => Some(step),
                    _ => None,
                })
                .expect("a step on that line");
            StepResult {
                span: step.span,
                actor: step.actor.clone(),
                result,
                events: events.to_vec(),
            }
        })
        .collect();
    let mut m = Model::new(Family::Unix);
    let ex = walk(&mut m, &scenario, &steps, &[]);
    assert_eq!(ex.unreached, 0, "{ex:?}");
    ex.judgements
        .iter()
        .map(|j| (j.line - 2, j.label, j.rule.id))
        .collect()
}

#[test]
fn a_caught_signal_interrupts_a_blocked_call_with_eintr() {
    let body = "pipe2([R, W], 0) = 0\nepoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, R, {events=EPOLLIN, data=R}) = 0\nfork() = w\n\
                [w] epoll_wait(E, [], 16, -1) = ? &\nkill(w, SIGUSR1) = 0\nawait(w)\n\
                [w] read(R, ..., 8) = ? &\nkill(w, SIGUSR2) = 0\nawait(w)\n\
                [w] poll([{fd=R, events=POLLIN}], 1, -1) = ? &\nkill(w, SIGUSR1) = 0\nawait(w)\n";
    let eintr = errno(Errno::EINTR);
    let lines = [1, 2, 3, 4, 6, 5, 9, 8, 12, 11];
    let results: Vec<(usize, Got)> = lines
        .iter()
        .map(|&l| {
            (
                l,
                if matches!(l, 5 | 8 | 11) {
                    eintr
                } else {
                    ok(0)
                },
            )
        })
        .collect();
    let got = judge_bg(body, &results);
    let of = |line: usize| got.iter().find(|j| j.0 == line).map(|j| (j.1, j.2));
    assert_eq!(of(6), Some((P, rules::KILL_OK.id)));
    for line in [5, 8, 11] {
        assert_eq!(of(line), Some((P, rules::SIGNAL_EINTR.id)), "line {line}");
    }
    // A blocked wait that returns a value although nothing was ready contradicts: the
    // interrupted poll may only fail with EINTR.
    let mut wrong = results.clone();
    wrong[9] = (11, ok(1));
    let got = judge_bg(body, &wrong);
    assert!(got.contains(&(11, X, rules::SIGNAL_EINTR.id)), "{got:?}");
}

#[test]
fn kill_with_a_signal_the_actors_do_not_catch_loses_what_the_process_holds() {
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nfork() = w\nkill(w, 15) = ?\nread(R, ..., 8) = ?\nkill(w, 99) = ?\n";
    let got = judge_bg(
        body,
        &[
            (1, ok(0)),
            (2, ok(0)),
            (3, ok(0)),
            (4, errno(Errno::EAGAIN)),
            (5, errno(Errno::EINVAL)),
        ],
    );
    assert_eq!(got[2], (3, P, rules::KILL_DEFAULT.id));
    // w may be dead, its write end closed: end of file or EAGAIN, the model cannot say.
    assert_eq!(got[3], (4, U, rules::PIPE_READ.id));
    assert_eq!(got[4], (5, P, rules::KILL_OK.id));
}

#[test]
fn threads_share_the_fd_table() {
    let body = "thread() = t\n[t] eventfd2(0, EFD_NONBLOCK) = EV\nwrite(EV, \"\\1\\0\\0\\0\\0\\0\\0\\0\") = ?\n[t] close(EV) = 0\nread(EV, ..., 8) = ?\n";
    let got = judge_bg(
        body,
        &[
            (1, ok(1234)),
            (2, ok(3)),
            (3, ok(8)),
            (4, ok(0)),
            (5, errno(Errno::EBADF)),
        ],
    );
    assert_eq!(
        got.iter().map(|j| (j.1, j.2)).collect::<Vec<_>>(),
        [
            (P, rules::THREAD_SHARES.id),
            (P, rules::EVENTFD_NEW.id),
            (P, rules::EVENTFD_WRITE.id),
            (P, rules::CLOSE_OK.id),
            (P, rules::BAD_FD.id),
        ]
    );
}

#[test]
fn blocked_reads_and_polls_wake_only_for_their_fd() {
    let body = "pipe2([R, W], 0) = 0\npipe2([R2, W2], 0) = 0\nthread() = a\nthread() = b\n\
                [a] read(R, ..., 8) = ? &\n[b] poll([{fd=R2, events=POLLIN}], 1, -1) = ? &\n\
                write(W, \"x\") = 1\nexpect woken(a, b) = 0..1\nwrite(W2, \"y\") = 1\nexpect woken(b) = 1\nawait(a, b)\n";
    let text = format!("# t\nfamily: unix\n{body}");
    let scenario = parse(std::path::Path::new("t.scn"), &text).expect("parses");
    let step = |line: usize, result: Got| {
        let s = scenario
            .body
            .iter()
            .find_map(|s| match s {
                Stmt::Step(st) if st.span.line == line + 2 => Some(st),
                _ => None,
            })
            .unwrap();
        StepResult {
            span: s.span,
            actor: s.actor.clone(),
            result: result.0,
            events: vec![],
        }
    };
    let steps = [
        step(1, ok(0)),
        step(2, ok(0)),
        step(3, ok(1)),
        step(4, ok(2)),
        step(7, ok(1)),
        step(9, ok(1)),
        step(5, ok(1)),
        step(6, ok(1)),
    ];
    let agg = |value| crate::scenario::AggregateValue {
        at: 0,
        what: String::new(),
        value,
    };
    let aggs = [agg(1), agg(1)];
    let mut m = Model::new(Family::Unix);
    let ex = walk(&mut m, &scenario, &steps, &aggs);
    let of = |line: usize| {
        ex.judgements
            .iter()
            .find(|j| j.line == line + 2)
            .map(|j| (j.label, j.rule.id))
    };
    // The reader may have returned; the poller cannot have: exactly 0..1 of them.
    assert_eq!(of(8), Some((A, rules::WAKE_READ.id)));
    // Now b's pipe is readable and stays so: b has returned.
    assert_eq!(of(10), Some((P, rules::WAKE_POLL.id)));
}

/// An edge on a socket inside an inner epoll set reaches the outer set in the same step
/// (kernel self-test epoll20): the outer wait must report it.
#[test]
fn nested_edges_propagate_outward_at_once() {
    let body = "socketpair(AF_UNIX, SOCK_STREAM, 0, [S0, S1]) = 0\nepoll_create(1) = E0\nepoll_create(1) = E1\n\
                epoll_ctl(E1, EPOLL_CTL_ADD, S0, {events=EPOLLIN|EPOLLET, data=S0}) = 0\n\
                epoll_ctl(E0, EPOLL_CTL_ADD, E1, {events=EPOLLIN|EPOLLET, data=E1}) = 0\n\
                write(S1, \"w\") = 1\nepoll_wait(E0, [...], 1, 0) = ?\nepoll_wait(E0, [...], 1, 0) = ?\n";
    let ev: &[(u32, u64)] = &[(IN, 6)];
    let got = judge(
        Family::Unix,
        body,
        &[ok(0), ok(5), ok(6), ok(0), ok(0), ok(1), (Ok(1), ev), ok(0)],
    );
    assert_eq!(got[6], (P, rules::WAIT_ET.id));
    assert_eq!(got[7], (P, rules::WAIT_ET.id));
}

#[test]
fn an_unknown_epoll_ctl_op_is_einval() {
    let body = "epoll_create1(0) = E\nepoll_create1(0) = F\nepoll_ctl(E, 9, F, {events=EPOLLIN, data=1}) = ?\n";
    let got = judge(Family::Unix, body, &[ok(3), ok(4), errno(Errno::EINVAL)]);
    assert_eq!(got[2], (P, rules::CTL_EINVAL.id));
}

/// One step per call of the language, after a prelude that names what they use.
const EXAMPLES: &[(&str, &str)] = &[
    ("socket", "socket(FAMILY, SOCK_STREAM, 0) = ?"),
    (
        "setsockopt",
        "setsockopt(L, SOL_SOCKET, SO_REUSEPORT, 1) = ?",
    ),
    ("bind", "bind(C, ADDR2) = ?"),
    ("listen", "listen(L, 4) = ?"),
    ("connect", "connect(C, ADDR) = ?"),
    ("accept", "accept(L) = ?"),
    ("accept4", "accept4(L, ..., SOCK_NONBLOCK) = ?"),
    ("close", "close(C) = ?"),
    ("shutdown", "shutdown(C, SHUT_RD) = ?"),
    ("dup", "dup(L) = ?"),
    ("dup2", "dup2(L, C) = ?"),
    ("read", "read(R, ..., 8) = ?"),
    ("write", "write(W, \"x\") = ?"),
    ("epoll_create1", "epoll_create1(0) = ?"),
    (
        "epoll_ctl",
        "epoll_ctl(E, EPOLL_CTL_ADD, R, {events=EPOLLIN, data=R}) = ?",
    ),
    ("epoll_wait", "epoll_wait(E, [...], 16, 0) = ?"),
    ("epoll_pwait", "epoll_pwait(E, [...], 16, 0) = ?"),
    (
        "epoll_pwait2",
        "epoll_pwait2(E, [...], 16, {tv_sec=0, tv_nsec=0}, NULL, 8) = ?",
    ),
    ("epoll_create", "epoll_create(1) = ?"),
    ("pipe", "pipe([R9, W9]) = ?"),
    ("pipe2", "pipe2([R8, W8], O_NONBLOCK) = ?"),
    (
        "socketpair",
        "socketpair(AF_UNIX, SOCK_STREAM, 0, [S0, S1]) = ?",
    ),
    ("eventfd2", "eventfd2(0, EFD_NONBLOCK) = ?"),
    (
        "timerfd_create",
        "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK) = ?",
    ),
    (
        "timerfd_settime",
        "timerfd_settime(R, 0, {it_interval={tv_sec=0, tv_nsec=0}, it_value={tv_sec=0, tv_nsec=1}}, NULL) = ?",
    ),
    ("sendto", "sendto(W, \"x\", 1, 0, ADDR) = ?"),
    ("recvfrom", "recvfrom(R, ..., 8, 0) = ?"),
    ("poll", "poll([{fd=R, events=POLLIN}], 1, 0) = ?"),
    (
        "ppoll",
        "ppoll([{fd=R, events=POLLIN}], 1, {tv_sec=0, tv_nsec=0}, NULL, 8) = ?",
    ),
    ("kill", "kill(w, SIGUSR1) = ?"),
    ("openat", "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY) = ?"),
    ("fork", "fork() = w2"),
    ("thread", "thread() = t2"),
    ("drain", "drain(L) = ?"),
    ("exit", "[w] exit(0)"),
];

const PRELUDE: &str = "socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L\nbind(L, ADDR) = 0\nlisten(L, 8) = 0\n\
                       socket(FAMILY, SOCK_STREAM, 0) = C\npipe2([R, W], O_NONBLOCK) = 0\nepoll_create1(0) = E\nfork() = w\n";

/// Every call of the table has a rule in the model: adding a call to the language without
/// one fails here (the model would otherwise go blind for the rest of a scenario).
#[test]
fn every_call_of_the_language_has_a_model_rule() {
    for spec in CALLS {
        let Some(&(_, step)) = EXAMPLES.iter().find(|(name, _)| *name == spec.name) else {
            panic!(
                "no example step for the call {}: add one to EXAMPLES",
                spec.name
            );
        };
        let text = format!("# t\nfamily: unix\n{PRELUDE}{step}\n");
        let scenario = parse(std::path::Path::new("t.scn"), &text)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        let steps: Vec<StepResult> = scenario
            .body
            .iter()
            .filter_map(|s| match s {
                Stmt::Step(step) if step.op.name() != "exit" => Some(StepResult {
                    span: step.span,
                    actor: step.actor.clone(),
                    result: Ok(if step.op.name() == "fork" { 99 } else { 3 }),
                    events: vec![],
                }),
                _ => None,
            })
            .collect();
        let mut m = Model::new(Family::Unix);
        let ex = walk(&mut m, &scenario, &steps, &[]);
        assert_eq!(ex.unreached, 0, "{}", spec.name);
        assert!(!m.opaque, "{}: the model has no arm for it", spec.name);
    }
}

/// open(2): a new fd takes the lowest number not open, so a closed name's number may now be
/// another file's; the runner still passes that number. EBADF only where it cannot be.
#[test]
fn a_closed_name_may_reach_a_new_fd_that_took_its_number() {
    let got = |body: &str, results: &[Got]| *judge(Family::Unix, body, results).last().unwrap();
    let prefix = "eventfd2(0, EFD_NONBLOCK) = A\nclose(A) = 0\n";
    // Known numbers, different: A is still closed.
    let body = format!("{prefix}eventfd2(0, EFD_NONBLOCK) = B\nread(A, ..., 8) = ?\n");
    assert_eq!(
        got(&body, &[ok(3), ok(0), ok(4), errno(Errno::EBADF)]),
        (P, rules::BAD_FD.id)
    );
    // The same number: A now reaches B.
    assert_eq!(
        got(&body, &[ok(3), ok(0), ok(3), errno(Errno::EAGAIN)]),
        (U, rules::FD_MAYBE_REUSED.id)
    );
    // A pipe's numbers are not in the results: either may have taken A's.
    let body = format!("{prefix}pipe([R, W]) = 0\nread(A, ..., 8) = ?\n");
    assert_eq!(
        got(&body, &[ok(3), ok(0), ok(0), errno(Errno::EAGAIN)]),
        (U, rules::FD_MAYBE_REUSED.id)
    );
}

/// A call through a closed name whose number a newer fd may hold reaches that fd: what it
/// does there (a close, a registration) the model cannot see, so those fds and the epoll
/// set become unknown rather than wrongly promised.
#[test]
fn a_call_through_a_reused_number_makes_what_it_may_reach_unknown() {
    let body = "eventfd2(0, EFD_NONBLOCK) = A\nclose(A) = 0\npipe2([R, W], O_NONBLOCK) = 0\nepoll_create1(0) = E\n\
                close(A) = ?\nread(R, ..., 8) = ?\nepoll_ctl(E, EPOLL_CTL_ADD, A, {events=EPOLLIN, data=1}) = ?\n\
                epoll_wait(E, [...], 16, 0) = ?\n";
    let got = judge(
        Family::Unix,
        body,
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(5),
            ok(0),
            errno(Errno::EBADF),
            ok(0),
            ok(0),
        ],
    );
    assert_eq!(got[4], (U, rules::FD_MAYBE_REUSED.id));
    // R may be the fd that close(A) closed: EAGAIN is no longer promised.
    assert_eq!(got[5].0, U, "{got:?}");
    assert_eq!(got[7].0, U, "E's interest list may have changed: {got:?}");
}

/// Regressions found by random scenarios over these fds; each once gave a false
/// contradiction.
#[test]
fn random_scenario_regressions() {
    check(&[
        Case {
            what: "a write after the peer shut down reading: unix says EPIPE, the pages nothing",
            body: "socketpair(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0, [S, T]) = 0\nshutdown(T, SHUT_RD) = 0\nwrite(S, \"x\") = ?\n",
            got: &[ok(0), ok(0), errno(Errno::EPIPE)],
            want: &[(2, U, rules::READY_UNSPECIFIED.id)],
        },
        Case {
            what: "dup2 of an fd onto itself does nothing",
            body: "pipe2([R, W], O_NONBLOCK) = 0\ndup2(R, R) = ?\nread(R, ..., 8) = ?\n",
            got: &[ok(0), ok(3), errno(Errno::EAGAIN)],
            want: &[(1, P, rules::DUP2_TARGET.id), (2, P, rules::PIPE_READ.id)],
        },
    ]);
    // dup2 from a closed name whose number a newer fd took: the target is now that fd.
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nclose(R) = 0\npipe2([R2, W2], O_NONBLOCK) = 0\ndup2(R, W2) = ?\nread(W2, ..., 8) = ?\n";
    let got = judge(Family::Unix, body, &[ok(0), ok(0), ok(0), ok(6), ok(0)]);
    assert_eq!(got[4].0, U, "{got:?}");
    // A semaphore read of an unknown counter leaves it unknown (not 0).
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nclose(W) = 0\neventfd2(1, EFD_NONBLOCK|EFD_SEMAPHORE) = EV\n\
                write(W, \"\\2\\0\\0\\0\\0\\0\\0\\0\") = ?\nread(EV, ..., 8) = ?\nread(EV, ..., 8) = ?\n";
    let got = judge(
        Family::Unix,
        body,
        &[ok(0), ok(0), ok(4), ok(8), ok(8), ok(8)],
    );
    assert_eq!(got[3], (U, rules::FD_MAYBE_REUSED.id), "W's number is EV's");
    assert_eq!(got[5], (U, rules::EVENTFD_READ.id), "{got:?}");
    // A background read of a non-blocking fd returns at once (EAGAIN), signal or not.
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nthread() = t\n[t] read(R, ..., 8) = ? &\nkill(t, SIGUSR1) = 0\nawait(t)\n";
    let got = judge_bg(
        body,
        &[
            (1, ok(0)),
            (2, ok(9)),
            (4, ok(0)),
            (3, errno(Errno::EAGAIN)),
        ],
    );
    assert!(got.iter().all(|j| j.1 != X), "{got:?}");
}

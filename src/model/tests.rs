//! One case per rule: a script, the results a kernel might return (fabricated, so no kernel
//! is needed), and the labels the model must give. Read as a specification: "after this,
//! the documentation allows that".

use nix::errno::Errno;

use super::{Label, explain, rules};
use crate::addr::Family;
use crate::scenario::ast::Stmt;
use crate::scenario::{StepResult, parse};

use Label::{Allowed as A, Contradicts as X, Promised as P, Unspecified as U};

const IN: u32 = libc::EPOLLIN as u32;

/// A fabricated result: the return value and epoll_wait's (mask, data) events.
pub(super) type Got = (Result<i64, Errno>, &'static [(u32, u64)]);

/// Judges `body` (one step per line, main actor) with the given results; returns the labels
/// and rule ids.
pub(super) fn judge(family: Family, body: &str, results: &[Got]) -> Vec<(Label, &'static str)> {
    let text = format!("# t\nfamily: {family}\n{body}");
    let scenario = parse(std::path::Path::new("t.scn"), &text).expect("parses");
    let steps: Vec<StepResult> = scenario
        .body
        .iter()
        .filter_map(|s| match s {
            Stmt::Step(step) => Some(step),
            _ => None,
        })
        .zip(results)
        .map(|(step, (result, events))| StepResult {
            span: step.span,
            actor: step.actor.clone(),
            result: *result,
            events: events.to_vec(),
        })
        .collect();
    explain(&scenario, family, &steps, &[])
        .judgements
        .iter()
        .map(|j| (j.label, j.rule.id))
        .collect()
}

const LISTENER: &str =
    "socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L\nbind(L, ADDR) = 0\nlisten(L, 8) = 0\n";

pub(super) fn ok(v: i64) -> Got {
    (Ok(v), &[])
}

pub(super) fn errno(e: Errno) -> Got {
    (Err(e), &[])
}

/// The last judgement of a listener scenario followed by `tail`.
fn last(family: Family, tail: &str, results: &[Got]) -> (Label, &'static str) {
    let mut all = vec![ok(3), ok(0), ok(0)];
    all.extend_from_slice(results);
    *judge(family, &format!("{LISTENER}{tail}"), &all)
        .last()
        .expect("judged")
}

#[test]
fn socket_bind_listen_are_promised() {
    let got = judge(Family::Inet, LISTENER, &[ok(3), ok(0), ok(0)]);
    assert_eq!(
        got,
        [
            (P, rules::SOCKET_NEW_FD.id),
            (P, rules::BIND_OK.id),
            (P, rules::LISTEN_OK.id)
        ]
    );
}

#[test]
fn accept_rules() {
    // Empty queue, non-blocking: EAGAIN is the only documented outcome.
    assert_eq!(
        last(
            Family::Unix,
            "accept4(L, ..., SOCK_NONBLOCK) = ?\n",
            &[errno(Errno::EAGAIN)]
        ),
        (P, rules::ACCEPT_EAGAIN.id)
    );
    assert_eq!(
        last(
            Family::Unix,
            "accept4(L, ..., SOCK_NONBLOCK) = ?\n",
            &[ok(5)]
        ),
        (X, rules::ACCEPT_EAGAIN.id)
    );
    // A queued connection: accept returns a new fd.
    let tail = "socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\naccept4(L, ..., SOCK_NONBLOCK) = A\n";
    assert_eq!(
        last(Family::Inet, tail, &[ok(4), ok(0), ok(5)]),
        (P, rules::ACCEPT_FIRST.id)
    );
    assert_eq!(
        last(Family::Inet, tail, &[ok(4), ok(0), errno(Errno::EAGAIN)]),
        (X, rules::ACCEPT_FIRST.id)
    );
}

#[test]
fn connect_rules() {
    let tail = "socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR2) = ?\n";
    assert_eq!(
        last(Family::Unix, tail, &[ok(4), errno(Errno::ENOENT)]),
        (P, rules::CONNECT_REFUSED.id)
    );
    assert_eq!(
        last(Family::Inet, tail, &[ok(4), errno(Errno::ECONNREFUSED)]),
        (P, rules::CONNECT_REFUSED.id)
    );
    let twice = "socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\nconnect(C, ADDR) = ?\n";
    assert_eq!(
        last(Family::Unix, twice, &[ok(4), ok(0), errno(Errno::EISCONN)]),
        (P, rules::CONNECT_ISCONN.id)
    );
}

#[test]
fn level_triggered_reports_while_ready() {
    let tail = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=7}) = 0\n\
                socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\nepoll_wait(E, 16, 0) = ?\nepoll_wait(E, 16, 0) = ?\n";
    let ev: &[(u32, u64)] = &[(IN, 7)];
    let got = judge(
        Family::Unix,
        &format!("{LISTENER}{tail}"),
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(4),
            ok(0),
            ok(5),
            ok(0),
            (Ok(1), ev),
            (Ok(1), ev),
        ],
    );
    assert_eq!(got[7..], [(P, rules::WAIT_LT.id), (P, rules::WAIT_LT.id)]);
    // Not reporting a ready level-triggered registration contradicts epoll(7).
    let got = judge(
        Family::Unix,
        &format!("{LISTENER}{tail}"),
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(4),
            ok(0),
            ok(5),
            ok(0),
            (Ok(1), ev),
            ok(0),
        ],
    );
    assert_eq!(got[8], (X, rules::WAIT_LT.id));
}

#[test]
fn edge_triggered_second_connection_is_allowed_not_promised() {
    let tail = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN|EPOLLET, data=7}) = 0\n\
                socket(FAMILY, SOCK_STREAM, 0) = C1\nconnect(C1, ADDR) = 0\nepoll_wait(E, 16, 0) = ?\nepoll_wait(E, 16, 0) = ?\n\
                socket(FAMILY, SOCK_STREAM, 0) = C2\nconnect(C2, ADDR) = 0\nepoll_wait(E, 16, 0) = ?\n";
    let ev: &[(u32, u64)] = &[(IN, 7)];
    for second in [(Ok(1), ev), ok(0)] {
        let got = judge(
            Family::Inet,
            &format!("{LISTENER}{tail}"),
            &[
                ok(3),
                ok(0),
                ok(0),
                ok(4),
                ok(0),
                ok(5),
                ok(0),
                (Ok(1), ev),
                ok(0),
                ok(6),
                ok(0),
                second,
            ],
        );
        assert_eq!(got[7], (P, rules::WAIT_ET.id), "the first edge is promised");
        assert_eq!(
            got[8],
            (P, rules::WAIT_ET.id),
            "no second report without a change"
        );
        assert_eq!(
            got[11],
            (A, rules::WAIT_ET_MORE.id),
            "either answer is allowed"
        );
    }
}

#[test]
fn oneshot_disarms_until_mod() {
    let tail = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN|EPOLLONESHOT, data=7}) = 0\n\
                socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\nepoll_wait(E, 16, 0) = ?\nepoll_wait(E, 16, 0) = ?\n\
                epoll_ctl(E, EPOLL_CTL_MOD, L, {events=EPOLLIN|EPOLLONESHOT, data=7}) = 0\nepoll_wait(E, 16, 0) = ?\n";
    let ev: &[(u32, u64)] = &[(IN, 7)];
    let got = judge(
        Family::Unix,
        &format!("{LISTENER}{tail}"),
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(4),
            ok(0),
            ok(5),
            ok(0),
            (Ok(1), ev),
            ok(0),
            ok(0),
            (Ok(1), ev),
        ],
    );
    assert_eq!(
        got[7..],
        [
            (P, rules::WAIT_ONESHOT.id),
            (P, rules::WAIT_LT.id),
            (P, rules::CTL_ADD.id),
            (P, rules::WAIT_ONESHOT.id)
        ]
    );
}

#[test]
fn maxevents_caps_and_einval() {
    let tail = "epoll_create1(0) = E\nepoll_wait(E, 0, 0) = ?\n";
    assert_eq!(
        last(Family::Unix, tail, &[ok(4), errno(Errno::EINVAL)]),
        (P, rules::WAIT_MAXEVENTS.id)
    );
}

#[test]
fn epoll_ctl_errors() {
    let add =
        "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=L}) = 0\n";
    let again = format!("{add}epoll_ctl(E, EPOLL_CTL_ADD, L, {{events=EPOLLIN, data=L}}) = ?\n");
    assert_eq!(
        last(Family::Unix, &again, &[ok(4), ok(0), errno(Errno::EEXIST)]),
        (P, rules::CTL_EEXIST.id)
    );
    let del = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_DEL, L, NULL) = ?\n";
    assert_eq!(
        last(Family::Unix, del, &[ok(4), errno(Errno::ENOENT)]),
        (P, rules::CTL_ENOENT.id)
    );
    let on_self =
        "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, E, {events=EPOLLIN, data=1}) = ?\n";
    assert_eq!(
        last(Family::Unix, on_self, &[ok(4), errno(Errno::EINVAL)]),
        (P, rules::CTL_EINVAL.id)
    );
    // Two conditions at once: the page does not order them, both are allowed.
    let excl_mod = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_MOD, L, {events=EPOLLIN|EPOLLEXCLUSIVE, data=L}) = ?\n";
    assert_eq!(
        last(Family::Unix, excl_mod, &[ok(4), errno(Errno::EINVAL)]),
        (A, rules::CTL_ERRORS_ANY.id)
    );
}

#[test]
fn close_removes_registration_only_with_the_last_fd() {
    let tail = "epoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN, data=7}) = 0\ndup(L) = D\n\
                socket(FAMILY, SOCK_STREAM, 0) = C\nclose(L) = 0\nconnect(C, ADDR) = 0\nepoll_wait(E, 16, 0) = ?\nepoll_ctl(E, EPOLL_CTL_DEL, L, NULL) = ?\n";
    let ev: &[(u32, u64)] = &[(IN, 7)];
    let got = judge(
        Family::Unix,
        &format!("{LISTENER}{tail}"),
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(4),
            ok(0),
            ok(5),
            // C is made before L is closed: a later fd could take L's number (3), and the
            // name L would reach it.
            ok(6),
            ok(0),
            ok(0),
            (Ok(1), ev),
            errno(Errno::EBADF),
        ],
    );
    assert_eq!(
        got[9],
        (P, rules::WAIT_LT.id),
        "the dup keeps the description and its registration"
    );
    assert_eq!(got[10], (P, rules::CTL_EBADF.id), "L itself is closed");
}

#[test]
fn stream_data_and_end_of_file() {
    let tail = "socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\naccept4(L, ..., SOCK_NONBLOCK) = A\n\
                read(A, ..., 64) = ?\nwrite(C, \"ping\") = ?\nread(A, ..., 64) = ?\nshutdown(C, SHUT_WR) = 0\nread(A, ..., 64) = ?\n";
    let got = judge(
        Family::Unix,
        &format!("{LISTENER}{tail}"),
        &[
            ok(3),
            ok(0),
            ok(0),
            ok(4),
            ok(0),
            ok(5),
            errno(Errno::EAGAIN),
            ok(4),
            ok(4),
            ok(0),
            ok(0),
        ],
    );
    assert_eq!(
        got[6..],
        [
            (P, rules::READ_EAGAIN.id),
            (P, rules::WRITE_DATA.id),
            // read(2) may return fewer bytes than are queued.
            (A, rules::READ_DATA.id),
            (P, rules::SHUTDOWN_OK.id),
            (P, rules::READ_DATA.id),
        ]
    );
}

#[test]
fn unknown_territory_is_unspecified_never_promised() {
    // TCP_DEFER_ACCEPT is not modelled: the listener's later readiness is unspecified.
    let tail = "setsockopt(L, IPPROTO_TCP, TCP_DEFER_ACCEPT, 1) = ?\n";
    assert_eq!(
        last(Family::Inet, tail, &[ok(0)]),
        (U, rules::NOT_MODELLED.id)
    );
    // A literal fd number is not followed.
    assert_eq!(
        last(Family::Inet, "close(99) = ?\n", &[errno(Errno::EBADF)]),
        (U, rules::NOT_MODELLED.id)
    );
}

#[test]
fn resource_exhaustion_is_unspecified_not_a_contradiction() {
    // fork(2) may fail with EAGAIN at a process limit: not a contract the model checks.
    let got = judge(Family::Unix, "fork() = w\n", &[errno(Errno::EAGAIN)]);
    assert_eq!(got, [(U, rules::RESOURCES.id)]);
    // But accept's EAGAIN on a non-empty queue still contradicts accept(2).
    let tail = "socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR) = 0\naccept4(L, ..., SOCK_NONBLOCK) = ?\n";
    assert_eq!(
        last(Family::Unix, tail, &[ok(4), ok(0), errno(Errno::EAGAIN)]),
        (X, rules::ACCEPT_FIRST.id)
    );
}

#[test]
fn epoll_create1_rules() {
    assert_eq!(
        judge(Family::Unix, "epoll_create1(EPOLL_CLOEXEC) = E\n", &[ok(3)]),
        [(P, rules::EPOLL_CREATE.id)]
    );
    // An unknown flag: EINVAL is the only documented outcome, and a new fd contradicts it.
    assert_eq!(
        judge(
            Family::Unix,
            "epoll_create1(-1) = ?\n",
            &[errno(Errno::EINVAL)]
        ),
        [(P, rules::EPOLL_CREATE_FLAGS.id)]
    );
    assert_eq!(
        judge(Family::Unix, "epoll_create1(-1) = ?\n", &[ok(3)]),
        [(X, rules::EPOLL_CREATE_FLAGS.id)]
    );
}

#[test]
fn nesting_deeper_than_five_is_eloop_and_the_boundary_is_either() {
    let chain = |n: usize| {
        let mut body = String::new();
        for i in 1..=n {
            body.push_str(&format!("epoll_create1(0) = E{i}\n"));
        }
        for i in 1..n {
            let j = i + 1;
            body.push_str(&format!(
                "epoll_ctl(E{i}, EPOLL_CTL_ADD, E{j}, {{events=EPOLLIN, data=E{j}}}) = ?\n"
            ));
        }
        body
    };
    let results = |n: usize, last: Result<i64, Errno>| {
        let mut r: Vec<Got> = (0..n).map(|i| ok(3 + i as i64)).collect();
        r.extend((1..n - 1).map(|_| ok(0)));
        r.push((last, &[]));
        r
    };
    // Five instances: within the limit either way.
    let got = judge(Family::Unix, &chain(5), &results(5, Ok(0)));
    assert_eq!(*got.last().unwrap(), (P, rules::CTL_ADD.id));
    // Six instances (five links): "depth greater than 5" reads either way.
    let got = judge(Family::Unix, &chain(6), &results(6, Err(Errno::ELOOP)));
    assert_eq!(*got.last().unwrap(), (A, rules::CTL_NESTING.id));
    // Seven instances: too deep whichever is counted.
    let got = judge(Family::Unix, &chain(7), &results(7, Err(Errno::ELOOP)));
    assert_eq!(*got.last().unwrap(), (P, rules::CTL_NESTING.id));
}

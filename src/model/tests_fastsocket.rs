//! The fast path's own contract (rule `fastsocket-spawn`): what changes when a worker
//! registers a listener it inherited, and what must not.

use nix::errno::Errno;

use super::{Label, Model, explain_with, rules};
use crate::addr::Family;
use crate::scenario::ast::{Scenario, Stmt};
use crate::scenario::{StepResult, parse};

/// `body` parsed, and the results given in order for its foreground steps (a background
/// step's result is not recorded here: the tests end before it returns).
fn fabricate(body: &str, results: &[Result<i64, Errno>]) -> (Scenario, Vec<StepResult>) {
    let text = format!("# t\nfamily: inet\n{body}");
    let scenario = parse(std::path::Path::new("t.scn"), &text).expect("parses");
    let steps: Vec<StepResult> = scenario
        .body
        .iter()
        .filter_map(|s| match s {
            Stmt::Step(step) if !step.background => Some(step),
            _ => None,
        })
        .zip(results)
        .map(|(step, result)| StepResult {
            span: step.span,
            actor: step.actor.clone(),
            result: *result,
            events: vec![],
        })
        .collect();
    (scenario, steps)
}

/// The labels and rule ids of `body` judged by `model` with the given results.
fn judge(model: Model, body: &str, results: &[Result<i64, Errno>]) -> Vec<(Label, &'static str)> {
    let (scenario, steps) = fabricate(body, results);
    explain_with(model, &scenario, &steps, &[])
        .judgements
        .iter()
        .map(|j| (j.label, j.rule.id))
        .collect()
}

const SHARED: &str = "\
socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L1
bind(L1, ADDR1) = 0
listen(L1, 9) = 0
epoll_create1(0) = E2
";

#[test]
fn a_worker_re_adding_the_inherited_registration_gets_eexist_under_the_fast_path_too() {
    // The shrunk finding F3: the set inherited from the parent already holds (file, L1).
    let body = format!(
        "{SHARED}epoll_ctl(E2, EPOLL_CTL_ADD, L1, {{events=EPOLLIN|EPOLLET, data=L1}}) = ?\n\
         fork() = w1\n[w1] epoll_ctl(E2, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n"
    );
    let base = [Ok(3), Ok(0), Ok(0), Ok(4), Ok(0), Ok(100)];
    for (got, label) in [
        (Err(Errno::EEXIST), Label::Promised),
        (Ok(0), Label::Contradicts),
    ] {
        let mut results = base.to_vec();
        results.push(got);
        let last = *judge(Model::under_fastsocket(Family::Inet), &body, &results)
            .last()
            .expect("judged");
        assert_eq!(last, (label, rules::CTL_EEXIST.id), "{got:?}");
    }
}

#[test]
fn a_worker_adding_an_inherited_listener_spawns_and_the_queues_become_uncertain() {
    let body = format!(
        "{SHARED}fork() = w1\n[w1] epoll_create1(0) = E3\n\
         [w1] epoll_ctl(E3, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n\
         socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR1) = 0\ndrain(L1) = ?\n"
    );
    let results = [
        Ok(3),
        Ok(0),
        Ok(0),
        Ok(4),
        Ok(100),
        Ok(5),
        Ok(0),
        Ok(6),
        Ok(0),
        Ok(0),
    ];
    let fast = judge(Model::under_fastsocket(Family::Inet), &body, &results);
    assert_eq!(fast[6], (Label::Promised, rules::FASTSOCKET_SPAWN.id));
    // The connection may have gone to the worker's own listener.
    assert_eq!(fast[9].0, Label::Unspecified);
    // Natively there is one listener: the drain takes the one connection, and 0 is excluded.
    let native = judge(Model::new(Family::Inet), &body, &results);
    assert_eq!(native[6], (Label::Promised, rules::CTL_ADD.id));
    assert_eq!(native[9], (Label::Contradicts, rules::DRAIN.id));
}

#[test]
fn the_listening_process_and_unix_listeners_never_spawn() {
    let body =
        format!("{SHARED}epoll_ctl(E2, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n");
    let got = judge(
        Model::under_fastsocket(Family::Inet),
        &body,
        &[Ok(3), Ok(0), Ok(0), Ok(4), Ok(0)],
    );
    assert_eq!(got[4], (Label::Promised, rules::CTL_ADD.id));
}

#[test]
fn a_thread_of_the_listening_process_does_not_spawn_but_a_thread_of_a_worker_does() {
    // The shim's listen table is per process: a thread is its process.
    let body = format!(
        "{SHARED}thread() = t1\n[t1] epoll_ctl(E2, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n\
         fork() = w1\n[w1] thread() = t2\n[t2] epoll_create1(0) = E3\n\
         [t2] epoll_ctl(E3, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n"
    );
    let got = judge(
        Model::under_fastsocket(Family::Inet),
        &body,
        &[
            Ok(3),
            Ok(0),
            Ok(0),
            Ok(4),
            Ok(0),
            Ok(0),
            Ok(100),
            Ok(0),
            Ok(5),
            Ok(0),
        ],
    );
    assert_eq!(got[5], (Label::Promised, rules::CTL_ADD.id));
    assert_eq!(got[9], (Label::Promised, rules::FASTSOCKET_SPAWN.id));
}

#[test]
fn with_connections_queued_the_worker_keeps_the_shared_listener() {
    let body = format!(
        "{SHARED}fork() = w1\nsocket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR1) = 0\n\
         [w1] epoll_create1(0) = E3\n\
         [w1] epoll_ctl(E3, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n\
         [w1] drain(L1) = ?\n"
    );
    let results = [
        Ok(3),
        Ok(0),
        Ok(0),
        Ok(4),
        Ok(100),
        Ok(5),
        Ok(0),
        Ok(6),
        Ok(0),
        Ok(1),
    ];
    let got = judge(Model::under_fastsocket(Family::Inet), &body, &results);
    assert_eq!(got[8], (Label::Promised, rules::CTL_ADD.id));
    assert_eq!(got[9], (Label::Promised, rules::DRAIN.id));
}

#[test]
fn a_worker_blocked_on_its_own_listener_is_not_promised_a_wake_up() {
    // The connection may sit on the shared listener or another worker's: under the fast path
    // a wait that never returns is allowed (`fuzz` does not report that hang), natively the
    // wait is promised to return.
    let body = format!(
        "{SHARED}fork() = w1\n[w1] epoll_create1(0) = E3\n\
         [w1] epoll_ctl(E3, EPOLL_CTL_ADD, L1, {{events=EPOLLIN, data=L1}}) = ?\n\
         socket(FAMILY, SOCK_STREAM, 0) = C\nconnect(C, ADDR1) = 0\n\
         [w1] epoll_wait(E3, 16, -1) = ? &\n"
    );
    let results = [
        Ok(3),
        Ok(0),
        Ok(0),
        Ok(4),
        Ok(100),
        Ok(5),
        Ok(0),
        Ok(6),
        Ok(0),
    ];
    let (scenario, steps) = fabricate(&body, &results);
    let wait_line = 12;
    for (model, promised) in [
        (Model::under_fastsocket(Family::Inet), false),
        (Model::new(Family::Inet), true),
    ] {
        let ex = explain_with(model, &scenario, &steps, &[]);
        assert_eq!(ex.blocked, vec![(wait_line, promised)]);
    }
}

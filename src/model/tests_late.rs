//! A background epoll_wait collected after other steps: it may have returned before them, so
//! what they brought (a second edge-triggered connection) may still be pending, and a later
//! wait that reports it is allowed (`epollscope fuzz` found the model claiming otherwise).

use nix::errno::Errno;

use super::{Label, explain};
use crate::addr::Family;
use crate::scenario::parse;
use crate::scenario::{StepResult, ast::Stmt};

/// A step's result and the (mask, data) events an epoll_wait reported.
type Got = (Result<i64, Errno>, Vec<(u32, u64)>);

/// Judges `text` with `results` in the order the runner records them (a background step's
/// result where it is collected) and returns the labels.
fn labels(text: &str, results: &[Got]) -> Vec<Label> {
    let scenario = parse(std::path::Path::new("t.scn"), text).expect("parses");
    // The steps whose results are recorded, in recording order: foreground steps where they
    // stand, a background one at its collection (`await`).
    let mut order = vec![];
    let mut pending = vec![];
    for stmt in &scenario.body {
        match stmt {
            Stmt::Step(s) if s.background => pending.push(s),
            Stmt::Step(s) => order.push(s),
            Stmt::Await { actors, .. } => {
                for a in actors {
                    let i = pending.iter().position(|s| &s.actor == a).expect("waiting");
                    order.push(pending.remove(i));
                }
            }
            Stmt::Expect { .. } => {}
        }
    }
    let steps: Vec<StepResult> = order
        .into_iter()
        .zip(results)
        .map(|(step, (result, events))| StepResult {
            span: step.span,
            actor: step.actor.clone(),
            result: *result,
            events: events.clone(),
        })
        .collect();
    explain(&scenario, Family::Inet, &steps, &[])
        .judgements
        .iter()
        .map(|j| j.label)
        .collect()
}

const IN: u32 = libc::EPOLLIN as u32;

#[test]
fn a_second_edge_after_a_background_wait_returned_is_still_pending() {
    let text = "# t\nfamily: inet\n\
        socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L1\n\
        bind(L1, ADDR1) = 0\n\
        listen(L1, 4) = 0\n\
        epoll_create1(0) = E1\n\
        epoll_ctl(E1, EPOLL_CTL_ADD, L1, {events=EPOLLIN|EPOLLET, data=L1}) = ?\n\
        fork() = w1\n\
        fork() = w2\n\
        [w2] epoll_wait(E1, 16, -1) = ? &\n\
        [w1] socket(FAMILY, SOCK_STREAM, 0) = C3\n\
        [w1] connect(C3, ADDR1) = ?\n\
        [w1] socket(FAMILY, SOCK_STREAM, 0) = C4\n\
        [w1] connect(C4, ADDR1) = ?\n\
        await(w2)\n\
        [w1] epoll_wait(E1, 16, 0) = ?\n";
    let l1 = (IN, 3);
    let results = vec![
        (Ok(3), vec![]),
        (Ok(0), vec![]),
        (Ok(0), vec![]),
        (Ok(4), vec![]),
        (Ok(0), vec![]),
        (Ok(100), vec![]),
        (Ok(101), vec![]),
        (Ok(5), vec![]),
        (Ok(0), vec![]),
        (Ok(6), vec![]),
        (Ok(0), vec![]),
        (Ok(1), vec![l1]),
        (Ok(1), vec![l1]),
    ];
    let got = labels(text, &results);
    assert!(!got.contains(&Label::Contradicts), "{got:?}");
    // What the kernel did, and the other outcome: the wait may have taken both edges.
    let mut none = results.clone();
    none[12] = (Ok(0), vec![]);
    assert!(!labels(text, &none).contains(&Label::Contradicts));
}

#[test]
fn a_background_wait_woken_by_the_next_step_still_consumes_its_edge() {
    // Nothing was ready at its start and one step woke it: its result is that step's edge,
    // which an edge-triggered registration does not report again.
    let text = "# t\nfamily: inet\n\
        socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = L1\n\
        bind(L1, ADDR1) = 0\n\
        listen(L1, 4) = 0\n\
        epoll_create1(0) = E1\n\
        epoll_ctl(E1, EPOLL_CTL_ADD, L1, {events=EPOLLIN|EPOLLET, data=L1}) = ?\n\
        socket(FAMILY, SOCK_STREAM, 0) = C\n\
        fork() = w1\n\
        [w1] epoll_wait(E1, 16, -1) = ? &\n\
        connect(C, ADDR1) = ?\n\
        await(w1)\n\
        epoll_wait(E1, 16, 0) = ?\n";
    let l1 = (IN, 3);
    let results = vec![
        (Ok(3), vec![]),
        (Ok(0), vec![]),
        (Ok(0), vec![]),
        (Ok(4), vec![]),
        (Ok(0), vec![]),
        (Ok(5), vec![]),
        (Ok(100), vec![]),
        (Ok(0), vec![]),
        (Ok(1), vec![l1]),
        (Ok(1), vec![l1]),
    ];
    let got = labels(text, &results);
    assert_eq!(got.last(), Some(&Label::Contradicts), "{got:?}");
}

//! One case per rule for the fds beyond sockets and epoll (pipes, socketpairs, eventfds,
//! timerfds, opened files). Results are fabricated, as in `tests.rs`; poll, signals, threads
//! and fd numbers are in `tests_calls.rs`.

use nix::errno::Errno;

use super::tests::{Got, errno, judge, ok};
use super::{Label, rules};
use crate::addr::Family;

use Label::{Allowed as A, Contradicts as X, Promised as P, Unspecified as U};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
const ERR: u32 = libc::EPOLLERR as u32;

/// A script (main actor, family unix), its fabricated results, and the (label, rule) the
/// model must give the judgement at each listed index.
pub(super) struct Case<'a> {
    pub what: &'a str,
    pub body: &'a str,
    pub got: &'a [Got],
    pub want: &'a [(usize, Label, &'static str)],
}

pub(super) fn check(cases: &[Case<'_>]) {
    for c in cases {
        let got = judge(Family::Unix, c.body, c.got);
        for &(i, label, rule) in c.want {
            assert_eq!(
                got.get(i).copied(),
                Some((label, rule)),
                "{}: judgement {i} of {got:?}",
                c.what
            );
        }
    }
}

const PIPE: &str = "pipe2([R, W], O_NONBLOCK) = 0\n";

#[test]
fn pipe_rules() {
    check(&[
        Case {
            what: "known flags make a pipe, others are EINVAL",
            body: "pipe([R, W]) = 0\npipe2([R2, W2], 0x10000000) = ?\npipe2([R3, W3], 0x10000000) = ?\n",
            got: &[ok(0), errno(Errno::EINVAL), ok(0)],
            want: &[
                (0, P, rules::PIPE_NEW.id),
                (1, P, rules::PIPE_NEW.id),
                (2, X, rules::PIPE_NEW.id),
            ],
        },
        Case {
            what: "O_NOTIFICATION_PIPE depends on the kernel's build",
            body: "pipe2([R, W], 0x80) = ?\n",
            got: &[errno(Errno::EINVAL)],
            want: &[(0, U, rules::PIPE_NOTIFICATION.id)],
        },
        Case {
            what: "an empty pipe: EAGAIN; data: 1..count bytes; no writer: end of file",
            body: "pipe2([R, W], O_NONBLOCK) = 0\nread(R, ..., 8) = ?\nwrite(W, \"abc\") = ?\nread(R, ..., 8) = ?\nread(R, ..., 8) = ?\nclose(W) = 0\nread(R, ..., 8) = ?\n",
            got: &[
                ok(0),
                errno(Errno::EAGAIN),
                ok(3),
                ok(2),
                ok(2),
                ok(0),
                ok(0),
            ],
            want: &[
                (1, P, rules::PIPE_READ.id),
                (2, P, rules::PIPE_WRITE.id),
                (3, A, rules::PIPE_READ.id),
                // Only one byte was left: two contradicts read(2).
                (4, X, rules::PIPE_READ.id),
                (6, P, rules::PIPE_READ.id),
            ],
        },
        Case {
            what: "a write with no reader left is EPIPE (SIGPIPE ignored)",
            body: "pipe2([R, W], O_NONBLOCK) = 0\nclose(R) = 0\nwrite(W, \"x\") = ?\n",
            got: &[ok(0), ok(0), errno(Errno::EPIPE)],
            want: &[(2, P, rules::PIPE_EPIPE.id)],
        },
        Case {
            what: "each end only for its direction",
            body: "pipe2([R, W], O_NONBLOCK) = 0\nread(W, ..., 8) = ?\nwrite(R, \"x\") = ?\n",
            got: &[ok(0), errno(Errno::EBADF), errno(Errno::EBADF)],
            want: &[
                (1, P, rules::PIPE_WRONG_END.id),
                (2, P, rules::PIPE_WRONG_END.id),
            ],
        },
    ]);
}

/// Past PIPE_BUF bytes since the pipe was last empty, a write's fate depends on the pipe's
/// capacity: not promised.
#[test]
fn pipe_writes_past_pipe_buf_are_unspecified() {
    let big = "x".repeat(4000);
    let body = format!(
        "{PIPE}write(W, \"{big}\") = ?\nwrite(W, \"{big}\") = ?\nread(R, ..., 8000) = ?\nwrite(W, \"{big}\") = ?\n"
    );
    let got = judge(
        Family::Unix,
        &body,
        &[ok(0), ok(4000), ok(4000), ok(8000), ok(4000)],
    );
    assert_eq!(got[1], (P, rules::PIPE_WRITE.id));
    assert_eq!(got[2], (U, rules::PIPE_WRITE.id));
    // Emptied: room again.
    assert_eq!(got[4], (P, rules::PIPE_WRITE.id));
}

#[test]
fn pipe_readiness() {
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nepoll_create1(0) = E\n\
                epoll_ctl(E, EPOLL_CTL_ADD, R, {events=EPOLLIN, data=1}) = 0\n\
                epoll_ctl(E, EPOLL_CTL_ADD, W, {events=EPOLLOUT, data=2}) = 0\n\
                epoll_wait(E, [...], 16, 0) = ?\nclose(R) = 0\nepoll_wait(E, [...], 16, 0) = ?\n";
    // The empty pipe's write end is writable, the read end not readable.
    let wrote: &[(u32, u64)] = &[(OUT, 2)];
    // Every reader gone: the write end reports EPOLLERR (EPOLLOUT may come with it).
    let err_only: &[(u32, u64)] = &[(ERR, 2)];
    let no_err: &[(u32, u64)] = &[(OUT, 2)];
    let base = [ok(0), ok(4), ok(0), ok(0), (Ok(1), wrote), ok(0)];
    let mut good = base.to_vec();
    good.push((Ok(1), err_only));
    let got = judge(Family::Unix, body, &good);
    assert_eq!(got[4], (P, rules::WAIT_LT.id));
    assert_eq!(got[6], (P, rules::WAIT_LT.id));
    let mut bad = base.to_vec();
    bad.push((Ok(1), no_err));
    let got = judge(Family::Unix, body, &bad);
    assert_eq!(got[6], (X, rules::WAIT_MASK.id), "POLLERR must be reported");
    // The read end after the last writer closed: EPOLLHUP, end of file.
    let body = "pipe2([R, W], O_NONBLOCK) = 0\nepoll_create1(0) = E\n\
                epoll_ctl(E, EPOLL_CTL_ADD, R, {events=EPOLLIN, data=1}) = 0\nclose(W) = 0\n\
                epoll_wait(E, [...], 16, 0) = ?\n";
    let hup: &[(u32, u64)] = &[(HUP, 1)];
    let hup_in: &[(u32, u64)] = &[(HUP | IN, 1)];
    let in_only: &[(u32, u64)] = &[(IN, 1)];
    for (events, want) in [(hup, P), (hup_in, P), (in_only, X)] {
        let got = judge(
            Family::Unix,
            body,
            &[ok(0), ok(4), ok(0), ok(0), (Ok(1), events)],
        );
        assert_eq!(got[4].0, want, "{events:?}");
    }
}

#[test]
fn socketpair_rules() {
    check(&[
        Case {
            what: "a unix stream pair is connected both ways",
            body: "socketpair(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0, [A, B]) = 0\nread(B, ..., 8) = ?\nwrite(A, \"hi\") = ?\nread(B, ..., 8) = ?\nclose(A) = 0\nread(B, ..., 8) = ?\n",
            got: &[ok(0), errno(Errno::EAGAIN), ok(2), ok(2), ok(0), ok(0)],
            want: &[
                (0, P, rules::SOCKETPAIR_OK.id),
                (1, P, rules::READ_EAGAIN.id),
                (2, P, rules::WRITE_DATA.id),
                (3, A, rules::READ_DATA.id),
                (5, P, rules::READ_DATA.id),
            ],
        },
        Case {
            what: "no pairs in AF_INET: one of three errors",
            body: "socketpair(AF_INET, SOCK_STREAM, 0, [A, B]) = ?\nsocketpair(AF_INET, SOCK_STREAM, 0, [C, D]) = ?\n",
            got: &[errno(Errno::EOPNOTSUPP), ok(0)],
            want: &[
                (0, A, rules::SOCKETPAIR_DOMAIN.id),
                (1, X, rules::SOCKETPAIR_DOMAIN.id),
            ],
        },
        Case {
            what: "a datagram pair's data is not followed",
            body: "socketpair(AF_UNIX, SOCK_DGRAM, 0, [A, B]) = 0\nread(B, ..., 8) = ?\n",
            got: &[ok(0), ok(3)],
            want: &[(1, U, rules::NOT_STREAM.id)],
        },
        Case {
            what: "a datagram socket's data is not followed either",
            body: "socket(FAMILY, SOCK_DGRAM|SOCK_NONBLOCK, 0) = D\nbind(D, ADDR) = 0\nlisten(D, 4) = ?\n",
            got: &[ok(3), ok(0), errno(Errno::EOPNOTSUPP)],
            want: &[(2, U, rules::NOT_STREAM.id)],
        },
    ]);
}

const ONE: &str = "\\1\\0\\0\\0\\0\\0\\0\\0";

#[test]
fn eventfd_rules() {
    check(&[
        Case {
            what: "flags",
            body: "eventfd2(0, EFD_NONBLOCK) = ?\neventfd2(0, 0x10000000) = ?\n",
            got: &[ok(3), errno(Errno::EINVAL)],
            want: &[(0, P, rules::EVENTFD_NEW.id), (1, P, rules::EVENTFD_NEW.id)],
        },
        Case {
            what: "read: EAGAIN at 0, 8 while above, EINVAL under 8 bytes",
            body: "eventfd2(2, EFD_NONBLOCK) = EV\nread(EV, ..., 4) = ?\nread(EV, ..., 8) = ?\nread(EV, ..., 8) = ?\nread(EV, ..., 8) = ?\n",
            got: &[
                ok(3),
                errno(Errno::EINVAL),
                ok(8),
                errno(Errno::EAGAIN),
                ok(8),
            ],
            want: &[
                (1, P, rules::EVENTFD_READ.id),
                (2, P, rules::EVENTFD_READ.id),
                (3, P, rules::EVENTFD_READ.id),
                // The first read reset the counter: a second 8 contradicts eventfd(2).
                (4, X, rules::EVENTFD_READ.id),
            ],
        },
        Case {
            what: "EFD_SEMAPHORE: one read per unit",
            body: "eventfd2(2, EFD_SEMAPHORE|EFD_NONBLOCK) = EV\nread(EV, ..., 8) = ?\nread(EV, ..., 8) = ?\nread(EV, ..., 8) = ?\n",
            got: &[ok(3), ok(8), ok(8), errno(Errno::EAGAIN)],
            want: &[
                (2, P, rules::EVENTFD_READ.id),
                (3, P, rules::EVENTFD_READ.id),
            ],
        },
    ]);
    let body = format!(
        "eventfd2(0, EFD_NONBLOCK) = EV\nwrite(EV, \"{ONE}\") = ?\nwrite(EV, \"\\1\\0\") = ?\nwrite(EV, \"\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\") = ?\n\
         write(EV, \"\\xfe\\xff\\xff\\xff\\xff\\xff\\xff\\xff\") = ?\nread(EV, ..., 8) = ?\nwrite(EV, \"\\xfe\\xff\\xff\\xff\\xff\\xff\\xff\\xff\") = ?\n"
    );
    let got = judge(
        Family::Unix,
        &body,
        &[
            ok(3),
            ok(8),
            errno(Errno::EINVAL),
            errno(Errno::EINVAL),
            errno(Errno::EAGAIN),
            ok(8),
            ok(8),
        ],
    );
    assert_eq!(
        got[1..],
        [
            (P, rules::EVENTFD_WRITE.id),
            (P, rules::EVENTFD_WRITE.id),
            (P, rules::EVENTFD_WRITE.id),
            // 1 + 0xfffffffffffffffe overflows the maximum.
            (P, rules::EVENTFD_WRITE.id),
            (P, rules::EVENTFD_READ.id),
            // From 0 the maximum itself fits.
            (P, rules::EVENTFD_WRITE.id),
        ]
    );
}

#[test]
fn eventfd_readiness() {
    let body = format!(
        "eventfd2(0, EFD_NONBLOCK) = EV\nepoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, EV, {{events=EPOLLIN|EPOLLOUT, data=9}}) = 0\n\
         epoll_wait(E, [...], 16, 0) = ?\nwrite(EV, \"{ONE}\") = 8\nepoll_wait(E, [...], 16, 0) = ?\n"
    );
    let out: &[(u32, u64)] = &[(OUT, 9)];
    let both: &[(u32, u64)] = &[(IN | OUT, 9)];
    let got = judge(
        Family::Unix,
        &body,
        &[ok(3), ok(4), ok(0), (Ok(1), out), ok(8), (Ok(1), both)],
    );
    assert_eq!(got[3], (P, rules::WAIT_LT.id));
    assert_eq!(got[5], (P, rules::WAIT_LT.id));
    let got = judge(
        Family::Unix,
        &body,
        &[ok(3), ok(4), ok(0), (Ok(1), out), ok(8), (Ok(1), out)],
    );
    assert_eq!(
        got[5],
        (X, rules::WAIT_MASK.id),
        "a counter of 1 is readable"
    );
}

#[test]
fn epoll_create_size() {
    check(&[Case {
        what: "a positive size, then 0",
        body: "epoll_create(1) = ?\nepoll_create(0) = ?\nepoll_create(-1) = ?\n",
        got: &[ok(3), errno(Errno::EINVAL), ok(4)],
        want: &[
            (0, P, rules::EPOLL_CREATE_SIZE.id),
            (1, P, rules::EPOLL_CREATE_SIZE.id),
            (2, X, rules::EPOLL_CREATE_SIZE.id),
        ],
    }]);
}

const ARM: &str = "{it_interval={tv_sec=0, tv_nsec=0}, it_value={tv_sec=0, tv_nsec=1000000}}";

#[test]
fn timerfd_rules() {
    check(&[
        Case {
            what: "clocks and flags",
            body: "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK) = ?\ntimerfd_create(CLOCK_MONOTONIC, 0x10000000) = ?\ntimerfd_create(3, 0) = ?\ntimerfd_create(CLOCK_BOOTTIME_ALARM, 0) = ?\n",
            got: &[
                ok(3),
                errno(Errno::EINVAL),
                errno(Errno::EINVAL),
                errno(Errno::EPERM),
            ],
            want: &[
                (0, P, rules::TIMERFD_NEW.id),
                (1, P, rules::TIMERFD_NEW.id),
                (2, P, rules::TIMERFD_NEW.id),
                (3, U, rules::TIMERFD_NEW.id),
            ],
        },
        Case {
            what: "a disarmed timer: EAGAIN; short reads EINVAL; armed: time decides",
            body: "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK) = T\nread(T, ..., 8) = ?\nread(T, ..., 4) = ?\n\
                   timerfd_settime(T, 0, {it_interval={tv_sec=0, tv_nsec=0}, it_value={tv_sec=0, tv_nsec=1000000}}, NULL) = ?\nread(T, ..., 8) = ?\n",
            got: &[
                ok(3),
                errno(Errno::EAGAIN),
                errno(Errno::EINVAL),
                ok(0),
                errno(Errno::EAGAIN),
            ],
            want: &[
                (1, P, rules::TIMERFD_READ.id),
                (2, P, rules::TIMERFD_READ.id),
                (3, P, rules::TIMERFD_SETTIME.id),
                (4, A, rules::TIMERFD_TIME.id),
            ],
        },
        Case {
            what: "settime: a bad tv_nsec or a non-timer fd is EINVAL",
            body: "timerfd_create(CLOCK_MONOTONIC, 0) = T\n\
                   timerfd_settime(T, 0, {it_interval={tv_sec=0, tv_nsec=0}, it_value={tv_sec=0, tv_nsec=1000000000}}, NULL) = ?\n\
                   epoll_create1(0) = E\n\
                   timerfd_settime(E, 0, {it_interval={tv_sec=0, tv_nsec=0}, it_value={tv_sec=1, tv_nsec=0}}, NULL) = ?\n",
            got: &[ok(3), errno(Errno::EINVAL), ok(4), errno(Errno::EINVAL)],
            want: &[
                (1, P, rules::TIMERFD_SETTIME.id),
                (3, P, rules::TIMERFD_SETTIME.id),
            ],
        },
    ]);
    // A blocking read of an armed timer waits for the expiration: 8.
    let body = format!(
        "timerfd_create(CLOCK_MONOTONIC, 0) = T\ntimerfd_settime(T, 0, {ARM}, NULL) = 0\nread(T, ..., 8) = ?\n"
    );
    let got = judge(Family::Unix, &body, &[ok(3), ok(0), ok(8)]);
    assert_eq!(got[2], (P, rules::TIMERFD_READ.id));
    // An armed timer makes waits on it unspecified, not contradictions.
    let body = format!(
        "timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK) = T\nepoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, T, {{events=EPOLLIN, data=T}}) = 0\n\
         timerfd_settime(T, 0, {ARM}, NULL) = 0\nepoll_wait(E, [...], 16, 0) = ?\n"
    );
    let got = judge(Family::Unix, &body, &[ok(3), ok(4), ok(0), ok(0), ok(0)]);
    assert_eq!(got[4], (U, rules::READY_UNSPECIFIED.id));
}

#[test]
fn opened_files_are_the_file_systems_business() {
    check(&[Case {
        what: "openat and registering what it opened",
        body: "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY) = F\nepoll_create1(0) = E\nepoll_ctl(E, EPOLL_CTL_ADD, F, {events=EPOLLIN, data=F}) = ?\nread(F, ..., 8) = ?\n",
        got: &[ok(3), ok(4), errno(Errno::EPERM), ok(8)],
        want: &[
            (0, U, rules::OPENAT_FS.id),
            (2, A, rules::CTL_EPERM.id),
            (3, U, rules::OPENAT_FS.id),
        ],
    }]);
}

#[test]
fn sendto_and_recvfrom_on_a_connected_stream() {
    check(&[
        Case {
            what: "sendto is write (or EISCONN), recvfrom is read",
            body: "socketpair(AF_UNIX, SOCK_STREAM, 0, [A, B]) = 0\nsendto(A, \"hi\", 2, 0, ADDR) = ?\nsendto(A, \"hi\", 2, 0, ADDR) = ?\nrecvfrom(B, ..., 8, MSG_DONTWAIT) = ?\nrecvfrom(B, ..., 8, MSG_DONTWAIT) = ?\n",
            got: &[
                ok(0),
                errno(Errno::EISCONN),
                ok(2),
                ok(2),
                errno(Errno::EAGAIN),
            ],
            want: &[
                (1, A, rules::SEND_CONNECTED.id),
                (2, A, rules::SEND_CONNECTED.id),
                (3, A, rules::SEND_CONNECTED.id),
                // MSG_DONTWAIT on a blocking socket: EAGAIN.
                (4, P, rules::READ_EAGAIN.id),
            ],
        },
        Case {
            what: "not a socket",
            body: "pipe([R, W]) = 0\nsendto(W, \"x\", 1, 0, ADDR) = ?\nrecvfrom(R, ..., 8, 0) = ?\n",
            got: &[ok(0), errno(Errno::ENOTSOCK), errno(Errno::ENOTSOCK)],
            want: &[
                (1, P, rules::SEND_ENOTSOCK.id),
                (2, P, rules::SEND_ENOTSOCK.id),
            ],
        },
    ]);
}

//! Every class of bad scenario input gets one precise message at the right line and column.

use std::path::Path;

use epollscope::scenario::parse;

/// The one-line error for `source`, which must fail to parse.
fn error(source: &str) -> String {
    match parse(Path::new("t.scn"), source) {
        Ok(_) => panic!("expected an error for:\n{source}"),
        Err(e) => e.to_string(),
    }
}

const LISTENER: &str = "socket(FAMILY, SOCK_STREAM, 0) = L\n";

#[test]
fn unknown_call() {
    // The list is the call table's, in its order; adding a call must not touch this test.
    let message = error(&format!("{LISTENER}frobnicate(L) = 0\n"));
    assert!(
        message.starts_with(
            "t.scn:2:1: unknown call 'frobnicate' (known: socket, setsockopt, bind, listen, \
             connect, accept, accept4, close, shutdown, dup, dup2, read, write, epoll_create1, "
        ),
        "{message}"
    );
    assert!(
        message.ends_with(", fork, thread, drain, exit)"),
        "{message}"
    );
    assert!(message.contains(", pipe2, socketpair, "), "{message}");
}

#[test]
fn bad_flags() {
    assert_eq!(
        error(&format!(
            "{LISTENER}epoll_create1(0) = E\n\
             epoll_ctl(E, EPOLL_CTL_ADD, L, {{events=EPOLLIN|EPOLLEDGE, data=L}}) = 0\n"
        )),
        "t.scn:3:48: unknown epoll flag 'EPOLLEDGE'"
    );
    assert_eq!(
        error("socket(FAMILY, SOCK_STREAM|SOCK_FAST, 0) = L\n"),
        "t.scn:1:28: unknown flag 'SOCK_FAST' for the type of socket() \
         (known: SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_NONBLOCK, SOCK_CLOEXEC)"
    );
    assert_eq!(
        error(&format!("{LISTENER}shutdown(L, SHUT_ALL) = 0\n")),
        "t.scn:2:13: unknown flag 'SHUT_ALL' for how of shutdown() (known: SHUT_RD, SHUT_WR, SHUT_RDWR)"
    );
    assert_eq!(
        error("family: ipx\n"),
        "t.scn:1:9: unknown socket family 'ipx': expected unix, inet or inet6"
    );
    assert_eq!(
        error(&format!("{LISTENER}close(L) = -1 EFOO\n")),
        "t.scn:2:15: unknown errno 'EFOO'"
    );
}

/// socket()'s family: the AF_* names of the one table of constant names (`names::FAMILIES`),
/// or FAMILY for the matrix; anything else is one line naming the place.
#[test]
fn unknown_address_family() {
    for name in ["FAMILY", "AF_UNIX", "AF_LOCAL", "AF_INET", "AF_INET6"] {
        let source = format!("socket({name}, SOCK_STREAM, 0) = L\n");
        assert!(parse(Path::new("t.scn"), &source).is_ok(), "{name}");
    }
    for name in ["AF_NETLINK", "AF_PACKET", "af_inet", "unix"] {
        assert_eq!(
            error(&format!("socket({name}, SOCK_STREAM, 0) = L\n")),
            format!(
                "t.scn:1:8: unknown family '{name}' (expected FAMILY, AF_UNIX, AF_INET or AF_INET6)"
            )
        );
    }
    assert_eq!(
        error("socket(2, SOCK_STREAM, 0) = L\n"),
        "t.scn:1:8: type mismatch: argument 1 of socket() must be a family such as FAMILY or AF_INET, not a number"
    );
}

#[test]
fn undefined_names() {
    assert_eq!(
        error("listen(L, 128) = 0\n"),
        "t.scn:1:8: undefined name 'L'"
    );
    assert_eq!(
        error("[w1] socket(FAMILY, SOCK_STREAM, 0) = L\n"),
        "t.scn:1:2: undefined name 'w1': processes are main and those made by fork() = NAME or thread() = NAME"
    );
    // An fd made by a child after the fork is not the parent's.
    assert_eq!(
        error("fork() = w1\n[w1] socket(FAMILY, SOCK_STREAM, 0) = L\nclose(L)\n"),
        "t.scn:3:7: undefined name 'L' in process main (another process made it after main was forked)"
    );
    assert_eq!(
        error("expect sum($a, $b) = 2\n"),
        "t.scn:1:12: undefined name '$a'"
    );
}

#[test]
fn type_mismatches() {
    assert_eq!(
        error(&format!("{LISTENER}listen(L, \"many\") = 0\n")),
        "t.scn:2:11: type mismatch: argument 2 of listen() must be a backlog (a number), not a string"
    );
    assert_eq!(
        error(&format!("{LISTENER}close(L) = M\n")),
        "t.scn:2:12: type mismatch: close() returns a number, not an fd or a process, so its result cannot be named 'M'"
    );
    assert_eq!(
        error("fork() = w1\nclose(w1)\n"),
        "t.scn:2:7: type mismatch: 'w1' is a process, not an fd"
    );
    assert_eq!(
        error(&format!("{LISTENER}[L] close(L)\n")),
        "t.scn:2:2: type mismatch: 'L' is an fd, not a process"
    );
    assert_eq!(
        error(&format!("{LISTENER}bind(L, L) = 0\n")),
        "t.scn:2:9: type mismatch: argument 2 of bind() must be an address: ADDR, ADDR2, ..., not a name"
    );
    assert_eq!(
        error(&format!("{LISTENER}fork() = L\n")),
        "t.scn:2:10: type mismatch: 'L' is already an fd, it cannot also name a process"
    );
    assert_eq!(
        error(
            "fork() = w1\n[w1] socket(FAMILY, SOCK_STREAM, 0) = C\n[w1] accept(C) = A &\nexpect woken(w1) = A\n"
        ),
        "t.scn:4:20: type mismatch: an aggregate is a number; expect N or LO..HI"
    );
    assert_eq!(
        error(&format!("{LISTENER}listen(L)\n")),
        "t.scn:2:9: listen() takes 2 arguments, got 1: listen(L, BACKLOG)"
    );
}

#[test]
fn unterminated_and_unbalanced_blocks() {
    assert_eq!(
        error("# x\nrepeat 3 {\nsocket(FAMILY, SOCK_STREAM, 0) = L\n"),
        "t.scn:2:1: unterminated block: this repeat has no closing '}'"
    );
    // The `}` closes the inner block: the outer one is left open.
    assert_eq!(
        error("repeat 2 {\nrepeat 2 {\n}\n"),
        "t.scn:1:1: unterminated block: this repeat has no closing '}'"
    );
    assert_eq!(error("}\n"), "t.scn:1:1: '}' without an open repeat block");
    assert_eq!(
        error("repeat {\n}\n"),
        "t.scn:1:8: repeat needs a count: repeat N {"
    );
    assert_eq!(
        error("write(3, \"abc)\n"),
        "t.scn:1:10: unterminated string"
    );
}

#[test]
fn expectations_where_none_can_be() {
    assert_eq!(
        error("fork() = w1\n[w1] exit() = 0\n"),
        "t.scn:2:15: exit() cannot have an expectation: it does not return"
    );
    assert_eq!(
        error(
            "fork() = w1\n[w1] epoll_create1(0) = E\n[w1] epoll_wait(E, [], 16, -1) = 0 &\nawait(w1) = 1\n"
        ),
        "t.scn:4:11: await(...) cannot have an expectation: it collects background calls; \
         put the expectation on the call's own line"
    );
    assert_eq!(
        error("fork()\n"),
        "t.scn:1:1: fork() must name the new process: fork() = w1"
    );
    assert_eq!(
        error(&format!("{LISTENER}listen(L, 1) = 0 &\n")),
        "t.scn:2:18: listen() cannot run in the background: only calls that can block \
         (connect, accept, accept4, read, epoll_wait, epoll_pwait, epoll_pwait2, recvfrom, poll, ppoll) can"
    );
}

#[test]
fn rendered_error_shows_the_line_and_a_caret() {
    let err = parse(
        Path::new("t.scn"),
        "socket(FAMILY, SOCK_STREAM, 0) = L\nlisten(L, x) = 0\n",
    )
    .unwrap_err();
    assert_eq!(
        err.render(),
        "t.scn:2:11: type mismatch: argument 2 of listen() must be a backlog (a number), not a name\n\
         2 | listen(L, x) = 0\n              ^"
    );
}

/// Every number is checked against the C type of its argument: nothing is narrowed at run
/// time (`close(4294967299)` once closed fd 3 and passed).
#[test]
fn numbers_out_of_range_for_their_argument() {
    assert_eq!(
        error("close(4294967299) = 0\n"),
        "t.scn:1:7: out of range: argument 1 of close() must be -2147483648..2147483647, \
         not 4294967299"
    );
    assert_eq!(
        error(&format!("{LISTENER}listen(L, 2147483648) = 0\n")),
        "t.scn:2:11: out of range: argument 2 of listen() must be -2147483648..2147483647, \
         not 2147483648"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}setsockopt(L, SOL_SOCKET, SO_REUSEPORT, [4294967297]) = 0\n"
        )),
        "t.scn:2:42: out of range: argument 4 of setsockopt() must be -2147483648..2147483647, \
         not 4294967297"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}accept4(L, ..., 0x100000800) = -1 EINVAL\n"
        )),
        "t.scn:2:17: out of range: argument 3 of accept4() must be -2147483648..2147483647, \
         not 4294969344"
    );
    assert_eq!(
        error(&format!("{LISTENER}shutdown(L, SHUT_RD|0x100000000) = 0\n")),
        "t.scn:2:21: out of range: argument 2 of shutdown() must be -2147483648..2147483647, \
         not 4294967296"
    );
    assert_eq!(
        error("fork() = w1\n[w1] exit(256)\n"),
        "t.scn:2:11: out of range: argument 1 of exit() must be 0..255, not 256"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}epoll_create1(0) = E\n\
             epoll_ctl(E, EPOLL_CTL_ADD, L, {{events=4294967296, data=L}}) = 0\n"
        )),
        "t.scn:3:33: out of range: events must be 0..4294967295, not 4294967296"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}epoll_create1(0) = E\n\
             epoll_ctl(E, EPOLL_CTL_ADD, L, {{events=EPOLLIN, data=-1}}) = 0\n"
        )),
        "t.scn:3:49: out of range: epoll data must be 0..9223372036854775807, not -1"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}epoll_create1(0) = E\nepoll_wait(E, [], 2147483648, 0) = 0\n"
        )),
        "t.scn:3:19: out of range: argument 3 of epoll_wait() must be -2147483648..1024, \
         not 2147483648"
    );
    assert_eq!(
        error(&format!(
            "{LISTENER}epoll_create1(0) = E\nepoll_wait(E, 16, 4294967296) = 0\n"
        )),
        "t.scn:3:19: out of range: argument 3 of epoll_wait() must be -2147483648..2147483647, \
         not 4294967296"
    );
    assert_eq!(
        error(&format!("{LISTENER}read(L, ..., 16385) = 0\n")),
        "t.scn:2:14: read count must be 0..16384"
    );
}

/// Inputs that would make the parser or the runner spin, overflow or run out of memory are
/// refused with one line naming the place.
#[test]
fn bounded_inputs() {
    // A timeout too long to add to a clock once panicked.
    assert_eq!(
        error("timeout: 9223372036854775807s\n"),
        "t.scn:1:10: a duration must be at most 3600s"
    );
    assert_eq!(
        error("step-timeout: 3601s\n"),
        "t.scn:1:15: a duration must be at most 3600s"
    );
    assert_eq!(
        error("timeout: 3600001ms\n"),
        "t.scn:1:10: a duration must be at most 3600s"
    );
    // 50,000 nested blocks once overflowed the stack.
    let deep = "repeat 1 {\n".repeat(50_000) + &"}\n".repeat(50_000);
    assert_eq!(
        error(&deep),
        "t.scn:17:1: repeat blocks nest deeper than 16 levels"
    );
    // Steps, not lines, are counted, and before unrolling: nothing spins on empty bodies.
    assert_eq!(
        error("repeat 1000000000 {\nrepeat 1000000000 {\n}\nclose(3)\n}\n"),
        "t.scn:1:1: scenario unrolls to more than 100000 steps"
    );
    assert_eq!(
        error("repeat 100001 {\nclose(3)\n}\n"),
        "t.scn:1:1: scenario unrolls to more than 100000 steps"
    );
    assert!(
        parse(
            Path::new("t.scn"),
            "repeat 1000000000 {\n}\nrepeat 100000 {\nclose(3)\n}\n"
        )
        .is_ok()
    );
    // A string that cannot cross the actor channel once failed as "process is gone".
    let big = format!("{LISTENER}write(L, \"{}\")\n", "x".repeat(100 * 1024));
    assert_eq!(
        error(&big),
        "t.scn:2:10: the string is 102400 bytes long; at most 16384 are allowed"
    );
    let nested = format!(
        "{LISTENER}epoll_create1(0) = E\nepoll_wait(E, {}{}, 16, 0)\n",
        "[".repeat(20),
        "]".repeat(20)
    );
    assert_eq!(
        error(&nested),
        "t.scn:3:24: arguments nest deeper than 8 levels"
    );
}

//! Seeded randomised tests of the scenario language. The seed is printed on failure; set
//! EPOLLSCOPE_SEED to replay one.
//!
//! * Random bytes and random token soups never panic the parser (100k+ cases each).
//! * Random *valid* scenarios (only calls that cannot block, so nothing can hang) parse, run,
//!   and either pass or fail with a clean report; nothing is left behind.

use std::fmt::Write as _;
use std::path::Path;

use epollscope::scenario::{parse, run};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn base_seed() -> u64 {
    std::env::var("EPOLLSCOPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_e9011)
}

/// Runs `check` for `cases` seeds; a panic is reported with the seed that caused it.
fn for_each_seed(cases: u64, check: impl Fn(u64) + std::panic::RefUnwindSafe) {
    let base = base_seed();
    for case in 0..cases {
        let seed = base.wrapping_add(case);
        if let Err(panic) = std::panic::catch_unwind(|| check(seed)) {
            eprintln!("failing seed: EPOLLSCOPE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn random_bytes_never_panic_the_parser() {
    for_each_seed(100_000, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let len = rng.random_range(0..120);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(Path::new("fuzz.scn"), &text);
    });
}

const VOCABULARY: &[&str] = &[
    "socket",
    "bind",
    "listen",
    "connect",
    "accept",
    "accept4",
    "close",
    "dup",
    "dup2",
    "read",
    "write",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "fork",
    "drain",
    "exit",
    "shutdown",
    "setsockopt",
    "repeat",
    "await",
    "expect",
    "woken",
    "sum",
    "family:",
    "timeout:",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "|",
    "&",
    "?",
    "..",
    "...",
    "$i",
    "$n",
    "L",
    "E",
    "w1",
    "ADDR",
    "FAMILY",
    "SOCK_STREAM",
    "EPOLLIN",
    "EPOLLET",
    "EPOLL_CTL_ADD",
    "events=",
    "data=",
    "{u64=L}",
    "NULL",
    "0",
    "-1",
    "16",
    "99999999999999999999",
    "0x10",
    "EAGAIN",
    "\"x\\n\"",
    "\"",
    "\\",
    "#",
    "\n",
    "\n",
    " ",
    "unix",
    "inet",
    "5s",
    "1..",
    "-",
];

#[test]
fn random_token_soup_never_panics_the_parser() {
    for_each_seed(100_000, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut text = String::new();
        for _ in 0..rng.random_range(1..40) {
            text.push_str(VOCABULARY[rng.random_range(0..VOCABULARY.len())]);
            if rng.random_bool(0.5) {
                text.push(' ');
            }
        }
        let _ = parse(Path::new("soup.scn"), &text);
    });
}

/// A random scenario of calls that never block: non-blocking sockets, epoll_wait with
/// timeout 0. Expectations are random too, so some runs pass and some fail.
fn random_scenario(rng: &mut StdRng) -> String {
    let mut s = String::from("# random\nstep-timeout: 2s\n");
    let families = ["unix", "inet", "inet6"];
    let _ = writeln!(s, "family: {}", families[rng.random_range(0..3)]);
    // fds visible per actor; actors[0] is main.
    let mut actors: Vec<(String, Vec<String>)> = vec![("main".into(), vec![])];
    let mut epolls: Vec<String> = vec![];
    let mut counter = 0;
    for _ in 0..rng.random_range(1..25) {
        let a = rng.random_range(0..actors.len());
        let prefix = format!("[{}] ", actors[a].0);
        let fds = actors[a].1.clone();
        let pick = |rng: &mut StdRng| fds[rng.random_range(0..fds.len())].clone();
        let expect = match rng.random_range(0..4) {
            0 => " = ?",
            1 => " = 0",
            2 => " = -1 EAGAIN",
            _ => "",
        };
        counter += 1;
        match rng.random_range(0..10) {
            0 | 1 => {
                let name = format!("S{counter}");
                let _ = writeln!(
                    s,
                    "{prefix}socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = {name}"
                );
                actors[a].1.push(name);
            }
            2 if !fds.is_empty() => {
                let fd = pick(rng);
                let call = ["bind", "connect"][rng.random_range(0..2)];
                let _ = writeln!(
                    s,
                    "{prefix}{call}({fd}, ADDR{}){expect}",
                    rng.random_range(1..3)
                );
            }
            3 if !fds.is_empty() => {
                let _ = writeln!(
                    s,
                    "{prefix}listen({}, {}){expect}",
                    pick(rng),
                    rng.random_range(0..4)
                );
            }
            4 if !fds.is_empty() => {
                let name = format!("A{counter}");
                let _ = writeln!(
                    s,
                    "{prefix}accept4({}, ..., SOCK_NONBLOCK) = {name}",
                    pick(rng)
                );
                actors[a].1.push(name);
            }
            5 => {
                let name = format!("E{counter}");
                let _ = writeln!(s, "{prefix}epoll_create1(0) = {name}");
                actors[a].1.push(name.clone());
                epolls.push(name);
            }
            6 if !fds.is_empty() => {
                let e = pick(rng);
                let fd = pick(rng);
                let ops = ["EPOLL_CTL_ADD", "EPOLL_CTL_MOD", "EPOLL_CTL_DEL"];
                let flags = [
                    "EPOLLIN",
                    "EPOLLIN|EPOLLET",
                    "EPOLLIN|EPOLLONESHOT",
                    "EPOLLIN|EPOLLEXCLUSIVE",
                ];
                let _ = writeln!(
                    s,
                    "{prefix}epoll_ctl({e}, {}, {fd}, {{events={}, data={fd}}}){expect}",
                    ops[rng.random_range(0..3)],
                    flags[rng.random_range(0..4)]
                );
            }
            7 if !fds.is_empty() => {
                let _ = writeln!(s, "{prefix}epoll_wait({}, [...], 16, 0){expect}", pick(rng));
            }
            8 if !fds.is_empty() => {
                let call = ["close", "dup", "drain"][rng.random_range(0..3)];
                if call == "dup" {
                    let name = format!("D{counter}");
                    let _ = writeln!(s, "{prefix}dup({}) = {name}", pick(rng));
                    actors[a].1.push(name);
                } else {
                    let _ = writeln!(s, "{prefix}{call}({}){expect}", pick(rng));
                }
            }
            9 if actors.len() < 3 => {
                let child = format!("w{counter}");
                let _ = writeln!(s, "{prefix}fork() = {child}");
                let inherited = actors[a].1.clone();
                actors.push((child, inherited));
            }
            _ => {
                let _ = writeln!(s, "{prefix}epoll_create1(EPOLL_CLOEXEC) = X{counter}");
                actors[a].1.push(format!("X{counter}"));
            }
        }
    }
    s
}

#[test]
fn random_valid_scenarios_parse_and_run_cleanly() {
    for_each_seed(40, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let source = random_scenario(&mut rng);
        let scenario = parse(Path::new("random.scn"), &source)
            .unwrap_or_else(|e| panic!("generated scenario must parse: {}\n{source}", e.render()));
        for &family in &scenario.families {
            let report = run(&scenario, family);
            if let Some(failure) = &report.failure {
                // A clean failure names a real line of the script and says why.
                assert!(
                    failure.line >= 1 && failure.line <= source.lines().count(),
                    "{source}"
                );
                assert!(!failure.message.is_empty());
                assert!(
                    !failure.message.contains("hung") && !failure.message.contains("died"),
                    "non-blocking scenario must not hang or crash: {}\n{source}",
                    report.summary()
                );
            }
        }
    });
}

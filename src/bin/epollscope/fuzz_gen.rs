//! Random valid multi-actor scenarios. Every call is one that cannot block (non-blocking
//! listeners and accepted sockets, connects only while the backlog has room, reads only on
//! non-blocking sockets), so a generated scenario never hangs; results are left open (`= ?`)
//! except where a name must be bound, and the model judges them.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The seed of case `index` of a run started with `seed`.
pub fn case_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index)
}

struct Listener {
    name: String,
    addr: String,
    backlog: usize,
    /// Connections made and not yet accepted (an upper bound: drains and accepts subtract).
    queued: usize,
}

struct Actor {
    name: String,
    /// Names this actor may use: fds in scope.
    epolls: Vec<String>,
    /// Clients that may still write: (name, listener index).
    clients: Vec<(String, usize)>,
}

const FLAGS: &[&str] = &[
    "EPOLLIN",
    "EPOLLIN|EPOLLET",
    "EPOLLIN|EPOLLONESHOT",
    "EPOLLIN|EPOLLEXCLUSIVE",
    "EPOLLIN|EPOLLOUT|EPOLLRDHUP",
    "EPOLLIN|EPOLLRDHUP|EPOLLET",
];

/// Generates the scenario of one seed: the same seed gives the same bytes.
pub fn generate(seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let family = ["unix", "inet", "inet6"][rng.random_range(0..3)];
    let mut out =
        format!("# Random scenario (epollscope fuzz), seed {seed}.\nfamily: {family}\n\n");
    let mut listeners = vec![];
    for i in 1..=rng.random_range(1..=2) {
        let (name, addr) = (format!("L{i}"), format!("ADDR{i}"));
        let backlog = rng.random_range(4..=16);
        let _ = writeln!(out, "socket(FAMILY, SOCK_STREAM|SOCK_NONBLOCK, 0) = {name}");
        let _ = writeln!(out, "bind({name}, {addr}) = 0");
        let _ = writeln!(out, "listen({name}, {backlog}) = 0");
        listeners.push(Listener {
            name,
            addr,
            backlog,
            queued: 0,
        });
    }
    let mut main = Actor {
        name: "main".into(),
        epolls: vec![],
        clients: vec![],
    };
    for i in 1..=rng.random_range(1..=2) {
        let e = format!("E{i}");
        let _ = writeln!(out, "epoll_create1(0) = {e}");
        for l in &listeners {
            if rng.random_bool(0.8) {
                let flags = FLAGS[rng.random_range(0..4)];
                let _ = writeln!(
                    out,
                    "epoll_ctl({e}, EPOLL_CTL_ADD, {}, {{events={flags}, data={}}}) = ?",
                    l.name, l.name
                );
            }
        }
        main.epolls.push(e);
    }
    let mut actors = vec![main];
    for i in 1..=rng.random_range(0..=2) {
        let w = format!("w{i}");
        let _ = writeln!(out, "fork() = {w}");
        actors.push(Actor {
            name: w,
            epolls: actors[0].epolls.clone(),
            clients: vec![],
        });
    }
    let (mut nconn, mut nclient) = (0, 0);
    for _ in 0..rng.random_range(4..=24) {
        let a = rng.random_range(0..actors.len());
        let prefix = if actors[a].name == "main" {
            String::new()
        } else {
            format!("[{}] ", actors[a].name)
        };
        let l = rng.random_range(0..listeners.len());
        match rng.random_range(0..10) {
            0..=2 => {
                // A client connects while the backlog surely has room (a full one would block).
                if listeners[l].queued + 1 < listeners[l].backlog {
                    nclient += 1;
                    let c = format!("C{nclient}");
                    let _ = writeln!(out, "{prefix}socket(FAMILY, SOCK_STREAM, 0) = {c}");
                    let _ = writeln!(out, "{prefix}connect({c}, {}) = ?", listeners[l].addr);
                    listeners[l].queued += 1;
                    actors[a].clients.push((c, l));
                }
            }
            3..=4 => {
                if let Some(e) = pick(&mut rng, &actors[a].epolls) {
                    let max = [1, 16][rng.random_range(0..2)];
                    let _ = writeln!(out, "{prefix}epoll_wait({e}, {max}, 0) = ?");
                }
            }
            5 => {
                let _ = writeln!(
                    out,
                    "{prefix}accept4({}, ..., SOCK_NONBLOCK) = ?",
                    listeners[l].name
                );
                listeners[l].queued = listeners[l].queued.saturating_sub(1);
            }
            6 => {
                if let Some(e) = pick(&mut rng, &actors[a].epolls) {
                    let op =
                        ["EPOLL_CTL_MOD", "EPOLL_CTL_DEL", "EPOLL_CTL_ADD"][rng.random_range(0..3)];
                    let flags = FLAGS[rng.random_range(0..FLAGS.len())];
                    let target = &listeners[l].name;
                    let event = if op == "EPOLL_CTL_DEL" {
                        "NULL".to_string()
                    } else {
                        format!("{{events={flags}, data={target}}}")
                    };
                    let _ = writeln!(out, "{prefix}epoll_ctl({e}, {op}, {target}, {event}) = ?");
                }
            }
            7 => {
                let names: Vec<String> = actors[a].clients.iter().map(|c| c.0.clone()).collect();
                if let Some(c) = pick(&mut rng, &names) {
                    // A write after SHUT_WR or to a closed peer raises SIGPIPE: each client
                    // writes only while both ends are surely open.
                    match rng.random_range(0..3) {
                        0 => {
                            let _ = writeln!(out, "{prefix}write({c}, \"ping\") = ?");
                        }
                        1 => {
                            let _ = writeln!(out, "{prefix}shutdown({c}, SHUT_WR) = ?");
                        }
                        _ => {
                            let _ = writeln!(out, "{prefix}close({c}) = ?");
                        }
                    }
                    actors[a].clients.retain(|x| x.0 != c);
                }
            }
            8 => {
                let _ = writeln!(out, "{prefix}drain({}) = ?", listeners[l].name);
                listeners[l].queued = 0;
                for actor in &mut actors {
                    actor.clients.retain(|c| c.1 != l);
                }
            }
            _ => {
                if actors[a].epolls.len() == 1 && rng.random_bool(0.3) {
                    let e = actors[a].epolls[0].clone();
                    let n = format!("D{}{}", actors[a].name, nconn);
                    nconn += 1;
                    let _ = writeln!(out, "{prefix}dup({e}) = {n}");
                    actors[a].epolls.push(n);
                } else if let Some(e) = pick(&mut rng, &actors[a].epolls) {
                    let _ = writeln!(out, "{prefix}epoll_wait({e}, 16, 0) = ?");
                }
            }
        }
    }
    out
}

fn pick(rng: &mut StdRng, from: &[String]) -> Option<String> {
    if from.is_empty() {
        None
    } else {
        Some(from[rng.random_range(0..from.len())].clone())
    }
}

//! What the two locality benchmarks (`churn locality`, `nginx_locality`; run together by
//! `bench/locality.sh`) share: the setups of the shim they compare, the rounds, and the
//! table of medians; and the shim library every benchmark of the shim runs under.

use std::collections::BTreeSet;
use std::time::Duration;

use epollscope::shim::merge::{Local, Summary};

/// The setups: name and the shim's settings beyond tracing.
pub const SETUPS: &[(&str, &[(&str, &str)])] = &[
    ("shared listener", &[]),
    (
        "SO_REUSEPORT",
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_FASTPATH_PIN", "0"),
            ("EPOLLSCOPE_FASTPATH_STEER", "hash"),
        ],
    ),
    (
        "pinned, hashed",
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_FASTPATH_STEER", "hash"),
        ],
    ),
    // Fastsocket mode as it comes: STEER=auto, SO_INCOMING_CPU where the kernel honours it.
    ("fastsocket", &[("EPOLLSCOPE_FASTPATH", "emulated")]),
    (
        "fastsocket cbpf",
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_FASTPATH_STEER", "cbpf"),
        ],
    ),
];

/// The shim library (`$EPOLLSCOPE_PRELOAD`, else next to the program); without it, `program`
/// says why and exits 2.
pub fn shim_library(program: &str) -> String {
    match epollscope::shim::preload_path() {
        Ok(p) => p.display().to_string(),
        Err(why) => {
            eprintln!("{program}: {why}");
            std::process::exit(2)
        }
    }
}

/// The median of `v` (not empty).
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What one run of a setup measured: the client's wall time, the server's CPU time, and the
/// summary of the trace.
pub struct Run {
    pub wall: Duration,
    pub cpu: Duration,
    pub summary: Summary,
}

/// One setup over all rounds.
#[derive(Default)]
pub struct Tally {
    walls: Vec<Duration>,
    cpus: Vec<Duration>,
    local: Local,
    steering: BTreeSet<String>,
}

/// Runs every setup `rounds` times (`run(round, setup)`), each round starting with another
/// setup so that none always runs first; a line a run on stderr.
pub fn rounds(rounds: usize, mut run: impl FnMut(usize, usize) -> Run) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = SETUPS.iter().map(|_| Tally::default()).collect();
    for round in 0..rounds {
        for k in 0..SETUPS.len() {
            let i = (round + k) % SETUPS.len();
            let r = run(round, i);
            let local = r.summary.local_total();
            eprintln!(
                "round {round} {:<16} {:.3} s, server CPU {:.3} s, local {local}",
                SETUPS[i].0,
                r.wall.as_secs_f64(),
                r.cpu.as_secs_f64()
            );
            let t = &mut tallies[i];
            t.walls.push(r.wall);
            t.cpus.push(r.cpu);
            t.local.add(local);
            t.steering.extend(r.summary.steering.iter().map(|s| {
                // One line per mechanism, whatever CPU it names.
                let s = s.split(" steers").next().unwrap_or(s);
                s.split(", worker").next().unwrap_or(s).to_string()
            }));
        }
    }
    tallies
}

/// The table: a row per setup with its medians (`n` connections a run, `rate` names the
/// throughput column), the local accepts of all rounds and how connections were steered.
pub fn print(rate: &str, n: usize, tallies: &mut [Tally]) {
    println!(
        "{:<18}{:>9}{:>10}{:>14}  {:<28}steering",
        "server", "wall s", rate, "server CPU s", "local accepts (all rounds)"
    );
    for ((name, _), t) in SETUPS.iter().zip(tallies) {
        let wall = median(&mut t.walls);
        let cpu = median(&mut t.cpus);
        let how: Vec<&str> = t.steering.iter().map(String::as_str).collect();
        println!(
            "{name:<18}{:>9.3}{:>10.0}{:>14.3}  {:<28}{}",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64(),
            t.local.to_string(),
            if how.is_empty() {
                "-".into()
            } else {
                how.join("; ")
            }
        );
    }
}

//! nginx (4 workers) side by side, in one run, under the preload shim in each setup of
//! Fastsocket's locality: the shared listener (the shim only traces), plain SO_REUSEPORT,
//! pinned workers on a hashing group, fastsocket mode (pinned workers, SO_INCOMING_CPU) and
//! fastsocket with the classic-BPF program. For each: requests per second of a keep-alive-off HTTP/1.0 client (one thread per
//! CPU, a new connection per request), the server's CPU time during the load (user + system of
//! the master and its workers, from /proc), and the accepts whose connection was processed on
//! the CPU of the worker that accepted it (from the shim's trace).
//!
//! `nginx_locality [REQUESTS] [ROUNDS]` (build: `cargo build --release -p epollscope-preload
//! -p epollscope --lib --example nginx_locality`; nginx from PATH or /usr/sbin). nginx is
//! started, waited for and stopped by the harness the tests use (`tests/servers/`): every wait
//! is on a condition with a deadline, and a deadline missed stops the run with what was seen
//! (nginx's logs included); nginx is killed with its whole process group on any failure.

#[path = "locality.rs"]
mod locality;
#[path = "../tests/servers/mod.rs"]
mod servers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use epollscope::trace::{Call, Ret};
use locality::{Run, SETUPS};
use servers::nginx::{self, Nginx, Serving, WORKERS};
use servers::process::Failure;

/// nginx under the shim with the settings `env`, tracing into its directory.
fn start(lib: &str, env: &[(&str, &str)], dir: PathBuf) -> Result<Nginx, Failure> {
    let trace = format!("dir:{}/trace", dir.display());
    Nginx::start(dir, Serving::Load, |cmd| {
        cmd.env_remove("EPOLLSCOPE_FASTPATH")
            .env("LD_PRELOAD", lib)
            .env("EPOLLSCOPE_TRACE", trace)
            // Read while nginx runs (readiness): every line written at once.
            .env("EPOLLSCOPE_TRACE_BUFFER", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
    })
}

/// User + system CPU time of the master and its workers so far.
fn cpu(nginx: &Nginx) -> Duration {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let mut sum = 0u64;
    for pid in std::iter::once(nginx.pid()).chain(nginx.workers()) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
        sum += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        sum += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_micros(sum * 1_000_000 / ticks)
}

/// `n` requests from one thread per CPU; the wall time.
fn load(nginx: &Nginx, n: usize) -> Result<Duration, Failure> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = n / threads + usize::from(t < n % threads);
                s.spawn(move || (0..share).try_for_each(|_| nginx.request().map(drop)))
            })
            .collect();
        for h in handles {
            if let Err(why) = h.join().unwrap() {
                return Err(Failure(format!("a request failed: {why}")));
            }
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

fn run(lib: &str, env: &[(&str, &str)], n: usize, dir: PathBuf) -> Result<Run, Failure> {
    let mut nginx = start(lib, env, dir)?;
    let spawning = !env.is_empty();
    nginx.wait_for(
        "4 workers, each with its own listener when the setup spawns",
        |x| {
            if x.workers().len() != WORKERS {
                return false;
            }
            if !spawning {
                return true;
            }
            let (events, _) = epollscope::shim::merge::read_dir(&x.trace_dir()).unwrap_or_default();
            let spawns = events
                .iter()
                .filter(|e| {
                    matches!(&e.call, Call::Builtin { name, .. } if name == "listen_spawn")
                        && matches!(e.ret, Ret::Ok { .. })
                })
                .count();
            spawns == WORKERS
        },
    )?;
    // Natively the shared listener is ready once a request is served.
    nginx.wait_for("a served request", |x| x.request().is_ok())?;
    let before = cpu(&nginx);
    let wall = load(&nginx, n)?;
    let cpu = cpu(&nginx).saturating_sub(before);
    let (events, _) = epollscope::shim::merge::read_dir(&nginx.trace_dir()).expect("the trace");
    let summary = epollscope::shim::merge::Summary::of(&events);
    let accepted: usize = summary.accepts.values().sum();
    if accepted < n {
        return Err(Failure(format!(
            "{accepted} traced accepts for {n} requests"
        )));
    }
    nginx.quit()?;
    Ok(Run { wall, cpu, summary })
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| {
                a.parse().unwrap_or_else(|_| {
                    eprintln!("nginx_locality: '{a}' is not a count; usage: nginx_locality [REQUESTS] [ROUNDS]");
                    std::process::exit(2)
                })
            })
            .unwrap_or(default)
    };
    let (n, rounds) = (arg(1, 5000), arg(2, 3).max(1));
    if nginx::binary().is_none() {
        eprintln!("nginx_locality: nginx is not installed (apt-get install nginx-light)");
        std::process::exit(2)
    }
    let lib = locality::shim_library("nginx_locality");
    let base = std::env::temp_dir().join(format!("nginx-locality-{}", std::process::id()));
    let mut tallies = locality::rounds(rounds, |round, i| {
        // A failed run has killed its nginx (and kept its directory, with the logs).
        run(&lib, SETUPS[i].1, n, base.join(format!("{round}-{i}"))).unwrap_or_else(|why| {
            eprintln!("nginx_locality: {why}");
            std::process::exit(1)
        })
    });
    let _ = std::fs::remove_dir_all(&base);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "nginx, {WORKERS} workers, traced, {n} requests (HTTP/1.0, a connection each), {threads} client threads, median of {rounds} rounds"
    );
    locality::print("req/s", n, &mut tallies);
}

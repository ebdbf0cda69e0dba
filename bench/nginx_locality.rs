//! nginx (4 workers) side by side, in one run, under the preload shim in each setup of
//! Fastsocket's locality: the shared listener (the shim only traces), plain SO_REUSEPORT,
//! pinned workers on a hashing group, fastsocket mode (pinned workers, SO_INCOMING_CPU) and
//! fastsocket with the classic-BPF program. For each: requests per second of a keep-alive-off HTTP/1.0 client (one thread per
//! CPU, a new connection per request), the server's CPU time during the load (user + system of
//! the master and its workers, from /proc), and the accepts whose connection was processed on
//! the CPU of the worker that accepted it (from the shim's trace).
//!
//! `nginx_locality [REQUESTS] [ROUNDS]` (build: `cargo build --release -p epollscope-preload
//! -p epollscope --lib --example nginx_locality`; nginx from PATH or /usr/sbin). Every wait
//! is on a condition with a deadline, and a deadline missed stops the run with what was seen
//! (nginx's logs included); nginx is killed with its whole process group on any failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use epollscope::shim::merge::{Local, Summary};
use epollscope::trace::{Call, Ret};

const WORKERS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The setups: name and the shim's settings beyond tracing.
const SETUPS: &[(&str, &[(&str, &str)])] = &[
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
    ("fastsocket", &[("EPOLLSCOPE_FASTPATH", "emulated")]),
    (
        "fastsocket cbpf",
        &[
            ("EPOLLSCOPE_FASTPATH", "emulated"),
            ("EPOLLSCOPE_FASTPATH_STEER", "cbpf"),
        ],
    ),
];

fn nginx_binary() -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            eprintln!("nginx_locality: nginx is not installed (apt-get install nginx-light)");
            std::process::exit(2)
        })
}

/// A running nginx: killed with its process group when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    fn start(lib: &str, env: &[(&str, &str)], dir: PathBuf) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        std::fs::create_dir_all(dir.join("trace")).unwrap();
        let conf = format!(
            "worker_processes {WORKERS};\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n keepalive_timeout 0;\n\
             server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(nginx_binary());
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .process_group(0)
            .env_remove("EPOLLSCOPE_FASTPATH")
            .env("LD_PRELOAD", lib)
            .env("EPOLLSCOPE_TRACE", format!("dir:{}/trace", dir.display()))
            // Read while nginx runs (readiness): every line written at once.
            .env("EPOLLSCOPE_TRACE_BUFFER", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        epollscope::sys::process::die_with_parent_after_spawn(
            &mut cmd,
            nix::sys::signal::Signal::SIGKILL,
        );
        let child = cmd.spawn().expect("start nginx");
        Nginx { child, dir, port }
    }

    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "stderr: {}\nerror.log: {}",
            read("stderr"),
            read("error.log")
        )
    }

    fn workers(&self) -> Vec<u32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn summary(&self) -> Summary {
        let (events, _) =
            epollscope::shim::merge::read_dir(&self.dir.join("trace")).expect("the trace");
        Summary::of(&events)
    }

    /// Waits until `ready` holds; past the deadline, or if nginx exits, stops the run.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&Nginx) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                fail(&format!(
                    "nginx exited ({status}) before {what}\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                fail(&format!("no {what} after {DEADLINE:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User + system CPU time of the master and its workers so far.
    fn cpu(&self) -> Duration {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        let mut sum = 0u64;
        for pid in std::iter::once(self.child.id()).chain(self.workers()) {
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

    /// Graceful stop (SIGQUIT); a master still there after the deadline stops the run.
    fn stop(mut self) {
        let master = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    fail(&format!("nginx did not stop on SIGQUIT\n{}", self.log()))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

fn fail(why: &str) -> ! {
    eprintln!("nginx_locality: {why}");
    // The Nginx guards of the caller are not dropped by exit: kill every nginx we started.
    for pgid in STARTED.lock().unwrap().iter() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(*pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::process::exit(1)
}

static STARTED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// One request on a new connection, every step with a timeout.
fn request(addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::with_capacity(256);
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    if resp.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("response {:?}", String::from_utf8_lossy(&resp)))
    }
}

/// `n` requests from one thread per CPU; the wall time.
fn load(port: u16, n: usize) -> Duration {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = n / threads + usize::from(t < n % threads);
                s.spawn(move || (0..share).try_for_each(|_| request(addr)))
            })
            .collect();
        for h in handles {
            if let Err(why) = h.join().unwrap() {
                fail(&format!("a request failed: {why}"));
            }
        }
    });
    start.elapsed()
}

struct Run {
    wall: Duration,
    cpu: Duration,
    local: Local,
    steering: Vec<String>,
}

fn run(lib: &str, env: &[(&str, &str)], n: usize, dir: PathBuf) -> Run {
    let mut nginx = Nginx::start(lib, env, dir);
    STARTED.lock().unwrap().push(nginx.child.id() as i32);
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
            let (events, _) =
                epollscope::shim::merge::read_dir(&x.dir.join("trace")).unwrap_or_default();
            let spawns = events
                .iter()
                .filter(|e| {
                    matches!(&e.call, Call::Builtin { name, .. } if name == "listen_spawn")
                        && matches!(e.ret, Ret::Ok { .. })
                })
                .count();
            spawns == WORKERS
        },
    );
    // Natively the shared listener is ready once a request is served.
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    nginx.wait_for("a served request", |_| request(addr).is_ok());
    let before = nginx.cpu();
    let wall = load(nginx.port, n);
    let cpu = nginx.cpu().saturating_sub(before);
    let summary = nginx.summary();
    let accepted: usize = summary.accepts.values().sum();
    if accepted < n {
        fail(&format!("{accepted} traced accepts for {n} requests"));
    }
    let steering = summary
        .steering
        .iter()
        .map(|s| {
            let s = s.split(" steers").next().unwrap_or(s);
            s.split(", worker").next().unwrap_or(s).to_string()
        })
        .collect();
    let run = Run {
        wall,
        cpu,
        local: summary.local_total(),
        steering,
    };
    nginx.stop();
    run
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
    let lib = match epollscope::shim::preload_path() {
        Ok(p) => p.display().to_string(),
        Err(why) => {
            eprintln!("nginx_locality: {why}");
            std::process::exit(2)
        }
    };
    let base = std::env::temp_dir().join(format!("nginx-locality-{}", std::process::id()));
    let mut runs: Vec<Vec<Run>> = SETUPS.iter().map(|_| vec![]).collect();
    for round in 0..rounds {
        for k in 0..SETUPS.len() {
            // Each round starts with another setup, so none always runs first.
            let i = (round + k) % SETUPS.len();
            let r = run(&lib, SETUPS[i].1, n, base.join(format!("{round}-{i}")));
            eprintln!(
                "round {round} {:<16} {:.3} s, server CPU {:.3} s, local {}",
                SETUPS[i].0,
                r.wall.as_secs_f64(),
                r.cpu.as_secs_f64(),
                r.local
            );
            runs[i].push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "nginx, {WORKERS} workers, traced, {n} requests (HTTP/1.0, a connection each), {threads} client threads, median of {rounds} rounds"
    );
    println!(
        "{:<18}{:>9}{:>10}{:>14}  {:<28}steering",
        "server", "wall s", "req/s", "server CPU s", "local accepts (all rounds)"
    );
    for (i, (name, _)) in SETUPS.iter().enumerate() {
        let mut walls: Vec<Duration> = runs[i].iter().map(|r| r.wall).collect();
        let mut cpus: Vec<Duration> = runs[i].iter().map(|r| r.cpu).collect();
        walls.sort();
        cpus.sort();
        let (t, c) = (walls[walls.len() / 2], cpus[cpus.len() / 2]);
        let mut local = Local::default();
        let mut how = std::collections::BTreeSet::new();
        for r in &runs[i] {
            local.add(r.local);
            how.extend(r.steering.iter().cloned());
        }
        let how: Vec<String> = how.into_iter().collect();
        println!(
            "{name:<18}{:>9.3}{:>10.0}{:>14.3}  {:<28}{}",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            c.as_secs_f64(),
            local.to_string(),
            if how.is_empty() {
                "-".into()
            } else {
                how.join("; ")
            }
        );
    }
}

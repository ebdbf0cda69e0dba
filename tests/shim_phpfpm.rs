//! PHP-FPM (the server the reproducers were written to understand) under the preload shim:
//! `pm = static` with 4 children and `pm = dynamic`, traced, and traced through the fast path.
//! Every FastCGI request (made with `cgi-fcgi`) is served, and every child's accepts in the
//! trace match the requests it answered, including a child killed with SIGKILL and the
//! children the master ends with SIGTERM on a graceful SIGQUIT: a process's trace survives
//! its death. The summary says how each process ended. Skipped, with the reason printed,
//! when php-fpm or cgi-fcgi is not installed (Debian: `apt-get install php-fpm libfcgi-bin`).

mod shim_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use epollscope::shim::merge::{self, End, Ended, Summary};
use shim_support::*;

const REQUESTS: usize = 100;

/// php-fpm is installed versioned (`php-fpm8.2`) on Debian, plain elsewhere.
fn fpm_binary() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(PathBuf::from)
        .collect();
    dirs.iter().find_map(|d| {
        let mut found: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
                    && p.is_file()
            })
            .collect();
        found.sort();
        found.pop()
    })
}

fn cgi_fcgi() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/bin"])
        .map(|d| Path::new(d).join("cgi-fcgi"))
        .find(|p| p.is_file())
}

/// Why the tests cannot run here, if they cannot.
fn missing() -> Option<&'static str> {
    if fpm_binary().is_none() {
        Some("php-fpm is not installed (apt-get install php-fpm)")
    } else if cgi_fcgi().is_none() {
        Some("cgi-fcgi is not installed (apt-get install libfcgi-bin)")
    } else {
        None
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone, Copy, PartialEq)]
enum Pm {
    Static,
    Dynamic,
}

/// A running php-fpm master; killed with its whole process group if the test fails.
struct Fpm {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Fpm {
    fn start(tag: &str, pm: Pm, fastsocket: bool) -> Fpm {
        let dir = trace_dir(tag);
        let port = free_port();
        let pool = match pm {
            Pm::Static => "pm = static\npm.max_children = 4\n",
            Pm::Dynamic => {
                "pm = dynamic\npm.max_children = 4\npm.start_servers = 2\n\
                 pm.min_spare_servers = 1\npm.max_spare_servers = 3\n"
            }
        };
        let conf = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/error.log\ndaemonize = no\n\
             [www]\nlisten = 127.0.0.1:{port}\n{pool}",
            d = dir.display()
        );
        std::fs::write(dir.join("pool.conf"), conf).unwrap();
        std::fs::write(dir.join("pid.php"), "<?php echo getmypid();\n").unwrap();
        std::fs::create_dir_all(dir.join("trace")).unwrap();
        let trace = format!("dir:{}", dir.join("trace").display());
        let mut vars = vec![("EPOLLSCOPE_TRACE", trace.as_str())];
        if fastsocket {
            vars.push(("EPOLLSCOPE_FASTPATH", "emulated"));
        }
        let mut cmd = Command::new(fpm_binary().unwrap());
        // -R: the tests may run as root; the pool then runs as root too, instead of refusing.
        cmd.args(["-F", "-R", "-y"])
            .arg(dir.join("pool.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .process_group(0);
        under_shim(&mut cmd, &vars);
        let child = cmd.spawn().expect("start php-fpm");
        Fpm { child, dir, port }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn log(&self) -> String {
        format!(
            "stderr: {}\nerror.log: {}",
            std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
        )
    }

    fn children(&self) -> BTreeSet<i32> {
        let pid = self.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Waits until `ready` holds, failing after 30 s with php-fpm's logs.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&Fpm) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("php-fpm exited ({status}) before {what}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what}\n{}", self.log());
            std::thread::yield_now();
        }
    }

    /// One FastCGI request: the pid of the child that answered it.
    fn request(&self) -> i32 {
        let out = Command::new(cgi_fcgi().unwrap())
            .args(["-bind", "-connect", &format!("127.0.0.1:{}", self.port)])
            .env("SCRIPT_FILENAME", self.dir.join("pid.php"))
            .env("REQUEST_METHOD", "GET")
            .env_remove("LD_PRELOAD")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let body = text.rsplit("\r\n\r\n").next().unwrap_or("");
        body.trim()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected answer {text:?}\n{}", self.log()))
    }

    /// Makes `n` requests; the requests each child answered (checked against the trace, in
    /// which every answering pid must be a traced child).
    fn serve(&self, n: usize, served: &mut BTreeMap<i32, usize>) {
        for _ in 0..n {
            let pid = self.request();
            assert_ne!(pid, self.pid(), "answered by the master");
            *served.entry(pid).or_default() += 1;
        }
    }

    /// Graceful shutdown: SIGQUIT to the master, which ends its children and exits 0.
    fn quit(mut self) -> (Vec<epollscope::trace::Event>, usize) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGQUIT,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "php-fpm exit {status}\n{}", self.log());
        let read = merge::read_dir(&self.dir.join("trace")).unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::mem::forget(self);
        read
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// Whether any fd of `pid` is the socket with inode `inode` (php-fpm's children move the
/// listener to fd 0, the FastCGI convention).
fn holds_socket(pid: i32, inode: u64) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == inode))
        })
        .unwrap_or(false)
}

fn listen_inode(pid: i32, fd: i64) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Successful accepts per pid, from the merged trace.
fn accepts(events: &[epollscope::trace::Event]) -> BTreeMap<i32, usize> {
    Summary::of(events).accepts
}

/// The whole story: start, serve, SIGKILL one child, serve again, graceful quit; then every
/// child's accepts in the trace are the requests it answered.
fn serve_kill_quit(tag: &str, pm: Pm, fastsocket: bool) {
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut fpm = Fpm::start(tag, pm, fastsocket);
    let ready_children = if pm == Pm::Static { 4 } else { 2 };
    fpm.wait_for("children and a listener", |f| {
        f.children().len() == ready_children
            && std::net::TcpStream::connect(("127.0.0.1", f.port)).is_ok()
    });
    let master = fpm.pid();
    // The probe connection above was accepted by a child and dropped: it counts as an accept
    // that answered nothing. Wait for it to be in the trace, then count from there.
    let probe_accepts = |f: &Fpm| {
        ok_calls(&trace_lines(&f.dir.join("trace")), "accept")
            .iter()
            .filter(|(pid, _)| *pid != master)
            .count()
    };
    fpm.wait_for("the readiness probe's accept", |f| probe_accepts(f) == 1);
    let probe = ok_calls(&trace_lines(&fpm.dir.join("trace")), "accept")[0].0;

    if fastsocket {
        // php-fpm's children accept without epoll: no listen_spawn, so they share the
        // master's listener, one socket, as they would with Fastsocket.
        let lines = trace_lines(&fpm.dir.join("trace"));
        let listen = ok_calls(&lines, "listen");
        assert_eq!(listen.len(), 1, "{listen:?}");
        let fd = listen[0].1["fd"]["num"].as_i64().unwrap();
        let inode = listen_inode(master, fd);
        assert_ne!(inode, 0);
        // A child still setting itself up may be between closing and moving its fds: wait
        // until every one holds the master's socket (a shim that gave the children listeners
        // of their own would never get there).
        fpm.wait_for("every child holding the master's listener", |f| {
            f.children().iter().all(|c| holds_socket(*c, inode))
        });
        assert!(
            !lines.iter().any(|(_, v)| v["name"] == "listen_spawn"),
            "no listen_spawn without epoll"
        );
    }

    let mut served = BTreeMap::new();
    fpm.serve(REQUESTS, &mut served);
    assert_eq!(served.values().sum::<usize>(), REQUESTS);

    // SIGKILL the child that answered most: its trace must hold every accept it made.
    let (&victim, _) = served.iter().max_by_key(|(_, n)| **n).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    fpm.wait_for("the master reaping the killed child", |f| {
        trace_lines(&f.dir.join("trace")).iter().any(|(pid, v)| {
            *pid == master && v["name"] == "waitpid" && v["ret"]["ok"]["value"] == victim
        })
    });
    fpm.serve(REQUESTS / 5, &mut served);

    let (events, bad) = fpm.quit();
    assert_eq!(bad, 0, "unreadable lines");
    let mut traced = accepts(&events);
    traced.remove(&master);
    *served.entry(probe).or_default() += 1;
    assert_eq!(traced, served, "accepts in the trace vs requests answered");

    let summary = Summary::of(&events);
    assert_eq!(
        summary.calls.get("listen_spawn"),
        None,
        "php-fpm never epolls its listener"
    );
    assert_eq!(summary.ends.get(&master), Some(&End::Exited(0)));
    assert_eq!(
        summary.ends.get(&victim),
        Some(&End::Reaped {
            by: master,
            how: Ended::Signal(libc::SIGKILL)
        })
    );
    // Every child's end is known: the master reaped each one.
    for pid in summary.pids.iter().filter(|p| **p != master) {
        let end = summary.ends.get(pid);
        assert!(
            matches!(end, Some(End::Reaped { by, .. }) if *by == master),
            "child {pid}: {end:?}\n{}",
            summary.render()
        );
    }
    assert!(
        summary
            .render()
            .contains(&format!("{victim} killed by SIGKILL (reaped by {master})")),
        "{}",
        summary.render()
    );
}

#[test]
fn phpfpm_static_traced_keeps_every_childs_accepts_through_sigkill_and_sigquit() {
    serve_kill_quit("fpm-static", Pm::Static, false);
}

#[test]
fn phpfpm_dynamic_traced_keeps_every_childs_accepts_through_sigkill_and_sigquit() {
    serve_kill_quit("fpm-dynamic", Pm::Dynamic, false);
}

#[test]
fn phpfpm_static_under_fastsocket_shares_the_listener_and_serves_everything() {
    serve_kill_quit("fpm-static-fast", Pm::Static, true);
}

#[test]
fn phpfpm_dynamic_under_fastsocket_shares_the_listener_and_serves_everything() {
    serve_kill_quit("fpm-dynamic-fast", Pm::Dynamic, true);
}

//! PHP-FPM (the server the reproducers were written to understand) under the preload shim:
//! `pm = static` with 4 children and `pm = dynamic`, traced, and traced through the fast path.
//! Every FastCGI request (made with `cgi-fcgi`) is served, and every child's accepts in the
//! trace match the requests it answered, including a child killed with SIGKILL and the
//! children the master ends with SIGTERM on a graceful SIGQUIT: a process's trace survives
//! its death. The summary says how each process ended. Skipped, with the reason printed,
//! when php-fpm or cgi-fcgi is not installed (Debian: `apt-get install php-fpm libfcgi-bin`).

mod servers;
mod shim_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use epollscope::shim::merge::{self, End, Ended, Summary};
use servers::phpfpm::{self, Fpm, Pm};
use shim_support::*;

const REQUESTS: usize = 100;

/// php-fpm traced by the shim, and through its fast path with `fastsocket`.
fn start(tag: &str, pm: Pm, fastsocket: bool) -> Fpm {
    let dir = trace_dir(tag);
    let trace = format!("dir:{}", dir.join("trace").display());
    let mut vars = vec![("EPOLLSCOPE_TRACE", trace.as_str())];
    if fastsocket {
        vars.push(("EPOLLSCOPE_FASTPATH", "emulated"));
    }
    Fpm::start(dir.clone(), pm, |cmd| {
        under_shim(cmd, &vars);
    })
    .unwrap()
}

/// Makes `n` requests; the requests each child answered (checked against the trace, in
/// which every answering pid must be a traced child).
fn serve(fpm: &Fpm, n: usize, served: &mut BTreeMap<i32, usize>) {
    for _ in 0..n {
        let pid = fpm.request().unwrap();
        assert_ne!(pid, fpm.pid(), "answered by the master");
        *served.entry(pid).or_default() += 1;
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
    if let Some(why) = phpfpm::missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut fpm = start(tag, pm, fastsocket);
    let ready_children = if pm == Pm::Static { 4 } else { 2 };
    fpm.wait_for("children and a listener", |f| {
        f.children().len() == ready_children
            && std::net::TcpStream::connect(("127.0.0.1", f.port())).is_ok()
    })
    .unwrap();
    let master = fpm.pid();
    // The probe connection above was accepted by a child and dropped: it counts as an accept
    // that answered nothing. Wait for it to be in the trace, then count from there.
    let probe_accepts = |f: &Fpm| {
        ok_calls(&trace_lines(&f.trace_dir()), "accept")
            .iter()
            .filter(|(pid, _)| *pid != master)
            .count()
    };
    fpm.wait_for("the readiness probe's accept", |f| probe_accepts(f) == 1)
        .unwrap();
    let probe = ok_calls(&trace_lines(&fpm.trace_dir()), "accept")[0].0;

    if fastsocket {
        // php-fpm's children accept without epoll: no listen_spawn, so they share the
        // master's listener, one socket, as they would with Fastsocket.
        let lines = trace_lines(&fpm.trace_dir());
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
        })
        .unwrap();
        assert!(
            !lines.iter().any(|(_, v)| v["name"] == "listen_spawn"),
            "no listen_spawn without epoll"
        );
    }

    let mut served = BTreeMap::new();
    serve(&fpm, REQUESTS, &mut served);
    assert_eq!(served.values().sum::<usize>(), REQUESTS);

    // SIGKILL the child that answered most: its trace must hold every accept it made.
    let (&victim, _) = served.iter().max_by_key(|(_, n)| **n).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    fpm.wait_for("the master reaping the killed child", |f| {
        trace_lines(&f.trace_dir()).iter().any(|(pid, v)| {
            *pid == master && v["name"] == "waitpid" && v["ret"]["ok"]["value"] == victim
        })
    })
    .unwrap();
    serve(&fpm, REQUESTS / 5, &mut served);

    // Graceful shutdown: SIGQUIT to the master, which ends its children and exits 0.
    fpm.quit().unwrap();
    let (events, bad) = merge::read_dir(&fpm.trace_dir()).unwrap();
    drop(fpm);
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

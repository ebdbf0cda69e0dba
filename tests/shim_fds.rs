//! The preload shim traces the other fds an event loop registers and the poll family (pipe,
//! pipe2, socketpair, eventfd, timerfd, poll, ppoll) as strace prints them, with the real fd
//! numbers the program got, and leaves their results alone.

mod shim_support;

use std::process::Command;

use shim_support::*;

/// A Python program that makes each call once and prints the fds it got, one line.
const PROGRAM: &str = r#"
import os, select, socket, time
r, w = os.pipe2(os.O_NONBLOCK)
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
ev = os.eventfd(0, os.EFD_NONBLOCK)
os.write(w, b"x")
p = select.poll()
p.register(r, select.POLLIN)
ready = p.poll(0)
pr, pw = os.pipe()
print(r, w, a.fileno(), b.fileno(), ev, pr, pw, len(ready))
"#;

fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import os; print(hasattr(os, 'eventfd'))"])
        .output()
        .ok()?;
    (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True")
        .then(|| "python3".to_string())
}

#[test]
fn pipes_socketpairs_eventfds_and_poll_are_traced_like_strace() {
    let Some(python) = python() else {
        println!("skipped: no python3 with os.eventfd (3.10 or later) on this machine");
        return;
    };
    let native = Command::new(&python)
        .args(["-c", PROGRAM])
        .output()
        .unwrap();
    assert!(native.status.success());
    let dir = trace_dir("fds");
    let out = under_shim(
        Command::new(&python).args(["-c", PROGRAM]),
        &[
            ("EPOLLSCOPE_TRACE", &format!("dir:{}", dir.display())),
            ("EPOLLSCOPE_TRACE_FORMAT", "raw"),
        ],
    )
    .output()
    .unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The program sees what it sees without the shim (fd numbers and poll's result).
    assert_eq!(stdout, String::from_utf8_lossy(&native.stdout));
    let n: Vec<&str> = stdout.split_whitespace().collect();
    let (r, w, a, b, ev, pr, pw) = (n[0], n[1], n[2], n[3], n[4], n[5], n[6]);
    assert_eq!(n[7], "1", "the pipe is readable");
    let text = trace_text(&dir);
    for wanted in [
        format!(" pipe2([{r}, {w}], O_NONBLOCK) = 0 <"),
        format!(" socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [{a}, {b}]) = 0 <"),
        format!(" eventfd2(0, EFD_NONBLOCK) = {ev} <"),
        format!(" poll([{{fd={r}, events=POLLIN}}], 1, 0) = 1 ([{{fd={r}, revents=POLLIN}}]) <"),
    ] {
        assert!(text.contains(&wanted), "missing {wanted:?} in:\n{text}");
    }
    // Python's os.pipe() is pipe2(O_CLOEXEC) in glibc terms, or pipe: either is traced.
    assert!(
        text.contains(&format!("([{pr}, {pw}], O_CLOEXEC) = 0"))
            || text.contains(&format!(" pipe([{pr}, {pw}]) = 0")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

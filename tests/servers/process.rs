//! A server started by a test or a benchmark, and the guarantees around it: it runs in a
//! process group of its own, so everything it forks can be found and killed by the group id;
//! its master dies with the thread that started it (PR_SET_PDEATHSIG), so even a killed
//! harness leaves nothing running; dropped before it was stopped (a failed test, a panic), it
//! is killed with its whole group. Its directory is removed only after a clean stop, and kept
//! with the server's logs after a failure.

use std::io::Write;
use std::marker::PhantomData;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long a server may take to be ready, or to stop.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Why a server did not do what was asked, its logs included. A test unwraps it (Debug writes
/// the text as it is, so the logs read as lines), a benchmark prints it.
pub struct Failure(pub String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A free loopback port (bound, read and released: the server binds it next).
pub fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure(format!("a free port: {e}")))
}

/// A child in a process group of its own, which dies with the thread that started it.
/// Dropped before it was reaped, it is killed with its whole group (SIGKILL) and reaped; after
/// it was reaped, whatever is left of its group is killed.
pub struct Group {
    child: Child,
    reaped: bool,
}

impl Group {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        cmd.process_group(0);
        epollscope::sys::process::die_with_parent_after_spawn(cmd, Signal::SIGKILL);
        Ok(Group {
            child: cmd.spawn()?,
            reaped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid is a pid_t")
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status if it has exited (then it is reaped).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// Says it was reaped by other means (wait4, for its resource usage).
    pub fn reaped_elsewhere(&mut self) {
        self.reaped = true;
    }

    /// Live (non-zombie) processes of its group.
    pub fn left(&self) -> Vec<i32> {
        processes_in_group(self.pid())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Once the leader is reaped its pid may be reused, but not while its group has members.
        if !self.reaped || !self.left().is_empty() {
            let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        }
        if !self.reaped {
            let _ = self.child.wait();
        }
    }
}

/// Live (non-zombie) processes in process group `pgid`, from /proc.
pub fn processes_in_group(pgid: i32) -> Vec<i32> {
    let mut found = vec![];
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in proc.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the ")" that ends the command name: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string() {
            found.push(pid);
        }
    }
    found
}

/// A running server of kind `K` (the kinds: `nginx::Kind`, `phpfpm::Kind`): its master
/// process, the directory that holds its configuration, logs and trace, and its port.
pub struct Server<K> {
    group: Group,
    name: &'static str,
    dir: PathBuf,
    port: u16,
    stopped: bool,
    kind: PhantomData<K>,
}

impl<K> Server<K> {
    /// Starts `cmd` (stdin and stdout closed, stderr into `dir/stderr`), which serves on
    /// `port` with its files in `dir`.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        dir: PathBuf,
        port: u16,
    ) -> Result<Self, Failure> {
        let stderr = std::fs::File::create(dir.join("stderr"))
            .map_err(|e| Failure(format!("{}/stderr: {e}", dir.display())))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let group = Group::spawn(&mut cmd).map_err(|e| Failure(format!("start {name}: {e}")))?;
        Ok(Server {
            group,
            name,
            dir,
            port,
            stopped: false,
            kind: PhantomData,
        })
    }

    /// The master's pid (also the group id).
    pub fn pid(&self) -> i32 {
        self.group.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the shim writes the trace, when the caller points it there.
    pub fn trace_dir(&self) -> PathBuf {
        self.dir.join("trace")
    }

    /// The server's stderr and its `error.log`.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "stderr: {}\nerror.log: {}",
            read("stderr"),
            read("error.log")
        )
    }

    /// The master's children (workers), from /proc.
    pub fn children(&self) -> Vec<i32> {
        let pid = self.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Waits until `ready` holds: fails if the server exits first or after [`DEADLINE`].
    pub fn wait_for(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + DEADLINE;
        while !ready(self) {
            if let Ok(Some(status)) = self.group.try_wait() {
                return Err(self.failure(&format!("{} exited ({status}) before {what}", self.name)));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("no {what} after {DEADLINE:?}")));
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    /// Graceful stop: SIGQUIT to the master, which stops its workers and exits 0 within
    /// [`DEADLINE`], leaving nothing of its group. The directory is removed when the server is
    /// dropped after this succeeded (read what is in it before).
    pub fn quit(&mut self) -> Result<(), Failure> {
        kill(Pid::from_raw(self.pid()), Signal::SIGQUIT)
            .map_err(|e| Failure(format!("SIGQUIT to {}: {e}", self.name)))?;
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            match self.group.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() <= deadline => std::thread::yield_now(),
                Ok(None) => {
                    return Err(self.failure(&format!(
                        "{} did not stop on SIGQUIT within {DEADLINE:?}",
                        self.name
                    )));
                }
                Err(e) => return Err(Failure(format!("wait for {}: {e}", self.name))),
            }
        };
        if !status.success() {
            return Err(self.failure(&format!("{} exit {status}", self.name)));
        }
        let left = self.group.left();
        if !left.is_empty() {
            return Err(Failure(format!("{} processes left: {left:?}", self.name)));
        }
        self.stopped = true;
        Ok(())
    }

    fn failure(&self, what: &str) -> Failure {
        Failure(format!("{what}\n{}", self.log()))
    }
}

impl<K> Drop for Server<K> {
    fn drop(&mut self) {
        // The group (a field) is killed after this, if it was not stopped.
        if self.stopped {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes `text` to `path`, as a [`Failure`] naming the file.
pub fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// Creates `dir` and its parents, as a [`Failure`] naming it.
pub fn create_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))
}

//! `epollscope trace` and `epollscope compare`: run any program under the preload shim, wait
//! for it, then print its merged multi-process trace and a summary, or compare a plain traced
//! run with one through the Fastsocket fast path.
//!
//! SIGINT/SIGTERM sent to epollscope are forwarded to the program (a terminal's Ctrl-C reaches
//! it directly), and the trace of what ran is still merged and printed once it has ended. The
//! program dies with epollscope, also on SIGKILL (parent-death signal).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use anyhow::{Context, anyhow, bail};
use epollscope::sys::process;
use epollscope::sys::signal::{self as signals, SignalSource};
use nix::errno::Errno;
use nix::sys::signal::Signal;

use epollscope::fastpath::Requested;
use epollscope::shim::ends::{End, Ended};
use epollscope::shim::merge::{self, Summary};
use epollscope::shim::{ShimMode, TraceTarget, preload_env};
use epollscope::trace::Format;

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Also route the calls through the Fastsocket fast path (backend chosen automatically).
    #[arg(long)]
    pub fastsocket: bool,
    /// Print the trace as JSON lines (one event per line) instead of strace-like lines. Without
    /// --output the program's own stdout goes to stderr, so that stdout is JSON only.
    #[arg(long)]
    pub json: bool,
    /// Write the trace and summary to FILE instead of stdout (the program keeps stdout).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write an HTML page to FILE: the trace as a timeline, one lane per process.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Keep the per-process trace files in DIR (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The program and its arguments (run twice: it should finish on its own).
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A trace directory that is removed afterwards unless the user chose it.
struct TraceDir {
    path: PathBuf,
    keep: bool,
}

impl TraceDir {
    fn new(chosen: Option<&Path>, tag: &str) -> anyhow::Result<TraceDir> {
        let (path, keep) = match chosen {
            Some(p) => (p.to_path_buf(), true),
            None => (
                std::env::temp_dir().join(format!("epollscope-{tag}-{}", std::process::id())),
                false,
            ),
        };
        if !keep {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the trace directory {}", path.display()))?;
        if std::fs::read_dir(&path)?.next().is_some() && keep {
            bail!(
                "{} is not empty (the shim appends to trace.<pid> files: use an empty directory)",
                path.display()
            );
        }
        Ok(TraceDir { path, keep })
    }
}

impl Drop for TraceDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How a run under the shim ended.
struct Run {
    /// The program's pid: epollscope is the one process that reaps it.
    pid: i32,
    status: ExitStatus,
    /// The first stop signal that came while the program ran.
    interrupted: Option<Signal>,
}

/// Runs `command` under the shim writing JSON traces to `dir` and waits for it, forwarding
/// SIGINT/SIGTERM sent to us; returns how it ended.
fn run_under_shim(
    command: &[String],
    dir: &Path,
    fastpath: Option<Requested>,
    stdout: Stdio,
) -> anyhow::Result<Run> {
    let env = preload_env(&ShimMode {
        trace: Some(TraceTarget::Dir(dir.to_path_buf())),
        json: true,
        fastpath,
    })
    .map_err(|e| anyhow!(e))?;
    let (program, args) = command.split_first().ok_or_else(|| anyhow!("no command"))?;
    refuse_static(program)?;
    // Blocked before the program starts, so that no stop signal and no SIGCHLD is missed; the
    // program itself starts with nothing blocked (Command resets the mask).
    let signals =
        SignalSource::new(signals::STOP_AND_CHILD).context("blocking SIGINT and SIGTERM")?;
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env).stdout(stdout);
    process::die_with_parent_after_spawn(&mut cmd, Signal::SIGKILL);
    let mut child = cmd.spawn().with_context(|| format!("running {program}"))?;
    let pid = process::Pid::from_raw(child.id() as i32);
    let mut interrupted = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the program")? {
            return Ok(Run {
                pid: pid.as_raw(),
                status,
                interrupted,
            });
        }
        let mut fds = [nix::poll::PollFd::new(
            signals.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(anyhow!("poll: {e}")),
        }
        while let Some((signal, by_process)) = signals.take_with_origin() {
            if signal == Signal::SIGCHLD {
                continue;
            }
            interrupted.get_or_insert(signal);
            if by_process {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

/// The summary of a run's events, with how the program itself ended: its own exit record
/// cannot say it was killed by a signal, but the wait status epollscope collected can.
fn summary_of(events: &[epollscope::Event], run: &Run) -> Summary {
    use std::os::unix::process::ExitStatusExt;
    let mut summary = Summary::of(events);
    summary.set_end(
        run.pid,
        End::Waited(Ended::from_wait_status(run.status.into_raw())),
    );
    summary
}

/// A statically linked program never loads the shim: say so before it runs, rather than
/// print an empty trace.
fn refuse_static(program: &str) -> anyhow::Result<()> {
    use epollscope::shim::elf::{Linkage, file_linkage, resolve};
    if let Some(path) = resolve(program)
        && file_linkage(&path) == Linkage::Static
    {
        bail!(
            "{} is statically linked: it has no dynamic loader, so the preload shim cannot \
             see its calls (trace it with `strace -f {program}` instead)",
            path.display()
        );
    }
    Ok(())
}

/// The exit code a shell would report for `status` (128 + signal when killed).
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    }
}

/// `epollscope trace`: the program's merged trace, then a summary; exits as the program did.
pub fn trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    // Checked (created) before the program runs: a bad path is bad input, not a lost trace.
    let mut output = match &args.output {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write --output {}", path.display()))?,
        ),
        None => None,
    };
    let mut html = match &args.html {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write --html {}", path.display()))?,
        ),
        None => None,
    };
    let dir = TraceDir::new(args.out.as_deref(), "trace")?;
    let fastpath = args.fastsocket.then_some(Requested::Auto);
    let program_stdout = if args.json && output.is_none() {
        Stdio::from(
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating stderr")?,
        )
    } else {
        Stdio::inherit()
    };
    let run = run_under_shim(&args.command, &dir.path, fastpath, program_stdout)?;
    let (events, bad) = merge::read_dir(&dir.path)?;
    let mut out = String::new();
    for e in &events {
        if args.json {
            out.push_str(&serde_json::to_string(e)?);
        } else {
            out.push_str(&e.render(Format::RAW.with_actors(true)));
        }
        out.push('\n');
    }
    if !args.json {
        out.push_str(&summary_of(&events, &run).render());
        if bad > 0 {
            out.push_str(&format!(
                "# {bad} unreadable lines (a process killed while writing)\n"
            ));
        }
        if let Some(signal) = run.interrupted {
            out.push_str(&format!(
                "# interrupted by {}: the program was stopped and its trace merged\n",
                signal.as_str()
            ));
        }
        if dir.keep {
            out.push_str(&format!("# per-process files in {}\n", dir.path.display()));
        }
    }
    use std::io::Write as _;
    if let (Some(file), Some(path)) = (&mut html, &args.html) {
        let panel = crate::html::Panel {
            heading: args.command.join(" "),
            passed: None,
            events: &events,
            failure: None,
            listing: epollscope::trace::render_all(&events, Format::RAW.with_actors(true)),
            lanes_by_pid: true,
        };
        let page = crate::html::page("epollscope trace", &[vec![panel]]);
        file.write_all(page.as_bytes())
            .with_context(|| format!("writing --html {}", path.display()))?;
    }
    match (&mut output, &args.output) {
        (Some(file), Some(path)) => file
            .write_all(out.as_bytes())
            .with_context(|| format!("writing --output {}", path.display()))?,
        _ => {
            let _ = std::io::stdout().write_all(out.as_bytes());
        }
    }
    Ok(ExitCode::from(exit_code(run.status)))
}

/// `epollscope compare`: the program traced natively, then under the fast path. A stop
/// signal ends the run in progress and starts no other; what ran is still shown.
pub fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut summaries = vec![];
    let mut worst = 0;
    let mut interrupted = None;
    for (tag, fastpath) in [("traced", None), ("fastsocket", Some(Requested::Auto))] {
        let dir = TraceDir::new(None, tag)?;
        let run = run_under_shim(&args.command, &dir.path, fastpath, Stdio::inherit())?;
        worst = worst.max(exit_code(run.status));
        let (events, _) = merge::read_dir(&dir.path)?;
        summaries.push(summary_of(&events, &run));
        if let Some(signal) = run.interrupted {
            interrupted = Some((signal, tag));
            break;
        }
    }
    if let [traced, fast] = &summaries[..] {
        print!(
            "{}",
            merge::compare_table(("traced", traced), ("fastsocket", fast))
        );
    } else {
        print!("# traced run\n{}", summaries[0].render());
    }
    if let Some((signal, tag)) = interrupted {
        println!("# interrupted by {} during the {tag} run", signal.as_str());
    }
    Ok(ExitCode::from(worst))
}

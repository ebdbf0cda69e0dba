//! `epollscope trace` and `epollscope compare`: run any program under the preload shim, wait
//! for it, then print its merged multi-process trace and a summary, or compare a plain traced
//! run with one through the Fastsocket fast path.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::{Context, anyhow, bail};

use epollscope::fastpath::Requested;
use epollscope::shim::merge::{self, Summary};
use epollscope::shim::{ShimMode, TraceTarget, preload_env};
use epollscope::trace::Format;

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Also route the calls through the Fastsocket fast path (backend chosen automatically).
    #[arg(long)]
    pub fastsocket: bool,
    /// Print the trace as JSON lines (one event per line) instead of strace-like lines.
    #[arg(long)]
    pub json: bool,
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

/// Runs `command` under the shim writing JSON traces to `dir`; returns its exit status.
fn run_under_shim(
    command: &[String],
    dir: &Path,
    fastpath: Option<Requested>,
) -> anyhow::Result<ExitStatus> {
    let env = preload_env(&ShimMode {
        trace: Some(TraceTarget::Dir(dir.to_path_buf())),
        json: true,
        fastpath,
    })
    .map_err(|e| anyhow!(e))?;
    let (program, args) = command.split_first().ok_or_else(|| anyhow!("no command"))?;
    Command::new(program)
        .args(args)
        .envs(env)
        .status()
        .with_context(|| format!("running {program}"))
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
    let dir = TraceDir::new(args.out.as_deref(), "trace")?;
    let fastpath = args.fastsocket.then_some(Requested::Auto);
    let status = run_under_shim(&args.command, &dir.path, fastpath)?;
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
        out.push_str(&Summary::of(&events).render());
        if bad > 0 {
            out.push_str(&format!(
                "# {bad} unreadable lines (a process killed while writing)\n"
            ));
        }
        if dir.keep {
            out.push_str(&format!("# per-process files in {}\n", dir.path.display()));
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(ExitCode::from(exit_code(status)))
}

/// `epollscope compare`: the program traced natively, then under the fast path.
pub fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut summaries = vec![];
    let mut worst = 0;
    for (tag, fastpath) in [("traced", None), ("fastsocket", Some(Requested::Auto))] {
        let dir = TraceDir::new(None, tag)?;
        let status = run_under_shim(&args.command, &dir.path, fastpath)?;
        worst = worst.max(exit_code(status));
        let (events, _) = merge::read_dir(&dir.path)?;
        summaries.push(Summary::of(&events));
    }
    print!(
        "{}",
        merge::compare_table(("traced", &summaries[0]), ("fastsocket", &summaries[1]))
    );
    Ok(ExitCode::from(worst))
}

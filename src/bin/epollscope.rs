//! epollscope: run scripted epoll/listen-socket scenarios and check what the kernel does.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use epollscope::cli;
use epollscope::scenario;

#[path = "epollscope/kernel.rs"]
mod kernel;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Test and diagnose how Linux epoll and listening sockets behave"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run scenario files (or every .scn file in the given directories).
    #[command(
        after_help = "Exit status: 0 when every scenario passed, 1 when one failed, \
2 on bad input (an unreadable or malformed scenario, a bad flag). With --under both: 0 when \
every native run passed (what the shim changes is reported, not failed)."
    )]
    Run(RunCmd),
    /// List the kernels `run --kernel` can boot: the running one and the images in /boot.
    Kernels,
    /// (internal) A scenario actor started by exec, serving the runner on fd 3.
    #[command(name = "__actor", hide = true)]
    Actor,
    /// Reassemble TCP flows from a pcap/pcapng file or live capture (mOS monitoring semantics).
    #[command(
        after_help = "Exit status: 0 when the input was read, 2 on bad input (unreadable, \
truncated or corrupt capture, unknown link type, no permission to capture)."
    )]
    Monitor(epollscope::monitor::cli::MonitorArgs),
    /// Run a program under the preload shim and print its socket and epoll calls, all processes.
    #[command(after_help = "Exit status: the program's own (128+N when killed by signal N).")]
    Trace(epollscope::shim::command::TraceArgs),
    /// Run a program traced, then under the Fastsocket fast path, and compare the two runs.
    Compare(epollscope::shim::command::CompareArgs),
}

#[derive(clap::Args, Debug)]
struct RunCmd {
    #[command(flatten)]
    run: scenario::cli::RunArgs,
    #[command(flatten)]
    kernel: kernel::KernelArgs,
}

/// `run`, on the running kernel or (with --kernel) on each kernel named.
fn run(cmd: RunCmd) -> anyhow::Result<ExitCode> {
    let RunCmd { run, kernel } = cmd;
    if kernel.kernels.is_empty() {
        return scenario::cli::run(run);
    }
    let unsupported = [
        (run.list, "--list"),
        (run.trace, "--trace"),
        (run.raw, "--raw"),
        (run.repeat != 1, "--repeat"),
        (run.capture.is_some(), "--capture"),
        (run.under != scenario::cli::Under::Native, "--under"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
        anyhow::bail!("{flag} cannot be combined with --kernel");
    }
    kernel::run_matrix(
        &kernel,
        kernel::Selection {
            paths: &run.paths,
            filter: run.filter.as_deref(),
            family: run.family.as_deref(),
            jobs: run.jobs,
            json: run.json,
            junit: run.junit.as_deref(),
        },
    )
}

fn main() -> ExitCode {
    cli::init();
    // Actors forked by actors are orphaned when a run tears down; adopt and reap them here
    // rather than leave zombies to an init that may not reap.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let args = Args::parse();
    cli::finish(
        "epollscope",
        match args.command {
            Cmd::Run(cmd) => run(cmd),
            Cmd::Kernels => kernel::list(),
            Cmd::Actor => scenario::actor_main(),
            Cmd::Monitor(args) => epollscope::monitor::cli::run(args),
            Cmd::Trace(args) => epollscope::shim::command::trace(args),
            Cmd::Compare(args) => epollscope::shim::command::compare(args),
        },
    )
}

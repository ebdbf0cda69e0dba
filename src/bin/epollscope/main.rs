//! epollscope: run scripted epoll/listen-socket scenarios and check what the kernel does.

use std::process::ExitCode;

use clap::Subcommand;
use epollscope::cli;
use epollscope::scenario;

mod explain;
mod fuzz;
mod fuzz_gen;
mod fuzz_kernel;
mod fuzz_shrink;
mod html;
mod kernel;
mod monitor;
mod outputs;
mod run;
mod trace;

#[derive(clap::Parser, Debug)]
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
every native run passed (what the shim changes is reported, not failed). With --kernel: 0 when \
every instance passed or was skipped on every kernel, 1 when one failed or a kernel gave no \
result (did not boot, or was killed at its deadline); 2 also when qemu or virtme-ng is missing."
    )]
    Run(run::RunArgs),
    /// List the kernels `run --kernel` can boot: the running one and the images in /boot.
    Kernels,
    /// Generate random scenarios from a seed, run them, and check them against the model of
    /// the documented contract (and the shims against native runs); shrink each finding.
    #[command(
        after_help = "Exit status: 0 when nothing was found, 1 when a finding was written \
(with --kernel: on any kernel, or a kernel gave no result), 2 on bad input (also an unknown \
kernel, or qemu or virtme-ng missing)."
    )]
    Fuzz(fuzz::FuzzArgs),
    /// (internal) A scenario actor started by exec, serving the runner on fd 3.
    #[command(name = "__actor", hide = true)]
    Actor,
    /// Reassemble TCP flows from a pcap/pcapng file or live capture (mOS monitoring semantics).
    #[command(after_help = monitor::EXIT_HELP)]
    Monitor(monitor::MonitorArgs),
    /// Run a program under the preload shim and print its socket and epoll calls, all processes.
    #[command(after_help = "Exit status: the program's own (128+N when killed by signal N).")]
    Trace(trace::TraceArgs),
    /// Run a program traced, then under the Fastsocket fast path, and compare the two runs.
    Compare(trace::CompareArgs),
}

fn main() -> ExitCode {
    // Actors forked by actors are orphaned when a run tears down; adopt and reap them here
    // rather than leave zombies to an init that may not reap.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    cli::main("epollscope", |args: Args| match args.command {
        Cmd::Run(args) => run::run(args),
        Cmd::Kernels => kernel::list(),
        Cmd::Fuzz(args) => fuzz::fuzz(args),
        Cmd::Actor => scenario::actor_main(),
        Cmd::Monitor(args) => monitor::run(args),
        Cmd::Trace(args) => trace::trace(args),
        Cmd::Compare(args) => trace::compare(args),
    })
}

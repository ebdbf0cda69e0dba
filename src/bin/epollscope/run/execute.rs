//! Running the instances: on a pool of threads, natively or under the Fastsocket shim, each
//! skipped when the kernel does not meet its requirement; SIGINT and SIGTERM stop it cleanly.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context;

use epollscope::addr::Family;
use epollscope::scenario::{RunOptions, Scenario, ScenarioReport, run_with};

/// How actors run under the Fastsocket shim: exec'd (LD_PRELOAD acts at exec) with the shim's
/// fast path on.
pub(super) fn fastsocket_options(base: &RunOptions) -> anyhow::Result<RunOptions> {
    let mode = epollscope::shim::ShimMode {
        fastpath: Some(epollscope::fastpath::Requested::Auto),
        ..Default::default()
    };
    let env = epollscope::shim::preload_env(&mode).map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe().context("locating the epollscope binary")?;
    Ok(RunOptions {
        actor_exe: Some(exe),
        env,
        ..base.clone()
    })
}

/// SIGINT and SIGTERM end the run cleanly: every actor is killed and every run's temporary
/// directory removed, then the program exits 128+N as a killed program would.
pub(super) fn stop_on_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked before any worker thread or actor starts, so only the waiting thread takes them.
    epollscope::sys::signal::block(epollscope::sys::signal::STOP)
        .context("blocking SIGINT/SIGTERM")?;
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            epollscope::scenario::abort_all();
            eprintln!("epollscope: stopped by {signal}; actors killed, temporary files removed");
            std::process::exit(128 + signal as i32);
        }
    });
    Ok(())
}

/// Reaps every exited child (adopted orphan actors) without blocking.
pub(super) fn reap_orphans() {
    epollscope::sys::process::reap_exited();
}

/// Why `scenario` cannot run on this kernel (its `kernel:` header), if it cannot.
fn unmet_requirement(scenario: &Scenario) -> Option<String> {
    let requirement = scenario.kernel.as_ref()?;
    match epollscope::vm::release::running() {
        Ok(release) => requirement.unmet_by(&release),
        Err(e) => Some(format!(
            "needs kernel {requirement}; the running kernel's release: {e}"
        )),
    }
}

/// Runs every instance `repeat` times on `jobs` threads; results in instance order.
pub(super) fn run_all(
    instances: &[(&Scenario, Family)],
    repeat: usize,
    jobs: usize,
    options: &RunOptions,
) -> Vec<Vec<ScenarioReport>> {
    let work: Vec<(usize, usize)> = (0..instances.len())
        .flat_map(|i| (0..repeat).map(move |r| (i, r)))
        .collect();
    let next = Mutex::new(0usize);
    let results = Mutex::new(BTreeMap::new());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && work.len() > 20;
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(work.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let item = {
                        let mut n = next.lock().expect("lock");
                        let item = work.get(*n).copied();
                        *n += 1;
                        item
                    };
                    let Some((i, r)) = item else { break };
                    let (scenario, family) = instances[i];
                    let report = match unmet_requirement(scenario) {
                        Some(reason) => ScenarioReport::skipped(scenario, family, reason),
                        None => run_with(scenario, family, options),
                    };
                    let mut done = results.lock().expect("lock");
                    done.insert((i, r), report);
                    if progress {
                        eprint!("\r{} of {} runs done", done.len(), work.len());
                    }
                }
            });
        }
    });
    if progress {
        eprintln!();
    }
    let mut by_instance: Vec<Vec<ScenarioReport>> = (0..instances.len()).map(|_| vec![]).collect();
    for ((i, _), report) in results.into_inner().expect("lock") {
        by_instance[i].push(report);
    }
    if epollscope::scenario::aborted() {
        // A stop signal ended the runs: its thread reports that and exits 128+N. What the
        // killed runs say is not a verdict, so nothing of it is printed.
        loop {
            std::thread::park();
        }
    }
    by_instance
}

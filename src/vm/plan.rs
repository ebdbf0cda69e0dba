//! Running one set of scenarios on every requested kernel: KVM or emulation chosen once, the
//! host kernel natively and the images in VMs (as many at once as the cores allow), the
//! results gathered into a [`Matrix`] in the order the kernels were given.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::VmError;
use super::guest::{self, Accel, GuestJob, Tools};
use super::image::Kernel;
use super::matrix::{KernelRun, Matrix};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelRequest {
    /// KVM when a probe guest boots under it, emulation otherwise.
    Auto,
    Kvm,
    Tcg,
}

/// Everything needed to run the matrix.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Each `--kernel` as given, resolved.
    pub kernels: Vec<(String, Kernel)>,
    pub accel: AccelRequest,
    pub exe: PathBuf,
    /// What follows the binary on every kernel (e.g. `run --json` and scenario paths).
    pub args: Vec<OsString>,
    /// Added after `args` in VMs only.
    pub vm_args: Vec<OsString>,
    /// Environment for the command on every kernel.
    pub env: Vec<(String, OsString)>,
    /// The command's output-directory flag and the directory on this machine under which each
    /// kernel's files land, in [`out_subdir`].
    pub out: Option<(OsString, PathBuf)>,
    pub cwd: PathBuf,
    pub boot_timeout: Duration,
    /// How long the host kernel's run may take.
    pub run_timeout: Duration,
    /// How long a VM's run may take once its script started.
    pub vm_run_timeout: Duration,
    pub scratch_parent: PathBuf,
    /// VMs booted at once.
    pub vm_slots: usize,
    /// The instances (path, family, name) every kernel should report.
    pub expected: Vec<(PathBuf, String, String)>,
}

/// What happens as the matrix runs, for a progress line.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The accelerator chosen for every VM and why.
    Accel { accel: Accel, why: String },
    /// One kernel finished (or was given up on).
    Done(&'a KernelRun),
}

fn choose_accel(plan: &Plan, tools: &Tools) -> (Accel, String) {
    let first_image = plan.kernels.iter().find_map(|(_, k)| match k {
        Kernel::Image(i) => Some(i),
        Kernel::Host(_) => None,
    });
    match (plan.accel, first_image) {
        (AccelRequest::Tcg, _) => (Accel::Tcg, "as asked (--accel tcg)".into()),
        (AccelRequest::Kvm, _) => (Accel::Kvm, "as asked (--accel kvm)".into()),
        (AccelRequest::Auto, None) => (Accel::Tcg, "no VM needed".into()),
        (AccelRequest::Auto, Some(image)) => {
            match guest::probe_kvm(tools, image, &plan.scratch_parent) {
                Ok(()) => (Accel::Kvm, "a KVM guest booted".into()),
                Err(why) => (Accel::Tcg, format!("KVM does not work here: {why}")),
            }
        }
    }
}

/// The subdirectory of [`Plan::out`] that holds a kernel's files: `host`, or the image's
/// release.
pub fn out_subdir(kernel: &Kernel) -> String {
    match kernel {
        Kernel::Host(_) => "host".into(),
        Kernel::Image(i) => i.release.text.clone(),
    }
}

/// What one kernel's guest run gave.
pub struct GuestRun<'a> {
    pub spec: &'a str,
    pub kernel: &'a Kernel,
    pub host: bool,
    /// The accelerator, for VMs.
    pub accel: Option<Accel>,
    /// The deadline its run had once started.
    pub run_timeout: Duration,
    pub outcome: Result<guest::GuestOutcome, VmError>,
}

/// Runs the plan. Set-up errors (missing tools) come before anything starts; a kernel that
/// fails to boot or hangs is a [`KernelRun`] with its error, not an `Err`.
pub fn run(plan: &Plan, progress: &(dyn Fn(Progress) + Sync)) -> Result<Matrix, VmError> {
    let kernels = run_each(
        plan,
        &|accel, why| progress(Progress::Accel { accel, why }),
        &|g: GuestRun| {
            let run = match g.outcome {
                Ok(outcome) => KernelRun::from_outcome(
                    g.spec.to_string(),
                    g.kernel.release().text.clone(),
                    g.host,
                    g.accel,
                    &outcome,
                    (plan.boot_timeout, g.run_timeout),
                ),
                Err(e) => KernelRun {
                    spec: g.spec.to_string(),
                    release: g.kernel.release().text.clone(),
                    host: g.host,
                    accel: g.accel,
                    boot_s: None,
                    wall_s: 0.0,
                    exit_status: None,
                    error: Some(e.to_string()),
                    instances: vec![],
                },
            };
            progress(Progress::Done(&run));
            run
        },
    )?;
    Ok(Matrix::build(plan.expected.clone(), kernels))
}

/// Runs the plan's command on every kernel (the host's natively, the images in VMs, as many
/// at once as `vm_slots`) and returns what `finish` makes of each, in the kernels' order.
/// `finish` is called as each kernel ends; `accel_chosen` once, before any VM boots.
pub fn run_each<R: Send>(
    plan: &Plan,
    accel_chosen: &(dyn Fn(Accel, String) + Sync),
    finish: &(dyn Fn(GuestRun) -> R + Sync),
) -> Result<Vec<R>, VmError> {
    let needs_vm = plan
        .kernels
        .iter()
        .any(|(_, k)| matches!(k, Kernel::Image(_)));
    let tools = if needs_vm { Some(Tools::find()?) } else { None };
    let accel = match &tools {
        Some(t) => {
            let (accel, why) = choose_accel(plan, t);
            accel_chosen(accel, why);
            accel
        }
        None => Accel::Tcg,
    };
    let run_one = |index: usize| -> R {
        let (spec, kernel) = &plan.kernels[index];
        let host = matches!(kernel, Kernel::Host(_));
        let mut args = plan.args.clone();
        if !host {
            args.extend(plan.vm_args.iter().cloned());
        }
        let run_timeout = if host {
            plan.run_timeout
        } else {
            plan.vm_run_timeout
        };
        let job = GuestJob {
            kernel: kernel.clone(),
            accel,
            exe: plan.exe.clone(),
            args,
            env: plan.env.clone(),
            out: plan
                .out
                .as_ref()
                .map(|(flag, base)| (flag.clone(), base.join(out_subdir(kernel)))),
            cwd: plan.cwd.clone(),
            boot_timeout: plan.boot_timeout,
            run_timeout,
            scratch_parent: plan.scratch_parent.clone(),
        };
        finish(GuestRun {
            spec,
            kernel,
            host,
            accel: (!host).then_some(accel),
            run_timeout,
            outcome: guest::run(&job, tools.as_ref()),
        })
    };

    let results: Mutex<Vec<Option<R>>> =
        Mutex::new((0..plan.kernels.len()).map(|_| None).collect());
    let vm_queue: Vec<usize> = (0..plan.kernels.len())
        .filter(|&i| matches!(plan.kernels[i].1, Kernel::Image(_)))
        .collect();
    let next = Mutex::new(0usize);
    let finish = |i: usize, run: R| {
        results.lock().expect("lock")[i] = Some(run);
    };
    std::thread::scope(|scope| {
        for i in (0..plan.kernels.len()).filter(|i| !vm_queue.contains(i)) {
            let (run_one, finish) = (&run_one, &finish);
            scope.spawn(move || finish(i, run_one(i)));
        }
        for _ in 0..plan.vm_slots.clamp(1, vm_queue.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let item = {
                        let mut n = next.lock().expect("lock");
                        let item = vm_queue.get(*n).copied();
                        *n += 1;
                        item
                    };
                    let Some(i) = item else { break };
                    finish(i, run_one(i));
                }
            });
        }
    });
    Ok(results
        .into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every kernel ran"))
        .collect())
}

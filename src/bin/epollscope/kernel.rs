//! `epollscope kernels` and `epollscope run --kernel ...`: the command-line side of the kernel
//! matrix (the work is in `epollscope::vm`).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use epollscope::addr::Family;
use epollscope::scenario::Scenario;
use epollscope::vm::image::{self, BOOT_DIR, Kernel};
use epollscope::vm::plan::{self, AccelRequest, Plan, Progress};
use epollscope::vm::{Accel, Tools};

/// The flags that pick kernels and run VMs (`run` and `fuzz`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct VmArgs {
    /// Run on this kernel: `host` (the running one, natively), a kernel image path, or a
    /// release found in /boot (see `epollscope kernels`). Repeat to compare kernels side by
    /// side; each image boots in a throw-away VM that sees this machine's files.
    #[arg(long = "kernel", value_name = "KERNEL")]
    pub kernels: Vec<String>,
    /// With --kernel: seconds a VM may take to boot before it is killed and reported.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        requires = "kernels"
    )]
    pub boot_timeout: u64,
    /// With --kernel: hardware virtualisation, plain emulation, or KVM when it works.
    #[arg(long, value_enum, default_value = "auto", requires = "kernels")]
    pub accel: AccelArg,
    /// (internal, set by --kernel for emulated guests) multiply every scenario's timeouts.
    #[arg(long, hide = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub timeout_scale: u32,
}

/// The `run` flags of the kernel matrix.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// With --kernel: print the comparison as a Markdown table (phenomenon x kernel).
    #[arg(long, requires = "kernels", conflicts_with = "json")]
    pub markdown: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelArg {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// How much longer scenario timeouts are inside a VM that may be emulated.
const VM_TIMEOUT_SCALE: u32 = 10;

/// What `run` selected, as the matrix needs it.
pub struct Selection<'a> {
    pub scenarios: &'a [Scenario],
    pub family: Option<Family>,
    pub jobs: Option<usize>,
    pub json: bool,
    /// The JUnit report's path and the file `run` already created there.
    pub junit: Option<(&'a Path, std::fs::File)>,
    /// The `--html` and `--tap` files, already opened.
    pub outputs: crate::outputs::Outputs,
}

/// `epollscope kernels`: the running kernel and every image in /boot, with releases.
pub fn list() -> anyhow::Result<ExitCode> {
    let host = image::resolve("host", Path::new(BOOT_DIR))?;
    println!("{:<40} {:<24} NOTE", "KERNEL", "RELEASE");
    println!(
        "{:<40} {:<24} the running kernel: scenarios run natively",
        "host",
        host.release()
    );
    for found in image::find_images(Path::new(BOOT_DIR))? {
        match found {
            Ok(i) => {
                let note = i
                    .missing
                    .as_deref()
                    .map_or(String::new(), |m| format!("not bootable here: {m}"));
                let line = format!("{:<40} {:<24} {note}", i.path.display(), i.release);
                println!("{}", line.trim_end());
            }
            Err(e) => println!("{:<40} {:<24} {e}", "", "?"),
        }
    }
    match Tools::find() {
        Ok(t) => println!("VMs: {} with {}", t.vng.display(), t.qemu.display()),
        Err(e) => println!("VMs: cannot boot images: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The most a kernel's run may take once its script started: the scenarios' own timeouts
/// laid out on `jobs` slots (a list schedule ends by sum/jobs + max), plus a minute for
/// starting and stopping processes in a slow guest.
fn run_allowance(scenarios: &[Scenario], family: Option<Family>, jobs: usize) -> Duration {
    let per_instance: Vec<Duration> = scenarios
        .iter()
        .flat_map(|s| {
            s.families
                .iter()
                .filter(move |&&f| family.is_none_or(|only| f == only))
                .map(move |_| s.timeout)
        })
        .collect();
    let sum: Duration = per_instance.iter().sum();
    let longest = per_instance.iter().max().copied().unwrap_or_default();
    let jobs = u32::try_from(jobs.max(1)).unwrap_or(u32::MAX);
    sum / jobs + longest + Duration::from_secs(60)
}

/// Each `--kernel` resolved, or the one-line error `run --kernel` gives for it.
pub fn resolve_kernels(specs: &[String]) -> anyhow::Result<Vec<(String, Kernel)>> {
    let mut kernels = vec![];
    for spec in specs {
        let kernel = image::resolve(spec, Path::new(BOOT_DIR))?;
        if let Kernel::Image(i) = &kernel
            && let Some(missing) = &i.missing
        {
            bail!("--kernel {spec}: {missing}");
        }
        kernels.push((spec.clone(), kernel));
    }
    Ok(kernels)
}

/// Jobs on each kernel: one per CPU by default, not the two of a plain run: an emulated guest
/// is slow enough that more at once push steps past their timeouts.
pub fn vm_jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// A plan to run `epollscope ARGS` on each of `kernels`, whose run may take `run_timeout`
/// natively (scaled in VMs, which also get `--timeout-scale`), and the scale.
pub fn vm_plan(
    vm: &VmArgs,
    kernels: Vec<(String, Kernel)>,
    args: Vec<OsString>,
    run_timeout: Duration,
) -> anyhow::Result<(Plan, u32)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Emulation runs a guest many times slower (BENCHMARKS.md: ~20x for the library); the
    // timeouts exist to catch hangs, so in VMs they stretch with it rather than fail slow steps.
    let scale = if vm.accel == AccelArg::Kvm {
        1
    } else {
        VM_TIMEOUT_SCALE
    };
    let plan = Plan {
        expected: vec![],
        kernels,
        accel: match vm.accel {
            AccelArg::Auto => AccelRequest::Auto,
            AccelArg::Kvm => AccelRequest::Kvm,
            AccelArg::Tcg => AccelRequest::Tcg,
        },
        exe: std::env::current_exe().context("locating the epollscope binary")?,
        args,
        vm_args: vec!["--timeout-scale".into(), scale.to_string().into()],
        env: vec![],
        out: None,
        // The guest sees the same files and starts in the same directory, so the paths stay
        // as given (and the reports name them as a plain run does).
        cwd: std::env::current_dir().context("reading the working directory")?,
        boot_timeout: Duration::from_secs(vm.boot_timeout),
        run_timeout,
        vm_run_timeout: run_timeout * scale,
        scratch_parent: std::env::temp_dir(),
        // Each guest gets every CPU; two at once only when there are cores to spare.
        vm_slots: (cpus / 2).max(1),
    };
    Ok((plan, scale))
}

/// The one line saying how VMs run.
pub fn say_accel(accel: Accel, why: &str, scale: u32) {
    match accel {
        Accel::Kvm => {
            eprintln!("epollscope: VMs use KVM, scenario timeouts x{scale} inside: {why}")
        }
        Accel::Tcg => eprintln!(
            "epollscope: VMs run emulated (TCG), slower, scenario timeouts x{scale} inside: {why}"
        ),
    }
}

/// The line saying one kernel's run ended: boot and wall time, and why it gave no result.
pub fn say_done(label: &str, boot_s: Option<f64>, wall_s: f64, error: Option<&str>) {
    let boot = boot_s.map_or(String::new(), |b| format!("booted in {b:.1} s, "));
    eprintln!(
        "epollscope: {label}: {boot}done in {wall_s:.1} s{}",
        error.map_or(String::new(), |e| format!(": {e}"))
    );
}

/// `run --kernel ...`: the same scenarios on each kernel, compared.
pub fn run_matrix(args: &KernelArgs, selection: Selection) -> anyhow::Result<ExitCode> {
    let scenarios = selection.scenarios;
    let kernels = resolve_kernels(&args.vm.kernels)?;
    let jobs = vm_jobs(selection.jobs);
    let mut run_args: Vec<OsString> = vec!["run".into(), "--json".into()];
    run_args.extend(scenarios.iter().map(|s| s.path.clone().into_os_string()));
    if let Some(family) = selection.family {
        run_args.extend(["--family".into(), family.name().into()]);
    }
    run_args.extend(["--jobs".into(), jobs.to_string().into()]);
    let run_timeout = run_allowance(scenarios, selection.family, jobs);
    let (mut plan, scale) = vm_plan(&args.vm, kernels, run_args, run_timeout)?;
    plan.expected = scenarios
        .iter()
        .flat_map(|s| {
            s.families
                .iter()
                .filter(|&&f| selection.family.is_none_or(|only| f == only))
                .map(|f| (s.path.clone(), f.name().to_string(), s.name()))
        })
        .collect();
    let matrix = plan::run(&plan, &|event| match event {
        Progress::Accel { accel, why } => say_accel(accel, &why, scale),
        Progress::Done(k) => say_done(
            &k.label(),
            k.boot_s.filter(|_| !k.host),
            k.wall_s,
            k.error.as_deref(),
        ),
    })?;
    if selection.json {
        println!("{}", serde_json::to_string_pretty(&matrix.to_json())?);
    } else if args.markdown {
        print!("{}", matrix.render_markdown());
    } else {
        print!("{}", matrix.render_text(60));
    }
    if let Some((path, mut file)) = selection.junit {
        std::io::Write::write_all(&mut file, matrix.render_junit().as_bytes())
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    selection.outputs.matrix(&matrix)?;
    Ok(if matrix.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! One kernel's run: `epollscope run --json ...` (or `fuzz --json ...`) natively (the host
//! kernel) or inside a VM booted with virtme-ng, with its results written to a shared directory.
//!
//! Clean-up does not depend on epollscope living to do it. Each run gets a scratch directory
//! and its processes one process group; a guard (`sh`, in a group of its own so Ctrl-C does
//! not reach it) holds the read end of a pipe and, when the pipe closes without the word
//! `done` (epollscope killed, by Ctrl-C or SIGKILL), kills the group and removes the directory.
//! The direct child also dies with its spawner (PDEATHSIG) for the moment before the guard
//! knows its group.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::image::{Kernel, KernelImage};
use super::{VmError, io};
use crate::sys::vm::{die_with_spawner, has_exited, reap_group};

/// The programs a VM run needs, found on PATH.
#[derive(Clone, Debug)]
pub struct Tools {
    pub vng: PathBuf,
    pub qemu: PathBuf,
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

impl Tools {
    /// Finds virtme-ng, qemu and busybox (virtme-ng builds the guest's initramfs with it), or
    /// names the package that provides the first one missing.
    pub fn find() -> Result<Tools, VmError> {
        let qemu = which("qemu-system-x86_64").ok_or(VmError::MissingTool {
            program: "qemu-system-x86_64",
            package: "qemu-system-x86 (apt)",
        })?;
        let vng = which("vng").ok_or(VmError::MissingTool {
            program: "vng",
            package: "virtme-ng (pip)",
        })?;
        which("busybox").ok_or(VmError::MissingTool {
            program: "busybox",
            package: "busybox-static (apt)",
        })?;
        Ok(Tools { vng, qemu })
    }

    /// PATH for virtme-ng: its own directory first, because `vng` runs `virtme-run` by name
    /// and a venv's scripts are often linked onto PATH one by one.
    fn vng_path(&self) -> OsString {
        let real = std::fs::canonicalize(&self.vng).unwrap_or_else(|_| self.vng.clone());
        let mut dirs: Vec<PathBuf> = real.parent().map(Path::to_path_buf).into_iter().collect();
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

/// How a guest's CPU is provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    /// qemu's own emulation (TCG): slower, works everywhere.
    Tcg,
}

impl Accel {
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "emulated (TCG)",
        }
    }
}

/// How long a KVM guest may take to print its first kernel line before KVM is judged not to
/// work. A working KVM needs well under a second; emulation is not tried here.
pub const KVM_PROBE: Duration = Duration::from_secs(5);

/// Whether KVM works for `image` on this machine: `Ok` or why not. `/dev/kvm` can exist and
/// open while guests still cannot run (nested virtualisation that stalls at boot), so the test
/// is a real boot: the kernel must print "Linux version" to its serial console in time.
pub fn probe_kvm(tools: &Tools, image: &KernelImage, scratch_parent: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm: {e}"));
    }
    let dir = new_scratch(scratch_parent).map_err(|e| e.to_string())?;
    let mut guard = Guard::new(dir.clone()).map_err(|e| e.to_string())?;
    let console = dir.join("console");
    let mut serial = OsString::from("file:");
    serial.push(&console);
    let mut command = Command::new(&tools.qemu);
    command
        .args([
            "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "256",
        ])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-serial"])
        .arg(serial)
        .arg("-kernel")
        .arg(&image.path)
        .args(["-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    die_with_spawner(&mut command);
    let child = command.spawn().map_err(|e| format!("starting qemu: {e}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    guard.watch(child);
    let start = Instant::now();
    loop {
        let text = std::fs::read(&console).unwrap_or_default();
        if text.windows(13).any(|w| w == b"Linux version") {
            return Ok(());
        }
        if has_exited(pid).unwrap_or(true) {
            return Err("qemu exited before the kernel printed".into());
        }
        if start.elapsed() > KVM_PROBE {
            return Err(format!(
                "a KVM guest printed nothing in {} s",
                KVM_PROBE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One kernel's run of `epollscope ARGS` (e.g. `run --json ...`), whose standard output is
/// the result document.
#[derive(Clone, Debug)]
pub struct GuestJob {
    pub kernel: Kernel,
    pub accel: Accel,
    /// The epollscope binary (the guest sees this machine's file system, so the same path).
    pub exe: PathBuf,
    /// What follows the binary: the subcommand, its flags and scenario paths.
    pub args: Vec<OsString>,
    /// Environment set for the command.
    pub env: Vec<(String, OsString)>,
    /// A flag naming a directory for the files the command writes (e.g. `--out`) and where on
    /// this machine they are copied after the run: the guest writes only to the shared
    /// scratch directory, so the flag gets a directory inside it.
    pub out: Option<(OsString, PathBuf)>,
    pub cwd: PathBuf,
    /// From start until the guest's script runs (VM boot).
    pub boot_timeout: Duration,
    /// From the script's start until it ends: the scenarios' own timeouts, summed per job slot.
    pub run_timeout: Duration,
    /// Where the scratch directory is made.
    pub scratch_parent: PathBuf,
}

/// The phase a run was killed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Boot,
    Run,
}

/// What came back from one kernel.
#[derive(Clone, Debug)]
pub struct GuestOutcome {
    /// `uname -r` inside, when the script got that far.
    pub release: Option<String>,
    /// From start to the script's first line (the VM boot; ~0 on the host).
    pub boot_time: Option<Duration>,
    pub wall: Duration,
    /// The exit status of `epollscope run` inside.
    pub status: Option<i32>,
    /// Its JSON document, exactly as written.
    pub json: Option<String>,
    /// Its standard error.
    pub stderr: String,
    /// The end of what virtme-ng and the guest console printed (for a failed boot).
    pub console: String,
    pub timed_out: Option<Phase>,
    /// The names of the files copied from the command's output directory (`GuestJob::out`).
    pub files: Vec<String>,
}

impl GuestOutcome {
    /// Why the run gave no result (killed at a deadline, `epollscope COMMAND` exited with a
    /// status other than 0 or 1, or the guest ended without one), or `None` when its
    /// standard output is the result. `timeouts` are the boot and run deadlines it had.
    pub fn no_result(&self, command: &str, timeouts: (Duration, Duration)) -> Option<String> {
        match (self.timed_out, self.status) {
            (Some(Phase::Boot), _) => Some(format!(
                "the guest did not start its scenarios within {} s and was killed",
                timeouts.0.as_secs()
            )),
            (Some(Phase::Run), _) => Some(format!(
                "the guest ran past the scenarios' timeouts ({} s) and was killed",
                timeouts.1.as_secs()
            )),
            (None, Some(0 | 1)) if self.json.is_some() => None,
            (None, Some(status)) => {
                let first = self.stderr.lines().next().unwrap_or("").trim();
                Some(format!("epollscope {command} exited {status}: {first}"))
            }
            (None, None) => {
                let last = self
                    .console
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("(nothing printed)")
                    .trim();
                Some(format!(
                    "the guest gave no result; its console ended: {last}"
                ))
            }
        }
    }
}

/// Single-quotes `arg` for sh.
fn sh_quote(arg: &OsStr) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in arg.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The command's output directory inside the scratch directory.
const OUT_DIR: &str = "out";

/// The script run on the kernel: what it writes is the whole protocol.
fn script(job: &GuestJob, dir: &Path) -> Vec<u8> {
    let q = |p: &Path| sh_quote(p.as_os_str());
    let file = |name: &str| q(&dir.join(name));
    let mut s = Vec::new();
    s.extend_from_slice(b"cd ");
    s.extend(q(&job.cwd));
    s.extend_from_slice(b" || exit 125\nuname -r > ");
    s.extend(file("release"));
    s.extend_from_slice(b"\n: > ");
    s.extend(file("started"));
    s.push(b'\n');
    if matches!(job.kernel, Kernel::Image(_)) {
        // The guest's root is this machine's, read-only; its /tmp is a fresh writable overlay.
        s.extend_from_slice(b"TMPDIR=/tmp; export TMPDIR\n");
    }
    for (name, value) in &job.env {
        s.extend_from_slice(format!("{name}=").as_bytes());
        s.extend(sh_quote(value));
        s.extend_from_slice(format!("; export {name}\n").as_bytes());
    }
    s.extend(q(&job.exe));
    for arg in &job.args {
        s.push(b' ');
        s.extend(sh_quote(arg));
    }
    if let Some((flag, _)) = &job.out {
        s.push(b' ');
        s.extend(sh_quote(flag));
        s.push(b' ');
        s.extend(file(OUT_DIR));
    }
    s.extend_from_slice(b" > ");
    s.extend(file("result.json"));
    s.extend_from_slice(b" 2> ");
    s.extend(file("stderr"));
    s.extend_from_slice(b"\necho $? > ");
    s.extend(file("status.tmp"));
    // The status appears whole or not at all; sync so a guest powering off loses nothing.
    s.extend_from_slice(b"\nmv ");
    s.extend(file("status.tmp"));
    s.push(b' ');
    s.extend(file("status"));
    s.extend_from_slice(b"\nsync\n");
    s
}

/// The guard: kills the run's process group and removes its directory unless told `done`.
const GUARD: &str = r#"read group; read word
[ "$word" = done ] && exit 0
[ -n "$group" ] && kill -KILL "-$group" 2>/dev/null
rm -rf -- "$1""#;

struct Guard {
    dir: PathBuf,
    guard: Child,
    to_guard: Option<ChildStdin>,
    child: Option<Child>,
}

impl Guard {
    fn new(dir: PathBuf) -> Result<Guard, VmError> {
        let mut guard = Command::new("sh")
            .args(["-c", GUARD, "epollscope-guard"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("starting the clean-up guard (sh)"))?;
        let to_guard = guard.stdin.take();
        Ok(Guard {
            dir,
            guard,
            to_guard,
            child: None,
        })
    }

    fn watch(&mut self, child: Child) {
        if let Some(pipe) = &mut self.to_guard {
            let _ = writeln!(pipe, "{}", child.id());
        }
        self.child = Some(child);
    }

    fn group(&self) -> Option<Pid> {
        let id = self.child.as_ref()?.id();
        i32::try_from(id).ok().map(Pid::from_raw)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(group), Some(child)) = (self.group(), self.child.as_mut()) {
            // The leader is not reaped yet, so the group id is still ours to kill.
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            reap_group(group);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut pipe) = self.to_guard.take() {
            let _ = writeln!(pipe, "done");
        }
        let _ = self.guard.wait();
    }
}

fn new_scratch(parent: &Path) -> Result<PathBuf, VmError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = parent.join(format!(
        "epollscope-kernel-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The last `max` bytes of a file, as text.
fn tail(path: &Path, max: usize) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// Copies the regular files of `from` (not its subdirectories) to `to`, which is created; the
/// names copied, sorted.
fn copy_files(from: &Path, to: &Path) -> Result<Vec<String>, VmError> {
    let mut names = vec![];
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(names);
    };
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let dest = to.join(entry.file_name());
            std::fs::copy(entry.path(), &dest)
                .map_err(io(format!("copying the guest's {}", dest.display())))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs the job and returns what came back. Errors are set-up failures (no directory, no
/// process); a guest that fails to boot or hangs is an outcome, not an error.
pub fn run(job: &GuestJob, tools: Option<&Tools>) -> Result<GuestOutcome, VmError> {
    let dir = new_scratch(&job.scratch_parent)?;
    let mut guard = Guard::new(dir.clone())?;
    let script_path = dir.join("guest.sh");
    std::fs::write(&script_path, script(job, &dir))
        .map_err(io(format!("writing {}", script_path.display())))?;
    let console_path = dir.join("console.log");
    let console = std::fs::File::create(&console_path)
        .map_err(io(format!("creating {}", console_path.display())))?;
    let console_err = console
        .try_clone()
        .map_err(io("duplicating the console file"))?;

    let mut command = match &job.kernel {
        Kernel::Host(_) => {
            let mut c = Command::new("sh");
            c.arg(&script_path);
            c
        }
        Kernel::Image(image) => {
            let tools = tools.ok_or(VmError::MissingTool {
                program: "vng",
                package: "virtme-ng (pip)",
            })?;
            let dir_bytes = dir.as_os_str().as_bytes();
            if dir_bytes.iter().any(|b| matches!(b, b',' | b'=' | b' ')) {
                return Err(VmError::UnsharablePath(dir));
            }
            let mut c = Command::new(&tools.vng);
            c.arg("--run").arg(&image.path);
            if job.accel == Accel::Tcg {
                c.arg("--disable-kvm");
            }
            let mut rwdir = OsString::from("--rwdir=");
            rwdir.push(&dir);
            c.arg(rwdir).arg("--qemu").arg(&tools.qemu);
            let mut command = OsString::from("sh ");
            command.push(script_path.as_os_str());
            c.arg("--").arg(command);
            // virtme-ng's own temporary files then live (and die) in the scratch directory.
            c.env("TMPDIR", &dir).env("PATH", tools.vng_path());
            c
        }
    };
    command
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        .process_group(0);
    die_with_spawner(&mut command);
    let spawned = SystemTime::now();
    let start = Instant::now();
    let child = command
        .spawn()
        .map_err(io(format!("starting {:?}", command.get_program())))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    guard.watch(child);

    let started_path = dir.join("started");
    let mut started_at: Option<Instant> = None;
    let mut timed_out = None;
    loop {
        if has_exited(pid).unwrap_or(true) {
            break;
        }
        if started_at.is_none() && started_path.exists() {
            started_at = Some(Instant::now());
        }
        let (deadline, phase) = match started_at {
            None => (start + job.boot_timeout, Phase::Boot),
            Some(t) => (t + job.run_timeout, Phase::Run),
        };
        if Instant::now() >= deadline {
            timed_out = Some(phase);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed();
    // The file's time is this machine's clock at the guest's write: exact to the write, not
    // to this loop's polling.
    let boot_time = std::fs::metadata(&started_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(spawned).ok());
    let status = read_text(&dir.join("status")).and_then(|s| s.trim().parse::<i32>().ok());
    let outcome = GuestOutcome {
        release: read_text(&dir.join("release")).map(|s| s.trim().to_string()),
        boot_time,
        wall,
        status,
        json: if status.is_some() {
            read_text(&dir.join("result.json"))
        } else {
            None
        },
        stderr: read_text(&dir.join("stderr")).unwrap_or_default(),
        console: tail(&console_path, 4096),
        timed_out,
        files: match &job.out {
            Some((_, dest)) if status.is_some() => copy_files(&dir.join(OUT_DIR), dest)?,
            _ => vec![],
        },
    };
    drop(guard);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(sh_quote(OsStr::new("a b")), b"'a b'");
        assert_eq!(sh_quote(OsStr::new("it's")), b"'it'\\''s'");
    }
}

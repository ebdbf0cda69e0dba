//! `epollscope run --kernel ...` end to end: the same scenarios on the running kernel and on
//! Debian's 6.1 in a VM, compared side by side and as JSON; bad kernels and missing tools as
//! bad input; a guest killed at its deadline; nothing (process or directory) left behind.
//!
//! The VM tests need qemu-system-x86, busybox-static, virtme-ng and linux-image-amd64 (6.1);
//! `.ci/run` installs them. Elsewhere they skip with the reason printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{run_clean, stderr, stdout, tool};
use epollscope::vm::Release;
use epollscope::vm::release::Version;

/// A fresh directory to be the tool's TMPDIR: every scratch directory the matrix makes lands
/// here, and every process it starts carries it in its environment.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("es-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Live processes whose environment holds `TMPDIR=<dir>` (the tool's children and theirs).
fn processes_with_tmpdir(dir: &Path) -> Vec<String> {
    let needle = format!("TMPDIR={}", dir.display());
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie
            && environ
                .split(|&b| b == 0)
                .any(|var| var.starts_with(needle.as_bytes()))
        {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{name} {}", comm.trim()));
        }
    }
    found
}

/// Runs the tool with its own TMPDIR and checks that afterwards no process it started lives on
/// and its scratch directories are gone.
fn run_matrix(tag: &str, args: &[&str]) -> Output {
    let tmp = scratch(tag);
    let out = run_clean(tool("epollscope").env("TMPDIR", &tmp).args(args));
    let left = processes_with_tmpdir(&tmp);
    assert!(
        left.is_empty(),
        "processes left behind: {left:?}\n{}",
        stderr(&out)
    );
    let files: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}\n{}", stderr(&out));
    std::fs::remove_dir(&tmp).unwrap();
    out
}

/// Debian's 6.1 image (`linux-image-amd64`, not the rt or cloud flavour) and the VM tools, or
/// why the VM tests cannot run here.
fn debian_61() -> Result<String, String> {
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
    };
    for program in ["vng", "qemu-system-x86_64", "busybox"] {
        if !on_path(program) {
            return Err(format!("{program} is not installed (see .ci/run)"));
        }
    }
    let mut releases: Vec<String> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("vmlinuz-").map(str::to_string)
        })
        .filter(|r| {
            r.starts_with("6.1.")
                && r.ends_with("-amd64")
                && !r.contains("-rt-")
                && !r.contains("cloud")
        })
        .collect();
    releases.sort();
    releases
        .pop()
        .ok_or_else(|| "no /boot/vmlinuz-6.1.*-amd64 (install linux-image-amd64)".into())
}

/// One VM at a time: two emulated guests on a 2-core machine only slow each other down.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Debian 6.1 release and the VM lock, or return after printing why the test skips.
macro_rules! need_61 {
    () => {
        match debian_61() {
            Ok(release) => (
                release,
                ONE_VM
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

const SCENARIOS: [&str; 2] = [
    "scenarios/herd-epollexclusive.scn",
    "scenarios/oneshot-rearm.scn",
];

fn running_release() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn host_and_debian_61_side_by_side() {
    let (release, _vm) = need_61!();
    // Runs on 6.1; on the host only when it is older than 6.2 too.
    let old_only = scenario_file("old-only", &needing("< 6.2"));
    let host = running_release();
    let host_is_new = Release::parse(&host).unwrap().version >= Version(6, 2, 0);
    let mut args = vec!["run", "--kernel", "host", "--kernel", &release];
    args.extend(SCENARIOS);
    args.push(old_only.to_str().unwrap());
    let out = run_matrix("text", &args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    let (host_counts, old_only_line) = if host_is_new {
        (
            "5 passed, 0 failed, 1 skipped",
            format!("{} [unix]: {host} SKIP, {release} PASS", old_only.display()),
        )
    } else {
        (
            "6 passed, 0 failed, 0 skipped",
            format!(
                "{} [unix]: {host} PASS, {release} PASS, same trace",
                old_only.display()
            ),
        )
    };
    for line in [
        format!(
            "scenarios/herd-epollexclusive.scn [inet]: {host} PASS, {release} PASS, same trace"
        ),
        format!("scenarios/oneshot-rearm.scn [unix]: {host} PASS, {release} PASS, same trace"),
        format!("{host} (host): {host_counts}"),
        old_only_line,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("{release} ("))
            && last.ends_with(&format!(
                "): 6 passed, 0 failed, 0 skipped; 0 traces differ from {host}"
            )),
        "{last}"
    );
    // One line says how the VM ran and one how long each kernel took.
    let err = stderr(&out);
    assert!(err.contains("epollscope: VMs "), "{err}");
    assert!(err.contains(", scenario timeouts x10 inside: "), "{err}");
    assert!(
        err.contains(&format!("epollscope: {release} (")) && err.contains("booted in"),
        "{err}"
    );
    if host_is_new {
        assert!(
            text.contains(&format!(
                "  {host}: skipped: needs kernel < 6.2, this is {host}\n"
            )),
            "{text}"
        );
    }
    std::fs::remove_dir_all(old_only.parent().unwrap()).unwrap();
}

#[test]
fn json_and_junit_name_each_instance_kernel() {
    let (release, _vm) = need_61!();
    let junit = scratch("junit-out").join("report.xml");
    let mut args = vec![
        "run", "--json", "--kernel", &release, "--kernel", "host", "--junit",
    ];
    let junit_arg = junit.to_str().unwrap().to_string();
    args.push(&junit_arg);
    args.extend(SCENARIOS);
    let out = run_matrix("json", &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let host = running_release();
    assert_eq!(doc["kernels"][0]["release"], release.as_str());
    assert_eq!(doc["kernels"][0]["host"], false);
    assert!(["tcg", "kvm"].contains(&doc["kernels"][0]["accel"].as_str().unwrap()));
    assert!(doc["kernels"][0]["boot_s"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["kernels"][1]["release"], host.as_str());
    assert_eq!(doc["kernels"][1]["exit_status"], 0);
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 5);
    for instance in instances {
        let cells = instance["kernels"].as_array().unwrap();
        assert_eq!(cells[0]["kernel_release"], release.as_str());
        assert_eq!(cells[1]["kernel_release"], host.as_str());
        for cell in cells {
            assert_eq!(cell["verdict"], "pass", "{instance}");
            assert!(
                cell["symbolic_trace"]
                    .as_str()
                    .unwrap()
                    .contains("epoll_wait")
            );
        }
        assert_eq!(instance["same_trace"], true, "{instance}");
    }
    assert_eq!(doc["totals"][0]["counts"]["passed"], 5);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("<testsuite name=\"epollscope on {release}\"")),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("name=\"oneshot-rearm [unix] on {host}\"")),
        "{xml}"
    );
    std::fs::remove_dir_all(junit.parent().unwrap()).unwrap();
}

#[test]
fn a_guest_past_its_boot_deadline_is_killed_and_reported() {
    let (release, _vm) = need_61!();
    let out = run_matrix(
        "deadline",
        &[
            "run",
            "--accel",
            "tcg",
            "--boot-timeout",
            "0",
            "--kernel",
            &release,
            SCENARIOS[1],
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(
        text.starts_with(&format!(
            "{release} (emulated (TCG)): the guest did not start its scenarios within 0 s and was killed\n"
        )),
        "{text}"
    );
}

#[test]
fn the_host_kernel_alone_needs_no_vm() {
    let out = run_matrix("host", &["run", "--json", "--kernel", "host", SCENARIOS[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["kernels"][0]["release"], running_release().as_str());
    assert_eq!(doc["kernels"][0]["host"], true);
    assert_eq!(doc["kernels"][0]["accel"], serde_json::Value::Null);
    assert_eq!(doc["instances"][0]["kernels"][0]["verdict"], "pass");
}

/// The `--html` page's sections (one per instance), each cut into its panels (one per kernel).
fn html_panels(page: &str) -> Vec<Vec<String>> {
    page.split("<section class=\"instance ")
        .skip(1)
        .map(|section| {
            section
                .split("<div class=\"panel")
                .skip(1)
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The herd with EPOLLEXCLUSIVE over unix sockets: main and four waiters, one of them woken,
/// three asleep to the end.
fn check_herd_panel(panel: &str, label: &str) {
    assert!(
        panel.contains(&format!(
            "<h2>PASS scenarios/herd-epollexclusive.scn [unix] on {label}</h2>"
        )),
        "{panel}"
    );
    assert_eq!(count(panel, "<g class=\"lane\""), 5, "{panel}");
    assert_eq!(count(panel, "<path class=\"wake\""), 1, "{panel}");
    assert_eq!(count(panel, "<rect class=\"bar open"), 3, "{panel}");
    assert!(panel.contains("<pre class=\"listing\">[main] socket(AF_UNIX"));
}

#[test]
fn html_and_tap_of_the_host_kernel_need_no_vm() {
    let reports = scratch("host-html-out");
    let (html, tap) = (reports.join("report.html"), reports.join("report.tap"));
    let out = run_matrix(
        "host-html",
        &[
            "run",
            "--kernel",
            "host",
            "--family",
            "unix",
            "--html",
            html.to_str().unwrap(),
            "--tap",
            tap.to_str().unwrap(),
            SCENARIOS[0],
            "tests/data/failing-step.scn",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let host = running_release();
    let page = std::fs::read_to_string(&html).unwrap();
    let panels = html_panels(&page);
    assert_eq!(panels.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    check_herd_panel(&panels[0][0], &format!("{host} (host)"));
    assert!(panels[1][0].contains(&format!(
        "<h2>FAIL tests/data/failing-step.scn [unix] on {host} (host)</h2>"
    )));
    assert_eq!(count(&panels[1][0], "failing-step\""), 1);
    assert!(page.contains("<label for=\"only-fail\">FAIL (1)</label>"));
    let tap = std::fs::read_to_string(&tap).unwrap();
    assert_eq!(
        tap.lines().take(4).collect::<Vec<_>>(),
        [
            "TAP version 13".to_string(),
            "1..2".into(),
            format!("ok 1 - {} [unix] on {host}", SCENARIOS[0]),
            format!("not ok 2 - tests/data/failing-step.scn [unix] on {host}"),
        ]
    );
    assert!(
        tap.contains("  at: \"tests/data/failing-step.scn:13:1\"\n"),
        "{tap}"
    );
    std::fs::remove_dir_all(reports).unwrap();
}

#[test]
fn html_puts_each_kernels_run_side_by_side() {
    let (release, _vm) = need_61!();
    let reports = scratch("vm-html-out");
    let html = reports.join("report.html");
    let out = run_matrix(
        "vm-html",
        &[
            "run",
            "--kernel",
            "host",
            "--kernel",
            &release,
            "--family",
            "unix",
            "--html",
            html.to_str().unwrap(),
            SCENARIOS[0],
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    let panels = html_panels(&page);
    assert_eq!(panels.len(), 1, "{page}");
    assert_eq!(panels[0].len(), 2, "{page}");
    check_herd_panel(&panels[0][0], &format!("{} (host)", running_release()));
    // The guest's own events, with its own times: the same picture from the other kernel.
    let accel = if page.contains(&format!("{release} (KVM)")) {
        "KVM"
    } else {
        "emulated (TCG)"
    };
    check_herd_panel(&panels[0][1], &format!("{release} ({accel})"));
    std::fs::remove_dir_all(reports).unwrap();
}

/// A minimal x86 image header carrying `release`: enough for `--kernel PATH` to name it.
fn fake_image(dir: &Path, release: &str) -> PathBuf {
    let mut data = vec![0u8; 0x400];
    data[0x202..0x206].copy_from_slice(b"HdrS");
    data[0x20E..0x210].copy_from_slice(&0x200u16.to_le_bytes());
    data.extend_from_slice(format!("{release} (builder@host) #1 SMP\0").as_bytes());
    let path = dir.join(format!("vmlinuz-{release}"));
    std::fs::write(&path, data).unwrap();
    path
}

/// `run --kernel` and `fuzz --kernel` refuse the same bad kernels and missing tools with the
/// same line; each refuses the flags it cannot combine with --kernel.
#[test]
fn bad_kernels_and_missing_tools_are_one_line_and_exit_2() {
    let dir = scratch("bad-input");
    let image = fake_image(&dir, "6.1.0-1-amd64");
    let not_image = dir.join("not-a-kernel");
    std::fs::write(&not_image, b"hello").unwrap();
    let image = image.to_str().unwrap();
    const BOTH: &[&str] = &["run", "fuzz"];
    let emit = dir.join("emit");
    // (commands, flags, PATH to set, what the one line says)
    type Case<'a> = (&'a [&'a str], &'a [&'a str], Option<&'a str>, &'a str);
    let cases: [Case; 6] = [
        (
            BOTH,
            &["--kernel", "9.9.9-nope"],
            None,
            "epollscope: error: no kernel '9.9.9-nope' (give host, a path to an image, or a release in /boot: ",
        ),
        (
            BOTH,
            &["--kernel", not_image.to_str().unwrap()],
            None,
            "not a bootable x86 kernel image: no x86 boot header (HdrS)",
        ),
        (
            BOTH,
            &["--kernel", image],
            Some(""),
            "epollscope: error: qemu-system-x86_64 not found on PATH: install the qemu-system-x86 (apt) package",
        ),
        (
            &["run"],
            &["--kernel", "host", "--repeat", "2"],
            None,
            "epollscope: error: --repeat cannot be combined with --kernel",
        ),
        (
            &["fuzz"],
            &["--kernel", "host", "--emit", emit.to_str().unwrap()],
            None,
            "epollscope: error: --emit cannot be combined with --kernel",
        ),
        (
            &["fuzz"],
            &["--kernel", "host", "--kernel", "host"],
            None,
            "epollscope: error: --kernel host: kernel ",
        ),
    ];
    for (commands, args, path, message) in cases {
        for command in commands {
            let mut cmd = tool("epollscope");
            cmd.arg(command).args(args);
            if *command == "run" {
                cmd.arg(SCENARIOS[1]);
            } else {
                cmd.args(["--count", "1", "--out"]).arg(dir.join("out"));
            }
            if let Some(path) = path {
                cmd.env("PATH", path);
            }
            let out = run_clean(&mut cmd);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{command} {args:?}: {err}");
            assert!(err.contains(message), "{command} {args:?}: {err}");
        }
    }
    assert!(!emit.exists(), "--emit wrote before refusing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernels_lists_the_running_kernel_and_boot_images() {
    let out = run_clean(tool("epollscope").arg("kernels"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let host_line = text.lines().nth(1).unwrap();
    assert!(
        host_line.starts_with("host ") && host_line.contains(&running_release()),
        "{text}"
    );
    if let Ok(release) = debian_61() {
        let path = format!("/boot/vmlinuz-{release}");
        assert!(
            text.lines().any(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                fields.first() == Some(&path.as_str()) && fields.get(1) == Some(&release.as_str())
            }),
            "{text}"
        );
    }
}

/// Writes a scenario into a fresh directory and returns its path.
fn scenario_file(tag: &str, source: &str) -> PathBuf {
    let dir = scratch(&format!("scn-{tag}"));
    let path = dir.join(format!("{tag}.scn"));
    std::fs::write(&path, source).unwrap();
    path
}

/// A scenario that passes on any kernel, with `kernel: HEADER`.
fn needing(header: &str) -> String {
    format!(
        "# Needs a kernel {header}.
family: unix
kernel: {header}
socket(FAMILY, SOCK_STREAM, 0) = L
bind(L, ADDR) = 0
listen(L, 8) = 0
"
    )
}

#[test]
fn a_kernel_header_not_met_is_skip_with_the_reason_never_fail() {
    let host = running_release();
    let path = scenario_file("skip", &needing(">= 999.0"));
    let junit = path.with_extension("xml");
    let out = run_clean(
        tool("epollscope")
            .arg("run")
            .arg(&path)
            .arg("--junit")
            .arg(&junit),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(
        text,
        format!(
            "SKIP {} [unix]: needs kernel >= 999.0, this is {host}\n0 passed, 0 failed, 1 skipped\n",
            path.display()
        )
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains(&format!(
            "<skipped message=\"needs kernel &gt;= 999.0, this is {host}\"/>"
        )),
        "{xml}"
    );
    let out = run_clean(tool("epollscope").arg("run").arg("--json").arg(&path));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["totals"]["skipped"], 1);
    assert_eq!(doc["totals"]["failed"], 0);
    assert!(
        doc["scenarios"][0]["skipped"]
            .as_str()
            .unwrap()
            .starts_with("needs kernel")
    );
    // A requirement the running kernel meets runs the scenario.
    let met = scenario_file("met", &needing(">= 2.6, < 999"));
    let out = run_clean(tool("epollscope").arg("run").arg(&met));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("1 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(met.parent().unwrap()).unwrap();
}

#[test]
fn bad_kernel_headers_name_line_and_column() {
    let cases = [
        ("4.5", "3:9: '4.5': a bound starts with >=, >, <=, < or ="),
        (
            ">= 4.x",
            "3:12: '4.x' is not a version (expected e.g. 4.5 or 5.14.2)",
        ),
        (
            ">= 4.5,",
            "3:16: expected a bound such as '>= 4.5' or '< 5.14'",
        ),
    ];
    for (i, (header, message)) in cases.into_iter().enumerate() {
        let path = scenario_file(&format!("bad{i}"), &needing(header));
        let out = run_clean(tool("epollscope").arg("run").arg(&path));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{header}: {err}");
        assert_eq!(
            err.lines().next().unwrap(),
            format!("{}:{message}", path.display()),
            "{header}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
    let twice = needing(">= 4.5").replace("family: unix\n", "family: unix\nkernel: < 9\n");
    let path = scenario_file("twice", &twice);
    let out = run_clean(tool("epollscope").arg("run").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "{}:4:1: kernel: given twice (join the bounds with a comma)",
            path.display()
        )),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Waits (bounded) until `done` holds; the clean-up after a kill is another process's work.
fn wait_for(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn interrupted_or_killed_mid_boot_leaves_no_qemu_and_no_directory() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (release, _vm) = need_61!();
    for signal in [Signal::SIGINT, Signal::SIGKILL] {
        let tmp = scratch(&format!("signal-{signal}"));
        let mut child = tool("epollscope")
            .env("TMPDIR", &tmp)
            .args(["run", "--accel", "tcg", "--kernel", &release, SCENARIOS[1]])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let qemu_started = || {
            processes_with_tmpdir(&tmp)
                .iter()
                .any(|p| p.ends_with("qemu-system-x86"))
        };
        wait_for(
            "qemu to start",
            std::time::Duration::from_secs(120),
            qemu_started,
        );
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        kill(pid, signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(signal as i32)
        );
        wait_for(
            "the guard to kill the VM and remove its directory",
            std::time::Duration::from_secs(30),
            || {
                processes_with_tmpdir(&tmp).is_empty()
                    && std::fs::read_dir(&tmp).unwrap().next().is_none()
            },
        );
        std::fs::remove_dir(&tmp).unwrap();
    }
}

/// `fuzz --kernel host` is the plain run, made through the kernel matrix: the same count and
/// findings (here from a rule planted wrong in the model), each finding file in `host/` naming
/// the running kernel, and nothing left behind.
#[test]
fn fuzz_on_the_host_kernel_finds_what_the_plain_run_finds() {
    let host = running_release();
    for (extra, found) in [(&[][..], 0), (&["--plant", "textbook-et"][..], 1)] {
        let dir = scratch("fuzz-host-out");
        let common = ["fuzz", "--seed", "6", "--count", "20", "-j", "1"];
        let plain = run_clean(
            tool("epollscope")
                .args(common)
                .args(extra)
                .arg("--out")
                .arg(dir.join("plain")),
        );
        let matrix_out = dir.join("matrix");
        let matrix = run_matrix(
            "fuzz-host",
            &[
                &common[..],
                extra,
                &["--kernel", "host", "--out", matrix_out.to_str().unwrap()],
            ]
            .concat(),
        );
        let expected_code = if found == 0 { 0 } else { 1 };
        assert_eq!(
            plain.status.code(),
            Some(expected_code),
            "{}",
            stderr(&plain)
        );
        assert_eq!(
            matrix.status.code(),
            Some(expected_code),
            "{}",
            stderr(&matrix)
        );
        let (plain_text, matrix_text) = (stdout(&plain), stdout(&matrix));
        let summary = format!("20 scenarios (seed 6, native, each run twice), {found} findings");
        assert!(
            plain_text.contains(&format!("fuzz: {summary}")),
            "{plain_text}"
        );
        assert!(
            matrix_text.starts_with(&format!("fuzz on {host} (host): {summary}, ")),
            "{matrix_text}"
        );
        // The same findings, line for line, but for where they were written.
        let plain_findings: Vec<String> = plain_text
            .lines()
            .filter(|l| l.starts_with("finding: "))
            .map(|l| l.replace(dir.join("plain").to_str().unwrap(), "OUT"))
            .collect();
        let matrix_findings: Vec<String> = matrix_text
            .lines()
            .filter(|l| l.starts_with("finding: "))
            .map(|l| l.replace(matrix_out.join("host").to_str().unwrap(), "OUT"))
            .collect();
        assert_eq!(plain_findings.len(), found, "{plain_text}");
        assert_eq!(plain_findings, matrix_findings);
        let files = |d: &Path| -> Vec<(String, String)> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .map(|e| {
                            let text = std::fs::read_to_string(e.path()).unwrap();
                            (e.file_name().to_string_lossy().into_owned(), text)
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let (a, b) = (files(&dir.join("plain")), files(&matrix_out.join("host")));
        assert_eq!(a, b, "the same finding files");
        assert_eq!(a.len(), found);
        for (_, text) in &a {
            assert!(text.contains(&format!(" on kernel {host}, ")), "{text}");
            epollscope::scenario::parse(Path::new("f.scn"), text).expect("parses");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The fuzz cases really run in the guest: its summary names the 6.1 kernel and the count,
/// and the finding a wrongly planted rule gives there comes back, naming that kernel.
#[test]
fn fuzz_on_debian_61_runs_its_cases_in_the_guest() {
    let (release, _vm) = need_61!();
    let dir = scratch("fuzz-vm-out");
    let out = run_matrix(
        "fuzz-vm",
        &[
            "fuzz",
            "--seed",
            "6",
            "--count",
            "20",
            "--plant",
            "textbook-et",
            "--accel",
            "tcg",
            "--kernel",
            &release,
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with(&format!(
            "fuzz on {release} (emulated (TCG)): 20 scenarios (seed 6, native, each run twice), "
        )),
        "{text}"
    );
    let findings: Vec<&str> = lines.collect();
    assert!(!findings.is_empty(), "{text}");
    let kernel_dir = dir.join(&release);
    for line in findings {
        let path = line
            .strip_prefix("finding: ")
            .and_then(|l| l.split_once(" ("))
            .map(|(p, _)| PathBuf::from(p))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(path.parent(), Some(kernel_dir.as_path()), "{text}");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.contains(&format!(" on kernel {release}, ")), "{file}");
        assert!(file.contains("planted-wrong-rule"), "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

//! `epollscope run --kernel ...` end to end: the same scenarios on the running kernel and on
//! Debian's 6.1 in a VM, compared side by side and as JSON; bad kernels and missing tools as
//! bad input; a guest killed at its deadline; nothing (process or directory) left behind.
//! (`fuzz --kernel` is in kernel_fuzz.rs, `kernel:` headers in kernel_headers.rs.)
//!
//! The VM tests need qemu-system-x86, busybox-static, virtme-ng and linux-image-amd64 (6.1);
//! `.ci/run` installs them. Elsewhere they skip with the reason printed.

mod common;
mod kernel_support;

use std::path::{Path, PathBuf};

use common::{run_clean, stderr, stdout, tool};
use epollscope::vm::Release;
use epollscope::vm::release::Version;
use kernel_support::{
    debian_61, need_61, needing, processes_with_tmpdir, run_matrix, running_release, scenario_file,
    scratch,
};

const SCENARIOS: [&str; 2] = [
    "scenarios/herd-epollexclusive.scn",
    "scenarios/oneshot-rearm.scn",
];

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

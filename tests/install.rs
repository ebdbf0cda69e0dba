//! What a new user meets first: a statically linked program is refused with a reason, and the
//! shim is found without any setting.

use assert_cmd::Command;

fn epollscope() -> Command {
    Command::cargo_bin("epollscope").unwrap()
}

#[test]
fn a_statically_linked_program_is_named_and_strace_suggested() {
    let busybox = std::path::Path::new("/bin/busybox");
    if epollscope::shim::elf::file_linkage(busybox) != epollscope::shim::elf::Linkage::Static {
        eprintln!("skipped: no statically linked /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let out = epollscope()
        .args(["trace", "--", "/bin/busybox", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/bin/busybox is statically linked"), "{err}");
    assert!(err.contains("strace -f"), "{err}");
}

#[test]
fn a_dynamic_program_is_traced_with_no_setting() {
    let out = epollscope()
        .env_remove("EPOLLSCOPE_PRELOAD")
        .args(["trace", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# accepts per pid"), "{text}");
}

#[test]
fn every_binary_writes_its_man_page_and_three_completions() {
    let dir = std::env::temp_dir().join(format!("epollscope-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (tool, flag) in [
        ("epollscope", "--under"),
        ("epoll-socket-test", "--mode"),
        ("epoll-listen-fork", "--waiters"),
        ("socket-connect", "--hold"),
    ] {
        Command::cargo_bin(tool)
            .unwrap()
            .arg("__generate-docs")
            .arg(&dir)
            .assert()
            .success();
        let man = std::fs::read_to_string(dir.join(format!("man1/{tool}.1"))).unwrap();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH \"EXIT STATUS\"",
            ".SH EXAMPLE",
        ] {
            assert!(man.contains(section), "{tool}: no {section}");
        }
        assert!(
            man.contains(&format!(".TH {tool} 1")),
            "{tool}: page not named after it"
        );
        for file in [
            format!("bash/{tool}"),
            format!("zsh/_{tool}"),
            format!("fish/{tool}.fish"),
        ] {
            let text = std::fs::read_to_string(dir.join(&file)).unwrap();
            assert!(
                text.contains(flag.trim_start_matches('-')),
                "{file} lacks {flag}"
            );
        }
        let bash = std::process::Command::new("bash")
            .arg("-n")
            .arg(dir.join(format!("bash/{tool}")))
            .status()
            .unwrap();
        assert!(bash.success(), "{tool}: bash completion does not parse");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

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

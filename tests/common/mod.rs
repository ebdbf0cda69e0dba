//! Helpers shared by the integration tests: run a tool in its own process group, and check
//! afterwards that it left no process and no socket file behind.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Output;

/// A tool binary built by cargo for this test run, started in a new process group so that
/// every process it forks can be found again by group id.
pub fn tool(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin(name));
    cmd.process_group(0);
    cmd
}

/// Pids of live (non-zombie) processes in process group `pgid`.
pub fn processes_in_group(pgid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that ends the command name: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push(pid);
        }
    }
    found
}

/// Runs a tool to completion (stdin closed) and asserts that no process of its group survives.
pub fn run_clean(cmd: &mut std::process::Command) -> Output {
    run_clean_with_pid(cmd).0
}

/// As [`run_clean`], also returning the tool's pid.
pub fn run_clean_with_pid(cmd: &mut std::process::Command) -> (Output, u32) {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tool");
    let pgid = child.id() as i32;
    let output = child.wait_with_output().expect("wait for tool");
    let left = processes_in_group(pgid);
    assert!(
        left.is_empty(),
        "processes left behind in group {pgid}: {left:?}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output, pgid as u32)
}

/// A socket path unique to this test process and tag, removed first if a previous run left it.
pub fn temp_socket(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("es-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

//! Man pages and shell completions, generated from each binary's clap definition so that
//! they cannot drift from `--help`.
//!
//! Every binary answers the hidden first argument `__generate-docs DIR` (see [`crate::cli::main`])
//! by writing `DIR/man1/<tool>.1`, `DIR/bash/<tool>`, `DIR/zsh/_<tool>` and
//! `DIR/fish/<tool>.fish`. A hidden argument of the binary itself (rather than a build script
//! or an xtask) is the one place that sees the finished `clap::Command`, including the
//! adjustments `cli::command` makes, without a second copy of any flag; the Debian package and
//! CI call it on the built binaries.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The hidden first argument that asks a binary for its documentation.
pub const GENERATE_ARG: &str = "__generate-docs";

/// What the man page says beyond `--help`: exit codes and one example, per tool.
pub struct Extra {
    pub tool: &'static str,
    pub exit_status: &'static [(&'static str, &'static str)],
    pub example: (&'static str, &'static str),
}

/// One entry per binary.
pub const PAGES: &[Extra] = &[
    Extra {
        tool: "epollscope",
        exit_status: &[
            (
                "0",
                "run: every scenario passed (with --under both: every native run passed); monitor: the input was read; trace and compare: the program's own status",
            ),
            ("1", "run: a scenario failed or was flaky"),
            (
                "2",
                "bad input: an unreadable or malformed scenario or capture, a bad flag, a statically linked program given to trace",
            ),
            ("128+N", "trace: the program was killed by signal N"),
        ],
        example: (
            "Run the thundering-herd scenario natively and under the Fastsocket shim, side by side, and draw the timelines:",
            "epollscope run --under both --html herd.html /usr/share/epollscope/scenarios/herd.scn",
        ),
    },
    Extra {
        tool: "epoll-socket-test",
        exit_status: &[
            (
                "0",
                "the probe ran, whatever the kernel did (the verdict says what)",
            ),
            ("2", "bad arguments or a set-up failure"),
        ],
        example: (
            "Does an edge-triggered unix listener report again for a second pending connection?",
            "epoll-socket-test unix --mode et,lt",
        ),
    },
    Extra {
        tool: "epoll-listen-fork",
        exit_status: &[
            (
                "0",
                "the server ran and stopped (the summary counts what happened)",
            ),
            ("2", "bad arguments or a set-up failure"),
        ],
        example: (
            "Four waiters on one level-triggered listener, three connections made by the tool:",
            "epoll-listen-fork inet 0 --mode lt --waiters 4 --self-connect 3 --connections 3",
        ),
    },
    Extra {
        tool: "socket-connect",
        exit_status: &[
            (
                "0",
                "the connections were attempted (failures are reported, grouped by errno)",
            ),
            ("2", "bad arguments or a set-up failure"),
        ],
        example: (
            "Open 100 connections to a local port and hold them for 5 seconds:",
            "socket-connect inet 8080 -n 100 --hold 5000",
        ),
    },
];

/// Escapes text for roff: backslashes, and a leading dot or quote that would start a request.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The man page of `cmd`, with the EXIT STATUS and EXAMPLE sections of `extra`.
pub fn man_page(cmd: &clap::Command, extra: &Extra) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone()).section("1");
    let mut out = vec![];
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in extra.exit_status {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(code), roff(meaning))?;
    }
    let (what, command) = extra.example;
    writeln!(
        out,
        ".SH EXAMPLE\n{}\n.PP\n.nf\n.RS 4\n{}\n.RE\n.fi",
        roff(what),
        roff(command)
    )?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Writes the man page and the three completions of `tool` under `dir`; returns the files.
pub fn generate(tool: &str, cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let extra = PAGES
        .iter()
        .find(|p| p.tool == tool)
        .ok_or_else(|| format!("no documentation entry for {tool}"))?;
    let mut cmd = cmd.name(extra.tool).bin_name(extra.tool);
    cmd.build();
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| format!("{}: {e}", p.display())
    };
    let mut written = vec![];
    let mut put = |sub: &str, name: String, bytes: &[u8]| -> Result<(), String> {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(at(&d))?;
        let file = d.join(name);
        std::fs::write(&file, bytes).map_err(at(&file))?;
        written.push(file);
        Ok(())
    };
    put(
        "man1",
        format!("{tool}.1"),
        &man_page(&cmd, extra).map_err(at(dir))?,
    )?;
    for (shell, sub, name) in [
        (Shell::Bash, "bash", tool.to_string()),
        (Shell::Zsh, "zsh", format!("_{tool}")),
        (Shell::Fish, "fish", format!("{tool}.fish")),
    ] {
        let mut buf = vec![];
        clap_complete::generate(shell, &mut cmd, tool, &mut buf);
        put(sub, name, &buf)?;
    }
    Ok(written)
}

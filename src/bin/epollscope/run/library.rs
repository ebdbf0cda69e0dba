//! Which scenarios: the library found by default, the `.scn` files under the given paths,
//! and `--list`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use epollscope::scenario::Scenario;

/// `./scenarios` (a source tree), else the installed library next to the binary
/// (`/usr/bin` -> `/usr/share/epollscope/scenarios`).
pub(super) fn default_library() -> PathBuf {
    let here = PathBuf::from("scenarios");
    if here.exists() {
        return here;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("../share/epollscope/scenarios")))
        .filter(|p| p.is_dir())
        .unwrap_or(here)
}

/// Expands directories into their `.scn` files, sorted, subdirectories included (the library
/// keeps the kernel's and LTP's tests in `scenarios/kernel-selftests/` and `scenarios/ltp/`).
pub(super) fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![];
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            scenario_files_under(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Every `.scn` file below `dir`: its own files first, sorted, then each subdirectory's
/// (`kernel-selftests/`, `ltp/`). A symbolic link to a directory is not followed, so a link
/// loop cannot make this endless.
fn scenario_files_under(dir: &std::path::Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut files = vec![];
    let mut dirs = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry.with_context(|| format!("{}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(path);
        } else if path.extension().is_some_and(|e| e == "scn") {
            files.push(path);
        }
    }
    files.sort();
    dirs.sort();
    found.extend(files);
    for sub in dirs {
        scenario_files_under(&sub, found)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Listed<'a> {
    path: &'a Path,
    families: Vec<&'a str>,
    description: &'a str,
}

/// `--list`: one line per scenario in aligned columns, or a JSON array.
pub(super) fn list(scenarios: &[Scenario], json: bool) -> anyhow::Result<()> {
    let rows: Vec<Listed> = scenarios
        .iter()
        .map(|s| Listed {
            path: &s.path,
            families: s.families.iter().map(|f| f.name()).collect(),
            description: &s.description,
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let paths: Vec<String> = rows.iter().map(|r| r.path.display().to_string()).collect();
    let families: Vec<String> = rows.iter().map(|r| r.families.join(",")).collect();
    let width =
        |col: &[String], min: usize| col.iter().map(|c| c.chars().count()).fold(min, usize::max);
    let (wp, wf) = (width(&paths, 44), width(&families, 16));
    for ((path, fams), row) in paths.iter().zip(&families).zip(&rows) {
        let first = row.description.lines().next().unwrap_or("(no description)");
        println!("{path:<wp$} {fams:<wf$} {first}");
    }
    Ok(())
}

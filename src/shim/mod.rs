//! What the preload shim (crate `epollscope-preload`) and the programs that launch it agree
//! on: the environment variables that configure it, how they parse, where the built `.so` is,
//! and the pieces that read back what it wrote.
//!
//! | variable | values | meaning |
//! |---|---|---|
//! | `EPOLLSCOPE_TRACE` | `dir:DIR`, `unix:PATH`, `stderr` | trace every intercepted call: to `DIR/trace.<pid>` (`trace.<pid>.<n>` after an exec; one file per process image, mapped shared, so it survives any death; see [`merge::read_written`]), to a unix stream socket, or to stderr |
//! | `EPOLLSCOPE_TRACE_FORMAT` | `json` (default), `raw` | JSON lines of [`crate::trace::Event`], or strace-like raw lines |
//! | `EPOLLSCOPE_TRACE_BUFFER` | bytes, default 65536 | `unix:` and `stderr` only: per-process buffer flushed when full, at exit, before exec and fork; `0` writes each line at once |
//! | `EPOLLSCOPE_FASTPATH` | `auto`, `module`, `emulated` | route socket calls through the Fastsocket fast path ([`crate::fastpath`]) |
//! | `EPOLLSCOPE_FASTPATH_PIN` | `1` (default), `0` | emulation: pin each worker to one CPU at its listen_spawn, round-robin over the CPUs the program may use ([`crate::fastpath::locality`]) |
//! | `EPOLLSCOPE_FASTPATH_STEER` | `auto` (default), `incoming-cpu`, `cbpf`, `hash` | emulation: how a worker's listener takes the connections processed on its CPU (`EPOLLSCOPE_FASTPATH_CPU=0/1`, the older name, means `hash`/`auto`) |
//! | `EPOLLSCOPE_FASTSOCKET_DEVICE` | path | the module's device, default `/dev/fastsocket` |
//!
//! A value the shim does not understand makes it print one line on stderr and leave the
//! program entirely alone.

pub mod addr;
pub mod elf;
pub mod embedded;
pub mod ends;
pub mod merge;

use std::path::{Path, PathBuf};

use crate::fastpath::{Requested, Steer};

pub const ENV_TRACE: &str = "EPOLLSCOPE_TRACE";
pub const ENV_TRACE_FORMAT: &str = "EPOLLSCOPE_TRACE_FORMAT";
pub const ENV_TRACE_BUFFER: &str = "EPOLLSCOPE_TRACE_BUFFER";
pub const ENV_FASTPATH: &str = "EPOLLSCOPE_FASTPATH";
pub const ENV_FASTPATH_CPU: &str = "EPOLLSCOPE_FASTPATH_CPU";
/// `1`: do not announce the fast path chosen (a launcher that starts many processes under the
/// shim announces it once itself; failures are still said).
pub const ENV_FASTPATH_QUIET: &str = "EPOLLSCOPE_FASTPATH_QUIET";
pub const ENV_FASTPATH_PIN: &str = "EPOLLSCOPE_FASTPATH_PIN";
pub const ENV_FASTPATH_STEER: &str = "EPOLLSCOPE_FASTPATH_STEER";
pub const ENV_DEVICE: &str = "EPOLLSCOPE_FASTSOCKET_DEVICE";
/// Where to find the shim library, overriding the search next to the running binary.
pub const ENV_PRELOAD: &str = "EPOLLSCOPE_PRELOAD";
/// The file name cargo gives the preload crate's cdylib.
pub const LIBRARY_NAME: &str = "libepollscope_preload.so";
pub const DEFAULT_BUFFER: usize = 64 * 1024;

/// Where trace lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceTarget {
    /// One file per process: `DIR/trace.<pid>`.
    Dir(PathBuf),
    /// A unix stream socket; each process connects once and writes its lines.
    Unix(PathBuf),
    Stderr,
}

impl TraceTarget {
    pub fn to_env(&self) -> String {
        match self {
            TraceTarget::Dir(d) => format!("dir:{}", d.display()),
            TraceTarget::Unix(p) => format!("unix:{}", p.display()),
            TraceTarget::Stderr => "stderr".into(),
        }
    }
}

/// How trace lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    Json,
    Raw,
}

/// The shim's configuration, from its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub trace: Option<TraceTarget>,
    pub format: LineFormat,
    pub buffer: usize,
    pub fastpath: Option<Requested>,
    /// Pin workers and steer their listeners (see [`crate::fastpath::EmulationOptions`]).
    pub pin: bool,
    pub steer: Steer,
    pub device: PathBuf,
    /// Say which fast path was chosen (one line on stderr).
    pub announce: bool,
}

impl Settings {
    /// Parses the settings from `get` (the environment, or a map in tests).
    /// The error is the one line the shim prints before leaving the program alone.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let set = |name: &str| get(name).filter(|v| !v.is_empty());
        let trace = match set(ENV_TRACE) {
            None => None,
            Some(v) => Some(if let Some(dir) = v.strip_prefix("dir:") {
                TraceTarget::Dir(PathBuf::from(dir))
            } else if let Some(path) = v.strip_prefix("unix:") {
                TraceTarget::Unix(PathBuf::from(path))
            } else if v == "stderr" {
                TraceTarget::Stderr
            } else {
                return Err(format!(
                    "{ENV_TRACE}={v}: expected dir:DIR, unix:PATH or stderr"
                ));
            }),
        };
        let format = match set(ENV_TRACE_FORMAT).as_deref() {
            None | Some("json") => LineFormat::Json,
            Some("raw") => LineFormat::Raw,
            Some(v) => return Err(format!("{ENV_TRACE_FORMAT}={v}: expected json or raw")),
        };
        let buffer = match set(ENV_TRACE_BUFFER) {
            None => DEFAULT_BUFFER,
            Some(v) => v
                .parse()
                .map_err(|_| format!("{ENV_TRACE_BUFFER}={v}: expected a number of bytes"))?,
        };
        let fastpath = match set(ENV_FASTPATH).as_deref() {
            None | Some("off") | Some("0") => None,
            // The variable also takes `off`, which the fast path's own parser does not know.
            Some(v) => Some(v.parse().map_err(|_: String| {
                format!("{ENV_FASTPATH}={v}: expected off, auto, module or emulated")
            })?),
        };
        let pin = match set(ENV_FASTPATH_PIN).as_deref() {
            None | Some("1") => true,
            Some("0") => false,
            Some(v) => return Err(format!("{ENV_FASTPATH_PIN}={v}: expected 0 or 1")),
        };
        let steer = match (set(ENV_FASTPATH_STEER), set(ENV_FASTPATH_CPU)) {
            (Some(v), _) => v
                .parse()
                .map_err(|e| format!("{ENV_FASTPATH_STEER}: {e}"))?,
            (None, None) => Steer::Auto,
            (None, Some(v)) => match v.as_str() {
                "0" => Steer::Hash,
                "1" => Steer::Auto,
                _ => return Err(format!("{ENV_FASTPATH_CPU}={v}: expected 0 or 1")),
            },
        };
        let announce = match set(ENV_FASTPATH_QUIET).as_deref() {
            None | Some("0") => true,
            Some("1") => false,
            Some(v) => return Err(format!("{ENV_FASTPATH_QUIET}={v}: expected 0 or 1")),
        };
        let device = set(ENV_DEVICE)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(crate::fastpath::DEVICE));
        Ok(Settings {
            trace,
            format,
            buffer,
            fastpath,
            pin,
            steer,
            device,
            announce,
        })
    }

    pub fn from_env() -> Result<Settings, String> {
        Settings::parse(|name| std::env::var(name).ok())
    }
}

/// What a launcher wants the shim to do for a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShimMode {
    pub trace: Option<TraceTarget>,
    pub json: bool,
    pub fastpath: Option<Requested>,
}

/// Where packages install the shim, relative to the binary's directory (`/usr/bin` ->
/// `/usr/lib/epollscope`).
pub const LIBEXEC_DIR: &str = "../lib/epollscope";

/// The preload library, first found of: `$EPOLLSCOPE_PRELOAD`; next to the running binary
/// (or one level up, where cargo puts it relative to test binaries in `deps/`); the package's
/// `../lib/epollscope/`; the copy embedded in release builds, extracted to the user's cache.
pub fn preload_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ENV_PRELOAD) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{ENV_PRELOAD}={}: no such file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        dir.join(LIBRARY_NAME),
        dir.join("..").join(LIBRARY_NAME),
        dir.join(LIBEXEC_DIR).join(LIBRARY_NAME),
    ];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    if !embedded::SHIM.is_empty() {
        return embedded::extract(&embedded::cache_dir()?, embedded::SHIM);
    }
    Err(format!(
        "{LIBRARY_NAME} not found next to {} (build it with `cargo build --release` at the \
         top of the source tree, install with `cargo install --path .`, or set {ENV_PRELOAD})",
        exe.display()
    ))
}

/// The environment to run a program under the shim in `mode`: LD_PRELOAD and the settings.
/// Every shim variable is set (empty when unused) so an inherited value cannot leak in.
pub fn preload_env(mode: &ShimMode) -> Result<Vec<(String, String)>, String> {
    let lib = preload_path()?;
    let mut preload = lib.display().to_string();
    if let Ok(existing) = std::env::var("LD_PRELOAD")
        && !existing.is_empty()
    {
        preload = format!("{preload}:{existing}");
    }
    let fastpath = match mode.fastpath {
        None => "",
        Some(Requested::Auto) => "auto",
        Some(Requested::Module) => "module",
        Some(Requested::Emulated) => "emulated",
    };
    Ok(vec![
        ("LD_PRELOAD".into(), preload),
        (
            ENV_TRACE.into(),
            mode.trace
                .as_ref()
                .map(TraceTarget::to_env)
                .unwrap_or_default(),
        ),
        (
            ENV_TRACE_FORMAT.into(),
            if mode.json { "json" } else { "raw" }.into(),
        ),
        (ENV_FASTPATH.into(), fastpath.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(|k| map.get(k).cloned())
    }

    #[test]
    fn settings_parse_and_reject_unknown_values() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.trace, None);
        assert_eq!(s.fastpath, None);
        assert_eq!(s.format, LineFormat::Json);
        assert_eq!(s.buffer, DEFAULT_BUFFER);
        let s = parse(&[
            (ENV_TRACE, "dir:/tmp/t"),
            (ENV_FASTPATH, "emulated"),
            (ENV_TRACE_FORMAT, "raw"),
            (ENV_TRACE_BUFFER, "0"),
        ])
        .unwrap();
        assert_eq!(s.trace, Some(TraceTarget::Dir("/tmp/t".into())));
        assert_eq!(s.fastpath, Some(Requested::Emulated));
        assert_eq!(s.format, LineFormat::Raw);
        assert_eq!(s.buffer, 0);
        assert_eq!(
            parse(&[(ENV_TRACE, "file:/x")]).unwrap_err(),
            "EPOLLSCOPE_TRACE=file:/x: expected dir:DIR, unix:PATH or stderr"
        );
        assert_eq!(
            parse(&[(ENV_FASTPATH, "turbo")]).unwrap_err(),
            "EPOLLSCOPE_FASTPATH=turbo: expected off, auto, module or emulated"
        );
        assert!(parse(&[(ENV_TRACE_BUFFER, "lots")]).is_err());
        assert!(parse(&[]).unwrap().announce);
        assert!(!parse(&[(ENV_FASTPATH_QUIET, "1")]).unwrap().announce);
        assert_eq!(
            parse(&[(ENV_FASTPATH_QUIET, "yes")]).unwrap_err(),
            "EPOLLSCOPE_FASTPATH_QUIET=yes: expected 0 or 1"
        );
        assert_eq!(
            TraceTarget::Unix("/s".into()).to_env(),
            "unix:/s".to_string()
        );
    }
}

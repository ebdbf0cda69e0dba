//! The kernel matrix: the same scenarios on several kernels, each booted in a throw-away VM
//! that sees this machine's file system (virtme-ng over qemu), and the results side by side.
//!
//! * [`release`]: kernel releases and the `kernel: >= 4.5` requirements scenarios state.
//! * [`image`]: kernel images in `/boot`, the release in each header, `--kernel` resolution.
//! * [`guest`]: booting one kernel and running `epollscope run --json` inside it, results back
//!   through a shared directory; nothing it starts or creates outlives it (a guard process
//!   cleans up even when epollscope itself is killed).
//! * [`matrix`]: the per-kernel results compared instance by instance, rendered as text,
//!   Markdown, JSON and JUnit.
//!
//! Architecture invariant: results cross the VM boundary only as the guest run's own JSON, its
//! exit status and `uname -r`, written to files; nothing is scraped from a console.

pub mod guest;
pub mod image;
pub mod matrix;
pub mod plan;
pub mod release;

use std::path::PathBuf;

pub use guest::{Accel, GuestJob, GuestOutcome, Tools};
pub use image::{Kernel, KernelImage};
pub use release::{Release, Requirement};

/// Why the kernel matrix could not be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    #[error("{program} not found on PATH: install the {package} package")]
    MissingTool {
        program: &'static str,
        package: &'static str,
    },
    #[error("no kernel '{spec}' (give host, a path to an image, or a release in /boot: {})",
        if known.is_empty() { "none found".to_string() } else { known.join(", ") })]
    NoSuchKernel { spec: String, known: Vec<String> },
    #[error("{}: not a bootable x86 kernel image: {why}", path.display())]
    NotAnImage { path: PathBuf, why: String },
    /// The cause is in the message (not given again as a `source`).
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("the shared directory {} cannot be passed to virtme-ng (',' or '=' in its path)", .0.display())]
    UnsharablePath(PathBuf),
    #[error("guest result: {0}")]
    BadResult(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |error| VmError::Io { what, error }
}

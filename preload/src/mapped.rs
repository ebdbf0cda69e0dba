//! A process image's trace file, mapped shared and appended to with plain stores: what was
//! stored is in the page cache at once, so it survives the process's death by any signal,
//! SIGKILL included, and appending costs no system call.
//!
//! The file is `DIR/trace.<pid>` (`trace.<pid>.<n>` for a later image of the same pid, after
//! exec), created exclusively, sized to [`WINDOW`] bytes at once and mapped whole: the file is
//! sparse (untouched pages take no space), so its tail is a hole the reader skips. A line is
//! placed by reserving its bytes with one atomic add, then copied: threads and signal handlers
//! append concurrently without a lock, and a process killed in the middle of a copy leaves one
//! line cut short (then zeros), which the reader counts.
//!
//! The shim holds no fd: the file is opened only to create and map it, and closed at once, so
//! a program that closes, sweeps or reuses fds sees exactly what it would see without the shim,
//! and no trace byte can ever land in a descriptor that is no longer the shim's.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::os;

/// The most trace one process image keeps: 1 GiB of address space and of (sparse) file size,
/// less under RLIMIT_FSIZE or RLIMIT_AS, and halved until the mapping succeeds.
pub const WINDOW: usize = 1 << 30;
const SMALLEST: usize = 4 << 20;

pub struct MappedLog {
    base: *mut u8,
    len: u64,
    next: AtomicU64,
    /// Set once the window is full, after its one notice.
    full: AtomicBool,
}

// SAFETY: the mapping is shared memory written only through disjoint reservations (`next`).
unsafe impl Sync for MappedLog {}
// SAFETY: as above; the pointer is to a process-wide mapping, not thread-owned memory.
unsafe impl Send for MappedLog {}

impl MappedLog {
    /// Creates this image's trace file in `dir` (absolute) and maps it.
    pub fn create(dir: &Path, pid: i32) -> Result<MappedLog, String> {
        let mut n = 0u32;
        let (path, fd) = loop {
            let name = match n {
                0 => format!("trace.{pid}"),
                n => format!("trace.{pid}.{n}"),
            };
            let path = dir.join(name);
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| format!("{}: NUL in path", path.display()))?;
            match os::open(&c, true) {
                Ok(fd) => break (path, fd),
                Err(libc::EEXIST) if n < 1000 => n += 1,
                Err(e) => {
                    return Err(format!(
                        "{}: {}",
                        path.display(),
                        std::io::Error::from_raw_os_error(e)
                    ));
                }
            }
        };
        // Never past the host's file-size limit (growing a file beyond it raises SIGXFSZ),
        // and never more than a sixteenth of a limited address space (the program's own).
        let mut len = WINDOW
            .min(os::file_size_limit())
            .min(os::address_space_limit() / 16);
        let mapped = loop {
            match os::map_shared(fd, 0, len) {
                Ok(p) => break Ok(p),
                Err(_) if len > SMALLEST => len /= 2,
                Err(e) => break Err(e),
            }
        };
        os::close(fd);
        match mapped {
            Ok(base) => Ok(MappedLog {
                base,
                len: len as u64,
                next: AtomicU64::new(0),
                full: AtomicBool::new(false),
            }),
            Err(e) => Err(format!(
                "{}: cannot map it: {}",
                path.display(),
                std::io::Error::from_raw_os_error(e)
            )),
        }
    }

    /// Appends one line (with its newline).
    pub fn append(&self, line: &[u8]) {
        let len = line.len() as u64;
        let start = self.next.fetch_add(len, Ordering::Relaxed);
        if start.saturating_add(len) > self.len {
            if !self.full.swap(true, Ordering::Relaxed) {
                crate::say(&format!(
                    "the trace file is full ({} MiB); tracing of this process stops here",
                    self.len >> 20
                ));
            }
            return;
        }
        os::store(self.base.wrapping_add(start as usize), line);
    }

    /// In a forked child: drops the child's copy of the parent's mapping (the parent's file
    /// stays the parent's alone).
    pub fn forget(&self) {
        os::unmap(self.base, self.len as usize);
    }
}

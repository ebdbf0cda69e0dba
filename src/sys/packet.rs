//! The flow monitor's OS edge: a read-only memory map of a capture file, so that the reader
//! parses the page cache in place instead of copying it into a buffer.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// A whole regular file mapped read-only and private. The file must not shrink while mapped
/// (reading a page past a truncated end raises SIGBUS): callers map only files that are not
/// being written, and fall back to reading for anything else.
#[derive(Debug)]
pub struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; sharing `&[u8]` views of it across
// threads is as safe as sharing any immutable byte slice.
unsafe impl Send for Mapped {}
// SAFETY: as above: nothing mutates the mapping.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `file` (its length now). An empty file is an error (mmap of 0 bytes is EINVAL),
    /// as is anything that is not a regular file.
    pub fn new(file: &File) -> io::Result<Mapped> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = usize::try_from(meta.len())
            .map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh private read-only mapping of an open fd at a kernel-chosen address;
        // no existing memory is affected, and the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr..ptr+len` is the mapping just created; the advice only tunes read-ahead.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_SEQUENTIAL);
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapped { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, lives as long as `self`, and is never
        // written through (PROT_READ, MAP_PRIVATE).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; no slice of it outlives `self`
        // (they borrow it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Asks the CPU to start loading the cache lines of `bytes[at..at + 128]` (a packet record's
/// headers): the reader, which walks a capture far larger than the caches, hints the next
/// record while the current one is processed. A hint only: it never faults and changes nothing.
#[inline]
pub fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if at < bytes.len() {
            let p = bytes[at..].as_ptr().cast::<i8>();
            // SAFETY: a prefetch of an address inside the slice; the instruction reads nothing
            // architecturally and cannot fault.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

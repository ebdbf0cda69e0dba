//! `monitor --flows DIR`: each direction's bytes in its own file, named as tcpflow names them
//! (`SRCIP.SRCPORT-DSTIP.DSTPORT`, a later flow on the same addresses gets `c1`, `c2`, ...;
//! a flow resumed after a timeout or an eviction continues its file),
//! so that the two tools' outputs compare file by file.
//!
//! Files stay open while their flow is open, at most [`MAX_OPEN`] at once, fewer if the
//! process runs out of descriptors first (the least recently written is closed and reopened
//! for appending when it has more).
//!
//! Bytes are not copied when they can be written from where they lie: given the mapped
//! capture, a direction's bytes that lie in it are remembered as ranges of it and written,
//! gathered, straight from it (the kernel's copy into the page cache is the only one). Bytes
//! from anywhere else (the monitor's buffer, a live capture) are copied into the direction's
//! own buffer. Either way a file gets one `writev` per [`FLUSH_AT`] bytes (fewer when copies
//! fill [`MAX_COPIED`]), in order.
//!
//! A file that grows by whole writes has its blocks reserved ahead of them
//! (`fallocate(FALLOC_FL_KEEP_SIZE)`, [`RESERVE_AHEAD`] bytes past what is written): a write
//! into reserved blocks costs ext4 a third less system time than one that allocates them
//! (measured with 1 MiB writes to 128 files: 0.15 s against 0.22-0.30 s a GB). The size a
//! file shows is always the bytes written; when the file is closed, the blocks past them are
//! given back. A run killed before it closes its files leaves each at most [`FLUSH_AT`] +
//! [`RESERVE_AHEAD`] bytes of blocks past its end (its size and bytes are right). Where the
//! filesystem cannot reserve (or is full), files are written without.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fx::FxMap;
use super::output::endpoint_name;
use super::{FlowInfo, Side, offset_in};
use crate::sys;
use crate::sys::packet::Mapped;

pub const MAX_OPEN: usize = 256;

/// A file or the directory could not be made or written. Its message holds the cause (not
/// given again as its `source`, so that a chain of errors prints it once).
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// Which file a path leads to (device and inode): two names of one file compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A direction's bytes are written once this many wait: large writes cost the kernel less a
/// byte (measured on the bulk capture of `bench/monitor.sh`: 64 KiB writes took a quarter more
/// system time than 1 MiB ones).
const FLUSH_AT: usize = 1 << 20;

/// ...or once this many of them are copies (the memory a direction's buffer may hold: with
/// [`MAX_OPEN`] files, 64 MiB at most).
const MAX_COPIED: usize = 256 << 10;

/// A direction's waiting pieces are written once there are this many (Linux's `IOV_MAX`, the
/// most one `writev` takes), however few bytes they hold.
const MAX_PIECES: usize = 1024;

/// How far past what a write leaves in a file its blocks are reserved (see the module's doc):
/// with [`MAX_OPEN`] files at once, at most 1 GiB of a disk is reserved and not yet written.
const RESERVE_AHEAD: u64 = 3 << 20;

/// Where a piece of a direction's unwritten bytes is.
#[derive(Debug)]
enum Piece {
    /// In the mapped capture.
    Capture(Range<usize>),
    /// In the direction's own buffer.
    Copied(Range<usize>),
}

/// A direction's open file and the bytes waiting for it.
struct Open {
    file: File,
    pieces: Vec<Piece>,
    copied: Vec<u8>,
    waiting: usize,
    used: u64,
    /// Bytes in the file.
    len: u64,
    /// Where the blocks reserved for it end (`len` when none are).
    reserved: u64,
}

impl Open {
    fn push(&mut self, capture: Option<&Mapped>, data: &[u8]) {
        self.waiting += data.len();
        if let Some(at) = capture.and_then(|c| offset_in(c, data)) {
            let r = at..at + data.len();
            match self.pieces.last_mut() {
                Some(Piece::Capture(last)) if last.end == r.start => last.end = r.end,
                _ => self.pieces.push(Piece::Capture(r)),
            }
            return;
        }
        let r = self.copied.len()..self.copied.len() + data.len();
        self.copied.extend_from_slice(data);
        match self.pieces.last_mut() {
            Some(Piece::Copied(last)) if last.end == r.start => last.end = r.end,
            _ => self.pieces.push(Piece::Copied(r)),
        }
    }

    fn full(&self) -> bool {
        self.waiting >= FLUSH_AT
            || self.copied.len() >= MAX_COPIED
            || self.pieces.len() >= MAX_PIECES
    }

    /// Writes every waiting byte, in order.
    fn flush(&mut self, capture: Option<&Mapped>) -> io::Result<()> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let whole: &[u8] = capture.map_or(&[], |c| c);
        let mut slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Capture(r) => IoSlice::new(&whole[r.clone()]),
                Piece::Copied(r) => IoSlice::new(&self.copied[r.clone()]),
            })
            .collect();
        let mut left = &mut slices[..];
        let mut done = Ok(());
        while !left.is_empty() {
            match self.file.write_vectored(left) {
                Ok(0) => done = Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.len += n as u64;
                    IoSlice::advance_slices(&mut left, n);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => done = Err(e),
            }
            break;
        }
        // Written or failed (the error says so), they do not wait any more: written again
        // later, they would follow what part of them was written.
        self.pieces.clear();
        self.copied.clear();
        self.waiting = 0;
        done
    }

    /// Reserves the blocks the waiting bytes and the next [`RESERVE_AHEAD`] will take, if
    /// they are not yet. False if the filesystem would not.
    fn reserve(&mut self) -> bool {
        let end = self.len + self.waiting as u64;
        if end <= self.reserved {
            return true;
        }
        let want = end - self.len + RESERVE_AHEAD;
        match sys::fallocate_keep_size(&self.file, self.len, want) {
            Ok(()) => {
                self.reserved = self.len + want;
                true
            }
            Err(_) => false,
        }
    }

    /// Writes what waits and gives back the blocks reserved past it.
    fn close(&mut self, capture: Option<&Mapped>) -> io::Result<()> {
        self.flush(capture)?;
        if self.reserved > self.len {
            self.file.set_len(self.len)?;
            self.reserved = self.len;
        }
        Ok(())
    }
}

pub struct FlowDir {
    dir: PathBuf,
    /// The capture the reader maps, if it does: bytes in it are written from it.
    capture: Option<Arc<Mapped>>,
    open: FxMap<(u64, Side), Open>,
    /// File name of each direction seen.
    names: HashMap<(u64, Side), PathBuf>,
    taken: HashSet<PathBuf>,
    /// Files created (later opens append).
    created: HashSet<PathBuf>,
    tick: u64,
    /// Whether to reserve blocks ahead of writes: until the filesystem first refuses.
    reserve: bool,
    /// A file never to write (the capture being read): a flow whose name leads to it is an
    /// error, not a truncated input.
    spare: Option<FileId>,
}

impl FlowDir {
    /// Creates DIR if needed; files in it with the names flows get are replaced. `capture`:
    /// the mapped capture the bytes come from, if it is mapped.
    pub fn create(dir: &Path, capture: Option<Arc<Mapped>>) -> Result<FlowDir, FileError> {
        std::fs::create_dir_all(dir).map_err(|error| FileError {
            path: dir.to_path_buf(),
            error,
        })?;
        Ok(FlowDir {
            dir: dir.to_path_buf(),
            capture,
            open: FxMap::default(),
            names: HashMap::new(),
            taken: HashSet::new(),
            created: HashSet::new(),
            tick: 0,
            reserve: true,
            spare: None,
        })
    }

    /// Never writes (nor truncates) the file `id` (the capture being read): a direction whose
    /// file name leads to it is an error.
    pub fn spare(&mut self, id: FileId) {
        self.spare = Some(id);
    }

    fn name(&mut self, info: &FlowInfo, side: Side) -> PathBuf {
        let key = (info.id.n, side);
        if let Some(p) = self.names.get(&key) {
            return p.clone();
        }
        // A flow picked up again after a timeout or an eviction continues its file.
        if let Some(p) = info
            .resumes
            .and_then(|old| self.names.get(&(old, side)))
            .cloned()
        {
            self.names.insert(key, p.clone());
            return p;
        }
        // Side svr receives what the client sends.
        let (src, dst) = match side {
            Side::Svr => (info.client, info.server),
            Side::Cli => (info.server, info.client),
        };
        let base = format!("{}-{}", endpoint_name(src), endpoint_name(dst));
        let mut path = self.dir.join(&base);
        let mut k = 1;
        while self.taken.contains(&path) {
            path = self.dir.join(format!("{base}c{k}"));
            k += 1;
        }
        self.taken.insert(path.clone());
        self.names.insert(key, path.clone());
        path
    }

    /// Appends `data` to the file of `info`'s direction toward `side` (now or later: the
    /// bytes are the file's once [`FlowDir::close`] or [`FlowDir::finish`] returned).
    pub fn write(&mut self, info: &FlowInfo, side: Side, data: &[u8]) -> Result<(), FileError> {
        if data.is_empty() {
            return Ok(());
        }
        let key = (info.id.n, side);
        if !self.open.contains_key(&key) {
            self.open_file(info, side)?;
        }
        self.tick += 1;
        let capture = self.capture.as_deref();
        let Some(open) = self.open.get_mut(&key) else {
            return Ok(());
        };
        open.used = self.tick;
        open.push(capture, data);
        if open.full() {
            // Only a file written by whole writes gets blocks reserved: one that ends within
            // a write costs no system call more than it needs.
            if self.reserve && !open.reserve() {
                self.reserve = false;
            }
            let r = open.flush(capture);
            r.map_err(|e| self.io_err(key, e))?;
        }
        Ok(())
    }

    /// Opens the direction's file: created the first time, appended to after it was closed
    /// to make room (at most [`MAX_OPEN`] are open).
    fn open_file(&mut self, info: &FlowInfo, side: Side) -> Result<(), FileError> {
        let path = self.name(info, side);
        let first = self.created.insert(path.clone());
        if self.open.len() >= MAX_OPEN {
            self.close_oldest()?;
        }
        let file = loop {
            // Not truncated at open: first made sure it is not the file to spare.
            let opened = if first {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            } else {
                OpenOptions::new().append(true).open(&path)
            };
            match opened {
                // Out of descriptors (a low `ulimit -n`): fewer files open at once.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && !self.open.is_empty() =>
                {
                    self.close_oldest()?;
                }
                opened => break opened,
            }
        };
        let spare = self.spare;
        let (file, len) = file
            .and_then(|f| {
                let meta = f.metadata()?;
                if spare == Some(FileId::of(&meta)) {
                    return Err(io::Error::other(
                        "is the capture being read: not overwritten",
                    ));
                }
                let mut len = meta.len();
                if first && len > 0 {
                    f.set_len(0)?;
                    len = 0;
                }
                Ok((f, len))
            })
            .map_err(|error| FileError { path, error })?;
        let open = Open {
            file,
            pieces: Vec::new(),
            copied: Vec::new(),
            waiting: 0,
            used: 0,
            len,
            reserved: len,
        };
        self.open.insert((info.id.n, side), open);
        Ok(())
    }

    fn io_err(&self, key: (u64, Side), error: io::Error) -> FileError {
        let path = self.names.get(&key).cloned().unwrap_or_default();
        FileError { path, error }
    }

    fn close_oldest(&mut self) -> Result<(), FileError> {
        if let Some(&key) = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.used)
            .map(|(k, _)| k)
        {
            self.close(key.0, key.1)?;
        }
        Ok(())
    }

    /// The direction's flow ended: write what waits and close its file.
    pub fn close(&mut self, n: u64, side: Side) -> Result<(), FileError> {
        if let Some(mut open) = self.open.remove(&(n, side)) {
            let r = open.close(self.capture.as_deref());
            r.map_err(|e| self.io_err((n, side), e))?;
        }
        Ok(())
    }

    /// Writes what waits and closes every file (and lets go of the capture).
    pub fn finish(&mut self) -> Result<(), FileError> {
        let keys: Vec<(u64, Side)> = self.open.keys().copied().collect();
        for (n, side) in keys {
            self.close(n, side)?;
        }
        self.capture = None;
        Ok(())
    }
}

impl Drop for FlowDir {
    /// Writes what waits (as a `BufWriter` would on drop) and gives back reserved blocks,
    /// when a run stops on an error before [`FlowDir::finish`]; errors are not seen, as they
    /// are not for a `BufWriter`.
    fn drop(&mut self) {
        let capture = self.capture.clone();
        for open in self.open.values_mut() {
            let _ = open.close(capture.as_deref());
        }
    }
}

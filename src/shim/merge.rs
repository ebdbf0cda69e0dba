//! Reading back what the shim wrote: the per-process JSON trace files of one run, merged into
//! one trace in time order, and a summary of it (calls per kind, accepts and listeners per
//! process, errors) that two runs can be compared on.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

mod compare;
mod summary;
#[cfg(test)]
mod tests;

pub use super::ends::{End, Ended};
use crate::trace::Event;
pub use compare::compare_table;
pub use summary::{Local, Summary, call_name};

/// A trace directory or one of its files could not be read (the message holds the cause,
/// not given again as its `source`).
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// Every event in `dir`'s `trace.<pid>` (and `trace.<pid>.<n>`, a later image after exec)
/// files, ordered by start time (then pid). Lines that do not parse (the last line of a
/// process killed while writing it, cut short) are counted, not fatal.
pub fn read_dir(dir: &Path) -> Result<(Vec<Event>, usize), ReadError> {
    let in_dir = |error| ReadError {
        path: dir.to_path_buf(),
        error,
    };
    let mut events = vec![];
    let mut bad = 0;
    for entry in std::fs::read_dir(dir).map_err(in_dir)? {
        let entry = entry.map_err(in_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("trace.") {
            continue;
        }
        let path = entry.path();
        let bytes = read_written(&path).map_err(|error| ReadError { path, error })?;
        for line in lines(&bytes) {
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) => bad += 1,
            }
        }
    }
    events.sort_by_key(|e| (e.time_us, e.pid));
    Ok((events, bad))
}

/// The lines of a trace file: separated by newlines, and by the zero bytes the shim's mapped
/// files hold where nothing was written (the unused tail, or a line a killed process had
/// reserved and not yet copied).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n' || *b == 0)
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

/// A trace file's data without its holes: the shim's files are sized far beyond what they hold
/// and sparse, so only the extents with data are read (the whole file where the file system
/// cannot tell holes apart).
pub fn read_written(path: &Path) -> std::io::Result<Vec<u8>> {
    use nix::unistd::{Whence, lseek};
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut out = vec![];
    let mut at = 0i64;
    loop {
        let start = match lseek(&file, at, Whence::SeekData) {
            Ok(s) => s,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) if at == 0 => {
                file.read_to_end(&mut out)?;
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        };
        let end = lseek(&file, start, Whence::SeekHole)?;
        file.seek(SeekFrom::Start(start as u64))?;
        (&mut file)
            .take((end - start) as u64)
            .read_to_end(&mut out)?;
        out.push(0);
        at = end;
    }
    Ok(out)
}

//! `monitor --flows DIR`: each direction's bytes in its own file, named as tcpflow names them
//! (`SRCIP.SRCPORT-DSTIP.DSTPORT`, a later flow on the same addresses gets `c1`, `c2`, ...;
//! a flow resumed after a timeout or an eviction continues its file),
//! so that the two tools' outputs compare file by file.
//!
//! Files stay open while their flow is open, at most [`MAX_OPEN`] at once (the least recently
//! written is closed and reopened for appending when it has more).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::output::endpoint_name;
use super::{FlowInfo, Side};

pub const MAX_OPEN: usize = 256;

pub struct FlowDir {
    dir: PathBuf,
    open: HashMap<(u64, Side), (BufWriter<File>, u64)>,
    /// File name of each direction seen.
    names: HashMap<(u64, Side), PathBuf>,
    taken: HashSet<PathBuf>,
    /// Files created (later opens append).
    created: HashSet<PathBuf>,
    tick: u64,
}

impl FlowDir {
    /// Creates DIR if needed; files in it with the names flows get are replaced.
    pub fn create(dir: &Path) -> anyhow::Result<FlowDir> {
        std::fs::create_dir_all(dir).with_context(|| format!("--flows {}", dir.display()))?;
        Ok(FlowDir {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
            names: HashMap::new(),
            taken: HashSet::new(),
            created: HashSet::new(),
            tick: 0,
        })
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

    /// Appends `data` to the file of `info`'s direction toward `side`.
    pub fn write(&mut self, info: &FlowInfo, side: Side, data: &[u8]) -> anyhow::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let key = (info.id.n, side);
        self.tick += 1;
        if !self.open.contains_key(&key) {
            let path = self.name(info, side);
            let first = self.created.insert(path.clone());
            if self.open.len() >= MAX_OPEN {
                self.close_oldest()?;
            }
            let file = if first {
                File::create(&path)
            } else {
                OpenOptions::new().append(true).open(&path)
            }
            .with_context(|| path.display().to_string())?;
            self.open
                .insert(key, (BufWriter::with_capacity(64 << 10, file), 0));
        }
        if let Some((w, used)) = self.open.get_mut(&key) {
            *used = self.tick;
            w.write_all(data).map_err(|e| self.io_err(key, e))?;
        }
        Ok(())
    }

    fn io_err(&self, key: (u64, Side), e: io::Error) -> anyhow::Error {
        let name = self.names.get(&key).map(|p| p.display().to_string());
        anyhow::anyhow!("{}: {e}", name.unwrap_or_default())
    }

    fn close_oldest(&mut self) -> anyhow::Result<()> {
        if let Some(&key) = self
            .open
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(k, _)| k)
        {
            self.close(key.0, key.1)?;
        }
        Ok(())
    }

    /// The direction's flow ended: flush and close its file.
    pub fn close(&mut self, n: u64, side: Side) -> anyhow::Result<()> {
        if let Some((mut w, _)) = self.open.remove(&(n, side)) {
            w.flush().map_err(|e| self.io_err((n, side), e))?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        let keys: Vec<(u64, Side)> = self.open.keys().copied().collect();
        for (n, side) in keys {
            self.close(n, side)?;
        }
        Ok(())
    }
}

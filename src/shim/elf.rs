//! Whether a program can be traced at all: the shim is loaded by the dynamic loader
//! (`LD_PRELOAD`), so a statically linked ELF (no `PT_INTERP` program header: busybox-static,
//! most Go binaries) runs without it and its calls are invisible.

use std::path::{Path, PathBuf};

const PT_INTERP: u32 = 3;

/// How a program file will be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// An ELF with an interpreter: the shim sees it.
    Dynamic,
    /// An ELF without one: the shim cannot see it.
    Static,
    /// Not an ELF (a script, whose interpreter is what runs) or unreadable: nothing to say.
    Unknown,
}

/// Reads the program headers of `bytes` (the start of a file).
pub fn linkage(bytes: &[u8]) -> Linkage {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Linkage::Unknown;
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        _ => return Linkage::Unknown,
    };
    let big = match bytes[5] {
        1 => false,
        2 => true,
        _ => return Linkage::Unknown,
    };
    let int = |at: usize, len: usize| -> Option<u64> {
        let field = bytes.get(at..at.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let b = if big { field[i] } else { field[len - 1 - i] };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    };
    let header = if wide {
        (int(0x20, 8), int(0x36, 2), int(0x38, 2))
    } else {
        (int(0x1c, 4), int(0x2a, 2), int(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = header else {
        return Linkage::Unknown;
    };
    let (Ok(phoff), Ok(phentsize)) = (usize::try_from(phoff), usize::try_from(phentsize)) else {
        return Linkage::Unknown;
    };
    for i in 0..phnum {
        let Some(at) = usize::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(phentsize))
            .and_then(|o| o.checked_add(phoff))
        else {
            return Linkage::Unknown;
        };
        match int(at, 4) {
            Some(t) if t == u64::from(PT_INTERP) => return Linkage::Dynamic,
            Some(_) => {}
            // Headers past what was read: cannot tell.
            None => return Linkage::Unknown,
        }
    }
    Linkage::Static
}

/// The file `program` names, searched in `$PATH` as exec does when it has no slash.
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The linkage of the program file at `path` (its first 64 KiB are plenty for the headers).
pub fn file_linkage(path: &Path) -> Linkage {
    use std::io::Read;
    let mut head = vec![];
    match std::fs::File::open(path) {
        Ok(f) => match f.take(64 * 1024).read_to_end(&mut head) {
            Ok(_) => linkage(&head),
            Err(_) => Linkage::Unknown,
        },
        Err(_) => Linkage::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF header with the given program header types.
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&u16::try_from(types.len()).unwrap().to_le_bytes());
        for &t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn tells_static_from_dynamic() {
        let cases: &[(Vec<u8>, Linkage)] = &[
            (elf64(&[6, 3, 1]), Linkage::Dynamic),
            (elf64(&[1, 1, 2]), Linkage::Static),
            (b"#!/bin/sh\necho hi\n".to_vec(), Linkage::Unknown),
            (elf64(&[1, 3])[..70].to_vec(), Linkage::Unknown),
            (vec![], Linkage::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(linkage(bytes), *want, "{:?}", &bytes[..bytes.len().min(8)]);
        }
    }

    #[test]
    fn reads_real_binaries() {
        // The test binary itself is dynamically linked (cargo's default on glibc).
        let me = std::env::current_exe().unwrap();
        assert_eq!(file_linkage(&me), Linkage::Dynamic);
    }
}

//! Kernel images: finding them in `/boot`, reading the release each one carries, and turning
//! a `--kernel` argument (`host`, a path, or a release) into what to boot.

use std::fmt;
use std::path::{Path, PathBuf};

use super::VmError;
use super::release::Release;

/// Where Debian and most distributions install kernel images.
pub const BOOT_DIR: &str = "/boot";

/// A bootable x86 kernel image and the release written in its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    pub path: PathBuf,
    pub release: Release,
    /// Why the guest could not see this machine's file system, when the kernel's config
    /// (`/boot/config-RELEASE`) says it lacks 9p over virtio; `None` when it has it or no config
    /// was found.
    pub missing: Option<String>,
}

/// What one `--kernel` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The running kernel: scenarios run natively, no VM.
    Host(Release),
    Image(KernelImage),
}

impl Kernel {
    pub fn release(&self) -> &Release {
        match self {
            Kernel::Host(r) => r,
            Kernel::Image(i) => &i.release,
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kernel::Host(r) => write!(f, "{r} (host)"),
            Kernel::Image(i) => write!(f, "{}", i.release),
        }
    }
}

/// The x86 boot protocol header: "HdrS" at 0x202, and at 0x20E the offset (from 0x200) of a
/// NUL-terminated version string that starts with the release.
const HEADER_MAGIC_AT: usize = 0x202;
const VERSION_POINTER_AT: usize = 0x20E;

/// Reads the release from a bzImage's header, as `file(1)` does.
pub fn read_release(path: &Path) -> Result<Release, VmError> {
    let not_image = |why: &str| VmError::NotAnImage {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let data = std::fs::read(path).map_err(|error| VmError::Io {
        what: format!("reading {}", path.display()),
        error,
    })?;
    if data.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) != Some(b"HdrS") {
        return Err(not_image("no x86 boot header (HdrS)"));
    }
    let pointer = data
        .get(VERSION_POINTER_AT..VERSION_POINTER_AT + 2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or_else(|| not_image("truncated header"))?;
    let text = data
        .get(pointer + 0x200..)
        .and_then(|rest| rest.split(|&b| b == 0).next())
        .ok_or_else(|| not_image("the version string lies outside the file"))?;
    let text = String::from_utf8_lossy(text);
    let release = text.split_whitespace().next().unwrap_or("");
    Release::parse(release).map_err(|e| not_image(&e.message))
}

/// What the kernel's config says about reaching the host's file system over 9p.
fn missing_9p(boot: &Path, release: &Release) -> Option<String> {
    let config = std::fs::read_to_string(boot.join(format!("config-{release}"))).ok()?;
    let has = |option: &str| {
        config
            .lines()
            .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
    };
    let lacking: Vec<&str> = ["CONFIG_9P_FS", "CONFIG_NET_9P_VIRTIO"]
        .into_iter()
        .filter(|o| !has(o))
        .collect();
    (!lacking.is_empty()).then(|| {
        format!(
            "built without {} (cannot mount this machine's file system)",
            lacking.join(" and ")
        )
    })
}

fn image_at(boot: &Path, path: &Path) -> Result<KernelImage, VmError> {
    let release = read_release(path)?;
    let missing = missing_9p(boot, &release);
    Ok(KernelImage {
        path: path.to_path_buf(),
        release,
        missing,
    })
}

/// Every `vmlinuz*` image in `boot`, sorted by path; images whose header cannot be read are
/// returned as errors beside the good ones so a listing can show both.
pub fn find_images(boot: &Path) -> Result<Vec<Result<KernelImage, VmError>>, VmError> {
    let entries = std::fs::read_dir(boot).map_err(|error| VmError::Io {
        what: format!("listing {}", boot.display()),
        error,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
                && p.is_file()
        })
        .collect();
    paths.sort();
    Ok(paths.iter().map(|p| image_at(boot, p)).collect())
}

/// Resolves one `--kernel` argument: `host`, a path to an image, or a release whose
/// `vmlinuz-RELEASE` is in `boot`.
pub fn resolve(spec: &str, boot: &Path) -> Result<Kernel, VmError> {
    if spec == "host" {
        let release = super::release::running().map_err(|e| VmError::Io {
            what: "reading the running kernel's release".into(),
            error: std::io::Error::other(e.message),
        })?;
        return Ok(Kernel::Host(release));
    }
    let as_path = Path::new(spec);
    if spec.contains('/') || as_path.is_file() {
        if !as_path.is_file() {
            return Err(VmError::NoSuchKernel {
                spec: spec.to_string(),
                known: known_releases(boot),
            });
        }
        let dir = as_path.parent().unwrap_or(Path::new("."));
        return image_at(dir, as_path).map(Kernel::Image);
    }
    let path = boot.join(format!("vmlinuz-{spec}"));
    if path.is_file() {
        return image_at(boot, &path).map(Kernel::Image);
    }
    Err(VmError::NoSuchKernel {
        spec: spec.to_string(),
        known: known_releases(boot),
    })
}

fn known_releases(boot: &Path) -> Vec<String> {
    find_images(boot)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(|i| i.release.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal image: the boot header magic and a version pointer, nothing bootable.
    fn fake_image(release: &str) -> Vec<u8> {
        let mut data = vec![0u8; 0x400];
        data[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(b"HdrS");
        data[VERSION_POINTER_AT..VERSION_POINTER_AT + 2].copy_from_slice(&0x200u16.to_le_bytes());
        data.extend_from_slice(format!("{release} (builder@host) #1 SMP\0").as_bytes());
        data
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "epollscope-image-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn images_are_found_and_named_by_their_header() {
        let boot = scratch("find");
        std::fs::write(
            boot.join("vmlinuz-6.1.0-9-amd64"),
            fake_image("6.1.0-9-amd64"),
        )
        .unwrap();
        std::fs::write(boot.join("vmlinuz-broken"), b"not a kernel").unwrap();
        std::fs::write(boot.join("config-6.1.0-9-amd64"), "CONFIG_9P_FS=m\n").unwrap();
        std::fs::write(boot.join("initrd.img-6.1.0-9-amd64"), b"").unwrap();
        let found = find_images(&boot).unwrap();
        assert_eq!(found.len(), 2);
        let good = found[0].as_ref().unwrap();
        assert_eq!(good.release.text, "6.1.0-9-amd64");
        assert_eq!(
            good.missing.as_deref(),
            Some("built without CONFIG_NET_9P_VIRTIO (cannot mount this machine's file system)")
        );
        assert!(matches!(found[1], Err(VmError::NotAnImage { .. })));

        let by_release = resolve("6.1.0-9-amd64", &boot).unwrap();
        assert_eq!(by_release.release().text, "6.1.0-9-amd64");
        let path = boot.join("vmlinuz-6.1.0-9-amd64");
        let by_path = resolve(path.to_str().unwrap(), &boot).unwrap();
        assert_eq!(by_path, by_release);
        match resolve("5.10.0-1-amd64", &boot) {
            Err(VmError::NoSuchKernel { known, .. }) => assert_eq!(known, ["6.1.0-9-amd64"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve("host", &boot),
            Ok(Kernel::Host(r)) if r == super::super::release::running().unwrap()
        ));
        std::fs::remove_dir_all(&boot).unwrap();
    }
}

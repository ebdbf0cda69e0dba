//! Socket families and endpoints: what a user types on a command line (`unix /tmp/x`, `inet 8080`)
//! turned into a checked address, with errors a user can act on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names;

/// Longest AF_UNIX path the kernel accepts: `sun_path` is 108 bytes and needs its NUL.
/// (The original tools silently truncated longer paths; we refuse them instead.)
pub const UNIX_PATH_MAX: usize = 107;

/// An address family the tools can listen and connect on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Unix,
    Inet,
    Inet6,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Unix, Family::Inet, Family::Inet6];

    pub fn name(self) -> &'static str {
        match self {
            Family::Unix => "unix",
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }

    /// The family an `AF_*` constant names (`AF_UNIX`, `AF_LOCAL`, `AF_INET`, `AF_INET6`):
    /// the one reading of a family written as C spells it, from [`names::FAMILIES`].
    pub fn from_af_name(name: &str) -> Option<Family> {
        names::value_of(names::FAMILIES, name).and_then(Family::from_raw)
    }

    /// The C constant, as strace prints it.
    pub fn af_name(self) -> &'static str {
        names::name(names::FAMILIES, self.raw()).expect("names::FAMILIES names every Family")
    }

    pub fn raw(self) -> i32 {
        match self {
            Family::Unix => libc::AF_UNIX,
            Family::Inet => libc::AF_INET,
            Family::Inet6 => libc::AF_INET6,
        }
    }

    pub fn from_raw(af: i32) -> Option<Family> {
        match af {
            libc::AF_UNIX => Some(Family::Unix),
            libc::AF_INET => Some(Family::Inet),
            libc::AF_INET6 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The loopback address of an IP family; `None` for unix.
    pub fn loopback(self) -> Option<IpAddr> {
        match self {
            Family::Unix => None,
            Family::Inet => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Family::Inet6 => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unix" | "local" => Ok(Family::Unix),
            "inet" | "inet4" | "tcp" => Ok(Family::Inet),
            "inet6" | "tcp6" => Ok(Family::Inet6),
            other => Err(AddrError::UnknownFamily(other.to_string())),
        }
    }
}

/// A concrete socket address: a filesystem path or an IP address and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum SockAddr {
    Unix { path: PathBuf },
    Inet { addr: SocketAddr },
}

impl SockAddr {
    pub fn family(&self) -> Family {
        match self {
            SockAddr::Unix { .. } => Family::Unix,
            SockAddr::Inet { addr } if addr.is_ipv4() => Family::Inet,
            SockAddr::Inet { .. } => Family::Inet6,
        }
    }

    pub fn unix(path: impl Into<PathBuf>) -> SockAddr {
        SockAddr::Unix { path: path.into() }
    }

    pub fn ip(addr: SocketAddr) -> SockAddr {
        SockAddr::Inet { addr }
    }

    pub fn port(&self) -> Option<u16> {
        match self {
            SockAddr::Unix { .. } => None,
            SockAddr::Inet { addr } => Some(addr.port()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            SockAddr::Unix { path } => Some(path),
            SockAddr::Inet { .. } => None,
        }
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Unix { path } => write!(f, "{}", path.display()),
            SockAddr::Inet { addr } => write!(f, "{addr}"),
        }
    }
}

/// Why a family or address given by the user cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("unknown socket family '{0}': expected unix, inet or inet6")]
    UnknownFamily(String),
    #[error("invalid port '{0}': expected a number from 0 to 65535 (0 picks a free port)")]
    BadPort(String),
    #[error("invalid {family} address '{given}': expected a port or HOST:PORT")]
    BadHost { family: Family, given: String },
    #[error("unix socket path '{0}' is {1} bytes long; the kernel allows at most {UNIX_PATH_MAX}")]
    PathTooLong(String, usize),
    #[error("unix socket path must not be empty")]
    EmptyPath,
}

/// Parses the `[path|port]` argument of a family into an address.
///
/// For unix it is a path. For inet/inet6 it is a port on loopback, or `HOST:PORT`
/// (`[HOST]:PORT` for inet6); port 0 asks the kernel for a free one.
pub fn parse_endpoint(family: Family, text: &str) -> Result<SockAddr, AddrError> {
    match family {
        Family::Unix => {
            if text.is_empty() {
                return Err(AddrError::EmptyPath);
            }
            if text.len() > UNIX_PATH_MAX {
                return Err(AddrError::PathTooLong(text.to_string(), text.len()));
            }
            Ok(SockAddr::unix(text))
        }
        Family::Inet | Family::Inet6 => {
            if let Ok(addr) = text.parse::<SocketAddr>() {
                let wanted_v4 = family == Family::Inet;
                if addr.is_ipv4() != wanted_v4 {
                    return Err(AddrError::BadHost {
                        family,
                        given: text.to_string(),
                    });
                }
                return Ok(SockAddr::ip(addr));
            }
            if text.contains(':') && !text.chars().all(|c| c.is_ascii_digit()) {
                return Err(AddrError::BadHost {
                    family,
                    given: text.to_string(),
                });
            }
            let port: u16 = text
                .parse()
                .map_err(|_| AddrError::BadPort(text.to_string()))?;
            let ip = family.loopback().expect("IP family has a loopback");
            Ok(SockAddr::ip(SocketAddr::new(ip, port)))
        }
    }
}

/// The address a tool uses when the user gave none: a per-process path under the temporary
/// directory, or an ephemeral loopback port.
pub fn default_endpoint(family: Family, tool: &str) -> SockAddr {
    match family {
        Family::Unix => {
            SockAddr::unix(std::env::temp_dir().join(format!("{tool}-{}.sock", std::process::id())))
        }
        _ => SockAddr::ip(SocketAddr::new(family.loopback().expect("IP family"), 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_parse_and_reject_unknown() {
        assert_eq!("inet6".parse::<Family>(), Ok(Family::Inet6));
        assert_eq!(
            "ipx".parse::<Family>().unwrap_err().to_string(),
            "unknown socket family 'ipx': expected unix, inet or inet6"
        );
    }

    #[test]
    fn af_names_read_back_as_their_family() {
        for f in Family::ALL {
            assert_eq!(Family::from_af_name(f.af_name()), Some(f));
            assert_eq!(f.name().parse::<Family>(), Ok(f));
        }
        assert_eq!(Family::from_af_name("AF_LOCAL"), Some(Family::Unix));
        assert_eq!(Family::from_af_name("AF_NETLINK"), None);
    }

    #[test]
    fn ports_and_hosts() {
        assert_eq!(
            parse_endpoint(Family::Inet, "8080").unwrap(),
            SockAddr::ip("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint(Family::Inet6, "0").unwrap(),
            SockAddr::ip("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            parse_endpoint(Family::Inet, "10.0.0.1:80").unwrap().port(),
            Some(80)
        );
        assert!(matches!(
            parse_endpoint(Family::Inet, "70000"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            parse_endpoint(Family::Inet, "[::1]:80"),
            Err(AddrError::BadHost { .. })
        ));
    }

    #[test]
    fn unix_paths_are_never_truncated() {
        let long = format!("/tmp/{}", "x".repeat(103));
        assert_eq!(long.len(), 108);
        assert_eq!(
            parse_endpoint(Family::Unix, &long),
            Err(AddrError::PathTooLong(long.clone(), 108))
        );
        assert!(parse_endpoint(Family::Unix, &long[..UNIX_PATH_MAX]).is_ok());
    }
}

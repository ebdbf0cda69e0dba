//! The one socket address type at the kernel edge ([`RawAddr`], a `sockaddr_storage` and its
//! length) and the one decoder from kernel bytes to [`SockAddr`] ([`decode`]), used for what
//! the kernel wrote (accept, getsockname) and for what a traced program passed (the shim).

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;

use crate::addr::SockAddr;

/// A sockaddr in kernel layout. Unix addresses are passed with the full
/// `sizeof(struct sockaddr_un)` (110), as most C servers do, so traces show a stable length.
///
/// As an out-parameter ([`RawAddr::default`]) `len` starts at the size of the storage and the
/// kernel sets it to the length of what it wrote. A `len` larger than the storage is refused
/// by the kernel (EINVAL), so the fields can be public.
#[derive(Clone, Copy)]
pub struct RawAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl Default for RawAddr {
    fn default() -> Self {
        RawAddr {
            storage: zeroed_storage(),
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

impl RawAddr {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub(crate) fn ptr_mut(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    /// The bytes of the address (at most the storage: a kernel may report a longer length
    /// for a truncated address).
    pub fn as_bytes(&self) -> &[u8] {
        let n = (self.len as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: storage is initialised plain old data of at least n bytes.
        unsafe {
            std::slice::from_raw_parts((&self.storage as *const libc::sockaddr_storage).cast(), n)
        }
    }

    /// The whole storage, to write an address into (then set `len`).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: storage is plain old data of exactly this size, borrowed mutably.
        unsafe {
            std::slice::from_raw_parts_mut(
                (&mut self.storage as *mut libc::sockaddr_storage).cast::<u8>(),
                size_of::<libc::sockaddr_storage>(),
            )
        }
    }

    /// The address as the trace shows it; `None` for families it cannot show.
    pub fn decode(&self) -> Option<SockAddr> {
        decode(self.as_bytes())
    }
}

impl From<&SockAddr> for RawAddr {
    fn from(addr: &SockAddr) -> RawAddr {
        let mut raw = RawAddr {
            storage: zeroed_storage(),
            len: 0,
        };
        let mut put = |bytes: &[u8]| raw.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        let len = match addr {
            SockAddr::Unix { path } => {
                let mut b = (libc::AF_UNIX as libc::sa_family_t).to_ne_bytes().to_vec();
                let max_path = size_of::<libc::sockaddr_un>() - b.len() - 1;
                let bytes = path.as_os_str().as_bytes();
                // Paths were length-checked when parsed; refuse to overrun anyway.
                b.extend_from_slice(&bytes[..bytes.len().min(max_path)]);
                put(&b);
                size_of::<libc::sockaddr_un>()
            }
            SockAddr::Inet {
                addr: SocketAddr::V4(v4),
            } => {
                let mut b = (libc::AF_INET as libc::sa_family_t).to_ne_bytes().to_vec();
                b.extend_from_slice(&v4.port().to_be_bytes());
                b.extend_from_slice(&v4.ip().octets());
                put(&b);
                size_of::<libc::sockaddr_in>()
            }
            SockAddr::Inet {
                addr: SocketAddr::V6(v6),
            } => {
                let mut b = (libc::AF_INET6 as libc::sa_family_t).to_ne_bytes().to_vec();
                b.extend_from_slice(&v6.port().to_be_bytes());
                b.extend_from_slice(&v6.flowinfo().to_be_bytes());
                b.extend_from_slice(&v6.ip().octets());
                b.extend_from_slice(&v6.scope_id().to_ne_bytes());
                put(&b);
                size_of::<libc::sockaddr_in6>()
            }
        };
        raw.len = len as libc::socklen_t;
        raw
    }
}

/// Decodes `bytes`, a sockaddr of that many bytes (as passed to bind/connect, or as written
/// by the kernel). Families the trace cannot show decode to `None`.
///
/// A unix address whose path starts with NUL is an abstract name, shown as strace does with
/// a leading `@`; an unnamed unix socket (no path bytes) decodes to an empty path.
pub fn decode(bytes: &[u8]) -> Option<SockAddr> {
    let family = libc::sa_family_t::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]) as i32;
    match family {
        libc::AF_INET if bytes.len() >= 8 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SockAddr::ip(SocketAddr::V4(SocketAddrV4::new(ip, port))))
        }
        libc::AF_INET6 if bytes.len() >= 28 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flow = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
            let ip: [u8; 16] = bytes[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes(bytes[24..28].try_into().ok()?);
            Some(SockAddr::ip(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            ))))
        }
        libc::AF_UNIX => {
            let path = &bytes[2..];
            let shown: Vec<u8> = match path.first() {
                Some(0) => {
                    let mut v = vec![b'@'];
                    v.extend_from_slice(&path[1..]);
                    v
                }
                _ => path.iter().copied().take_while(|&c| c != 0).collect(),
            };
            Some(SockAddr::unix(std::ffi::OsStr::from_bytes(&shown)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_inet_inet6_and_unix() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            decode(&v4),
            Some(SockAddr::ip("127.0.0.1:8080".parse().unwrap()))
        );
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(
            decode(&v6),
            Some(SockAddr::ip("[::1]:443".parse().unwrap()))
        );
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/tmp/s\0\0\0");
        assert_eq!(decode(&un), Some(SockAddr::unix("/tmp/s")));
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(decode(&abs), Some(SockAddr::unix("@name")));
        assert_eq!(decode(&[1]), None);
        assert_eq!(decode(&(libc::AF_NETLINK as u16).to_ne_bytes()), None);
    }

    #[test]
    fn encoding_round_trips_through_the_decoder() {
        for addr in [
            SockAddr::ip("127.0.0.1:8080".parse().unwrap()),
            SockAddr::ip("[::1]:443".parse().unwrap()),
            SockAddr::unix("/tmp/x.sock"),
        ] {
            let raw = RawAddr::from(&addr);
            assert_eq!(raw.decode(), Some(addr));
        }
        assert_eq!(RawAddr::from(&SockAddr::unix("/s")).len(), 110);
    }

    /// The kernel's own report of an abstract name (getsockname) decodes to `@name`, as the
    /// shim shows the same address (the two decoders used to disagree: `@x` vs empty).
    #[test]
    fn getsockname_of_an_abstract_unix_socket_is_at_name() {
        let fd =
            crate::sys::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).unwrap();
        let name = format!("epollscope-test-{}", std::process::id());
        let mut raw = RawAddr::default();
        let mut b = (libc::AF_UNIX as libc::sa_family_t).to_ne_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(name.as_bytes());
        raw.len = b.len() as libc::socklen_t;
        raw.as_bytes_mut()[..b.len()].copy_from_slice(&b);
        crate::sys::bind(fd, &raw).unwrap();
        let got = crate::sys::getsockname(fd).unwrap();
        let _ = crate::sys::close(fd);
        assert_eq!(got, SockAddr::unix(format!("@{name}")));
    }
}

//! Socket addresses as the shim sees them: raw bytes from the host program's memory, turned
//! into [`SockAddr`] for the trace. Families the trace cannot show decode to `None`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;

use crate::addr::SockAddr;

/// Decodes `bytes` (a sockaddr of that many bytes, as passed to bind/connect).
pub fn decode(bytes: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]) as i32;
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
            // An abstract name starts with NUL; show it as strace does, with a leading '@'.
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
}

//! Live capture on one interface through an AF_PACKET socket (needs root or CAP_NET_RAW).
//!
//! The socket listens on every interface and keeps the chosen one's frames: binding would need
//! a hand-built `sockaddr_ll`, and filtering on the receive address costs nothing at
//! the rates a toolkit sees. On loopback every frame is delivered twice (outgoing and incoming);
//! like libpcap we keep only the incoming copy.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, socket,
};
use thiserror::Error;

use super::packet::linktype;

#[derive(Debug, Error)]
pub enum LiveError {
    #[error("no such interface")]
    NoSuchInterface,
    #[error("live capture needs root or CAP_NET_RAW (socket(AF_PACKET): {0})")]
    Permission(Errno),
    #[error(transparent)]
    Io(#[from] io::Error),
}

const PACKET_OUTGOING: u8 = 4;
const ARPHRD_NONE: u16 = 0xfffe;
/// Loopback frames can reach 64 KiB plus headers (GSO); more than that is truncated.
const SNAPLEN: usize = 256 * 1024;

/// A captured frame, borrowed from the capture's buffer.
pub struct LivePacket<'a> {
    pub ts_ns: u64,
    pub linktype: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

pub struct Capture {
    fd: OwnedFd,
    ifindex: usize,
    buf: Vec<u8>,
}

impl Capture {
    pub fn open(iface: &str) -> Result<Capture, LiveError> {
        let ifindex =
            nix::net::if_::if_nametoindex(iface).map_err(|_| LiveError::NoSuchInterface)? as usize;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::EthAll,
        )
        .map_err(|e| match e {
            Errno::EPERM | Errno::EACCES => LiveError::Permission(e),
            e => LiveError::Io(e.into()),
        })?;
        // A burst on loopback (64 KiB GSO frames) overruns the default queue while a slow
        // consumer (debug build, --follow printing) works: ask for a deep one. FORCE needs
        // CAP_NET_ADMIN; without it the plain option is capped by net.core.rmem_max.
        let deep = 64 << 20;
        if nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBufForce, &deep).is_err()
        {
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &deep);
        }
        Ok(Capture {
            fd,
            ifindex,
            buf: vec![0; SNAPLEN],
        })
    }

    /// The next frame of the interface if one is queued (the socket is non-blocking; poll its
    /// fd to wait).
    pub fn try_next(&mut self) -> Result<Option<LivePacket<'_>>, LiveError> {
        loop {
            let (n, addr) = match recvfrom::<LinkAddr>(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                &mut self.buf,
            ) {
                Ok(r) => r,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(LiveError::Io(e.into())),
            };
            let Some(addr) = addr else { continue };
            if addr.ifindex() != self.ifindex || addr.pkttype() == PACKET_OUTGOING {
                continue;
            }
            let lt = if addr.hatype() == ARPHRD_NONE {
                linktype::RAW
            } else {
                linktype::ETHERNET
            };
            let ts_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return Ok(Some(LivePacket {
                ts_ns,
                linktype: lt,
                orig_len: n as u32,
                data: &self.buf[..n.min(SNAPLEN)],
            }));
        }
    }
}

impl Capture {
    pub fn as_fd_ref(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for Capture {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

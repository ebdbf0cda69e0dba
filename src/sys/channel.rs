//! The kernel side of [`crate::channel`]: a SOCK_SEQPACKET socketpair, one message per send,
//! with at most one fd passed along (SCM_RIGHTS).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// A connected SEQPACKET pair, close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends one message, with `fd` attached if given. MSG_NOSIGNAL: a peer that is gone is an
/// EPIPE for the caller to handle, never a SIGPIPE (children run with the default one).
pub fn send(chan: RawFd, bytes: &[u8], fd: Option<RawFd>) -> Result<(), Errno> {
    let iov = [IoSlice::new(bytes)];
    let fds;
    let cmsgs: Vec<ControlMessage> = match fd {
        Some(fd) => {
            fds = [fd];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => vec![],
    };
    loop {
        match sendmsg::<()>(chan, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives one message into `buf`; returns its length (0 at end of file: every sender is
/// gone) and the fd passed with it, now owned by the caller (close-on-exec). With `wait`
/// false an empty channel is `Err(EAGAIN)`.
pub fn recv(chan: RawFd, buf: &mut [u8], wait: bool) -> Result<(usize, Option<OwnedFd>), Errno> {
    let flags = if wait {
        MsgFlags::MSG_CMSG_CLOEXEC
    } else {
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT
    };
    let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(chan, &mut iov, Some(&mut cmsg_space), flags) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fd = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for &f in &fds {
                // SAFETY: the kernel just installed these fds in our table; nothing else
                // knows their numbers, so we own them. Extra ones are closed on drop.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(Errno::EMSGSIZE);
    }
    Ok((msg.bytes, fd))
}

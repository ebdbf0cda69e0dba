//! The one parent/child channel: typed messages as JSON over a SOCK_SEQPACKET socketpair, one
//! message per send (so several processes may share a sending end without interleaving), with
//! an optional fd passed along (SCM_RIGHTS), e.g. a new child's own channel.
//!
//! Used by `epoll-socket-test`'s connecting child, `epoll-listen-fork`'s waiter reports and the
//! scenario actors. End of file (every sending end closed) is `Ok(None)`: the peer is gone.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

/// Largest message on a channel.
pub const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The system call failed (EPIPE: the peer is gone).
    #[error(transparent)]
    Os(#[from] Errno),
    #[error("message of {0} bytes is over the channel's limit of {MAX_MESSAGE}")]
    TooBig(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ChannelError {
    /// The errno that stands for this error (EMSGSIZE, EBADMSG for the channel's own).
    pub fn errno(&self) -> Errno {
        match self {
            ChannelError::Os(e) => *e,
            ChannelError::TooBig(_) => Errno::EMSGSIZE,
            ChannelError::Malformed(_) => Errno::EBADMSG,
        }
    }
}

/// One end of a channel: sends `S`, receives `R`.
pub struct Channel<S, R> {
    fd: OwnedFd,
    /// Allocated at the first receive (senders never need it).
    buf: Vec<u8>,
    _types: PhantomData<fn(S) -> R>,
}

/// What a non-blocking receive found.
#[derive(Debug)]
pub enum TryRecv<R> {
    Msg(R),
    /// Nothing queued now.
    Empty,
    /// Every sending end is closed.
    Closed,
}

/// The two ends of one channel: the first sends `A` and receives `B`.
pub type Pair<A, B> = (Channel<A, B>, Channel<B, A>);

/// A connected pair of ends (close-on-exec).
pub fn pair<A, B>() -> Result<Pair<A, B>, Errno> {
    let (a, b) = sys::channel::seqpacket_pair()?;
    Ok((Channel::from_fd(a), Channel::from_fd(b)))
}

impl<S, R> Channel<S, R> {
    /// An end received from elsewhere (an fd passed with a message, or inherited over exec).
    pub fn from_fd(fd: OwnedFd) -> Channel<S, R> {
        Channel {
            fd,
            buf: Vec::new(),
            _types: PhantomData,
        }
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Moves the end to a number at or above `min`, out of the way of the fds the code under
    /// study creates (which are then numbered as in a fresh process).
    pub fn park(self, min: RawFd) -> Result<Channel<S, R>, Errno> {
        Ok(Channel::from_fd(sys::process::move_high(self.fd, min)?))
    }
}

impl<S: Serialize, R: DeserializeOwned> Channel<S, R> {
    pub fn send(&self, msg: &S) -> Result<(), ChannelError> {
        self.send_inner(msg, None)
    }

    /// Sends `msg` with a copy of `fd`, which the receiver gets as its own.
    pub fn send_with_fd(&self, msg: &S, fd: BorrowedFd<'_>) -> Result<(), ChannelError> {
        self.send_inner(msg, Some(fd.as_raw_fd()))
    }

    fn send_inner(&self, msg: &S, fd: Option<RawFd>) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg).map_err(|e| ChannelError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_MESSAGE {
            return Err(ChannelError::TooBig(bytes.len()));
        }
        Ok(sys::channel::send(self.fd.as_raw_fd(), &bytes, fd)?)
    }

    /// Waits for the next message; `None` when every sending end is closed.
    pub fn recv(&mut self) -> Result<Option<R>, ChannelError> {
        Ok(self.recv_with_fd()?.map(|(msg, _)| msg))
    }

    /// Like [`Channel::recv`], with the fd that came with the message.
    pub fn recv_with_fd(&mut self) -> Result<Option<(R, Option<OwnedFd>)>, ChannelError> {
        match self.recv_inner(true)? {
            (0, _) => Ok(None),
            (len, fd) => Ok(Some((self.decode(len)?, fd))),
        }
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<TryRecv<R>, ChannelError> {
        match self.recv_inner(false) {
            Ok((0, _)) => Ok(TryRecv::Closed),
            Ok((len, _)) => Ok(TryRecv::Msg(self.decode(len)?)),
            Err(ChannelError::Os(Errno::EAGAIN)) => Ok(TryRecv::Empty),
            Err(e) => Err(e),
        }
    }

    fn recv_inner(&mut self, wait: bool) -> Result<(usize, Option<OwnedFd>), ChannelError> {
        if self.buf.is_empty() {
            self.buf = vec![0; MAX_MESSAGE];
        }
        Ok(sys::channel::recv(
            self.fd.as_raw_fd(),
            &mut self.buf,
            wait,
        )?)
    }

    fn decode(&self, len: usize) -> Result<R, ChannelError> {
        serde_json::from_slice(&self.buf[..len]).map_err(|e| ChannelError::Malformed(e.to_string()))
    }
}

impl<S, R> AsRawFd for Channel<S, R> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<S, R> AsFd for Channel<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<S, R> fmt::Debug for Channel<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("fd", &self.fd).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross_and_eof_is_none() {
        let (a, mut b) = pair::<Vec<String>, u32>().unwrap();
        a.send(&vec!["x".into(), "y".into()]).unwrap();
        let (spare, _keep) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        a.send_with_fd(&vec![], spare.as_fd()).unwrap();
        assert_eq!(
            b.recv().unwrap(),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        let (msg, fd) = b.recv_with_fd().unwrap().unwrap();
        assert!(msg.is_empty());
        assert!(fd.is_some());
        assert!(matches!(b.try_recv().unwrap(), TryRecv::Empty));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
        assert!(matches!(b.try_recv().unwrap(), TryRecv::Closed));
    }

    #[test]
    fn senders_share_an_end_without_interleaving() {
        let (tx, mut rx) = pair::<String, String>().unwrap();
        let big = "z".repeat(100_000);
        tx.send(&big).unwrap();
        tx.send(&"small".to_string()).unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some(big.as_str()));
        assert_eq!(rx.recv().unwrap().as_deref(), Some("small"));
    }

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        let (tx, _rx) = pair::<String, String>().unwrap();
        let err = tx.send(&"z".repeat(MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.errno(), Errno::EMSGSIZE);
    }
}

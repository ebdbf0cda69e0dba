//! Errors of the monitoring-socket API, one variant per errno the mOS man pages name.

use thiserror::Error;

/// A failed socket call. [`MonError::errno`] gives the errno name mOS would set.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MonError {
    /// The socket belongs to another monitor (mOS: the mctx argument is invalid).
    #[error("EACCES: the socket belongs to another monitor context")]
    BadContext,
    /// No such flow, or it ended and was freed.
    #[error("EBADF: no monitored flow with this id")]
    BadSocket,
    /// The operation needs a flow socket, not the monitor's passive socket.
    #[error("ENOTSOCK: not a flow monitoring socket")]
    NotFlowSocket,
    /// Buffering was disabled for this side (buffer size set to 0).
    #[error("EINVAL: buffer management is disabled for this side")]
    BufferDisabled,
    /// An invalid option value (a buffer smaller than the bytes it must keep, re-enabling).
    #[error("EINVAL: {0}")]
    InvalidValue(&'static str),
    /// The side's TCP state disallows reading (it never reached ESTABLISHED).
    #[error("ENOTCONN: the side's TCP state ({0}) disallows reading")]
    NotConnected(super::TcpState),
    /// Nothing buffered at the peek offset (or, for ppeek, at the requested offset).
    #[error("ENODATA: no buffered bytes to read")]
    NoData,
    /// The buffer was overwritten since the last peek: this peek fails once so that the loss is
    /// noticed; the next one reads from the oldest byte still held. The man page names no errno
    /// for this; ENODATA is what the bytes at the old peek offset are.
    #[error("ENODATA: the buffer overflowed and {lost} unread bytes were overwritten")]
    Overwritten { lost: u64 },
    /// Bytes missing from the capture were skipped (`--gaps skip`): this peek fails once so that
    /// the hole is noticed; the next one reads what follows it.
    #[error("ENODATA: {len} bytes missing at stream offset {offset} (not in the capture)")]
    Hole { offset: u64, len: u64 },
    /// Monitoring of this side was stopped: the caller no longer owns it.
    #[error("EPERM: monitoring of this side was stopped")]
    Stopped,
    /// Unknown option level or name.
    #[error("ENOSYS: option level {level:#x} name {name:#x} not implemented")]
    NotImplemented { level: i32, name: i32 },
}

impl MonError {
    /// The errno name mOS sets for this failure.
    pub fn errno(&self) -> &'static str {
        match self {
            MonError::BadContext => "EACCES",
            MonError::BadSocket => "EBADF",
            MonError::NotFlowSocket => "ENOTSOCK",
            MonError::BufferDisabled | MonError::InvalidValue(_) => "EINVAL",
            MonError::NotConnected(_) => "ENOTCONN",
            MonError::NoData | MonError::Overwritten { .. } | MonError::Hole { .. } => "ENODATA",
            MonError::Stopped => "EPERM",
            MonError::NotImplemented { .. } => "ENOSYS",
        }
    }
}

//! Socket addresses as the shim sees them: raw bytes from the host program's memory, turned
//! into [`crate::addr::SockAddr`] for the trace by the one decoder in [`crate::sys::sockaddr`].

pub use crate::sys::sockaddr::decode;

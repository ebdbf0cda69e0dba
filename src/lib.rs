//! epollscope: make the behaviour of Linux epoll and listening sockets visible, reproducible
//! and checkable.
//!
//! The layers, bottom up:
//! * [`sys`]: one safe function per system call, on raw fd numbers (the only `unsafe` code).
//! * [`addr`] and [`net`]: families, endpoints, listener and client setup with actionable errors.
//! * [`epoll`]: typed epoll interest (`Interest::IN | Interest::ET`).
//! * [`tracer`]: makes calls and records each as a [`trace::Event`].
//! * [`trace`]: the events and their one strace-like formatter (symbolic and raw renderings).
//! * [`probe`], [`forkserver`], [`storm`]: the logic of the three reproducer binaries.
//! * [`cli`]: conventions shared by the binaries (error exit codes).

pub mod addr;
pub mod channel;
pub mod cli;
pub mod epoll;
pub mod fastpath;
pub mod monitor;
pub mod names;
pub mod net;
pub mod scenario;
pub mod shim;
pub mod sys;
pub mod trace;
pub mod tracer;
pub mod vm;

pub use addr::{Family, SockAddr};
pub use epoll::Interest;
pub use trace::{Event, Format, Rendering};
pub use tracer::Tracer;

//! epollscope: make the behaviour of Linux epoll and listening sockets visible, reproducible
//! and checkable. `ARCHITECTURE.md` has the map; the modules, bottom up:
//!
//! * [`sys`]: the OS edge, one safe function per system call on raw fd numbers, the one
//!   sockaddr type and decoder, processes, signals, `/proc`; the only code the compiler
//!   cannot check for memory safety.
//! * [`channel`]: the one parent/child channel (typed JSON messages, optional fd passing).
//! * [`addr`] and [`net`]: families, endpoints, listener and client set-up with actionable
//!   errors; socket files removed only by their creator.
//! * [`names`]: the tables of constant names, for printing traces and parsing scripts.
//! * [`epoll`]: typed epoll interest (`Interest::IN | Interest::ET`) and trigger modes.
//! * [`tracer`]: makes calls and records each as a [`trace::Event`].
//! * [`trace`]: the events and their one strace-like formatter (symbolic and raw renderings).
//! * [`scenario`]: the scenario language, its call table, runner and actors.
//! * [`model`]: the documented contract; the results the man pages allow for each step.
//! * [`vm`]: the kernel matrix: kernel images, booting them with virtme-ng, the report.
//! * [`monitor`]: TCP flow reassembly with mOS monitoring-socket semantics.
//! * [`shim`]: what the preload shim and `epollscope trace` share (settings, trace merging).
//! * [`fastpath`]: the Fastsocket fast path (kernel module backend and its emulation).
//! * [`cli`]: what every binary shares: the `main` wrapper, exit codes, clap value parsers.
//! * [`docs`]: man pages and shell completions generated from each binary's clap command.
//!
//! The tools' own logic lives with their binaries in `src/bin/`; the library never prints.

// Only `sys` may opt back in (an inner `allow` there).
#![deny(unsafe_code)]

pub mod addr;
pub mod channel;
pub mod cli;
pub mod docs;
pub mod epoll;
pub mod fastpath;
pub mod model;
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

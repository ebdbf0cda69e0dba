//! One harness per server the shim is tried on, written once for the integration tests and the
//! benchmark programs: the tests declare `mod servers;`, a program in `bench/` includes this
//! directory with `#[path = "../tests/servers/mod.rs"] mod servers;`. Each harness writes its
//! server's configuration into a directory of its own, picks a free loopback port, starts the
//! server in a process group of its own, waits for conditions (never for time), and stops it
//! gracefully or kills its whole group; see `process.rs` for what is guaranteed.
#![allow(dead_code)]

pub mod nginx;
pub mod phpfpm;
pub mod process;

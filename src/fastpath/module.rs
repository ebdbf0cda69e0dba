//! The Fastsocket kernel module backend: every operation is one ioctl on the process's channel
//! to `/dev/fastsocket`, with the argument laid out as in [`super::abi`].
//!
//! Unlike libfsocket, opening the channel is a choice, not a condition of running: a missing
//! device is reported to the caller (which falls back), and accept4 keeps its flags.

use std::path::Path;

use nix::errno::Errno;

use super::abi::{self, FsocketIoctlArg, Op};
use super::{Backend, FastPath, ListenTable, PeerAddr};
use crate::sys::{self, RawFd};

/// The channel is kept above the fds programs usually use, so that a host that closes or
/// dup2s low numbers does not hit it by accident.
const CHANNEL_MIN_FD: i32 = 600;

pub struct ModuleBackend {
    channel: RawFd,
    table: ListenTable,
}

impl ModuleBackend {
    /// Opens the module's channel (read-only, close-on-exec: an exec'd program opens its own).
    pub fn open(device: &Path) -> Result<ModuleBackend, Errno> {
        let fd = sys::open_rdonly(device)?;
        let channel = sys::process::move_high_raw(fd, CHANNEL_MIN_FD).unwrap_or(fd);
        Ok(ModuleBackend {
            channel,
            table: ListenTable::new(),
        })
    }

    fn ioctl(&self, cmd: u32, arg: &mut FsocketIoctlArg) -> Result<i32, Errno> {
        abi::ioctl(self.channel, cmd, arg)
    }
}

impl Drop for ModuleBackend {
    fn drop(&mut self) {
        let _ = sys::close(self.channel);
    }
}

impl FastPath for ModuleBackend {
    fn backend(&self) -> Backend {
        Backend::Module
    }

    fn table(&self) -> &ListenTable {
        &self.table
    }

    fn private_fd(&self) -> Option<RawFd> {
        Some(self.channel)
    }

    fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<RawFd, Errno> {
        let mut arg = FsocketIoctlArg::for_fd(0);
        arg.op = Op {
            socket_op: abi::SocketOp {
                family: domain as u32,
                ty: ty as u32,
                protocol: protocol as u32,
            },
        };
        self.ioctl(abi::FSOCKET_IOC_SOCKET, &mut arg)
    }

    fn before_bind(&self, _fd: RawFd) {}

    fn listen(&self, fd: RawFd, backlog: i32) -> Result<(), Errno> {
        let mut arg = FsocketIoctlArg::for_fd(fd);
        arg.backlog = backlog as u32;
        self.ioctl(abi::FSOCKET_IOC_LISTEN, &mut arg)?;
        self.table
            .mark_listen(fd, std::process::id() as i32, backlog);
        Ok(())
    }

    fn accept4(&self, fd: RawFd, peer: Option<&mut PeerAddr>, flags: i32) -> Result<RawFd, Errno> {
        let mut arg = FsocketIoctlArg::for_fd(fd);
        let (sockaddr, len) = match peer {
            Some(p) => (
                (&mut p.storage as *mut libc::sockaddr_storage).cast(),
                (&mut p.len as *mut libc::socklen_t).cast(),
            ),
            None => (std::ptr::null_mut(), std::ptr::null_mut()),
        };
        arg.op = Op {
            accept_op: abi::AcceptOp {
                sockaddr,
                sockaddr_len: len,
                flags,
            },
        };
        self.ioctl(abi::FSOCKET_IOC_ACCEPT, &mut arg)
    }

    fn close(&self, fd: RawFd) -> Result<(), Errno> {
        let _ = self.table.forget(fd);
        let mut arg = FsocketIoctlArg::for_fd(fd);
        self.ioctl(abi::FSOCKET_IOC_CLOSE, &mut arg).map(drop)
    }

    fn shutdown(&self, fd: RawFd, how: i32) -> Result<(), Errno> {
        if !self.table.is_listen(fd) {
            return sys::shutdown(fd, how);
        }
        let mut arg = FsocketIoctlArg::for_fd(fd);
        arg.op = Op {
            shutdown_op: abi::ShutdownOp { how },
        };
        self.ioctl(abi::FSOCKET_IOC_SHUTDOWN_LISTEN, &mut arg)
            .map(drop)
    }

    fn spawn_listen(&self, fd: RawFd, cpu: i32) -> Result<(), Errno> {
        let mut arg = FsocketIoctlArg::for_fd(fd);
        arg.op = Op {
            spawn_op: abi::SpawnOp { cpu },
        };
        self.ioctl(abi::FSOCKET_IOC_SPAWN_LISTEN, &mut arg)
            .map(drop)
    }

    /// libfsocket's rule: every process spawns at its first ADD of a listener (the module
    /// makes a spawn in the listening process harmless).
    fn wants_spawn(&self, fd: RawFd, pid: i32) -> bool {
        self.table.get(fd).is_some_and(|e| e.spawned_in != pid)
    }
}

//! The Fastsocket kernel module's ioctl ABI, byte for byte: the command numbers and the
//! `struct fsocket_ioctl_arg` that every command takes (from Fastsocket's `libsocket.h`).
//!
//! The layout and the one call that passes it ([`ioctl`]); `fastpath::module` makes the calls. The unit tests pin sizes and
//! offsets so a change of field type or order cannot slip through: the module reads this
//! struct straight from user memory.

use std::ffi::{c_char, c_int, c_void};

/// The ioctl "type" byte of every Fastsocket command.
pub const IOC_ID: u32 = 0xf5;

/// `_IO(type, nr)`: no direction and no size bits, so just `type << 8 | nr`.
pub const fn io(ty: u32, nr: u32) -> u32 {
    (ty << 8) | nr
}

pub const FSOCKET_IOC_SOCKET: u32 = io(IOC_ID, 0x01);
pub const FSOCKET_IOC_LISTEN: u32 = io(IOC_ID, 0x02);
pub const FSOCKET_IOC_ACCEPT: u32 = io(IOC_ID, 0x03);
pub const FSOCKET_IOC_CLOSE: u32 = io(IOC_ID, 0x04);
/// Listed in the module's table; the header libfsocket ships comments it out, so the client
/// does not send it (epoll_ctl goes to the kernel directly after a spawn).
pub const FSOCKET_IOC_EPOLL_CTL: u32 = io(IOC_ID, 0x05);
pub const FSOCKET_IOC_SPAWN_LISTEN: u32 = io(IOC_ID, 0x06);
pub const FSOCKET_IOC_SHUTDOWN_LISTEN: u32 = io(IOC_ID, 0x07);

/// `struct socket_accept_op_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptOp {
    pub sockaddr: *mut c_void,
    pub sockaddr_len: *mut c_int,
    pub flags: c_int,
}

/// `struct spawn_op_t`: the CPU whose local listen table gets the copy; -1 is "this one".
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SpawnOp {
    pub cpu: c_int,
}

/// `struct io_op_t` (part of the union; no command the client sends uses it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IoOp {
    pub buf: *mut c_char,
    pub buf_len: u32,
}

/// `struct socket_op_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketOp {
    pub family: u32,
    pub ty: u32,
    pub protocol: u32,
}

/// `struct shutdown_op_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShutdownOp {
    pub how: c_int,
}

/// `struct epoll_op_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EpollOp {
    pub epoll_fd: u32,
    pub size: u32,
    pub ep_ctl_cmd: u32,
    pub time_out: u32,
    pub ev: *mut libc::epoll_event,
}

/// `union ops_arg`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Op {
    pub accept_op: AcceptOp,
    pub spawn_op: SpawnOp,
    pub io_op: IoOp,
    pub socket_op: SocketOp,
    pub shutdown_op: ShutdownOp,
    pub epoll_op: EpollOp,
}

/// `struct fsocket_ioctl_arg`: the one argument of every command.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FsocketIoctlArg {
    pub fd: u32,
    pub backlog: u32,
    pub op: Op,
}

impl FsocketIoctlArg {
    /// An argument naming `fd`, with the union zeroed (the module ignores what it does not use,
    /// but nothing uninitialised should cross into the kernel).
    pub fn for_fd(fd: i32) -> FsocketIoctlArg {
        FsocketIoctlArg {
            fd: fd as u32,
            backlog: 0,
            // The largest member, zeroed, initialises every byte of the union.
            op: Op {
                epoll_op: EpollOp {
                    epoll_fd: 0,
                    size: 0,
                    ep_ctl_cmd: 0,
                    time_out: 0,
                    ev: std::ptr::null_mut(),
                },
            },
        }
    }
}

/// One Fastsocket command on the module's channel `fd`.
pub fn ioctl(fd: i32, cmd: u32, arg: &mut FsocketIoctlArg) -> Result<i32, nix::errno::Errno> {
    // SAFETY: arg is a live, fully initialised fsocket_ioctl_arg in the module's layout; any
    // pointers inside it were set by the caller from live buffers (AcceptOp's address out-
    // parameters), which the kernel writes at most `*sockaddr_len` bytes into.
    super::check(unsafe { libc::ioctl(fd, cmd as libc::Ioctl, arg as *mut FsocketIoctlArg) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn command_numbers_are_io_0xf5_nr() {
        assert_eq!(FSOCKET_IOC_SOCKET, 0xf501);
        assert_eq!(FSOCKET_IOC_LISTEN, 0xf502);
        assert_eq!(FSOCKET_IOC_ACCEPT, 0xf503);
        assert_eq!(FSOCKET_IOC_CLOSE, 0xf504);
        assert_eq!(FSOCKET_IOC_EPOLL_CTL, 0xf505);
        assert_eq!(FSOCKET_IOC_SPAWN_LISTEN, 0xf506);
        assert_eq!(FSOCKET_IOC_SHUTDOWN_LISTEN, 0xf507);
        // _IO has no size or direction bits: bits 16..32 are clear.
        for cmd in [FSOCKET_IOC_SOCKET, FSOCKET_IOC_SHUTDOWN_LISTEN] {
            assert_eq!(cmd >> 16, 0);
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn union_members_have_the_c_layout() {
        assert_eq!(size_of::<AcceptOp>(), 24);
        assert_eq!(offset_of!(AcceptOp, sockaddr), 0);
        assert_eq!(offset_of!(AcceptOp, sockaddr_len), 8);
        assert_eq!(offset_of!(AcceptOp, flags), 16);
        assert_eq!(size_of::<SpawnOp>(), 4);
        assert_eq!(size_of::<IoOp>(), 16);
        assert_eq!(offset_of!(IoOp, buf_len), 8);
        assert_eq!(size_of::<SocketOp>(), 12);
        assert_eq!(offset_of!(SocketOp, ty), 4);
        assert_eq!(offset_of!(SocketOp, protocol), 8);
        assert_eq!(size_of::<ShutdownOp>(), 4);
        assert_eq!(size_of::<EpollOp>(), 24);
        assert_eq!(offset_of!(EpollOp, size), 4);
        assert_eq!(offset_of!(EpollOp, ep_ctl_cmd), 8);
        assert_eq!(offset_of!(EpollOp, time_out), 12);
        assert_eq!(offset_of!(EpollOp, ev), 16);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn ioctl_arg_has_the_c_layout() {
        assert_eq!(size_of::<Op>(), 24);
        assert_eq!(align_of::<Op>(), 8);
        assert_eq!(size_of::<FsocketIoctlArg>(), 32);
        assert_eq!(align_of::<FsocketIoctlArg>(), 8);
        assert_eq!(offset_of!(FsocketIoctlArg, fd), 0);
        assert_eq!(offset_of!(FsocketIoctlArg, backlog), 4);
        assert_eq!(offset_of!(FsocketIoctlArg, op), 8);
    }

    #[test]
    fn for_fd_zeroes_the_union() {
        let arg = FsocketIoctlArg::for_fd(7);
        assert_eq!(arg.fd, 7);
        // SAFETY: the union was initialised through its largest member; reading a smaller
        // plain-integer member of it reads initialised bytes.
        let spawn = unsafe { arg.op.spawn_op };
        assert_eq!(spawn.cpu, 0);
    }
}

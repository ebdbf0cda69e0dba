//! A flow's monitoring socket: what an application reads and sets, with mOS's errors
//! (`mtcp_peek`, `mtcp_ppeek`, `mtcp_getsockopt`/`mtcp_setsockopt` at `SOL_MONSOCKET`).

use std::net::SocketAddr;

use super::engine::{FlowId, FlowInfo, info};
use super::flow::Flow;
use super::stream::{BufInfo, Fragment, OverlapPolicy};
use super::{MonError, Side, Sides, TcpState};

/// Option level of the monitoring-socket options (`SOL_MONSOCKET`).
pub const SOL_MONSOCKET: i32 = 0xfffe;

/// A flow's monitoring socket: read each side's bytestream and set its options.
pub struct FlowSocket<'a> {
    pub(super) id: FlowId,
    pub(super) flow: &'a mut Flow,
}

impl FlowSocket<'_> {
    pub fn id(&self) -> FlowId {
        self.id
    }
    pub fn client(&self) -> SocketAddr {
        self.flow.client
    }
    pub fn server(&self) -> SocketAddr {
        self.flow.server
    }
    pub fn info(&self) -> FlowInfo {
        info(self.id, self.flow)
    }

    fn readable(&mut self, side: Side) -> Result<&mut super::flow::SideStack, MonError> {
        let s = self.flow.side_mut(side);
        if s.stopped {
            return Err(MonError::Stopped);
        }
        if !s.readable {
            return Err(MonError::NotConnected(s.state));
        }
        Ok(s)
    }

    /// `mtcp_peek`: reads up to `buf.len()` bytes at the side's peek offset and advances it.
    pub fn peek(&mut self, side: Side, buf: &mut [u8]) -> Result<usize, MonError> {
        self.readable(side)?.buf.peek(buf)
    }

    /// [`FlowSocket::peek`] without the copy: `read` gets the bytes where they lie.
    pub fn peek_in_place(
        &mut self,
        side: Side,
        max: usize,
        read: impl FnMut(&[u8]),
    ) -> Result<usize, MonError> {
        self.readable(side)?.buf.peek_in_place(max, read)
    }

    /// `mtcp_ppeek`: reads at stream offset `offset` (0 = first byte after the ISN), from
    /// in-order data or a stored fragment, without moving the peek offset.
    pub fn ppeek(&mut self, side: Side, buf: &mut [u8], offset: u64) -> Result<usize, MonError> {
        self.readable(side)?.buf.ppeek(buf, offset)
    }

    /// `MOS_CLIBUF`/`MOS_SVRBUF`: resize the side's receive buffer; 0 disables buffering for
    /// good (later peeks fail with EINVAL).
    pub fn set_buffer_size(&mut self, side: Side, bytes: usize) -> Result<(), MonError> {
        let s = self.flow.side_mut(side);
        if s.stopped {
            return Err(MonError::Stopped);
        }
        s.buf.resize(bytes)
    }

    /// `MOS_CLIOVERLAP`/`MOS_SVROVERLAP`.
    pub fn set_overlap_policy(
        &mut self,
        side: Side,
        policy: OverlapPolicy,
    ) -> Result<(), MonError> {
        let s = self.flow.side_mut(side);
        if s.stopped {
            return Err(MonError::Stopped);
        }
        s.buf.policy = policy;
        Ok(())
    }

    /// `MOS_STOP_MON`: no more events or buffering for the side(s); its buffer is freed.
    pub fn stop_monitoring(&mut self, sides: Sides) {
        for side in Side::BOTH {
            if sides.contains(side) {
                let s = self.flow.side_mut(side);
                s.stopped = true;
                s.buf = super::stream::SideBuf::new(0, s.buf.policy);
            }
        }
    }

    /// `MOS_TCP_STATE_CLI`/`_SVR`.
    pub fn tcp_state(&self, side: Side) -> TcpState {
        self.flow.side(side).state
    }

    /// `MOS_INFO_CLIBUF`/`_SVRBUF`.
    pub fn buffer_info(&self, side: Side) -> Result<BufInfo, MonError> {
        let s = self.flow.side(side);
        if s.stopped {
            return Err(MonError::Stopped);
        }
        let isn = s.isn.ok_or(MonError::NotConnected(s.state))?;
        let at = |off: u64| isn.wrapping_add(off as u32);
        Ok(BufInfo {
            init_seq: isn,
            last_byte_read: at(s.buf.read_offset()),
            next_byte_expected: at(s.buf.next()).wrapping_add(1),
            last_byte_received: at(s.buf.high()),
        })
    }

    /// `MOS_FRAGINFO_CLIBUF`/`_SVRBUF`: the buffered ranges (in-order data first).
    pub fn fragments(&self, side: Side) -> Result<Vec<Fragment>, MonError> {
        let s = self.flow.side(side);
        if s.stopped {
            return Err(MonError::Stopped);
        }
        Ok(s.buf.fragments())
    }

    /// `mtcp_setsockopt` with mOS's numbers, for code ported from C.
    pub fn setsockopt(&mut self, level: i32, name: i32, value: i32) -> Result<(), MonError> {
        let bad = MonError::InvalidValue("option value out of range");
        let side_of = |v: i32| match v {
            0 => Ok(Sides::Cli),
            1 => Ok(Sides::Svr),
            2 => Ok(Sides::Both),
            _ => Err(MonError::InvalidValue("side must be 0, 1 or 2")),
        };
        let policy = |v: i32| match v {
            0 => Ok(OverlapPolicy::First),
            1 => Ok(OverlapPolicy::Last),
            _ => Err(MonError::InvalidValue("overlap policy must be 0 or 1")),
        };
        match (level, name) {
            (SOL_MONSOCKET, 0x09) => {
                self.set_buffer_size(Side::Cli, usize::try_from(value).map_err(|_| bad)?)
            }
            (SOL_MONSOCKET, 0x0a) => {
                self.set_buffer_size(Side::Svr, usize::try_from(value).map_err(|_| bad)?)
            }
            (SOL_MONSOCKET, 0x0c) => {
                self.stop_monitoring(side_of(value)?);
                Ok(())
            }
            (SOL_MONSOCKET, 0x0f) => self.set_overlap_policy(Side::Cli, policy(value)?),
            (SOL_MONSOCKET, 0x10) => self.set_overlap_policy(Side::Svr, policy(value)?),
            _ => Err(MonError::NotImplemented { level, name }),
        }
    }
}

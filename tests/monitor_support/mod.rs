//! Hand-built TCP segments for the flow monitor's tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use epollscope::monitor::packet::Segment;

/// A segment with a fixed window: the monitor's tests vary everything else.
pub fn seg(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &'static [u8],
) -> Segment<'static> {
    Segment {
        src,
        dst,
        seq,
        ack,
        flags,
        window: 1000,
        payload,
    }
}

//! Flow monitor engine: every mOS monitoring-socket rule on hand-built packets (fed as Ethernet
//! frames, so the header decoder is on the path too).

use epollscope::monitor::event::EndReason;
use epollscope::monitor::packet::{ACK, FIN, PSH, RST, SYN, Segment, encode, linktype};
use epollscope::monitor::{
    Config, Event, EventKind, EventMask, Filter, FlowId, Fragment, MonError, Monitor,
    OverlapPolicy, Side, Sides, TcpState,
};

const CLI: &str = "10.0.0.1:40000";
const SVR: &str = "10.0.0.2:80";

/// A scripted connection: ISNs and a clock; every call feeds one frame.
struct Conn {
    m: Monitor,
    cisn: u32,
    sisn: u32,
    ts: u64,
}

impl Conn {
    fn new(config: Config, cisn: u32, sisn: u32) -> Conn {
        Conn {
            m: Monitor::new(config),
            cisn,
            sisn,
            ts: 1_000_000_000,
        }
    }

    fn send(&mut self, from: Side, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
        let (src, dst) = match from {
            Side::Cli => (CLI, SVR),
            Side::Svr => (SVR, CLI),
        };
        let seg = Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq,
            ack,
            flags,
            window: 65535,
            payload,
        };
        self.ts += 1000;
        self.m.feed(
            self.ts,
            linktype::ETHERNET,
            &encode(linktype::ETHERNET, &seg),
        );
    }

    fn handshake(&mut self) {
        self.send(Side::Cli, self.cisn, 0, SYN, b"");
        self.send(
            Side::Svr,
            self.sisn,
            self.cisn.wrapping_add(1),
            SYN | ACK,
            b"",
        );
        self.send(
            Side::Cli,
            self.cisn.wrapping_add(1),
            self.sisn.wrapping_add(1),
            ACK,
            b"",
        );
    }

    /// Client data at stream offset `off` (server side's stream).
    fn cdata(&mut self, off: u32, data: &[u8]) {
        let seq = self.cisn.wrapping_add(1).wrapping_add(off);
        self.send(Side::Cli, seq, self.sisn.wrapping_add(1), ACK | PSH, data);
    }

    fn sdata(&mut self, off: u32, data: &[u8]) {
        let seq = self.sisn.wrapping_add(1).wrapping_add(off);
        self.send(Side::Svr, seq, self.cisn.wrapping_add(1), ACK | PSH, data);
    }

    fn events(&mut self) -> Vec<Event> {
        self.m.events().collect()
    }

    fn flow(&self) -> FlowId {
        self.m.flows().first().expect("a flow").id
    }

    fn peek_all(&mut self, side: Side) -> Result<Vec<u8>, MonError> {
        let id = self.flow();
        let mut sock = self.m.socket(id)?;
        let mut out = vec![];
        let mut buf = [0u8; 7];
        loop {
            match sock.peek(side, &mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(MonError::NoData) if !out.is_empty() => return Ok(out),
                Err(e) => return Err(e),
            }
        }
    }
}

fn kinds(events: &[Event], side: Side) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.side == Some(side))
        .map(|e| match &e.kind {
            EventKind::StateChange { to, .. } => format!("->{to}"),
            k => k.name().to_string(),
        })
        .collect()
}

#[test]
fn handshake_data_both_ways_and_fin_close_follow_mos_states() {
    let mut c = Conn::new(Config::default(), 1000, 5000);
    c.handshake();
    c.cdata(0, b"GET / HTTP/1.0\r\n\r\n");
    c.sdata(0, b"HTTP/1.0 200 OK\r\n\r\nhello");
    let id = c.flow();
    {
        let s = c.m.socket(id).unwrap();
        assert_eq!(s.tcp_state(Side::Cli), TcpState::Established);
        assert_eq!(s.tcp_state(Side::Svr), TcpState::Established);
        let info = s.buffer_info(Side::Svr).unwrap();
        assert_eq!(info.init_seq, 1000);
        assert_eq!(info.next_byte_expected, 1001 + 18);
        assert_eq!(info.last_byte_read, 1000);
    }
    assert_eq!(c.peek_all(Side::Svr).unwrap(), b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        c.peek_all(Side::Cli).unwrap(),
        b"HTTP/1.0 200 OK\r\n\r\nhello"
    );
    // Client closes first; the server answers with FIN/ACK; the client's last ACK ends it.
    c.send(Side::Cli, 1001 + 18, 5001 + 24, FIN | ACK, b"");
    c.send(Side::Svr, 5001 + 24, 1001 + 19, FIN | ACK, b"");
    c.send(Side::Cli, 1001 + 19, 5001 + 25, ACK, b"");
    let ev = c.events();
    assert_eq!(
        kinds(&ev, Side::Cli),
        [
            "->SYN_SENT",
            "CONN_START",
            "->ESTABLISHED",
            "CONN_NEW_DATA",
            "->FIN_WAIT_1",
            "->FIN_WAIT_2",
            "->TIME_WAIT",
            "CONN_END"
        ]
    );
    assert_eq!(
        kinds(&ev, Side::Svr),
        [
            "->SYN_RCVD",
            "CONN_START",
            "->ESTABLISHED",
            "CONN_NEW_DATA",
            "->CLOSE_WAIT",
            "->LAST_ACK",
            "->CLOSED",
            "CONN_END"
        ]
    );
    assert!(matches!(
        ev.last().unwrap().kind,
        EventKind::ConnEnd {
            reason: EndReason::Fin
        }
    ));
    // Events are in time order.
    assert!(ev.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
}

#[test]
fn out_of_order_segments_are_held_as_fragments_and_ppeek_reads_them() {
    let mut c = Conn::new(Config::default(), 77, 99);
    c.handshake();
    c.cdata(10, b"KLMNO");
    c.cdata(20, b"UVWXYZ");
    let id = c.flow();
    {
        let mut s = c.m.socket(id).unwrap();
        assert_eq!(s.peek(Side::Svr, &mut [0; 8]), Err(MonError::NoData));
        assert_eq!(
            s.fragments(Side::Svr).unwrap(),
            [
                Fragment { offset: 10, len: 5 },
                Fragment { offset: 20, len: 6 }
            ]
        );
        let mut buf = [0u8; 10];
        assert_eq!(s.ppeek(Side::Svr, &mut buf, 12), Ok(3));
        assert_eq!(&buf[..3], b"MNO");
        assert_eq!(s.ppeek(Side::Svr, &mut buf, 15), Err(MonError::NoData));
        assert_eq!(
            s.buffer_info(Side::Svr).unwrap().last_byte_received,
            77 + 26
        );
    }
    assert!(
        c.events()
            .iter()
            .all(|e| !matches!(e.kind, EventKind::NewData { .. }))
    );
    c.cdata(0, b"ABCDEFGHIJ");
    assert!(
        c.events()
            .iter()
            .any(|e| e.kind == EventKind::NewData { bytes: 15 })
    );
    c.cdata(15, b"PQRST");
    assert_eq!(
        c.peek_all(Side::Svr).unwrap(),
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    );
    let s = c.m.socket(id).unwrap();
    // ppeek does not move the peek offset; already-read bytes stay readable by position.
    let mut buf = [0u8; 4];
    assert_eq!(
        s.fragments(Side::Svr).unwrap(),
        [Fragment { offset: 0, len: 26 }]
    );
    let mut s = s;
    assert_eq!(s.ppeek(Side::Svr, &mut buf, 0), Ok(4));
    assert_eq!(&buf, b"ABCD");
}

fn overlap_result(policy: OverlapPolicy) -> (Vec<u8>, bool) {
    let mut c = Conn::new(Config::default(), 1, 2);
    c.handshake();
    let id = c.flow();
    c.m.socket(id)
        .unwrap()
        .set_overlap_policy(Side::Svr, policy)
        .unwrap();
    c.cdata(4, b"efgh");
    c.cdata(2, b"XXXXXX"); // overlaps the fragment at 4..8
    c.cdata(0, b"ab");
    c.cdata(0, b"YY"); // overlaps in-order data
    let rexmit = c
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::Rexmit { .. }));
    (c.peek_all(Side::Svr).unwrap(), rexmit)
}

#[test]
fn overlap_policy_first_keeps_the_first_copy_last_takes_the_last() {
    assert_eq!(
        overlap_result(OverlapPolicy::First),
        (b"abXXefgh".to_vec(), true)
    );
    assert_eq!(
        overlap_result(OverlapPolicy::Last),
        (b"abXXXXXX".to_vec(), true)
    );
}

#[test]
fn sequence_numbers_wrap_around_2_pow_32() {
    let isn = u32::MAX - 5;
    let mut c = Conn::new(Config::default(), isn, 0xffff_fff0);
    c.handshake();
    let data: Vec<u8> = (0..200u8).collect();
    c.cdata(100, &data[100..]);
    c.cdata(0, &data[..50]);
    c.cdata(50, &data[50..100]);
    c.sdata(0, &data[..40]);
    c.sdata(40, &data[40..]);
    assert_eq!(c.peek_all(Side::Svr).unwrap(), data);
    assert_eq!(c.peek_all(Side::Cli).unwrap(), data);
    let id = c.flow();
    let s = c.m.socket(id).unwrap();
    let info = s.buffer_info(Side::Svr).unwrap();
    assert_eq!(info.init_seq, isn);
    assert_eq!(info.next_byte_expected, isn.wrapping_add(201));
    assert_eq!(info.last_byte_read, isn.wrapping_add(200));
}

fn small_buffers() -> Config {
    Config {
        buffer_size: 16,
        ..Config::default()
    }
}

#[test]
fn overflow_raises_error_then_overwrites_fails_one_peek_and_recovers() {
    let mut c = Conn::new(small_buffers(), 10, 20);
    c.handshake();
    c.cdata(0, b"0123456789abcdef"); // fills the 16-byte buffer
    c.cdata(16, b"ghijklmn"); // does not fit: error event, nothing stored yet
    let ev = c.events();
    let err: Vec<&Event> = ev.iter().filter(|e| e.mask == EventMask::ERROR).collect();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].side, Some(Side::Svr));
    assert_eq!(
        err[0].kind,
        EventKind::Overflow {
            needed: 24,
            capacity: 16
        }
    );
    // The application does nothing; the next packet makes the monitor overwrite.
    c.sdata(0, b"x");
    let id = c.flow();
    let mut s = c.m.socket(id).unwrap();
    let mut buf = [0u8; 32];
    assert_eq!(
        s.peek(Side::Svr, &mut buf),
        Err(MonError::Overwritten { lost: 8 })
    );
    assert_eq!(MonError::Overwritten { lost: 8 }.errno(), "ENODATA");
    let n = s.peek(Side::Svr, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"89abcdefghijklmn");
    assert_eq!(s.peek(Side::Svr, &mut buf), Err(MonError::NoData));
    // And it goes on normally.
    c.cdata(24, b"op");
    assert_eq!(c.peek_all(Side::Svr).unwrap(), b"op");
}

#[test]
fn overflow_answered_by_draining_or_enlarging_loses_nothing() {
    for enlarge in [false, true] {
        let mut c = Conn::new(small_buffers(), 10, 20);
        c.handshake();
        c.cdata(0, b"0123456789abcdef");
        c.cdata(16, b"ghijklmn");
        assert!(c.events().iter().any(|e| e.mask == EventMask::ERROR));
        let id = c.flow();
        let mut got = vec![];
        if enlarge {
            c.m.socket(id)
                .unwrap()
                .set_buffer_size(Side::Svr, 64)
                .unwrap();
        } else {
            got = c.peek_all(Side::Svr).unwrap();
        }
        c.sdata(0, b"x");
        got.extend(c.peek_all(Side::Svr).unwrap());
        assert_eq!(got, b"0123456789abcdefghijklmn", "enlarge={enlarge}");
    }
}

#[test]
fn overflow_in_a_callback_can_be_answered_in_the_callback() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut c = Conn::new(small_buffers(), 10, 20);
    let got = Rc::new(RefCell::new(vec![]));
    let g = got.clone();
    c.m.on(
        EventMask::ERROR | EventMask::CONN_NEW_DATA,
        move |ev, sock| {
            let sock = sock.expect("flow events come with their socket");
            if ev.side == Some(Side::Svr) && ev.mask == EventMask::ERROR {
                let mut buf = [0u8; 64];
                while let Ok(n) = sock.peek(Side::Svr, &mut buf) {
                    g.borrow_mut().extend_from_slice(&buf[..n]);
                }
            }
        },
    );
    c.handshake();
    for (i, chunk) in b"the quick brown fox jumps over the lazy dog"
        .chunks(10)
        .enumerate()
    {
        c.cdata(i as u32 * 10, chunk);
    }
    c.sdata(0, b"x");
    got.borrow_mut().extend(c.peek_all(Side::Svr).unwrap());
    assert_eq!(
        &got.borrow()[..],
        b"the quick brown fox jumps over the lazy dog"
    );
}

#[test]
fn buffer_size_zero_disables_buffering_and_peek_fails_einval() {
    let mut c = Conn::new(Config::default(), 1, 2);
    c.handshake();
    let id = c.flow();
    c.cdata(0, b"before");
    c.m.socket(id)
        .unwrap()
        .set_buffer_size(Side::Svr, 0)
        .unwrap();
    c.cdata(6, b"after");
    let mut s = c.m.socket(id).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.peek(Side::Svr, &mut buf), Err(MonError::BufferDisabled));
    assert_eq!(s.peek(Side::Svr, &mut buf).unwrap_err().errno(), "EINVAL");
    assert_eq!(
        s.ppeek(Side::Svr, &mut buf, 0),
        Err(MonError::BufferDisabled)
    );
    assert_eq!(
        s.set_buffer_size(Side::Svr, 100),
        Err(MonError::BufferDisabled)
    );
    // Sequence tracking goes on without buffering; the other side is unaffected.
    assert_eq!(s.buffer_info(Side::Svr).unwrap().next_byte_expected, 2 + 11);
    assert_eq!(s.setsockopt(0xfffe, 0x09, 0), Ok(()));
    assert_eq!(s.peek(Side::Cli, &mut buf), Err(MonError::BufferDisabled));
    // Shrinking below what is held is refused rather than silently losing bytes.
    let mut c = Conn::new(Config::default(), 1, 2);
    c.handshake();
    c.cdata(0, b"0123456789");
    let id = c.flow();
    let mut s = c.m.socket(id).unwrap();
    assert!(matches!(
        s.set_buffer_size(Side::Svr, 4),
        Err(MonError::InvalidValue(_))
    ));
    s.set_buffer_size(Side::Svr, 10).unwrap();
    let n = s.peek(Side::Svr, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"0123456789");
}

#[test]
fn stop_monitoring_one_side_silences_it_and_keeps_the_other() {
    let mut c = Conn::new(Config::default(), 1, 2);
    c.handshake();
    let id = c.flow();
    c.events();
    c.m.socket(id)
        .unwrap()
        .setsockopt(0xfffe, 0x0c, Sides::Svr as i32)
        .unwrap();
    c.cdata(0, b"to server");
    c.sdata(0, b"to client");
    let ev = c.events();
    assert!(kinds(&ev, Side::Svr).is_empty(), "{ev:?}");
    assert_eq!(kinds(&ev, Side::Cli), ["CONN_NEW_DATA"]);
    let mut s = c.m.socket(id).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.peek(Side::Svr, &mut buf), Err(MonError::Stopped));
    assert_eq!(MonError::Stopped.errno(), "EPERM");
    assert_eq!(s.set_buffer_size(Side::Svr, 10), Err(MonError::Stopped));
    assert_eq!(s.peek(Side::Cli, &mut buf), Ok(9));
    s.stop_monitoring(Sides::Both);
    assert_eq!(s.peek(Side::Cli, &mut buf), Err(MonError::Stopped));
}

#[test]
fn rst_mid_stream_closes_both_sides_and_leaves_buffered_bytes_readable_once() {
    let mut c = Conn::new(Config::default(), 1, 2);
    c.handshake();
    c.cdata(0, b"partial req");
    c.events();
    c.send(Side::Svr, 3, 1 + 1 + 11, RST | ACK, b"");
    let ev = c.events();
    assert_eq!(kinds(&ev, Side::Cli), ["->CLOSED", "CONN_END"]);
    assert_eq!(kinds(&ev, Side::Svr), ["->CLOSED", "CONN_END"]);
    assert!(ev.iter().any(|e| e.kind
        == EventKind::ConnEnd {
            reason: EndReason::Rst
        }));
    let id = c.flow();
    assert_eq!(c.peek_all(Side::Svr).unwrap(), b"partial req");
    // The next packet frees the ended flow; its late packets are orphans.
    c.cdata(11, b"late");
    assert_eq!(c.m.socket(id).err(), Some(MonError::BadSocket));
    assert!(c.events().iter().any(|e| e.mask == EventMask::ORPHAN));
}

#[test]
fn socket_errors_map_to_the_man_page_errnos() {
    let mut c = Conn::new(Config::default(), 1, 2);
    c.send(Side::Cli, 1, 0, SYN, b"");
    let id = c.flow();
    let mut other = Monitor::default();
    assert_eq!(other.socket(id).err().map(|e| e.errno()), Some("EACCES"));
    let passive = c.m.passive_socket();
    assert_eq!(
        c.m.socket(passive).err().map(|e| e.errno()),
        Some("ENOTSOCK")
    );
    let mut s = c.m.socket(id).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        s.peek(Side::Cli, &mut buf),
        Err(MonError::NotConnected(TcpState::SynSent))
    );
    assert_eq!(s.peek(Side::Cli, &mut buf).unwrap_err().errno(), "ENOTCONN");
    assert_eq!(s.setsockopt(0xfffe, 0x42, 0).unwrap_err().errno(), "ENOSYS");
    assert_eq!(s.setsockopt(6, 0x09, 0).unwrap_err().errno(), "ENOSYS");
    c.send(Side::Svr, 2, 2, SYN | ACK, b"");
    c.send(Side::Cli, 2, 3, ACK, b"");
    let mut s = c.m.socket(id).unwrap();
    assert_eq!(s.peek(Side::Svr, &mut buf).unwrap_err().errno(), "ENODATA");
    c.send(Side::Cli, 2, 3, RST, b"");
    c.send(Side::Cli, 9, 3, SYN, b""); // a new flow on the same ports; the old one is freed
    assert_eq!(c.m.socket(id).err().map(|e| e.errno()), Some("EBADF"));
}

#[test]
fn orphans_retransmitted_syns_and_idle_timeouts() {
    let mut c = Conn::new(
        Config {
            idle_timeout_ns: 5_000_000_000,
            ..Config::default()
        },
        1,
        2,
    );
    c.cdata(0, b"no syn seen");
    let ev = c.events();
    assert_eq!(ev.len(), 1);
    assert!(matches!(ev[0].kind, EventKind::Orphan { .. }));
    c.send(Side::Cli, 1, 0, SYN, b"");
    c.send(Side::Cli, 1, 0, SYN, b"");
    let ev = c.events();
    let starts = ev
        .iter()
        .filter(|e| e.mask == EventMask::CONN_START)
        .count();
    assert_eq!(starts, 2, "one per side, none for the retransmitted SYN");
    assert!(ev.iter().any(|e| e.mask == EventMask::REXMIT));
    c.ts += 10_000_000_000;
    c.send(Side::Svr, 7, 2, SYN | ACK, b"");
    let ev = c.events();
    assert_eq!(kinds(&ev, Side::Cli), ["TIMEOUT", "CONN_END"]);
    assert!(ev.iter().any(|e| e.kind
        == EventKind::ConnEnd {
            reason: EndReason::Timeout
        }));
}

#[test]
fn user_defined_events_and_flow_filter() {
    let mut c = Conn::new(Config::default(), 1, 2);
    let big = c.m.define_event(EventMask::CONN_NEW_DATA, |flow, ev| {
        ev.side == Some(Side::Svr) && flow.bytes[Side::Svr as usize] >= 10
    });
    c.handshake();
    c.cdata(0, b"12345");
    c.sdata(0, b"0123456789ab");
    assert!(!c.events().iter().any(|e| e.mask == big));
    c.cdata(5, b"67890");
    let ev = c.events();
    let ude: Vec<&Event> = ev.iter().filter(|e| e.mask == big).collect();
    assert_eq!(ude.len(), 1);
    assert_eq!(ude[0].kind, EventKind::NewData { bytes: 5 });

    let mut c = Conn::new(Config::default(), 1, 2);
    c.m.set_filter(Filter::parse("port 443 or net 192.168.0.0/16").unwrap());
    c.handshake();
    c.cdata(0, b"ignored");
    assert!(c.m.flows().is_empty());
    assert!(c.events().is_empty());
    assert_eq!(c.m.stats().filtered, 4);
}

/// PKT_IN (one per packet) is built only for whoever takes it: a queue that asks for it, a
/// callback, or a user-defined event on it, each seeing the same ones; a default queue does
/// not get it.
#[test]
fn pkt_in_reaches_every_taker_and_only_them() {
    use std::cell::RefCell;
    use std::rc::Rc;
    fn exchange(c: &mut Conn) {
        c.handshake();
        c.cdata(0, b"abc");
    }
    let mut c = Conn::new(
        Config {
            queue: EventMask::ALL,
            ..Config::default()
        },
        1,
        2,
    );
    exchange(&mut c);
    let queued: Vec<Option<Side>> = c
        .events()
        .iter()
        .filter(|e| e.mask == EventMask::PKT_IN)
        .map(|e| e.side)
        .collect();
    assert_eq!(queued.len(), 4, "one per packet: {queued:?}");

    let mut c = Conn::new(Config::default(), 1, 2);
    exchange(&mut c);
    assert!(c.events().iter().all(|e| e.mask != EventMask::PKT_IN));

    let seen = Rc::new(RefCell::new(vec![]));
    let mut c = Conn::new(Config::default(), 1, 2);
    let log = seen.clone();
    c.m.on(EventMask::PKT_IN, move |ev, _| {
        log.borrow_mut().push(ev.side)
    });
    exchange(&mut c);
    assert_eq!(*seen.borrow(), queued);

    let mut c = Conn::new(Config::default(), 1, 2);
    let pkt =
        c.m.define_event(EventMask::PKT_IN, |_, ev| ev.side == Some(Side::Svr));
    exchange(&mut c);
    let ev = c.events();
    let to_svr = queued.iter().filter(|&&s| s == Some(Side::Svr)).count();
    assert!(to_svr > 0);
    assert_eq!(ev.iter().filter(|e| e.mask == pkt).count(), to_svr);
    assert!(ev.iter().all(|e| e.mask != EventMask::PKT_IN));
}

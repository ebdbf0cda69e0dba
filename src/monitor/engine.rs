//! The monitor: the flow table, event dispatch (callbacks, queue, user-defined events), flow
//! filter, idle timeouts, and the monitoring sockets through which applications read flows.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::closed::Closed;
use super::decode::{self, Layer};
use super::event::{EndReason, Event, EventKind, EventMask};
use super::filter::Filter;
use super::flow::{Flow, FlowOpts, RawEvent, Resume};
use super::frag::Reassembler;
use super::fx::FxMap;
use super::packet::{ACK, RST, SYN, Segment, Skip};
pub use super::socket::{FlowSocket, SOL_MONSOCKET};
use super::{MonError, Side};

mod types;

pub use types::*;

static NEXT_CTX: AtomicU32 = AtomicU32::new(1);

type Callback = Box<dyn FnMut(&Event, Option<&mut FlowSocket<'_>>)>;
type UserFilter = Box<dyn Fn(&FlowInfo, &Event) -> bool>;

struct UserEvent {
    mask: EventMask,
    base: EventMask,
    filter: UserFilter,
}

pub struct Monitor {
    ctx: u32,
    config: Config,
    /// Boxed: the table's buckets stay small, so its spare capacity costs little.
    flows: FxMap<u64, Box<Flow>>,
    by_tuple: FxMap<(SocketAddr, SocketAddr), (u64, Side)>,
    next_flow: u64,
    filter: Option<Filter>,
    callbacks: Vec<(EventMask, Callback)>,
    user_events: Vec<UserEvent>,
    queue: Vec<Event>,
    raw: Vec<RawEvent>,
    with_pending: Vec<u64>,
    ended: Vec<u64>,
    next_sweep_ns: u64,
    stats: Stats,
    frags: Reassembler,
    /// Flows ended by a timeout or an eviction, by (client, server): a later segment picks
    /// them up again where they stopped, so a resumed flow loses no byte.
    resumable: FxMap<(SocketAddr, SocketAddr), (u64, Resume)>,
    resumable_order: VecDeque<(SocketAddr, SocketAddr)>,
    /// Flows ended by FIN or RST: their stragglers are not new flows.
    closed: Closed,
    /// Flow numbers with the last-activity time they were queued with: the eviction order
    /// (a flow active since is queued again instead of evicted).
    lru: VecDeque<(u64, u64)>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new(Config::default())
    }
}

impl Monitor {
    pub fn new(config: Config) -> Monitor {
        Monitor {
            ctx: NEXT_CTX.fetch_add(1, Ordering::Relaxed),
            config,
            flows: FxMap::default(),
            by_tuple: FxMap::default(),
            next_flow: 1,
            filter: None,
            callbacks: vec![],
            user_events: vec![],
            queue: vec![],
            raw: vec![],
            with_pending: vec![],
            ended: vec![],
            next_sweep_ns: 0,
            stats: Stats::default(),
            frags: Reassembler::new(FRAG_TIMEOUT_NS),
            resumable: FxMap::default(),
            resumable_order: VecDeque::new(),
            closed: Closed::default(),
            lru: VecDeque::new(),
        }
    }

    fn flow_opts(&self) -> FlowOpts {
        FlowOpts {
            buf_size: self.config.buffer_size,
            policy: self.config.overlap,
            skip_gaps: self.config.skip_gaps,
            in_frame: self.config.in_frame,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Only flows matching `filter` are monitored; other packets are ignored (not orphans).
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = Some(filter);
    }

    /// Calls `cb` for every event in `mask` (built-in bits or user-defined ones), with the
    /// flow's socket when the event belongs to a flow.
    pub fn on(
        &mut self,
        mask: EventMask,
        cb: impl FnMut(&Event, Option<&mut FlowSocket<'_>>) + 'static,
    ) {
        self.callbacks.push((mask, Box::new(cb)));
    }

    /// Defines an event raised whenever one of `base` is raised and `filter` accepts it; returns
    /// its bit, to pass to [`Monitor::on`] or to match in [`Event::mask`].
    pub fn define_event(
        &mut self,
        base: EventMask,
        filter: impl Fn(&FlowInfo, &Event) -> bool + 'static,
    ) -> EventMask {
        let mask = EventMask(1u64 << (32 + self.user_events.len().min(31)));
        self.user_events.push(UserEvent {
            mask,
            base,
            filter: Box::new(filter),
        });
        self.config.queue = self.config.queue | mask;
        mask
    }

    /// Drains the queued events, oldest first.
    pub fn events(&mut self) -> std::vec::Drain<'_, Event> {
        self.queue.drain(..)
    }

    /// The monitor's passive socket (no bytestream of its own).
    pub fn passive_socket(&self) -> SockId {
        SockId::Passive(self.ctx)
    }

    /// The monitoring socket of a flow, valid until the packet after its CONN_END.
    pub fn socket(&mut self, id: impl Into<SockId>) -> Result<FlowSocket<'_>, MonError> {
        match id.into() {
            SockId::Passive(ctx) | SockId::Flow(FlowId { ctx, .. }) if ctx != self.ctx => {
                Err(MonError::BadContext)
            }
            SockId::Passive(_) => Err(MonError::NotFlowSocket),
            SockId::Flow(id) => match self.flows.get_mut(&id.n) {
                Some(flow) => Ok(FlowSocket { id, flow }),
                None => Err(MonError::BadSocket),
            },
        }
    }

    /// Snapshots of the flows still held, by id.
    pub fn flows(&self) -> Vec<FlowInfo> {
        let mut out: Vec<FlowInfo> = self
            .flows
            .iter()
            .map(|(&n, f)| info(FlowId { ctx: self.ctx, n }, f))
            .collect();
        out.sort_by_key(|f| f.id.n);
        out
    }

    /// Feeds one captured frame of link type `linktype`, captured at `ts_ns`.
    pub fn feed(&mut self, ts_ns: u64, linktype: u32, frame: &[u8]) {
        self.stats.packets += 1;
        match decode::layer(linktype, frame) {
            Ok(Layer::Tcp(seg)) => self.feed_tcp(ts_ns, &seg, Some(frame)),
            Ok(Layer::Frag(f)) => {
                self.stats.fragments += 1;
                let done = self.frags.push(ts_ns, &f);
                self.stats.reassembled = self.frags.stats.reassembled;
                self.stats.fragments_dropped = self.frags.stats.dropped;
                if let Some(d) = done {
                    match decode::transport(d.proto, d.src, d.dst, &d.payload, d.depth) {
                        Ok(Layer::Tcp(seg)) => self.feed_segment(ts_ns, &seg),
                        Ok(Layer::Frag(_)) | Err(Skip::Malformed) => self.stats.malformed += 1,
                        Err(_) => self.stats.not_tcp += 1,
                    }
                }
            }
            Err(Skip::NotIp | Skip::NotTcp) => self.stats.not_tcp += 1,
            Err(Skip::Fragment) => self.stats.fragments += 1,
            Err(Skip::Malformed) => self.stats.malformed += 1,
        }
    }

    /// Feeds one decoded TCP segment.
    pub fn feed_segment(&mut self, ts: u64, seg: &Segment) {
        self.feed_tcp(ts, seg, None);
    }

    /// Feeds a segment; `frame`: the frame its payload lies in, where its bytes may be
    /// announced ([`Config::in_frame`]).
    fn feed_tcp(&mut self, ts: u64, seg: &Segment, frame: Option<&[u8]>) {
        let payload_at = frame.and_then(|f| super::offset_in(f, seg.payload));
        self.settle(ts);
        self.stats.tcp_segments += 1;
        if ts >= self.next_sweep_ns {
            self.sweep(ts);
        }
        if self.filter.as_ref().is_some_and(|f| !f.matches(seg)) {
            self.stats.filtered += 1;
            return;
        }
        let hit = self.by_tuple.get(&(seg.src, seg.dst)).copied();
        let n = match hit {
            Some((n, from)) => {
                if let Some(flow) = self.flows.get_mut(&n) {
                    flow.process(ts, from, seg, payload_at.is_some(), &mut self.raw);
                }
                Some(n)
            }
            None if seg.has(SYN) && !seg.has(ACK) => {
                let flow = Flow::from_syn(ts, seg, self.flow_opts(), &mut self.raw);
                Some(self.insert_flow(ts, flow))
            }
            None if !seg.has(SYN) && !seg.has(RST) && self.pick_up(ts, seg) => {
                let n = self.by_tuple.get(&(seg.src, seg.dst)).map(|&(n, _)| n);
                if let Some((n, from)) = self.by_tuple.get(&(seg.src, seg.dst)).copied()
                    && let Some(flow) = self.flows.get_mut(&n)
                {
                    flow.process(ts, from, seg, payload_at.is_some(), &mut self.raw);
                }
                n
            }
            None => {
                self.stats.orphans += 1;
                if self.config.midstream && !seg.has(SYN) && self.straggler(ts, seg) {
                    self.stats.after_end += 1;
                }
                self.raw.push((
                    None,
                    EventKind::Orphan {
                        src: seg.src,
                        dst: seg.dst,
                    },
                ));
                None
            }
        };
        // The flow placed its bytes in the payload: place them in the frame.
        for (_, kind) in &mut self.raw {
            if let (EventKind::NewDataInFrame { at, .. }, Some(p)) = (kind, payload_at) {
                *at += p;
            }
        }
        if let Some(n) = n {
            self.after(n);
        }
        self.dispatch(ts, n);
    }

    /// Adds a flow (making room first), maps both directions, queues it for eviction.
    fn insert_flow(&mut self, ts: u64, flow: Flow) -> u64 {
        while self.flows.len() >= self.config.max_flows.max(1) && self.evict_one(ts) {}
        let n = self.next_flow;
        self.next_flow += 1;
        self.stats.flows += 1;
        self.by_tuple
            .insert((flow.client, flow.server), (n, Side::Cli));
        self.by_tuple
            .insert((flow.server, flow.client), (n, Side::Svr));
        self.flows.insert(n, Box::new(flow));
        self.lru.push_back((n, ts));
        n
    }

    /// Ends the least recently active flow (CONN_END evicted); false if none can go.
    fn evict_one(&mut self, ts: u64) -> bool {
        // Each flow is queued again at most once per pass: two passes find a victim.
        for _ in 0..self.lru.len().saturating_mul(2) {
            let Some((n, stamp)) = self.lru.pop_front() else {
                return false;
            };
            let Some(flow) = self.flows.get_mut(&n) else {
                continue;
            };
            if flow.ended.is_some() {
                // Freed at the next packet; not a flow to make room with.
                self.lru.push_back((n, stamp));
                continue;
            }
            if flow.last_ns > stamp {
                self.lru.push_back((n, flow.last_ns));
                continue;
            }
            self.stats.evicted += 1;
            flow.end(EndReason::Evicted, &mut self.raw);
            self.after(n);
            self.dispatch(ts, Some(n));
            // The application saw CONN_END and could read the socket in a callback; the
            // flow's memory goes now, or the table would not be bounded.
            self.ended.retain(|&e| e != n);
            self.flows.remove(&n);
            return true;
        }
        false
    }

    /// A segment of no known flow and no SYN: a flow that timed out or was evicted resumes
    /// where it stopped; with `midstream`, any segment with data opens a flow. True if a flow
    /// now maps the segment's addresses.
    fn pick_up(&mut self, ts: u64, seg: &Segment) -> bool {
        let key = |a, b| (a, b);
        let found = self
            .resumable
            .remove(&key(seg.src, seg.dst))
            .map(|r| (seg.src, seg.dst, r))
            .or_else(|| {
                self.resumable
                    .remove(&key(seg.dst, seg.src))
                    .map(|r| (seg.dst, seg.src, r))
            });
        let opts = self.flow_opts();
        let flow = match found {
            Some((client, server, (old, resume))) => {
                self.stats.resumed += 1;
                let mut flow = Flow::midstream(ts, client, server, resume, opts, &mut self.raw);
                flow.resumes = Some(old);
                flow
            }
            None if self.config.midstream
                && !seg.payload.is_empty()
                && !self.straggler(ts, seg) =>
            {
                self.stats.midstream += 1;
                // The lower port is the server's (services listen low, clients bind
                // ephemeral ports); on a tie, the sender is the client.
                let (client, server) = if seg.src.port() >= seg.dst.port() {
                    (seg.src, seg.dst)
                } else {
                    (seg.dst, seg.src)
                };
                Flow::midstream(ts, client, server, Resume::default(), opts, &mut self.raw)
            }
            None => return false,
        };
        self.insert_flow(ts, flow);
        true
    }

    /// Book-keeping after a flow processed something: overflow to settle later, or its end.
    fn after(&mut self, n: u64) {
        let Some(flow) = self.flows.get(&n) else {
            return;
        };
        if flow.has_pending() && !self.with_pending.contains(&n) {
            self.with_pending.push(n);
        }
        if flow.ended.is_some() && !self.ended.contains(&n) {
            // Unmap now so a new SYN on the same ports opens a new flow; free at the next packet
            // so that the application can still read the socket after CONN_END.
            self.by_tuple.remove(&(flow.client, flow.server));
            self.by_tuple.remove(&(flow.server, flow.client));
            self.ended.push(n);
            let point = flow.resume_point();
            if matches!(flow.ended, Some(EndReason::Timeout | EndReason::Evicted)) {
                self.remember((flow.client, flow.server), n, point);
            } else if self.config.midstream {
                // Only a segment picked up mid-stream could be taken for a new flow; without
                // `midstream` a straggler is an orphan anyway, and the table costs nothing.
                let limit = self.config.max_flows;
                self.closed
                    .remember(flow.client, flow.server, flow.last_ns, point, limit);
            }
        }
    }

    fn straggler(&self, ts: u64, seg: &Segment) -> bool {
        let timeout = self.config.idle_timeout_ns;
        self.closed.is_straggler(ts, seg, timeout)
    }

    /// Keeps a resume point, at most as many as flows (the oldest goes first).
    fn remember(&mut self, key: (SocketAddr, SocketAddr), n: u64, point: Resume) {
        while self.resumable.len() >= self.config.max_flows.max(1) {
            let Some(old) = self.resumable_order.pop_front() else {
                break;
            };
            self.resumable.remove(&old);
        }
        if self.resumable.insert(key, (n, point)).is_none() {
            self.resumable_order.push_back(key);
        }
    }

    /// Before the next packet: overwrite where the application ignored an overflow, and free
    /// flows whose end was delivered.
    fn settle(&mut self, ts: u64) {
        for n in std::mem::take(&mut self.with_pending) {
            if let Some(flow) = self.flows.get_mut(&n) {
                flow.resolve_pending(&mut self.raw);
            }
            self.dispatch(ts, Some(n));
        }
        for n in std::mem::take(&mut self.ended) {
            // With `skip_gaps`, a hole after bytes the reader has now drained is skipped
            // before the flow goes, one per packet (the reader drains in between).
            if let Some(flow) = self.flows.get_mut(&n)
                && flow.has_holes()
                && flow.flush_holes(&mut self.raw)
            {
                self.dispatch(ts, Some(n));
                self.ended.push(n);
                continue;
            }
            self.flows.remove(&n);
        }
    }

    /// Times out idle flows (checked once a second of capture time).
    fn sweep(&mut self, ts: u64) {
        self.next_sweep_ns = ts.saturating_add(1_000_000_000);
        let limit = self.config.idle_timeout_ns;
        self.closed.expire(ts, limit);
        let mut idle: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, f)| f.ended.is_none() && ts.saturating_sub(f.last_ns) > limit)
            .map(|(&n, _)| n)
            .collect();
        idle.sort_unstable();
        for flow in self.flows.values_mut() {
            flow.shrink();
        }
        for n in idle {
            if let Some(flow) = self.flows.get_mut(&n) {
                for side in Side::BOTH {
                    if !flow.side(side).stopped {
                        self.raw.push((Some(side), EventKind::Timeout));
                    }
                }
                flow.end(EndReason::Timeout, &mut self.raw);
            }
            self.after(n);
            self.dispatch(ts, Some(n));
        }
    }

    /// End of input: settle pending overflows (so every received byte is readable), report
    /// holes still open (with `skip_gaps`: skip the next one of each flow), and time out
    /// nothing: flows still open stay open. Returns true when it raised events: read them
    /// and call it again until it returns false (each call skips one more hole).
    pub fn finish(&mut self) -> bool {
        let mut raised = false;
        for n in std::mem::take(&mut self.with_pending) {
            let ts = self.flows.get(&n).map_or(0, |f| f.last_ns);
            if let Some(flow) = self.flows.get_mut(&n) {
                flow.resolve_pending(&mut self.raw);
            }
            raised |= !self.raw.is_empty();
            self.dispatch(ts, Some(n));
        }
        let mut ids: Vec<u64> = self.flows.keys().copied().collect();
        ids.sort_unstable();
        for n in ids {
            // A flow that ended with holes still waiting (`--gaps skip`) has them skipped
            // here, one a call, like an open one.
            if let Some(flow) = self.flows.get_mut(&n)
                && (flow.ended.is_none() || flow.has_holes())
                && flow.flush_holes(&mut self.raw)
            {
                raised = true;
                let ts = flow.last_ns;
                self.dispatch(ts, Some(n));
            }
        }
        raised
    }

    fn dispatch(&mut self, ts: u64, n: Option<u64>) {
        if self.raw.is_empty() {
            return;
        }
        let mut raw = std::mem::take(&mut self.raw);
        let ctx = self.ctx;
        for (side, kind) in raw.drain(..) {
            if matches!(kind, EventKind::RstIgnored { .. }) {
                self.stats.rst_ignored += 1;
            }
            if !self.wanted(kind.base_mask()) {
                // Nobody takes it (PKT_IN for most readers: one per packet).
                continue;
            }
            let base = Event {
                ts_ns: ts,
                flow: n.map(|n| FlowId { ctx, n }),
                side,
                mask: kind.base_mask(),
                kind,
            };
            let mut derived = vec![];
            for ude in &self.user_events {
                if !ude.base.intersects(base.mask) {
                    continue;
                }
                let accept = match n.and_then(|n| self.flows.get(&n)) {
                    Some(flow) => (ude.filter)(
                        &info(
                            FlowId {
                                ctx,
                                n: n.unwrap_or(0),
                            },
                            flow,
                        ),
                        &base,
                    ),
                    None => false,
                };
                if accept {
                    derived.push(Event {
                        mask: ude.mask,
                        ..base.clone()
                    });
                }
            }
            self.deliver(base);
            for ev in derived {
                self.deliver(ev);
            }
        }
        self.raw = raw;
    }

    /// Some callback, user-defined event or the queue takes events of `mask`.
    fn wanted(&self, mask: EventMask) -> bool {
        self.config.queue.intersects(mask)
            || self.callbacks.iter().any(|(m, _)| m.intersects(mask))
            || self.user_events.iter().any(|u| u.base.intersects(mask))
    }

    fn deliver(&mut self, ev: Event) {
        if !self.callbacks.is_empty() {
            let mut sock = ev.flow.and_then(|id| {
                self.flows
                    .get_mut(&id.n)
                    .map(|flow| FlowSocket { id, flow })
            });
            for (mask, cb) in &mut self.callbacks {
                if mask.intersects(ev.mask) {
                    cb(&ev, sock.as_mut());
                }
            }
            // A callback may have drained or enlarged: the flow may no longer need overwriting.
        }
        if self.config.queue.intersects(ev.mask) {
            self.queue.push(ev);
        }
    }
}

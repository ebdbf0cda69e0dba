//! The mixed profile: pipes, socketpairs, eventfds and datagram sockets ("channels": one end
//! writes, another reads), reads and polls on them, waits with a finite timeout, and signals
//! that end a blocked call. The model does not know these calls yet, so a scenario using them
//! is opaque to it; they are here for the shim checks, determinism, and the model to come.

use rand::RngExt;

use super::{Busy, Gen, Target};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ChanKind {
    Pipe,
    SocketPair,
    Eventfd,
    Datagram,
}

/// Something one end writes and another reads: a pipe, a socketpair (S0 writes, S1 reads), an
/// eventfd, or a bound datagram socket and its sender.
pub(super) struct Chan {
    pub(super) kind: ChanKind,
    pub(super) reader: String,
    pub(super) writer: String,
    /// The datagram socket's address.
    pub(super) addr: String,
    pub(super) nonblock: bool,
    /// Whether anything may be unread (an edge-triggered wake is sure only from empty).
    pub(super) written: bool,
    pub(super) writes: usize,
}

/// Most writes to one channel: far below any pipe, socket or datagram queue limit.
pub(super) const MAX_WRITES: usize = 8;

impl Gen {
    pub(super) fn make_chan(&mut self) {
        let i = self.chans.len();
        let nonblock = self.rng.random_bool(0.5);
        let kind = [
            ChanKind::Pipe,
            ChanKind::SocketPair,
            ChanKind::Eventfd,
            ChanKind::Datagram,
        ][self.rng.random_range(0..4)];
        let (reader, writer, mut addr) = match kind {
            ChanKind::Pipe => (format!("R{i}"), format!("W{i}"), String::new()),
            ChanKind::SocketPair => (format!("Y{i}"), format!("X{i}"), String::new()),
            ChanKind::Eventfd => (format!("EV{i}"), format!("EV{i}"), String::new()),
            ChanKind::Datagram => (format!("U{i}"), format!("V{i}"), format!("ADDR{}", 3 + i)),
        };
        let nb = |yes: &str| {
            if nonblock {
                yes.to_string()
            } else {
                "0".into()
            }
        };
        match kind {
            ChanKind::Pipe => {
                let flags = nb("O_NONBLOCK");
                self.line(0, &format!("pipe2([{reader}, {writer}], {flags}) = 0"));
            }
            ChanKind::SocketPair => {
                let ty = ["SOCK_STREAM", "SOCK_SEQPACKET"][self.rng.random_range(0..2)];
                let ty = if nonblock {
                    format!("{ty}|SOCK_NONBLOCK")
                } else {
                    ty.to_string()
                };
                self.line(
                    0,
                    &format!("socketpair(AF_UNIX, {ty}, 0, [{writer}, {reader}]) = 0"),
                );
            }
            ChanKind::Eventfd => {
                let flags = nb("EFD_NONBLOCK");
                self.line(0, &format!("eventfd2(0, {flags}) = {reader}"));
            }
            ChanKind::Datagram => {
                let ty = if nonblock {
                    "SOCK_DGRAM|SOCK_NONBLOCK"
                } else {
                    "SOCK_DGRAM"
                };
                self.line(0, &format!("socket(FAMILY, {ty}, 0) = {reader}"));
                self.line(0, &format!("bind({reader}, {addr}) = 0"));
                self.line(0, &format!("socket(FAMILY, SOCK_DGRAM, 0) = {writer}"));
                addr = addr.clone();
            }
        }
        self.actors[0]
            .names
            .push((reader.clone(), Target::Chan(i), true));
        self.chans.push(Chan {
            kind,
            reader,
            writer,
            addr,
            nonblock,
            written: false,
            writes: 0,
        });
    }

    pub(super) fn chan_write(&mut self) {
        let Some(c) = self.pick(&(0..self.chans.len()).collect::<Vec<_>>()) else {
            return;
        };
        if self.chans[c].writes >= MAX_WRITES {
            return;
        }
        let Some(a) = self.actor(false) else { return };
        let ch = &self.chans[c];
        let text = match ch.kind {
            ChanKind::Pipe | ChanKind::SocketPair => format!("write({}, \"ping\") = ?", ch.writer),
            ChanKind::Eventfd => format!("write({}, \"\\1\\0\\0\\0\\0\\0\\0\\0\") = ?", ch.writer),
            ChanKind::Datagram => format!(
                "sendto({}, \"x\", 1, MSG_DONTWAIT, {}) = ?",
                ch.writer, ch.addr
            ),
        };
        self.line(a, &text);
        let ch = &mut self.chans[c];
        let was_empty = !ch.written;
        ch.written = true;
        ch.writes += 1;
        self.woke(Target::Chan(c), was_empty);
    }

    /// A read that cannot block, or a poll/ppoll that does not wait.
    pub(super) fn chan_read_or_poll(&mut self) {
        let Some(a) = self.actor(false) else { return };
        if self.rng.random_bool(0.5) {
            let ok: Vec<usize> = (0..self.chans.len())
                .filter(|&c| {
                    // Not while a blocked call watches it (who gets the data is timing).
                    self.chans[c].nonblock && self.watchers(Target::Chan(c)).is_empty()
                })
                .collect();
            if let Some(c) = self.pick(&ok) {
                let text = read_text(&self.chans[c]);
                self.line(a, &format!("{text} = ?"));
            }
            return;
        }
        let fds = self.poll_fds(a);
        if fds.is_empty() {
            return;
        }
        let list = poll_list(&fds);
        if self.rng.random_bool(0.5) {
            self.line(a, &format!("poll([{list}], {}, 0) = ?", fds.len()));
        } else {
            self.line(
                a,
                &format!(
                    "ppoll([{list}], {}, {{tv_sec=0, tv_nsec=0}}, NULL, 8) = ?",
                    fds.len()
                ),
            );
        }
    }

    /// One to three of `a`'s watchable fds (never a blocking listener).
    pub(super) fn poll_fds(&mut self, a: usize) -> Vec<(String, Target)> {
        let names: Vec<(String, Target)> = self.actors[a]
            .names
            .iter()
            .map(|n| (n.0.clone(), n.1))
            .collect();
        let mut out: Vec<(String, Target)> = vec![];
        for _ in 0..self.rng.random_range(1..=3) {
            if let Some(n) = self.pick(&names)
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }

    /// A worker blocks in read, recvfrom, poll or ppoll (for ever, or for a few ms), or in a
    /// timed epoll_wait.
    pub(super) fn block_other(&mut self) {
        let Some(w) = self.idle_worker() else { return };
        let ms = self.rng.random_range(1..=3);
        match self.rng.random_range(0..3) {
            0 => {
                let Some(c) = self.pick(&(0..self.chans.len()).collect::<Vec<_>>()) else {
                    return;
                };
                if !self.watchers(Target::Chan(c)).is_empty() {
                    return;
                }
                let text = read_text(&self.chans[c]);
                self.line(w, &format!("{text} = ? &"));
                self.actors[w].busy = Busy::Wait {
                    watches: vec![Target::Chan(c)],
                    set: None,
                    certain: self.chans[c].nonblock,
                };
            }
            1 => {
                let fds = self.poll_fds(w);
                if fds.is_empty() {
                    return;
                }
                let list = poll_list(&fds);
                let n = fds.len();
                let timed = self.rng.random_bool(0.5);
                let text = match (self.rng.random_bool(0.5), timed) {
                    (true, true) => format!("poll([{list}], {n}, {ms})"),
                    (true, false) => format!("poll([{list}], {n}, -1)"),
                    (false, true) => format!(
                        "ppoll([{list}], {n}, {{tv_sec=0, tv_nsec={}}}, NULL, 8)",
                        ms * 1_000_000
                    ),
                    (false, false) => format!("ppoll([{list}], {n}, NULL, NULL, 8)"),
                };
                self.line(w, &format!("{text} = ? &"));
                self.actors[w].busy = Busy::Wait {
                    watches: fds.iter().map(|f| f.1).collect(),
                    set: None,
                    certain: timed,
                };
            }
            _ => {
                let sets: Vec<(String, usize)> = self.actors[w]
                    .sets
                    .iter()
                    .filter(|(_, s)| !self.set_busy(*s))
                    .cloned()
                    .collect();
                let Some((e, s)) = self.pick(&sets) else {
                    return;
                };
                self.line(w, &format!("epoll_wait({e}, 16, {ms}) = ? &"));
                let (watches, _) = self.set_watch(s);
                self.actors[w].busy = Busy::Wait {
                    watches,
                    set: Some(s),
                    certain: true,
                };
            }
        }
    }

    /// Interrupts a blocked epoll, poll or read waiter (a signal without SA_RESTART ends the
    /// call at once, or finds it returned) and awaits it. Never a blocked accept: one that was
    /// handed a connection could return EINTR and leave it queued.
    pub(super) fn kill(&mut self) {
        let ok: Vec<usize> = (1..self.actors.len())
            .filter(|&a| matches!(self.actors[a].busy, Busy::Wait { .. }))
            .collect();
        let Some(w) = self.pick(&ok) else { return };
        let name = self.actors[w].name.clone();
        self.line(0, &format!("kill({name}, SIGUSR1) = ?"));
        self.line(0, &format!("await({name})"));
        self.actors[w].busy = Busy::Idle;
    }
}

pub(super) fn read_text(ch: &Chan) -> String {
    match ch.kind {
        ChanKind::Pipe | ChanKind::SocketPair => format!("read({}, ..., 64)", ch.reader),
        ChanKind::Eventfd => format!("read({}, ..., 8)", ch.reader),
        ChanKind::Datagram => format!("recvfrom({}, ..., 64, 0)", ch.reader),
    }
}

pub(super) fn poll_list(fds: &[(String, Target)]) -> String {
    fds.iter()
        .map(|(name, _)| format!("{{fd={name}, events=POLLIN}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

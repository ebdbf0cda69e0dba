//! What the runner and an actor say to each other over their [`crate::channel`]: a command
//! (one resolved call), and the replies (ready, started in the background, done).

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::ast::{Live, Op};
use crate::addr::SockAddr;
use crate::trace::Event;

/// One call for an actor to make.
#[derive(Debug, Serialize, Deserialize)]
pub struct Command {
    pub op: Op<Live>,
    /// The name a new fd (or forked actor) takes; empty for none.
    pub name: String,
    pub background: bool,
    /// Addresses and the names symbolic traces give them.
    pub aliases: Vec<(SockAddr, String)>,
}

/// What a call produced, beyond its trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// The return value, or the errno on failure.
    #[serde(with = "result_errno")]
    pub result: Result<i64, Errno>,
    /// epoll_wait's events, (mask, data).
    pub events: Vec<(u32, u64)>,
    /// read's bytes.
    pub data: Vec<u8>,
    /// After a bind: the address the kernel really bound (the port chosen for port 0).
    pub bound: Option<SockAddr>,
    /// The fds a call wrote into an array (pipe2, socketpair), in order.
    #[serde(default)]
    pub fds: Vec<i32>,
    /// After an accept: where the kernel processed the connection (SO_INCOMING_CPU of the
    /// accepted socket) and the CPU the actor ran on, when both are known.
    #[serde(default)]
    pub accept_cpus: Option<(i32, i32)>,
}

impl Outcome {
    pub fn of(result: Result<i64, Errno>) -> Outcome {
        Outcome {
            result,
            events: vec![],
            data: vec![],
            bound: None,
            fds: vec![],
            accept_cpus: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The actor is up and serving (its first message): a runner that gets end of file
    /// instead knows the actor never started, whatever the timing of its exit.
    Ready,
    /// A background call is about to start: its unfinished event.
    Started(Event),
    /// The call finished. A fork's reply carries the child's channel as an fd.
    Done {
        events: Vec<Event>,
        outcome: Outcome,
    },
}

/// The runner's end of an actor channel, and the actor's.
pub type RunnerEnd = crate::channel::Channel<Command, Reply>;
pub type ActorEnd = crate::channel::Channel<Reply, Command>;

/// A call's result with the errno as its raw number (the channel joins the same binary).
mod result_errno {
    use nix::errno::Errno;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(r: &Result<i64, Errno>, s: S) -> Result<S::Ok, S::Error> {
        r.map_err(|e| e as i32).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Result<i64, Errno>, D::Error> {
        Ok(Result::<i64, i32>::deserialize(d)?.map_err(Errno::from_raw))
    }
}

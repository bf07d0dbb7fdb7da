//! The state lock: everything the threads share, and the one mutex that guards it.
//!
//! # Rules
//! - One mutex, `Shared::state`, guards the table, the peers' outgoing streams, the pendings,
//!   the waits and the change gates. Take it with [`lock`]; every field of [`State`] is behind it.
//! - Frames to peers are handed over while it is held, so every peer sees our frames in the
//!   order our table changed. Handing over never waits for the peer: what its socket does
//!   not take at once waits in its outbox for a writer thread ([`super::outbox`]). The one
//!   exception is the STATE that
//!   answers a HELLO, on the connection that HELLO came in on: it is written one bounded chunk
//!   per hold of the lock, the lock released between chunks, so that a large segment's
//!   transfer never stalls the node (why that is consistent: `hello::stream_states`).
//! - Replies to programs are sent with `IPC_NOWAIT`, so a full queue never blocks a server
//!   thread ([`super::queue::reply`]).
//! - Three small mutexes beside it, never held while taking `state`: `sent` (the replies we
//!   sent, [`super::queue`]), `backlog` (requests taken out of a full queue) and `drained`
//!   (what the sweeper removed, [`super::sweeper`]).
//! - A request waiting for its ACKs is a [`Pending`], keyed by the seq of its frame; the
//!   thread that takes the last ACK (or the sweeper, at the deadline) answers it
//!   ([`super::peers::finish`]).

use super::outbox::Outbox;
use super::queue::Sent;
use super::sweeper::Drained;
use crate::rshm::auth::Secret;
use crate::rshm::gate::Gates;
use crate::rshm::table::Table;
use crate::sys::msg::MsgId;
use crate::wire::rshm::{Reply, Request};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What to answer once the peers have acknowledged a request.
pub(super) enum Then {
    /// Send this reply; peers that did not acknowledge are only logged (the change is made
    /// here, and they get the table again by HELLO when they reconnect).
    Reply(Reply),
    /// rshmget's NEW: as `Reply`, but if a peer *refused* the row (it cannot hold it: a
    /// smaller shmmax there, a full table), the row is destroyed again and the program gets
    /// the peer's reason ([`super::peers::settle`]).
    Created(Reply),
    /// rshmChanged: send this reply, or an error naming every peer that did not acknowledge.
    Changed(Reply),
    /// RMID forwarded to the owner: its ACK status is the answer.
    Forwarded(Reply, i32),
}

/// A request waiting for ACKs.
pub(super) struct Pending {
    pub(super) req: Request,
    pub(super) then: Then,
    /// Peers whose ACK has not arrived yet.
    pub(super) waiting: Vec<SocketAddrV4>,
    /// Why some peers did not acknowledge.
    pub(super) failures: Vec<String>,
    /// An ACK's error, for a forwarded RMID.
    pub(super) status: (i32, String),
    pub(super) deadline: Instant,
    /// How long it waits in all (the ACK timeout, longer for a large change).
    pub(super) patience: Duration,
}

/// A program in `rshm_wait_changed` that asked through the queue (it had no gate to sleep on,
/// or its gate was retired: see `rshm::gate`).
pub(super) struct Waiter {
    pub(super) req: Request,
    pub(super) rshmid: i32,
    /// The replica's `changes` it has seen.
    pub(super) seen: u64,
    pub(super) deadline: Instant,
}

/// One configured peer, as this node sees it.
pub(super) struct Peer {
    pub(super) addr: SocketAddrV4,
    /// Our connection to it, while up: where our requests go, through its outbox (so that
    /// handing a frame over never waits for the peer).
    pub(super) out: Option<Outbox>,
    /// Set when the peer dialled us while our connection to it was down: it is back, so the
    /// dialer stops waiting out its backoff and connects at once.
    pub(super) kick: bool,
    /// Its HELLO_REPLY and the STATE of every row have been applied: `client ls` says "up"
    /// only then, so a program that waits for "up" reads the group's current data.
    pub(super) synced: bool,
}

/// Everything behind the one lock.
pub(super) struct State {
    pub(super) table: Table,
    pub(super) peers: Vec<Peer>,
    /// Keyed by the seq of the frame whose ACKs they wait for.
    pub(super) pending: HashMap<u32, Pending>,
    pub(super) waiters: Vec<Waiter>,
    /// The change gates, where programs wait for a replica to change.
    pub(super) gates: Gates,
    pub(super) next_seq: u32,
    pub(super) node_id: u32,
    /// Per peer that dialled us while we had no connection to it: each row's version when we
    /// answered its HELLO (our STATE stream to it was taken from then on). Our own changes
    /// after that reach it only when our dialer greets it ([`super::hello`], "catch-up").
    pub(super) streamed: HashMap<SocketAddrV4, HashMap<i32, u64>>,
}

/// What every thread shares.
pub(super) struct Shared {
    pub(super) me: SocketAddrV4,
    /// The replies we sent (their `mtype`) and when, oldest first, so that the sweeper can
    /// tell our fresh replies from those left unread and from messages nobody serves
    /// (`sweep_queue`). Held while a reply is sent, so that a sweep never misses one.
    pub(super) sent: Mutex<VecDeque<Sent>>,
    pub(super) queue: MsgId,
    pub(super) stop: AtomicBool,
    pub(super) state: Mutex<State>,
    /// The lab switch `RSHM_UNORDERED=1`: apply updates ignoring their order (wrong).
    pub(super) unordered: bool,
    /// The cluster secret (read-only once started).
    pub(super) secret: Secret,
    /// The largest message the kernel allows (`msgmax`): the buffer a sweep reads into.
    pub(super) msgmax: usize,
    /// What the sweeper removed from the queue and has not logged yet.
    pub(super) drained: Mutex<Drained>,
    /// Requests the queue thread took out of a full queue, to make room for its own reply;
    /// it serves them before reading the queue again. At most `RSHM_BACKLOG`.
    pub(super) backlog: Mutex<VecDeque<Vec<u8>>>,
    /// Accepted connections still in their handshake: bounded, so that a flood of connections
    /// that never authenticate cannot make us start threads without end.
    pub(super) handshakes: AtomicUsize,
    /// Refused connections per address and reason: when one was last logged, and how many
    /// were not logged since ([`super::inbound::refused`]).
    pub(super) refusals: Mutex<HashMap<(Ipv4Addr, String), Refusals>>,
}

/// Of one kind of refused connection: when it was last logged (None: never), and how many
/// like it were refused since without a line.
pub(super) type Refusals = (Option<Instant>, u64);

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A thread that panicked while holding the lock leaves the table as it was; keep serving.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

//! `rshm_server`: one node of the group. Local programs reach it through a message queue;
//! other nodes through TCP.
//!
//! ```text
//!              queue (key = 0x52530000 + port)               TCP, two connections per pair
//!   P1 ──Request──▶ [ queue thread ] ──Frame──▶ dialer conn ══════════▶ peer's accepted conn
//!   P1 ◀──Reply──── (or the thread   ◀──ACK──── (reader thread) ◀═══════ (applies, then ACKs)
//!                    that got the last ACK)
//! ```
//!
//! # The calls, one file each, in the seed's order (`src/rshm/server/`)
//! Each file tells one call's story top to bottom: the program's side (a pointer into
//! [`super::api`]), the local server's role (`local`, run by the queue thread) and the remote
//! servers' role (`remote`, run by an inbound thread), and its `# Format` in
//! [`crate::wire::rshm`].
//! - `rshmget`: find or create a segment (NEW).
//! - `rshmat`: attach, counted on every node (COUNT).
//! - `rshmdt`: detach, counted on every node (COUNT, then perhaps DESTROY).
//! - `rshmctl`: IPC_RMID, by the owner only (RMID, MARK, DESTROY).
//! - `rshm_changed`: publish a diff, a release point (UPDATE).
//! - `wait`: `rshm_wait_changed` (beyond the seed), and where every change is counted.
//! - `hello`: the HELLO exchange at start-up and at every reconnection (HELLO,
//!   HELLO_REPLY, STATE).
//!
//! # Threads, each in its own file
//! - `queue`: blocks in `msgrcv(type 1)`, handles one request at a time under the state
//!   lock; `queue::handle` only routes each to its call's `local`. A request that needs the
//!   peers sends its frame to every connected peer and leaves a `Pending` behind
//!   (`peers`); it does not wait, so one slow peer never stalls the other programs.
//! - `dialer`, one per `--peer`: connects (retrying with backoff while the peer is down),
//!   authenticates both ways ([`super::auth`]), says HELLO, then reads ACKs. The last ACK of
//!   a `Pending` sends the program its reply. This connection carries *our* requests.
//! - `inbound`: the acceptor, and one thread per accepted connection: checks that the
//!   caller is a configured peer and knows the cluster secret, answers its HELLO, then
//!   applies each frame it sends (`inbound::apply` only routes each to its call's `remote`)
//!   and answers with an ACK. This connection carries the *peer's* requests.
//! - `outbox`, one per connection we dialled: writes, in order, what the peer's socket did not
//!   take at once, so that no thread holding the state lock ever waits for a peer.
//! - `sweeper`: time limits, a queue nobody can jam, and the counts of dead programs.
//! - **main**: waits for SIGINT/SIGTERM, then shuts down (see [`Server::shutdown`]).
//!
//! Two connections per pair, one per direction of request, mean no rule is needed to decide
//! who dials whom, and an ACK always arrives on the connection its request left on.
//!
//! # Locking
//! One mutex guards everything the threads share: its rules are in `state`.
//!
//! # Consistency
//! The rules (diffs, the (version, node) order, whole-segment states at HELLO, races for a key)
//! are stated in [`crate::rshm`], "Consistency model". Here is where they run:
//! `rshm_changed::local` makes the diff, `rshm_changed::remote` applies a peer's update
//! word by word, `hello::read_states` a peer's contents, `rshmget::adopt` a peer's NEW.
//!
//! Every change of a replica goes through `wait::changed`, which counts it on the segment's
//! change gate ([`super::gate`]): that is what wakes the programs in `rshm_wait_changed`. The
//! ones that asked through the queue instead (`Waiter`) are answered there too.
//!
//! `rshmChanged` is a release point: the reply is sent only once every connected peer has
//! written the bytes into its replica and said so. A program on B that reads after P1's
//! `rshmChanged` returned therefore sees P1's data. A peer that is not connected misses the
//! update (it is listed as down in `client ls`); one that does not answer in time makes
//! `rshmChanged` fail with an error that names it.

use self::state::{lock, Peer, Pending, Shared, State, Waiter};
use self::sweeper::Drained;
use super::alive::{self, Alive};
use super::auth::Secret;
use super::gate::Gates;
use super::queue_key;
use super::table::Table;
use crate::params::{RSHM_MAX_PEERS, RSHM_UNORDERED_ENV, RSHM_WRITE_TIMEOUT};
use crate::sys::msg::MsgId;
use crate::sys::signal::TermSignals;
use crate::sys::{self, Owner};
use crate::wire::rshm::{Frame, Reply};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What `rshm_server` was asked to be.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our address: where we listen, and our name in every node's table.
    pub listen: SocketAddrV4,
    /// The other nodes. Only these may connect to us.
    pub peers: Vec<SocketAddrV4>,
    /// The cluster secret: every connection, both ways, proves it knows it ([`super::auth`]).
    pub secret: Secret,
}

/// Logs a line on stderr, always (not only when tracing): connections, refusals, failures.
/// Formatted first, then one write, so that lines of two servers sharing a terminal never mix.
macro_rules! log {
    ($($arg:tt)*) => {{
        let line = format!("{}: {}\n", crate::trace::program(), format_args!($($arg)*));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }};
}

// The calls, in the seed's order.
mod hello;
mod rshm_changed;
mod rshmat;
mod rshmctl;
mod rshmdt;
mod rshmget;
mod wait;

// The threads, and what they share.
mod dialer;
mod inbound;
mod outbox;
mod peers;
mod queue;
mod state;
mod sweeper;

/// A running node. [`Server::shutdown`] (or dropping it) removes everything it made: the
/// replicas and the change gates (held in the state, which the threads share and so never
/// drop), then the queue (owned here).
pub struct Server {
    shared: Arc<Shared>,
    /// Who removes the queue: this server, at shutdown. `None` once shut down.
    queue: Option<Owner<MsgId>>,
    /// Our claim on the port (`alive`): removed last, once nothing else of ours is left.
    alive: Option<Alive>,
}

impl Drop for Server {
    /// A server dropped without `shutdown` (an error on the way) still leaves nothing behind.
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn errno_text(e: &io::Error) -> i32 {
    sys::errno(e).unwrap_or(libc::EIO)
}

impl Server {
    /// Claims the port's alive set, binds the port, creates the queue, starts every thread.
    /// A dead server's objects on the port are removed ([`super::alive`]); fails if a live
    /// server has the port (naming its pid), if the TCP port is taken, or if another user's
    /// objects are under our keys (naming their owner).
    pub fn start(config: Config) -> io::Result<Server> {
        if config.peers.len() > RSHM_MAX_PEERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {RSHM_MAX_PEERS} peers"),
            ));
        }
        let port = config.listen.port();
        // First the port's alive set: it tells a live server (refused, by pid) from a dead
        // one, whose queue and gates are removed here (see `alive`).
        let alive = Alive::claim(port, |line| log!("{line}"))?;
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", config.listen)))?;
        let key = queue_key(port);
        let queue = alive::create_queue(port, |line| log!("{line}"))?;
        let gates = Gates::create(port)?;
        let mut table = Table::new(config.listen)?;
        let node_id = table.new_node_id();
        let shared = Arc::new(Shared {
            me: config.listen,
            sent: Mutex::new(VecDeque::new()),
            unordered: std::env::var(RSHM_UNORDERED_ENV).is_ok_and(|v| v == "1"),
            queue: queue.get(),
            stop: AtomicBool::new(false),
            secret: config.secret.clone(),
            msgmax: sys::kernel_limit("msgmax")
                .unwrap_or(8192)
                .clamp(8192, 1 << 20) as usize,
            drained: Mutex::new(Drained::default()),
            backlog: Mutex::new(VecDeque::new()),
            handshakes: AtomicUsize::new(0),
            refusals: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                table,
                peers: config
                    .peers
                    .iter()
                    .map(|&addr| Peer {
                        addr,
                        out: None,
                        kick: false,
                        synced: false,
                    })
                    .collect(),
                pending: HashMap::new(),
                waiters: Vec::new(),
                next_seq: 1,
                gates,
                node_id,
                streamed: HashMap::new(),
            }),
        });
        log!(
            "node {} (id {node_id:08x}) serving queue key 0x{key:08x} (msqid {}), {} peer(s)",
            config.listen,
            queue.get().0,
            config.peers.len()
        );
        crate::trace!(
            "change gates: semaphore set key 0x{:08x} (semid {})",
            super::gate::gate_key(config.listen.port()),
            lock(&shared).gates.semid()
        );
        let s = shared.clone();
        std::thread::spawn(move || queue::queue_loop(&s));
        let s = shared.clone();
        std::thread::spawn(move || inbound::accept_loop(&s, listener));
        let s = shared.clone();
        std::thread::spawn(move || sweeper::sweep_loop(&s));
        for peer in config.peers {
            let s = shared.clone();
            std::thread::spawn(move || dialer::dial_loop(&s, peer));
        }
        if shared.unordered {
            log!("{RSHM_UNORDERED_ENV}=1: updates applied in arrival order, not by stamp (a lab experiment; nodes may diverge)");
        }
        Ok(Server {
            shared,
            queue: Some(queue),
            alive: Some(alive),
        })
    }

    /// Runs until SIGINT or SIGTERM, then shuts down. `signals` must have been blocked before
    /// any thread started (so that no thread but this one takes them).
    pub fn serve(mut self, signals: &TermSignals) -> io::Result<i32> {
        let sig = signals.wait()?;
        log!("signal {sig}: leaving the group");
        self.shutdown();
        Ok(sig)
    }

    /// Tells the peers we leave, fails what is pending, drops every replica (detach, then
    /// IPC_RMID), and removes the queue, which wakes the queue thread with EIDRM.
    pub fn shutdown(&mut self) {
        if self.queue.is_none() {
            return; // done already
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut leaving = Vec::new();
        {
            let mut st = lock(&self.shared);
            let bye = Frame::Bye.encode(0);
            for p in &mut st.peers {
                if let Some(out) = p.out.take() {
                    crate::trace!("tcp -> {} BYE", p.addr);
                    if out.send(&bye).is_ok() {
                        leaving.push(out);
                    }
                }
            }
            let pending: Vec<Pending> = st.pending.drain().map(|(_, p)| p).collect();
            for p in pending {
                queue::reply(
                    &self.shared,
                    &p.req,
                    &Reply::error(&p.req, libc::ESHUTDOWN, "rshm_server is shutting down"),
                );
            }
            let waiters: Vec<Waiter> = st.waiters.drain(..).collect();
            for w in waiters {
                queue::reply(
                    &self.shared,
                    &w.req,
                    &Reply::error(&w.req, libc::ESHUTDOWN, "rshm_server is shutting down"),
                );
            }
            st.table.clear();
            // Programs asleep on a gate wake with EIDRM and ask the queue, which goes next.
            if let Err(e) = st.gates.remove() {
                log!("removing the change gates: {e}");
            }
        }
        // The BYEs, and whatever waits before them, get one write time-out in all.
        let until = Instant::now() + RSHM_WRITE_TIMEOUT;
        for out in leaving {
            out.close(until.saturating_duration_since(Instant::now()));
        }
        // Removing the queue wakes the queue thread and every program waiting on it.
        drop(self.queue.take());
        drop(self.alive.take());
    }

    /// Our address.
    pub fn addr(&self) -> SocketAddrV4 {
        self.shared.me
    }
}

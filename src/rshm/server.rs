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
//! # Threads
//! - **queue**: blocks in `msgrcv(type 1)`, handles one request at a time under the state lock.
//!   A request that needs the peers (GET of a new key, AT, DT, RMID, CHANGED) sends its frame to
//!   every connected peer and leaves a `Pending` behind; it does not wait, so one slow peer
//!   never stalls the other programs.
//! - **dialer**, one per `--peer`: connects (retrying with backoff while the peer is down),
//!   authenticates both ways ([`super::auth`]), sends HELLO with our table, merges the
//!   HELLO_REPLY table, applies the STATE (contents) of each row that follows it, then reads
//!   ACKs. The last ACK of a `Pending` sends the program its reply. This connection carries
//!   *our* requests.
//! - **acceptor**, and one **inbound** thread per accepted connection: checks that the caller
//!   is a configured peer and proves it knows the cluster secret ([`super::auth`]; before
//!   that, nothing is sent but a nonce and a MAC), answers its HELLO with our table and every row's contents, then
//!   applies each frame it sends and answers with an ACK. This connection carries the *peer's*
//!   requests. A frame that is garbage, too long or cut short drops the connection, logged.
//! - **sweeper**: every few ms, fails the pendings and waits whose time is up, removes what
//!   nobody takes from the queue (`sweep_queue`), and drops the attaches of programs that
//!   died attached to a segment marked for removal; every second, those of every segment
//!   (`correct_counts`).
//! - **main**: waits for SIGINT/SIGTERM, then shuts down (see [`Server::shutdown`]).
//!
//! Two connections per pair, one per direction of request, mean no rule is needed to decide
//! who dials whom, and an ACK always arrives on the connection its request left on.
//!
//! # Locking
//! One mutex, `Shared::state`, guards the table, the peers' outgoing streams, the pendings,
//! the waits and the change gates. Frames to peers are written while it is held, so every peer sees our frames in the
//! order our table changed. (A write can block only while a peer's socket buffer is full, and
//! gives up after `RSHM_WRITE_TIMEOUT`, dropping that peer.) Replies to programs are sent with
//! `IPC_NOWAIT`, so a full queue never blocks a server thread.
//!
//! # Consistency
//! The rules (diffs, the (version, node) order, whole-segment states at HELLO, races for a key)
//! are stated in [`crate::rshm`], "Consistency model". Here is where they run: `Op::Changed` in
//! `handle` makes the diff, `apply` applies a peer's update word by word, `apply_state` a
//! peer's contents, `adopt` a peer's NEW.
//!
//! Every change of a replica goes through `changed`, which counts it on the segment's change
//! gate ([`super::gate`]): that is what wakes the programs in `rshm_wait_changed`. The ones
//! that asked through the queue instead (`Waiter`) are answered there too.
//!
//! `rshmChanged` is a release point: the reply is sent only once every connected peer has
//! written the bytes into its replica and said so. A program on B that reads after P1's
//! `rshmChanged` returned therefore sees P1's data. A peer that is not connected misses the
//! update (it is listed as down in `client ls`); one that does not answer in time makes
//! `rshmChanged` fail with an error that names it.

use super::alive::{self, Alive};
use super::auth::{self, AuthError, Secret};
use super::gate::Gates;
use super::table::{Adopted, Stamp, Table};
use super::{queue_key, RSHM_REQUEST_TYPE};
use crate::params::{
    RSHM_ACK_TIMEOUT, RSHM_BACKLOG, RSHM_BACKOFF_MAX, RSHM_BACKOFF_MIN, RSHM_CONNECT_TIMEOUT,
    RSHM_DRAIN_INTERVAL, RSHM_GATE_SEMS, RSHM_HELLO_TIMEOUT, RSHM_MAX_HANDSHAKES, RSHM_MAX_PEERS,
    RSHM_MAX_RUNS, RSHM_MAX_SEGMENT, RSHM_READ_BUFFER, RSHM_REPLY_ROOM_WAIT, RSHM_REPLY_UNREAD,
    RSHM_SWEEP_INTERVAL, RSHM_TRACKED_REPLIES, RSHM_UNORDERED_ENV, RSHM_WRITE_TIMEOUT,
};
use crate::sys::msg::MsgId;
use crate::sys::signal::TermSignals;
use crate::sys::{self, Owner};
use crate::wire::rshm::{
    update_len, Entry, Frame, Hello, LsPeer, Op, Reply, Request, Run, StampedRun, FRAME_HEADER_LEN,
    MAX_BODY, STATE_FIXED_LEN, STATE_RUN_HEADER_LEN,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// What to answer once the peers have acknowledged a request.
enum Then {
    /// Send this reply; peers that did not acknowledge are only logged (the change is made
    /// here, and they get the table again by HELLO when they reconnect).
    Reply(Reply),
    /// rshmChanged: send this reply, or an error naming every peer that did not acknowledge.
    Changed(Reply),
    /// RMID forwarded to the owner: its ACK status is the answer.
    Forwarded(Reply, i32),
}

/// A request waiting for ACKs.
struct Pending {
    req: Request,
    then: Then,
    /// Peers whose ACK has not arrived yet.
    waiting: Vec<SocketAddrV4>,
    /// Why some peers did not acknowledge.
    failures: Vec<String>,
    /// An ACK's error, for a forwarded RMID.
    status: (i32, String),
    deadline: Instant,
}

/// A program in `rshm_wait_changed` that asked through the queue (it had no gate to sleep on,
/// or its gate was retired: see `rshm::gate`).
struct Waiter {
    req: Request,
    rshmid: i32,
    /// The replica's `changes` it has seen.
    seen: u64,
    deadline: Instant,
}

/// One configured peer, as this node sees it.
struct Peer {
    addr: SocketAddrV4,
    /// Our connection to it, while up: where our requests go.
    out: Option<TcpStream>,
    /// Set when the peer dialled us while our connection to it was down: it is back, so the
    /// dialer stops waiting out its backoff and connects at once.
    kick: bool,
    /// Its HELLO_REPLY and the STATE of every row have been applied: `client ls` says "up"
    /// only then, so a program that waits for "up" reads the group's current data.
    synced: bool,
}

/// Everything behind the one lock.
struct State {
    table: Table,
    peers: Vec<Peer>,
    /// Keyed by the seq of the frame whose ACKs they wait for.
    pending: HashMap<u32, Pending>,
    waiters: Vec<Waiter>,
    /// The change gates, where programs wait for a replica to change.
    gates: Gates,
    next_seq: u32,
    node_id: u32,
}

/// What every thread shares.
struct Shared {
    me: SocketAddrV4,
    /// The replies we sent (their `mtype`) and when, oldest first, so that the sweeper can
    /// tell our fresh replies from those left unread and from messages nobody serves
    /// (`sweep_queue`). Held while a reply is sent, so that a sweep never misses one.
    sent: Mutex<VecDeque<Sent>>,
    queue: MsgId,
    stop: AtomicBool,
    state: Mutex<State>,
    /// The lab switch `RSHM_UNORDERED=1`: apply updates ignoring their order (wrong).
    unordered: bool,
    /// The cluster secret (read-only once started).
    secret: Secret,
    /// The largest message the kernel allows (`msgmax`): the buffer a sweep reads into.
    msgmax: usize,
    /// What the sweeper removed from the queue and has not logged yet.
    drained: Mutex<Drained>,
    /// Requests the queue thread took out of a full queue, to make room for its own reply;
    /// it serves them before reading the queue again. At most `RSHM_BACKLOG`.
    backlog: Mutex<VecDeque<Vec<u8>>>,
    /// Accepted connections still in their handshake: bounded, so that a flood of connections
    /// that never authenticate cannot make us start threads without end.
    handshakes: AtomicUsize,
}

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
        let gates = Gates::create(port, RSHM_GATE_SEMS)?;
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
        std::thread::spawn(move || queue_loop(&s));
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(&s, listener));
        let s = shared.clone();
        std::thread::spawn(move || sweep_loop(&s));
        for peer in config.peers {
            let s = shared.clone();
            std::thread::spawn(move || dial_loop(&s, peer));
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
        {
            let mut st = lock(&self.shared);
            let bye = Frame::Bye.encode(0);
            for p in &mut st.peers {
                if let Some(mut s) = p.out.take() {
                    crate::trace!("tcp -> {} BYE", p.addr);
                    let _ = s.write_all(&bye);
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
            let pending: Vec<Pending> = st.pending.drain().map(|(_, p)| p).collect();
            for p in pending {
                reply(
                    &self.shared,
                    &p.req,
                    &Reply::error(&p.req, libc::ESHUTDOWN, "rshm_server is shutting down"),
                );
            }
            let waiters: Vec<Waiter> = st.waiters.drain(..).collect();
            for w in waiters {
                reply(
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
        // Removing the queue wakes the queue thread and every program waiting on it.
        drop(self.queue.take());
        drop(self.alive.take());
    }

    /// Our address.
    pub fn addr(&self) -> SocketAddrV4 {
        self.shared.me
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A thread that panicked while holding the lock leaves the table as it was; keep serving.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends a program its reply, without ever blocking (a dead program's queue may be full).
fn reply(shared: &Shared, req: &Request, r: &Reply) {
    if r.status == 0 {
        crate::trace!("queue -> tid {} {} ok", req.reply_type, req.op);
    } else {
        crate::trace!(
            "queue -> tid {} {} errno={} {}",
            req.reply_type,
            req.op,
            r.status,
            r.text
        );
    }
    // No check that the caller is still alive (reading /proc/PID/stat costs more than the
    // whole round trip, and a caller's pid is only what it says). A reply nobody takes is
    // removed by the sweeper instead, after `RSHM_REPLY_UNREAD` (`sweep_queue`).
    let bytes = r.encode();
    let mtype = i64::from(req.reply_type);
    let mut give_up = None;
    loop {
        {
            let mut sent = lock_sent(shared);
            match shared.queue.send(mtype, &bytes, true) {
                Ok(()) => {
                    if sent.len() == RSHM_TRACKED_REPLIES {
                        sent.pop_front();
                    }
                    sent.push_back(Sent {
                        mtype,
                        pid: req.pid,
                        at: Instant::now(),
                    });
                    return;
                }
                Err(e)
                    if sys::is_timeout(&e)
                        && give_up.is_none_or(|t: Instant| Instant::now() < t) => {}
                Err(e) => {
                    if !shared.stop.load(Ordering::Relaxed) {
                        log!("reply to tid {} lost: {e}", req.reply_type);
                    }
                    return;
                }
            }
        }
        // Full: someone floods the queue. A reply to a thread that does not exist is read by
        // nobody: dropped at once, so that the queue thread keeps taking requests out (a
        // flood of requests would otherwise fill the queue while we wait for room).
        if !thread_exists(req.pid, mtype) {
            lock_drained(shared).unread += 1;
            return;
        }
        // Else clear out what nobody takes, and try again, for a while: the flood may refill
        // what a sweep freed before our reply gets in.
        give_up.get_or_insert_with(|| Instant::now() + RSHM_REPLY_ROOM_WAIT);
        let removed = sweep_queue(shared, true);
        lock_drained(shared).add(removed);
        // The queue thread waiting here is the only one that takes requests out: a queue
        // full of requests would wait for it for ever. So it takes them out now, into the
        // backlog it serves next.
        if IS_QUEUE_THREAD.with(|q| q.get()) {
            let mut backlog = lock_backlog(shared);
            let mut b = vec![0u8; crate::wire::rshm::REQUEST_LEN + 1];
            while backlog.len() < RSHM_BACKLOG {
                match shared.queue.try_recv(RSHM_REQUEST_TYPE, &mut b) {
                    Ok(Some((_, n))) => backlog.push_back(b[..n].to_vec()),
                    _ => break,
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A reply we put in the queue: for whom, claimed pid, and when.
struct Sent {
    mtype: i64,
    pid: i32,
    at: Instant,
}

fn lock_sent(shared: &Shared) -> MutexGuard<'_, VecDeque<Sent>> {
    shared.sent.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// Set in the queue thread: the one that may move requests into the backlog.
    static IS_QUEUE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn lock_backlog(shared: &Shared) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
    shared.backlog.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_drained(shared: &Shared) -> MutexGuard<'_, Drained> {
    shared.drained.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the sweeper took out of the queue since it last said so: logged once a second at
/// most, so that a flood cannot flood the log too.
#[derive(Default)]
struct Drained {
    /// Our replies that nobody took within the bound.
    unread: u64,
    /// Messages of types no rshm_server serves (not type 1, not a reply of ours).
    foreign: u64,
    /// A few of the types seen, for the log line.
    types: Vec<i64>,
}

impl Drained {
    fn add(&mut self, other: Drained) {
        self.unread += other.unread;
        self.foreign += other.foreign;
        for t in other.types {
            if self.types.len() < 5 && !self.types.contains(&t) {
                self.types.push(t);
            }
        }
    }
}

/// Keeps the queue from jamming. Anyone who may write to it can fill it (`msg_qbytes`, 16 KiB
/// by default) with messages of a type we never read, or with requests whose replies nobody
/// reads; from then on no program could send a request. So, every sweep:
///
/// - a reply we sent more than `RSHM_REPLY_UNREAD` ago is no longer ours to keep: a caller
///   that waits takes its reply within microseconds, and one that gave up drops it anyway.
///   While the queue is more than half full, at once for a reply whose caller thread does not
///   exist (`/proc/PID/task/TID`): whatever pid a request claims (pid 1 never dies), a reply
///   to a thread that is not there is read by nobody;
/// - if the queue holds more messages than we have replies to keep, some are not ours to
///   keep: every message but requests (type 1) is taken out in turn (`msgrcv` with
///   `MSG_EXCEPT`), and those we keep are put back at the end, the others dropped.
///
/// Returns what was dropped. Cheap when there is nothing to do: one `IPC_STAT`.
fn sweep_queue(shared: &Shared, full: bool) -> Drained {
    let mut out = Drained::default();
    let Ok(stat) = shared.queue.stat() else {
        return out;
    };
    if stat.messages == 0 {
        return out;
    }
    let pressed = full || stat.bytes.saturating_mul(2) > stat.max_bytes;
    // Held to the end: no reply is sent meanwhile, so every reply to keep is in `keep`.
    let mut sent = lock_sent(shared);
    let now = Instant::now();
    while sent
        .front()
        .is_some_and(|r| now.duration_since(r.at) >= RSHM_REPLY_UNREAD)
    {
        sent.pop_front();
    }
    if pressed {
        let mut cache: HashMap<(i32, i64), bool> = HashMap::new();
        sent.retain(|r| {
            *cache
                .entry((r.pid, r.mtype))
                .or_insert_with(|| thread_exists(r.pid, r.mtype))
        });
    }
    // A caller waits for one reply at a time (its type is its thread id): if the queue holds
    // no more messages than there are callers to keep replies for, all may be theirs.
    let keep: HashSet<i64> = sent.iter().map(|r| r.mtype).collect();
    if stat.messages <= keep.len() as u64 {
        return out;
    }
    let mut buf = vec![0u8; shared.msgmax];
    let mut back = Vec::new();
    for _ in 0..stat.messages {
        let Ok(Some((mtype, n))) = shared.queue.try_recv_except(RSHM_REQUEST_TYPE, &mut buf) else {
            break;
        };
        if keep.contains(&mtype) {
            back.push((mtype, buf[..n].to_vec()));
            continue;
        }
        if buf[..n].starts_with(crate::wire::rshm::REPLY_MAGIC) {
            out.unread += 1;
        } else {
            out.foreign += 1;
        }
        if out.types.len() < 5 && !out.types.contains(&mtype) {
            out.types.push(mtype);
        }
    }
    // Back in the queue, at its end (each caller reads only its own type, so the order
    // between callers does not matter). The room they left may have been taken by a flood
    // meanwhile: those that do not fit are tried again for a while, without the lock, so
    // that the queue thread can go on replying and taking requests out meanwhile.
    back.retain(|(mtype, bytes)| shared.queue.send(*mtype, bytes, true).is_err());
    drop(sent);
    let until = Instant::now() + RSHM_REPLY_ROOM_WAIT;
    for (mtype, bytes) in back {
        while let Err(e) = shared.queue.send(mtype, &bytes, true) {
            if !sys::is_timeout(&e) || Instant::now() >= until {
                log!("reply to tid {mtype} lost while sweeping the queue: {e}");
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    out
}

/// Does thread `tid` of process `pid` exist? (A reply's `mtype` is its caller's thread id.)
fn thread_exists(pid: i32, tid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

// ---------------------------------------------------------------------------------------------
// Sending frames to peers (always with the state lock held).

/// Writes `frame` to every connected peer. Returns the seq and the peers it reached; a peer
/// whose write fails is dropped (its dialer reconnects).
fn broadcast(st: &mut State, frame: &Frame) -> (u32, Vec<SocketAddrV4>) {
    let all: Vec<SocketAddrV4> = st.peers.iter().map(|p| p.addr).collect();
    send_to(st, frame, &all)
}

/// Writes `frame` to those of `targets` that are connected.
fn send_to(st: &mut State, frame: &Frame, targets: &[SocketAddrV4]) -> (u32, Vec<SocketAddrV4>) {
    let seq = st.next_seq;
    st.next_seq = st.next_seq.wrapping_add(1).max(1);
    let bytes = frame.encode(seq);
    let mut reached = Vec::new();
    for p in st.peers.iter_mut().filter(|p| targets.contains(&p.addr)) {
        let Some(s) = p.out.as_mut() else { continue };
        crate::trace!("tcp -> {} #{seq} {frame}", p.addr);
        match s.write_all(&bytes) {
            Ok(()) => reached.push(p.addr),
            Err(e) => {
                log!(
                    "peer {}: write failed: {e}; dropping the connection",
                    p.addr
                );
                let _ = s.shutdown(Shutdown::Both);
                p.out = None;
            }
        }
    }
    (seq, reached)
}

/// Leaves `req` waiting for the ACKs of frame `seq` from `peers`; replies at once if none.
fn await_acks(
    shared: &Shared,
    st: &mut State,
    seq: u32,
    peers: Vec<SocketAddrV4>,
    req: Request,
    then: Then,
) {
    let p = Pending {
        req,
        then,
        waiting: peers,
        failures: Vec::new(),
        status: (0, String::new()),
        deadline: Instant::now() + RSHM_ACK_TIMEOUT,
    };
    if p.waiting.is_empty() {
        let mut p = p;
        settle(st, &mut p);
        finish(shared, p);
    } else {
        st.pending.insert(seq, p);
    }
}

/// Before answering: a GET whose row was renamed meanwhile (it lost a race for its key)
/// answers with the name that won, and that row's size.
fn settle(st: &State, p: &mut Pending) {
    if let Then::Reply(r) = &mut p.then {
        if r.rshmid != 0 {
            r.rshmid = st.table.resolve(r.rshmid);
            if matches!(p.req.op, Op::Get { .. }) {
                if let Some(seg) = st.table.get(r.rshmid) {
                    r.size = seg.size as u64;
                }
            }
        }
    }
}

/// Every ACK is in (or will never come): answer the program.
fn finish(shared: &Shared, p: Pending) {
    let r = match p.then {
        Then::Reply(r) => {
            for f in &p.failures {
                log!("{}: {f}", p.req.op);
            }
            r
        }
        Then::Changed(r) if p.failures.is_empty() => r,
        Then::Changed(r) => Reply::error(
            &p.req,
            libc::ETIMEDOUT,
            format!(
                "rshmChanged(rshmid={}): {}",
                r.rshmid,
                p.failures.join("; ")
            ),
        ),
        Then::Forwarded(r, _) if p.failures.is_empty() && p.status.0 == 0 => r,
        Then::Forwarded(_, rshmid) if p.failures.is_empty() => Reply::error(
            &p.req,
            p.status.0,
            format!(
                "rshmctl(rshmid={rshmid}, IPC_RMID) at the owner: {}",
                p.status.1
            ),
        ),
        Then::Forwarded(_, rshmid) => Reply::error(
            &p.req,
            libc::EHOSTUNREACH,
            format!(
                "rshmctl(rshmid={rshmid}, IPC_RMID): {}",
                p.failures.join("; ")
            ),
        ),
    };
    reply(shared, &p.req, &r);
}

/// An ACK for frame `seq` from `peer`. One that names a winner answers our NEW: the key was
/// created elsewhere at the same moment, with a lower rshmid; we adopt that row.
fn on_ack(
    shared: &Shared,
    peer: SocketAddrV4,
    seq: u32,
    (status, text, winner): (i32, String, Option<Entry>),
) {
    let mut st = lock(shared);
    if let Some(e) = winner {
        if let Err(x) = adopt(&mut st, &e) {
            log!("adopting rshmid {} from {peer}: {x}", e.rshmid);
        }
    }
    let Some(p) = st.pending.get_mut(&seq) else {
        return; // a frame nobody waits for (a MARK, a DESTROY), or one that timed out
    };
    p.waiting.retain(|a| *a != peer);
    if status != 0 {
        p.failures.push(format!("peer {peer} refused: {text}"));
        p.status = (status, text);
    }
    if p.waiting.is_empty() {
        let mut p = st.pending.remove(&seq).expect("present");
        settle(&st, &mut p);
        drop(st);
        finish(shared, p);
    }
}

/// A row another node announced, by the rule of [`Table::adopt`]. Returns the row that beat
/// it, if it lost. A rename moves the waits on the old name to the new one.
fn adopt(st: &mut State, e: &Entry) -> Result<Option<Entry>, io::Error> {
    match st.table.adopt(e)? {
        Adopted::Lost(w) => Ok(Some(w)),
        Adopted::Renamed { from } => {
            log!(
                "key 0x{:08x} was created on two nodes at once: rshmid {} wins over ours, {from}",
                e.key,
                e.rshmid
            );
            for w in st.waiters.iter_mut().filter(|w| w.rshmid == from) {
                w.rshmid = e.rshmid;
            }
            // Sleepers on the old name's gate ask again, and learn the new one.
            retire_gate(st, from);
            Ok(None)
        }
        Adopted::New | Adopted::Known => Ok(None),
    }
}

/// Our connection to `peer` is gone: whoever waits for its ACK will not get one.
fn peer_down(shared: &Shared, peer: SocketAddrV4, why: &str) {
    let mut st = lock(shared);
    if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
        p.synced = false;
        if let Some(s) = p.out.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    let seqs: Vec<u32> = st
        .pending
        .iter()
        .filter(|(_, p)| p.waiting.contains(&peer))
        .map(|(seq, _)| *seq)
        .collect();
    let mut done = Vec::new();
    for seq in seqs {
        let p = st.pending.get_mut(&seq).expect("present");
        p.waiting.retain(|a| *a != peer);
        p.failures.push(format!("peer {peer} went down ({why})"));
        if p.waiting.is_empty() {
            done.extend(st.pending.remove(&seq));
        }
    }
    for p in &mut done {
        settle(&st, p);
    }
    drop(st);
    for p in done {
        finish(shared, p);
    }
}

// ---------------------------------------------------------------------------------------------
// Table changes that every node must hear of.

/// Destroys a row here, tells every peer, and answers the programs waiting on it.
fn destroy(shared: &Shared, st: &mut State, rshmid: i32) -> (u32, Vec<SocketAddrV4>) {
    removed(shared, st, rshmid);
    broadcast(st, &Frame::Destroy { rshmid })
}

/// The row is gone here: its gate is retired (sleepers ask the queue), and every wait on it
/// is answered with EIDRM.
fn removed(shared: &Shared, st: &mut State, rshmid: i32) {
    st.table.destroy(rshmid);
    retire_gate(st, rshmid);
    answer_waits(shared, st, rshmid);
}

fn retire_gate(st: &mut State, rshmid: i32) {
    if let Err(e) = st.gates.retire(rshmid) {
        log!("rshmid {rshmid}: retiring its change gate: {e}");
    }
}

/// The replica of `rshmid` changed here: count the change, on its gate too (in one critical
/// section, so that a reply never names a count its gate has not reached), and answer the
/// queued waits it satisfies.
fn changed(shared: &Shared, st: &mut State, rshmid: i32) {
    let Some(seg) = st.table.get_mut(rshmid) else {
        return;
    };
    seg.changes += 1;
    let rshmid = seg.rshmid;
    if let Err(e) = st.gates.count(rshmid) {
        log!("rshmid {rshmid}: counting a change on its gate: {e}");
    }
    answer_waits(shared, st, rshmid);
}

/// A reply that tells a program what it has now seen of `rshmid`: the version, the replica's
/// change count and the gate to wait on for the next change.
fn seen_reply(st: &mut State, req: &Request, rshmid: i32) -> Reply {
    let Some(seg) = st.table.get(rshmid) else {
        return Reply::error(req, libc::EIDRM, format!("rshmid {rshmid} was removed"));
    };
    let (rshmid, version, changes) = (seg.rshmid, seg.stamp.version, seg.changes);
    Reply {
        rshmid,
        version,
        changes,
        node: st.node_id,
        // No gate (the set could not be renewed): the program asks the queue each time.
        gate: st.gates.gate(rshmid).ok(),
        ..Reply::to(req)
    }
}

/// Answers every queued wait on `rshmid` that its change count (or its removal) satisfies.
fn answer_waits(shared: &Shared, st: &mut State, rshmid: i32) {
    let changes = st.table.get(rshmid).map(|s| s.changes);
    let mut i = 0;
    while i < st.waiters.len() {
        let w = &st.waiters[i];
        if w.rshmid != rshmid || changes.is_some_and(|c| c <= w.seen) {
            i += 1;
            continue;
        }
        let w = st.waiters.swap_remove(i);
        let r = seen_reply(st, &w.req, rshmid);
        reply(shared, &w.req, &r);
    }
}

/// The owner's side of IPC_RMID: mark, tell everyone, destroy if nobody is attached.
fn mark_as_owner(shared: &Shared, st: &mut State, rshmid: i32) -> (u32, Vec<SocketAddrV4>) {
    let seg = st.table.get_mut(rshmid).expect("caller checked");
    seg.marked = true;
    let total = seg.total();
    let sent = broadcast(st, &Frame::Mark { rshmid });
    if total == 0 {
        destroy(shared, st, rshmid)
    } else {
        sent
    }
}

/// After a count changed: as owner, destroy a marked row nobody is attached to any more.
fn destroy_if_done(
    shared: &Shared,
    st: &mut State,
    rshmid: i32,
) -> Option<(u32, Vec<SocketAddrV4>)> {
    let seg = st.table.get(rshmid)?;
    if seg.owner == shared.me && seg.marked && seg.total() == 0 {
        Some(destroy(shared, st, rshmid))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The queue thread: requests from local programs.

fn queue_loop(shared: &Shared) {
    // Room for the largest message the kernel allows: a bigger one would fail with E2BIG and
    // stay at the head of the queue, jamming it for good.
    let mut buf = vec![0u8; shared.msgmax];
    // Bad requests are logged one a second at most (a flood of them would flood the log).
    let mut bad: (u64, Option<Instant>) = (0, None);
    IS_QUEUE_THREAD.with(|q| q.set(true));
    loop {
        // Requests this thread took out of a full queue first (see `reply`), then the queue.
        let held = lock_backlog(shared).pop_front();
        let got = match held {
            Some(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok((RSHM_REQUEST_TYPE, bytes.len()))
            }
            None => shared.queue.recv(RSHM_REQUEST_TYPE, &mut buf),
        };
        let n = match got {
            Ok((_, n)) => n,
            Err(e) => {
                if !shared.stop.load(Ordering::SeqCst) {
                    // Someone removed our queue (ipcrm): no local program can reach us any
                    // more, so leave the group cleanly, as on SIGTERM.
                    log!("queue: {e}; shutting down");
                    let _ = sys::process::kill(std::process::id() as i32, libc::SIGTERM);
                }
                return;
            }
        };
        let req = match Request::decode(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                bad.0 += 1;
                if bad.1.is_none_or(|t| t.elapsed() >= RSHM_DRAIN_INTERVAL) {
                    let more = match bad.0 - 1 {
                        0 => String::new(),
                        k => format!(" (and {k} more bad message(s) since the last such line)"),
                    };
                    log!("queue: dropped a {n}-byte message: {e}{more}");
                    bad = (0, Some(Instant::now()));
                }
                continue;
            }
        };
        crate::trace!("queue <- tid {} pid {} {}", req.reply_type, req.pid, req.op);
        if shared.stop.load(Ordering::SeqCst) {
            // Between the table's clearing and the queue's removal (`shutdown`): a request
            // now would find no segment, or make one on a server that is leaving.
            let r = Reply::error(&req, libc::ESHUTDOWN, "rshm_server is shutting down");
            reply(shared, &req, &r);
            continue;
        }
        let mut st = lock(shared);
        handle(shared, &mut st, req);
    }
}

/// One request, under the lock.
fn handle(shared: &Shared, st: &mut State, req: Request) {
    let me = shared.me;
    let fail = |errno: i32, text: String| reply(shared, &req, &Reply::error(&req, errno, text));
    match req.op {
        Op::Get { key, size } => {
            if let Some(seg) = st.table.by_key(key) {
                if size > seg.size as u64 {
                    return fail(
                        libc::EINVAL,
                        format!("rshmget(key=0x{key:08x}, size={size}): the segment exists with size {}", seg.size),
                    );
                }
                let r = Reply {
                    rshmid: seg.rshmid,
                    size: seg.size as u64,
                    ..Reply::to(&req)
                };
                return reply(shared, &req, &r);
            }
            if size == 0 {
                return fail(
                    libc::ENOENT,
                    format!("rshmget(key=0x{key:08x}): no segment with this key in the group"),
                );
            }
            if size > RSHM_MAX_SEGMENT as u64 {
                return fail(
                    libc::EINVAL,
                    format!("rshmget(key=0x{key:08x}, size={size}): larger than {RSHM_MAX_SEGMENT} bytes"),
                );
            }
            let entry = match st.table.create(key, size as usize) {
                Ok(seg) => seg.entry(),
                Err(e) => return fail(errno_text(&e), format!("rshmget(key=0x{key:08x}): {e}")),
            };
            log!(
                "created rshmid {} (key 0x{key:08x}, {size} bytes)",
                entry.rshmid
            );
            let r = Reply {
                rshmid: entry.rshmid,
                size,
                ..Reply::to(&req)
            };
            let (seq, peers) = broadcast(st, &Frame::New(entry));
            await_acks(shared, st, seq, peers, req, Then::Reply(r));
        }
        Op::At { rshmid } => {
            let Some(seg) = st.table.get_mut(rshmid) else {
                return fail(
                    libc::EINVAL,
                    format!("rshmat(rshmid={rshmid}): no such segment"),
                );
            };
            if seg.marked {
                return fail(
                    libc::EIDRM,
                    format!("rshmat(rshmid={rshmid}): the segment is marked for removal"),
                );
            }
            let rshmid = seg.rshmid;
            let count = seg.attach(me, req.pid);
            let (shmid, size) = (seg.replica.shmid.0, seg.size as u64);
            let r = Reply {
                shmid,
                size,
                ..seen_reply(st, &req, rshmid)
            };
            let (seq, peers) = broadcast(
                st,
                &Frame::Count {
                    rshmid,
                    node: me,
                    count,
                },
            );
            await_acks(shared, st, seq, peers, req, Then::Reply(r));
        }
        Op::Dt { rshmid } => {
            let Some(seg) = st.table.get_mut(rshmid) else {
                return fail(
                    libc::EINVAL,
                    format!("rshmdt(rshmid={rshmid}): no such segment"),
                );
            };
            let rshmid = seg.rshmid;
            // Counted per process: a detach is the caller's own, so it can never be taken
            // for (or be swallowed by) another program's death (`correct_counts`).
            let Some(count) = seg.detach(me, req.pid) else {
                return fail(
                    libc::EINVAL,
                    format!(
                        "rshmdt(rshmid={rshmid}): process {} has no attach on this node",
                        req.pid
                    ),
                );
            };
            let r = Reply {
                rshmid,
                ..Reply::to(&req)
            };
            let (mut seq, mut peers) = broadcast(
                st,
                &Frame::Count {
                    rshmid,
                    node: me,
                    count,
                },
            );
            // The last detach of a marked segment: the owner destroys it everywhere. Waiting
            // for the DESTROY's ACKs (sent after the COUNT on the same connections) means the
            // program's rshmdt returns when the segment is gone on every connected node.
            if let Some(sent) = destroy_if_done(shared, st, rshmid) {
                (seq, peers) = sent;
            }
            await_acks(shared, st, seq, peers, req, Then::Reply(r));
        }
        Op::Rmid { rshmid } => {
            let rshmid = st.table.resolve(rshmid);
            let Some(owner) = st.table.get(rshmid).map(|s| s.owner) else {
                return fail(
                    libc::EINVAL,
                    format!("rshmctl(rshmid={rshmid}, IPC_RMID): no such segment"),
                );
            };
            let r = Reply {
                rshmid,
                ..Reply::to(&req)
            };
            if owner == me {
                let (seq, peers) = mark_as_owner(shared, st, rshmid);
                return await_acks(shared, st, seq, peers, req, Then::Reply(r));
            }
            // Only the owner removes: forward the request and answer with the owner's ACK.
            let (seq, peers) = send_to(st, &Frame::Rmid { rshmid }, &[owner]);
            if peers.is_empty() {
                return fail(
                    libc::EHOSTUNREACH,
                    format!("rshmctl(rshmid={rshmid}, IPC_RMID): the owner {owner} is unreachable"),
                );
            }
            // Marked here at once (the owner's MARK would do it a moment later anyway).
            if let Some(seg) = st.table.get_mut(rshmid) {
                seg.marked = true;
            }
            await_acks(shared, st, seq, peers, req, Then::Forwarded(r, rshmid));
        }
        Op::Changed { rshmid } => {
            let Some(seg) = st.table.get_mut(rshmid) else {
                return fail(
                    libc::EINVAL,
                    format!("rshmChanged(rshmid={rshmid}): no such segment"),
                );
            };
            // The server reads the replica through its own attachment (the seed's addr): the
            // program wrote into the same physical pages through its own mapping. Only the
            // words that differ from the twin travel (see `diff`).
            let rshmid = seg.rshmid;
            let (stamp, runs) = match seg.local_change(me) {
                Ok(x) => x,
                Err(e) => {
                    return fail(errno_text(&e), format!("rshmChanged(rshmid={rshmid}): {e}"))
                }
            };
            let wire = update_len(&runs) as u64;
            seg.sent = wire;
            crate::trace!(
                "rshmChanged rshmid={rshmid}: {} run(s), {} changed bytes, {wire} bytes per peer",
                runs.len(),
                runs.iter().map(|r| r.data.len()).sum::<usize>()
            );
            let frame = Frame::Update {
                rshmid,
                version: stamp.version,
                origin: me,
                runs,
            };
            // Count the change (and wake local readers) and make the reply first, and write
            // the frames last: once they are written, a peer on this machine has been woken on
            // this very CPU, and waits for this thread to finish. (The caller has seen its own
            // change: the reply carries the count after it.)
            changed(shared, st, rshmid);
            let r = Reply {
                size: wire,
                ..seen_reply(st, &req, rshmid)
            };
            let (seq, peers) = broadcast(st, &frame);
            await_acks(shared, st, seq, peers, req, Then::Changed(r));
        }
        Op::Wait {
            rshmid,
            node,
            seen,
            timeout_ms,
        } => {
            // A count from another run of this server (or none) means nothing here: the
            // caller has seen nothing of this run's replica.
            let seen = if node == st.node_id { seen } else { 0 };
            let Some(seg) = st.table.get(rshmid) else {
                return fail(
                    libc::EIDRM,
                    format!("rshm_wait_changed(rshmid={rshmid}): no such segment (removed?)"),
                );
            };
            let rshmid = seg.rshmid;
            if seg.changes > seen {
                let r = seen_reply(st, &req, rshmid);
                return reply(shared, &req, &r);
            }
            if timeout_ms == 0 {
                // A program whose own wait on the gate ran out: is there really no change?
                return fail(libc::ETIMEDOUT, "no change within the timeout".into());
            }
            let timeout = Duration::from_millis(timeout_ms.min(24 * 3600 * 1000));
            st.waiters.push(Waiter {
                req,
                rshmid,
                seen,
                deadline: Instant::now() + timeout,
            });
        }
        Op::Ls => {
            let r = Reply {
                text: me.to_string(),
                entries: st.table.ls(),
                peers: st
                    .peers
                    .iter()
                    .map(|p| LsPeer {
                        addr: p.addr,
                        up: p.out.is_some() && p.synced,
                    })
                    .collect(),
                ..Reply::to(&req)
            };
            reply(shared, &req, &r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sweeper: time limits.

fn sweep_loop(shared: &Shared) {
    let mut drained = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(RSHM_SWEEP_INTERVAL);
        let removed = sweep_queue(shared, false);
        lock_drained(shared).add(removed);
        if drained.elapsed() >= RSHM_DRAIN_INTERVAL {
            let d = std::mem::take(&mut *lock_drained(shared));
            if d.unread + d.foreign > 0 {
                log!(
                    "queue: removed {} repl(ies) nobody took (within {} ms, or whose thread does not exist) and {} message(s) of types nobody serves (types {:?}{})",
                    d.unread,
                    RSHM_REPLY_UNREAD.as_millis(),
                    d.foreign,
                    d.types,
                    if d.types.len() == 5 { ", ..." } else { "" }
                );
            }
            correct_counts(shared, false);
            drained = Instant::now();
        } else {
            correct_counts(shared, true);
        }
        let now = Instant::now();
        let mut st = lock(shared);
        let late: Vec<u32> = st
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        let mut done = Vec::new();
        for seq in late {
            let mut p = st.pending.remove(&seq).expect("present");
            for peer in std::mem::take(&mut p.waiting) {
                p.failures.push(format!(
                    "peer {peer} did not acknowledge within {} ms",
                    RSHM_ACK_TIMEOUT.as_millis()
                ));
            }
            settle(&st, &mut p);
            done.push(p);
        }
        let mut timed_out = Vec::new();
        st.waiters.retain(|w| {
            let keep = w.deadline > now;
            if !keep {
                timed_out.push(w.req.clone());
            }
            keep
        });
        drop(st);
        for p in done {
            finish(shared, p);
        }
        for req in timed_out {
            reply(
                shared,
                &req,
                &Reply::error(&req, libc::ETIMEDOUT, "no change within the timeout"),
            );
        }
    }
}

/// Programs that died attached (SIGKILL: no rshmdt) leave the server's count too high, and a
/// marked segment would then never go. The server counts attaches per process
/// (`Segment::local`), so it corrects exactly: the attaches of a pid that is no longer
/// running are dropped, and the new count announced. Nothing else changes: a live program's
/// detach is its own and is counted when its DT comes, whatever the order of its `shmdt` and
/// its DT. (The kernel's `shm_nattch` cannot do this: it cannot tell a program that died from
/// one between its `shmdt` and its DT, nor one that attached but has not called `shmat` yet.)
///
/// With `only_marked`, only rows marked for removal are looked at: the sweeper does those
/// every sweep, so that a removed segment whose last user was killed goes at once, and the
/// rest once a second.
fn correct_counts(shared: &Shared, only_marked: bool) {
    let me = shared.me;
    let mut st = lock(shared);
    let ids: Vec<i32> = st
        .table
        .rows()
        .filter(|s| !s.local.is_empty() && (s.marked || !only_marked))
        .map(|s| s.rshmid)
        .collect();
    for rshmid in ids {
        let Some(seg) = st.table.get_mut(rshmid) else {
            continue;
        };
        let (dead, count) = seg.drop_dead(me, sys::process::alive);
        if dead.is_empty() {
            continue;
        }
        for (pid, n) in dead {
            log!("rshmid {rshmid}: pid {pid} died with {n} attach(es) and no rshmdt; count corrected to {count}");
        }
        broadcast(
            &mut st,
            &Frame::Count {
                rshmid,
                node: me,
                count,
            },
        );
        destroy_if_done(shared, &mut st, rshmid);
    }
}

// ---------------------------------------------------------------------------------------------
// TCP: reading frames.

/// Reads one whole frame. The header is checked before the body is allocated, so a peer can
/// never make us buffer more than [`crate::wire::rshm::MAX_BODY`] (see "What a frame costs"
/// in [`crate::wire::rshm`]).
///
/// The end of the stream between two frames is a close (`UnexpectedEof`); inside a frame it
/// is a truncated frame (`InvalidData`), which the caller logs.
fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<(u32, Frame)> {
    buf.resize(FRAME_HEADER_LEN, 0);
    match fill(s, &mut buf[..FRAME_HEADER_LEN])? {
        0 => return Err(io::ErrorKind::UnexpectedEof.into()),
        n if n < FRAME_HEADER_LEN => return Err(truncated(n, FRAME_HEADER_LEN)),
        _ => {}
    }
    let (_, len, _) = Frame::decode_header(buf)?;
    buf.resize(FRAME_HEADER_LEN + len, 0);
    let n = fill(s, &mut buf[FRAME_HEADER_LEN..])?;
    if n < len {
        return Err(truncated(FRAME_HEADER_LEN + n, FRAME_HEADER_LEN + len));
    }
    let (seq, frame, _) = Frame::decode(buf)?;
    Ok((seq, frame))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(s: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn truncated(got: usize, want: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("truncated frame: the stream ended after {got} of its {want} bytes"),
    )
}

/// A table from `from`, merged into ours: new rows get their replicas.
fn merge(shared: &Shared, from: SocketAddrV4, h: &Hello) {
    let mut st = lock(shared);
    // Each row as if announced by a NEW: a rename (a race for a key, met when a partition
    // heals) moves its waits here too.
    for e in &h.entries {
        if let Err(x) = adopt(&mut st, e) {
            log!("merging the table of {from}: rshmid {}: {x}", e.rshmid);
        }
    }
    st.table.hello_counts(from, &h.entries);
    // A peer that restarted has no attaches any more: a marked row may now be done with.
    for rshmid in st.table.destroyable() {
        destroy(shared, &mut st, rshmid);
    }
}

fn hello(shared: &Shared, st: &State) -> Hello {
    Hello {
        node: shared.me,
        node_id: st.node_id,
        entries: st.table.entries(),
    }
}

// ---------------------------------------------------------------------------------------------
// The dialer: our connection to one peer, carrying our requests.

fn dial_loop(shared: &Shared, peer: SocketAddrV4) {
    let mut backoff = RSHM_BACKOFF_MIN;
    let mut announced_down = false;
    // A peer that fails authentication is logged once, not at every retry.
    let mut announced_refused = false;
    while !shared.stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&SocketAddr::V4(peer), RSHM_CONNECT_TIMEOUT) {
            Ok(s) => {
                announced_down = false;
                let why = match talk_to(shared, peer, s) {
                    Ok(()) => "closed by the peer".to_string(),
                    Err(Refused(e)) => {
                        if !announced_refused {
                            log!("peer {peer}: {e}; not connecting (same --secret on both nodes?), retrying with backoff");
                            announced_refused = true;
                        }
                        crate::trace!("peer {peer}: {e}; next try in {} ms", backoff.as_millis());
                        sleep_unless_kicked(shared, peer, backoff);
                        backoff = (backoff * 2).min(RSHM_BACKOFF_MAX);
                        continue;
                    }
                    Err(Broken(e)) => e.to_string(),
                };
                announced_refused = false;
                backoff = RSHM_BACKOFF_MIN;
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                log!("lost peer {peer}: {why}");
                peer_down(shared, peer, &why);
            }
            Err(e) => {
                if !announced_down {
                    log!("peer {peer} is down ({e}); retrying with backoff, serving locally");
                    announced_down = true;
                }
                crate::trace!(
                    "connect {peer}: {e}; next try in {} ms",
                    backoff.as_millis()
                );
                sleep_unless_kicked(shared, peer, backoff);
                backoff = (backoff * 2).min(RSHM_BACKOFF_MAX);
            }
        }
    }
}

/// Waits out a backoff, in short slices, returning early if the peer dialled us meanwhile.
fn sleep_unless_kicked(shared: &Shared, peer: SocketAddrV4, pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(pause));
        let mut st = lock(shared);
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
            if std::mem::take(&mut p.kick) {
                return;
            }
        }
    }
}

/// How a connection we dialled ended: refused in the handshake (the peer does not know our
/// secret, or is not an rshm_server), or broken after it.
enum Ended {
    Refused(AuthError),
    Broken(io::Error),
}
use Ended::{Broken, Refused};

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Ended {
        Broken(e)
    }
}

/// One connection's life: authenticate, HELLO, merge the reply, then read ACKs until it breaks.
fn talk_to(shared: &Shared, peer: SocketAddrV4, mut s: TcpStream) -> Result<(), Ended> {
    // Updates are small and latency is the point: send each frame at once (no Nagle delay).
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(RSHM_WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(RSHM_HELLO_TIMEOUT))?;
    // First, both ends prove they know the secret; until then we send nothing but a nonce.
    auth::dial(&mut s, &shared.secret).map_err(Refused)?;
    crate::trace!("tcp -> {peer}: authenticated (both ways)");
    {
        // HELLO is written and the peer marked connected in one critical section: every
        // frame broadcast after this snapshot of the table follows it on the same stream, so
        // the peer misses no change.
        let mut st = lock(shared);
        let frame = Frame::Hello(hello(shared, &st));
        crate::trace!("tcp -> {peer} {frame}");
        s.write_all(&frame.encode(0))?;
        let writer = s.try_clone()?;
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
            p.out = Some(writer);
        }
    }
    // Buffered: a frame, or several ACKs, usually arrive in one read(2), not two per frame.
    let mut rd = BufReader::with_capacity(RSHM_READ_BUFFER, s.try_clone()?);
    let mut buf = Vec::new();
    match read_frame(&mut rd, &mut buf)? {
        (_, Frame::HelloReply(h)) if h.node == peer => {
            crate::trace!("tcp <- {peer} {}", Frame::HelloReply(h.clone()));
            merge(shared, peer, &h);
            // Then the contents: STATE frames for every row of that table (the last of each
            // row says so), merged word by word by stamp.
            let mut rows_done = 0;
            while rows_done < h.entries.len() {
                match read_frame(&mut rd, &mut buf)? {
                    (_, state @ Frame::State { .. }) => {
                        crate::trace!("tcp <- {peer} {state}");
                        let Frame::State { rshmid, last, runs } = state else {
                            unreachable!("matched above")
                        };
                        apply_state(shared, &mut lock(shared), rshmid, &runs);
                        rows_done += usize::from(last);
                    }
                    (_, other) => {
                        return Err(Broken(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("expected STATE from {peer}, got {other}"),
                        )))
                    }
                }
            }
            if let Some(p) = lock(shared).peers.iter_mut().find(|p| p.addr == peer) {
                p.synced = true;
            }
            log!(
                "connected to peer {peer} (id {:08x}, {} segment(s))",
                h.node_id,
                h.entries.len()
            );
        }
        (_, other) => {
            return Err(Broken(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected HELLO_REPLY from {peer}, got {other}"),
            )))
        }
    }
    s.set_read_timeout(None)?;
    loop {
        let (seq, frame) = read_frame(&mut rd, &mut buf)?;
        crate::trace!("tcp <- {peer} #{seq} {frame}");
        match frame {
            Frame::Ack {
                status,
                text,
                winner,
            } => on_ack(shared, peer, seq, (status, text, winner)),
            other => {
                return Err(Broken(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected {other} on our own connection"),
                )))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The acceptor and inbound connections: the peers' requests.

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let s = match conn {
            Ok(s) => s,
            Err(e) => {
                log!("accept: {e}");
                continue;
            }
        };
        let from = match s.peer_addr() {
            Ok(SocketAddr::V4(a)) => a,
            _ => continue,
        };
        let known_ip = lock(shared).peers.iter().any(|p| p.addr.ip() == from.ip());
        if !known_ip {
            log!("refused connection from {from}: not a configured peer");
            continue;
        }
        if shared.handshakes.fetch_add(1, Ordering::SeqCst) >= RSHM_MAX_HANDSHAKES {
            shared.handshakes.fetch_sub(1, Ordering::SeqCst);
            log!("refused connection from {from}: {RSHM_MAX_HANDSHAKES} others are still authenticating");
            continue;
        }
        let shared = shared.clone();
        std::thread::spawn(move || {
            let slot = Handshake(&shared.handshakes);
            if let Err(e) = serve_peer(&shared, s, from, slot) {
                if !shared.stop.load(Ordering::Relaxed) {
                    log!("connection from {from} closed: {e}");
                }
            }
        });
    }
}

/// One place among the [`RSHM_MAX_HANDSHAKES`], given back when dropped (however the
/// handshake ends).
struct Handshake<'a>(&'a AtomicUsize);

impl Drop for Handshake<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A peer's connection: the handshake, its HELLO, then its requests, each applied and
/// acknowledged in order.
fn serve_peer(
    shared: &Shared,
    mut s: TcpStream,
    from: SocketAddrV4,
    slot: Handshake<'_>,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(RSHM_WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(RSHM_HELLO_TIMEOUT))?;
    // Before anything else: the caller proves it knows the secret. One that does not gets our
    // nonce and a MAC it cannot use, one log line, and a closed connection: no table, no
    // contents, and nothing it sends is read as a frame.
    let proved = auth::accept(&mut s, &shared.secret);
    drop(slot);
    if let Err(e) = proved {
        log!("refused connection from {from}: {e}");
        return Ok(());
    }
    crate::trace!("tcp <- {from}: authenticated (both ways)");
    let mut rd = BufReader::with_capacity(RSHM_READ_BUFFER, s.try_clone()?);
    let mut buf = Vec::new();
    let first = match read_frame(&mut rd, &mut buf) {
        Ok(f) => f,
        Err(e) => {
            log!("refused connection from {from}: no HELLO ({e})");
            return Ok(());
        }
    };
    let peer = match first {
        (_, Frame::Hello(h)) => {
            // The peer names itself by its listen address; believe it only if that address is
            // configured here and the connection really comes from its IP.
            let configured = lock(shared).peers.iter().any(|p| p.addr == h.node);
            if !configured || h.node.ip() != from.ip() {
                log!(
                    "refused connection from {from}: {} is not a configured peer",
                    h.node
                );
                return Ok(());
            }
            crate::trace!("tcp <- {} {}", h.node, Frame::Hello(h.clone()));
            merge(shared, h.node, &h);
            let mut st = lock(shared);
            if let Some(p) = st.peers.iter_mut().find(|p| p.addr == h.node) {
                p.kick = p.out.is_none();
            }
            let answer = Frame::HelloReply(hello(shared, &st));
            crate::trace!("tcp -> {} {answer}", h.node);
            // The table, then every row's contents (the twin: what was last published, and
            // the stamp it carries), in one critical section, so no update slips between.
            let mut out = answer.encode(0);
            for seg in st.table.rows() {
                for state in state_frames(seg.rshmid, seg.state_runs()) {
                    crate::trace!("tcp -> {} {state}", h.node);
                    out.extend_from_slice(&state.encode(0));
                }
            }
            s.write_all(&out)?;
            h.node
        }
        (_, other) => {
            log!("refused connection from {from}: it sent {other} before HELLO");
            return Ok(());
        }
    };
    s.set_read_timeout(None)?;
    loop {
        let (seq, frame) = match read_frame(&mut rd, &mut buf) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => {
                log!("peer {peer}: {e}; dropping its connection");
                return Err(e);
            }
        };
        crate::trace!("tcp <- {peer} #{seq} {frame}");
        if matches!(frame, Frame::Bye) {
            log!("peer {peer} left the group");
            let mut st = lock(shared);
            for rshmid in st.table.forget_node(peer) {
                destroy(shared, &mut st, rshmid);
            }
            return Ok(());
        }
        let ((status, text, winner), written) = apply(shared, peer, frame);
        let ack = Frame::Ack {
            status,
            text,
            winner,
        };
        crate::trace!("tcp -> {peer} #{seq} {ack}");
        s.write_all(&ack.encode(seq))?;
        // The ACK first, then the local readers: the writer on the other node is waiting for
        // the ACK, while a reader's wake-up costs nobody else anything. When that node runs on
        // this machine (a lab, the tests), writing the ACK woke its thread *on this CPU*: a
        // socket's wake-up tells the scheduler that the writer is about to sleep, so the woken
        // thread waits here for us. We are not about to sleep (the readers' wake-up comes
        // next), so we step aside first (sched_yield), and the writer's reply goes out ~4 us
        // sooner. Across machines the yield finds nobody waiting and returns at once.
        if let Some(rshmid) = written {
            std::thread::yield_now();
            changed(shared, &mut lock(shared), rshmid);
        }
    }
}

/// A STATE from a peer: merged word by word, newer stamps winning (see [`Table`]).
fn apply_state(shared: &Shared, st: &mut State, rshmid: i32, runs: &[StampedRun]) {
    let Some(seg) = st.table.get_mut(rshmid) else {
        return; // a row we could not make (table full), or destroyed meanwhile
    };
    let rshmid = seg.rshmid;
    let before = seg.stamp;
    match seg.apply_state(runs) {
        Ok(n) => {
            crate::trace!("rshmid {rshmid}: state merged, {n} bytes newer than ours");
            if n > 0 || seg.stamp != before {
                changed(shared, st, rshmid);
            }
        }
        Err(e) => log!("rshmid {rshmid}: state refused: {e}"),
    }
}

/// A row's STATE runs, cut into frames whose bodies fit [`MAX_BODY`] and hold at most
/// `RSHM_MAX_RUNS` runs; the last says so.
fn state_frames(rshmid: i32, runs: Vec<StampedRun>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut len = STATE_FIXED_LEN;
    for r in runs {
        let cost = STATE_RUN_HEADER_LEN + r.run.data.len();
        if !chunk.is_empty() && (len + cost > MAX_BODY || chunk.len() == RSHM_MAX_RUNS) {
            frames.push(Frame::State {
                rshmid,
                last: false,
                runs: std::mem::take(&mut chunk),
            });
            len = STATE_FIXED_LEN;
        }
        len += cost;
        chunk.push(r);
    }
    frames.push(Frame::State {
        rshmid,
        last: true,
        runs: chunk,
    });
    frames
}

/// One request from a peer, applied to our table: `(0, "", None)` or an errno and why; and,
/// for a NEW that lost a race for its key, the row that won. Then, for an UPDATE that wrote
/// into a replica, its rshmid: the caller counts the change once the ACK is on its way.
fn apply(
    shared: &Shared,
    peer: SocketAddrV4,
    frame: Frame,
) -> ((i32, String, Option<Entry>), Option<i32>) {
    let mut st = lock(shared);
    match frame {
        Frame::Update {
            rshmid,
            version,
            origin,
            runs,
        } => apply_update(
            shared,
            &mut st,
            peer,
            rshmid,
            Stamp { version, origin },
            &runs,
        ),
        other => (apply_one(shared, &mut st, peer, other), None),
    }
}

/// A peer's UPDATE, into our replica.
fn apply_update(
    shared: &Shared,
    st: &mut State,
    peer: SocketAddrV4,
    rshmid: i32,
    stamp: Stamp,
    runs: &[Run],
) -> ((i32, String, Option<Entry>), Option<i32>) {
    // A node sends only its own changes: any other origin is a forgery or a bug.
    if stamp.origin != peer {
        let why = format!("update from {peer} claims to come from {}", stamp.origin);
        return ((libc::EPROTO, why, None), None);
    }
    let Some(seg) = st.table.get_mut(rshmid) else {
        let why = format!("no segment with rshmid {rshmid} here");
        return ((libc::EINVAL, why, None), None);
    };
    // Word by word, only where the update is newer: a late or repeated update is
    // acknowledged but never overwrites newer data. (Lab exercise: see what happens
    // without this rule, with RSHM_UNORDERED=1 and `Segment::apply_unordered`.)
    let applied = if shared.unordered {
        seg.apply_unordered(stamp, runs)
    } else {
        seg.apply_update(stamp, runs)
    };
    match applied {
        Ok(n) => {
            let total: usize = runs.iter().map(|r| r.data.len()).sum();
            if n < total {
                crate::trace!(
                    "rshmid {}: update {stamp}: {} of {total} bytes were older than ours, kept ours",
                    seg.rshmid,
                    total - n
                );
            }
            ((0, String::new(), None), (n > 0).then_some(seg.rshmid))
        }
        Err(e) => {
            // Refused whole (a run outside the segment, a version past the limit): nothing
            // was written, the peer hears why in the ACK, and we keep serving.
            log!("peer {peer}: UPDATE of rshmid {rshmid} refused: {e}");
            ((errno_text(&e), e.to_string(), None), None)
        }
    }
}

/// Any other request from a peer.
fn apply_one(
    shared: &Shared,
    st: &mut State,
    peer: SocketAddrV4,
    frame: Frame,
) -> (i32, String, Option<Entry>) {
    let unknown = |rshmid: i32| {
        (
            libc::EINVAL,
            format!("no segment with rshmid {rshmid} here"),
            None,
        )
    };
    let ok = (0, String::new(), None);
    match frame {
        Frame::New(e) => match adopt(st, &e) {
            Ok(winner) => (0, String::new(), winner),
            Err(x) => (errno_text(&x), x.to_string(), None),
        },
        Frame::Count {
            rshmid,
            node,
            count,
        } => {
            if !st.table.set_count(rshmid, node, count) {
                return unknown(rshmid);
            }
            let rshmid = st.table.resolve(rshmid);
            destroy_if_done(shared, st, rshmid);
            ok
        }
        Frame::Rmid { rshmid } => match st.table.get(rshmid).map(|s| (s.rshmid, s.owner)) {
            None => unknown(rshmid),
            Some((rshmid, owner)) if owner != shared.me => (
                libc::EPERM,
                format!("{} is not the owner of rshmid {rshmid}", shared.me),
                None,
            ),
            Some((rshmid, _)) => {
                log!("rshmid {rshmid}: removal requested by {peer}");
                mark_as_owner(shared, st, rshmid);
                ok
            }
        },
        Frame::Mark { rshmid } => match st.table.get_mut(rshmid) {
            Some(seg) => {
                seg.marked = true;
                ok
            }
            None => unknown(rshmid),
        },
        Frame::Destroy { rshmid } => {
            let rshmid = st.table.resolve(rshmid);
            removed(shared, st, rshmid);
            ok
        }
        other => (libc::EPROTO, format!("unexpected {other}"), None),
    }
}

//! The acceptor thread, and one inbound thread per accepted connection: the *peer's*
//! requests, each applied and acknowledged in order.
//!
//! # Rules
//! - Only a configured peer's IP gets a thread, and at most `RSHM_MAX_HANDSHAKES` are in
//!   their handshake at once ([`Handshake`]).
//! - The caller proves it knows the cluster secret before anything else
//!   ([`crate::rshm::auth`]; before that, nothing is sent but a nonce and a MAC), then HELLO
//!   ([`super::hello::answer`]).
//! - Then every frame is applied under the state lock by the remote role of its call
//!   ([`apply`] only routes) and answered with an ACK carrying its seq. A frame that is
//!   garbage, too long or cut short drops the connection, logged.

use super::hello;
use super::peers::read_frame;
use super::rshmctl::destroy;
use super::state::{lock, Shared};
use super::wait::changed;
use super::{rshm_changed, rshmat, rshmctl, rshmget};
use crate::params::{
    RSHM_HELLO_TIMEOUT, RSHM_MAX_HANDSHAKES, RSHM_READ_BUFFER, RSHM_REFUSAL_LOG_EVERY,
    RSHM_WRITE_TIMEOUT,
};
use crate::rshm::auth;
use crate::rshm::table::Stamp;
use crate::wire::rshm::{Entry, Frame};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
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
            refused(shared, from, "not a configured peer");
            continue;
        }
        if shared.handshakes.fetch_add(1, Ordering::SeqCst) >= RSHM_MAX_HANDSHAKES {
            shared.handshakes.fetch_sub(1, Ordering::SeqCst);
            refused(
                shared,
                from,
                &format!("{RSHM_MAX_HANDSHAKES} others are still authenticating"),
            );
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

/// Logs a refused connection, at most once per [`RSHM_REFUSAL_LOG_EVERY`] per address and
/// reason: a stranger that retries for ever gets a line now and then, with the count of the
/// others; a new reason is logged at once.
pub(super) fn refused(shared: &Shared, from: SocketAddrV4, why: &str) {
    let mut seen = shared
        .refusals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.len() > 64 {
        seen.clear(); // bounded: forget them all rather than grow
    }
    let now = Instant::now();
    let (last, quiet) = seen
        .entry((*from.ip(), why.to_string()))
        .or_insert((None, 0));
    if last.is_some_and(|t| now.duration_since(t) < RSHM_REFUSAL_LOG_EVERY) {
        *quiet += 1;
        return;
    }
    let more = match std::mem::take(quiet) {
        0 => String::new(),
        n => format!(" ({n} more like it from {} not logged since)", from.ip()),
    };
    *last = Some(now);
    log!("refused connection from {from}: {why}{more}");
}

/// One place among the [`RSHM_MAX_HANDSHAKES`], given back when dropped (however the
/// handshake ends).
pub(super) struct Handshake<'a>(&'a AtomicUsize);

impl Drop for Handshake<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A peer's connection: the handshake, its HELLO, then its requests, each applied and
/// acknowledged in order.
pub(super) fn serve_peer(
    shared: &Shared,
    mut s: TcpStream,
    from: SocketAddrV4,
    slot: Handshake<'_>,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(RSHM_WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(RSHM_HELLO_TIMEOUT))?;
    // Before anything else: the caller proves it knows the secret, and that it dialled this
    // node. One that does not gets at most our nonce and a MAC it cannot use, one log line,
    // and a closed connection: no table, no contents, and nothing it sends is read as a frame.
    let proved = auth::accept(&mut s, &shared.secret, shared.me);
    drop(slot);
    let dialer = match proved {
        Ok(name) => name,
        Err(e) => {
            refused(shared, from, &e.to_string());
            return Ok(());
        }
    };
    crate::trace!("tcp <- {from}: authenticated (both ways) as {dialer}");
    let mut rd = BufReader::with_capacity(RSHM_READ_BUFFER, s.try_clone()?);
    let mut buf = Vec::new();
    let Some(peer) = hello::answer(shared, (from, dialer), &mut s, &mut rd, &mut buf)? else {
        return Ok(());
    };
    s.set_read_timeout(None)?;
    // The parts of a large change this peer is sending, until its last (one at a time).
    let mut parts = rshm_changed::Parts::default();
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
        // A part of a large change is kept, not answered: the change's last part is.
        let Some(((status, text, winner), written)) = apply(shared, peer, &mut parts, frame) else {
            continue;
        };
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

/// One request from a peer, under the lock: routed to its call's remote-server role, one
/// function per frame. Returns `(0, "", None)` or an errno and why; and, for a NEW that lost
/// a race for its key, the row that won. Then, for an UPDATE that wrote into a replica, its
/// rshmid: the caller counts the change once the ACK is on its way. `None` for a part of a
/// large change that is not its last: kept in `parts`, answered with the last.
fn apply(
    shared: &Shared,
    peer: SocketAddrV4,
    parts: &mut rshm_changed::Parts,
    frame: Frame,
) -> rshm_changed::Outcome {
    let mut st = lock(shared);
    let st = &mut *st;
    let answer = match frame {
        Frame::Update {
            rshmid,
            version,
            origin,
            part,
            more,
            runs,
        } => {
            let stamp = Stamp { version, origin };
            let change = (rshmid, stamp);
            return rshm_changed::remote_part(shared, st, peer, parts, change, part, more, runs);
        }
        Frame::New(e) => rshmget::remote(st, peer, &e),
        Frame::Count {
            rshmid,
            node,
            count,
        } => rshmat::remote(shared, st, (rshmid, node, count)),
        Frame::Rmid { rshmid } => rshmctl::remote_rmid(shared, st, peer, rshmid),
        Frame::Mark { rshmid } => rshmctl::remote_mark(st, rshmid),
        Frame::Destroy { rshmid } => rshmctl::remote_destroy(shared, st, rshmid),
        other => (libc::EPROTO, format!("unexpected {other}"), None),
    };
    Some((answer, None))
}

/// The ACK of a frame about a segment we do not have.
pub(super) fn unknown(rshmid: i32) -> (i32, String, Option<Entry>) {
    (
        libc::EINVAL,
        format!("no segment with rshmid {rshmid} here"),
        None,
    )
}

//! The queue thread: requests from local programs, one at a time, and their replies.
//!
//! # Rules
//! - The thread blocks in `msgrcv(type 1)`, then handles one request under the state lock:
//!   [`handle`] only routes it to the file of its call ([`super::rshmget`], [`super::rshmat`],
//!   [`super::rshmdt`], [`super::rshmctl`], [`super::rshm_changed`], [`super::wait`]).
//! - A call that needs the peers sends its frame and leaves a `Pending` behind
//!   ([`super::peers::await_acks`]); it never waits, so one slow peer never stalls the others.
//! - A reply never blocks ([`reply`]): a full queue is swept, and requests are moved into a
//!   bounded backlog that this thread serves before reading the queue again.
//! - The bytes of a request and a reply: [`crate::wire::rshm::Request`], [`Reply`].

use super::state::{lock, Shared, State};
use super::sweeper::{lock_drained, sweep_queue, thread_exists};
use super::{rshm_changed, rshmat, rshmctl, rshmdt, rshmget, wait};
use crate::params::{
    RSHM_BACKLOG, RSHM_DRAIN_INTERVAL, RSHM_LS_PAGE, RSHM_REPLY_ROOM_WAIT, RSHM_TRACKED_REPLIES,
};
use crate::rshm::table::Segment;
use crate::rshm::RSHM_REQUEST_TYPE;
use crate::sys;
use crate::wire::rshm::{LsPeer, Op, Reply, Request};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

pub(super) fn queue_loop(shared: &Shared) {
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

/// One request, under the lock: routed to its call's local-server role, one function per call.
pub(super) fn handle(shared: &Shared, st: &mut State, req: Request) {
    match req.op {
        Op::Get { key, size } => rshmget::local(shared, st, req, key, size),
        Op::At { rshmid } => rshmat::local(shared, st, req, rshmid),
        Op::Dt { rshmid } => rshmdt::local(shared, st, req, rshmid),
        Op::Rmid { rshmid } => rshmctl::local(shared, st, req, rshmid),
        Op::Changed { rshmid } => rshm_changed::local(shared, st, req, rshmid, None),
        Op::ChangedRange {
            rshmid,
            offset,
            len,
        } => rshm_changed::local(shared, st, req, rshmid, Some((offset, len))),
        Op::Wait {
            rshmid,
            node,
            seen,
            timeout_ms,
        } => wait::local(shared, st, req, rshmid, (node, seen), timeout_ms),
        Op::Ls { after } => ls(shared, st, req, after),
    }
}

/// Answers `req` with an error: `errno` and why.
pub(super) fn fail(shared: &Shared, req: &Request, errno: i32, text: String) {
    reply(shared, req, &Reply::error(req, errno, text));
}

/// The row a program's call names; if there is none, the call is answered with EINVAL, "no
/// such segment", and the caller returns. `call` names it in the error, as the program wrote
/// it: `rshmat(rshmid=5)`.
pub(super) fn row<'a>(
    shared: &Shared,
    st: &'a mut State,
    req: &Request,
    rshmid: i32,
    call: &str,
) -> Option<&'a mut Segment> {
    let seg = st.table.get_mut(rshmid);
    if seg.is_none() {
        fail(
            shared,
            req,
            libc::EINVAL,
            format!("{call}: no such segment"),
        );
    }
    seg
}

/// `client ls`: one page of our table (the rows after `after`), and which peers are up
/// (connected and synced by HELLO).
fn ls(shared: &Shared, st: &mut State, req: Request, after: i32) {
    let (entries, more) = st.table.ls(after, RSHM_LS_PAGE);
    let r = Reply {
        text: shared.me.to_string(),
        entries,
        more,
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

/// Sends a program its reply, without ever blocking (a dead program's queue may be full).
pub(super) fn reply(shared: &Shared, req: &Request, r: &Reply) {
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
pub(super) struct Sent {
    pub(super) mtype: i64,
    pub(super) pid: i32,
    pub(super) at: Instant,
}

pub(super) fn lock_sent(shared: &Shared) -> MutexGuard<'_, VecDeque<Sent>> {
    shared.sent.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// Set in the queue thread: the one that may move requests into the backlog.
    static IS_QUEUE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(super) fn lock_backlog(shared: &Shared) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
    shared.backlog.lock().unwrap_or_else(|p| p.into_inner())
}

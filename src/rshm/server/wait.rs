//! `rshm_wait_changed(rshmid, timeout)` (beyond the seed), and where every change of a
//! replica is counted.
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshm_wait_changed`]) sleeps on the
//!    segment's change gate ([`crate::rshm::gate`]) and sends `Op::Wait` only when it has no
//!    gate, or its gate was retired.
//! 2. **The local server** ([`local`]): answers at once if the replica changed since what the
//!    caller saw; else leaves a `Waiter`, answered by [`answer_waits`] or failed by the
//!    sweeper at its deadline.
//! 3. No remote role: a wait is local.
//!
//! # Rules
//! - Every change of a replica goes through [`changed`], which counts it on the segment's
//!   gate (that wakes the sleepers) and answers the queued waits, in one critical section.
//! - A removed or renamed row retires its gate ([`retire_gate`]): sleepers wake and ask again.
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::Wait`, and the [`Reply`]'s `node`, `changes`, `gate`.

use super::queue::{self, reply};
use super::state::{Shared, State, Waiter};
use crate::wire::rshm::{Reply, Request};
use std::time::{Duration, Instant};

/// The local server's `rshm_wait_changed`: answer now if the replica changed since what the
/// caller saw (`seen`, counted by the server run `node`), else leave a `Waiter`.
pub(super) fn local(
    shared: &Shared,
    st: &mut State,
    req: Request,
    rshmid: i32,
    (node, seen): (u32, u64),
    timeout_ms: u64,
) {
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
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

/// The replica of `rshmid` changed here: count the change, on its gate too (in one critical
/// section, so that a reply never names a count its gate has not reached), and answer the
/// queued waits it satisfies.
pub(super) fn changed(shared: &Shared, st: &mut State, rshmid: i32) {
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
pub(super) fn seen_reply(st: &mut State, req: &Request, rshmid: i32) -> Reply {
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
pub(super) fn answer_waits(shared: &Shared, st: &mut State, rshmid: i32) {
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

pub(super) fn retire_gate(st: &mut State, rshmid: i32) {
    if let Err(e) = st.gates.retire(rshmid) {
        log!("rshmid {rshmid}: retiring its change gate: {e}");
    }
}

//! `rshmChanged(rshmid)`: publish this node's writes to every other node; a release point.
//!
//! The seed: "API: After completing the write operation, the application calls
//! rshmChanged(). It prepares a message with appropriate contents and send to local TCP
//! server. TCP Server: The server reads the data from shared memory and sends to all other
//! nodes to update their local shared memory segments. Remote TCP Server: Update the local
//! shared memory corresponding to rshmid received."
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshm_changed`]) sends `Op::Changed` and
//!    gets the new version (and, [`crate::rshm::api::Node::rshm_changed_wire`], the bytes it
//!    cost per peer); or, having written only `[offset, offset + len)`,
//!    ([`crate::rshm::api::Node::rshm_changed_range`]) sends `Op::ChangedRange`.
//! 2. **The local server** ([`local`]): reads the replica through its own attachment (the
//!    seed's `addr`), diffs it against the twin ([`crate::rshm::diff`]) over the whole segment
//!    or the range only, stamps the runs (`Segment::local_change`, `local_change_range`),
//!    counts the change, and sends UPDATE to every peer. The reply waits for every connected
//!    peer's ACK, or names those that did not answer.
//! 3. **The remote servers** ([`remote`]): write the runs into their replica word by word,
//!    only where the update's stamp is newer (`Segment::apply_update`), ACK, then count the
//!    change, waking their readers.
//!
//! The rules (the stamp order, per-word merging, release consistency) are stated once, in
//! [`crate::rshm`], "Consistency model".
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::Changed`, `Op::ChangedRange`, the [`Reply`] (`version`, `size` = UPDATE bytes),
//! `Frame::Update { rshmid, version, origin, runs }` ([`Run`]) and `Frame::Ack`.

use super::errno_text;
use super::peers::{await_acks, broadcast};
use super::queue;
use super::state::{Shared, State, Then};
use super::wait::{changed, seen_reply};
use crate::rshm::table::Stamp;
use crate::wire::rshm::{update_len, Entry, Frame, Reply, Request, Run};
use std::net::SocketAddrV4;

/// The local server's `rshmChanged` (`range` None) or `rshmChanged_range` (`range` the
/// offset and length): diff the replica against its twin, over the whole segment or the
/// range only, stamp it, count the change, and send the UPDATE; the reply waits for every
/// peer's ACK.
pub(super) fn local(
    shared: &Shared,
    st: &mut State,
    req: Request,
    rshmid: i32,
    range: Option<(u64, u64)>,
) {
    let me = shared.me;
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
    let call = match range {
        None => format!("rshmChanged(rshmid={rshmid})"),
        Some((offset, len)) => {
            format!("rshmChanged_range(rshmid={rshmid}, offset={offset}, len={len})")
        }
    };
    let Some(seg) = st.table.get_mut(rshmid) else {
        return fail(libc::EINVAL, format!("{call}: no such segment"));
    };
    // The server reads the replica through its own attachment (the seed's addr): the
    // program wrote into the same physical pages through its own mapping. Only the
    // words that differ from the twin travel (see `diff`).
    let rshmid = seg.rshmid;
    let found = match range {
        None => seg.local_change(me),
        Some((offset, len)) => seg.local_change_range(me, offset, len),
    };
    let (stamp, runs) = match found {
        Ok(x) => x,
        Err(e) => return fail(errno_text(&e), format!("{call}: {e}")),
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

/// A remote server's `rshmChanged`: a peer's UPDATE, into our replica, word by word where
/// its stamp is newer. Returns the ACK, and the rshmid if the replica changed.
pub(super) fn remote(
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

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
//!    counts the change, and sends UPDATE to every peer: one frame, or for a change of more
//!    than `RSHM_MAX_FRAME_DATA` bytes several bounded frames, parts of one change with one
//!    seq ([`crate::wire::rshm::update_frames`]). The reply waits for every connected peer's
//!    ACK (longer for a large change), or names those that did not answer.
//! 3. **The remote servers** ([`remote_part`], [`remote`]): keep the parts of a large change
//!    until its last (checked as they come: the same change, the next part, runs ascending
//!    and inside the segment), then write all the runs into their replica word by word, only
//!    where the update's stamp is newer (`Segment::apply_update`), under one hold of the
//!    state lock; ACK once; then count the change once, waking their readers. A reader woken
//!    by the change therefore never sees half of it.
//!
//! The rules (the stamp order, per-word merging, release consistency) are stated once, in
//! [`crate::rshm`], "Consistency model".
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::Changed`, `Op::ChangedRange`, the [`Reply`] (`version`, `size` = UPDATE bytes),
//! `Frame::Update { rshmid, version, origin, part, more, runs }` ([`Run`]) and `Frame::Ack`;
//! "Large changes: several frames, one change" there.

use super::errno_text;
use super::peers::{await_acks_sized, broadcast_parts};
use super::queue;
use super::state::{Shared, State, Then};
use super::wait::{changed, seen_reply};
use crate::params::{RSHM_MAX_FRAME_DATA, RSHM_MAX_RUNS};
use crate::rshm::table::Stamp;
use crate::sys;
use crate::wire::rshm::{update_parts, Entry, Reply, Request, Run};
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
    let Some(seg) = queue::row(shared, st, &req, rshmid, &call) else {
        return;
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
        Err(e) => return fail(errno_text(&e), format!("{call}: {}", sys::message(&e))),
    };
    // A large change travels as several bounded frames (`update_parts`: at most
    // RSHM_MAX_FRAME_DATA run bytes each, long runs cut, nothing copied), all with one seq;
    // each peer applies them as one change when the last arrives, and ACKs once.
    let changed_bytes: usize = runs.iter().map(|r| r.data.len()).sum();
    let parts = update_parts(&runs);
    let wire: u64 = parts.iter().map(|p| p.len() as u64).sum();
    seg.sent = wire;
    crate::trace!(
        "rshmChanged rshmid={rshmid}: {} run(s), {changed_bytes} changed bytes, {} frame(s), {wire} bytes per peer",
        runs.len(),
        parts.len()
    );
    // Count the change (and wake local readers) and make the reply first, and write
    // the frames last: once they are written, a peer on this machine has been woken on
    // this very CPU, and waits for this thread to finish. (The caller has seen its own
    // change: the reply carries the count after it.)
    changed(shared, st, rshmid);
    let r = Reply {
        size: wire,
        ..seen_reply(st, &req, rshmid)
    };
    let (seq, peers) = broadcast_parts(st, (rshmid, stamp), &parts);
    await_acks_sized(shared, st, (seq, wire), peers, req, Then::Changed(r));
}

/// The parts of one large change that one peer is sending us, kept until its last frame
/// (one per connection: TCP keeps a connection's frames in order, and a peer sends one
/// change at a time).
#[derive(Default)]
pub(super) struct Parts {
    cur: Option<Partial>,
    /// A change refused part-way: its later parts are dropped quietly (the ACK went out).
    refused: Option<(i32, Stamp)>,
}

struct Partial {
    rshmid: i32,
    stamp: Stamp,
    /// The part expected next.
    next: u32,
    runs: Vec<Run>,
    /// Where the last run ended: the next must start at or after it.
    end: u64,
}

/// What one UPDATE frame came to: nothing yet (a part, kept), or the ACK to send and, if
/// the replica changed, its rshmid.
pub(super) type Outcome = Option<((i32, String, Option<Entry>), Option<i32>)>;

/// One UPDATE frame from `peer`: a whole change (part 0, no more), or one part of a large one.
/// Parts are checked as they come (same change, next part, runs ascending and inside the
/// segment, a bounded number of runs) and applied together, by [`remote`], at the last: so
/// what a peer can make us keep is at most one segment's bytes, plus run headers.
#[allow(clippy::too_many_arguments)]
pub(super) fn remote_part(
    shared: &Shared,
    st: &mut State,
    peer: SocketAddrV4,
    parts: &mut Parts,
    (rshmid, stamp): (i32, Stamp),
    part: u32,
    more: bool,
    runs: Vec<Run>,
) -> Outcome {
    if part == 0 {
        parts.refused = None;
        if let Some(p) = parts.cur.take() {
            log!(
                "peer {peer}: update {} of rshmid {} abandoned after {} part(s)",
                p.stamp,
                p.rshmid,
                p.next
            );
        }
        if !more {
            return Some(remote(shared, st, peer, rshmid, stamp, &runs));
        }
    } else if parts.refused == Some((rshmid, stamp)) {
        return None;
    }
    match take_part(st, peer, parts, (rshmid, stamp), part, runs) {
        Err(why) => {
            log!("peer {peer}: UPDATE of rshmid {rshmid} refused: {why}");
            parts.cur = None;
            parts.refused = Some((rshmid, stamp));
            Some(((libc::EINVAL, why, None), None))
        }
        Ok(()) if more => None,
        Ok(()) => {
            let p = parts.cur.take()?;
            Some(remote(shared, st, peer, p.rshmid, p.stamp, &p.runs))
        }
    }
}

/// Adds one part to the change being put together, or says why it does not belong to it.
fn take_part(
    st: &State,
    peer: SocketAddrV4,
    parts: &mut Parts,
    (rshmid, stamp): (i32, Stamp),
    part: u32,
    runs: Vec<Run>,
) -> Result<(), String> {
    if stamp.origin != peer {
        return Err(format!(
            "update from {peer} claims to come from {}",
            stamp.origin
        ));
    }
    if parts.cur.is_none() && part > 0 {
        return Err(format!(
            "part {part} of update {stamp} of rshmid {rshmid}, but no change is being \
             received from {peer} (its first part never came)"
        ));
    }
    let p = parts.cur.get_or_insert_with(|| Partial {
        rshmid,
        stamp,
        next: 0,
        runs: Vec::new(),
        end: 0,
    });
    if (p.rshmid, p.stamp, p.next) != (rshmid, stamp, part) {
        return Err(format!(
            "part {part} of update {stamp} of rshmid {rshmid} does not continue the change \
             being received (expected part {} of update {} of rshmid {})",
            p.next, p.stamp, p.rshmid
        ));
    }
    let Some(size) = st.table.get(rshmid).map(|s| s.size as u64) else {
        return Err(format!("no segment with rshmid {rshmid} here"));
    };
    // The runs of all parts: ascending across frames and inside the segment, so their bytes
    // add up to at most its size; and no more runs than a sender makes (RSHM_MAX_RUNS, plus
    // one cut per frame).
    let most = RSHM_MAX_RUNS + (size as usize).div_ceil(RSHM_MAX_FRAME_DATA) + 1;
    if p.runs.len() + runs.len() > most {
        return Err(format!("a change of more than {most} runs"));
    }
    for r in runs {
        let end = r.offset.saturating_add(r.data.len() as u64);
        if r.offset < p.end || end > size {
            return Err(format!(
                "part {part}: run of {} bytes at {} overlaps the runs before it or lies \
                 outside the segment of {size} bytes",
                r.data.len(),
                r.offset
            ));
        }
        p.end = end;
        p.runs.push(r);
    }
    p.next += 1;
    Ok(())
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
            ((errno_text(&e), sys::message(&e), None), None)
        }
    }
}

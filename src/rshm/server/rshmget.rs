//! `rshmget(key, size)`: find the segment with this key anywhere in the group, or create it.
//!
//! The seed: "API: it prepares a message with appropriate contents and send to local TCP
//! server. TCP Server: It checks the key. If it already exists it returns the rshmid
//! otherwise, it creates shared memory locally and stores the shmid. Generates the rshmid, a
//! random number, and sends a message to other nodes about the new shared memory creation.
//! Returns the rshmid. This node becomes the owner of the shared memory."
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshmget`], C: `rshmget` in `src/ffi/rshm.rs`)
//!    sends `Op::Get { key, size }` and waits for the reply.
//! 2. **The local server** ([`local`]): a known key answers at once; a new one makes a row
//!    and its replica ([`crate::rshm::table::Table::create`]), sends NEW to every peer and
//!    answers once they acknowledged.
//! 3. **The remote servers** ([`remote`]): adopt the row ([`adopt`]); two rows for one key keep
//!    the lower rshmid, and the ACK names the winner to the loser's creator.
//!
//! # Format
//! In [`crate::wire::rshm`]: the request `Op::Get` ("Queue request"), the [`Reply`] (`rshmid`,
//! `size`), the frame `Frame::New` carrying an [`Entry`], and `Frame::Ack` (with `winner`).

use super::errno_text;
use super::peers::{await_acks, broadcast, send_to};
use super::queue::{self, reply};
use super::state::{Shared, State, Then};
use super::wait::retire_gate;
use crate::params::RSHM_MAX_SEGMENT;
use crate::rshm::table::{fits_shmmax, Adopted};
use crate::sys;
use crate::wire::rshm::{Entry, Frame, Reply, Request};
use std::io;
use std::net::SocketAddrV4;

/// The local server's `rshmget`: a known key answers at once; a new one is created here
/// (we own it) and announced with NEW.
pub(super) fn local(shared: &Shared, st: &mut State, req: Request, key: i32, size: u64) {
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
    if let Some(seg) = st.table.by_key(key) {
        if size > seg.size as u64 {
            return fail(
                libc::EINVAL,
                format!(
                    "rshmget(key=0x{key:08x}, size={size}): the segment exists with size {}",
                    seg.size
                ),
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
            format!("rshmget(key=0x{key:08x}, size={size}): larger than {RSHM_MAX_SEGMENT} bytes (RSHM_MAX_SEGMENT)"),
        );
    }
    // The other cap: the kernel's own largest segment (every node's replica is one; a peer
    // whose kernel allows less refuses the NEW, and the row is undone: `Then::Created`).
    if let Err(e) = fits_shmmax(size) {
        let why = sys::message(&e);
        return fail(
            libc::EINVAL,
            format!("rshmget(key=0x{key:08x}, size={size}): {why}"),
        );
    }
    let (entry, huge) = match st.table.create(key, size as usize) {
        Ok(seg) => (seg.entry(), seg.replica.huge),
        Err(e) => {
            let why = sys::message(&e);
            return fail(errno_text(&e), format!("rshmget(key=0x{key:08x}): {why}"));
        }
    };
    log!(
        "created rshmid {} (key 0x{key:08x}, {size} bytes{})",
        entry.rshmid,
        if huge { ", in huge pages" } else { "" }
    );
    let r = Reply {
        rshmid: entry.rshmid,
        size,
        ..Reply::to(&req)
    };
    let (seq, peers) = broadcast(st, &Frame::New(entry));
    await_acks(shared, st, seq, peers, req, Then::Created(r));
}

/// A remote server's `rshmget`: a peer's NEW, adopted. The ACK names the winning row if the
/// peer's lost a race for its key.
///
/// A row new here is passed on at once to our other peers, before anything of ours about it
/// can reach them. Frames on one connection arrive in order; frames on two connections may
/// not, because two threads read them:
///
/// ```text
///   A ──NEW(X)─────────────────────────────────▶ C   (A's connection to C: late, say)
///   A ──NEW(X)──▶ B ──NEW(X) ──COUNT(X)─────────▶ C   (B's connection to C)
/// ```
///
/// B learned of X from A, and its program then attached to X. Without the NEW that B passes
/// on, C could read B's COUNT first, and refuse it ("no segment with rshmid X here"). Each node
/// passes a row on once, when it is new there, so a NEW costs a frame per pair of nodes.
pub(super) fn remote(
    st: &mut State,
    from: SocketAddrV4,
    e: &Entry,
) -> (i32, String, Option<Entry>) {
    match adopt(st, e) {
        Ok(Adopted::Lost(winner)) => (0, String::new(), Some(winner)),
        Ok(Adopted::New | Adopted::Renamed { .. }) => {
            // To the other connected peers (one that is down gets the row by HELLO).
            let others: Vec<SocketAddrV4> = st
                .peers
                .iter()
                .filter(|p| p.addr != from && p.out.is_some())
                .map(|p| p.addr)
                .collect();
            let row = st.table.get(e.rshmid).map(|s| s.entry());
            if let (Some(row), false) = (row, others.is_empty()) {
                send_to(st, &Frame::New(row), &others);
            }
            (0, String::new(), None)
        }
        Ok(Adopted::Known) => (0, String::new(), None),
        Err(x) => {
            log!("cannot hold rshmid {} (key 0x{:08x}): {x}", e.rshmid, e.key);
            (errno_text(&x), sys::message(&x), None)
        }
    }
}

/// A row another node announced, by the rule of [`crate::rshm::table::Table::adopt`]: what
/// became of it (`Lost` names the row that beat it). A rename moves the waits on the old name
/// to the new one.
pub(super) fn adopt(st: &mut State, e: &Entry) -> Result<Adopted, io::Error> {
    let adopted = st.table.adopt(e)?;
    match &adopted {
        Adopted::Lost(_) | Adopted::New | Adopted::Known => {}
        Adopted::Renamed { from } => {
            let from = *from;
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
        }
    }
    Ok(adopted)
}

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
use super::peers::{await_acks, broadcast};
use super::queue::{self, reply};
use super::state::{Shared, State, Then};
use super::wait::retire_gate;
use crate::params::RSHM_MAX_SEGMENT;
use crate::rshm::table::{fits_shmmax, Adopted};
use crate::sys;
use crate::wire::rshm::{Entry, Frame, Reply, Request};
use std::io;

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
    let entry = match st.table.create(key, size as usize) {
        Ok(seg) => seg.entry(),
        Err(e) => {
            let why = sys::message(&e);
            return fail(errno_text(&e), format!("rshmget(key=0x{key:08x}): {why}"));
        }
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
    await_acks(shared, st, seq, peers, req, Then::Created(r));
}

/// A remote server's `rshmget`: a peer's NEW, adopted. The ACK names the winning row if the
/// peer's lost a race for its key.
pub(super) fn remote(st: &mut State, e: &Entry) -> (i32, String, Option<Entry>) {
    match adopt(st, e) {
        Ok(winner) => (0, String::new(), winner),
        Err(x) => {
            log!("cannot hold rshmid {} (key 0x{:08x}): {x}", e.rshmid, e.key);
            (errno_text(&x), sys::message(&x), None)
        }
    }
}

/// A row another node announced, by the rule of [`crate::rshm::table::Table::adopt`]. Returns the row that beat
/// it, if it lost. A rename moves the waits on the old name to the new one.
pub(super) fn adopt(st: &mut State, e: &Entry) -> Result<Option<Entry>, io::Error> {
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

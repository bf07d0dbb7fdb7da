//! `rshmat(rshmid)`: attach to the segment; every node counts the attach.
//!
//! The seed: "API: it prepares a message with appropriate contents and send to local TCP
//! server. TCP Server: It calls shmat() and returns the return address of shmat(). Sends a
//! message to other nodes to increase ref count. Remote TCP Servers: Increase ref count for
//! the corresponding shm segment."
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshmat`]) sends `Op::At`, then calls `shmat`
//!    itself on the replica's shmid the reply names (an address means nothing in another
//!    process: see [`crate::rshm`], "Why `rshmat` cannot return the server's address").
//! 2. **The local server** ([`local`]): at the first attach on this node, makes the twin (the
//!    copy a diff compares against, `Segment::ensure_twin`); counts the caller's attach (per
//!    process), answers with the replica's shmid and what the caller has now seen, and sends
//!    COUNT to every peer.
//! 3. **The remote servers** ([`remote`]): set this node's count in their row. (COUNT carries
//!    the new count, not +1: a repeated frame changes nothing.) `rshmdt` uses the same frame.
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::At`, the [`Reply`] (`shmid`, `size`, `changes`, `gate`),
//! `Frame::Count { rshmid, node, count }` and its `Frame::Ack`.

use super::peers::{await_acks, broadcast};
use super::queue;
use super::rshmctl::destroy_if_done;
use super::state::{Shared, State, Then};
use super::wait::seen_reply;
use super::{errno_text, inbound};
use crate::sys;
use crate::wire::rshm::{Entry, Frame, Reply, Request};
use std::net::SocketAddrV4;

/// The local server's `rshmat`: count the caller's attach, answer with the replica's shmid,
/// tell every peer the new count.
pub(super) fn local(shared: &Shared, st: &mut State, req: Request, rshmid: i32) {
    let me = shared.me;
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
    let Some(seg) = queue::row(
        shared,
        st,
        &req,
        rshmid,
        &format!("rshmat(rshmid={rshmid})"),
    ) else {
        return;
    };
    if seg.marked {
        return fail(
            libc::EIDRM,
            format!("rshmat(rshmid={rshmid}): the segment is marked for removal"),
        );
    }
    let rshmid = seg.rshmid;
    // The twin, before the program can write: the first attach here makes it.
    if let Err(e) = seg.ensure_twin() {
        return fail(
            errno_text(&e),
            format!(
                "rshmat(rshmid={rshmid}): making the twin: {}",
                sys::message(&e)
            ),
        );
    }
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

/// A remote server's `rshmat` (and `rshmdt`): a peer's COUNT, the number of attaches on
/// `node`. As owner, a marked row nobody is attached to any more is destroyed.
pub(super) fn remote(
    shared: &Shared,
    st: &mut State,
    (rshmid, node, count): (i32, SocketAddrV4, u32),
) -> (i32, String, Option<Entry>) {
    if !st.table.set_count(rshmid, node, count) {
        return inbound::unknown(rshmid);
    }
    let rshmid = st.table.resolve(rshmid);
    destroy_if_done(shared, st, rshmid);
    (0, String::new(), None)
}

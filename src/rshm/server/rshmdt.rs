//! `rshmdt(rshmid)`: detach; every node counts the detach.
//!
//! The seed: "API: it prepares a message with appropriate contents and send to local TCP
//! server. TCP Server: It calls the shmdt() and sends message to other nodes to decrease ref
//! count. Remote TCP Server: Decrease ref count for the corresponding shm segment."
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshmdt`], or dropping the
//!    [`crate::rshm::RshmAttachment`]) calls `shmdt` itself, then sends `Op::Dt`.
//! 2. **The local server** ([`local`]): takes one attach of the caller's process off, sends
//!    the new COUNT to every peer; if this was the last attach of a segment marked for
//!    removal and we own it, destroys it everywhere ([`super::rshmctl::destroy_if_done`]).
//! 3. **The remote servers**: the same COUNT as `rshmat` ([`super::rshmat::remote`]), then
//!    perhaps the owner's DESTROY ([`super::rshmctl::remote_destroy`]).
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::Dt`, the [`Reply`] (`rshmid`), `Frame::Count`,
//! `Frame::Destroy`, `Frame::Ack`.

use super::peers::{await_acks, broadcast};
use super::queue;
use super::rshmctl::destroy_if_done;
use super::state::{Shared, State, Then};
use crate::wire::rshm::{Frame, Reply, Request};

/// The local server's `rshmdt`: take one attach of the caller's process off, tell every peer,
/// and, after the last detach of a marked segment we own, destroy it everywhere.
pub(super) fn local(shared: &Shared, st: &mut State, req: Request, rshmid: i32) {
    let me = shared.me;
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
    let Some(seg) = queue::row(
        shared,
        st,
        &req,
        rshmid,
        &format!("rshmdt(rshmid={rshmid})"),
    ) else {
        return;
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

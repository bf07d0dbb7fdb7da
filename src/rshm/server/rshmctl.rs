//! `rshmctl(rshmid, IPC_RMID)`: remove the segment from the group, once nobody is attached.
//!
//! The seed: "API: only command applicable is IPC_RMID. it prepares a message with appropriate
//! contents and send to local TCP server. TCP Server: It calls the shmctl() and informs the
//! same to other nodes using multicast message. Remote TCP Servers: Remove the shared memory
//! corresponding to rshmid that is received from the owner."
//!
//! 1. **The program** ([`crate::rshm::api::Node::rshmctl`]) refuses any `cmd` but IPC_RMID,
//!    then sends `Op::Rmid`.
//! 2. **The local server** ([`local`]): only the owner removes. The owner marks the row,
//!    sends MARK to every peer, and destroys it at once if the group-wide count is 0
//!    ([`mark_as_owner`]); any other node forwards RMID to the owner ([`remote_rmid`] there)
//!    and answers with the owner's ACK.
//! 3. **The remote servers**: MARK marks the row ([`remote_mark`]); DESTROY, sent by the owner
//!    when the last attach anywhere goes ([`destroy_if_done`]), removes the replica
//!    ([`remote_destroy`]): its gate is retired and every wait on it answered with EIDRM.
//!
//! # Format
//! In [`crate::wire::rshm`]: `Op::Rmid`, the [`Reply`], `Frame::Rmid`, `Frame::Mark`,
//! `Frame::Destroy`, `Frame::Ack` (an RMID's status is the owner's answer).

use super::inbound;
use super::peers::{await_acks, broadcast, send_to};
use super::queue;
use super::state::{Shared, State, Then};
use super::wait::{answer_waits, retire_gate};
use crate::wire::rshm::{Entry, Frame, Reply, Request};
use std::net::SocketAddrV4;

/// The local server's `rshmctl(IPC_RMID)`: as owner, mark and tell everyone; else forward
/// the request to the owner and answer with its ACK.
pub(super) fn local(shared: &Shared, st: &mut State, req: Request, rshmid: i32) {
    let me = shared.me;
    let fail = |errno: i32, text: String| queue::fail(shared, &req, errno, text);
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

/// The owner's side of an RMID another node forwarded: refused if we are not the owner.
pub(super) fn remote_rmid(
    shared: &Shared,
    st: &mut State,
    peer: SocketAddrV4,
    rshmid: i32,
) -> (i32, String, Option<Entry>) {
    match st.table.get(rshmid).map(|s| (s.rshmid, s.owner)) {
        None => inbound::unknown(rshmid),
        Some((rshmid, owner)) if owner != shared.me => (
            libc::EPERM,
            format!("{} is not the owner of rshmid {rshmid}", shared.me),
            None,
        ),
        Some((rshmid, _)) => {
            log!("rshmid {rshmid}: removal requested by {peer}");
            mark_as_owner(shared, st, rshmid);
            (0, String::new(), None)
        }
    }
}

/// A remote server's `rshmctl`, first half: the owner's MARK. No new attach from now on.
pub(super) fn remote_mark(st: &mut State, rshmid: i32) -> (i32, String, Option<Entry>) {
    match st.table.get_mut(rshmid) {
        Some(seg) => {
            seg.marked = true;
            (0, String::new(), None)
        }
        None => inbound::unknown(rshmid),
    }
}

/// A remote server's `rshmctl`, second half: the owner's DESTROY, once nobody anywhere is
/// attached. The seed's "remove the shared memory corresponding to rshmid".
pub(super) fn remote_destroy(
    shared: &Shared,
    st: &mut State,
    rshmid: i32,
) -> (i32, String, Option<Entry>) {
    let rshmid = st.table.resolve(rshmid);
    removed(shared, st, rshmid);
    (0, String::new(), None)
}

/// The owner's side of IPC_RMID: mark, tell everyone, destroy if nobody is attached.
pub(super) fn mark_as_owner(
    shared: &Shared,
    st: &mut State,
    rshmid: i32,
) -> (u32, Vec<SocketAddrV4>) {
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
pub(super) fn destroy_if_done(
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

/// Destroys a row here, tells every peer, and answers the programs waiting on it.
pub(super) fn destroy(shared: &Shared, st: &mut State, rshmid: i32) -> (u32, Vec<SocketAddrV4>) {
    removed(shared, st, rshmid);
    broadcast(st, &Frame::Destroy { rshmid })
}

/// The row is gone here: its gate is retired (sleepers ask the queue), and every wait on it
/// is answered with EIDRM.
pub(super) fn removed(shared: &Shared, st: &mut State, rshmid: i32) {
    st.table.destroy(rshmid);
    retire_gate(st, rshmid);
    answer_waits(shared, st, rshmid);
}

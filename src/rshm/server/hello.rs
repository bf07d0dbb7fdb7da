//! The peer handshake: after both ends authenticated ([`crate::rshm::auth`]), the HELLO
//! exchange that brings a (re)connecting node up to date.
//!
//! ```text
//!   dialer (our requests)                     acceptor (the peer's requests)
//!   HELLO(our table)          ───────────▶    merge; answer (one critical section):
//!                             ◀───────────    HELLO_REPLY(its table), STATE.., STATE(last)..
//!   merge; apply each STATE; mark the peer "up" (synced)
//! ```
//!
//! # Format
//! `Frame::Hello`, `Frame::HelloReply` and `Frame::State` in [`crate::wire::rshm`] ("Peer
//! frame"). The seed: "When the server starts up, it sends hello message to the group. It
//! reads the replies and updates its internal state tables. Remote TCP Server: Reply with the
//! local state table."
//!
//! # Rules
//! - HELLO is written and the peer marked connected in one critical section ([`greet`]): every
//!   frame broadcast after this snapshot of the table follows it on the same stream.
//! - The answer, the table and every row's contents, is built in one critical section
//!   ([`answer`]), so no update slips between.
//! - Tables merge as if each row were announced by a NEW ([`super::rshmget::adopt`]); contents
//!   merge word by word by stamp ([`apply_state`]), the rules of [`crate::rshm`],
//!   "Consistency model".
//! - A peer is `up` in `client ls` only once every STATE is applied.

use super::peers::read_frame;
use super::rshmctl::destroy;
use super::rshmget::adopt;
use super::state::{lock, Shared, State};
use super::wait::changed;
use crate::params::RSHM_MAX_RUNS;
use crate::wire::rshm::{
    Frame, Hello, StampedRun, MAX_BODY, STATE_FIXED_LEN, STATE_RUN_HEADER_LEN,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream};

/// The dialer's half: sends HELLO with our table, marks the peer connected (so that every
/// later broadcast reaches it), then reads its HELLO_REPLY and the STATE of every row,
/// and marks it synced ("up" in `client ls`).
pub(super) fn greet(
    shared: &Shared,
    peer: SocketAddrV4,
    s: &mut TcpStream,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    {
        // HELLO is written and the peer marked connected in one critical section: every
        // frame broadcast after this snapshot of the table follows it on the same stream, so
        // the peer misses no change.
        let mut st = lock(shared);
        let frame = Frame::Hello(hello(shared, &st));
        crate::trace!("tcp -> {peer} {frame}");
        s.write_all(&frame.encode(0))?;
        let writer = s.try_clone()?;
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
            p.out = Some(writer);
        }
    }
    let h = match read_frame(rd, buf)? {
        (_, Frame::HelloReply(h)) if h.node == peer => h,
        (_, other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected HELLO_REPLY from {peer}, got {other}"),
            ))
        }
    };
    crate::trace!("tcp <- {peer} {}", Frame::HelloReply(h.clone()));
    merge(shared, peer, &h);
    read_states(shared, peer, h.entries.len(), rd, buf)?;
    if let Some(p) = lock(shared).peers.iter_mut().find(|p| p.addr == peer) {
        p.synced = true;
    }
    log!(
        "connected to peer {peer} (id {:08x}, {} segment(s))",
        h.node_id,
        h.entries.len()
    );
    Ok(())
}

/// The contents after a HELLO_REPLY: STATE frames for every one of its `rows` (the last of
/// each row says so), merged word by word by stamp.
fn read_states(
    shared: &Shared,
    peer: SocketAddrV4,
    rows: usize,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let mut rows_done = 0;
    while rows_done < rows {
        match read_frame(rd, buf)? {
            (_, state @ Frame::State { .. }) => {
                crate::trace!("tcp <- {peer} {state}");
                let Frame::State { rshmid, last, runs } = state else {
                    unreachable!("matched above")
                };
                apply_state(shared, &mut lock(shared), rshmid, &runs);
                rows_done += usize::from(last);
            }
            (_, other) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected STATE from {peer}, got {other}"),
                ))
            }
        }
    }
    Ok(())
}

/// The acceptor's half: the first frame must be a HELLO from a configured peer, from its own
/// IP; it is merged and answered with our table and every row's contents. Returns the peer's
/// name, or `None` if it was refused (logged).
pub(super) fn answer(
    shared: &Shared,
    from: SocketAddrV4,
    s: &mut TcpStream,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<Option<SocketAddrV4>> {
    let h = match read_frame(rd, buf) {
        Ok((_, Frame::Hello(h))) => h,
        Ok((_, other)) => {
            log!("refused connection from {from}: it sent {other} before HELLO");
            return Ok(None);
        }
        Err(e) => {
            log!("refused connection from {from}: no HELLO ({e})");
            return Ok(None);
        }
    };
    // The peer names itself by its listen address; believe it only if that address is
    // configured here and the connection really comes from its IP.
    let configured = lock(shared).peers.iter().any(|p| p.addr == h.node);
    if !configured || h.node.ip() != from.ip() {
        log!(
            "refused connection from {from}: {} is not a configured peer",
            h.node
        );
        return Ok(None);
    }
    crate::trace!("tcp <- {} {}", h.node, Frame::Hello(h.clone()));
    merge(shared, h.node, &h);
    let mut st = lock(shared);
    if let Some(p) = st.peers.iter_mut().find(|p| p.addr == h.node) {
        p.kick = p.out.is_none();
    }
    let answer = Frame::HelloReply(hello(shared, &st));
    crate::trace!("tcp -> {} {answer}", h.node);
    // The table, then every row's contents (the twin: what was last published, and
    // the stamp it carries), in one critical section, so no update slips between.
    let mut out = answer.encode(0);
    for seg in st.table.rows() {
        for state in state_frames(seg.rshmid, seg.state_runs()) {
            crate::trace!("tcp -> {} {state}", h.node);
            out.extend_from_slice(&state.encode(0));
        }
    }
    s.write_all(&out)?;
    Ok(Some(h.node))
}

/// A table from `from`, merged into ours: new rows get their replicas.
pub(super) fn merge(shared: &Shared, from: SocketAddrV4, h: &Hello) {
    let mut st = lock(shared);
    // Each row as if announced by a NEW: a rename (a race for a key, met when a partition
    // heals) moves its waits here too.
    for e in &h.entries {
        if let Err(x) = adopt(&mut st, e) {
            log!("merging the table of {from}: rshmid {}: {x}", e.rshmid);
        }
    }
    st.table.hello_counts(from, &h.entries);
    // A peer that restarted has no attaches any more: a marked row may now be done with.
    for rshmid in st.table.destroyable() {
        destroy(shared, &mut st, rshmid);
    }
}

pub(super) fn hello(shared: &Shared, st: &State) -> Hello {
    Hello {
        node: shared.me,
        node_id: st.node_id,
        entries: st.table.entries(),
    }
}

/// A STATE from a peer: merged word by word, newer stamps winning (see [`crate::rshm::table::Table`]).
pub(super) fn apply_state(shared: &Shared, st: &mut State, rshmid: i32, runs: &[StampedRun]) {
    let Some(seg) = st.table.get_mut(rshmid) else {
        return; // a row we could not make (table full), or destroyed meanwhile
    };
    let rshmid = seg.rshmid;
    let before = seg.stamp;
    match seg.apply_state(runs) {
        Ok(n) => {
            crate::trace!("rshmid {rshmid}: state merged, {n} bytes newer than ours");
            if n > 0 || seg.stamp != before {
                changed(shared, st, rshmid);
            }
        }
        Err(e) => log!("rshmid {rshmid}: state refused: {e}"),
    }
}

/// A row's STATE runs, cut into frames whose bodies fit [`MAX_BODY`] and hold at most
/// `RSHM_MAX_RUNS` runs; the last says so.
pub(super) fn state_frames(rshmid: i32, runs: Vec<StampedRun>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut len = STATE_FIXED_LEN;
    for r in runs {
        let cost = STATE_RUN_HEADER_LEN + r.run.data.len();
        if !chunk.is_empty() && (len + cost > MAX_BODY || chunk.len() == RSHM_MAX_RUNS) {
            frames.push(Frame::State {
                rshmid,
                last: false,
                runs: std::mem::take(&mut chunk),
            });
            len = STATE_FIXED_LEN;
        }
        len += cost;
        chunk.push(r);
    }
    frames.push(Frame::State {
        rshmid,
        last: true,
        runs: chunk,
    });
    frames
}

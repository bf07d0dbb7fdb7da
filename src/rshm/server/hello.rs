//! The peer handshake: after both ends authenticated ([`crate::rshm::auth`]), the HELLO
//! exchange that brings a (re)connecting node up to date.
//!
//! ```text
//!   dialer (our requests)                     acceptor (the peer's requests)
//!   HELLO(our table)          ───────────▶    merge; snapshot the table (one critical section)
//!                             ◀───────────    HELLO_REPLY(its table)
//!                             ◀───────────    STATE.., STATE(last) per row, one chunk per
//!                                             hold of the lock (`stream_states`)
//!   keep each row's STATE frames; apply the row as one; mark the peer "up" (synced)
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
//! - The answer's table is a snapshot taken in one critical section ([`answer`]); each row's
//!   contents then stream one bounded chunk per hold of the state lock ([`stream_states`]), so
//!   a late joiner receiving a 1 GiB segment never stalls this node's programs for the whole
//!   transfer. Why no change is lost or undone by that: at [`stream_states`].
//! - The receiver keeps one row's STATE frames (at most the row's bytes, plus bounded run
//!   headers) and applies the row as one change, under one hold of its lock ([`read_states`]):
//!   a reader there sees the row before the STATE or after it, never half of it.
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
use crate::wire::rshm::{Frame, Hello, StampedRun};
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
/// each row says so). A row's frames are kept until its last, checked as they come (same row,
/// runs ascending and inside the segment), and the row is merged as one, word by word by
/// stamp. A STATE that breaks these rules ends the connection (logged by the caller); the
/// dialer connects again.
fn read_states(
    shared: &Shared,
    peer: SocketAddrV4,
    rows: usize,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let mut rows_done = 0;
    let mut row = Row::default();
    while rows_done < rows {
        let (rshmid, last, runs) = match read_frame(rd, buf)? {
            (_, state @ Frame::State { .. }) => {
                crate::trace!("tcp <- {peer} {state}");
                let Frame::State { rshmid, last, runs } = state else {
                    unreachable!("matched above")
                };
                (rshmid, last, runs)
            }
            (_, other) => return Err(bad(format!("expected STATE from {peer}, got {other}"))),
        };
        row.take(shared, rshmid, runs).map_err(|why| {
            bad(format!(
                "STATE of rshmid {rshmid} from {peer} refused: {why}"
            ))
        })?;
        if last {
            let runs = std::mem::take(&mut row).runs;
            apply_state(shared, &mut lock(shared), rshmid, &runs);
            rows_done += 1;
        }
    }
    Ok(())
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// One row's STATE frames so far.
#[derive(Default)]
struct Row {
    rshmid: Option<i32>,
    runs: Vec<StampedRun>,
    /// Where the last run ended.
    end: u64,
}

impl Row {
    /// Keeps one frame's runs, if they continue the row: the same rshmid as the frames before,
    /// runs after the ones before and inside the segment (so at most its size in bytes). A
    /// row we do not have is read and dropped. The runs kept are at most `RSHM_MAX_RUNS` plus
    /// one per 64 bytes of the segment (so their headers cost at most about its size again):
    /// a row whose words were written by that many different updates in turn (word 0 by one,
    /// word 1 by another, ...) is merged in pieces instead, each piece as one change.
    fn take(&mut self, shared: &Shared, rshmid: i32, runs: Vec<StampedRun>) -> Result<(), String> {
        if *self.rshmid.get_or_insert(rshmid) != rshmid {
            return Err(format!(
                "it comes before the last STATE of rshmid {}",
                self.rshmid.unwrap_or(0)
            ));
        }
        let Some(size) = lock(shared).table.get(rshmid).map(|s| s.size as u64) else {
            return Ok(()); // a row we could not make (table full), or destroyed meanwhile
        };
        let most = RSHM_MAX_RUNS as u64 + size / 64;
        if (self.runs.len() + runs.len()) as u64 > most {
            crate::trace!("rshmid {rshmid}: a STATE of more than {most} runs, merged in pieces");
            apply_state(
                shared,
                &mut lock(shared),
                rshmid,
                &std::mem::take(&mut self.runs),
            );
        }
        for r in runs {
            let end = r.run.offset.saturating_add(r.run.data.len() as u64);
            if r.run.offset < self.end || end > size {
                return Err(format!(
                    "run of {} bytes at {} overlaps the runs before it or lies outside the \
                     segment of {size} bytes",
                    r.run.data.len(),
                    r.run.offset
                ));
            }
            self.end = end;
            self.runs.push(r);
        }
        Ok(())
    }
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
    let (answer, rows) = {
        let mut st = lock(shared);
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == h.node) {
            p.kick = p.out.is_none();
        }
        let answer = Frame::HelloReply(hello(shared, &st));
        let rows: Vec<i32> = st.table.rows().map(|seg| seg.rshmid).collect();
        (answer, rows)
    };
    crate::trace!("tcp -> {} {answer}", h.node);
    s.write_all(&answer.encode(0))?;
    stream_states(shared, h.node, s, &rows)?;
    Ok(Some(h.node))
}

/// The contents of every row of the HELLO_REPLY (the twin: what was last published, with the
/// stamp of each word), one chunk at a time: take the lock, copy one chunk
/// ([`crate::rshm::table::Segment::state_chunk`], at most `RSHM_MAX_FRAME_DATA` bytes),
/// release it, write the frame, repeat. Every row of the reply gets its `last` frame, even one
/// destroyed meanwhile (empty), because the peer counts them.
fn stream_states(
    shared: &Shared,
    peer: SocketAddrV4,
    s: &mut TcpStream,
    rows: &[i32],
) -> io::Result<()> {
    for &rshmid in rows {
        let mut at = 0;
        loop {
            // Why releasing the lock between chunks is consistent: every word travels with
            // the stamp of the update that wrote it, and the peer merges word by word, newer
            // stamp winning (`apply_update`). A change U made here between two chunks is
            //  - in a chunk not sent yet: that chunk carries U's bytes with U's stamp;
            //  - in a chunk already sent: U is broadcast to the peer as an UPDATE, exactly as
            //    a change made just after the old one-shot snapshot was, if our own connection
            //    to it is up (`broadcast` writes to every peer whose `out` is set, whether it
            //    is synced or not; `greet` sets `out` under the lock with its HELLO, and the
            //    `kick` above hurries our dialer); U's stamp is above every stamp in the chunk
            //    sent before it (Lamport versions), so whichever of the two the peer applies
            //    first, U wins, word by word: the two commute.
            // So the peer ends with what a snapshot taken at the end of the stream would give,
            // and no chunk can undo a newer word, since a chunk never carries a stamp newer
            // than what the peer may have from an UPDATE of the same word.
            let (runs, next, size) = match lock(shared).table.get(rshmid) {
                Some(seg) => {
                    let (runs, next) = seg.state_chunk(at);
                    (runs, next, seg.size)
                }
                None => (Vec::new(), 0, 0),
            };
            let last = next >= size;
            if !runs.is_empty() || last {
                let state = Frame::State { rshmid, last, runs };
                crate::trace!("tcp -> {peer} {state}");
                s.write_all(&state.encode(0))?;
            }
            if last {
                break;
            }
            at = next;
        }
    }
    Ok(())
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

/// A row's STATE from a peer, all its frames at once: merged word by word, newer stamps
/// winning (see [`crate::rshm::table::Table`]), and counted as one change, so a program
/// waiting for the row wakes once, to the whole of it.
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

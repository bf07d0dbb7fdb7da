//! The peer handshake: after both ends authenticated ([`crate::rshm::auth`]), the HELLO
//! exchange that brings a (re)connecting node up to date.
//!
//! ```text
//!   dialer (our requests)                     acceptor (the peer's requests)
//!   HELLO(our table)          ───────────▶    merge; snapshot the table (one critical section)
//!                             ◀───────────    HELLO_REPLY(its table)
//!                             ◀───────────    STATE.., STATE(last) per row, one chunk per
//!                                             hold of the lock (`stream_states`)
//!   merge each STATE frame as it comes; count each row's change after its last frame;
//!   mark the peer "up" (synced)
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
//! - The receiver merges each STATE frame as it arrives (one frame in memory, one hold of its
//!   lock per frame), and shows the row's version and counts its change only after the row's
//!   last frame ([`read_states`]): a program there that waits for the change, or the version,
//!   then reads, reads the whole row (why that is enough: at [`Row::apply`]).
//! - Tables merge as if each row were announced by a NEW ([`super::rshmget::adopt`]); contents
//!   merge word by word by stamp ([`Row::apply`]), the rules of [`crate::rshm`],
//!   "Consistency model".
//! - A peer is `up` in `client ls` only once every STATE is applied.
//! - A peer that dialled us while we had no connection to it misses our broadcasts until our
//!   dialer greets it; the greeting sends it our own changes made since its STATE snapshot
//!   ([`catch_up`]), in the critical section that makes our broadcasts reach it.

use super::outbox::Outbox;
use super::peers::{read_frame, read_raw};
use super::rshmctl::destroy;
use super::rshmget::adopt;
use super::state::{lock, Shared, State};
use super::wait::changed;
use crate::rshm::table::Stamp;
use crate::wire::rshm::{Frame, Hello, Run, StampedRunRef, StateRef};
use std::collections::HashMap;
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
        let out = Outbox::new(s, peer)?;
        out.send(&frame.encode(0))?;
        if let Some(since) = st.streamed.remove(&peer) {
            catch_up(shared.me, &st, peer, &since, &out)?;
        }
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
            p.out = Some(out);
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
/// each row says so). Each frame is checked as it comes (same row as the frames before it,
/// runs ascending and inside the segment) and merged at once, word by word by stamp, under one
/// hold of the lock ([`Row::apply`]); the row counts as changed once, after its last frame. A
/// STATE that breaks these rules ends the connection (logged by the caller); the dialer
/// connects again.
fn read_states(
    shared: &Shared,
    peer: SocketAddrV4,
    rows: usize,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let mut row = Row::default();
    let read = read_rows(shared, peer, rows, rd, buf, &mut row);
    // A stream cut in the middle of a row: what arrived stays (every word of it is as new as
    // its stamp says), and the row is done with, so that it shows its version again.
    row.finish(shared, &mut lock(shared));
    read
}

fn read_rows(
    shared: &Shared,
    peer: SocketAddrV4,
    rows: usize,
    rd: &mut impl Read,
    buf: &mut Vec<u8>,
    row: &mut Row,
) -> io::Result<()> {
    let mut rows_done = 0;
    while rows_done < rows {
        let n = read_raw(rd, buf)?;
        let frame = &buf[..n];
        // Decoded in place: the runs borrow `buf`, and go from there into the replica.
        let state = match StateRef::decode(frame)? {
            Some(state) => state,
            None => {
                let (_, other, _) = Frame::decode(frame)?;
                return Err(bad(format!("expected STATE from {peer}, got {other}")));
            }
        };
        let (rshmid, last) = (state.rshmid, state.last);
        crate::trace!("tcp <- {peer} {state}");
        row.apply(shared, rshmid, &state.runs).map_err(|why| {
            bad(format!(
                "STATE of rshmid {rshmid} from {peer} refused: {why}"
            ))
        })?;
        if last {
            row.finish(shared, &mut lock(shared));
            rows_done += 1;
        }
    }
    Ok(())
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The row whose STATE frames are arriving.
#[derive(Default)]
struct Row {
    rshmid: Option<i32>,
    /// Where the last run ended.
    end: u64,
    /// The row's stamp before its first frame, once one was applied.
    before: Option<Stamp>,
    /// Bytes newer than ours, so far.
    written: usize,
}

impl Row {
    /// One frame's runs, if they continue the row (the same rshmid as the frames before, runs
    /// after the ones before and inside the segment), merged into the replica, twin and word
    /// stamps at once, under one hold of the lock. A row we do not have is read and dropped.
    ///
    /// Why a row may be merged frame by frame, when an UPDATE's parts are applied as one: the
    /// row's version is not shown (`client ls`, the HELLO table) and the change is not counted
    /// (the gate a reader waits on, `rshm_wait_changed`) until its last frame
    /// ([`Row::finish`]), so a program that waits for the change, or for the version, and then
    /// reads, reads the whole row. A program reading the replica meanwhile without waiting
    /// (or woken by another change of the row, an UPDATE that lands during the STATE) can see
    /// part of it, as it could see part of a `memcpy` on one node; the UPDATE's own words are
    /// whole (its parts are applied as one). Nothing is undone by a frame: each word is written only if its stamp is newer, and
    /// the Lamport clock (the row's `stamp`) advances as frames arrive, so a change made here
    /// meanwhile is numbered above every word it could have read. Memory: one frame.
    fn apply(
        &mut self,
        shared: &Shared,
        rshmid: i32,
        runs: &[StampedRunRef<'_>],
    ) -> Result<(), String> {
        if *self.rshmid.get_or_insert(rshmid) != rshmid {
            return Err(format!(
                "it comes before the last STATE of rshmid {}",
                self.rshmid.unwrap_or(0)
            ));
        }
        let mut st = lock(shared);
        let Some(seg) = st.table.get_mut(rshmid) else {
            return Ok(()); // a row we could not make (table full), or destroyed meanwhile
        };
        let size = seg.size as u64;
        for r in runs {
            let end = r.offset.saturating_add(r.data.len() as u64);
            if r.offset < self.end || end > size {
                return Err(format!(
                    "run of {} bytes at {} overlaps the runs before it or lies outside the \
                     segment of {size} bytes",
                    r.data.len(),
                    r.offset
                ));
            }
            self.end = end;
        }
        if self.before.is_none() {
            self.before = Some(seg.stamp);
            seg.showing = Some(seg.shown_version());
            seg.states_open += 1;
        }
        for r in runs {
            let stamp = Stamp {
                version: r.version,
                origin: r.origin,
            };
            match seg.apply_state_run(stamp, r.offset, r.data) {
                Ok(n) => self.written += n,
                Err(e) => {
                    log!("rshmid {}: state refused: {e}", seg.rshmid);
                    break;
                }
            }
        }
        Ok(())
    }

    /// The row's last frame is in (or the stream ended): its version shows, and the change
    /// is counted once, so a program waiting for the row wakes once, to the whole of it.
    fn finish(&mut self, shared: &Shared, st: &mut State) {
        let row = std::mem::take(self);
        let (Some(rshmid), Some(before)) = (row.rshmid, row.before) else {
            return;
        };
        let Some(seg) = st.table.get_mut(rshmid) else {
            return;
        };
        seg.states_open = seg.states_open.saturating_sub(1);
        if seg.states_open == 0 {
            seg.showing = None;
        }
        let rshmid = seg.rshmid;
        crate::trace!(
            "rshmid {rshmid}: state merged, {} bytes newer than ours",
            row.written
        );
        if row.written > 0 || seg.stamp != before {
            changed(shared, st, rshmid);
        }
    }
}

/// The acceptor's half: the first frame must be a HELLO from the peer that authenticated
/// (`dialer`), which must be a configured peer calling from its own IP; it is merged and
/// answered with our table and every row's contents. Returns the peer's name, or `None` if it
/// was refused (logged).
pub(super) fn answer(
    shared: &Shared,
    (from, dialer): (SocketAddrV4, SocketAddrV4),
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
    // The peer names itself by its listen address; believe it only if that is the name it
    // authenticated with, the address is configured here, and the connection really comes
    // from its IP.
    if h.node != dialer {
        log!(
            "refused connection from {from}: its HELLO names {}, but it authenticated as {dialer}",
            h.node
        );
        return Ok(None);
    }
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
        let no_way_back = st.peers.iter().any(|p| p.addr == h.node && p.out.is_none());
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == h.node) {
            p.kick = no_way_back;
        }
        if no_way_back {
            // Until our dialer greets this peer, our broadcasts do not reach it: remember what
            // the STATE below is taken from, for the catch-up then (`catch_up`).
            let versions = st
                .table
                .rows()
                .map(|g| (g.rshmid, g.stamp.version))
                .collect();
            st.streamed.insert(h.node, versions);
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

/// The contents of every row of the HELLO_REPLY (what was last published, with the stamp of
/// each word), one chunk at a time: take the lock, copy one chunk
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
            // Encoded under the lock, straight from the twin (one copy; two where there is no
            // twin yet and the bytes come from the replica), and written after.
            let (frame, next, last) = match lock(shared).table.get(rshmid) {
                Some(seg) => {
                    let (spans, next) = seg.state_spans(at);
                    let last = next >= seg.size;
                    let bytes = spans
                        .iter()
                        .map(|&(_, a, b)| seg.published(a, b))
                        .collect::<io::Result<Vec<_>>>()?;
                    let runs = spans
                        .iter()
                        .zip(&bytes)
                        .map(|(&(stamp, a, _), data)| StampedRunRef {
                            version: stamp.version,
                            origin: stamp.origin,
                            offset: a as u64,
                            data,
                        })
                        .collect();
                    let state = StateRef { rshmid, last, runs };
                    let keep = !state.runs.is_empty() || last;
                    if keep {
                        crate::trace!("tcp -> {peer} {state}");
                    }
                    (keep.then(|| state.encode(0)), next, last)
                }
                None => {
                    let state = Frame::State {
                        rshmid,
                        last: true,
                        runs: Vec::new(),
                    };
                    crate::trace!("tcp -> {peer} {state}");
                    (Some(state.encode(0)), 0, true)
                }
            };
            if let Some(bytes) = frame {
                s.write_all(&bytes)?;
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

/// The catch-up at our greeting of a peer that dialled us first. Between our answer to its
/// HELLO (the snapshot its STATE stream came from) and this moment we had no connection to it,
/// so our own changes made meanwhile were broadcast to everyone but it; the STATE carried them
/// only where its chunk had not been sent yet. Each such change is one of ours with a version
/// above the row's version at the snapshot (a local change is numbered one above the newest the
/// row had seen), so we send exactly those words again, as UPDATEs with their own stamps, in
/// the critical section that made our broadcasts reach the peer from now on: nothing falls
/// between the two. Words it already has are kept by the stamp rule; the ACKs (seq 0) are for
/// nobody. Others' changes are theirs to send: they broadcast them to it themselves.
fn catch_up(
    me: SocketAddrV4,
    st: &State,
    peer: SocketAddrV4,
    since: &HashMap<i32, u64>,
    out: &Outbox,
) -> io::Result<()> {
    for seg in st.table.rows() {
        let since = since.get(&seg.rshmid).copied().unwrap_or(0);
        if seg.stamp.version <= since {
            continue; // no change at all since the snapshot, ours or anyone's
        }
        let mut at = 0;
        while at < seg.size {
            let (spans, next) = seg.state_spans(at);
            for (stamp, a, b) in spans {
                if stamp.origin != me || stamp.version <= since {
                    continue;
                }
                let frame = Frame::Update {
                    rshmid: seg.rshmid,
                    version: stamp.version,
                    origin: me,
                    part: 0,
                    more: false,
                    runs: vec![Run {
                        offset: a as u64,
                        data: seg.published(a, b)?.into_owned(),
                    }],
                };
                crate::trace!("tcp -> {peer} {frame} (catch-up)");
                out.send(&frame.encode(0))?;
            }
            at = next;
        }
    }
    Ok(())
}

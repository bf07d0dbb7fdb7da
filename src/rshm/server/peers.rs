//! Frames to peers, and the ACKs that come back: how a call waits for the group.
//!
//! # Rules
//! - Frames are handed to each peer's outbox with the state lock held ([`broadcast`],
//!   [`send_to`]): every peer sees our frames in the order our table changed, and handing
//!   over never waits for a peer ([`super::outbox`]). A peer whose outbox breaks (a failed
//!   write, too much waiting) is dropped; its dialer reconnects.
//! - A request that sent frames waits as a `Pending` until every peer it reached has
//!   acknowledged ([`on_ack`]), its connection went down ([`peer_down`]) or the deadline
//!   passed (the sweeper); then [`finish`] answers the program, once.
//! - An ACK always arrives on the connection its request left on (ours, the dialer's).
//! - Reading a frame never buffers more than `MAX_BODY` ([`read_frame`]).

use super::queue::reply;
use super::rshmctl::destroy;
use super::rshmget::adopt;
use super::state::{lock, Pending, Shared, State, Then};
use crate::params::{RSHM_ACK_BYTES_PER_SEC, RSHM_ACK_TIMEOUT};
use crate::rshm::table::{Segment, Stamp};
use crate::wire::rshm::{Entry, Frame, Op, Reply, Request, UpdatePart, FRAME_HEADER_LEN};
use std::io::{self, Read};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Writes `frame` to every connected peer. Returns the seq and the peers it reached; a peer
/// whose write fails is dropped (its dialer reconnects).
pub(super) fn broadcast(st: &mut State, frame: &Frame) -> (u32, Vec<SocketAddrV4>) {
    let all: Vec<SocketAddrV4> = st.peers.iter().map(|p| p.addr).collect();
    send_to(st, frame, &all)
}

/// Writes the frames of one change (an UPDATE in one or several parts) to every connected
/// peer, all with one seq: the peers ACK the last part only. Each frame is encoded when its
/// turn comes, straight from the change's runs, so only one frame's bytes are in memory at a
/// time, and none if no peer is connected. A peer whose write fails is dropped (and the parts
/// it got are dropped with its connection).
pub(super) fn broadcast_parts(
    st: &mut State,
    (rshmid, stamp): (i32, Stamp),
    parts: &[UpdatePart<'_>],
) -> (u32, Vec<SocketAddrV4>) {
    let seq = st.next_seq;
    st.next_seq = st.next_seq.wrapping_add(1).max(1);
    let mut reached: Vec<SocketAddrV4> = st
        .peers
        .iter()
        .filter(|p| p.out.is_some())
        .map(|p| p.addr)
        .collect();
    for part in parts {
        if reached.is_empty() {
            break; // nobody to send the rest to (or to encode it for)
        }
        let bytes = part.encode(rshmid, stamp.version, stamp.origin, seq);
        for p in st.peers.iter_mut().filter(|p| reached.contains(&p.addr)) {
            let Some(out) = &p.out else { continue };
            crate::trace!(
                "tcp -> {} #{seq} {}",
                p.addr,
                part_line(rshmid, stamp, part)
            );
            if out.send(&bytes).is_err() {
                p.out = None; // broken, and logged, in the outbox
            }
        }
        reached.retain(|a| st.peers.iter().any(|p| p.addr == *a && p.out.is_some()));
    }
    (seq, reached)
}

/// The trace line of one part, as `Frame`'s Display shows an UPDATE (without copying its runs).
fn part_line(rshmid: i32, stamp: Stamp, part: &UpdatePart<'_>) -> String {
    let runs: Vec<String> = part
        .runs
        .iter()
        .take(8)
        .map(|(off, d)| format!("{off}+{}", d.len()))
        .collect();
    let more = if part.runs.len() > 8 {
        format!(" ...{} more", part.runs.len() - 8)
    } else {
        String::new()
    };
    let which = if part.part > 0 || part.more {
        format!(
            " part {}{}",
            part.part,
            if part.more { " more" } else { " last" }
        )
    } else {
        String::new()
    };
    format!(
        "UPDATE rshmid={rshmid} v={}@{}{which} runs=[{}{more}] {} bytes on the wire",
        stamp.version,
        stamp.origin,
        runs.join(" "),
        part.len()
    )
}

/// Writes `frame` to those of `targets` that are connected.
pub(super) fn send_to(
    st: &mut State,
    frame: &Frame,
    targets: &[SocketAddrV4],
) -> (u32, Vec<SocketAddrV4>) {
    let seq = st.next_seq;
    st.next_seq = st.next_seq.wrapping_add(1).max(1);
    let bytes = frame.encode(seq);
    let mut reached = Vec::new();
    for p in st.peers.iter_mut().filter(|p| targets.contains(&p.addr)) {
        let Some(out) = &p.out else { continue };
        crate::trace!("tcp -> {} #{seq} {frame}", p.addr);
        match out.send(&bytes) {
            Ok(()) => reached.push(p.addr),
            Err(_) => p.out = None, // broken, and logged, in the outbox
        }
    }
    (seq, reached)
}

/// Leaves `req` waiting for the ACKs of frame `seq` from `peers`; replies at once if none.
pub(super) fn await_acks(
    shared: &Shared,
    st: &mut State,
    seq: u32,
    peers: Vec<SocketAddrV4>,
    req: Request,
    then: Then,
) {
    await_acks_sized(shared, st, (seq, 0), peers, req, then);
}

/// As [`await_acks`], for frames of `bytes` in all: a large change gets one more second per
/// `RSHM_ACK_BYTES_PER_SEC` (the peers must take it in and apply it before they answer).
pub(super) fn await_acks_sized(
    shared: &Shared,
    st: &mut State,
    (seq, bytes): (u32, u64),
    peers: Vec<SocketAddrV4>,
    req: Request,
    then: Then,
) {
    let patience = RSHM_ACK_TIMEOUT + Duration::from_secs(bytes / RSHM_ACK_BYTES_PER_SEC);
    let p = Pending {
        req,
        then,
        waiting: peers,
        failures: Vec::new(),
        status: (0, String::new()),
        deadline: Instant::now() + patience,
        patience,
    };
    if p.waiting.is_empty() {
        let mut p = p;
        settle(shared, st, &mut p);
        finish(shared, p);
    } else {
        st.pending.insert(seq, p);
    }
}

/// Before answering: a GET whose row was renamed meanwhile (it lost a race for its key)
/// answers with the name that won, and that row's size.
///
/// And a NEW that a peer refused (it cannot hold the row: a smaller shmmax there, a full
/// table) is undone, here and on the peers that took it: a segment that one node cannot hold
/// would fail there at every later call. (Only if the row is still ours, under this name: one
/// that lost a race for its key belongs to the winner.) A peer that did not answer is not a
/// refusal: it gets the row by HELLO when it is back, and says there if it cannot hold it.
pub(super) fn settle(shared: &Shared, st: &mut State, p: &mut Pending) {
    if let Then::Reply(r) | Then::Created(r) = &mut p.then {
        if r.rshmid != 0 {
            r.rshmid = st.table.resolve(r.rshmid);
            if matches!(p.req.op, Op::Get { .. }) {
                if let Some(seg) = st.table.get(r.rshmid) {
                    r.size = seg.size as u64;
                }
            }
        }
    }
    if let Then::Created(r) = &p.then {
        let ours = |s: &Segment| s.rshmid == r.rshmid && s.owner == shared.me;
        if p.status.0 != 0 && st.table.get(r.rshmid).is_some_and(ours) {
            let rshmid = r.rshmid;
            log!("rshmid {rshmid} undone: {}", p.failures.join("; "));
            destroy(shared, st, rshmid);
        }
    }
}

/// Every ACK is in (or will never come): answer the program.
pub(super) fn finish(shared: &Shared, p: Pending) {
    let r = match p.then {
        Then::Reply(r) => {
            for f in &p.failures {
                log!("{}: {f}", p.req.op);
            }
            r
        }
        Then::Created(r) if p.status.0 == 0 => {
            for f in &p.failures {
                log!("{}: {f}", p.req.op);
            }
            r
        }
        Then::Created(_) => {
            let call = match p.req.op {
                Op::Get { key, size } => format!("rshmget(key=0x{key:08x}, size={size})"),
                ref op => op.to_string(),
            };
            let why = p.failures.join("; ");
            Reply::error(
                &p.req,
                p.status.0,
                format!("{call}: {why}; the segment was not made"),
            )
        }
        Then::Changed(r) if p.failures.is_empty() => r,
        // A peer's refusal has its own errno; silence is a time-out.
        Then::Changed(r) => Reply::error(
            &p.req,
            if p.status.0 != 0 {
                p.status.0
            } else {
                libc::ETIMEDOUT
            },
            format!(
                "rshmChanged(rshmid={}): {}",
                r.rshmid,
                p.failures.join("; ")
            ),
        ),
        Then::Forwarded(r, _) if p.failures.is_empty() && p.status.0 == 0 => r,
        Then::Forwarded(_, rshmid) if p.failures.is_empty() => Reply::error(
            &p.req,
            p.status.0,
            format!(
                "rshmctl(rshmid={rshmid}, IPC_RMID) at the owner: {}",
                p.status.1
            ),
        ),
        Then::Forwarded(_, rshmid) => Reply::error(
            &p.req,
            libc::EHOSTUNREACH,
            format!(
                "rshmctl(rshmid={rshmid}, IPC_RMID): {}",
                p.failures.join("; ")
            ),
        ),
    };
    reply(shared, &p.req, &r);
}

/// An ACK for frame `seq` from `peer`. One that names a winner answers our NEW: the key was
/// created elsewhere at the same moment, with a lower rshmid; we adopt that row.
pub(super) fn on_ack(
    shared: &Shared,
    peer: SocketAddrV4,
    seq: u32,
    (status, text, winner): (i32, String, Option<Entry>),
) {
    let mut st = lock(shared);
    if let Some(e) = winner {
        if let Err(x) = adopt(&mut st, &e) {
            log!("adopting rshmid {} from {peer}: {x}", e.rshmid);
        }
    }
    let Some(p) = st.pending.get_mut(&seq) else {
        return; // a frame nobody waits for (a MARK, a DESTROY), or one that timed out
    };
    if !p.waiting.contains(&peer) {
        return; // a second answer to one frame (a refused part, then its later parts)
    }
    p.waiting.retain(|a| *a != peer);
    if status != 0 {
        p.failures.push(format!("peer {peer} refused: {text}"));
        p.status = (status, text);
    }
    if p.waiting.is_empty() {
        let mut p = st.pending.remove(&seq).expect("present");
        settle(shared, &mut st, &mut p);
        drop(st);
        finish(shared, p);
    }
}

/// Our connection to `peer` is gone: whoever waits for its ACK will not get one.
pub(super) fn peer_down(shared: &Shared, peer: SocketAddrV4, why: &str) {
    let mut st = lock(shared);
    if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
        p.synced = false;
        if let Some(out) = p.out.take() {
            out.close(Duration::ZERO);
        }
    }
    let seqs: Vec<u32> = st
        .pending
        .iter()
        .filter(|(_, p)| p.waiting.contains(&peer))
        .map(|(seq, _)| *seq)
        .collect();
    let mut done = Vec::new();
    for seq in seqs {
        let p = st.pending.get_mut(&seq).expect("present");
        p.waiting.retain(|a| *a != peer);
        p.failures.push(format!("peer {peer} went down ({why})"));
        if p.waiting.is_empty() {
            done.extend(st.pending.remove(&seq));
        }
    }
    for p in &mut done {
        settle(shared, &mut st, p);
    }
    drop(st);
    for p in done {
        finish(shared, p);
    }
}

/// Reads one whole frame. The header is checked before the body is allocated, so a peer can
/// never make us buffer more than [`crate::wire::rshm::MAX_BODY`] (see "What a frame costs"
/// in [`crate::wire::rshm`]).
///
/// The end of the stream between two frames is a close (`UnexpectedEof`); inside a frame it
/// is a truncated frame (`InvalidData`), which the caller logs.
pub(super) fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<(u32, Frame)> {
    let n = read_raw(s, buf)?;
    let (seq, frame, _) = Frame::decode(&buf[..n])?;
    Ok((seq, frame))
}

/// One whole frame's bytes into `buf[..n]` (header checked, body at most `MAX_BODY`), not
/// decoded: for a reader that decodes it in place (a STATE, `hello::read_states`). Returns `n`.
///
/// `buf` grows to the longest frame read so far and never shrinks: growing a `Vec` writes
/// zeros into the new part, and doing that for every 1 MiB frame of a large STATE would cost
/// about as much as receiving it.
pub(super) fn read_raw(s: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < FRAME_HEADER_LEN {
        buf.resize(FRAME_HEADER_LEN, 0);
    }
    match fill(s, &mut buf[..FRAME_HEADER_LEN])? {
        0 => return Err(io::ErrorKind::UnexpectedEof.into()),
        n if n < FRAME_HEADER_LEN => return Err(truncated(n, FRAME_HEADER_LEN)),
        _ => {}
    }
    let (_, len, _) = Frame::decode_header(&buf[..FRAME_HEADER_LEN])?;
    let end = FRAME_HEADER_LEN + len;
    if buf.len() < end {
        buf.resize(end, 0);
    }
    let n = fill(s, &mut buf[FRAME_HEADER_LEN..end])?;
    if n < len {
        return Err(truncated(FRAME_HEADER_LEN + n, end));
    }
    Ok(end)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(super) fn fill(s: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(super) fn truncated(got: usize, want: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("truncated frame: the stream ended after {got} of its {want} bytes"),
    )
}

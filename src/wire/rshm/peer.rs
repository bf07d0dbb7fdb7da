//! RSHM's peer frames: what servers send each other on TCP once authenticated ([`Frame`]),
//! and the table row ([`Entry`]) and runs ([`Run`], [`StampedRun`]) they carry.
//!
//! # Format
//! The tables "Peer frame" and `Entry` in [`crate::wire::rshm`]. A frame's header is read
//! first ([`Frame::decode_header`]), so no body longer than `MAX_BODY` is ever buffered.

use super::{clip, get_addr, get_text, invalid, put_addr};
use super::{
    FRAME_HEADER_LEN, FRAME_MAGIC, MAX_BODY, RUN_HEADER_LEN, STATE_RUN_HEADER_LEN,
    UPDATE_FIXED_LEN, VERSION,
};
use crate::params::{
    RSHM_MAX_FRAME_DATA, RSHM_MAX_PEERS, RSHM_MAX_RUNS, RSHM_MAX_SEGMENT, RSHM_MAX_SEGMENTS,
};
use crate::wire::{DecodeError, Reader, Writer};
use std::fmt;
use std::net::SocketAddrV4;

mod state_ref;
pub use state_ref::{StampedRunRef, StateRef};

/// One row of a node's table as it travels between nodes (the seed's `struct rshminfo`, minus
/// what is only meaningful on one node: the local shmid and the attach address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rshmid: i32,
    pub key: i32,
    pub size: u64,
    /// The node that created it, and alone removes it.
    pub owner: SocketAddrV4,
    pub marked: bool,
    pub version: u64,
    /// Each node's own attach count, as that node last reported it.
    pub counts: Vec<(SocketAddrV4, u32)>,
}

impl Entry {
    fn encode_into(&self, w: &mut Writer) {
        let counts = &self.counts[..self.counts.len().min(RSHM_MAX_PEERS + 1)];
        w.i32(self.rshmid).i32(self.key).u64(self.size);
        put_addr(w, self.owner);
        w.u8(u8::from(self.marked))
            .u8(counts.len() as u8)
            .u64(self.version);
        for (node, n) in counts {
            put_addr(w, *node);
            w.u32(*n);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
        let rshmid = r.i32()?;
        let key = r.i32()?;
        let size = r.u64()?;
        let owner = get_addr(r)?;
        let flags = r.u8()?;
        let ncounts = usize::from(r.u8()?);
        let version = r.u64()?;
        if rshmid <= 0 {
            return invalid(format!("rshmid {rshmid} is not positive"));
        }
        if size == 0 || size > RSHM_MAX_SEGMENT as u64 {
            return invalid(format!(
                "segment size {size} outside 1..={RSHM_MAX_SEGMENT}"
            ));
        }
        if ncounts > RSHM_MAX_PEERS + 1 {
            return invalid(format!("{ncounts} node counts: too many"));
        }
        let mut counts = Vec::with_capacity(ncounts);
        for _ in 0..ncounts {
            let node = get_addr(r)?;
            counts.push((node, r.u32()?));
        }
        Ok(Entry {
            rshmid,
            key,
            size,
            owner,
            marked: flags & 1 != 0,
            version,
            counts,
        })
    }
}

/// A node's whole table, as HELLO and HELLO_REPLY carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's listen address: its name in every table.
    pub node: SocketAddrV4,
    /// A random number drawn when the sender started: a restart shows as a new id.
    pub node_id: u32,
    pub entries: Vec<Entry>,
}

/// One message between two servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    HelloReply(Hello),
    /// A segment was created on its owner.
    New(Entry),
    /// `node` now has `count` attaches to `rshmid`.
    Count {
        rshmid: i32,
        node: SocketAddrV4,
        count: u32,
    },
    /// A diff: the runs of bytes `origin` changed, stamped `(version, origin)`. A change too
    /// large for one frame travels as frames `part` 0, 1, 2, ..., every one but the last with
    /// `more` set; the receiver applies (and acknowledges) the change once, at the last.
    Update {
        rshmid: i32,
        version: u64,
        origin: SocketAddrV4,
        part: u32,
        more: bool,
        runs: Vec<Run>,
    },
    /// "Please remove": sent to the owner by the node where `rshmctl(IPC_RMID)` was called.
    Rmid {
        rshmid: i32,
    },
    /// The owner marked the segment for removal.
    Mark {
        rshmid: i32,
    },
    /// The owner destroyed it: the cluster-wide attach count reached zero.
    Destroy {
        rshmid: i32,
    },
    /// The answer to the request with the same seq: 0 or an errno, and why; for a NEW that
    /// lost a race for its key, the row that won.
    Ack {
        status: i32,
        text: String,
        winner: Option<Entry>,
    },
    /// The sender is shutting down.
    Bye,
    /// Contents of a segment, each run with the stamp of the update that wrote it (after a
    /// HELLO_REPLY); `last` ends the row's STATE frames.
    State {
        rshmid: i32,
        last: bool,
        runs: Vec<StampedRun>,
    },
}

/// One run of a STATE: bytes and the stamp `(version, origin)` of the update that wrote them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampedRun {
    pub version: u64,
    pub origin: SocketAddrV4,
    pub run: Run,
}

/// One run of an UPDATE: `data` goes at `offset` (u64: a segment may be larger than 4 GiB
/// where the kernel's `shmmax` allows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The bytes an UPDATE with these runs takes on the wire, header included (one frame; a
/// change cut into several frames costs the sum of theirs, see [`update_frames`]).
pub fn update_len(runs: &[Run]) -> usize {
    UPDATE_FIXED_LEN
        + runs
            .iter()
            .map(|r| RUN_HEADER_LEN + r.data.len())
            .sum::<usize>()
}

/// One UPDATE frame of a large change, borrowed from the change's runs: its number, whether
/// more follow, and the pieces `(offset, bytes)` of the runs it carries. Encoded one at a time
/// ([`UpdatePart::encode`]), so a 1 GiB change is never copied whole into frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdatePart<'a> {
    pub part: u32,
    pub more: bool,
    pub runs: Vec<(u64, &'a [u8])>,
}

/// One change's runs, cut into UPDATE frames that each hold at most [`RSHM_MAX_FRAME_DATA`]
/// run bytes and [`RSHM_MAX_RUNS`] runs: a run longer than what is left of a frame is split
/// in several pieces (cut at word boundaries, so every piece stays word-aligned). The parts
/// are numbered from 0, and all but the last say `more`; no piece is empty; nothing is copied.
pub fn update_parts(runs: &[Run]) -> Vec<UpdatePart<'_>> {
    let mut parts = Vec::new();
    let mut cur: Vec<(u64, &[u8])> = Vec::new();
    let mut room = RSHM_MAX_FRAME_DATA;
    for run in runs {
        let mut at = 0;
        while at < run.data.len() {
            if room < 8 || cur.len() == RSHM_MAX_RUNS {
                parts.push(UpdatePart {
                    part: parts.len() as u32,
                    more: true,
                    runs: std::mem::take(&mut cur),
                });
                room = RSHM_MAX_FRAME_DATA;
            }
            let left = run.data.len() - at;
            // What is left of this frame, rounded down to whole words (the last piece of a
            // run may end mid-word, with the run).
            let take = if left <= room { left } else { room - room % 8 };
            cur.push((run.offset + at as u64, &run.data[at..at + take]));
            at += take;
            room -= take;
        }
    }
    parts.push(UpdatePart {
        part: parts.len() as u32,
        more: false,
        runs: cur,
    });
    parts
}

impl UpdatePart<'_> {
    /// The frame's bytes, header included, as [`Frame::encode`] would make them.
    pub fn encode(&self, rshmid: i32, version: u64, origin: SocketAddrV4, seq: u32) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.len());
        w.bytes(FRAME_MAGIC).u16(VERSION).u8(5).u8(0);
        w.u32((self.len() - FRAME_HEADER_LEN) as u32).u32(seq);
        w.i32(rshmid).u64(version);
        put_addr(&mut w, origin);
        w.u32(self.part)
            .u8(u8::from(self.more))
            .u32(self.runs.len() as u32);
        for (offset, data) in &self.runs {
            w.u64(*offset).u32(data.len() as u32).bytes(data);
        }
        w.finish()
    }

    /// Its length on the wire, header included.
    pub fn len(&self) -> usize {
        UPDATE_FIXED_LEN
            + self
                .runs
                .iter()
                .map(|(_, d)| RUN_HEADER_LEN + d.len())
                .sum::<usize>()
    }

    /// Never: a part has at least its fixed fields.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// As an owned frame (tests, and the trace).
    pub fn to_frame(&self, rshmid: i32, version: u64, origin: SocketAddrV4) -> Frame {
        Frame::Update {
            rshmid,
            version,
            origin,
            part: self.part,
            more: self.more,
            runs: self
                .runs
                .iter()
                .map(|(offset, data)| Run {
                    offset: *offset,
                    data: data.to_vec(),
                })
                .collect(),
        }
    }
}

/// The frames of [`update_parts`], owned: each run piece copied.
pub fn update_frames(rshmid: i32, version: u64, origin: SocketAddrV4, runs: &[Run]) -> Vec<Frame> {
    update_parts(runs)
        .iter()
        .map(|p| p.to_frame(rshmid, version, origin))
        .collect()
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Hello(_) => 1,
            Frame::HelloReply(_) => 2,
            Frame::New(_) => 3,
            Frame::Count { .. } => 4,
            Frame::Update { .. } => 5,
            Frame::Rmid { .. } => 6,
            Frame::Mark { .. } => 7,
            Frame::Destroy { .. } => 8,
            Frame::Ack { .. } => 9,
            Frame::Bye => 10,
            Frame::State { .. } => 11,
        }
    }

    /// Header and body, ready for one `write_all`.
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut w = Writer::with_capacity(FRAME_HEADER_LEN + 64);
        w.bytes(FRAME_MAGIC).u16(VERSION).u8(self.kind()).u8(0);
        w.u32(0).u32(seq); // the length is patched in below
        match self {
            Frame::Hello(h) | Frame::HelloReply(h) => {
                put_addr(&mut w, h.node);
                w.u32(h.node_id).u32(h.entries.len() as u32);
                for e in &h.entries {
                    e.encode_into(&mut w);
                }
            }
            Frame::New(e) => e.encode_into(&mut w),
            Frame::Count {
                rshmid,
                node,
                count,
            } => {
                w.i32(*rshmid);
                put_addr(&mut w, *node);
                w.u32(*count);
            }
            Frame::Update {
                rshmid,
                version,
                origin,
                part,
                more,
                runs,
            } => {
                w.i32(*rshmid).u64(*version);
                put_addr(&mut w, *origin);
                w.u32(*part).u8(u8::from(*more)).u32(runs.len() as u32);
                for run in runs {
                    w.u64(run.offset)
                        .u32(run.data.len() as u32)
                        .bytes(&run.data);
                }
            }
            Frame::State { rshmid, last, runs } => {
                w.i32(*rshmid).u8(u8::from(*last)).u32(runs.len() as u32);
                for r in runs {
                    w.u64(r.version);
                    put_addr(&mut w, r.origin);
                    w.u64(r.run.offset)
                        .u32(r.run.data.len() as u32)
                        .bytes(&r.run.data);
                }
            }
            Frame::Rmid { rshmid } | Frame::Mark { rshmid } | Frame::Destroy { rshmid } => {
                w.i32(*rshmid);
            }
            Frame::Ack {
                status,
                text,
                winner,
            } => {
                let text = clip(text);
                w.i32(*status).u16(text.len() as u16).bytes(text.as_bytes());
                match winner {
                    Some(e) => {
                        w.u8(1);
                        e.encode_into(&mut w);
                    }
                    None => {
                        w.u8(0);
                    }
                }
            }
            Frame::Bye => {}
        }
        let mut buf = w.finish();
        let len = (buf.len() - FRAME_HEADER_LEN) as u32;
        buf[8..12].copy_from_slice(&len.to_le_bytes());
        buf
    }

    /// The header alone: `(kind, body length, seq)`. A reader of a stream calls this on the
    /// first [`FRAME_HEADER_LEN`] bytes, so that it knows, before allocating anything, that the
    /// body is no longer than [`MAX_BODY`].
    pub fn decode_header(bytes: &[u8]) -> Result<(u8, usize, u32), DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(FRAME_MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return invalid(format!("frame version {version}, expected {VERSION}"));
        }
        let kind = r.u8()?;
        if !(1..=11).contains(&kind) {
            return invalid(format!("unknown frame kind {kind}"));
        }
        if r.u8()? != 0 {
            return invalid("nonzero reserved byte in frame header");
        }
        let len = r.u32()? as usize;
        if len > MAX_BODY {
            return invalid(format!(
                "frame body of {len} bytes, at most {MAX_BODY} allowed"
            ));
        }
        Ok((kind, len, r.u32()?))
    }

    /// One whole frame from the front of `bytes`: `(seq, frame, bytes used)`.
    pub fn decode(bytes: &[u8]) -> Result<(u32, Frame, usize), DecodeError> {
        decode_framed(bytes, Frame::decode_body)
    }

    fn decode_body(kind: u8, r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
        Ok(match kind {
            1 | 2 => Frame::decode_hello(kind, r)?,
            3 => Frame::New(Entry::decode_from(r)?),
            4 => {
                let rshmid = r.i32()?;
                let node = get_addr(r)?;
                Frame::Count {
                    rshmid,
                    node,
                    count: r.u32()?,
                }
            }
            5 => Frame::decode_update(r)?,
            11 => Frame::decode_state(r)?,
            6 => Frame::Rmid { rshmid: r.i32()? },
            7 => Frame::Mark { rshmid: r.i32()? },
            8 => Frame::Destroy { rshmid: r.i32()? },
            9 => {
                let status = r.i32()?;
                let n = usize::from(r.u16()?);
                let text = get_text(r, n)?;
                let winner = match r.u8()? {
                    0 => None,
                    1 => Some(Entry::decode_from(r)?),
                    other => return invalid(format!("ACK has_winner {other}, expected 0 or 1")),
                };
                Frame::Ack {
                    status,
                    text,
                    winner,
                }
            }
            10 => Frame::Bye,
            other => return invalid(format!("unknown frame kind {other}")),
        })
    }

    /// A HELLO (`kind` 1) or HELLO_REPLY (2): a node's whole table.
    fn decode_hello(kind: u8, r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
        let node = get_addr(r)?;
        let node_id = r.u32()?;
        let n = r.u32()? as usize;
        if n > RSHM_MAX_SEGMENTS {
            return invalid(format!("table of {n} segments: too many"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(Entry::decode_from(r)?);
        }
        let h = Hello {
            node,
            node_id,
            entries,
        };
        Ok(if kind == 1 {
            Frame::Hello(h)
        } else {
            Frame::HelloReply(h)
        })
    }

    /// An UPDATE: runs in order, none empty, none overlapping, none past the largest segment,
    /// at most [`RSHM_MAX_FRAME_DATA`] run bytes in all.
    fn decode_update(r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
        let rshmid = r.i32()?;
        let version = r.u64()?;
        let origin = get_addr(r)?;
        let part = r.u32()?;
        let more = match r.u8()? {
            0 => false,
            1 => true,
            other => return invalid(format!("UPDATE more {other}, expected 0 or 1")),
        };
        let n = r.u32()? as usize;
        // Each run takes at least RUN_HEADER_LEN + 1 bytes of the body: more runs cannot be.
        if n > RSHM_MAX_RUNS || n > r.remaining() / (RUN_HEADER_LEN + 1) {
            return invalid(format!(
                "update of {n} runs: at most {RSHM_MAX_RUNS}, and the body must hold them"
            ));
        }
        let mut runs = Vec::with_capacity(n);
        let (mut end, mut data) = (0u64, 0usize);
        for _ in 0..n {
            let offset = r.u64()?;
            let len = r.u32()? as usize;
            check_run("run", offset, len, end, &mut data)?;
            end = offset + len as u64;
            runs.push(Run {
                offset,
                data: r.bytes(len)?.to_vec(),
            });
        }
        Ok(Frame::Update {
            rshmid,
            version,
            origin,
            part,
            more,
            runs,
        })
    }

    /// A STATE: as an UPDATE's runs, each with its own stamp.
    fn decode_state(r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
        let s = StateRef::decode_from(r)?;
        let runs = s
            .runs
            .iter()
            .map(|x| StampedRun {
                version: x.version,
                origin: x.origin,
                run: Run {
                    offset: x.offset,
                    data: x.data.to_vec(),
                },
            })
            .collect();
        Ok(Frame::State {
            rshmid: s.rshmid,
            last: s.last,
            runs,
        })
    }
}

/// A run's place, checked before its bytes are copied: not empty, after the run before it
/// (`end`), inside the largest segment, and within the frame's budget of run bytes (`data`,
/// the bytes of the runs before it).
fn check_run(
    what: &str,
    offset: u64,
    len: usize,
    end: u64,
    data: &mut usize,
) -> Result<(), DecodeError> {
    *data += len;
    if len == 0
        || offset < end
        || offset.saturating_add(len as u64) > RSHM_MAX_SEGMENT as u64
        || *data > RSHM_MAX_FRAME_DATA
    {
        return invalid(format!(
            "{what} of {len} bytes at {offset}: empty, overlaps the one before, exceeds \
             {RSHM_MAX_SEGMENT}, or brings the frame past {RSHM_MAX_FRAME_DATA} run bytes"
        ));
    }
    Ok(())
}

/// One trace line per frame: `UPDATE rshmid=7 v=3 4096 bytes at 0`.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Hello(h) | Frame::HelloReply(h) => {
                let name = if matches!(self, Frame::Hello(_)) {
                    "HELLO"
                } else {
                    "HELLO_REPLY"
                };
                write!(f, "{name} node={} id={:08x} table=[", h.node, h.node_id)?;
                for (i, e) in h.entries.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    write!(f, "{sep}{}/0x{:08x}/v{}", e.rshmid, e.key, e.version)?;
                }
                write!(f, "]")
            }
            Frame::New(e) => write!(
                f,
                "NEW rshmid={} key=0x{:08x} size={} owner={}",
                e.rshmid, e.key, e.size, e.owner
            ),
            Frame::Count {
                rshmid,
                node,
                count,
            } => write!(f, "COUNT rshmid={rshmid} node={node} attaches={count}"),
            Frame::Update {
                rshmid,
                version,
                origin,
                part,
                more,
                runs,
            } => {
                // The runs as offset+length, at most 8 of them: the trace shows what a diff is.
                write!(f, "UPDATE rshmid={rshmid} v={version}@{origin}")?;
                if *part > 0 || *more {
                    write!(f, " part {part}{}", if *more { " more" } else { " last" })?;
                }
                write!(f, " runs=[")?;
                for (i, run) in runs.iter().take(8).enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    write!(f, "{sep}{}+{}", run.offset, run.data.len())?;
                }
                if runs.len() > 8 {
                    write!(f, " ...{} more", runs.len() - 8)?;
                }
                write!(f, "] {} bytes on the wire", update_len(runs))
            }
            Frame::State { rshmid, last, runs } => {
                write!(f, "STATE rshmid={rshmid} runs=[")?;
                for (i, r) in runs.iter().take(8).enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    let (off, len) = (r.run.offset, r.run.data.len());
                    write!(f, "{sep}{off}+{len}:v{}@{}", r.version, r.origin)?;
                }
                if runs.len() > 8 {
                    write!(f, " ...{} more", runs.len() - 8)?;
                }
                write!(f, "]{}", if *last { " last" } else { "" })
            }
            Frame::Rmid { rshmid } => write!(f, "RMID rshmid={rshmid}"),
            Frame::Mark { rshmid } => write!(f, "MARK rshmid={rshmid}"),
            Frame::Destroy { rshmid } => write!(f, "DESTROY rshmid={rshmid}"),
            Frame::Ack {
                status: 0,
                winner: Some(e),
                ..
            } => write!(f, "ACK ok, key 0x{:08x} is rshmid {}", e.key, e.rshmid),
            Frame::Ack { status: 0, .. } => write!(f, "ACK ok"),
            Frame::Ack { status, text, .. } => write!(f, "ACK errno={status} {text}"),
            Frame::Bye => write!(f, "BYE"),
        }
    }
}

/// The framing that every reader of a whole frame shares: the header, then the body of the
/// length it gives, handed to `body` with the frame's kind. Returns `(seq, what body made,
/// bytes used)`. Inside a complete body, running short is the sender's fault, not a reason to
/// wait; and a body must use every byte of it.
pub(super) fn decode_framed<'a, T>(
    bytes: &'a [u8],
    body: impl FnOnce(u8, &mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<(u32, T, usize), DecodeError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(short_header(bytes));
    }
    let (kind, len, seq) = Frame::decode_header(&bytes[..FRAME_HEADER_LEN])?;
    let total = FRAME_HEADER_LEN + len;
    if bytes.len() < total {
        return Err(DecodeError::NeedMore(total - bytes.len()));
    }
    let mut r = Reader::new(&bytes[FRAME_HEADER_LEN..total]);
    let made = body(kind, &mut r).map_err(|e| match e {
        DecodeError::NeedMore(_) => DecodeError::Invalid(format!(
            "frame kind {kind}: body of {len} bytes is too short"
        )),
        e => e,
    })?;
    if r.remaining() != 0 {
        return invalid(format!(
            "frame kind {kind}: {} stray bytes after the body",
            r.remaining()
        ));
    }
    Ok((seq, made, total))
}

/// Bytes too short for a frame header: more are needed, unless they cannot begin the magic,
/// in which case they are garbage already.
fn short_header(bytes: &[u8]) -> DecodeError {
    let n = bytes.len().min(4);
    if bytes[..n] != FRAME_MAGIC[..n] {
        return DecodeError::Invalid(format!(
            "bad magic {:?}, expected \"RSHP\"",
            String::from_utf8_lossy(&bytes[..n])
        ));
    }
    DecodeError::NeedMore(FRAME_HEADER_LEN - bytes.len())
}

//! RSHM's bytes: the queue messages between a program and its local server, and the frames
//! between servers on TCP (seed 000).
//!
//! Two formats, one per boundary:
//!
//! ```text
//!   P1 --[Request, mtype 1]--> queue --> rshm_server A ==[Frame]==> TCP ==> rshm_server B
//!   P1 <--[Reply, mtype tid]-- queue <--       (A)     <==[ACK]===  TCP <==     (B)
//! ```
//!
//! Byte order is little-endian, as everywhere in [`crate::wire`]. Every format starts with a
//! 4-byte ASCII magic and a 2-byte version; a decoder refuses any other.
//!
//! # Queue request (program -> server, `mtype` 1)
//!
//! | offset | size | field      | encoding                                                  |
//! |--------|------|------------|-----------------------------------------------------------|
//! | 0      | 4    | magic      | `RSHQ`                                                    |
//! | 4      | 2    | version    | u16, [`VERSION`]                                          |
//! | 6      | 1    | op         | u8: 1 GET, 2 AT, 3 DT, 4 RMID, 5 CHANGED, 6 WAIT, 7 LS    |
//! | 7      | 1    | zero       | must be 0                                                 |
//! | 8      | 4    | reply_type | i32 > 0: the `mtype` the reply is sent with (caller's tid)|
//! | 12     | 4    | serial     | u32: echoed in the reply, so a late reply is recognised   |
//! | 16     | 4    | pid        | i32: the caller's pid                                     |
//! | 20     | 4    | rshmid     | i32 (AT, DT, RMID, CHANGED, WAIT)                         |
//! | 24     | 4    | key        | i32 (GET)                                                 |
//! | 28     | 4    | node       | u32 (WAIT: the node id of the server that counted `seen`) |
//! | 32     | 8    | size       | u64 (GET; 0 = open an existing segment only)              |
//! | 40     | 8    | seen       | u64 (WAIT: the replica's `changes` the caller has seen)   |
//! | 48     | 8    | timeout_ms | u64 (WAIT)                                                |
//!
//! Always [`REQUEST_LEN`] bytes.
//!
//! # Queue reply (server -> program, `mtype` = the request's reply_type)
//!
//! | offset | size  | field    | encoding                                                 |
//! |--------|-------|----------|----------------------------------------------------------|
//! | 0      | 4     | magic    | `RSHR`                                                   |
//! | 4      | 2     | version  | u16                                                      |
//! | 6      | 1     | op       | u8, the request's op                                     |
//! | 7      | 1     | zero     |                                                          |
//! | 8      | 4     | serial   | u32, the request's serial                                |
//! | 12     | 4     | status   | i32: 0, or an errno (ENOENT, EIDRM, ETIMEDOUT, ...)      |
//! | 16     | 4     | rshmid   | i32                                                      |
//! | 20     | 4     | shmid    | i32: the local replica (AT)                              |
//! | 24     | 8     | size     | u64: the segment's size; CHANGED: the UPDATE frame's     |
//! |        |       |          | length in bytes, header included (what each peer gets)   |
//! | 32     | 8     | version  | u64: the segment's version (AT, CHANGED, WAIT)           |
//! | 40     | 8     | changes  | u64: how often this node's replica has changed (AT,      |
//! |        |       |          | CHANGED, WAIT): what a WAIT's `seen` compares with       |
//! | 48     | 4     | semid    | i32: the segment's change gate (`rshm::gate`): its       |
//! |        |       |          | semaphore set, or -1 for none (then sem and value are 0) |
//! | 52     | 2     | sem      | u16: the gate's semaphore in that set                    |
//! | 54     | 2     | value    | u16: the gate's count when `changes` was read, <= 32767  |
//! | 56     | 4     | node     | u32: this server's node id, drawn at random when it      |
//! |        |       |          | starts: `changes` counts only for this run of the server |
//! | 60     | 2     | n        | u16 text length, at most [`MAX_TEXT`]                    |
//! | 62     | 2     | m        | u16 LS entry count, at most `RSHM_MAX_SEGMENTS`          |
//! | 64     | 2     | p        | u16 LS peer count, at most `RSHM_MAX_PEERS`              |
//! | 66     | 2     | zero     |                                                          |
//! | 68     | n     | text     | UTF-8: the error message, or (LS) this node's address    |
//! | 68+n   | 48*m  | entries  | [`LsEntry`], below                                       |
//! | ...    | 7*p   | peers    | ip u32, port u16, up u8 (1 = connected)                  |
//!
//! An LS entry (48 bytes):
//!
//! | offset | size | field    | encoding                                  |
//! |--------|------|----------|-------------------------------------------|
//! | 0      | 4    | rshmid   | i32                                       |
//! | 4      | 4    | key      | i32                                       |
//! | 8      | 8    | size     | u64                                       |
//! | 16     | 4    | owner ip | u32 (IPv4, most significant octet first)  |
//! | 20     | 2    | owner    | u16 port                                  |
//! | 22     | 1    | marked   | u8, 1 = marked for removal                |
//! | 23     | 1    | zero     |                                           |
//! | 24     | 4    | attaches | u32, cluster-wide                         |
//! | 28     | 4    | shmid    | i32, the local replica                    |
//! | 32     | 8    | version  | u64                                       |
//! | 40     | 8    | sent     | u64: length of the last UPDATE frame this |
//! |        |      |          | node sent for it (0: none yet)            |
//!
//! # Authentication (server <-> server, TCP, before any frame)
//!
//! Every connection starts with three fixed-size messages that prove, in both directions,
//! that each end knows the cluster secret (`crate::rshm::auth`), without sending it:
//!
//! ```text
//!   dialer                                         acceptor
//!     ── CHALLENGE  nonce_d ──────────────────────▶
//!     ◀───────────── ANSWER  nonce_a, mac_a ──────   mac_a = HMAC(secret, "rshm acceptor" ‖ nonce_d ‖ nonce_a)
//!     ── PROOF  mac_d ────────────────────────────▶   mac_d = HMAC(secret, "rshm dialer" ‖ nonce_a ‖ nonce_d)
//!     ── HELLO ... (frames, below) ───────────────▶   only once mac_d checked out
//! ```
//!
//! | offset | size | field   | encoding                                                   |
//! |--------|------|---------|------------------------------------------------------------|
//! | 0      | 4    | magic   | `RSHA`                                                     |
//! | 4      | 2    | version | u16, [`AUTH_VERSION`]                                      |
//! | 6      | 1    | kind    | u8: 1 CHALLENGE, 2 ANSWER, 3 PROOF                         |
//! | 7      | 1    | zero    | must be 0                                                  |
//! | 8      | 32   | nonce   | 32 random bytes (CHALLENGE, ANSWER); zeros in a PROOF      |
//! | 40     | 32   | mac     | HMAC-SHA256 (ANSWER, PROOF); zeros in a CHALLENGE          |
//!
//! Always [`AUTH_LEN`] bytes. The two labels differ, so neither end's MAC can be reflected
//! back as the other's; each MAC covers the other end's fresh nonce, so an old one cannot be
//! replayed.
//!
//! # Peer frame (server <-> server, TCP)
//!
//! ```text
//!   [ RSHP | ver | kind | 0 | body length | seq ][ body ............ ]
//!     0      4     6      7   8             12     16
//! ```
//!
//! | offset | size | field  | encoding                                                      |
//! |--------|------|--------|---------------------------------------------------------------|
//! | 0      | 4    | magic  | `RSHP`                                                        |
//! | 4      | 2    | version| u16                                                           |
//! | 6      | 1    | kind   | u8: 1 HELLO, 2 HELLO_REPLY, 3 NEW, 4 COUNT, 5 UPDATE, 6 RMID, |
//! |        |      |        | 7 MARK, 8 DESTROY, 9 ACK, 10 BYE, 11 STATE                    |
//! | 7      | 1    | zero   |                                                               |
//! | 8      | 4    | length | u32 body length, at most [`MAX_BODY`], checked before any     |
//! |        |      |        | allocation (see "What a frame costs" below)                   |
//! | 12     | 4    | seq    | u32: a request's number; ACK repeats the number it answers    |
//!
//! Bodies (an "addr" is 6 bytes: IPv4 u32, most significant octet first, then port u16):
//!
//! | kind        | body                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | HELLO       | addr (the sender's listen address), node u32, count u32, `Entry` each |
//! | HELLO_REPLY | as HELLO                                                              |
//! | NEW         | one `Entry`                                                           |
//! | COUNT       | rshmid i32, addr (the node), count u32 (its attaches, absolute)       |
//! | UPDATE      | rshmid i32, version u64, addr (origin), nruns u32, then each run:     |
//! |             | offset u32, len u32, len bytes (runs ascending, never overlapping)    |
//! | RMID        | rshmid i32                                                            |
//! | MARK        | rshmid i32                                                            |
//! | DESTROY     | rshmid i32                                                            |
//! | ACK         | status i32 (0 or errno), n u16, text (n bytes, at most [`MAX_TEXT`]), |
//! |             | has_winner u8 (0 or 1), then (if 1) one `Entry`: the segment that won |
//! |             | a race for the NEW's key (see `crate::rshm` on concurrent rshmget)    |
//! | BYE         | empty                                                                 |
//! | STATE       | rshmid i32, last u8 (1: the row's last STATE), nruns u32, then each   |
//! |             | run: version u64, addr (origin), offset u32, len u32, len bytes (runs |
//! |             | ascending, never overlapping): the contents, each run with the stamp  |
//! |             | of the update that wrote it. Sent after a HELLO_REPLY, for every row  |
//! |             | (one or more frames each, the last with `last` 1); words never written|
//! |             | are zeros everywhere and are not sent.                                |
//!
//! An UPDATE is a *diff*: only the runs of bytes that changed since the last update (see
//! `crate::rshm::diff`). Its fixed part is 38 bytes with the header, and each run costs 8 bytes
//! plus its bytes, so a 1-byte change (one 8-byte word) is a 54-byte frame. The decoder checks,
//! before it allocates, that there are at most `RSHM_MAX_RUNS` runs, and that every run is
//! non-empty, lies inside [`RSHM_MAX_SEGMENT`] and follows the one before it: so the runs of
//! one frame never add up to more than the largest segment, plus a bounded list of runs.
//!
//! # What a frame costs
//! A peer can announce at most [`MAX_BODY`] bytes (the whole largest segment and its run
//! headers), and nothing is allocated before that check. Receiving a frame then costs its body
//! in the reader's buffer plus the decoded copy of its runs: a small constant times the largest
//! segment at worst, and always in proportion to the bytes that actually arrived, never to a
//! length a peer merely claims. `tests/rshm_fuzz.rs` measures this with a counting allocator.
//! The decoders are lenient in one way: reserved bytes documented as zero are not checked.
//!
//! # Decoding entry points
//! [`Request::decode`], [`Reply::decode`], [`Frame::decode_header`] and [`Frame::decode`]:
//! each takes any bytes, never panics, and answers NeedMore or Invalid.
//!
//! A table `Entry` (32 bytes + 10 per count):
//!
//! | offset | size    | field    | encoding                                          |
//! |--------|---------|----------|---------------------------------------------------|
//! | 0      | 4       | rshmid   | i32 > 0                                           |
//! | 4      | 4       | key      | i32                                               |
//! | 8      | 8       | size     | u64, 1..=`RSHM_MAX_SEGMENT`                       |
//! | 16     | 6       | owner    | addr                                              |
//! | 22     | 1       | flags    | u8, bit 0: marked for removal                     |
//! | 23     | 1       | ncounts  | u8, at most `RSHM_MAX_PEERS` + 1                  |
//! | 24     | 8       | version  | u64                                               |
//! | 32     | 10 each | counts   | addr, then u32: that node's attaches              |
//!
//! Counts travel as absolute numbers per node, never as +1/-1: applying one twice, or merging
//! a table that already has it, gives the same result.

use super::{DecodeError, Reader, Writer};
use crate::params::{RSHM_MAX_PEERS, RSHM_MAX_RUNS, RSHM_MAX_SEGMENT, RSHM_MAX_SEGMENTS};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The version of both formats; bumped when a layout changes (2: diffs, STATE, LS `sent`).
pub const VERSION: u16 = 3;
/// Magic of a queue request, a queue reply and a peer frame.
pub const REQUEST_MAGIC: &[u8; 4] = b"RSHQ";
pub const REPLY_MAGIC: &[u8; 4] = b"RSHR";
pub const FRAME_MAGIC: &[u8; 4] = b"RSHP";
/// Magic and version of the authentication messages (see "Authentication").
pub const AUTH_MAGIC: &[u8; 4] = b"RSHA";
pub const AUTH_VERSION: u16 = 1;
/// An authentication message is always this long.
pub const AUTH_LEN: usize = 72;
/// The length of a nonce and of a MAC in an authentication message.
pub const AUTH_NONCE_LEN: usize = 32;
/// A request is always this long.
pub const REQUEST_LEN: usize = 56;
/// The fixed part of a reply.
pub const REPLY_HEADER_LEN: usize = 68;
/// One LS entry in a reply.
pub const LS_ENTRY_LEN: usize = 48;
/// One LS peer in a reply.
pub const LS_PEER_LEN: usize = 7;
/// The longest text (an error message) in a reply or an ACK.
pub const MAX_TEXT: usize = 256;
/// The largest reply: it must fit one queue message (`msgmax` is 8192 by default).
pub const MAX_REPLY: usize =
    REPLY_HEADER_LEN + MAX_TEXT + RSHM_MAX_SEGMENTS * LS_ENTRY_LEN + RSHM_MAX_PEERS * LS_PEER_LEN;
/// A peer frame's header.
pub const FRAME_HEADER_LEN: usize = 16;
/// An UPDATE's fixed part: header, rshmid, version, origin, nruns.
pub const UPDATE_FIXED_LEN: usize = FRAME_HEADER_LEN + 22;
/// A STATE body's fixed part: rshmid, last, nruns.
pub const STATE_FIXED_LEN: usize = 9;
/// What each run adds to a STATE besides its bytes: its stamp, offset and length.
pub const STATE_RUN_HEADER_LEN: usize = 22;
/// What each run adds to an UPDATE besides its bytes: offset and length.
pub const RUN_HEADER_LEN: usize = 8;
/// The largest body a frame may announce: an UPDATE (or STATE) of the whole largest segment,
/// or a HELLO with the fullest table, whichever is larger. (A sender whose diff would be
/// larger than one run of the whole segment sends that one run instead.)
pub const MAX_BODY: usize = {
    let update = STATE_FIXED_LEN + STATE_RUN_HEADER_LEN + RSHM_MAX_SEGMENT;
    let hello = 14 + RSHM_MAX_SEGMENTS * (32 + 10 * (RSHM_MAX_PEERS + 1));
    if update > hello {
        update
    } else {
        hello
    }
};

fn invalid<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Invalid(why.into()))
}

fn put_addr(w: &mut Writer, a: SocketAddrV4) {
    w.u32(u32::from(*a.ip())).u16(a.port());
}

fn get_addr(r: &mut Reader<'_>) -> Result<SocketAddrV4, DecodeError> {
    let ip = Ipv4Addr::from(r.u32()?);
    Ok(SocketAddrV4::new(ip, r.u16()?))
}

fn get_text(r: &mut Reader<'_>, n: usize) -> Result<String, DecodeError> {
    if n > MAX_TEXT {
        return invalid(format!("text of {n} bytes, at most {MAX_TEXT} allowed"));
    }
    Ok(String::from_utf8_lossy(r.bytes(n)?).into_owned())
}

/// Cuts a message to [`MAX_TEXT`] bytes on a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---------------------------------------------------------------------------------------------
// Queue messages.

/// What a program asks its local server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `rshmget(key, size)`; size 0 opens an existing segment only.
    Get { key: i32, size: u64 },
    /// `rshmat(rshmid)`: count an attach, reply with the local replica's shmid.
    At { rshmid: i32 },
    /// `rshmdt`: count a detach.
    Dt { rshmid: i32 },
    /// `rshmctl(rshmid, IPC_RMID)`.
    Rmid { rshmid: i32 },
    /// `rshmChanged(rshmid)`.
    Changed { rshmid: i32 },
    /// `rshm_wait_changed(rshmid, timeout)`: reply once the replica's change count exceeds
    /// `seen`, which server `node` counted (any other node id: the caller has seen nothing).
    Wait {
        rshmid: i32,
        node: u32,
        seen: u64,
        timeout_ms: u64,
    },
    /// The node's table, for `client ls`.
    Ls,
}

impl Op {
    fn code(&self) -> u8 {
        match self {
            Op::Get { .. } => 1,
            Op::At { .. } => 2,
            Op::Dt { .. } => 3,
            Op::Rmid { .. } => 4,
            Op::Changed { .. } => 5,
            Op::Wait { .. } => 6,
            Op::Ls => 7,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get { key, size } => write!(f, "GET key=0x{key:08x} size={size}"),
            Op::At { rshmid } => write!(f, "AT rshmid={rshmid}"),
            Op::Dt { rshmid } => write!(f, "DT rshmid={rshmid}"),
            Op::Rmid { rshmid } => write!(f, "RMID rshmid={rshmid}"),
            Op::Changed { rshmid } => write!(f, "CHANGED rshmid={rshmid}"),
            Op::Wait {
                rshmid,
                node,
                seen,
                timeout_ms,
            } => write!(
                f,
                "WAIT rshmid={rshmid} seen={seen}@{node:08x} timeout={timeout_ms}ms"
            ),
            Op::Ls => write!(f, "LS"),
        }
    }
}

/// One request on the server's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The `mtype` of the reply: the calling thread's id, so threads never see each other's.
    pub reply_type: i32,
    /// Echoed in the reply: a reply with another serial is a late answer to an earlier call.
    pub serial: u32,
    pub pid: i32,
    pub op: Op,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let (rshmid, key, node, size, seen, timeout) = match self.op {
            Op::Get { key, size } => (0, key, 0, size, 0, 0),
            Op::At { rshmid } | Op::Dt { rshmid } | Op::Rmid { rshmid } => (rshmid, 0, 0, 0, 0, 0),
            Op::Changed { rshmid } => (rshmid, 0, 0, 0, 0, 0),
            Op::Wait {
                rshmid,
                node,
                seen,
                timeout_ms,
            } => (rshmid, 0, node, 0, seen, timeout_ms),
            Op::Ls => (0, 0, 0, 0, 0, 0),
        };
        let mut w = Writer::with_capacity(REQUEST_LEN);
        w.bytes(REQUEST_MAGIC).u16(VERSION).u8(self.op.code()).u8(0);
        w.i32(self.reply_type).u32(self.serial).i32(self.pid);
        w.i32(rshmid)
            .i32(key)
            .u32(node)
            .u64(size)
            .u64(seen)
            .u64(timeout);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(REQUEST_MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return invalid(format!("request version {version}, expected {VERSION}"));
        }
        let code = r.u8()?;
        r.u8()?;
        let reply_type = r.i32()?;
        let serial = r.u32()?;
        let pid = r.i32()?;
        let rshmid = r.i32()?;
        let key = r.i32()?;
        let node = r.u32()?;
        let size = r.u64()?;
        let seen = r.u64()?;
        let timeout_ms = r.u64()?;
        if r.remaining() != 0 {
            return invalid(format!(
                "request of {} bytes, expected {REQUEST_LEN}",
                bytes.len()
            ));
        }
        if reply_type <= 0 {
            return invalid(format!("reply type {reply_type} is not positive"));
        }
        let op = match code {
            1 => Op::Get { key, size },
            2 => Op::At { rshmid },
            3 => Op::Dt { rshmid },
            4 => Op::Rmid { rshmid },
            5 => Op::Changed { rshmid },
            6 => Op::Wait {
                rshmid,
                node,
                seen,
                timeout_ms,
            },
            7 => Op::Ls,
            other => return invalid(format!("unknown request op {other}")),
        };
        Ok(Request {
            reply_type,
            serial,
            pid,
            op,
        })
    }
}

/// One row of `client ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsEntry {
    pub rshmid: i32,
    pub key: i32,
    pub size: u64,
    pub owner: SocketAddrV4,
    pub marked: bool,
    /// Attaches summed over every node.
    pub attaches: u32,
    /// This node's replica.
    pub shmid: i32,
    pub version: u64,
    /// The length of the last UPDATE frame this node sent for it: its bytes on the wire.
    pub sent: u64,
}

/// A configured peer and whether this node's connection to it is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsPeer {
    pub addr: SocketAddrV4,
    pub up: bool,
}

/// The most a System V semaphore holds (Linux's SEMVMX): the highest gate value a reply carries.
pub const SEMVMX: u16 = 32767;

/// A segment's change gate, as a reply names it (see `crate::rshm::gate`): semaphore `sem`
/// of set `semid`, whose count was `value` when the reply's `changes` was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateRef {
    pub semid: i32,
    pub sem: u16,
    pub value: u16,
}

/// The server's answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub op: u8,
    pub serial: u32,
    /// 0, or the errno the API turns into an `io::Error`.
    pub status: i32,
    pub rshmid: i32,
    pub shmid: i32,
    pub size: u64,
    pub version: u64,
    pub changes: u64,
    pub gate: Option<GateRef>,
    /// The server's node id: `changes` is its count, meaningless to another run of it.
    pub node: u32,
    /// The error message (status != 0), or this node's address (LS).
    pub text: String,
    pub entries: Vec<LsEntry>,
    pub peers: Vec<LsPeer>,
}

impl Reply {
    /// A reply to `req` with every field zero.
    pub fn to(req: &Request) -> Reply {
        Reply {
            op: req.op.code(),
            serial: req.serial,
            ..Reply::default()
        }
    }

    /// A failed reply: an errno and a message that says what went wrong.
    pub fn error(req: &Request, errno: i32, text: impl Into<String>) -> Reply {
        Reply {
            status: errno,
            text: text.into(),
            ..Reply::to(req)
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let text = clip(&self.text);
        let entries = &self.entries[..self.entries.len().min(RSHM_MAX_SEGMENTS)];
        let peers = &self.peers[..self.peers.len().min(RSHM_MAX_PEERS)];
        let mut w = Writer::with_capacity(REPLY_HEADER_LEN + text.len() + 40 * entries.len());
        w.bytes(REPLY_MAGIC).u16(VERSION).u8(self.op).u8(0);
        w.u32(self.serial)
            .i32(self.status)
            .i32(self.rshmid)
            .i32(self.shmid);
        w.u64(self.size).u64(self.version).u64(self.changes);
        let gate = self.gate.unwrap_or(GateRef {
            semid: -1,
            sem: 0,
            value: 0,
        });
        w.i32(gate.semid)
            .u16(gate.sem)
            .u16(gate.value)
            .u32(self.node);
        w.u16(text.len() as u16)
            .u16(entries.len() as u16)
            .u16(peers.len() as u16)
            .u16(0);
        w.bytes(text.as_bytes());
        for e in entries {
            w.i32(e.rshmid).i32(e.key).u64(e.size);
            put_addr(&mut w, e.owner);
            w.u8(u8::from(e.marked))
                .u8(0)
                .u32(e.attaches)
                .i32(e.shmid)
                .u64(e.version)
                .u64(e.sent);
        }
        for p in peers {
            put_addr(&mut w, p.addr);
            w.u8(u8::from(p.up));
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(REPLY_MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return invalid(format!("reply version {version}, expected {VERSION}"));
        }
        let op = r.u8()?;
        r.u8()?;
        let serial = r.u32()?;
        let status = r.i32()?;
        let rshmid = r.i32()?;
        let shmid = r.i32()?;
        let size = r.u64()?;
        let version = r.u64()?;
        let changes = r.u64()?;
        let gate = match (r.i32()?, r.u16()?, r.u16()?) {
            (semid, _, _) if semid < 0 => None,
            // A semaphore never holds more than SEMVMX: a program would wait for a count
            // no gate can reach.
            (_, _, value) if value > SEMVMX => {
                return invalid(format!("gate value {value} is above SEMVMX ({SEMVMX})"))
            }
            (semid, sem, value) => Some(GateRef { semid, sem, value }),
        };
        let node = r.u32()?;
        let n = usize::from(r.u16()?);
        let m = usize::from(r.u16()?);
        let p = usize::from(r.u16()?);
        r.u16()?;
        if m > RSHM_MAX_SEGMENTS || p > RSHM_MAX_PEERS {
            return invalid(format!("reply lists {m} segments and {p} peers: too many"));
        }
        let text = get_text(&mut r, n)?;
        let mut entries = Vec::with_capacity(m);
        for _ in 0..m {
            let rshmid = r.i32()?;
            let key = r.i32()?;
            let size = r.u64()?;
            let owner = get_addr(&mut r)?;
            let marked = r.u8()? != 0;
            r.u8()?;
            entries.push(LsEntry {
                rshmid,
                key,
                size,
                owner,
                marked,
                attaches: r.u32()?,
                shmid: r.i32()?,
                version: r.u64()?,
                sent: r.u64()?,
            });
        }
        let mut peers = Vec::with_capacity(p);
        for _ in 0..p {
            let addr = get_addr(&mut r)?;
            peers.push(LsPeer {
                addr,
                up: r.u8()? != 0,
            });
        }
        if r.remaining() != 0 {
            return invalid(format!("{} stray bytes after the reply", r.remaining()));
        }
        Ok(Reply {
            op,
            serial,
            status,
            rshmid,
            shmid,
            size,
            version,
            changes,
            gate,
            node,
            text,
            entries,
            peers,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Peer frames.

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
    /// A diff: the runs of bytes `origin` changed, stamped `(version, origin)`.
    Update {
        rshmid: i32,
        version: u64,
        origin: SocketAddrV4,
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

/// One run of an UPDATE: `data` goes at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub offset: u32,
    pub data: Vec<u8>,
}

/// The bytes an UPDATE with these runs takes on the wire, header included.
pub fn update_len(runs: &[Run]) -> usize {
    UPDATE_FIXED_LEN
        + runs
            .iter()
            .map(|r| RUN_HEADER_LEN + r.data.len())
            .sum::<usize>()
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
                runs,
            } => {
                w.i32(*rshmid).u64(*version);
                put_addr(&mut w, *origin);
                w.u32(runs.len() as u32);
                for run in runs {
                    w.u32(run.offset)
                        .u32(run.data.len() as u32)
                        .bytes(&run.data);
                }
            }
            Frame::State { rshmid, last, runs } => {
                w.i32(*rshmid).u8(u8::from(*last)).u32(runs.len() as u32);
                for r in runs {
                    w.u64(r.version);
                    put_addr(&mut w, r.origin);
                    w.u32(r.run.offset)
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
        if bytes.len() < FRAME_HEADER_LEN {
            // Too short for a header; but bytes that cannot begin the magic are garbage now.
            let n = bytes.len().min(4);
            if bytes[..n] != FRAME_MAGIC[..n] {
                return invalid(format!(
                    "bad magic {:?}, expected \"RSHP\"",
                    String::from_utf8_lossy(&bytes[..n])
                ));
            }
            return Err(DecodeError::NeedMore(FRAME_HEADER_LEN - bytes.len()));
        }
        let (kind, len, seq) = Frame::decode_header(&bytes[..FRAME_HEADER_LEN])?;
        let total = FRAME_HEADER_LEN + len;
        if bytes.len() < total {
            return Err(DecodeError::NeedMore(total - bytes.len()));
        }
        let mut r = Reader::new(&bytes[FRAME_HEADER_LEN..total]);
        // Inside a complete body, running short is the sender's fault, not a reason to wait.
        let frame = Frame::decode_body(kind, &mut r).map_err(|e| match e {
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
        Ok((seq, frame, total))
    }

    fn decode_body(kind: u8, r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
        Ok(match kind {
            1 | 2 => {
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
                if kind == 1 {
                    Frame::Hello(h)
                } else {
                    Frame::HelloReply(h)
                }
            }
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
            5 => {
                let rshmid = r.i32()?;
                let version = r.u64()?;
                let origin = get_addr(r)?;
                let n = r.u32()? as usize;
                // Each run takes at least 9 bytes of the body: more runs than that cannot be.
                if n > RSHM_MAX_RUNS || n > r.remaining() / (RUN_HEADER_LEN + 1) {
                    return invalid(format!(
                        "update of {n} runs: at most {RSHM_MAX_RUNS}, and the body must hold them"
                    ));
                }
                let mut runs = Vec::with_capacity(n);
                let mut end = 0usize;
                for _ in 0..n {
                    let offset = r.u32()?;
                    let len = r.u32()? as usize;
                    let start = offset as usize;
                    if len == 0 || start < end || start.saturating_add(len) > RSHM_MAX_SEGMENT {
                        return invalid(format!(
                            "run of {len} bytes at {offset}: empty, overlaps the one before, \
                             or exceeds {RSHM_MAX_SEGMENT}"
                        ));
                    }
                    end = start + len;
                    runs.push(Run {
                        offset,
                        data: r.bytes(len)?.to_vec(),
                    });
                }
                Frame::Update {
                    rshmid,
                    version,
                    origin,
                    runs,
                }
            }
            11 => {
                let rshmid = r.i32()?;
                let last = match r.u8()? {
                    0 => false,
                    1 => true,
                    other => return invalid(format!("STATE last {other}, expected 0 or 1")),
                };
                let n = r.u32()? as usize;
                if n > RSHM_MAX_RUNS || n > r.remaining() / (STATE_RUN_HEADER_LEN + 1) {
                    return invalid(format!(
                        "state of {n} runs: at most {RSHM_MAX_RUNS}, and the body must hold them"
                    ));
                }
                let mut runs = Vec::with_capacity(n);
                let mut end = 0usize;
                for _ in 0..n {
                    let version = r.u64()?;
                    let origin = get_addr(r)?;
                    let offset = r.u32()?;
                    let len = r.u32()? as usize;
                    let start = offset as usize;
                    if len == 0 || start < end || start.saturating_add(len) > RSHM_MAX_SEGMENT {
                        return invalid(format!(
                            "state run of {len} bytes at {offset}: empty, overlaps the one \
                             before, or exceeds {RSHM_MAX_SEGMENT}"
                        ));
                    }
                    end = start + len;
                    runs.push(StampedRun {
                        version,
                        origin,
                        run: Run {
                            offset,
                            data: r.bytes(len)?.to_vec(),
                        },
                    });
                }
                Frame::State { rshmid, last, runs }
            }
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
                runs,
            } => {
                // The runs as offset+length, at most 8 of them: the trace shows what a diff is.
                write!(f, "UPDATE rshmid={rshmid} v={version}@{origin} runs=[")?;
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

// ---------------------------------------------------------------------------------------------
// Authentication messages.

/// Which of the three authentication messages (see "Authentication" above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// Dialer -> acceptor: the dialer's nonce.
    Challenge = 1,
    /// Acceptor -> dialer: the acceptor's nonce and its MAC over both nonces.
    Answer = 2,
    /// Dialer -> acceptor: the dialer's MAC over both nonces.
    Proof = 3,
}

/// One authentication message. Fields a kind does not use are zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    pub kind: AuthKind,
    pub nonce: [u8; AUTH_NONCE_LEN],
    pub mac: [u8; AUTH_NONCE_LEN],
}

impl Auth {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(AUTH_LEN);
        w.bytes(AUTH_MAGIC)
            .u16(AUTH_VERSION)
            .u8(self.kind as u8)
            .u8(0)
            .bytes(&self.nonce)
            .bytes(&self.mac);
        w.finish()
    }

    /// Exactly [`AUTH_LEN`] bytes, or NeedMore / Invalid.
    pub fn decode(bytes: &[u8]) -> Result<Auth, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(AUTH_MAGIC)?;
        let version = r.u16()?;
        if version != AUTH_VERSION {
            return invalid(format!(
                "authentication version {version}, expected {AUTH_VERSION}"
            ));
        }
        let kind = match r.u8()? {
            1 => AuthKind::Challenge,
            2 => AuthKind::Answer,
            3 => AuthKind::Proof,
            k => return invalid(format!("unknown authentication message kind {k}")),
        };
        if r.u8()? != 0 {
            return invalid("nonzero reserved byte in an authentication message");
        }
        let mut nonce = [0u8; AUTH_NONCE_LEN];
        nonce.copy_from_slice(r.bytes(AUTH_NONCE_LEN)?);
        let mut mac = [0u8; AUTH_NONCE_LEN];
        mac.copy_from_slice(r.bytes(AUTH_NONCE_LEN)?);
        if r.remaining() != 0 {
            return invalid(format!(
                "authentication message of {} bytes, expected {AUTH_LEN}",
                bytes.len()
            ));
        }
        Ok(Auth { kind, nonce, mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_messages_round_trip_and_bytes_are_as_documented() {
        let a = Auth {
            kind: AuthKind::Answer,
            nonce: [0x11; AUTH_NONCE_LEN],
            mac: [0x22; AUTH_NONCE_LEN],
        };
        let b = a.encode();
        assert_eq!(b.len(), AUTH_LEN);
        assert_eq!(&b[..8], b"RSHA\x01\x00\x02\x00");
        assert_eq!(&b[8..40], &[0x11; 32]);
        assert_eq!(&b[40..], &[0x22; 32]);
        assert_eq!(Auth::decode(&b).unwrap(), a);
        assert_eq!(Auth::decode(&b[..71]), Err(DecodeError::NeedMore(1)));
        for (at, v) in [(0, b'X'), (4, 2), (6, 4), (6, 0), (7, 1)] {
            let mut bad = b.clone();
            bad[at] = v;
            assert!(
                matches!(Auth::decode(&bad), Err(DecodeError::Invalid(_))),
                "{at}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(Auth::decode(&long), Err(DecodeError::Invalid(_))));
        // A peer frame is not an authentication message.
        assert!(matches!(
            Auth::decode(&Frame::Bye.encode(1)),
            Err(DecodeError::Invalid(_))
        ));
    }

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn requests_round_trip_and_have_a_fixed_length() {
        for op in [
            Op::Get {
                key: 0x1234,
                size: 4096,
            },
            Op::At { rshmid: 7 },
            Op::Changed { rshmid: 9 },
            Op::Wait {
                rshmid: 9,
                node: 0x0102_0304,
                seen: 3,
                timeout_ms: 500,
            },
            Op::Ls,
        ] {
            let req = Request {
                reply_type: 42,
                serial: 5,
                pid: 100,
                op,
            };
            let bytes = req.encode();
            assert_eq!(bytes.len(), REQUEST_LEN);
            assert_eq!(&bytes[..4], b"RSHQ");
            assert_eq!(Request::decode(&bytes).unwrap(), req);
        }
        let mut bad = Request {
            reply_type: 1,
            serial: 1,
            pid: 1,
            op: Op::Ls,
        }
        .encode();
        bad[6] = 99;
        assert!(matches!(
            Request::decode(&bad),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            Request::decode(&bad[..10]),
            Err(DecodeError::NeedMore(_))
        ));
    }

    #[test]
    fn replies_round_trip_with_entries_and_peers() {
        let reply = Reply {
            op: 7,
            serial: 3,
            status: 0,
            changes: 9,
            node: 0xabcd,
            gate: Some(GateRef {
                semid: 0,
                sem: 3,
                value: 9,
            }),
            text: "127.0.0.1:7001".into(),
            entries: vec![LsEntry {
                rshmid: 12345,
                key: 0x10,
                size: 4096,
                owner: addr(7001),
                marked: true,
                attaches: 2,
                shmid: 99,
                version: 4,
                sent: 54,
            }],
            peers: vec![LsPeer {
                addr: addr(7002),
                up: true,
            }],
            ..Reply::default()
        };
        let bytes = reply.encode();
        assert_eq!(
            bytes.len(),
            REPLY_HEADER_LEN + 14 + LS_ENTRY_LEN + LS_PEER_LEN
        );
        assert_eq!(Reply::decode(&bytes).unwrap(), reply);
        const { assert!(MAX_REPLY <= 8192) };
    }

    #[test]
    fn a_reply_naming_a_gate_value_above_semvmx_is_invalid() {
        let mut reply = Reply {
            gate: Some(GateRef {
                semid: 1,
                sem: 0,
                value: SEMVMX,
            }),
            ..Reply::default()
        };
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        reply.gate = reply.gate.map(|g| GateRef {
            value: SEMVMX + 1,
            ..g
        });
        assert!(matches!(
            Reply::decode(&reply.encode()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn frames_round_trip_and_bytes_are_as_documented() {
        let entry = Entry {
            rshmid: 5,
            key: 6,
            size: 64,
            owner: addr(7001),
            marked: false,
            version: 2,
            counts: vec![(addr(7001), 1), (addr(7002), 0)],
        };
        let frames = [
            Frame::Hello(Hello {
                node: addr(7001),
                node_id: 0xabcd,
                entries: vec![entry.clone()],
            }),
            Frame::New(entry.clone()),
            Frame::Count {
                rshmid: 5,
                node: addr(7002),
                count: 3,
            },
            Frame::Update {
                rshmid: 5,
                version: 9,
                origin: addr(7003),
                runs: vec![
                    Run {
                        offset: 0,
                        data: b"hello\0".to_vec(),
                    },
                    Run {
                        offset: 64,
                        data: vec![1; 8],
                    },
                ],
            },
            Frame::State {
                rshmid: 5,
                last: true,
                runs: vec![
                    StampedRun {
                        version: 9,
                        origin: addr(7003),
                        run: Run {
                            offset: 0,
                            data: vec![7; 16],
                        },
                    },
                    StampedRun {
                        version: 4,
                        origin: addr(7001),
                        run: Run {
                            offset: 16,
                            data: vec![8; 8],
                        },
                    },
                ],
            },
            Frame::Ack {
                status: 110,
                text: "timed out".into(),
                winner: None,
            },
            Frame::Ack {
                status: 0,
                text: String::new(),
                winner: Some(entry.clone()),
            },
            Frame::Bye,
        ];
        for f in frames {
            let bytes = f.encode(77);
            assert_eq!(Frame::decode(&bytes).unwrap(), (77, f.clone(), bytes.len()));
            // Every proper prefix asks for more; none is mistaken for a frame.
            for cut in [0, 3, 15, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert!(matches!(
                        Frame::decode(&bytes[..cut]),
                        Err(DecodeError::NeedMore(_))
                    ));
                }
            }
        }
        let runs = vec![Run {
            offset: 8,
            data: vec![0xee],
        }];
        let upd = Frame::Update {
            rshmid: 1,
            version: 2,
            origin: addr(0x0102),
            runs: runs.clone(),
        }
        .encode(3);
        assert_eq!(
            upd,
            [
                b'R', b'S', b'H', b'P', 3, 0, 5, 0, 31, 0, 0, 0, 3, 0, 0, 0, // header
                1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, // rshmid, version
                1, 0, 0, 127, 2, 1, // origin 127.0.0.1:258
                1, 0, 0, 0, // one run
                8, 0, 0, 0, 1, 0, 0, 0, 0xee // offset, len, data
            ]
        );
        assert_eq!(upd.len(), update_len(&runs));
    }

    #[test]
    fn oversized_and_garbage_frames_are_invalid_before_allocation() {
        let mut big = Frame::Bye.encode(0);
        big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(&big), Err(DecodeError::Invalid(_))));
        assert!(matches!(
            Frame::decode(b"GET / HTTP/1.1\r\n\r\n"),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(Frame::decode(b"XY"), Err(DecodeError::Invalid(_))));
        // A body shorter than its kind needs is invalid, not "need more".
        let mut short = Frame::Rmid { rshmid: 1 }.encode(0);
        short.truncate(FRAME_HEADER_LEN + 2);
        short[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            Frame::decode(&short),
            Err(DecodeError::Invalid(_))
        ));
        // A run that would not fit the largest segment.
        let two = vec![
            Run {
                offset: 0,
                data: vec![0; 4],
            },
            Run {
                offset: 16,
                data: vec![0; 4],
            },
        ];
        let good = Frame::Update {
            rshmid: 1,
            version: 1,
            origin: addr(1),
            runs: two,
        }
        .encode(0);
        let mut upd = good.clone();
        upd[50..54].copy_from_slice(&(RSHM_MAX_SEGMENT as u32).to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        // Runs that overlap (the second starts inside the first), and a run count the body
        // cannot hold.
        let mut upd = good.clone();
        upd[50..54].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        let mut upd = good;
        upd[34..38].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
    }
}

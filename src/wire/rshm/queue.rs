//! RSHM's queue messages: a program's [`Request`] to its local server (`mtype` 1), and the
//! server's [`Reply`] (`mtype` = the caller's thread id).
//!
//! # Format
//! The tables "Queue request" and "Queue reply" in [`crate::wire::rshm`]. One `encode` and
//! one `decode` per message; a decode answers NeedMore or Invalid, never panics.

use super::{clip, get_addr, get_text, invalid, put_addr};
use super::{REPLY_HEADER_LEN, REPLY_MAGIC, REQUEST_LEN, REQUEST_MAGIC, VERSION};
use crate::params::{RSHM_LS_PAGE, RSHM_MAX_PEERS};
use crate::wire::{DecodeError, Reader, Writer};
use std::fmt;
use std::net::SocketAddrV4;

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
    /// `rshmChanged_range(rshmid, offset, len)`: only those bytes are compared and published.
    ChangedRange { rshmid: i32, offset: u64, len: u64 },
    /// `rshm_wait_changed(rshmid, timeout)`: reply once the replica's change count exceeds
    /// `seen`, which server `node` counted (any other node id: the caller has seen nothing).
    Wait {
        rshmid: i32,
        node: u32,
        seen: u64,
        timeout_ms: u64,
    },
    /// One page of the node's table, for `client ls`: the rows with an rshmid above `after`
    /// (0: from the first), at most `RSHM_LS_PAGE` of them.
    Ls { after: i32 },
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
            Op::Ls { .. } => 7,
            Op::ChangedRange { .. } => 8,
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
            Op::ChangedRange {
                rshmid,
                offset,
                len,
            } => write!(f, "CHANGED rshmid={rshmid} offset={offset} len={len}"),
            Op::Wait {
                rshmid,
                node,
                seen,
                timeout_ms,
            } => write!(
                f,
                "WAIT rshmid={rshmid} seen={seen}@{node:08x} timeout={timeout_ms}ms"
            ),
            Op::Ls { after: 0 } => write!(f, "LS"),
            Op::Ls { after } => write!(f, "LS after={after}"),
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
            Op::ChangedRange {
                rshmid,
                offset,
                len,
            } => (rshmid, 0, 0, offset, len, 0),
            Op::Wait {
                rshmid,
                node,
                seen,
                timeout_ms,
            } => (rshmid, 0, node, 0, seen, timeout_ms),
            Op::Ls { after } => (after, 0, 0, 0, 0, 0),
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
            7 => Op::Ls { after: rshmid },
            8 => Op::ChangedRange {
                rshmid,
                offset: size,
                len: seen,
            },
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
    /// LS: the table has rows after the last of `entries`; ask again from there.
    pub more: bool,
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
        let entries = &self.entries[..self.entries.len().min(RSHM_LS_PAGE)];
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
            .u16(u16::from(self.more));
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
        let more = r.u16()? != 0;
        if m > RSHM_LS_PAGE || p > RSHM_MAX_PEERS {
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
            more,
        })
    }
}

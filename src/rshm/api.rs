//! The RSHM API for programs: the seed's five calls, plus a wait for changes.
//!
//! Every call is one request on the local server's queue and one reply:
//!
//! ```text
//!   rshmget/rshmat/...  --msgsnd(type 1, Request)-->  rshm_server
//!                       <--msgrcv(type = my tid, Reply)--
//! ```
//!
//! Rules this module keeps:
//! - **Threads never see each other's replies.** A reply carries the calling thread's id as its
//!   `mtype`, and a serial number that a late reply (to a call that already gave up) does not
//!   match.
//! - **Never a hang.** A reply is awaited until a deadline ([`RSHM_REPLY_TIMEOUT`]); a server
//!   that died, or whose queue was removed, is an error naming the port. An rshmChanged may
//!   move up to a gigabyte, so its deadline grows with the bytes it may send.
//! - **No sleep on the fast path.** The reply usually comes after one TCP round trip, tens of
//!   microseconds; the wait first spins (yielding the CPU) for [`RSHM_SPIN`], then sleeps in
//!   `msgrcv` itself ([`msg_wait::recv_until`]), which the kernel ends the moment the reply is
//!   queued, and a timer signal ends at the deadline. A wait for a change does not spin.
//! - **A wait for a change is no request.** [`Node::rshm_wait_changed`] sleeps on the
//!   segment's change gate, a semaphore the server counts changes on ([`super::gate`]). Only
//!   when there is no gate to sleep on, or it was retired, does it ask the server.
//! - **Attach in the caller's process.** [`Node::rshmat`] gets the local replica's shmid from
//!   the server and calls `shmat` here: see the module [`crate::rshm`] for why.

use super::gate::{self, Woke};
use super::{port_from_env, queue_key, IPC_RMID, RSHM_REQUEST_TYPE};
use crate::params::{
    RSHM_ACK_BYTES_PER_SEC, RSHM_MAX_SEGMENT, RSHM_REPLY_TIMEOUT, RSHM_SEND_PATIENCE, RSHM_SPIN,
};
use crate::sys::msg::{msgget, MsgId};
use crate::sys::shm::{Access, Attachment, Get, ShmId};
use crate::sys::{self, msg_wait, process};
use crate::wire::rshm::{GateRef, LsEntry, LsPeer, Op, Reply, Request, MAX_REPLY};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What a thread has seen of a segment on one node: the replica's change count, and the gate
/// that counts the next changes (see [`super::gate`]).
#[derive(Clone, Copy, Default)]
struct Seen {
    /// The node id of the server that counted `changes` (0: nothing seen yet).
    node: u32,
    changes: u64,
    gate: Option<GateRef>,
    /// The segment's size, from this thread's rshmat (0: not attached here): what an
    /// rshmChanged of it may cost (see [`change_patience`]).
    size: u64,
}

impl Seen {
    /// What a reply to AT, CHANGED or WAIT tells its caller it has now seen.
    fn of(r: &Reply) -> Seen {
        Seen {
            node: r.node,
            changes: r.changes,
            gate: r.gate,
            size: 0,
        }
    }
}

/// How much longer than a plain call an rshmChanged of `bytes` may take: the server diffs
/// them, sends them, and waits for the peers to take them in, allowing one second per
/// `RSHM_ACK_BYTES_PER_SEC` for that wait; twice that covers its own work too. A 4 KiB change
/// adds nothing; a whole 1 GiB segment adds 32 s, so that a slow but working change is not
/// taken for a dead server.
fn change_patience(bytes: u64) -> Duration {
    Duration::from_secs(2 * (bytes / RSHM_ACK_BYTES_PER_SEC))
}

/// What one thread has seen, and in which process: a child made by `fork` inherits the
/// forking thread's table, and starts again with nothing seen, as a new thread does.
#[derive(Default)]
struct SeenTable {
    pid: u32,
    segments: HashMap<(u16, i32), Seen>,
}

thread_local! {
    /// What this thread has seen of each segment, per node (port, rshmid): what "changed"
    /// means to [`Node::rshm_wait_changed`]. Updated by rshmat, rshmChanged and each wait. Per
    /// thread, so that one thread's wait never hides a change from another thread that has not
    /// seen it; a new thread starts with nothing seen.
    ///
    /// Reached with `try_with`, never `with`: a C program may call in from an `atexit` handler
    /// or a thread-exit destructor, after this table is gone (`with` would panic). Then the
    /// thread has nothing seen and keeps nothing: a wait asks the server, and returns at the
    /// next change.
    static SEEN: RefCell<SeenTable> = RefCell::new(SeenTable::default());
}

/// Request serials, process-wide.
static SERIAL: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on this thread's table, first emptied if it was inherited across `fork`; `None`
/// once the thread's locals are destroyed.
fn with_seen<R>(f: impl FnOnce(&mut HashMap<(u16, i32), Seen>) -> R) -> Option<R> {
    SEEN.try_with(|t| {
        // try_borrow_mut: a re-entrant call (from a signal handler, say) finds it busy.
        let mut t = t.try_borrow_mut().ok()?;
        let me = std::process::id();
        if t.pid != me {
            t.pid = me;
            t.segments.clear();
        }
        Some(f(&mut t.segments))
    })
    .ok()
    .flatten()
}

fn seen(port: u16, rshmid: i32) -> Seen {
    with_seen(|m| m.get(&(port, rshmid)).copied())
        .flatten()
        .unwrap_or_default()
}

/// Records what this thread has now seen, unless it had already seen more.
fn saw(port: u16, rshmid: i32, new: Seen) {
    with_seen(|m| {
        let s = m.entry((port, rshmid)).or_default();
        // A newer count, or one from a server that restarted since (a count of its own).
        if new.node != s.node || new.changes >= s.changes {
            *s = Seen {
                size: new.size.max(s.size),
                ..new
            };
        }
    });
}

/// A node, as a program sees it: the queue of the server on one port.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    port: u16,
    queue: MsgId,
}

/// What `client ls` prints: this node's address, its table, its peers.
#[derive(Clone, Debug)]
pub struct Listing {
    pub node: String,
    pub entries: Vec<LsEntry>,
    pub peers: Vec<LsPeer>,
}

impl Node {
    /// The server on `port`; fails at once if there is none.
    pub fn open(port: u16) -> io::Result<Node> {
        let key = queue_key(port);
        match msgget(key, Get::Open) {
            Ok(queue) => Ok(Node { port, queue }),
            Err(e) => Err(sys::sys_error(
                format!("no rshm_server on port {port} (queue key 0x{key:08x})"),
                io::Error::from_raw_os_error(sys::errno(&e).unwrap_or(libc::ENOENT)),
            )),
        }
    }

    /// The server named by `RSHM_PORT`, or on the default port.
    pub fn from_env() -> io::Result<Node> {
        Node::open(port_from_env()?)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rshmget(key, size)`: the rshmid of the segment with this key anywhere in the group;
    /// if there is none, this node creates it (and owns it). `size` 0 only opens.
    pub fn rshmget(&self, key: i32, size: usize) -> io::Result<i32> {
        let r = self.call(
            Op::Get {
                key,
                size: size as u64,
            },
            Duration::ZERO,
        )?;
        Ok(r.rshmid)
    }

    /// `rshmat(rshmid)`: counted by the server on every node, attached here.
    pub fn rshmat(&self, rshmid: i32) -> io::Result<RshmAttachment> {
        let r = self.call(Op::At { rshmid }, Duration::ZERO)?;
        let att = match ShmId(r.shmid).attach(Access::ReadWrite) {
            Ok(a) => a,
            Err(e) => {
                // Undo the count the server already made.
                let _ = self.call(Op::Dt { rshmid }, Duration::ZERO);
                return Err(e);
            }
        };
        saw(
            self.port,
            rshmid,
            Seen {
                size: r.size,
                ..Seen::of(&r)
            },
        );
        Ok(RshmAttachment {
            node: *self,
            rshmid,
            att: Some(att),
        })
    }

    /// `rshmdt`: detaches here, then the server counts it down on every node. (Dropping the
    /// attachment does the same, but cannot report an error.)
    pub fn rshmdt(&self, mut att: RshmAttachment) -> io::Result<()> {
        drop(att.att.take());
        self.call(Op::Dt { rshmid: att.rshmid }, Duration::ZERO)?;
        Ok(())
    }

    /// `rshmctl(rshmid, IPC_RMID)`: marks the segment; it is destroyed on every node when the
    /// cluster-wide attach count reaches zero. Any other `cmd` is EINVAL, as in the seed.
    pub fn rshmctl(&self, rshmid: i32, cmd: i32) -> io::Result<()> {
        if cmd != IPC_RMID {
            return Err(sys::sys_error(
                format!("rshmctl(rshmid={rshmid}, cmd={cmd}): only IPC_RMID is supported"),
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        self.call(Op::Rmid { rshmid }, Duration::ZERO)?;
        Ok(())
    }

    /// `rshmChanged(rshmid)`: the server sends this node's contents to every connected peer,
    /// and this returns once each has applied them. Returns the segment's new version.
    pub fn rshm_changed(&self, rshmid: i32) -> io::Result<u64> {
        Ok(self.rshm_changed_wire(rshmid)?.0)
    }

    /// As [`Node::rshm_changed`], and also returns the length of the UPDATE frame the server
    /// sent to each peer: the bytes this change cost on the wire (a diff: see `rshm::diff`).
    pub fn rshm_changed_wire(&self, rshmid: i32) -> io::Result<(u64, u64)> {
        // The whole segment may travel: as long as this thread knows it to be, or the largest.
        let size = match seen(self.port, rshmid).size {
            0 => RSHM_MAX_SEGMENT as u64,
            n => n,
        };
        let r = self.call(Op::Changed { rshmid }, change_patience(size))?;
        saw(self.port, rshmid, Seen::of(&r));
        Ok((r.version, r.size))
    }

    /// `rshmChanged_range(rshmid, offset, len)`: as [`Node::rshm_changed`], but the server
    /// compares and publishes only the bytes `[offset, offset + len)` (rounded out to 8-byte
    /// words), reading nothing else: the cost follows `len`, not the segment. Bytes written
    /// outside the range stay unpublished until a later call covers them. EINVAL if `len` is
    /// 0 or the range does not fit the segment.
    pub fn rshm_changed_range(&self, rshmid: i32, offset: u64, len: u64) -> io::Result<u64> {
        Ok(self.rshm_changed_range_wire(rshmid, offset, len)?.0)
    }

    /// As [`Node::rshm_changed_range`], and also the UPDATE frame's length (see
    /// [`Node::rshm_changed_wire`]).
    pub fn rshm_changed_range_wire(
        &self,
        rshmid: i32,
        offset: u64,
        len: u64,
    ) -> io::Result<(u64, u64)> {
        let op = Op::ChangedRange {
            rshmid,
            offset,
            len,
        };
        let r = self.call(op, change_patience(len))?;
        saw(self.port, rshmid, Seen::of(&r));
        Ok((r.version, r.size))
    }

    /// Waits until this node's replica changes (an update arrives) after what this thread
    /// last saw of it. `Ok(false)` if `timeout` passed first; `EIDRM` if it was removed.
    pub fn rshm_wait_changed(&self, rshmid: i32, timeout: Duration) -> io::Result<bool> {
        // Duration::MAX is "for ever": a deadline that does not overflow (see `sys`).
        let deadline = sys::deadline_after(timeout);
        let mut s = seen(self.port, rshmid);
        // The usual way: sleep on the gate, no request at all.
        if let Some(g) = s.gate {
            match gate::wait(g, deadline)? {
                Woke::Changed(value) => {
                    // Each +1 on the gate since the reply is one change (see `gate`).
                    s.changes += u64::from(value.saturating_sub(g.value));
                    s.gate = Some(GateRef { value, ..g });
                    saw(self.port, rshmid, s);
                    return Ok(true);
                }
                // A retired gate, or time up: the server decides, below. (Time up is not
                // necessarily "no change" to it, and a dead server is an error, not a false.)
                Woke::TimedOut | Woke::AskServer => {}
            }
        }
        // No gate, a retired one, or the time is up: ask the server.
        let left = deadline.saturating_duration_since(Instant::now());
        let op = Op::Wait {
            rshmid,
            node: s.node,
            seen: s.changes,
            timeout_ms: left.as_millis().min(u128::from(u32::MAX)) as u64,
        };
        // Only the *server's* "no change in time" means false. No reply at all (the server
        // died, SIGKILL leaves its queue) is an error, or a follower would wait for ever.
        let r = self.call_raw(op, left)?;
        match r.status {
            0 => {
                saw(self.port, rshmid, Seen::of(&r));
                Ok(true)
            }
            libc::ETIMEDOUT => Ok(false),
            errno => Err(sys::sys_error(r.text, io::Error::from_raw_os_error(errno))),
        }
    }

    /// This node's table and peers, for `client ls`: one request per page of the table
    /// ([`RSHM_LS_PAGE`](crate::params::RSHM_LS_PAGE) rows, in rshmid order), each asking
    /// for the rows after the last one seen. A row made or removed meanwhile may be missing
    /// or listed, as with `ls` in a directory that changes; none is listed twice.
    pub fn ls(&self) -> io::Result<Listing> {
        let mut r = self.call(Op::Ls { after: 0 }, Duration::ZERO)?;
        let mut entries = std::mem::take(&mut r.entries);
        while r.more {
            let Some(last) = entries.last() else { break };
            let after = last.rshmid;
            r = self.call(Op::Ls { after }, Duration::ZERO)?;
            // A server keeps its cursor's promise: only rows above `after`, in order.
            entries.extend(r.entries.drain(..).filter(|e| e.rshmid > after));
            if entries.last().is_none_or(|e| e.rshmid <= after) {
                break;
            }
        }
        Ok(Listing {
            node: r.text,
            entries,
            peers: r.peers,
        })
    }

    /// One request and its reply; a reply with an error status is an error.
    fn call(&self, op: Op, extra: Duration) -> io::Result<Reply> {
        let r = self.call_raw(op, extra)?;
        if r.status != 0 {
            return Err(sys::sys_error(
                r.text,
                io::Error::from_raw_os_error(r.status),
            ));
        }
        Ok(r)
    }

    /// One request and its reply, whatever its status. Errors: the queue failed, or no reply
    /// came before the deadline.
    fn call_raw(&self, op: Op, extra: Duration) -> io::Result<Reply> {
        let tid = process::thread_id();
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let what = op.to_string();
        let req = Request {
            reply_type: tid,
            serial,
            pid: std::process::id() as i32,
            op,
        };
        crate::trace!("rshm: queue -> port {} {what}", self.port);
        // IPC_NOWAIT: a full queue is tried again for a moment (someone floods it, and the
        // server is draining it), then it is an error (a stuck server), never a hang.
        let bytes = req.encode();
        let give_up = Instant::now() + RSHM_SEND_PATIENCE;
        while let Err(e) = self.queue.send(RSHM_REQUEST_TYPE, &bytes, true) {
            if !sys::is_timeout(&e) || Instant::now() >= give_up {
                return Err(self.lost(&what, e));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = sys::deadline_after(RSHM_REPLY_TIMEOUT.saturating_add(extra));
        // A wait for a change may last seconds: spinning through them would take the CPU
        // from the very servers that bring the change. Everything else answers within about
        // one TCP round trip, which a spin catches without a wake-up.
        let spin = if matches!(req.op, Op::Wait { .. }) {
            Duration::ZERO
        } else {
            RSHM_SPIN
        };
        let mut buf = vec![0u8; MAX_REPLY];
        loop {
            let Some(n) = self
                .wait_reply(tid, &mut buf, deadline, spin)
                .map_err(|e| self.lost(&what, e))?
            else {
                return Err(sys::sys_error(
                    format!(
                        "{what}: no reply from rshm_server on port {} within {} s",
                        self.port,
                        RSHM_REPLY_TIMEOUT.saturating_add(extra).as_secs()
                    ),
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                ));
            };
            let r = Reply::decode(&buf[..n])?;
            if r.serial != serial {
                continue; // the late answer to an earlier call of this thread that gave up
            }
            return Ok(r);
        }
    }

    /// Spin (yielding) for the reply for `spin`, then sleep in msgrcv until the deadline.
    /// Spinning keeps this core awake and the reply's wake-up cheap; the cost is a little CPU
    /// for [`RSHM_SPIN`] per call, and none while a long wait sleeps.
    fn wait_reply(
        &self,
        tid: i32,
        buf: &mut [u8],
        deadline: Instant,
        spin: Duration,
    ) -> io::Result<Option<usize>> {
        let spin_until = (Instant::now() + spin).min(deadline);
        loop {
            if let Some((_, n)) = self.queue.try_recv(i64::from(tid), buf)? {
                return Ok(Some(n));
            }
            if Instant::now() >= spin_until {
                break;
            }
            std::thread::yield_now();
        }
        Ok(msg_wait::recv_until(self.queue, i64::from(tid), buf, deadline)?.map(|(_, n)| n))
    }

    /// The queue failed under us: the server has gone (EIDRM), or is stuck (EAGAIN).
    fn lost(&self, what: &str, e: io::Error) -> io::Error {
        let why = if sys::is_removed(&e) {
            "the rshm_server's queue was removed (server stopped)"
        } else if sys::is_timeout(&e) {
            "the rshm_server's queue is full (server stuck?)"
        } else {
            "queue error"
        };
        sys::sys_error(
            format!("{what}: port {}: {why}", self.port),
            io::Error::from_raw_os_error(sys::errno(&e).unwrap_or(libc::EIO)),
        )
    }
}

/// A segment attached in this process, through [`Node::rshmat`]. Dropping it detaches and
/// tells the server (as [`Node::rshmdt`] does, without an error to report).
#[derive(Debug)]
pub struct RshmAttachment {
    node: Node,
    rshmid: i32,
    att: Option<Attachment>,
}

impl RshmAttachment {
    pub fn rshmid(&self) -> i32 {
        self.rshmid
    }

    /// The node it was attached through (the one [`Node::rshmdt`] must tell).
    pub fn node(&self) -> Node {
        self.node
    }

    fn att(&self) -> &Attachment {
        self.att.as_ref().expect("attached until dropped")
    }

    /// The segment's size.
    pub fn len(&self) -> usize {
        self.att().len()
    }

    pub fn is_empty(&self) -> bool {
        self.att().is_empty()
    }

    /// Where the segment is mapped in *this* process (what C's `rshmat` returns).
    pub fn addr(&self) -> usize {
        self.att().addr()
    }

    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.att().read_at(offset, buf)
    }

    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.att().write_at(offset, data)
    }

    /// The NUL-terminated string at the start of the segment (all of it if there is no NUL).
    pub fn read_string(&self) -> io::Result<String> {
        let mut buf = vec![0u8; self.len()];
        self.read_at(0, &mut buf)?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// Copies `text` and a NUL to the start of the segment; too long is an error (EFBIG).
    pub fn write_string(&self, text: &str) -> io::Result<()> {
        let need = text.len() + 1;
        if need > self.len() {
            return Err(sys::sys_error(
                format!(
                    "text of {} bytes (with its NUL) does not fit segment {} of {} bytes",
                    need,
                    self.rshmid,
                    self.len()
                ),
                io::Error::from_raw_os_error(libc::EFBIG),
            ));
        }
        self.write_at(0, text.as_bytes())?;
        self.write_at(text.len(), &[0])
    }
}

impl Drop for RshmAttachment {
    fn drop(&mut self) {
        if let Some(att) = self.att.take() {
            drop(att);
            if let Err(e) = self.node.call(
                Op::Dt {
                    rshmid: self.rshmid,
                },
                Duration::ZERO,
            ) {
                crate::trace!("rshmdt on drop: {e}");
            }
        }
    }
}

//! The `device_client` side, the "device support": open a running device, send it commands,
//! read and watch its channels.
//!
//! A command is a round trip through the request and reply blocks of the segment:
//!
//! 1. take SLOT (with `SEM_UNDO`): from now on this client alone may write the request;
//! 2. write the request (with a fresh sequence number), post CMD;
//! 3. wait for DONE, read the reply, check that it carries our sequence number;
//! 4. give SLOT back.
//!
//! Rules:
//! - **Never wait forever.** Every wait is a `semtimedop` cut into slices of
//!   [`params::DEVICE_LIVENESS_SLICE`]: between two slices the client checks that the device's pid
//!   is alive and that its status word still says "running", and it gives up at the deadline.
//!   A device killed with SIGKILL (which removes nothing) is noticed within a slice.
//! - **Stale replies are skipped.** A client that timed out (or was killed) after posting CMD
//!   may leave a DONE behind for a reply nobody read. The next client would take that DONE as its
//!   own, so every reply echoes the request's sequence number and a mismatch means "not mine,
//!   wait again".
//! - **Every semaphore a client holds is taken with `SEM_UNDO`**, and given back on every path
//!   by a guard (`Held`); if the process dies instead, the kernel gives it back.
//! - Readers take LOCK for the few bytes they copy, so they see each channel as one update left
//!   it: never a new setpoint next to an old readback.

use super::{err, NSEMS, SEM_CMD, SEM_DONE, SEM_LOCK, SEM_SLOT, SEM_UPDATE};
use crate::params;
use crate::sys::sem::{self, SemId, SemOp};
use crate::sys::shm::{self, Access, Attachment, Get};
use crate::sys::signal::TermSignals;
use crate::sys::{self, is_removed, Key};
use crate::wire::device::{
    self as wire, Channel, DeviceStatus, Header, Op, Reply, Request, ResultCode,
};
use crate::wire::DecodeError;
use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

/// One channel read under the lock, with the update counter it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// The header's update counter at the moment of the read.
    pub update: u64,
    pub channel: Channel,
}

/// A connection to a running device: the segment attached, the semaphore set's id.
#[derive(Debug)]
pub struct Client {
    att: Attachment,
    /// Opened, not owned: a client never removes the device's semaphores.
    sems: SemId,
    key: Key,
    header: Header,
    timeout: Duration,
    seq: u32,
    /// If set, waits also end when one of these signals is pending.
    sigs: Option<TermSignals>,
    /// The signal that ended a wait, for the program's exit status.
    signal: Cell<Option<i32>>,
}

impl Client {
    /// Opens the device at `key`. Fails clearly if there is none, if the segment is not a device
    /// register file, or if the device that made it is gone.
    pub fn open(key: Key, timeout: Duration) -> io::Result<Client> {
        let no_device = |e: io::Error| {
            if sys::errno(&e) == Some(libc::ENOENT) {
                err(
                    io::ErrorKind::NotFound,
                    format!("no device running at key 0x{key:08x} (start `device` first): {e}"),
                )
            } else {
                e
            }
        };
        let seg = shm::shmget(key, 0, Get::Open).map_err(no_device)?;
        // Read-write: the client writes the request block (and nothing else).
        let att = seg.attach(Access::ReadWrite)?;
        let mut buf = [0u8; wire::HEADER_LEN];
        let header = att
            .read_at(0, &mut buf)
            .ok()
            .and_then(|()| Header::decode(&buf).ok())
            .filter(|h| att.len() >= wire::segment_len(h.channels))
            .ok_or_else(|| {
                err(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the segment at key 0x{key:08x} (shmid {}) is not a device register file",
                        seg.0
                    ),
                )
            })?;
        match header.status {
            DeviceStatus::Running => {}
            other => {
                return Err(err(
                    io::ErrorKind::NotConnected,
                    format!("the device at key 0x{key:08x} is {}", other.name()),
                ))
            }
        }
        if !sys::process::alive(header.pid) {
            return Err(err(
                io::ErrorKind::NotConnected,
                format!(
                    "no device running at key 0x{key:08x}: its device (pid {}) is gone and left \
                     its objects behind (a new `device` recycles them; `detach` removes them)",
                    header.pid
                ),
            ));
        }
        let sems = sem::semget(key, 0, Get::Open).map_err(no_device)?;
        let nsems = sems.stat()?.nsems;
        if nsems != NSEMS {
            return Err(err(
                io::ErrorKind::InvalidData,
                format!(
                    "semaphore set {} has {nsems} semaphores, not {NSEMS}",
                    sems.0
                ),
            ));
        }
        crate::trace!(
            "opened device pid {} at key 0x{key:08x}: {} channels",
            header.pid,
            header.channels
        );
        Ok(Client {
            att,
            sems,
            key,
            header,
            timeout,
            // Sequence numbers start from our pid, so that two clients' numbers rarely meet.
            seq: std::process::id().wrapping_mul(65_536),
            sigs: None,
            signal: Cell::new(None),
        })
    }

    /// Also end waits when SIGINT/SIGTERM/SIGHUP is pending (taken from `sigs`).
    pub fn interruptible(mut self, sigs: TermSignals) -> Client {
        self.sigs = Some(sigs);
        self
    }

    /// The signal that interrupted a wait, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.signal.get()
    }

    /// The device's channel count.
    pub fn channels(&self) -> u16 {
        self.header.channels
    }

    /// The device's pid, from the header.
    pub fn device_pid(&self) -> i32 {
        self.header.pid
    }

    /// `set CH VALUE`: the channel after the command.
    pub fn set(&mut self, channel: u16, value: f64) -> io::Result<Channel> {
        self.command(Op::Set { channel, value })
    }

    /// `get CH`: the channel as the device has it now.
    pub fn get(&mut self, channel: u16) -> io::Result<Channel> {
        self.command(Op::Get { channel })
    }

    /// `reset`: every channel back to 0, at once.
    pub fn reset(&mut self) -> io::Result<()> {
        self.command(Op::Reset).map(|_| ())
    }

    /// One command round trip (see the module header).
    pub fn command(&mut self, op: Op) -> io::Result<Channel> {
        let deadline = Instant::now() + self.timeout;
        self.wait(
            &[SemOp::wait(SEM_SLOT).undo()],
            "the command slot",
            deadline,
        )?;
        // We hold the slot: the request block is ours until the guard gives the slot back.
        let _slot = Held {
            sems: self.sems,
            num: SEM_SLOT,
        };
        self.seq = self.seq.wrapping_add(1);
        let req = Request {
            seq: self.seq,
            op,
            pid: std::process::id() as i32,
        };
        self.att.write_at(wire::REQUEST_OFFSET, &req.encode())?;
        self.sems
            .op(&[SemOp::post(SEM_CMD)])
            .map_err(|e| self.explain(e))?;
        let reply = loop {
            if let Err(e) = self.wait(&[SemOp::wait(SEM_DONE)], "the reply", deadline) {
                // Take our request back if the device has not taken it yet, so that it does
                // not answer it later to nobody. (If it has, the seq check handles the reply.)
                let _ = self.sems.op(&[SemOp::wait(SEM_CMD).nowait()]);
                return Err(e);
            }
            let mut buf = [0u8; wire::REPLY_LEN];
            self.att.read_at(wire::REPLY_OFFSET, &mut buf)?;
            let reply = Reply::decode(&buf)?;
            if reply.seq == self.seq {
                break reply;
            }
            crate::trace!(
                "skipped a stale reply (seq {}, ours is {})",
                reply.seq,
                self.seq
            );
        };
        match reply.result {
            ResultCode::Ok => Ok(reply.channel),
            ResultCode::NoSuchChannel => Err(self.no_such_channel(op)),
            ResultCode::BadValue => Err(err(
                io::ErrorKind::InvalidInput,
                format!(
                    "the device refused the value: it must be a finite number of magnitude at most {:e}",
                    params::DEVICE_VALUE_LIMIT
                ),
            )),
            ResultCode::BadRequest => Err(err(
                io::ErrorKind::InvalidData,
                "the device could not decode our request",
            )),
        }
    }

    fn no_such_channel(&self, op: Op) -> io::Error {
        let ch = match op {
            Op::Set { channel, .. } | Op::Get { channel } => channel,
            Op::Reset => 0,
        };
        err(
            io::ErrorKind::InvalidInput,
            format!(
                "channel {ch} out of range: the device has channels 0..{}",
                self.header.channels - 1
            ),
        )
    }

    /// Reads channel `ch` (and the update counter) under LOCK: a consistent snapshot.
    pub fn snapshot(&self, ch: u16) -> io::Result<Snapshot> {
        if ch >= self.header.channels {
            return Err(self.no_such_channel(Op::Get { channel: ch }));
        }
        let deadline = Instant::now() + self.timeout;
        self.wait(
            &[SemOp::wait(SEM_LOCK).undo()],
            "the register lock",
            deadline,
        )?;
        let held = Held {
            sems: self.sems,
            num: SEM_LOCK,
        };
        let mut head = [0u8; wire::HEADER_LEN];
        let mut block = [0u8; wire::CHANNEL_LEN];
        self.att.read_at(0, &mut head)?;
        self.att.read_at(wire::channel_offset(ch), &mut block)?;
        drop(held);
        let header = Header::decode(&head)?;
        Ok(Snapshot {
            update: header.update,
            channel: Channel::decode(&block)?,
        })
    }

    /// Waits for the device's next update after `after`, then returns channel `ch` as it left
    /// it. Sleeps on the UPDATE gate (no polling); gives up after the timeout plus one period.
    pub fn wait_update(&self, ch: u16, after: u64) -> io::Result<Snapshot> {
        let period = Duration::from_millis(u64::from(self.header.period_ms));
        loop {
            let deadline = Instant::now() + self.timeout + period;
            // "Wait until UPDATE is 0": the device opens the gate right after each update.
            self.wait(&[SemOp::zero(SEM_UPDATE)], "the next update", deadline)?;
            let snap = self.snapshot(ch)?;
            // We may have arrived while the gate was still open for an update we already saw.
            if snap.update > after {
                return Ok(snap);
            }
        }
    }

    /// Reads channel `ch` *without* the lock. Wrong, on purpose: the bad half of the lab's
    /// bad/good pair (`examples/device_poll_bad.rs`). It may see a channel in the middle of
    /// being written.
    pub fn peek_unlocked(&self, ch: u16) -> io::Result<Channel> {
        if ch >= self.header.channels {
            return Err(self.no_such_channel(Op::Get { channel: ch }));
        }
        let mut block = [0u8; wire::CHANNEL_LEN];
        self.att.read_at(wire::channel_offset(ch), &mut block)?;
        Ok(Channel::decode(&block)?)
    }

    /// One semop that may sleep, made safe to sleep on: slices of `semtimedop`, and between two
    /// slices, is the device alive, still running, and has a signal come?
    fn wait(&self, ops: &[SemOp], what: &str, deadline: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            let slice = deadline
                .saturating_duration_since(now)
                .min(params::DEVICE_LIVENESS_SLICE);
            if self
                .sems
                .op_timeout(ops, slice)
                .map_err(|e| self.explain(e))?
            {
                return Ok(());
            }
            self.check_device()?;
            if let Some(sig) = self.sigs.as_ref().and_then(|s| s.pending()) {
                self.signal.set(Some(sig));
                return Err(err(
                    io::ErrorKind::Interrupted,
                    format!("interrupted by signal {sig}"),
                ));
            }
            if Instant::now() >= deadline {
                return Err(err(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out after {:?} waiting for {what} (is the device stuck?)",
                        self.timeout
                    ),
                ));
            }
        }
    }

    /// Is the device still there? Its pid, then its status word.
    fn check_device(&self) -> io::Result<()> {
        if !sys::process::alive(self.header.pid) {
            return Err(err(
                io::ErrorKind::NotConnected,
                format!("the device (pid {}) died", self.header.pid),
            ));
        }
        match self.status() {
            Ok(DeviceStatus::Running) => Ok(()),
            Ok(s) => Err(self.gone(s)),
            Err(e) => Err(err(io::ErrorKind::InvalidData, e)),
        }
    }

    /// The header's status word, read without the lock: it is one aligned 4-byte word, which
    /// is read whole.
    fn status(&self) -> Result<DeviceStatus, DecodeError> {
        let mut word = [0u8; 4];
        self.att
            .read_at(wire::STATUS_OFFSET, &mut word)
            .map_err(|e| DecodeError::Invalid(e.to_string()))?;
        wire::decode_status(word)
    }

    fn gone(&self, s: DeviceStatus) -> io::Error {
        let why = match s {
            DeviceStatus::Removed => "was removed by detach",
            DeviceStatus::Stopped => "stopped",
            DeviceStatus::Starting | DeviceStatus::Running => "went away",
        };
        err(
            io::ErrorKind::NotConnected,
            format!("the device (pid {}) {why}", self.header.pid),
        )
    }

    /// EIDRM from a semaphore means the set is gone: say why, from the status word, which stays
    /// readable as long as we are attached.
    fn explain(&self, e: io::Error) -> io::Error {
        // EINVAL: the set's id was valid when we opened it, so it is gone too.
        if !is_removed(&e) && sys::errno(&e) != Some(libc::EINVAL) {
            return e;
        }
        let g = match self.status() {
            // `detach` and the device itself write the status word before they remove; a
            // word that still says "running" means someone else removed the objects (`ipcrm`:
            // the set, or the segment, after which the device stopped without a word).
            Ok(DeviceStatus::Running) | Err(_) => err(
                io::ErrorKind::NotConnected,
                format!(
                    "the device's (pid {}) objects were removed by someone else (ipcrm?)",
                    self.header.pid
                ),
            ),
            Ok(s) => self.gone(s),
        };
        err(g.kind(), format!("{g}: {e}"))
    }

    /// The key this client opened.
    pub fn key(&self) -> Key {
        self.key
    }
}

/// A semaphore this client holds (taken with `SEM_UNDO`); given back on drop, with `SEM_UNDO`
/// again so that the kernel's undo count returns to zero.
struct Held {
    sems: SemId,
    num: u16,
}

impl Drop for Held {
    fn drop(&mut self) {
        // If the set is gone there is nothing to give back: the error is only traced.
        if let Err(e) = self.sems.op(&[SemOp::post(self.num).undo()]) {
            crate::trace!("giving back semaphore {}: {e}", self.num);
        }
    }
}

//! The `device` side: it creates the register file and the semaphores, then simulates hardware.
//!
//! One thread does all the work, in one loop ([`Device::run`]). Each turn it sleeps in a single
//! `semtimedop` that waits for *either* of two things:
//! - a command: `CMD -1` succeeds as soon as a client has posted CMD. A command that changes the
//!   registers (set, reset) then takes LOCK to copy them into the segment, and gives it back
//!   together with DONE in one `semop`; a `get` is answered from the device's own copy and
//!   needs no lock at all;
//! - the next tick: the timeout is exactly the time left until the next periodic update.
//!
//! So a command is served the moment it is posted (no polling, no timer granularity), and the
//! periodic update does not delay commands: a tick is only done when its time has come, and it
//! takes a few microseconds under the lock.
//!
//! Rules:
//! - The device alone writes the channels and the header, always holding LOCK (taken with
//!   `SEM_UNDO`: if the device is killed holding it, the kernel gives it back).
//! - The device keeps the true state of the channels in its own memory (`channels`) and copies
//!   it into the segment. A client that scribbles over the registers changes nothing: the next
//!   write puts them right.
//! - A termination signal is taken by a second thread ([`Device::serve`]), which sets a flag and
//!   posts CMD to wake the loop: a SIGTERM is acted on at once, whatever the period.

use super::{err, NSEMS, SEM_CMD, SEM_DONE, SEM_INITIAL, SEM_LOCK, SEM_UPDATE};
use crate::params;
use crate::sys::sem::{self, SemId, SemOp};
use crate::sys::shm::{self, Access, Attachment, Get, ShmId};
use crate::sys::signal::TermSignals;
use crate::sys::{self, is_removed, Key, Owner};
use crate::wire::device::{
    self as wire, Channel, ChannelStatus, DeviceStatus, Header, Op, Reply, Request, ResultCode,
};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the device is configured (`device --channels --period --ramp`).
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub channels: u16,
    pub period: Duration,
    /// Units per second; 0 = a set is instant.
    pub ramp: f64,
    /// Permission bits of both objects.
    pub mode: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            channels: params::DEVICE_CHANNELS,
            period: Duration::from_millis(u64::from(params::DEVICE_PERIOD_MS)),
            ramp: params::DEVICE_RAMP,
            mode: params::DEFAULT_MODE,
        }
    }
}

impl Config {
    /// Are the values within their limits? (`Device::create` checks again; a program calls it
    /// first to tell a usage error from a failure of the kernel's.)
    pub fn check(&self) -> io::Result<()> {
        let bad = |m: String| Err(err(io::ErrorKind::InvalidInput, m));
        if self.channels == 0 || self.channels > params::DEVICE_MAX_CHANNELS {
            return bad(format!(
                "--channels {}: must be 1..={}",
                self.channels,
                params::DEVICE_MAX_CHANNELS
            ));
        }
        let ms = self.period.as_millis();
        let (lo, hi) = (params::DEVICE_PERIOD_MIN_MS, params::DEVICE_PERIOD_MAX_MS);
        if ms < u128::from(lo) || ms > u128::from(hi) {
            return bad(format!("--period {ms}: must be {lo}..={hi} ms"));
        }
        if !(self.ramp.is_finite() && self.ramp >= 0.0) {
            return bad(format!(
                "--ramp {}: must be a finite number >= 0",
                self.ramp
            ));
        }
        Ok(())
    }
}

/// Which channels a command changed, to be copied into the segment under LOCK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Changed {
    Nothing,
    One(u16),
    All,
}

/// Why [`Device::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A termination signal (its number): remove everything and exit 0.
    Signal(i32),
    /// Someone (`detach`, or `ipcrm`: see [`Device::removed_by_detach`]) removed our objects.
    Removed,
}

/// A running simulated device. Dropping it removes its segment and semaphore set.
#[derive(Debug)]
pub struct Device {
    // Field order is drop order, and it matters for the clients: the semaphores go first (every
    // client asleep on one wakes with EIDRM), while the segment is still there for them to read
    // the status word that says why; then we detach, then the segment is removed.
    /// The device created the semaphore set, so the device removes it.
    sems: Owner<SemId>,
    att: Attachment,
    /// The device created the segment, so the device removes it.
    seg: Owner<ShmId>,
    key: Key,
    config: Config,
    /// The true registers, copied into the segment under LOCK.
    channels: Vec<Channel>,
    header: Header,
}

impl Device {
    /// Creates the segment and the semaphore set for `key` (both exclusively: a second device on
    /// the same key is refused), initialises them, and marks the device running. Objects that
    /// a dead device left under the key are recycled first, each one reported through
    /// `notice` (see [`recycle_leftovers`]).
    pub fn create(key: Key, config: Config, notice: impl FnMut(String)) -> io::Result<Device> {
        config.check()?;
        recycle_leftovers(key, notice)?;
        let len = wire::segment_len(config.channels);
        let seg = shm::shmget(key, len, Get::Create(config.mode))
            .map_err(|e| explain_exists(key, Made::Segment, e))?;
        // We created it: from here on, every way out of this function removes it.
        let seg = Owner::new(seg);
        let att = seg.attach(Access::ReadWrite)?;
        let mut header = Header {
            channels: config.channels,
            status: DeviceStatus::Starting,
            pid: std::process::id() as i32,
            update: 0,
            period_ms: config.period.as_millis() as u32,
            ramp: config.ramp,
        };
        let channels = vec![Channel::ZERO; usize::from(config.channels)];
        att.write_at(0, &header.encode())?;
        for (i, c) in channels.iter().enumerate() {
            att.write_at(wire::channel_offset(i as u16), &c.encode())?;
        }
        let sems = sem::semget(key, NSEMS, Get::Create(config.mode))
            .map_err(|e| explain_exists(key, Made::Semaphores, e))?;
        let sems = Owner::new(sems);
        sems.set_all(&SEM_INITIAL)?;
        // The first semop sets sem_otime, the sign (for anyone who checks) that the creator has
        // finished initialising; under the lock, the header turns "running".
        sems.op(&[SemOp::wait(SEM_LOCK).undo()])?;
        header.status = DeviceStatus::Running;
        att.write_at(0, &header.encode())?;
        sems.op(&[SemOp::post(SEM_LOCK).undo()])?;
        crate::trace!(
            "device running: key 0x{key:08x}, {} channels, {:?} period, ramp {}",
            config.channels,
            config.period,
            config.ramp
        );
        Ok(Device {
            sems,
            att,
            seg,
            key,
            config,
            channels,
            header,
        })
    }

    pub fn key(&self) -> Key {
        self.key
    }
    pub fn shm_id(&self) -> ShmId {
        self.seg.get()
    }
    pub fn sem_id(&self) -> SemId {
        self.sems.get()
    }
    pub fn config(&self) -> Config {
        self.config
    }

    /// Whether the status word says `detach` removed the objects (it writes "removed" there
    /// first). After a [`Stop::Removed`] without it, someone else did (`ipcrm`).
    pub fn removed_by_detach(&self) -> bool {
        let mut word = [0u8; 4];
        self.att.read_at(wire::STATUS_OFFSET, &mut word).is_ok()
            && wire::decode_status(word) == Ok(DeviceStatus::Removed)
    }

    /// Runs until a termination signal (taken by a helper thread) or until the objects are
    /// removed. `sigs` must have been blocked in `main` before any thread started.
    pub fn serve(&mut self, sigs: TermSignals) -> io::Result<Stop> {
        let stop = Arc::new(AtomicI32::new(0));
        let flag = Arc::clone(&stop);
        let sems = self.sems.get();
        // This thread sleeps in sigwait for the whole life of the program. When a signal comes
        // it raises the flag, then posts CMD: that wakes the main loop out of its semtimedop at
        // once. (If the loop wakes for a real command instead, it sees the flag all the same.)
        std::thread::spawn(move || {
            if let Ok(sig) = sigs.wait() {
                flag.store(sig, Ordering::SeqCst);
                let _ = sems.op(&[SemOp::post(SEM_CMD)]);
            }
        });
        self.run(&stop)
    }

    /// The device's loop: serve commands the moment they come, update the registers every
    /// period. Returns when `stop` holds a signal number (after a wake-up on CMD) or when the
    /// objects are removed.
    pub fn run(&mut self, stop: &AtomicI32) -> io::Result<Stop> {
        let sems = self.sems.get();
        let period = self.config.period;
        let mut last_tick = Instant::now();
        let mut next_tick = last_tick + period;
        loop {
            let sig = stop.load(Ordering::SeqCst);
            if sig != 0 {
                return Ok(Stop::Signal(sig));
            }
            let now = Instant::now();
            if now >= next_tick {
                match self.tick(now - last_tick) {
                    Ok(true) => last_tick = now,
                    // The lock was busy for a whole period (a client stopped while holding
                    // it?): skip this update; the next one covers the time.
                    Ok(false) => {}
                    Err(e) if gone(&e) => return Ok(Stop::Removed),
                    Err(e) => return Err(e),
                }
                next_tick += period;
                if next_tick <= now {
                    // We fell behind (the machine was busy): do not burst to catch up.
                    next_tick = now + period;
                }
                continue;
            }
            // The one place the device sleeps: until a command is posted, or until the next tick
            // is due, whichever comes first.
            match sems.op_timeout(&[SemOp::wait(SEM_CMD)], next_tick - now) {
                Ok(true) => {
                    let sig = stop.load(Ordering::SeqCst);
                    if sig != 0 {
                        // The wake-up from `serve` (or a command that arrived just as we were
                        // told to stop: its client will learn from EIDRM and the status word).
                        return Ok(Stop::Signal(sig));
                    }
                    match self.execute(stop) {
                        Ok(()) => {}
                        Err(e) if gone(&e) => return Ok(Stop::Removed),
                        Err(e) => return Err(e),
                    }
                }
                Ok(false) => {}
                Err(e) if gone(&e) => return Ok(Stop::Removed),
                Err(e) => return Err(e),
            }
        }
    }

    /// One command, CMD taken: read the request, apply it to our own copy of the registers,
    /// copy what changed into the segment under LOCK, write the reply, post DONE.
    ///
    /// LOCK is taken only when the segment's channels change (set, reset): a `get` is answered
    /// from the device's own copy, which nobody else writes, so it needs no lock and is never
    /// held up by a reader. That keeps the common round trip at two semops on our side, the
    /// same as a bare semaphore ping-pong.
    fn execute(&mut self, stop: &AtomicI32) -> io::Result<()> {
        let sems = self.sems.get();
        let mut buf = [0u8; wire::REQUEST_LEN];
        self.att.read_at(wire::REQUEST_OFFSET, &mut buf)?;
        let (reply, changed) = match Request::decode(&buf) {
            Ok(req) => {
                let (result, channel, changed) = self.apply(req.op);
                crate::trace!(
                    "command seq {} from pid {}: {:?} -> {result:?}",
                    req.seq,
                    req.pid,
                    req.op
                );
                let reply = Reply {
                    seq: req.seq,
                    result,
                    channel,
                };
                (reply, changed)
            }
            Err(e) => {
                // A garbled request is answered, not fatal: the device keeps serving.
                crate::trace!("bad request: {e}");
                let reply = Reply {
                    seq: Request::seq_of(&buf),
                    result: ResultCode::BadRequest,
                    channel: Channel::ZERO,
                };
                (reply, Changed::Nothing)
            }
        };
        // The reply block needs no lock: only the device writes it, and only the client holding
        // the slot reads it, after DONE.
        self.att.write_at(wire::REPLY_OFFSET, &reply.encode())?;
        if changed == Changed::Nothing {
            return sems.op(&[SemOp::post(SEM_DONE)]);
        }
        if !self.lock(stop)? {
            // Told to stop while a reader held the lock: the client learns from EIDRM.
            return Ok(());
        }
        match changed {
            Changed::One(ch) => self.att.write_at(
                wire::channel_offset(ch),
                &self.channels[usize::from(ch)].encode(),
            )?,
            Changed::All => self.write_channels()?,
            Changed::Nothing => {}
        }
        // Lock and reply in one semop: the client wakes with the lock already free.
        sems.op(&[SemOp::post(SEM_LOCK).undo(), SemOp::post(SEM_DONE)])
    }

    /// Takes LOCK, waiting one period at a time so that a stop request is still noticed while a
    /// reader (frozen, say) holds it. Ok(false) if we were told to stop instead.
    fn lock(&self, stop: &AtomicI32) -> io::Result<bool> {
        let sems = self.sems.get();
        loop {
            if sems.op_timeout(&[SemOp::wait(SEM_LOCK).undo()], self.config.period)? {
                return Ok(true);
            }
            if stop.load(Ordering::SeqCst) != 0 {
                return Ok(false);
            }
        }
    }

    /// Applies one command to the device's own copy of the registers: the result, the channel
    /// to reply with, and what must be copied into the segment.
    fn apply(&mut self, op: Op) -> (ResultCode, Channel, Changed) {
        let n = self.config.channels;
        match op {
            Op::Set { channel, value } if channel < n => {
                if !value.is_finite() || value.abs() > params::DEVICE_VALUE_LIMIT {
                    return (ResultCode::BadValue, Channel::ZERO, Changed::Nothing);
                }
                let c = &mut self.channels[usize::from(channel)];
                c.setpoint = value;
                if self.config.ramp == 0.0 || c.readback == value {
                    c.readback = value;
                    c.status = ChannelStatus::Ok;
                } else {
                    c.status = ChannelStatus::Ramping;
                }
                c.update = self.header.update;
                (ResultCode::Ok, *c, Changed::One(channel))
            }
            Op::Get { channel } if channel < n => (
                ResultCode::Ok,
                self.channels[usize::from(channel)],
                Changed::Nothing,
            ),
            Op::Set { .. } | Op::Get { .. } => {
                (ResultCode::NoSuchChannel, Channel::ZERO, Changed::Nothing)
            }
            Op::Reset => {
                for c in &mut self.channels {
                    *c = Channel {
                        update: self.header.update,
                        ..Channel::ZERO
                    };
                }
                (ResultCode::Ok, Channel::ZERO, Changed::All)
            }
        }
    }

    /// One periodic update: under LOCK, move every readback toward its setpoint by `ramp · dt`
    /// and count the update; then open the UPDATE gate. Ok(false) if the lock stayed busy.
    fn tick(&mut self, dt: Duration) -> io::Result<bool> {
        let sems = self.sems.get();
        // Bounded: a client frozen while holding the lock must not freeze the device.
        if !sems.op_timeout(&[SemOp::wait(SEM_LOCK).undo()], self.config.period)? {
            crate::trace!("update skipped: the register lock stayed busy");
            return Ok(false);
        }
        // `detach` writes "removed" into the status word before it removes the objects; the
        // semaphores' EIDRM usually tells us first, but a segment removed on its own (`ipcrm -m`)
        // shows up only here: marked for removal, no new client could attach, so we stop.
        let mut word = [0u8; 4];
        self.att.read_at(wire::STATUS_OFFSET, &mut word)?;
        if wire::decode_status(word) == Ok(DeviceStatus::Removed) || self.seg.stat()?.removed {
            let _ = sems.op(&[SemOp::post(SEM_LOCK).undo()]);
            return Err(io::Error::from_raw_os_error(libc::EIDRM));
        }
        self.header.update += 1;
        let step = self.config.ramp * dt.as_secs_f64();
        for c in &mut self.channels {
            if c.status == ChannelStatus::Ramping {
                let gap = c.setpoint - c.readback;
                if gap.abs() <= step {
                    c.readback = c.setpoint;
                    c.status = ChannelStatus::Ok;
                } else {
                    c.readback += step.copysign(gap);
                }
            }
            c.update = self.header.update;
        }
        self.att.write_at(0, &self.header.encode())?;
        self.write_channels()?;
        sems.op(&[SemOp::post(SEM_LOCK).undo()])?;
        // The gate: every watcher sleeps in "wait until UPDATE is 0". Taking it to 0 completes
        // all of those waits at once (the kernel wakes every zero-waiter as it applies our
        // semop), and putting it back to 1 closes the gate for the next round. Two semops, on
        // purpose: one semop with both would be atomic, and nobody would ever see the 0.
        sems.op(&[SemOp::wait(SEM_UPDATE)])?;
        sems.op(&[SemOp::post(SEM_UPDATE)])?;
        Ok(true)
    }

    /// Copies every channel into the segment, in one write (LOCK held).
    fn write_channels(&self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.channels.len() * wire::CHANNEL_LEN);
        for c in &self.channels {
            bytes.extend_from_slice(&c.encode());
        }
        self.att.write_at(wire::CHANNELS_OFFSET, &bytes)
    }

    /// Ends the device. After a signal: the status word says "stopped", then the owners remove
    /// both objects (clients asleep on a semaphore wake with EIDRM and read the word). After a
    /// removal: whatever is already gone is let go of rather than removed a second time.
    pub fn shutdown(self, why: Stop) -> io::Result<()> {
        let Device { sems, att, seg, .. } = self;
        match why {
            Stop::Signal(_) => {
                att.write_at(
                    wire::STATUS_OFFSET,
                    &wire::encode_status(DeviceStatus::Stopped),
                )?;
                drop(att);
                let sem_result = sems.remove();
                seg.remove()?;
                sem_result
            }
            Stop::Removed => {
                drop(att);
                release_if_removed(sems, |id| id.stat().map(|_| ()))?;
                release_if_removed(seg, |id| id.stat().map(|s| s.removed))?;
                Ok(())
            }
        }
    }
}

/// After `detach`: an object that is gone (EIDRM) or already marked for removal is released, so
/// that its id is never removed twice; one that somehow survived is removed by its owner.
fn release_if_removed<T: sys::Removable, R: IsGone>(
    owner: Owner<T>,
    stat: impl FnOnce(T) -> io::Result<R>,
) -> io::Result<()> {
    match stat(owner.get()) {
        Ok(r) if !r.gone() => owner.remove(),
        Ok(_) => {
            owner.release();
            Ok(())
        }
        Err(e) if gone(&e) => {
            owner.release();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// An IPC call on one of the device's own objects failed because the object is gone: EIDRM,
/// or EINVAL (the id was valid, since we made it; now it is not, so someone removed it).
fn gone(e: &io::Error) -> bool {
    is_removed(e) || sys::errno(e) == Some(libc::EINVAL)
}

/// "Already removed?" for the answer of a stat.
trait IsGone {
    fn gone(&self) -> bool;
}
impl IsGone for () {
    fn gone(&self) -> bool {
        false
    }
}
impl IsGone for bool {
    fn gone(&self) -> bool {
        *self
    }
}

/// Removes what a dead device left under `key`, as `shm_writer` and `dipc` do, so that a
/// device killed with SIGKILL restarts without `detach`:
/// - a segment is recycled only if it is a device register file (its header decodes), nobody
///   is attached, and both its creator and the pid in its header are gone;
/// - a semaphore set is recycled if no segment is left under the key (the device makes its
///   segment first and removes it last, so a set alone is what a crash in between leaves) and
///   it has the device's five semaphores.
///
/// Anything else stays, and `create` then fails with `explain_exists`'s reason.
fn recycle_leftovers(key: Key, mut notice: impl FnMut(String)) -> io::Result<()> {
    let mut removed = Vec::new();
    let mut dead_device = None;
    if let Ok(id) = shm::shmget(key, 0, Get::Open) {
        let Ok(st) = id.stat() else { return Ok(()) };
        if st.attaches != 0 || sys::process::alive(st.creator_pid) {
            return Ok(());
        }
        let header = id.attach(Access::ReadOnly).ok().and_then(|att| {
            let mut buf = [0u8; wire::HEADER_LEN];
            att.read_at(0, &mut buf).ok()?;
            Header::decode(&buf).ok()
        });
        match header {
            Some(h) if !sys::process::alive(h.pid) => {
                sys::remove_if_present(id)?;
                removed.push(format!("shmid {}", id.0));
                dead_device = Some(h.pid);
            }
            // Not a device's, or its device runs: leave it to explain_exists.
            _ => return Ok(()),
        }
    }
    if let Ok(set) = sem::semget(key, 0, Get::Open) {
        if set.stat().is_ok_and(|st| st.nsems == NSEMS) {
            sys::remove_if_present(set)?;
            removed.push(format!("semid {}", set.0));
        }
    }
    if !removed.is_empty() {
        let whose = match dead_device {
            Some(pid) => format!("the objects of a device (pid {pid}) that is gone"),
            None => "a semaphore set left behind without its segment".to_string(),
        };
        notice(format!(
            "recycling {whose}: removed {} at key 0x{key:08x}",
            removed.join(" and ")
        ));
    }
    Ok(())
}

/// Which object `create` was making.
#[derive(Clone, Copy)]
enum Made {
    Segment,
    Semaphores,
}

/// `File exists` from shmget/semget, explained: another device runs on this key, or a dead one
/// left its objects behind.
fn explain_exists(key: Key, what: Made, e: io::Error) -> io::Error {
    if sys::errno(&e) != Some(libc::EEXIST) {
        return e;
    }
    // The segment is made first, so a set in the way means its segment is gone: a leftover. A
    // segment in the way belongs to a running device or to a dead one.
    let found = match what {
        Made::Segment => shm::shmget(key, 0, Get::Open)
            .and_then(|id| Ok((id, id.stat()?)))
            .ok(),
        Made::Semaphores => None,
    };
    // Somebody else's segment (not a register file: its header does not decode) is named with
    // its owner, creator and what to do; it is never a device's to recycle.
    if let Some((id, st)) = found {
        let is_device = id.attach(Access::ReadOnly).ok().is_some_and(|att| {
            let mut buf = [0u8; wire::HEADER_LEN];
            att.read_at(0, &mut buf).is_ok() && Header::decode(&buf).is_ok()
        });
        if !is_device {
            return err(
                e.kind(),
                format!(
                    "key 0x{key:08x} holds a segment (shmid {}) that is not a device's register \
                     file: uid {}, created by pid {}{}; remove it with `ipcrm -m {}` if it is \
                     yours, or choose another key (-k, -i): {e}",
                    id.0,
                    st.uid,
                    st.creator_pid,
                    if sys::process::alive(st.creator_pid) {
                        " (running)"
                    } else {
                        " (gone)"
                    },
                    id.0
                ),
            );
        }
    }
    let creator = found.map(|(_, st)| st.creator_pid);
    let why = match creator {
        Some(pid) if sys::process::alive(pid) => {
            format!("a device (pid {pid}) already runs with key 0x{key:08x}")
        }
        Some(pid) => format!(
            "key 0x{key:08x} holds objects left by a device (pid {pid}) that is gone; remove them with `detach`"
        ),
        None => format!(
            "key 0x{key:08x} holds a semaphore set left behind; remove it with `detach`"
        ),
    };
    err(e.kind(), format!("{why}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::client::Client;
    use super::*;
    use crate::sys::ftok;

    fn config(ramp: f64) -> Config {
        Config {
            channels: 2,
            period: Duration::from_millis(20),
            ramp,
            mode: 0o600,
        }
    }

    #[test]
    fn a_device_serves_commands_and_ticks_until_told_to_stop() {
        let dir = crate::testutil::TempDir::new("device-server");
        let key = ftok(dir.path(), b'D').unwrap();
        let mut dev = Device::create(key, config(100.0), |_| {}).unwrap();
        // A second device on the same key is refused with a clear reason.
        let e = Device::create(key, config(0.0), |_| {}).unwrap_err();
        assert!(e.to_string().contains("already runs"), "{e}");
        let sems = dev.sem_id();
        let stop = Arc::new(AtomicI32::new(0));
        let flag = Arc::clone(&stop);
        let h = std::thread::spawn(move || {
            let mut c = Client::open(key, Duration::from_secs(5)).unwrap();
            let set = c.set(1, 3.0).unwrap();
            assert_eq!(set.setpoint, 3.0);
            let first = c.snapshot(1).unwrap();
            let later = c.wait_update(1, first.update).unwrap();
            assert!(later.update > first.update);
            assert!(c
                .set(2, 1.0)
                .unwrap_err()
                .to_string()
                .contains("out of range"));
            assert!(c.set(0, f64::NAN).is_err());
            // 3 units at 100 units/s: settled within a few ticks.
            let mut last = later;
            while last.channel.status != ChannelStatus::Ok {
                last = c.wait_update(1, last.update).unwrap();
            }
            assert_eq!(last.channel.readback, 3.0);
            flag.store(15, Ordering::SeqCst);
            sems.op(&[SemOp::post(SEM_CMD)]).unwrap();
        });
        let why = dev.run(&stop).unwrap();
        h.join().unwrap();
        assert_eq!(why, Stop::Signal(15));
        dev.shutdown(why).unwrap();
        assert!(is_removed(&sems.stat().unwrap_err()));
    }

    #[test]
    fn a_garbled_request_is_answered_and_the_device_keeps_serving() {
        let dir = crate::testutil::TempDir::new("device-garbage");
        let key = ftok(dir.path(), b'D').unwrap();
        let mut dev = Device::create(key, config(0.0), |_| {}).unwrap();
        let (sems, shm) = (dev.sem_id(), dev.shm_id());
        let stop = Arc::new(AtomicI32::new(0));
        let flag = Arc::clone(&stop);
        let h = std::thread::spawn(move || {
            // A client that ignores the protocol's encoder: op 9 does not exist.
            let att = shm.attach(Access::ReadWrite).unwrap();
            let mut bytes = Request {
                seq: 77,
                op: Op::Reset,
                pid: 1,
            }
            .encode();
            bytes[4] = 9;
            sems.op(&[SemOp::wait(super::super::SEM_SLOT)]).unwrap();
            att.write_at(wire::REQUEST_OFFSET, &bytes).unwrap();
            sems.op(&[SemOp::post(SEM_CMD)]).unwrap();
            sems.op(&[SemOp::wait(SEM_DONE)]).unwrap();
            let mut buf = [0u8; wire::REPLY_LEN];
            att.read_at(wire::REPLY_OFFSET, &mut buf).unwrap();
            let reply = Reply::decode(&buf).unwrap();
            assert_eq!((reply.seq, reply.result), (77, ResultCode::BadRequest));
            sems.op(&[SemOp::post(super::super::SEM_SLOT)]).unwrap();
            let mut c = Client::open(key, Duration::from_secs(5)).unwrap();
            assert_eq!(c.set(0, 2.0).unwrap().readback, 2.0);
            flag.store(2, Ordering::SeqCst);
            sems.op(&[SemOp::post(SEM_CMD)]).unwrap();
        });
        let why = dev.run(&stop).unwrap();
        h.join().unwrap();
        dev.shutdown(why).unwrap();
    }
}

//! The writer's two objects, seen from both sides: the writer creates, publishes and (through
//! its [`Owner`] guards) removes them; the reader finds, checks and claims them; either removes
//! the orphans of a writer that died. And [`Watch`], the sliced wait behind every blocking step.
//!
//! Rules of this file:
//! - Only [`WriterObjects`] creates, and only its guards remove, except [`Orphan::remove`],
//!   which removes objects whose writer is provably dead.
//! - Nothing here sleeps longer than [`XFR_SLICE`] (or [`XFR_POLL`]) without checking for
//!   SIGINT/SIGTERM and for the peer.

use crate::params::{XFR_POLL, XFR_SETUP_GRACE, XFR_SLICE};
use crate::sys::sem::{semget, SemId, SemOp};
use crate::sys::shm::{shmget, Access, Attachment, Get, ShmId};
use crate::sys::signal::TermSignals;
use crate::sys::{
    errno, ftok, is_removed, is_timeout, poll, process, remove_if_present, Key, Owner,
};
use crate::trace::program;
use crate::wire::xfr::{Header, Mode, HEADER_LEN};
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 1 while the writer lives: its `+1` is made with `SEM_UNDO`, so the kernel takes it back
/// when the writer dies, however it dies.
pub const SEM_WRITER: u16 = 0;
/// 1 while the reader lives (`SEM_UNDO`, like [`SEM_WRITER`]).
pub const SEM_READER: u16 = 1;
/// 1 once a reader has claimed the data; never undone, so a second reader is refused and the
/// writer can tell "no reader yet" (0) from "the reader went away" (1, and [`SEM_READER`] 0).
pub const SEM_CLAIMED: u16 = 2;
/// Slots holding data the reader has not taken yet (message mode: 1 = the message is there).
pub const SEM_FULL: u16 = 3;
/// Slots free for the writer (message mode: the reader posts 1 when it has taken the message).
pub const SEM_EMPTY: u16 = 4;
/// Semaphores in the set. Also the set's signature: a set on the key with another count is
/// not a shm_writer's, and is left alone.
pub const NSEMS: u16 = 5;

/// `ftok(--key-path, --proj-id)`.
pub fn key(path: &std::path::Path, proj_id: u8) -> io::Result<Key> {
    ftok(path, proj_id)
}

/// Text for a duration given in seconds on the command line, as given: `10 s`, `0.25 s`.
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The error that ends a program which took SIGINT, SIGTERM or SIGHUP.
pub fn stopped(sig: i32) -> io::Error {
    let name = match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    };
    io::Error::new(io::ErrorKind::Interrupted, format!("stopped by {name}"))
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

// ---------------------------------------------------------------------------------------------
// The writer's side.

/// The writer's objects. Fields are dropped in declaration order, which is the cleanup order:
/// detach, remove the segment, and remove the set last, because the set is what readers and
/// other writers look for first (a set with no segment is easy to judge; see [`probe`]).
#[derive(Debug)]
pub struct WriterObjects {
    /// The writer's read-write mapping of the segment.
    pub att: Attachment,
    /// Owned: removed when dropped.
    pub seg: Owner<ShmId>,
    /// Owned: removed when dropped (after the segment).
    pub sems: Owner<SemId>,
    pub key: Key,
}

impl WriterObjects {
    /// Creates the semaphore set and then a segment of `len` bytes on `key`, both with
    /// `IPC_EXCL` and permission bits `perms`, and attaches the segment. A dead writer's
    /// orphans on the key are removed first; a live writer on the key is an error.
    ///
    /// The set is left unpublished (its `sem_otime` is 0) until [`publish`](Self::publish):
    /// readers wait for that, so they never see a half-written header.
    pub fn create(key: Key, len: usize, perms: u32) -> io::Result<WriterObjects> {
        let sems = Owner::new(create_set(key, perms)?);
        let seg = Owner::new(create_segment(key, len, perms)?);
        let att = seg.attach(Access::ReadWrite)?;
        Ok(WriterObjects {
            att,
            seg,
            sems,
            key,
        })
    }

    /// The last step of setting up, and the first semop ever made on the set: mark the writer
    /// alive (undone by the kernel if the writer dies) and post `initial`, in one atomic
    /// operation. It also sets `sem_otime`, which tells readers that the objects are ready.
    /// Then prints the line students look for with `ipcs`.
    pub fn publish(&self, initial: SemOp) -> io::Result<()> {
        self.sems.op(&[SemOp::post(SEM_WRITER).undo(), initial])?;
        eprintln!(
            "{}: key 0x{:08x}, shmid {}, semid {}",
            program(),
            self.key,
            self.seg.get().0,
            self.sems.get().0
        );
        Ok(())
    }
}

/// `semget(key, NSEMS, IPC_CREAT | IPC_EXCL)`, clearing a dead writer's orphans out of the way.
fn create_set(key: Key, perms: u32) -> io::Result<SemId> {
    // Three tries: an orphan removed, or a writer that just finished, frees the key; a key that
    // keeps being taken again is in real use.
    for _ in 0..3 {
        match semget(key, NSEMS, Get::Create(perms)) {
            Ok(id) => return Ok(id),
            Err(e) if errno(&e) != Some(libc::EEXIST) => return Err(e),
            Err(e) => match probe(key)? {
                Probe::Orphan(o) => o.remove()?,
                Probe::Absent => {}
                Probe::Live(_) | Probe::Starting => {
                    return Err(other(format!(
                        "key 0x{key:08x} is in use by another writer ({e}); \
                         choose another -k/-i, or wait for it to finish"
                    )))
                }
            },
        }
    }
    Err(other(format!(
        "key 0x{key:08x} keeps being taken by others"
    )))
}

/// `shmget(key, len, IPC_CREAT | IPC_EXCL)`. We already hold the key's semaphore set, so no
/// live writer uses this key: a segment found here was left by a dead one (or belongs to some
/// other program, which we leave alone).
fn create_segment(key: Key, len: usize, perms: u32) -> io::Result<ShmId> {
    match shmget(key, len, Get::Create(perms)) {
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let old = shmget(key, 0, Get::Open)?;
            let pid = old.stat()?.creator_pid;
            if process::alive(pid) {
                return Err(other(format!(
                    "{e}: the segment on key 0x{key:08x} belongs to live process {pid}; \
                     choose another -k/-i"
                )));
            }
            remove_if_present(old)?;
            eprintln!(
                "{}: removed the orphaned segment {} of dead process {pid}",
                program(),
                old.0
            );
            shmget(key, len, Get::Create(perms))
        }
        r => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Looking at a key: is there a writer, and is it alive?

/// What is on a key.
#[derive(Debug)]
pub enum Probe {
    /// Nothing: no writer has created its set yet (or it has finished and removed it).
    Absent,
    /// A writer is between creating its set and publishing it (microseconds).
    Starting,
    /// A live writer's published set.
    Live(SemId),
    /// The objects of a writer that died.
    Orphan(Orphan),
}

/// Objects left by a dead writer: nobody owns them any more.
#[derive(Debug)]
pub struct Orphan {
    pub sems: SemId,
    pub seg: Option<ShmId>,
    /// The dead writer's pid, when its segment tells (`shm_cpid`).
    pub pid: Option<i32>,
}

impl Orphan {
    /// Removes the orphans (the segment first, as the writer would have) and says so on
    /// stderr. "Already removed" is fine: someone else may be cleaning up the same orphans.
    pub fn remove(&self) -> io::Result<()> {
        if let Some(seg) = self.seg {
            remove_if_present(seg)?;
        }
        remove_if_present(self.sems)?;
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let seg = self
            .seg
            .map(|s| format!("shmid {}, ", s.0))
            .unwrap_or_default();
        eprintln!(
            "{}: removed the orphaned objects of a dead writer{pid}: {seg}semid {}",
            program(),
            self.sems.0
        );
        Ok(())
    }
}

/// Looks at `key` and judges what is there, without changing anything.
pub fn probe(key: Key) -> io::Result<Probe> {
    let sems = match semget(key, 0, Get::Open) {
        Ok(s) => s,
        Err(e) if errno(&e) == Some(libc::ENOENT) => return Ok(Probe::Absent),
        Err(e) => return Err(e),
    };
    let st = match sems.stat() {
        Ok(st) => st,
        Err(e) if is_removed(&e) => return Ok(Probe::Absent),
        Err(e) => return Err(e),
    };
    if st.nsems != NSEMS {
        return Err(other(format!(
            "key 0x{key:08x} holds semaphore set {} of {} semaphores, not a shm_writer's ({NSEMS}); \
             choose another -k/-i",
            sems.0, st.nsems
        )));
    }
    let dead = if st.op_time == 0 {
        // Created but not yet published. A writer publishes microseconds after creating, so a
        // set still unpublished long after its creation (sem_ctime) lost its writer in between.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        now - st.change_time > XFR_SETUP_GRACE.as_secs() as i64
    } else {
        match sems.get_val(SEM_WRITER) {
            // Published, and the writer's undoable +1 was taken back: the writer is dead.
            Ok(v) => v == 0,
            Err(e) if is_removed(&e) => return Ok(Probe::Absent),
            Err(e) => return Err(e),
        }
    };
    if !dead {
        return Ok(if st.op_time == 0 {
            Probe::Starting
        } else {
            Probe::Live(sems)
        });
    }
    // The segment on the same key is the dead writer's too, if its creator is dead as well.
    let mut orphan = Orphan {
        sems,
        seg: None,
        pid: None,
    };
    if let Ok(seg) = shmget(key, 0, Get::Open) {
        if let Ok(st) = seg.stat() {
            if !process::alive(st.creator_pid) {
                orphan.seg = Some(seg);
                orphan.pid = Some(st.creator_pid);
            }
        }
    }
    Ok(Probe::Orphan(orphan))
}

// ---------------------------------------------------------------------------------------------
// The reader's side.

/// A writer's objects as the reader holds them: attached read-only and claimed. The reader
/// owns nothing here; dropping this releases the claim and detaches.
#[derive(Debug)]
pub struct ReaderObjects {
    /// Read-only: the reader never writes the segment.
    pub att: Attachment,
    /// The header, checked against the segment's size and the set.
    pub header: Header,
    /// The writer's set (not owned: the writer removes it).
    pub sems: SemId,
    /// The writer's segment (not owned).
    pub seg: ShmId,
    pub key: Key,
}

impl ReaderObjects {
    /// Waits up to `timeout` for a writer in mode `want` to publish on `key`, then attaches,
    /// checks the header and claims the data. Orphans found on the way are removed.
    pub fn connect(
        key: Key,
        want: Mode,
        timeout: Duration,
        sigs: &TermSignals,
    ) -> io::Result<ReaderObjects> {
        let deadline = Instant::now() + timeout;
        crate::trace!("looking for a writer on key 0x{key:08x}");
        loop {
            match probe(key)? {
                Probe::Live(sems) => {
                    if let Some(objs) = ReaderObjects::claim(key, sems, want)? {
                        return Ok(objs);
                    }
                }
                Probe::Orphan(o) => o.remove()?,
                Probe::Absent | Probe::Starting => {}
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out: no writer on key 0x{key:08x} within {}",
                        secs(timeout)
                    ),
                ));
            }
            // There is nothing to sleep on until the writer exists: poll, and take a
            // termination signal while we sleep.
            if let Some(sig) = sigs.wait_timeout(XFR_POLL) {
                return Err(stopped(sig));
            }
        }
    }

    /// Attaches a live writer's segment, checks it, and claims it. `Ok(None)`: the writer
    /// vanished meanwhile (finished, or gave up); look again.
    fn claim(key: Key, sems: SemId, want: Mode) -> io::Result<Option<ReaderObjects>> {
        let seg = match shmget(key, 0, Get::Open) {
            Ok(s) => s,
            Err(e) if errno(&e) == Some(libc::ENOENT) => {
                // A writer publishes only after its segment exists, and removes the segment
                // only on its way out (its set after). A writer still alive and published
                // without a segment lost it to somebody else: say so, rather than time out
                // as if there were no writer.
                if sems.get_val(SEM_WRITER).is_ok_and(|v| v > 0) {
                    return Err(other(format!(
                        "the writer on key 0x{key:08x} (semid {}) has no segment: it was \
                         removed by someone else (ipcrm?)",
                        sems.0
                    )));
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let att = match seg.attach(Access::ReadOnly) {
            Ok(a) => a,
            Err(e) if is_removed(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let not_ours = |why: String| {
            other(format!(
                "segment {} on key 0x{key:08x} is not a shm_writer's: {why}",
                seg.0
            ))
        };
        let mut bytes = [0u8; HEADER_LEN];
        att.read_at(0, &mut bytes)
            .map_err(|_| not_ours(format!("only {} bytes", att.len())))?;
        let header = Header::decode(&bytes).map_err(|e| not_ours(e.to_string()))?;
        if header.semid != sems.0 {
            // A writer finished and another started between our two lookups: look again.
            return Ok(None);
        }
        if (att.len() as u64) < header.segment_len() {
            return Err(not_ours(format!(
                "{} bytes, its header describes {}",
                att.len(),
                header.segment_len()
            )));
        }
        if header.mode != want {
            let (theirs, flag) = match header.mode {
                Mode::Stream => ("stream", "with"),
                Mode::Message => ("message", "without"),
            };
            return Err(other(format!(
                "the writer on key 0x{key:08x} is in {theirs} mode: run shm_reader {flag} --stream"
            )));
        }
        // The claim, atomically: only if no reader ever claimed (CLAIMED == 0, without
        // waiting), mark us alive (undone by the kernel when we die) and claimed.
        let claim = [
            SemOp::zero(SEM_CLAIMED).nowait(),
            SemOp::post(SEM_READER).undo(),
            SemOp::post(SEM_CLAIMED),
        ];
        match sems.op(&claim) {
            Ok(()) => {}
            Err(e) if is_removed(&e) => return Ok(None),
            Err(e) if is_timeout(&e) => {
                return Err(other(format!(
                    "the writer on key 0x{key:08x} already has a reader (one reader per writer)"
                )))
            }
            Err(e) => return Err(e),
        }
        eprintln!(
            "{}: key 0x{key:08x}, shmid {}, semid {}",
            program(),
            seg.0,
            sems.0
        );
        crate::trace!(
            "claimed the data of writer pid {} ({:?} mode)",
            header.writer_pid,
            header.mode
        );
        Ok(Some(ReaderObjects {
            att,
            header,
            sems,
            seg,
            key,
        }))
    }

    /// The writer is dead: its objects are orphans, and as the last one using them we remove
    /// them (nobody else ever would).
    fn remove_orphans(&self) {
        let o = Orphan {
            sems: self.sems,
            seg: Some(self.seg),
            pid: Some(self.header.writer_pid),
        };
        if let Err(e) = o.remove() {
            eprintln!("{}: could not remove the orphans: {e}", program());
        }
    }
}

impl Drop for ReaderObjects {
    fn drop(&mut self) {
        // Give the claim back (the kernel would at exit, through SEM_UNDO; this matters when
        // the reader is a library call inside a longer-lived program). Never blocks, and a set
        // that is gone is fine.
        let _ = self.sems.op(&[SemOp::add(SEM_READER, -1).undo().nowait()]);
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting, while watching the peer.

/// What one side knows of the other.
enum Peer {
    /// The writer's view before any reader claimed.
    NotYet,
    Here,
    Gone,
}

enum Side<'a> {
    /// The writer watches for the reader. Until one has claimed, it gives up at `deadline`.
    Writer {
        deadline: Instant,
        timeout: Duration,
        key: Key,
        /// What the reader had not taken yet, for the message: "the message".
        what: &'static str,
        /// Our segment: checked between slices, since `ipcrm -m` wakes no semaphore.
        seg: ShmId,
    },
    /// The reader watches the writer, and on its death removes its orphans.
    Reader(&'a ReaderObjects),
}

/// A blocking step, cut into slices of [`XFR_SLICE`]. Between two slices it takes a pending
/// SIGINT/SIGTERM, and checks the peer's "alive" semaphore: a dead peer (or, for the writer, no
/// reader by the deadline) ends the wait with an error.
pub struct Watch<'a> {
    sems: SemId,
    sigs: &'a TermSignals,
    side: Side<'a>,
}

impl<'a> Watch<'a> {
    /// The writer's watch: no reader by `timeout` from now, or a reader that dies before
    /// taking `what`, ends it.
    pub fn writer(
        objs: &WriterObjects,
        sigs: &'a TermSignals,
        timeout: Duration,
        what: &'static str,
    ) -> Watch<'a> {
        Watch {
            sems: objs.sems.get(),
            sigs,
            side: Side::Writer {
                deadline: Instant::now() + timeout,
                timeout,
                key: objs.key,
                what,
                seg: objs.seg.get(),
            },
        }
    }

    /// The reader's watch: a writer that dies ends it, and its objects are removed.
    pub fn reader(objs: &'a ReaderObjects, sigs: &'a TermSignals) -> Watch<'a> {
        Watch {
            sems: objs.sems,
            sigs,
            side: Side::Reader(objs),
        }
    }

    /// Takes a pending termination signal, if any, as an error. Call it once per step, so a
    /// transfer that never has to wait still stops on Ctrl-C.
    pub fn signals(&self) -> io::Result<()> {
        match self.sigs.pending() {
            Some(sig) => Err(stopped(sig)),
            None => Ok(()),
        }
    }

    /// `semop(ops)`, waiting as long as the peer lives (and, for the writer, until the
    /// deadline while no reader has come).
    pub fn wait(&self, ops: &[SemOp]) -> io::Result<()> {
        loop {
            if self
                .sems
                .op_timeout(ops, XFR_SLICE)
                .map_err(|e| self.lost(e))?
            {
                return Ok(());
            }
            // If the peer turns out to be gone, it may have done its last post just before
            // going (a reader exits right after emptying the last slot): one last look, without
            // waiting, decides.
            let last_try = || {
                self.sems
                    .op_timeout(ops, Duration::ZERO)
                    .map_err(|e| self.lost(e))
            };
            if self.between_slices(last_try)? {
                return Ok(());
            }
        }
    }

    /// `semop(ops)` that never waits (posts): only the "removed" error is translated.
    pub fn post(&self, ops: &[SemOp]) -> io::Result<()> {
        self.sems.op(ops).map_err(|e| self.lost(e))
    }

    /// Waits until `fd` can be read without blocking (stdin may be a terminal, or a pipe from a
    /// slow program), watching the peer meanwhile.
    pub fn readable(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        while !poll::readable(fd, XFR_SLICE)? {
            self.between_slices(|| Ok(false))?;
        }
        Ok(())
    }

    /// Between two slices: `Ok(false)` keep waiting, `Ok(true)` the `last_try` succeeded.
    fn between_slices(&self, last_try: impl FnOnce() -> io::Result<bool>) -> io::Result<bool> {
        self.signals()?;
        if let Side::Writer { seg, .. } = self.side {
            // `ipcrm -m` only marks an attached segment (its key is gone, so no reader can
            // find it any more), and wakes nobody: the writer has to look.
            let removed = match seg.stat() {
                Ok(st) => st.removed,
                Err(e) => gone(&e),
            };
            if removed {
                return Err(other(format!(
                    "our segment {} was removed by someone else (ipcrm?)",
                    seg.0
                )));
            }
        }
        match (self.peer()?, &self.side) {
            (Peer::Here, _) => Ok(false),
            (
                Peer::NotYet,
                Side::Writer {
                    deadline,
                    timeout,
                    key,
                    ..
                },
            ) => {
                if Instant::now() < *deadline {
                    return Ok(false);
                }
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out: no reader came for key 0x{key:08x} within {}",
                        secs(*timeout)
                    ),
                ))
            }
            (Peer::NotYet, Side::Reader(_)) => Ok(false),
            (Peer::Gone, side) => {
                if last_try()? {
                    return Ok(true);
                }
                Err(match side {
                    Side::Writer { what, .. } => {
                        other(format!("the reader quit or died before taking {what}"))
                    }
                    Side::Reader(objs) => {
                        objs.remove_orphans();
                        other(format!(
                            "the writer (pid {}) died before the end",
                            objs.header.writer_pid
                        ))
                    }
                })
            }
        }
    }

    /// The peer's state, from one `GETALL`.
    fn peer(&self) -> io::Result<Peer> {
        let v = self.sems.get_all().map_err(|e| self.lost(e))?;
        let val = |i: u16| v.get(usize::from(i)).copied().unwrap_or(0);
        Ok(match self.side {
            Side::Writer { .. } if val(SEM_CLAIMED) == 0 => Peer::NotYet,
            Side::Writer { .. } if val(SEM_READER) > 0 => Peer::Here,
            Side::Reader(_) if val(SEM_WRITER) > 0 => Peer::Here,
            _ => Peer::Gone,
        })
    }

    /// Gives "the set was removed" a meaning for this side.
    fn lost(&self, e: io::Error) -> io::Error {
        if !gone(&e) {
            return e;
        }
        match self.side {
            Side::Writer { .. } => other(format!(
                "our semaphore set {} was removed by someone else (ipcrm?)",
                self.sems.0
            )),
            Side::Reader(objs) => {
                // A writer removes its set only on its way out: if it still runs a moment
                // later, it was somebody else.
                let pid = objs.header.writer_pid;
                let exited = (0..10).any(|_| {
                    let gone = !process::alive(pid);
                    if !gone {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    gone
                });
                if exited {
                    other(format!(
                        "the writer (pid {pid}) removed its objects before the end (it was \
                         stopped, or gave up)"
                    ))
                } else {
                    other(format!(
                        "the writer's (pid {pid}) semaphore set {} was removed by someone else \
                         (ipcrm?)",
                        self.sems.0
                    ))
                }
            }
        }
    }
}

/// A call on an object this side found (or made) valid failed because the object is gone:
/// EIDRM, or EINVAL (an id that was valid is no longer).
fn gone(e: &io::Error) -> bool {
    is_removed(e) || errno(e) == Some(libc::EINVAL)
}

/// Writes `len` bytes of the segment, from `offset`, to `fd`: `write(2)` straight from the
/// mapping, as often as it takes (a pipe may take less than asked).
pub fn copy_out(att: &Attachment, fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let n = att.write_to_fd(fd, offset + done, len - done)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        done += n;
    }
    Ok(())
}

//! The shmem library (seed 004): one System V segment, locked with `flock` on its key file.
//!
//! A *key file* names the segment: `ftok(path, SHMEM_PROJ_ID)` turns the file into the key, and
//! the same file carries the lock. Everybody who opens the same path reaches the same segment
//! and takes turns through the same lock:
//!
//! ```text
//!   process A                         kernel                          process B
//!   Shmem::open("/tmp/k", 4096) ──▶ ftok ─▶ key 0x4d01a2b3 ◀── Shmem::open("/tmp/k", 4096)
//!   write(&data):                     segment (4096 bytes)            read(&mut buf):
//!     flock(LOCK_EX) ─┐               ┌──────────────────┐              flock(LOCK_SH) waits...
//!     copy in  ───────┼─────────────▶ │ data             │ ─────────▶   ...then copy out
//!     flock(LOCK_UN) ─┘               └──────────────────┘              flock(LOCK_UN)
//! ```
//!
//! # The interface, as rules
//! - [`Shmem::open`]`(path, size)` creates the key file if it is missing, then gets the segment
//!   keyed by `ftok(path, SHMEM_PROJ_ID)` (see [`SHMEM_PROJ_ID`], 77 = 'M'), creating it
//!   (zero-filled, mode 0600) if there is none. When several processes or threads open a new
//!   path at once, exactly one creates the segment and the others open it: creation is
//!   `IPC_CREAT|IPC_EXCL`, and whoever gets `EEXIST` opens instead ([`Shmem::created`] says
//!   which you were). An existing segment of another size is an error, not a surprise.
//!   [`Shmem::open_existing`] opens without creating anything.
//! - [`Shmem::read`] copies the *whole* segment into a buffer at least that big, under a shared
//!   lock: any number of readers at once, never during a write.
//! - [`Shmem::write`] copies at most the segment's size in, at offset 0, under an exclusive
//!   lock. As in the seed, the bytes after `data` keep their old values; write a full-size
//!   buffer to replace everything. [`Shmem::update`] goes past the seed: read, change and write
//!   back under *one* exclusive lock, so that two incrementers never lose an update.
//! - [`Shmem::close`] detaches (so does dropping a `Shmem`). [`Shmem::delete`] removes the
//!   segment: it is destroyed when the last process detaches, and the next `open` of the path
//!   makes a new, zeroed one.
//!
//! # Who removes the segment
//! Whoever calls [`Shmem::delete`], as in the seed: it is explicit, and a `Shmem` does **not**
//! remove anything when dropped. The segment is a shared store that outlives each program using
//! it (a server restarts, clients come and go, `shmem_tool write` exits at once), so "the opener
//! removes on drop" would destroy the data under everybody else. A program that *does* own the
//! segment for its lifetime says so with the system layer's guard, as `examples/shmem_server.rs`
//! does: `let _owner = Owner::new(shm.id());` removes it on drop, also after Ctrl-C.
//!
//! # Threads as well as processes: one open file description per lock holder
//! A `flock` belongs to the **open file description** (what one `open(2)` makes), not to the
//! process or the thread. The seed keeps one descriptor per process, so two of its threads
//! share one description and the lock cannot tell them apart: the second thread's `LOCK_EX`
//! "succeeds" at once, because the description already holds the lock, and the two writers
//! copy at the same time. Worse, two *reader* threads share one `LOCK_SH`: the first to finish
//! unlocks it for both, and a writer in another process tears the second reader's copy. That is
//! why the seed calls its threads "undefined".
//!
//! This library gives **every lock holder its own open file description**: a `read` or `write`
//! takes an idle description of the key file from a small pool (or opens a new one), locks it,
//! copies, unlocks, and gives it back (`Shmem::locked`). Two threads then hold two
//! descriptions, and the kernel judges them exactly as it judges two processes. So there is one
//! lock, one set of rules and one place that decides (the kernel), for threads and processes
//! alike. The alternative, a process-local `RwLock` around one shared description, needs a
//! hand-made reader count (first reader in takes `LOCK_SH`, last reader out drops it) and adds
//! a second lock with its own fairness policy; it is more code and more to get wrong. The pool
//! costs one uncontended mutex per operation and one descriptor per thread that is inside
//! `read`/`write` at the same moment (at most [`SHMEM_SPARE_FILES`] stay open when idle).
//!
//! # Crashes
//! The kernel drops a `flock` when the last descriptor of its description closes, and a process
//! killed by SIGKILL closes all of its descriptors: a holder that dies never blocks the others.
//! It cannot undo a half-finished copy, though: a writer killed in the middle of `write` leaves
//! the segment half old, half new (lab 03's exercises ask how to detect that).
//!
//! # Limits
//! - `flock` is *advisory*: it orders only the parties that take it. A program that attaches the
//!   segment with plain `shmat` and writes tears readers' copies (`examples/shmem_writer_bad.rs`).
//! - Keep key files on a local file system (ipclab uses `/tmp`). On NFS, Linux emulates `flock`
//!   with POSIX record locks, which belong to the *process*, and threads no longer exclude
//!   each other.
//! - `ftok` keeps only 16 bits of the inode number, so two different key files can give one
//!   key, and then `open` shares a segment it was not meant to (if the sizes match). The seed
//!   has the same gap; a private directory of key files (as the tests use) makes it unlikely.
//! - Linux grants a new `LOCK_SH` while other shared holders remain even if a writer waits, so a
//!   steady stream of readers can hold a writer off for a long time (the benchmark shows it).
//!
//! # Layout
//! - this file: [`Shmem`].
//! - [`hammer`]: the torn-read check: writer threads write whole stamp patterns
//!   ([`crate::wire::shmem::Stamp`]), reader threads check that each copy is one whole pattern.
//! - [`record`]: the example server's publish-and-read loop, kept here so tests can run it.

pub mod hammer;
pub mod record;

use crate::cli::Context;
use crate::params::{DEFAULT_MODE, SHMEM_OPEN_ATTEMPTS, SHMEM_PROJ_ID, SHMEM_SPARE_FILES};
use crate::sys::flock::FileLock;
use crate::sys::shm::{self, Access, Attachment, Get, ShmId, ShmStat};
use crate::sys::{self, errno, Key, Removable};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use crate::sys::flock::LockKind;

/// An opened shmem segment: its key file, its attachment, and the pool of lock descriptions.
///
/// `Shmem` is `Send + Sync`: share one between threads by reference or in an `Arc`; every
/// operation takes its own lock description (see the module header).
#[derive(Debug)]
pub struct Shmem {
    path: PathBuf,
    key: Key,
    /// (device, inode) of the key file: a description we open later must be of this very
    /// file, or its lock would not be the lock everybody else takes.
    file_id: (u64, u64),
    attachment: Attachment,
    created: bool,
    /// Idle open file descriptions of the key file. Protected by this mutex, which is held
    /// only to take or give back one, never while a `flock` is waited for or held.
    spare: Mutex<Vec<File>>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Shmem {
    /// Opens the segment of `path`, creating the key file and a `size`-byte segment if needed.
    ///
    /// Errors: `size` 0 or beyond the kernel's limit, a key file that cannot be created or
    /// opened, or an existing segment of another size (`InvalidInput`, naming both sizes).
    pub fn open(path: impl AsRef<Path>, size: usize) -> io::Result<Shmem> {
        let path = path.as_ref();
        let what = format!("shmem open {}", path.display());
        if size == 0 {
            return Err(invalid(format!("{what}: size must be at least 1 byte")));
        }
        // The file must exist before ftok, which reads its inode number. O_CREAT without
        // O_EXCL: two openers racing here both end up with the same file.
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                // Never truncate: a key file's content is nobody's business but its owner's.
                .truncate(false)
                .mode(0o600)
                .open(path)
                .context(format!("{what}: creating the key file"))?,
            Err(e) => return Err(e).context(format!("{what}: opening the key file")),
        };
        let key = sys::ftok(path, SHMEM_PROJ_ID).context(&what)?;
        let (id, created) = get_or_create(key, size).context(&what)?;
        let shm = Shmem::attach(path, file, key, id, created).context(&what)?;
        if shm.size() != size {
            return Err(invalid(format!(
                "{what}: the segment of key 0x{key:08x} has {} bytes, not {size}",
                shm.size()
            )));
        }
        crate::trace!(
            "shmem open {}: key 0x{key:08x}, shmid {}, {size} bytes, {}",
            path.display(),
            id.0,
            if created { "created" } else { "existing" }
        );
        Ok(shm)
    }

    /// Opens the segment of an existing key file, whatever its size; creates nothing.
    /// A missing file or segment is `NotFound`.
    pub fn open_existing(path: impl AsRef<Path>) -> io::Result<Shmem> {
        let path = path.as_ref();
        let what = format!("shmem open {}", path.display());
        let file = File::open(path).context(format!("{what}: opening the key file"))?;
        let key = sys::ftok(path, SHMEM_PROJ_ID).context(&what)?;
        let id = match shm::shmget(key, 0, Get::Open) {
            Ok(id) => id,
            Err(e) if errno(&e) == Some(libc::ENOENT) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{what}: no segment with key 0x{key:08x} (never opened with a size, or deleted)"),
                ))
            }
            Err(e) => return Err(e).context(&what),
        };
        let shm = Shmem::attach(path, file, key, id, false).context(&what)?;
        crate::trace!(
            "shmem open {}: key 0x{key:08x}, shmid {}, {} bytes, existing",
            path.display(),
            id.0,
            shm.size()
        );
        Ok(shm)
    }

    fn attach(path: &Path, file: File, key: Key, id: ShmId, created: bool) -> io::Result<Shmem> {
        let meta = file.metadata()?;
        let attachment = id.attach(Access::ReadWrite)?;
        Ok(Shmem {
            path: path.to_path_buf(),
            key,
            file_id: (meta.dev(), meta.ino()),
            attachment,
            created,
            // The first description goes straight into the pool: the first lock holder uses it.
            spare: Mutex::new(vec![file]),
        })
    }

    /// Copies the whole segment into the front of `buf`, under a shared lock; returns the
    /// segment's size. `buf` must hold at least that many bytes.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.size();
        if buf.len() < n {
            return Err(invalid(format!(
                "shmem read: a {}-byte buffer cannot hold the {n}-byte segment",
                buf.len()
            )));
        }
        // LOCK_SH: other readers may copy at the same time; no writer is between its LOCK_EX
        // and its LOCK_UN, so the bytes do not change under our copy.
        self.locked(LockKind::Shared, || {
            self.attachment.read_at(0, &mut buf[..n])
        })??;
        crate::trace!("shmem read: {n} bytes under LOCK_SH");
        Ok(n)
    }

    /// Copies `data` to the start of the segment, under an exclusive lock. `data` may be
    /// shorter than the segment (the rest keeps its bytes), never longer.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        let n = self.size();
        if data.len() > n {
            return Err(invalid(format!(
                "shmem write: {} bytes do not fit the {n}-byte segment",
                data.len()
            )));
        }
        // LOCK_EX: no reader and no other writer is copying while we do, so nobody sees a
        // mixture of the old bytes and ours.
        self.locked(LockKind::Exclusive, || self.attachment.write_at(0, data))??;
        crate::trace!("shmem write: {} bytes under LOCK_EX", data.len());
        Ok(())
    }

    /// Read-modify-write under one exclusive lock: `f` gets a copy of the whole segment to
    /// change, which is written back before the lock is released. A `read` followed by a
    /// `write` takes the lock twice, and another writer can slip in between (a lost update).
    pub fn update<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        let mut buf = vec![0u8; self.size()];
        self.locked(LockKind::Exclusive, || -> io::Result<R> {
            self.attachment.read_at(0, &mut buf)?;
            let out = f(&mut buf);
            self.attachment.write_at(0, &buf)?;
            Ok(out)
        })?
    }

    /// Runs `f` while holding the lock of kind `kind`, on a description of the key file that
    /// no other holder uses (see the module header). `read`, `write` and `update` are built on
    /// it; `shmem_tool hold` uses it to show what holding the lock means to the others.
    ///
    /// Do not call `read`, `write`, `update` or `locked` from inside `f` (nor inside
    /// `update`'s closure): that would be a second holder with its own description, and under
    /// an exclusive lock it would wait for the first, which is waiting for it, forever.
    pub fn locked<R>(&self, kind: LockKind, f: impl FnOnce() -> R) -> io::Result<R> {
        let file = self.take_description()?;
        // If `f` panics, the FileLock's drop unlocks and the description is closed, not reused.
        let out = FileLock::lock(&file, kind)
            .map(|lock| {
                let out = f();
                drop(lock);
                out
            })
            .context(format!("shmem lock {}", self.path.display()));
        self.give_back(file);
        out
    }

    fn pool(&self) -> MutexGuard<'_, Vec<File>> {
        // A panic elsewhere cannot leave the Vec half-changed: push and pop are whole.
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle description from the pool, or a new `open` of the key file.
    fn take_description(&self) -> io::Result<File> {
        if let Some(f) = self.pool().pop() {
            return Ok(f);
        }
        let what = format!("shmem: opening the key file {} again", self.path.display());
        let f = File::open(&self.path).context(&what)?;
        let meta = f.metadata().context(&what)?;
        if (meta.dev(), meta.ino()) != self.file_id {
            // Someone replaced the key file: its lock is not the one the others take.
            return Err(io::Error::other(format!(
                "{what}: the file was replaced since the segment was opened"
            )));
        }
        crate::trace!(
            "shmem: opened another description of {}",
            self.path.display()
        );
        Ok(f)
    }

    fn give_back(&self, file: File) {
        let mut pool = self.pool();
        if pool.len() < SHMEM_SPARE_FILES {
            pool.push(file);
        }
        // Otherwise `file` is closed here: enough are kept idle.
    }

    /// Detaches the segment. It stays in the kernel for the others (see [`Shmem::delete`]).
    pub fn close(self) -> io::Result<()> {
        // Dropping the attachment calls shmdt; it fails only for an address shmat did not
        // return, which cannot happen here, so there is nothing to report.
        drop(self);
        Ok(())
    }

    /// Removes the segment (`IPC_RMID`), then detaches. Whoever is still attached keeps using
    /// the old memory until they detach; the next `open` of the path creates a new segment.
    pub fn delete(self) -> io::Result<()> {
        self.remove()
    }

    /// What [`Shmem::delete`] does, but keeps this attachment (the C API's `shmem_delete`
    /// detaches only once the removal worked, so that a failed delete leaves a usable handle).
    pub fn remove(&self) -> io::Result<()> {
        let id = self.id();
        // We are attached, so the id still exists even if someone else deleted it first;
        // IPC_RMID would "succeed" a second time. Say what happened instead.
        if self.is_deleted() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "shmem delete {}: segment {} was already deleted",
                    self.path.display(),
                    id.0
                ),
            ));
        }
        id.remove()
            .context(format!("shmem delete {}", self.path.display()))?;
        crate::trace!(
            "shmem delete {}: shmid {} removed",
            self.path.display(),
            id.0
        );
        Ok(())
    }

    /// The segment's size in bytes.
    pub fn size(&self) -> usize {
        self.attachment.len()
    }

    /// The System V key, `ftok(path, SHMEM_PROJ_ID)`.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The segment's id, e.g. to own it: `Owner::new(shm.id())` removes it on drop.
    pub fn id(&self) -> ShmId {
        self.attachment.id()
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this `open` created the segment (exactly one racing opener did).
    pub fn created(&self) -> bool {
        self.created
    }

    /// `shmctl(IPC_STAT)`: size, creator, attach count and times.
    pub fn stat(&self) -> io::Result<ShmStat> {
        self.id().stat()
    }

    /// Whether someone deleted the segment since we opened it. We can still read and write it,
    /// but nobody new will see our writes: a fresh `open` gets a new segment.
    pub fn is_deleted(&self) -> bool {
        match self.id().stat() {
            Ok(st) => st.removed,
            Err(_) => true,
        }
    }
}

/// Exactly one of several racing openers creates the segment: `IPC_EXCL` makes the kernel pick
/// one, and the others get `EEXIST` and open what it made. Returns the id and "we created it".
fn get_or_create(key: Key, size: usize) -> io::Result<(ShmId, bool)> {
    for _ in 0..SHMEM_OPEN_ATTEMPTS {
        match shm::shmget(key, size, Get::Create(DEFAULT_MODE)) {
            Ok(id) => return Ok((id, true)),
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            // EINVAL: beyond SHMMAX; ENOMEM/ENOSPC: beyond SHMALL or SHMMNI (or no memory).
            Err(e) if matches!(errno(&e), Some(libc::EINVAL | libc::ENOMEM | libc::ENOSPC)) => {
                return Err(invalid(format!(
                    "{size} bytes is beyond the kernel's shared memory limits \
                     (/proc/sys/kernel/shmmax, shmall, shmmni): {e}"
                )))
            }
            Err(e) => return Err(e),
        }
        // Size 0: open whatever is there, and let the caller compare sizes with a clear
        // message (shmget would only say EINVAL for a segment smaller than `size`).
        match shm::shmget(key, 0, Get::Open) {
            Ok(id) => return Ok((id, false)),
            // Deleted between our two calls: the next round may create it.
            Err(e) if errno(&e) == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "key 0x{key:08x}: the segment kept vanishing between create and open"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Owner;

    #[test]
    fn round_trip_keeps_the_tail_like_the_seed() {
        let dir = crate::testutil::TempDir::new("shmem");
        let path = dir.path().join("k");
        let shm = Shmem::open(&path, 16).unwrap();
        let _owner = Owner::new(shm.id());
        assert!(shm.created() && path.exists());
        shm.write(b"hello world").unwrap();
        shm.write(b"HELP").unwrap();
        let mut buf = [0xaa; 20];
        assert_eq!(shm.read(&mut buf).unwrap(), 16);
        assert_eq!(&buf[..16], b"HELPo world\0\0\0\0\0");
        assert_eq!(&buf[16..], &[0xaa; 4]);
        assert_eq!(shm.update(|b| b[0] = b'Y').unwrap(), ());
        shm.read(&mut buf).unwrap();
        assert_eq!(&buf[..4], b"YELP");
    }
}

//! The mailboxes: one System V segment of slots, one semaphore set of locks, and how a server
//! finds, creates and recycles them by its port's key.
//!
//! ```text
//! shm key 0x4450PPPP:  [ header | slot 0 | slot 1 | ... ]   (layout: crate::wire::dipc)
//! sem key 0x4450PPPP:  [ T0 R0 | T1 R1 | ... ]              (locks: super::rwlock)
//! ```
//!
//! Rules:
//! - The server that creates the objects owns them ([`Created`] holds the two `Owner`s) and is
//!   the only one that removes them, at shutdown. `dipcrm` removes them only when that server is
//!   gone (orphans), or failed to exit after SIGTERM and was killed.
//! - Every access to slot `i` happens under lock `i`: [`Mailboxes::read`] under the read lock,
//!   [`Mailboxes::write`] under the write lock. No socket I/O happens under a lock.
//! - Existing objects with the port's key are classified by [`inspect`]: a live dipc server
//!   (leave it alone), orphans (the creator is dead and nobody is attached: recycle), or
//!   something else (refuse to touch it).

use super::keys::key_for_port;
use super::rwlock::{RwLocks, SEMS_PER_LOCK};
use crate::sys::sem::{semget, SemId};
use crate::sys::shm::{shmget, Access, Attachment, Get, ShmId, ShmStat};
use crate::sys::{ipcs, Key, Owner};
use crate::wire::dipc::{self as wire, SegmentHeader, HEADER_SIZE, SLOT_HEADER};
use std::io;

/// The mailboxes of a running server, as its client threads use them.
#[derive(Debug)]
pub struct Mailboxes {
    seg: Attachment,
    locks: RwLocks,
    header: SegmentHeader,
}

/// A read of mailbox `i` in progress: holds the read lock until dropped.
#[derive(Debug)]
pub struct ReadView<'a> {
    boxes: &'a Mailboxes,
    offset: usize,
    len: u64,
    _lock: super::rwlock::ReadGuard,
}

impl ReadView<'_> {
    /// The message's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty mailbox.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the message to `out` (one copy out of the segment).
    pub fn append_to(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.boxes
            .seg
            .read_at(self.offset + SLOT_HEADER, &mut out[start..])
    }
}

impl Mailboxes {
    /// The mailboxes in an attached segment whose header is already written, locked by `sem`.
    pub fn open(seg: Attachment, sem: SemId) -> io::Result<Mailboxes> {
        let mut bytes = [0u8; HEADER_SIZE];
        seg.read_at(0, &mut bytes)?;
        let header = SegmentHeader::decode(&bytes)?;
        let needed = SegmentHeader::segment_size(header.mailboxes, header.mailbox_size);
        if needed.is_none_or(|n| n > seg.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "segment smaller than its header says",
            ));
        }
        Ok(Mailboxes {
            seg,
            locks: RwLocks::new(sem, header.mailboxes),
            header,
        })
    }

    /// The header: counts and sizes.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The locks (tests and the lab drive them directly).
    pub fn locks(&self) -> &RwLocks {
        &self.locks
    }

    /// Starts a read of mailbox `i`: takes the read lock and reads the length.
    pub fn read(&self, i: u32) -> io::Result<ReadView<'_>> {
        let lock = self.locks.read(i)?;
        let offset = self.header.slot_offset(i);
        let mut len = [0u8; SLOT_HEADER];
        self.seg.read_at(offset, &mut len)?;
        let len = wire::decode_slot_len(len, self.header.mailbox_size)?;
        Ok(ReadView {
            boxes: self,
            offset,
            len,
            _lock: lock,
        })
    }

    /// Replaces mailbox `i`'s message with `data`, under the write lock.
    pub fn write(&self, i: u32, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.header.max_message() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes over the limit of {}",
                    data.len(),
                    self.header.max_message()
                ),
            ));
        }
        let offset = self.header.slot_offset(i);
        let _lock = self.locks.write(i)?;
        // Data first, length last; under the write lock no reader looks, and the order also
        // means a server killed half-way leaves the old length over (mostly) old bytes.
        self.seg.write_at(offset + SLOT_HEADER, data)?;
        self.seg
            .write_at(offset, &wire::encode_slot_len(data.len() as u64))?;
        Ok(())
    }
}

/// What exists under a port's key.
#[derive(Debug)]
pub enum Found {
    /// No segment and no semaphore set.
    Nothing,
    /// A live dipc server created them.
    Running {
        pid: i32,
        objects: Vec<ipcs::Object>,
    },
    /// The creator is gone and nobody is attached: safe to remove.
    Orphans {
        creator: Option<i32>,
        objects: Vec<ipcs::Object>,
    },
    /// Objects with our key that are not (or not only) a dead dipc server's: leave them.
    Foreign(String),
}

/// Whether `pid` runs and is a dipc server (its name, or its `argv[0]`, is `dipc`). A zombie
/// (dead, not yet reaped) does not count as running.
pub fn is_dipc_server(pid: i32) -> bool {
    // alive() is false for a zombie too.
    if !crate::sys::process::alive(pid) {
        return false;
    }
    let named = crate::sys::process::program_name(pid).as_deref() == Some("dipc");
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|&b| b == 0).next()?.to_vec();
            let first = String::from_utf8(first).ok()?;
            Some(first.rsplit('/').next()? == "dipc")
        })
        .unwrap_or(false);
    named || argv0
}

/// Looks at the objects under `port`'s key and says whose they are.
pub fn inspect(port: u16) -> io::Result<Found> {
    let key = key_for_port(port);
    let objects: Vec<ipcs::Object> = ipcs::with_key(key)?
        .into_iter()
        .filter(|o| o.kind != ipcs::Kind::Msg)
        .collect();
    if objects.is_empty() {
        return Ok(Found::Nothing);
    }
    // Another user's object under our key (a squatter, or a classmate on the same port): we
    // may neither use nor remove it, and the kernel would only say "Permission denied".
    let me = my_uid();
    if me != 0 {
        if let Some(o) = objects.iter().find(|o| o.uid != me) {
            return Ok(Found::Foreign(squatted(key, o, me)));
        }
    }
    let shm = objects.iter().find(|o| o.kind == ipcs::Kind::Shm);
    let Some(shm) = shm else {
        // A semaphore set alone: our servers create the segment first and remove it last, so
        // a set without a segment is what a server killed in between leaves.
        return Ok(Found::Orphans {
            creator: None,
            objects,
        });
    };
    let st = ShmId(shm.id).stat()?;
    if is_dipc_server(st.creator_pid) {
        return Ok(Found::Running {
            pid: st.creator_pid,
            objects,
        });
    }
    if st.attaches != 0 {
        return Ok(Found::Foreign(format!(
            "segment key 0x{key:08x} (shmid {}) is attached by {} process(es), and its creator \
             pid {} is not a dipc server",
            shm.id, st.attaches, st.creator_pid
        )));
    }
    if let Err(why) = check_magic(ShmId(shm.id), &st) {
        return Ok(Found::Foreign(format!(
            "segment key 0x{key:08x} (shmid {}) is not a dipc segment ({why}); \
             remove it with ipcrm -m {} if it is yours",
            shm.id, shm.id
        )));
    }
    Ok(Found::Orphans {
        creator: Some(st.creator_pid),
        objects,
    })
}

/// This process's effective uid (the owner of `/proc/self`).
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// A user's name from `/etc/passwd`, for messages; the number if there is none.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
        })
        .map_or(format!("uid {uid}"), |name| format!("uid {uid} ({name})"))
}

/// What to tell a user who finds another user's object under the port's key: whose it is, who
/// made it, and what to do about it.
fn squatted(key: Key, o: &ipcs::Object, me: u32) -> String {
    let (what, flag) = match o.kind {
        ipcs::Kind::Shm => ("shared memory segment", "-m"),
        ipcs::Kind::Sem => ("semaphore set", "-s"),
        ipcs::Kind::Msg => ("message queue", "-q"),
    };
    let creator = match o.creator_pid {
        Some(pid) if crate::sys::process::alive(pid) => format!(", created by pid {pid} (running)"),
        Some(pid) => format!(", created by pid {pid} (gone)"),
        None => String::new(),
    };
    format!(
        "key 0x{:08x} is taken: {what} id {} belongs to {}{creator}, not to you (uid {me}); \
         ask its owner (or root) to remove it with `ipcrm {flag} {}`, or use another port",
        key as u32,
        o.id,
        user_name(o.uid),
        o.id
    )
}

/// Reads a segment's header (read-only attach, detached at once) and checks the magic.
fn check_magic(id: ShmId, st: &ShmStat) -> Result<(), String> {
    if st.size < HEADER_SIZE {
        return Err(format!("{} bytes, too small", st.size));
    }
    let att = id.attach(Access::ReadOnly).map_err(|e| e.to_string())?;
    let mut bytes = [0u8; HEADER_SIZE];
    att.read_at(0, &mut bytes).map_err(|e| e.to_string())?;
    SegmentHeader::decode(&bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Removes the objects listed, printing one line each through `say`.
pub fn remove_objects(objects: &[ipcs::Object], mut say: impl FnMut(String)) -> io::Result<()> {
    for o in objects {
        let what = match o.kind {
            ipcs::Kind::Shm => "shared memory segment",
            ipcs::Kind::Sem => "semaphore set",
            ipcs::Kind::Msg => "message queue",
        };
        match ipcs::remove(o) {
            Ok(()) => {}
            // Gone already (its server removed it meanwhile): it is removed all the same.
            Err(e) if crate::sys::is_removed(&e) => {}
            Err(e) => return Err(e),
        }
        say(format!(
            "removed {what} key 0x{:08x} id {}",
            o.key as u32, o.id
        ));
    }
    Ok(())
}

/// The objects of a new server, and their owner.
#[derive(Debug)]
pub struct Created {
    /// Owner of the segment: the server; removed at shutdown (or on a failed start).
    pub shm: Owner<ShmId>,
    /// Owner of the semaphore set: the server; removed at shutdown, before the segment.
    pub sem: Owner<SemId>,
    /// The mailboxes, attached.
    pub boxes: Mailboxes,
}

/// Why the objects could not be made.
#[derive(Debug)]
pub enum CreateError {
    /// A live dipc server has this port.
    AlreadyRunning(i32),
    /// Anything else, as `what: errno text`.
    Failed(io::Error),
}

impl From<io::Error> for CreateError {
    fn from(e: io::Error) -> Self {
        CreateError::Failed(e)
    }
}

/// Creates port `port`'s segment and semaphore set (mode `mode`), recycling orphans (each
/// recycled object is reported through `notice`).
pub fn create(
    port: u16,
    header: SegmentHeader,
    mode: u32,
    mut notice: impl FnMut(String),
) -> Result<Created, CreateError> {
    let key: Key = key_for_port(port);
    match inspect(port)? {
        Found::Nothing => {}
        Found::Running { pid, .. } => return Err(CreateError::AlreadyRunning(pid)),
        Found::Foreign(why) => return Err(CreateError::Failed(io::Error::other(why))),
        Found::Orphans { creator, objects } => {
            // Like PostgreSQL finding a dead postmaster's shared memory: it is ours, nobody
            // uses it, so take it back, and say so.
            let whose = match creator {
                Some(pid) => format!("server pid {pid} is gone"),
                None => "no segment".to_string(),
            };
            notice(format!(
                "recycling orphaned objects of port {port} (key 0x{:08x}; {whose})",
                key as u32
            ));
            remove_objects(&objects, &mut notice)?;
        }
    }
    let size = SegmentHeader::segment_size(header.mailboxes, header.mailbox_size)
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| io::Error::other("segment size overflows"))?;
    let nsems = RwLocks::sems_needed(header.mailboxes)
        .ok_or_else(|| io::Error::other("too many mailboxes for one semaphore set"))?;
    debug_assert_eq!(nsems % SEMS_PER_LOCK, 0);

    // The segment first (its creator pid is how dipcrm finds us), then the set. Each Owner
    // removes its object if a later step fails, so a failed start leaves nothing.
    let shm = Owner::new(shmget(key, size, Get::Create(mode))?);
    let seg = shm.attach(Access::ReadWrite)?;
    let sem = Owner::new(semget(key, nsems, Get::Create(mode))?);
    RwLocks::new(sem.get(), header.mailboxes).init()?;
    // A new segment is zero-filled by the kernel: every slot's length is already 0 (empty).
    // The header goes in last: a segment with a valid magic is a complete one.
    let header = SegmentHeader {
        creator_pid: std::process::id() as i32,
        ..header
    };
    seg.write_at(0, &header.encode())?;
    crate::trace!(
        "mailboxes: {} of {} bytes in shmid {}, locks in semid {}",
        header.mailboxes,
        header.mailbox_size,
        shm.get().0,
        sem.get().0
    );
    let boxes = Mailboxes::open(seg, sem.get())?;
    Ok(Created { shm, sem, boxes })
}

//! A node's table of segments: the seed's `struct rshminfo`, one row per segment in the group.
//!
//! ```text
//!   rshmid  key   size  owner           counts (per node)         marked  version | shmid  addr
//!   ------------- the same on every node (travels in frames) ---------------------  | this node only
//! ```
//!
//! The left part describes the segment and is the same on every node: frames carry it (see
//! [`crate::wire::rshm::Entry`]). The right part is this node's replica: a segment created with
//! `IPC_PRIVATE`, so that two nodes on one machine can never meet on a key, and attached by the
//! server itself (the seed's `addr`) so that it can read and write the contents.
//!
//! Reference counts are kept per node: each node is the only authority on how many of *its*
//! processes are attached, and announces that number (not +1/-1) to the others. The
//! cluster-wide count is the sum. A number can be repeated or merged twice without harm.
//!
//! Contents: each row also holds the *twin* (the contents last sent or received, see
//! [`super::diff`]; made at the first `rshmat` on this node, [`Segment::twin`]), the *stamp* `(version, origin)` of the newest update applied, and a stamp
//! per 8-byte word: the update that last wrote that word (kept per page where the page's words
//! share one, see [`stamps`]). [`Segment::apply_update`] writes a
//! word only if the update's stamp is higher than the word's, which is the whole consistency
//! model of [`crate::rshm`] in one comparison.
//!
//! Races for a key: two nodes that create the same key at once make two rows; when a node
//! sees both, the lower rshmid wins ([`Table::adopt`]) and the other becomes an *alias* of it.
//!
//! Rules: only the server's state lock reaches a `Table`; a row's replica is marked for removal
//! as soon as it exists and goes when the row is dropped and the last program has detached (see
//! [`Replica`]); destroyed rows are remembered so that a late HELLO from a node that missed the
//! removal does not bring them back.

use self::stamps::Stamps;
use super::diff::{Twin, WORD};
use crate::params::{
    DEFAULT_MODE, RSHM_HUGE_MIN, RSHM_MAX_PEERS, RSHM_MAX_SEGMENT, RSHM_MAX_SEGMENTS,
    RSHM_MAX_VERSION, RSHM_POPULATE_MIN, RSHM_TOMBSTONES,
};
use crate::sys::advise::populate_write;
use crate::sys::shm::{huge_pages_free, shmget, shmget_huge, Access, Attachment, Get, ShmId};
use crate::sys::{kernel_limit, Owner, IPC_PRIVATE};
use crate::wire::rshm::{Entry, LsEntry, Run};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Bound;

/// The total order of updates: by version, then by the address of the node that made it.
/// Versions are Lamport clocks (a node numbers its change one above the highest it has seen),
/// so an update made after another was seen is always higher; two made concurrently get the
/// same version, and the node address breaks the tie the same way on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub version: u64,
    pub origin: SocketAddrV4,
}

impl Stamp {
    /// Below every update: a fresh replica's zeros.
    pub const ZERO: Stamp = Stamp {
        version: 0,
        origin: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    };
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}@{}", self.version, self.origin)
    }
}

/// This node's copy of one segment.
///
/// Who removes it: the kernel, when the last process detaches. The server marks the replica
/// with IPC_RMID the moment it has attached it ([`Table::insert`]). Linux still lets other
/// processes `shmat` a marked segment by its id (a Linux extension, which RSHM relies on), and
/// keeps it while anyone is attached: so when the row is dropped (the server detaches) or the
/// server dies, even by SIGKILL, the replica goes as soon as the last program lets go of it. An
/// `IPC_PRIVATE` segment has no key that a cleanup script could find it by, so nothing else
/// could be trusted to remove it.
pub struct Replica {
    /// The server's own attachment (the seed's `addr`): it keeps the replica alive.
    pub att: Attachment,
    /// The replica's id, what `rshmat` hands to programs.
    pub shmid: ShmId,
    /// In huge pages (see [`new_replica`]).
    pub huge: bool,
}

/// One row.
pub struct Segment {
    pub rshmid: i32,
    pub key: i32,
    pub size: usize,
    pub owner: SocketAddrV4,
    /// Marked for removal: destroyed when the cluster-wide attach count reaches zero.
    pub marked: bool,
    /// The newest update applied (its version is what `client ls` shows).
    pub stamp: Stamp,
    /// Each node's attach count, as that node last announced it.
    pub counts: BTreeMap<SocketAddrV4, u32>,
    pub replica: Replica,
    /// The contents last sent or received: what a diff compares against. `None` until the
    /// first `rshmat` on this node ([`Segment::ensure_twin`]): until then only the server has
    /// written the replica (a program gets its shmid from `rshmat` alone), so the replica
    /// itself holds what was published, and nothing here can differ from it. A node that only
    /// holds a copy (a late joiner, a node whose programs use other segments) keeps one
    /// copy of the contents, not two. Once made, the twin stays for the row's life: a
    /// program that detached may have left unpublished bytes behind.
    twin: Option<Twin>,
    /// Per word: the version, and the index in `origins`, of the update that last wrote it.
    stamps: Stamps,
    /// The nodes that appear in word stamps (index 0: none). At most one per node.
    origins: Vec<SocketAddrV4>,
    /// The length of the last UPDATE frame this node sent for it.
    pub sent: u64,
    /// While peers' STATEs of this row are being applied, frame by frame: the version
    /// `client ls` still shows (the one before them), until the last frame of the last of
    /// them; and how many are open (two peers may stream the row at once).
    pub showing: Option<u64>,
    pub states_open: u32,
    /// How often this node's replica has changed: what `rshm_wait_changed` waits to see grow
    /// (counted by the server; see `rshm::gate`).
    pub changes: u64,
    /// This node's attaches, per process (the pid each AT and DT names): our entry in
    /// `counts` is always their sum. A process that dies attached is found by its pid and
    /// its attaches dropped, exactly ([`Segment::drop_dead`]).
    pub local: BTreeMap<i32, u32>,
}

/// A fresh replica and its word stamps, all zero (no twin yet: see [`Segment::twin`]).
type Fresh = (Replica, Stamps);

fn fresh(size: usize) -> io::Result<Fresh> {
    fits_shmmax(size as u64)?;
    let (shm, huge) = new_replica(size)?;
    let shm = Owner::new(shm);
    let att = shm.attach(Access::ReadWrite)?;
    // Marked at once: from now on our attachment alone keeps it (see `Replica`).
    let shmid = shm.get();
    shm.remove()?;
    let words = size.div_ceil(WORD);
    Ok((Replica { att, shmid, huge }, Stamps::zeroed(words)))
}

/// The replica's segment: in huge pages if it is large ([`RSHM_HUGE_MIN`]) and the pool has
/// room for all of it, else (or if the kernel refuses: the pool emptied meanwhile, or this
/// user may not use it) in ordinary pages. Nothing else changes: programs attach either kind
/// with `shmat`, and the server reads and writes both the same way, except that `mincore`
/// cannot tell it which pages of a huge one are empty (see `change::LiveReplica`).
///
/// Why it matters: a late joiner receives the whole segment into fresh memory, and at 4 KiB a
/// page that is 262,144 page faults for 1 GiB, each of which (on a virtual machine that hands
/// free memory back to its host) may be a fault on the host as well. From a pool that root
/// reserved and that has been used once, it is 512 faults on memory already in hand.
fn new_replica(size: usize) -> io::Result<(ShmId, bool)> {
    let (free, page) = huge_pages_free();
    if size >= RSHM_HUGE_MIN && page > 0 && free >= (size as u64).div_ceil(page) * page {
        match shmget_huge(size, DEFAULT_MODE) {
            Ok(id) => return Ok((id, true)),
            Err(e) => crate::trace!("replica of {size} bytes in ordinary pages: {e}"),
        }
    }
    Ok((shmget(IPC_PRIVATE, size, Get::Create(DEFAULT_MODE))?, false))
}

/// EINVAL, with the limit named, for a replica larger than this kernel's largest segment
/// (`shmmax`, which may differ from node to node); `shmget` alone would say only EINVAL.
pub fn fits_shmmax(size: u64) -> io::Result<()> {
    match kernel_limit("shmmax") {
        Ok(shmmax) if size > shmmax => Err(err(
            libc::EINVAL,
            format!("{size} bytes is larger than this node's kernel shmmax, {shmmax} bytes (/proc/sys/kernel/shmmax)"),
        )),
        _ => Ok(()),
    }
}

impl Segment {
    /// Attaches summed over every node. Saturating: the counts come from peers, and a
    /// hostile or broken one may send any number; a huge count only keeps the segment alive.
    pub fn total(&self) -> u32 {
        self.counts
            .values()
            .fold(0u32, |sum, n| sum.saturating_add(*n))
    }

    /// An rshmat by process `pid` here: returns this node's new count.
    pub fn attach(&mut self, me: SocketAddrV4, pid: i32) -> u32 {
        let n = self.local.entry(pid).or_insert(0);
        *n = n.saturating_add(1);
        self.sync_local(me)
    }

    /// An rshmdt by process `pid` here: its count goes down, or `None` if it has no attach
    /// here (a detach without an attach, or one already counted at its death).
    pub fn detach(&mut self, me: SocketAddrV4, pid: i32) -> Option<u32> {
        let n = self.local.get_mut(&pid)?;
        *n -= 1; // never 0 here: a process with no attach is removed from the map
        if *n == 0 {
            self.local.remove(&pid);
        }
        Some(self.sync_local(me))
    }

    /// Drops the attaches of every process `alive` says is gone: they died attached (SIGKILL
    /// gives no chance to rshmdt). Returns the pids and their attaches, and the new count.
    pub fn drop_dead(
        &mut self,
        me: SocketAddrV4,
        alive: impl Fn(i32) -> bool,
    ) -> (Vec<(i32, u32)>, u32) {
        let dead: Vec<(i32, u32)> = self
            .local
            .iter()
            .filter(|(pid, _)| !alive(**pid))
            .map(|(p, n)| (*p, *n))
            .collect();
        for (pid, _) in &dead {
            self.local.remove(pid);
        }
        (dead, self.sync_local(me))
    }

    /// Our entry in `counts` from the per-process counts.
    fn sync_local(&mut self, me: SocketAddrV4) -> u32 {
        let n = self.local.values().fold(0u32, |a, b| a.saturating_add(*b));
        self.counts.insert(me, n);
        n
    }

    /// The row as frames carry it.
    pub fn entry(&self) -> Entry {
        Entry {
            rshmid: self.rshmid,
            key: self.key,
            size: self.size as u64,
            owner: self.owner,
            marked: self.marked,
            version: self.shown_version(),
            counts: self.counts.iter().map(|(a, n)| (*a, *n)).collect(),
        }
    }

    /// The version `client ls` shows: the newest update applied, but not a STATE's until its
    /// last frame is.
    pub fn shown_version(&self) -> u64 {
        self.showing.unwrap_or(self.stamp.version)
    }

    fn origin_index(&mut self, node: SocketAddrV4) -> io::Result<u8> {
        if let Some(i) = self.origins.iter().position(|o| *o == node) {
            return Ok(i as u8);
        }
        if self.origins.len() > RSHM_MAX_PEERS + 1 {
            return Err(err(
                libc::EINVAL,
                format!("update from unknown node {node}"),
            ));
        }
        self.origins.push(node);
        Ok((self.origins.len() - 1) as u8)
    }

    fn stamp_words(&mut self, start: usize, end: usize, version: u64, org: u8) {
        self.stamps
            .fill(start / WORD..end.div_ceil(WORD), version, org);
    }

    /// An update from another node: each word of each run is written only if the update is
    /// newer than the word's own stamp, so an update that arrives late, or twice, never
    /// overwrites newer data. Returns the number of bytes written.
    pub fn apply_update(&mut self, stamp: Stamp, runs: &[Run]) -> io::Result<usize> {
        check_version(stamp.version)?;
        if let Some(r) = runs.iter().find(|r| !self.holds(r)) {
            return Err(err(
                libc::EINVAL,
                format!(
                    "run of {} bytes at {} outside the segment of {} bytes",
                    r.data.len(),
                    r.offset,
                    self.size
                ),
            ));
        }
        let org = self.origin_index(stamp.origin)?;
        let mut written = 0;
        for run in runs {
            // Inside the segment (checked above), so the offset fits a usize.
            written += self.write_newer(stamp, org, run.offset as usize, &run.data)?;
        }
        self.stamp = self.stamp.max(stamp);
        Ok(written)
    }

    /// The words of `data` (at `start`, inside the segment) whose stamp is older than
    /// `stamp` (origin index `org`), written: replica, twin and stamps. Returns the bytes
    /// written. Uniform pages of stamps are decided whole ([`Stamps::stretch`]).
    fn write_newer(
        &mut self,
        stamp: Stamp,
        org: u8,
        start: usize,
        data: &[u8],
    ) -> io::Result<usize> {
        let end = start + data.len();
        let wend = end.div_ceil(WORD);
        let (mut w, mut written) = (start / WORD, 0);
        while w < wend {
            // The longest stretch of words, from w, that this update may write.
            let first = w;
            let origins = &self.origins;
            w = self
                .stamps
                .stretch(w, wend, |v, o| older(v, o, stamp, origins));
            if w > first {
                let a = (first * WORD).max(start);
                let b = (w * WORD).min(end);
                self.write_both(a, &data[a - start..b - start])?;
                self.stamp_words(a, b, stamp.version, org);
                written += b - a;
            }
            // Skip the words that hold newer data.
            let origins = &self.origins;
            w = self
                .stamps
                .stretch(w, wend, |v, o| !older(v, o, stamp, origins));
        }
        Ok(written)
    }

    /// `bytes` at `a` into the replica and the twin, if there is one. A large write (a late
    /// joiner's STATE goes into fresh memory, where the kernel's page faults cost more than the
    /// copy) first asks for its pages in one call each ([`populate_write`]).
    fn write_both(&mut self, a: usize, bytes: &[u8]) -> io::Result<()> {
        let big = bytes.len() >= RSHM_POPULATE_MIN;
        if let Some(twin) = &mut self.twin {
            let twin = &mut twin[a..a + bytes.len()];
            if big {
                populate_write(twin.as_ptr() as usize, twin.len());
            }
            twin.copy_from_slice(bytes);
        }
        if big {
            populate_write(self.replica.att.addr() + a, bytes.len());
        }
        self.replica.att.write_at(a, bytes)
    }

    /// Bytes `[a, b)` as last published: the twin's, or while there is none, the replica's
    /// (which then only the server has written: see [`Segment::twin`]).
    pub fn published(&self, a: usize, b: usize) -> io::Result<Cow<'_, [u8]>> {
        match &self.twin {
            Some(twin) => Ok(Cow::Borrowed(&twin[a..b])),
            None => {
                let mut bytes = vec![0; b - a];
                self.replica.att.read_at(a, &mut bytes)?;
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// The lab's wrong way (`RSHM_UNORDERED=1`): every run written whole, whatever its stamp;
    /// the segment takes the update's stamp even if it is older. A late update then overwrites
    /// newer data, and two nodes that get two updates in opposite orders disagree for good.
    pub fn apply_unordered(&mut self, stamp: Stamp, runs: &[Run]) -> io::Result<usize> {
        check_version(stamp.version)?;
        let org = self.origin_index(stamp.origin)?;
        if let Some(r) = runs.iter().find(|r| !self.holds(r)) {
            let at = r.offset;
            return Err(err(
                libc::EINVAL,
                format!("run at {at} outside the segment"),
            ));
        }
        let mut written = 0;
        for run in runs {
            let (a, b) = (run.offset as usize, run.offset as usize + run.data.len());
            self.replica.att.write_at(a, &run.data)?;
            if let Some(twin) = &mut self.twin {
                twin[a..b].copy_from_slice(&run.data);
            }
            self.stamp_words(a, b, stamp.version, org);
            written += b - a;
        }
        self.stamp = stamp;
        Ok(written)
    }

    /// Whether `run` lies inside the segment (its end computed without overflow).
    fn holds(&self, run: &Run) -> bool {
        run.offset
            .checked_add(run.data.len() as u64)
            .is_some_and(|end| end <= self.size as u64)
    }
}

/// Whether a word stamped `(version v, origin index o)` is older than `stamp` (the version
/// alone decides, unless it is a tie: the common case needs no look-up of the origin).
fn older(v: u64, o: u8, stamp: Stamp, origins: &[SocketAddrV4]) -> bool {
    v < stamp.version || (v == stamp.version && origins[usize::from(o)] < stamp.origin)
}

/// Every number a peer sends is checked before it is used: a version above
/// [`RSHM_MAX_VERSION`] would let the next local change overflow (or, forged, win over every
/// later write), so the frame carrying it is refused.
fn check_version(version: u64) -> io::Result<()> {
    if version > RSHM_MAX_VERSION {
        return Err(err(
            libc::EOVERFLOW,
            format!("version {version} is above the limit {RSHM_MAX_VERSION}"),
        ));
    }
    Ok(())
}

/// rshmids: random, from a generator seeded by the kernel's entropy pool. `rand()` without a
/// seed gives every node the same "random" sequence; the first two nodes would collide.
struct Rng(u64);

impl Rng {
    fn from_os() -> io::Result<Rng> {
        let mut seed = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
        Ok(Rng(u64::from_le_bytes(seed) | 1))
    }

    /// xorshift64*: small, fast, and plenty for picking ids.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Every segment this node knows.
pub struct Table {
    me: SocketAddrV4,
    rows: BTreeMap<i32, Segment>,
    destroyed: VecDeque<i32>,
    /// rshmids that lost a race for their key, and the rshmid that won.
    aliases: VecDeque<(i32, i32)>,
    rng: Rng,
}

/// What [`Table::adopt`] did with a row another node announced.
#[derive(Debug, PartialEq, Eq)]
pub enum Adopted {
    /// A row new here.
    New,
    /// A row we knew (or had destroyed): counts merged.
    Known,
    /// It won a race for its key: our row `from` now goes by its rshmid.
    Renamed { from: i32 },
    /// It lost a race for its key to this row, which the sender must adopt.
    Lost(Entry),
}

fn err(errno: i32, text: String) -> io::Error {
    crate::sys::sys_error(text, io::Error::from_raw_os_error(errno))
}

impl Table {
    pub fn new(me: SocketAddrV4) -> io::Result<Table> {
        Ok(Table {
            me,
            rows: BTreeMap::new(),
            destroyed: VecDeque::new(),
            aliases: VecDeque::new(),
            rng: Rng::from_os()?,
        })
    }

    /// A random rshmid in 1..=i32::MAX that no row uses: never 0, never negative.
    pub fn new_id(&mut self) -> i32 {
        loop {
            let id = (self.rng.next() >> 33) as i32;
            if id > 0 && !self.rows.contains_key(&id) && !self.destroyed.contains(&id) {
                return id;
            }
        }
    }

    /// A random node id (shows a restart in HELLO).
    pub fn new_node_id(&mut self) -> u32 {
        // Never 0: programs use 0 for "no count seen from any run of this server".
        ((self.rng.next() >> 32) as u32).max(1)
    }

    /// The rshmid that `rshmid` now goes by: itself, or the winner of a race it lost.
    pub fn resolve(&self, rshmid: i32) -> i32 {
        let mut id = rshmid;
        for _ in 0..8 {
            match self.aliases.iter().find(|(from, _)| *from == id) {
                Some((_, to)) => id = *to,
                None => break,
            }
        }
        id
    }

    fn alias(&mut self, from: i32, to: i32) {
        if self.aliases.len() == RSHM_TOMBSTONES {
            self.aliases.pop_front();
        }
        self.aliases.push_back((from, to));
    }

    pub fn get(&self, rshmid: i32) -> Option<&Segment> {
        self.rows.get(&self.resolve(rshmid))
    }

    pub fn get_mut(&mut self, rshmid: i32) -> Option<&mut Segment> {
        let id = self.resolve(rshmid);
        self.rows.get_mut(&id)
    }

    /// A row another node announced (NEW, or a row of its HELLO table), with the rule for a
    /// key created on two nodes at once: **the lower rshmid wins**. Every node compares the
    /// same two numbers, so every node keeps the same row. The loser's rshmid becomes an alias
    /// of the winner's, so its callers' later calls still reach the segment; a row of ours
    /// that loses keeps its replica (and so the programs attached to it) if the sizes agree.
    pub fn adopt(&mut self, e: &Entry) -> io::Result<Adopted> {
        let id = self.resolve(e.rshmid);
        if id != e.rshmid {
            // It lost here before: the sender has not heard yet.
            return Ok(match self.rows.get(&id) {
                Some(w) => Adopted::Lost(w.entry()),
                None => Adopted::Known,
            });
        }
        if self.rows.contains_key(&id) || self.destroyed.contains(&id) {
            self.insert(e)?;
            return Ok(Adopted::Known);
        }
        let rival = if e.marked {
            None
        } else {
            self.by_key(e.key).map(|s| s.rshmid)
        };
        let Some(x) = rival else {
            self.insert(e)?;
            return Ok(Adopted::New);
        };
        if x < e.rshmid {
            self.alias(e.rshmid, x);
            crate::trace!(
                "table: key 0x{:08x} made twice: rshmid {x} wins over {}",
                e.key,
                e.rshmid
            );
            return Ok(Adopted::Lost(self.rows[&x].entry()));
        }
        // Ours loses: it takes the winner's name, owner and size.
        let mut row = self.rows.remove(&x).expect("found by key");
        crate::trace!(
            "table: key 0x{:08x} made twice: rshmid {} wins over {x} (ours)",
            e.key,
            e.rshmid
        );
        row.rshmid = e.rshmid;
        row.owner = e.owner;
        for (node, n) in &e.counts {
            if *node != self.me {
                row.counts.entry(*node).or_insert(*n);
            }
        }
        if row.size as u64 != e.size {
            let size = e.size as usize;
            let (replica, stamps) = fresh(size)?;
            row.size = size;
            row.replica = replica;
            row.twin = None;
            row.stamps = stamps;
            row.stamp = Stamp::ZERO;
        }
        self.alias(x, e.rshmid);
        self.rows.insert(e.rshmid, row);
        Ok(Adopted::Renamed { from: x })
    }

    /// The live (not marked) segment with this key: a marked one keeps its id, as with shm,
    /// but gives up its key, so that `rshmget` makes a new segment.
    pub fn by_key(&self, key: i32) -> Option<&Segment> {
        self.rows.values().find(|s| s.key == key && !s.marked)
    }

    pub fn rows(&self) -> impl Iterator<Item = &Segment> {
        self.rows.values()
    }

    /// Creates a new segment owned by this node, with its replica.
    pub fn create(&mut self, key: i32, size: usize) -> io::Result<&Segment> {
        let rshmid = self.new_id();
        let entry = Entry {
            rshmid,
            key,
            size: size as u64,
            owner: self.me,
            marked: false,
            version: 0,
            counts: vec![(self.me, 0)],
        };
        self.insert(&entry)?;
        Ok(&self.rows[&rshmid])
    }

    /// Adds a row another node told us about (NEW, or one row of a HELLO table) and creates
    /// its replica; merges counts into a row we know. Returns true if the row is new here.
    pub fn insert(&mut self, e: &Entry) -> io::Result<bool> {
        if self.destroyed.contains(&e.rshmid) {
            return Ok(false);
        }
        if let Some(row) = self.rows.get_mut(&e.rshmid) {
            row.marked |= e.marked;
            // The version in a table row is for show: contents and their stamp travel only
            // in UPDATE and STATE frames, which decide by the stamp alone.
            for (node, n) in &e.counts {
                // A node is the authority on its own count: never let another node's view of
                // *our* count overwrite ours, and only fill in third nodes we know nothing of.
                if *node != self.me && !row.counts.contains_key(node) {
                    row.counts.insert(*node, *n);
                }
            }
            return Ok(false);
        }
        if self.rows.len() >= RSHM_MAX_SEGMENTS {
            return Err(err(
                libc::ENOSPC,
                format!("table full: {RSHM_MAX_SEGMENTS} segments"),
            ));
        }
        if e.size == 0 || e.size > RSHM_MAX_SEGMENT as u64 {
            return Err(err(
                libc::EINVAL,
                format!("size {} outside 1..={RSHM_MAX_SEGMENT}", e.size),
            ));
        }
        let size = e.size as usize;
        let (replica, stamps) = fresh(size)?;
        let shmid = replica.shmid;
        let mut counts: BTreeMap<SocketAddrV4, u32> =
            e.counts.iter().take(RSHM_MAX_PEERS + 1).copied().collect();
        counts.insert(self.me, 0);
        crate::trace!(
            "table: rshmid {} key 0x{:08x} size {size} owner {} -> replica shmid {}",
            e.rshmid,
            e.key,
            e.owner,
            shmid.0
        );
        self.rows.insert(
            e.rshmid,
            Segment {
                rshmid: e.rshmid,
                key: e.key,
                size,
                owner: e.owner,
                marked: e.marked,
                // Zeros, stamped below everything: the contents come in a STATE frame (after
                // the HELLO_REPLY) or an UPDATE, and either is newer.
                stamp: Stamp::ZERO,
                counts,
                replica,
                twin: None,
                stamps,
                origins: vec![Stamp::ZERO.origin],
                sent: 0,
                showing: None,
                states_open: 0,
                changes: 0,
                local: BTreeMap::new(),
            },
        );
        Ok(true)
    }

    /// `node`'s own report of its attach count.
    pub fn set_count(&mut self, rshmid: i32, node: SocketAddrV4, count: u32) -> bool {
        match self.get_mut(rshmid) {
            Some(row) => {
                row.counts.insert(node, count);
                true
            }
            None => false,
        }
    }

    /// The counts of a HELLO table from `from`, once its rows are adopted: `from`'s own counts
    /// are the truth (it may have restarted with none), and a row it does not list has no
    /// process attached on `from`.
    pub fn hello_counts(&mut self, from: SocketAddrV4, entries: &[Entry]) {
        for e in entries {
            let theirs = e.counts.iter().find(|(n, _)| *n == from).map_or(0, |c| c.1);
            self.set_count(e.rshmid, from, theirs);
        }
        // A set: a table of thousands of rows is looked up once per row.
        let listed: BTreeSet<i32> = entries.iter().map(|e| self.resolve(e.rshmid)).collect();
        for row in self.rows.values_mut() {
            if !listed.contains(&row.rshmid) {
                row.counts.insert(from, 0);
            }
        }
    }

    /// Every row's count for `node` becomes 0 (it left). Returns the rows now destroyable
    /// by this node: owned here, marked, and with no attach left anywhere.
    pub fn forget_node(&mut self, node: SocketAddrV4) -> Vec<i32> {
        for row in self.rows.values_mut() {
            row.counts.insert(node, 0);
        }
        self.destroyable()
    }

    /// The rows this node should destroy now: owned here, marked, with no attach anywhere.
    pub fn destroyable(&self) -> Vec<i32> {
        self.rows
            .values()
            .filter(|r| r.owner == self.me && r.marked && r.total() == 0)
            .map(|r| r.rshmid)
            .collect()
    }

    /// Drops the row: the server detaches and removes its replica. Processes still attached
    /// keep their mapping, as with shm after IPC_RMID.
    pub fn destroy(&mut self, rshmid: i32) -> bool {
        let rshmid = self.resolve(rshmid);
        if self.destroyed.len() == RSHM_TOMBSTONES {
            self.destroyed.pop_front();
        }
        self.destroyed.push_back(rshmid);
        let gone = self.rows.remove(&rshmid).is_some();
        if gone {
            crate::trace!("table: rshmid {rshmid} destroyed");
        }
        gone
    }

    /// Every row, dropped: used at shutdown.
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// The rows as HELLO carries them.
    pub fn entries(&self) -> Vec<Entry> {
        self.rows.values().map(Segment::entry).collect()
    }

    /// At most `page` rows with an rshmid above `after`, as `client ls` prints them, and
    /// whether more rows follow.
    pub fn ls(&self, after: i32, page: usize) -> (Vec<LsEntry>, bool) {
        let mut rows = self
            .rows
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, s)| s)
            .peekable();
        let entries = rows
            .by_ref()
            .take(page)
            .map(|s| LsEntry {
                rshmid: s.rshmid,
                key: s.key,
                size: s.size as u64,
                owner: s.owner,
                marked: s.marked,
                attaches: s.total(),
                shmid: s.replica.shmid.0,
                version: s.shown_version(),
                sent: s.sent,
            })
            .collect();
        (entries, rows.peek().is_some())
    }
}

mod change;
mod stamps;
mod state;

#[cfg(test)]
mod tests;

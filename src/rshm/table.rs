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
//! Rules: only the server's state lock reaches a `Table`; a row's replica is marked for removal
//! as soon as it exists and goes when the row is dropped and the last program has detached (see
//! [`Replica`]); destroyed rows are remembered so that a late HELLO from a node that missed the
//! removal does not bring them back.

use crate::params::{
    DEFAULT_MODE, RSHM_MAX_PEERS, RSHM_MAX_SEGMENT, RSHM_MAX_SEGMENTS, RSHM_TOMBSTONES,
};
use crate::sys::shm::{shmget, Access, Attachment, Get, ShmId};
use crate::sys::{Owner, IPC_PRIVATE};
use crate::wire::rshm::{Entry, LsEntry};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddrV4;

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
}

/// One row.
pub struct Segment {
    pub rshmid: i32,
    pub key: i32,
    pub size: usize,
    pub owner: SocketAddrV4,
    /// Marked for removal: destroyed when the cluster-wide attach count reaches zero.
    pub marked: bool,
    /// Bumped by every rshmChanged; a replica with a lower version has older contents.
    pub version: u64,
    /// Each node's attach count, as that node last announced it.
    pub counts: BTreeMap<SocketAddrV4, u32>,
    pub replica: Replica,
}

impl Segment {
    /// Attaches summed over every node.
    pub fn total(&self) -> u32 {
        self.counts.values().sum()
    }

    /// The row as frames carry it.
    pub fn entry(&self) -> Entry {
        Entry {
            rshmid: self.rshmid,
            key: self.key,
            size: self.size as u64,
            owner: self.owner,
            marked: self.marked,
            version: self.version,
            counts: self.counts.iter().map(|(a, n)| (*a, *n)).collect(),
        }
    }
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
    rng: Rng,
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
        (self.rng.next() >> 32) as u32
    }

    pub fn get(&self, rshmid: i32) -> Option<&Segment> {
        self.rows.get(&rshmid)
    }

    pub fn get_mut(&mut self, rshmid: i32) -> Option<&mut Segment> {
        self.rows.get_mut(&rshmid)
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
            // Versions work as a Lamport clock: take the larger, so that the next rshmChanged
            // here is numbered above every update the group has seen, and is applied.
            row.version = row.version.max(e.version);
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
        let shm = Owner::new(shmget(IPC_PRIVATE, size, Get::Create(DEFAULT_MODE))?);
        let att = shm.attach(Access::ReadWrite)?;
        // Marked at once: from now on our attachment alone keeps it (see `Replica`).
        let shmid = shm.get();
        shm.remove()?;
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
                // The clock, not the bytes: a replica made from a HELLO table starts empty
                // (contents travel only in UPDATE frames) but numbers its next change above
                // the group's. (Sending the contents with HELLO is left for later work.)
                version: e.version,
                counts,
                replica: Replica { att, shmid },
            },
        );
        Ok(true)
    }

    /// `node`'s own report of its attach count.
    pub fn set_count(&mut self, rshmid: i32, node: SocketAddrV4, count: u32) -> bool {
        match self.rows.get_mut(&rshmid) {
            Some(row) => {
                row.counts.insert(node, count);
                true
            }
            None => false,
        }
    }

    /// A HELLO table from `from`: every row merged, and `from`'s own counts taken as the truth
    /// (it may have restarted with none). Returns the error of the first row that failed.
    pub fn merge(&mut self, from: SocketAddrV4, entries: &[Entry]) -> io::Result<()> {
        let mut first = Ok(());
        for e in entries {
            if let Err(x) = self.insert(e) {
                if first.is_ok() {
                    first = Err(x);
                }
                continue;
            }
            let theirs = e.counts.iter().find(|(n, _)| *n == from).map_or(0, |c| c.1);
            self.set_count(e.rshmid, from, theirs);
        }
        // Rows the sender did not list: it has no process attached to them.
        let listed: Vec<i32> = entries.iter().map(|e| e.rshmid).collect();
        for row in self.rows.values_mut() {
            if !listed.contains(&row.rshmid) {
                row.counts.insert(from, 0);
            }
        }
        first
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

    /// The rows as `client ls` prints them.
    pub fn ls(&self) -> Vec<LsEntry> {
        self.rows
            .values()
            .map(|s| LsEntry {
                rshmid: s.rshmid,
                key: s.key,
                size: s.size as u64,
                owner: s.owner,
                marked: s.marked,
                attaches: s.total(),
                shmid: s.replica.shmid.0,
                version: s.version,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn node(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn ids_are_positive_random_and_distinct() {
        let mut a = Table::new(node(1)).unwrap();
        let mut b = Table::new(node(2)).unwrap();
        let ids: Vec<i32> = (0..1000).map(|_| a.new_id()).collect();
        assert!(ids.iter().all(|&i| i > 0));
        // Two tables seeded from the OS do not produce the same sequence.
        assert_ne!(ids[..4], (0..4).map(|_| b.new_id()).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn counts_merge_per_node_and_destroy_removes_the_replica() {
        let me = node(1);
        let mut t = Table::new(me).unwrap();
        let id = t.create(0x77, 64).unwrap().rshmid;
        let shmid = t.get(id).unwrap().replica.shmid;
        t.set_count(id, me, 2);
        let mut e = t.get(id).unwrap().entry();
        // Another node's view of our count never overrides ours; its own count is taken.
        e.counts = vec![(me, 9), (node(2), 3)];
        t.merge(node(2), &[e.clone()]).unwrap();
        assert_eq!(t.get(id).unwrap().total(), 5);
        assert!(t.forget_node(node(2)).is_empty());
        t.get_mut(id).unwrap().marked = true;
        t.set_count(id, me, 0);
        assert_eq!(t.forget_node(node(2)), vec![id]);
        assert!(t.destroy(id));
        assert!(shmid.stat().is_err());
        // A stale table that still lists it does not bring it back.
        assert!(!t.insert(&e).unwrap());
        assert!(t.get(id).is_none());
    }
}

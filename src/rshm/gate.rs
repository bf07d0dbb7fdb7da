//! Change gates: how a program waits for a replica to change without asking the server each
//! time.
//!
//! A follower calls `rshm_wait_changed` in a loop. If every call were a request on the queue,
//! every change would cost the server a second wake-up (the follower's next request), just
//! when the machine is busiest. Instead, the server keeps a *counter* per segment in a
//! semaphore, and a program sleeps on the semaphore itself:
//!
//! ```text
//!   server, after writing an update into the replica:   semop(gate, [ +1 ])
//!   program that has seen the count v:                   semop(gate, [ -(v+1), +(v+1) ])
//! ```
//!
//! The program's semop is two operations on one semaphore, and the kernel applies both or
//! neither: "take v+1, give v+1 back" can happen only when the count is at least v+1, and then
//! leaves the count as it was. So it sleeps exactly until the count passes v, and wakes every
//! program whose v has been passed at once. Nothing is lost between reading v and calling
//! semop: a change made meanwhile raised the count already, and the semop returns at once.
//! (Lab 02's device has a gate that opens and closes; a watcher that arrives between two
//! updates misses one there, which is fine for a device that updates every tick, not here.)
//!
//! # The count and `changes`
//! The server counts every change of a replica in `changes`, a u64, and a program's reference
//! point is the `changes` it last saw. A gate is a window on it: a reply hands the program
//! `(changes, gate)` where `gate` names a semaphore and its value at that same moment; each
//! later +1 on the semaphore is one more change. When the program wakes, `changes` moved by
//! exactly as much as the semaphore did. A count means something only to the run of the server
//! that made it: replies carry the server's node id (random at each start), a WAIT carries it
//! back, and a server that restarted since answers as if the program had seen nothing.
//!
//! # When a gate cannot count any more
//! A semaphore holds at most SEMVMX (32767). A gate counts up to [`GATE_CAP`]; the change after
//! that **retires** the semaphore: the server sets it to [`RETIRED`], above every count a
//! program can wait for, which wakes all of them, and the segment gets a fresh semaphore the
//! next time a reply names one. A program that finds [`RETIRED`], or finds the set removed
//! (EIDRM), asks the server through the queue (a WAIT request, compared with `changes`), whose
//! reply names the segment's current gate. A removed segment retires its gate the same way.
//!
//! A retired semaphore is never handed to another segment, so a program never sleeps on a
//! semaphore that counts someone else's changes.
//!
//! # Several sets
//! One set holds [`RSHM_GATE_SEMS`] semaphores (250, the smallest per-set limit a Linux kernel
//! has shipped with), and a table may hold [`RSHM_MAX_SEGMENTS`] segments. So the server makes
//! sets as it needs them, up to [`RSHM_GATE_SETS`], enough for twice as many semaphores as
//! segments, each set under a key of its own ([`gate_keys`]). When no set has a fresh
//! semaphore left and no more sets may be made, the server *renews* the set with the fewest
//! live gates: removing it wakes its sleepers with EIDRM, and they ask the queue for a new
//! gate. With twice as many semaphores as segments, that set has at most half its semaphores
//! live, so a renewal frees at least half a set: renewals stay rare (one per half a set of
//! retirements), and a thousand segments with a waiter each never make gates thrash.
//!
//! # Who owns what
//! The server creates every set (keys [`gate_keys`]: `0x52470000 + port` for the first, then
//! `0x67000000 + (k << 16) + port` for set k = 1, 2, ...) and removes them all at shutdown,
//! through [`Gates`]. Programs only `semop` and `GETVAL` them. A server killed with SIGKILL
//! leaves them, as it leaves its queue; the next server on that port removes every set under
//! any of those keys, having found the port's alive semaphore at 0 (see [`super::alive`]), or
//! having claimed that semaphore and created its queue (so no other server serves the port).

use crate::params::{
    DEFAULT_MODE, RSHM_GATE_KEY_BASE, RSHM_GATE_MORE_KEY_BASE, RSHM_GATE_SEMS, RSHM_GATE_SETS,
    RSHM_MAX_SEGMENTS,
};
use crate::sys::sem::{semget, SemId, SemOp};
use crate::sys::shm::Get;
use crate::sys::{self, ipcs, Key, Owner};
use crate::wire::rshm::GateRef;
use std::collections::HashMap;
use std::io;
use std::time::Instant;

/// The highest count a gate reaches before it is retired.
pub const GATE_CAP: u16 = 32766;

/// The value of a retired gate: SEMVMX, above every count a program waits for.
pub const RETIRED: u16 = crate::wire::rshm::SEMVMX;

/// The key of the first gate set of the server on `port`: `0x52470000 + port` ("RG", then the
/// port).
pub fn gate_key(port: u16) -> Key {
    RSHM_GATE_KEY_BASE + Key::from(port)
}

/// The keys of every gate set the server on `port` may make: [`gate_key`], then for set k
/// (1 up to `RSHM_GATE_SETS - 1`) `0x67000000 + (k << 16) + port` ("g", k, then the port).
pub fn gate_keys(port: u16) -> Vec<Key> {
    let more = (1..RSHM_GATE_SETS as Key).map(|k| RSHM_GATE_MORE_KEY_BASE + (k << 16));
    std::iter::once(gate_key(port))
        .chain(more.map(|base| base + Key::from(port)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The server's side.

/// One semaphore set of gates.
struct Set {
    set: Owner<SemId>,
    /// Semaphores handed out since the set was made; never handed out twice.
    used: u16,
    /// Of those, how many count a segment now.
    live: u16,
}

/// A server's gates: the semaphore sets, and which semaphore counts which segment.
pub struct Gates {
    /// The key of each set that may be made, in order.
    keys: Vec<Key>,
    nsems: u16,
    cap: u16,
    /// The sets made so far (index k: key `keys[k]`; None while a renewal failed); empty
    /// once removed.
    sets: Vec<Option<Set>>,
    removed: bool,
    /// rshmid -> (set, semaphore, its value).
    live: HashMap<i32, (usize, u16, u16)>,
}

impl Gates {
    /// Creates the first set for the server on `port`. The caller has created the port's
    /// queue exclusively, so a set already under one of its keys is a crashed server's: it is
    /// removed.
    pub fn create(port: u16) -> io::Result<Gates> {
        Gates::with_limits(gate_keys(port), RSHM_GATE_SEMS, GATE_CAP)
    }

    /// As [`Gates::create`], with other keys (their number: the most sets), set size and cap:
    /// the unit tests renew sets and retire gates without thousands of segments or changes.
    fn with_limits(keys: Vec<Key>, nsems: u16, cap: u16) -> io::Result<Gates> {
        for old in ipcs::list()?
            .iter()
            .filter(|o| o.kind == ipcs::Kind::Sem && keys.contains(&o.key))
        {
            crate::trace!(
                "gates: removing a set left under key 0x{:08x}: {old:?}",
                old.key
            );
            ipcs::remove(old)?;
        }
        let mut g = Gates {
            keys,
            nsems,
            cap: cap.min(GATE_CAP),
            sets: Vec::new(),
            removed: false,
            live: HashMap::new(),
        };
        g.make(0)?;
        Ok(g)
    }

    /// The first set's id, for the server's start-up line; -1 once removed.
    pub fn semid(&self) -> i32 {
        self.sets
            .first()
            .and_then(Option::as_ref)
            .map_or(-1, |s| s.set.get().0)
    }

    /// Removes every set (at shutdown): every sleeper wakes with EIDRM and asks the queue.
    /// Counting stops, and no reply names a gate any more.
    pub fn remove(&mut self) -> io::Result<()> {
        self.live.clear();
        self.removed = true;
        let mut result = Ok(());
        for s in self.sets.drain(..).flatten() {
            result = result.and(s.set.remove());
        }
        result
    }

    /// Set `k`, made fresh under its key: in place of the old one, whose sleepers wake with
    /// EIDRM and ask the server, or as a new set after the last.
    fn make(&mut self, k: usize) -> io::Result<()> {
        if k == self.sets.len() {
            self.sets.push(None);
        }
        if let Some(old) = self.sets[k].take() {
            self.live.retain(|_, (set, _, _)| *set != k);
            crate::trace!(
                "gates: renewing set {k}: {} live gate(s) sent to ask",
                old.live
            );
            // Removed first, so that the key is free for its successor.
            old.set.remove()?;
        }
        let key = self.keys[k];
        // A new set's semaphores are 0 on Linux; every gate starts counting from there.
        let set = Owner::new(semget(key, self.nsems, Get::Create(DEFAULT_MODE))?);
        crate::trace!("gates: set {k} semid {} (key 0x{key:08x})", set.get().0);
        self.sets[k] = Some(Set {
            set,
            used: 0,
            live: 0,
        });
        Ok(())
    }

    /// A set with a fresh semaphore: the first that has one, else a new set, else the set
    /// with the fewest live gates, renewed.
    fn set_with_room(&mut self) -> io::Result<usize> {
        let room = |s: &Option<Set>| s.as_ref().is_some_and(|s| s.used < self.nsems);
        if let Some(k) = self.sets.iter().position(room) {
            return Ok(k);
        }
        let k = if self.sets.len() < self.keys.len() {
            self.sets.len()
        } else {
            // A slot whose renewal failed (None) has no live gate: it is tried again first.
            (0..self.sets.len())
                .min_by_key(|&k| self.sets[k].as_ref().map_or(0, |s| s.live))
                .expect("at least one key")
        };
        self.make(k)?;
        Ok(k)
    }

    /// Set `k`, which holds a live gate (a renewal clears its gates before it takes the set).
    fn set(&mut self, k: usize) -> &mut Set {
        self.sets[k].as_mut().expect("a live gate's set exists")
    }

    /// The gate of `rshmid`, for a reply: a fresh semaphore if it has none yet.
    pub fn gate(&mut self, rshmid: i32) -> io::Result<GateRef> {
        if self.removed {
            return Err(io::Error::from_raw_os_error(libc::EIDRM));
        }
        if !self.live.contains_key(&rshmid) {
            let k = self.set_with_room()?;
            let s = self.set(k);
            let sem = s.used;
            s.used += 1;
            s.live += 1;
            self.live.insert(rshmid, (k, sem, 0));
        }
        let (k, sem, value) = self.live[&rshmid];
        Ok(GateRef {
            semid: self.set(k).set.get().0,
            sem,
            value,
        })
    }

    /// One change of `rshmid`'s replica: +1 on its gate, or, at the cap, retire the gate.
    /// Nothing if it has no gate (no reply has named one, so nobody sleeps on it).
    pub fn count(&mut self, rshmid: i32) -> io::Result<()> {
        let Some(&(k, sem, value)) = self.live.get(&rshmid) else {
            return Ok(());
        };
        if value == self.cap {
            return self.retire(rshmid);
        }
        self.live.insert(rshmid, (k, sem, value + 1));
        self.set(k).set.get().op(&[SemOp::post(sem)])
    }

    /// `rshmid` is gone, or goes by another name now: its sleepers wake and ask the server.
    pub fn retire(&mut self, rshmid: i32) -> io::Result<()> {
        match self.live.remove(&rshmid) {
            Some((k, sem, _)) => {
                let s = self.set(k);
                s.live -= 1;
                s.set.get().set_val(sem, i32::from(RETIRED))
            }
            None => Ok(()),
        }
    }
}

/// Enough sets for twice as many gates as segments (see "Several sets").
const _: () = assert!(RSHM_GATE_SETS * RSHM_GATE_SEMS as usize >= 2 * RSHM_MAX_SEGMENTS);

// ---------------------------------------------------------------------------------------------
// The program's side.

/// How a wait on a gate ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Woke {
    /// The count passed the one seen; here is the gate's value now.
    Changed(u16),
    /// The deadline came first.
    TimedOut,
    /// The gate was retired or its set removed: ask the server.
    AskServer,
}

/// Sleeps until `gate`'s count passes `gate.value`, or until `deadline`.
pub fn wait(gate: GateRef, deadline: Instant) -> io::Result<Woke> {
    let set = SemId(gate.semid);
    // "At least value+1": take it and give it back, in one semop (see the module header).
    let need = (gate.value + 1).min(RETIRED) as i16;
    let ops = [SemOp::add(gate.sem, -need), SemOp::add(gate.sem, need)];
    let timeout = deadline.saturating_duration_since(Instant::now());
    let woke = match set.op_timeout(&ops, timeout) {
        Ok(false) => return Ok(Woke::TimedOut),
        Ok(true) => set.get_val(gate.sem),
        Err(e) => Err(e),
    };
    match woke {
        Ok(v) if v >= i32::from(RETIRED) => Ok(Woke::AskServer),
        Ok(v) => Ok(Woke::Changed(v as u16)),
        Err(e) if sys::is_removed(&e) => Ok(Woke::AskServer),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `n` keys of this test's own (from a fresh temporary file), so that tests running at the
    /// same time never touch each other's sets.
    fn own_keys(dir: &crate::testutil::TempDir, n: u8) -> Vec<Key> {
        (0..n)
            .map(|i| crate::sys::ftok(dir.path(), b'G' + i).unwrap())
            .collect()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn a_wait_ends_when_the_count_passes_what_was_seen() {
        let dir = crate::testutil::TempDir::new("gates-wait");
        let mut g = Gates::with_limits(own_keys(&dir, 1), 4, GATE_CAP).unwrap();
        let seen = g.gate(7).unwrap();
        assert_eq!((seen.sem, seen.value), (0, 0));
        assert_eq!(wait(seen, soon()).unwrap(), Woke::TimedOut);
        // A change before the wait starts is not lost: the wait returns at once.
        g.count(7).unwrap();
        g.count(7).unwrap();
        assert_eq!(wait(seen, soon()).unwrap(), Woke::Changed(2));
        // A sleeper is woken by the change.
        let later = g.gate(7).unwrap();
        let t = std::thread::spawn(move || wait(later, Instant::now() + Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        g.count(7).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), Woke::Changed(3));
        // Segments have their own gates; one without a gate is not counted.
        assert_eq!(g.gate(8).unwrap().sem, 1);
        g.count(9).unwrap();
        assert_eq!(g.gate(7).unwrap().value, 3);
    }

    #[test]
    fn a_full_gate_is_retired_and_the_set_renewed_when_used_up() {
        let dir = crate::testutil::TempDir::new("gates-retire");
        let mut g = Gates::with_limits(own_keys(&dir, 1), 2, 3).unwrap();
        let first = g.gate(7).unwrap();
        for _ in 0..3 {
            g.count(7).unwrap();
        }
        assert_eq!(wait(first, soon()).unwrap(), Woke::Changed(3));
        // The fourth change retires the gate: everyone on it is sent to the server.
        let full = g.gate(7).unwrap();
        g.count(7).unwrap();
        assert_eq!(wait(full, soon()).unwrap(), Woke::AskServer);
        assert_eq!(wait(first, soon()).unwrap(), Woke::AskServer);
        // The next reply names a fresh semaphore, never the retired one.
        let fresh = g.gate(7).unwrap();
        assert_eq!((fresh.sem, fresh.value), (1, 0));
        // Both semaphores used, and no other set allowed: the next gate renews the set, and
        // the old set's ids are dead.
        let old_set = fresh.semid;
        g.retire(7).unwrap();
        let renewed = g.gate(8).unwrap();
        assert_ne!(renewed.semid, old_set);
        assert_eq!((renewed.sem, renewed.value), (0, 0));
        assert_eq!(wait(fresh, soon()).unwrap(), Woke::AskServer);
    }

    #[test]
    fn more_gates_than_one_set_holds_take_more_sets_and_renew_the_emptiest() {
        let dir = crate::testutil::TempDir::new("gates-sets");
        let keys = own_keys(&dir, 3);
        let mut g = Gates::with_limits(keys.clone(), 4, GATE_CAP).unwrap();
        // 12 segments, 4 gates per set: three sets, every gate live and counting apart.
        let gates: Vec<GateRef> = (1..=12).map(|id| g.gate(id).unwrap()).collect();
        let sets: std::collections::BTreeSet<i32> = gates.iter().map(|r| r.semid).collect();
        assert_eq!(sets.len(), 3);
        for id in 1..=12 {
            g.count(id).unwrap();
        }
        for r in &gates {
            assert_eq!(wait(*r, soon()).unwrap(), Woke::Changed(1));
        }
        // Asking again changes nothing: no renewal, no thrash.
        assert!((1..=12).all(|id| g.gate(id).unwrap().semid == gates[id as usize - 1].semid));
        // Three segments of the second set go: the 13th gate renews that set (the one with
        // the fewest live gates), and only its remaining sleeper is sent to ask.
        for id in [5, 6, 7] {
            g.retire(id).unwrap();
        }
        let new = g.gate(13).unwrap();
        assert_ne!(new.semid, gates[4].semid);
        assert_eq!(wait(gates[7], soon()).unwrap(), Woke::AskServer);
        for id in [1, 9] {
            let now = g.gate(id).unwrap();
            assert_eq!(now.semid, gates[id as usize - 1].semid, "not renewed");
            assert_eq!(
                wait(now, soon()).unwrap(),
                Woke::TimedOut,
                "and still counting"
            );
        }
        // Every set goes at removal, under every key.
        g.remove().unwrap();
        for k in keys {
            assert!(ipcs::with_key(k).unwrap().is_empty());
        }
    }

    #[test]
    fn a_set_left_by_a_crashed_server_is_replaced_and_the_owner_removes_its_own() {
        let dir = crate::testutil::TempDir::new("gates-left");
        let keys = own_keys(&dir, 2);
        let left = semget(keys[0], 1, Get::Create(0o600)).unwrap();
        let also = semget(keys[1], 1, Get::Create(0o600)).unwrap();
        let g = Gates::with_limits(keys.clone(), 4, GATE_CAP).unwrap();
        assert_ne!(g.semid(), left.0);
        assert!(also.stat().is_err(), "a second set left is removed too");
        drop(g);
        for k in keys {
            assert!(ipcs::with_key(k).unwrap().is_empty());
        }
    }

    #[test]
    fn every_port_has_its_own_gate_keys() {
        let a = gate_keys(7001);
        assert_eq!(a.len(), RSHM_GATE_SETS);
        assert_eq!(a[0], 0x5247_1b59);
        assert_eq!(a[1], 0x6701_1b59);
        let b = gate_keys(7002);
        assert!(a.iter().all(|k| !b.contains(k)));
        let all: std::collections::BTreeSet<Key> = a.iter().copied().collect();
        assert_eq!(all.len(), a.len());
    }
}

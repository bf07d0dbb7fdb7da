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
//! semaphore that counts someone else's changes. When the set has no fresh semaphore left, the
//! server replaces the whole set: removing it wakes every sleeper with EIDRM, and they ask.
//!
//! # Who owns what
//! The server creates the set (key [`gate_key`]: `0x52470000 + port`) and removes it at
//! shutdown, through [`Gates`]. Programs only `semop` and `GETVAL` it. A server killed with
//! SIGKILL leaves it, as it leaves its queue; the next server on that port removes it, having
//! found the port's alive semaphore at 0 (see [`super::alive`]), or having claimed that
//! semaphore and created its queue (so no other server serves the port).

use crate::params::{DEFAULT_MODE, RSHM_GATE_KEY_BASE};
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

/// The key of the gate set of the server on `port`: `0x52470000 + port` ("RG", then the port).
pub fn gate_key(port: u16) -> Key {
    RSHM_GATE_KEY_BASE + Key::from(port)
}

// ---------------------------------------------------------------------------------------------
// The server's side.

/// A server's gates: the semaphore set, and which semaphore counts which segment.
pub struct Gates {
    key: Key,
    nsems: u16,
    cap: u16,
    set: Option<Owner<SemId>>,
    /// Semaphores of this set handed out so far; never handed out twice.
    used: u16,
    /// rshmid -> (semaphore, its value).
    live: HashMap<i32, (u16, u16)>,
}

impl Gates {
    /// Creates the set for the server on `port`. The caller has created the port's queue
    /// exclusively, so a set already under this key is a crashed server's: it is removed.
    pub fn create(port: u16, nsems: u16) -> io::Result<Gates> {
        Gates::with_cap(gate_key(port), nsems, GATE_CAP)
    }

    /// As [`Gates::create`], with a lower cap: the unit tests retire gates without 32766 changes.
    fn with_cap(key: Key, nsems: u16, cap: u16) -> io::Result<Gates> {
        for old in ipcs::with_key(key)?
            .iter()
            .filter(|o| o.kind == ipcs::Kind::Sem)
        {
            crate::trace!("gates: removing a set left under key 0x{key:08x}: {old:?}");
            ipcs::remove(old)?;
        }
        let mut g = Gates {
            key,
            nsems,
            cap: cap.min(GATE_CAP),
            set: None,
            used: 0,
            live: HashMap::new(),
        };
        g.renew()?;
        Ok(g)
    }

    /// The set's id, for the server's start-up line; -1 once removed.
    pub fn semid(&self) -> i32 {
        self.set.as_ref().map_or(-1, |s| s.get().0)
    }

    /// Removes the set (at shutdown): every sleeper wakes with EIDRM and asks the queue.
    /// Counting stops, and no reply names a gate any more.
    pub fn remove(&mut self) -> io::Result<()> {
        self.live.clear();
        match self.set.take() {
            Some(set) => set.remove(),
            None => Ok(()),
        }
    }

    /// A fresh set in place of the old one, whose sleepers wake with EIDRM and ask the server.
    fn renew(&mut self) -> io::Result<()> {
        if let Some(old) = self.set.take() {
            old.remove()?;
        }
        // A new set's semaphores are 0 on Linux; every gate starts counting from there.
        self.set = Some(Owner::new(semget(
            self.key,
            self.nsems,
            Get::Create(DEFAULT_MODE),
        )?));
        self.used = 0;
        self.live.clear();
        crate::trace!("gates: set semid {} (key 0x{:08x})", self.semid(), self.key);
        Ok(())
    }

    /// The gate of `rshmid`, for a reply: a fresh semaphore if it has none yet.
    pub fn gate(&mut self, rshmid: i32) -> io::Result<GateRef> {
        if self.set.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EIDRM));
        }
        if !self.live.contains_key(&rshmid) {
            if self.used == self.nsems {
                self.renew()?;
            }
            self.live.insert(rshmid, (self.used, 0));
            self.used += 1;
        }
        let (sem, value) = self.live[&rshmid];
        Ok(GateRef {
            semid: self.semid(),
            sem,
            value,
        })
    }

    /// One change of `rshmid`'s replica: +1 on its gate, or, at the cap, retire the gate.
    /// Nothing if it has no gate (no reply has named one, so nobody sleeps on it).
    pub fn count(&mut self, rshmid: i32) -> io::Result<()> {
        let Some(&(sem, value)) = self.live.get(&rshmid) else {
            return Ok(());
        };
        if value == self.cap {
            return self.retire(rshmid);
        }
        self.live.insert(rshmid, (sem, value + 1));
        match &self.set {
            Some(set) => set.op(&[SemOp::post(sem)]),
            None => Ok(()),
        }
    }

    /// `rshmid` is gone, or goes by another name now: its sleepers wake and ask the server.
    pub fn retire(&mut self, rshmid: i32) -> io::Result<()> {
        match (self.live.remove(&rshmid), &self.set) {
            (Some((sem, _)), Some(set)) => set.set_val(sem, i32::from(RETIRED)),
            _ => Ok(()),
        }
    }
}

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

    /// A key of this test's own (from a fresh temporary file), so that tests running at the
    /// same time never touch each other's sets.
    fn own_key(dir: &crate::testutil::TempDir) -> Key {
        crate::sys::ftok(dir.path(), b'G').unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn a_wait_ends_when_the_count_passes_what_was_seen() {
        let dir = crate::testutil::TempDir::new("gates-wait");
        let mut g = Gates::with_cap(own_key(&dir), 4, GATE_CAP).unwrap();
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
        let mut g = Gates::with_cap(own_key(&dir), 2, 3).unwrap();
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
        // Both semaphores used: the next gate renews the set, and the old set's ids are dead.
        let old_set = fresh.semid;
        g.retire(7).unwrap();
        let renewed = g.gate(8).unwrap();
        assert_ne!(renewed.semid, old_set);
        assert_eq!((renewed.sem, renewed.value), (0, 0));
        assert_eq!(wait(fresh, soon()).unwrap(), Woke::AskServer);
    }

    #[test]
    fn a_set_left_by_a_crashed_server_is_replaced_and_the_owner_removes_its_own() {
        let dir = crate::testutil::TempDir::new("gates-left");
        let key = own_key(&dir);
        let left = semget(key, 1, Get::Create(0o600)).unwrap();
        let g = Gates::with_cap(key, 4, GATE_CAP).unwrap();
        assert_ne!(g.semid(), left.0);
        drop(g);
        assert!(ipcs::with_key(key).unwrap().is_empty());
    }
}

//! A fair readers-writer lock per mailbox, made of two System V semaphores.
//!
//! Any number of readers may hold a mailbox's lock at once; a writer holds it alone. And
//! neither side may starve the other: a writer waiting behind readers gets in once the readers
//! *already inside* leave, and a reader waiting behind writers gets in once the writers *ahead
//! of it* are done.
//!
//! # The naive lock, and why it starves writers
//!
//! The textbook first attempt keeps a reader count `R` and a writer flag `W`:
//!
//! ```text
//! reader:  semop [W == 0, R += 1]   ...read...   semop [R -= 1]
//! writer:  semop [R == 0, W += 1]   ...write...  semop [W -= 1]
//! ```
//!
//! It is correct (never a reader and a writer inside together) but unfair. A writer may enter
//! only at an instant when `R` is zero, and new readers are let in whenever `W` is zero, which
//! is the whole time the writer waits. With readers arriving faster than they leave, their
//! visits overlap, `R` never drops to zero, and the writer waits for ever: it **starves**.
//! `lab/04-dipc/exercises.md` has both locks side by side (`examples/dipc_starve.rs`) and
//! measures it.
//!
//! # The turnstile (Downey, *The Little Book of Semaphores*, 4.2.6 "No-starve readers-writers")
//!
//! Add a turnstile `T` (a binary semaphore, 1 = open) that every thread passes on the way in.
//! A reader passes straight through it; a writer **stays in it**, which closes it behind him:
//!
//! ```text
//! reader:  semop [T -= 1, T += 1, R += 1]   (wait for an open turnstile, pass, be counted)
//!          ...read...
//!          semop [R -= 1]
//! writer:  semop [T -= 1]                   (take the turnstile: later arrivals queue behind)
//!          semop [R == 0]                   (wait for the readers already inside to leave)
//!          ...write...
//!          semop [T += 1]                   (open the turnstile again)
//! ```
//!
//! Once a writer holds `T`, no new reader is counted, so `R` can only fall, and the writer waits
//! for at most the readers that were inside when it arrived. No writer starvation. The other
//! direction relies on the kernel: Linux queues blocked `semop` calls in arrival order, and when
//! a writer opens `T`, the kernel hands the semaphore to the *first* waiter whose whole
//! operation can proceed (`update_queue` in `ipc/sem.c`; since a reader's call names two
//! semaphores, every waiter of the set sits in one FIFO list). So a waiting reader is served
//! before writers that arrived after it: no reader starvation either.
//!
//! `R` itself is the reader count ("lightswitch" in Downey's book): the kernel's counter needs no
//! extra mutex, and "wait for zero" is a native `semop`.
//!
//! # Fast paths
//! A reader needs one `semop` to enter and one to leave. A writer first tries `[T -= 1, R == 0]`
//! with `IPC_NOWAIT`: when the mailbox is free that is the whole acquisition, one call. Only when
//! it would block does the writer fall back to the two-step, queued version above; the attempt
//! never waits, so it cannot jump a queue.
//!
//! # Rules
//! - Mailbox `i` uses semaphores `2i` (its turnstile, starts at 1) and `2i+1` (its reader
//!   count, starts at 0). The set's creator initialises them with [`RwLocks::init`].
//! - The guards release in `Drop`. `SEM_UNDO` is not used: it undoes on *process* exit, which
//!   does nothing for the threads of one server, and a server that dies takes the whole set
//!   with it (its successor recycles the orphan and initialises a fresh set).
//! - Hold a guard only while copying between the segment and memory, never across socket I/O:
//!   a stalled client must never hold a lock.
//! - A thread holds at most one mailbox's lock at a time, so no cycle of waits (no deadlock)
//!   can ever form between mailboxes; and each mailbox has its own lock, so a busy box never
//!   delays another one.

use crate::sys::sem::{SemId, SemOp};
use std::io;

/// Semaphores per mailbox.
pub const SEMS_PER_LOCK: u16 = 2;

/// The readers-writer locks of `count` mailboxes, in one semaphore set.
#[derive(Clone, Copy, Debug)]
pub struct RwLocks {
    sem: SemId,
    count: u32,
}

/// The semaphore numbers of lock `i`: (turnstile, reader count).
fn sems(i: u32) -> (u16, u16) {
    let t = (i * u32::from(SEMS_PER_LOCK)) as u16;
    (t, t + 1)
}

impl RwLocks {
    /// The locks in set `sem`, which must hold `count * 2` semaphores.
    pub fn new(sem: SemId, count: u32) -> RwLocks {
        RwLocks { sem, count }
    }

    /// How many semaphores `count` locks need.
    pub fn sems_needed(count: u32) -> Option<u16> {
        u16::try_from(count.checked_mul(u32::from(SEMS_PER_LOCK))?).ok()
    }

    /// Sets every turnstile open (1) and every reader count to 0, in one atomic `SETALL`.
    /// Only the creator of the set calls this, before anyone else uses it.
    pub fn init(&self) -> io::Result<()> {
        let vals: Vec<u16> = (0..self.count).flat_map(|_| [1, 0]).collect();
        self.sem.set_all(&vals)
    }

    fn check(&self, i: u32) -> io::Result<()> {
        if i >= self.count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("lock {i}: there are {} locks", self.count),
            ));
        }
        Ok(())
    }

    /// Takes lock `i` shared; blocks while a writer holds or waits in the turnstile ahead of us.
    pub fn read(&self, i: u32) -> io::Result<ReadGuard> {
        self.check(i)?;
        let (t, r) = sems(i);
        crate::trace!("lock {i}: reader at the turnstile");
        // One atomic call: "T is open" (take it and give it back) and "count me" happen together,
        // so a writer can never see the turnstile taken by a mere reader passing through.
        self.sem
            .op(&[SemOp::wait(t), SemOp::post(t), SemOp::post(r)])?;
        crate::trace!("lock {i}: read lock held");
        Ok(ReadGuard { locks: *self, i })
    }

    /// Takes lock `i` exclusive; waits for the readers inside to leave, keeping new ones out.
    pub fn write(&self, i: u32) -> io::Result<WriteGuard> {
        self.check(i)?;
        let (t, r) = sems(i);
        // Fast path: turnstile open and nobody reading: take it in one call, or fail at once.
        if self.sem.op_timeout(
            &[SemOp::wait(t).nowait(), SemOp::zero(r).nowait()],
            std::time::Duration::ZERO,
        )? {
            crate::trace!("lock {i}: write lock held (free)");
            return Ok(WriteGuard { locks: *self, i });
        }
        crate::trace!("lock {i}: writer queues at the turnstile");
        self.sem.op(&[SemOp::wait(t)])?;
        // From here on we hold the turnstile; the guard opens it again even if the next wait
        // fails (the set removed at shutdown), so a failure leaks nothing.
        let guard = WriteGuard { locks: *self, i };
        crate::trace!("lock {i}: turnstile closed, waiting for readers to leave");
        self.sem.op(&[SemOp::zero(r)])?;
        crate::trace!("lock {i}: write lock held");
        Ok(guard)
    }
}

/// Lock `i` held shared; released on drop.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ReadGuard {
    locks: RwLocks,
    i: u32,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let (_, r) = sems(self.i);
        // Never panic in drop: a failure here means the set is gone (shutdown).
        match self.locks.sem.op(&[SemOp::wait(r)]) {
            Ok(()) => crate::trace!("lock {}: read lock released", self.i),
            Err(e) => crate::trace!("lock {}: read unlock: {e}", self.i),
        }
    }
}

/// Lock `i` held exclusive; released on drop.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct WriteGuard {
    locks: RwLocks,
    i: u32,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let (t, _) = sems(self.i);
        match self.locks.sem.op(&[SemOp::post(t)]) {
            Ok(()) => crate::trace!("lock {}: write lock released", self.i),
            Err(e) => crate::trace!("lock {}: write unlock: {e}", self.i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::sem::semget;
    use crate::sys::shm::Get;
    use crate::sys::{Owner, IPC_PRIVATE};

    fn locks(n: u32) -> (Owner<SemId>, RwLocks) {
        let set = Owner::new(
            semget(
                IPC_PRIVATE,
                RwLocks::sems_needed(n).unwrap(),
                Get::Create(0o600),
            )
            .unwrap(),
        );
        let l = RwLocks::new(set.get(), n);
        l.init().unwrap();
        (set, l)
    }

    #[test]
    fn readers_share_and_writers_exclude() {
        let (set, l) = locks(2);
        let a = l.read(0).unwrap();
        let b = l.read(0).unwrap();
        assert_eq!(set.get_all().unwrap(), vec![1, 2, 1, 0]);
        // Lock 1 is independent of lock 0.
        let w1 = l.write(1).unwrap();
        assert_eq!(set.get_all().unwrap(), vec![1, 2, 0, 0]);
        drop((a, b, w1));
        assert_eq!(set.get_all().unwrap(), vec![1, 0, 1, 0]);
        assert!(l.read(2).is_err());
    }

    #[test]
    fn a_waiting_writer_closes_the_turnstile() {
        let (set, l) = locks(1);
        let reader = l.read(0).unwrap();
        let h = std::thread::spawn(move || {
            let _w = l.write(0).unwrap();
        });
        // The writer takes the turnstile, then waits for our read lock to go.
        while set.get_val(0).unwrap() != 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // A new reader may not pass now.
        let (t, r) = sems(0);
        assert!(!set
            .op_timeout(
                &[SemOp::wait(t), SemOp::post(t), SemOp::post(r)],
                std::time::Duration::from_millis(20)
            )
            .unwrap());
        drop(reader);
        h.join().unwrap();
        assert_eq!(set.get_all().unwrap(), vec![1, 0]);
    }

    #[test]
    fn sems_needed_bounds() {
        assert_eq!(RwLocks::sems_needed(3), Some(6));
        assert_eq!(RwLocks::sems_needed(40_000), None);
    }
}

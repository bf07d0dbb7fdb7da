//! The bad/good pair of lab 04: a readers-writer lock that starves writers, and dipc's fair one.
//!
//! Both are built from System V semaphores. Eight reader threads loop: take the read lock,
//! hold it 2 ms, release, at once again. Their visits overlap, so at no instant are zero readers
//! inside. Then one writer asks for the lock, and we time how long it waits:
//!
//! ```text
//! $ cargo run --release --example dipc_starve
//! naive lock (wait for zero readers): writer still waiting after 3.0 s: STARVED (12003 reads meanwhile)
//! fair lock (turnstile):              writer got in after 1.9 ms (9 reads meanwhile)
//! ```
//!
//! Usage: `dipc_starve [naive|fair] [READERS] [HOLD_MS]` (default: both, 8 readers, 2 ms).
//! The sets are private (`IPC_PRIVATE`) and removed by their `Owner` when each run ends.

#![forbid(unsafe_code)]

use ipclab::dipc::rwlock::RwLocks;
use ipclab::sys::sem::{semget, SemId, SemOp};
use ipclab::sys::shm::Get;
use ipclab::sys::{Owner, IPC_PRIVATE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The textbook first attempt: semaphore 0 is "a writer is inside", semaphore 1 counts readers.
#[derive(Clone, Copy)]
struct NaiveLock(SemId);

impl NaiveLock {
    const W: u16 = 0;
    const R: u16 = 1;
    fn read(self) {
        // Enter when no writer is inside, and be counted: one atomic call.
        self.0
            .op(&[SemOp::zero(Self::W), SemOp::post(Self::R)])
            .unwrap();
    }
    fn read_unlock(self) {
        self.0.op(&[SemOp::wait(Self::R)]).unwrap();
    }
    /// Enter when zero readers are inside, and mark a writer: THE BUG. New readers keep coming
    /// in while we wait (nothing stops them), so "zero readers" may never happen again.
    fn write(self, patience: Duration) -> bool {
        self.0
            .op_timeout(&[SemOp::zero(Self::R), SemOp::post(Self::W)], patience)
            .unwrap()
    }
    fn write_unlock(self) {
        self.0.op(&[SemOp::wait(Self::W)]).unwrap();
    }
}

const PATIENCE: Duration = Duration::from_secs(3);

/// Runs `readers` looping readers and one writer; prints how long the writer waited.
fn trial(name: &str, fair: bool, readers: usize, hold: Duration) {
    // Owner: this function; the set is removed when `set` drops at the end.
    let set = Owner::new(semget(IPC_PRIVATE, 2, Get::Create(0o600)).expect("semget"));
    let fair_lock = RwLocks::new(set.get(), 1);
    let naive = NaiveLock(set.get());
    if fair {
        fair_lock.init().expect("init");
    }
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..readers {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if fair {
                        let _g = fair_lock.read(0).expect("read lock");
                        std::thread::sleep(hold);
                    } else {
                        naive.read();
                        std::thread::sleep(hold);
                        naive.read_unlock();
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Let the readers get going, then ask for the write lock.
        std::thread::sleep(Duration::from_millis(100));
        let before = reads.load(Ordering::Relaxed);
        let t = Instant::now();
        let got = if fair {
            let g = fair_lock.write(0).expect("write lock");
            let waited = t.elapsed();
            drop(g);
            Some(waited)
        } else if naive.write(PATIENCE) {
            let waited = t.elapsed();
            naive.write_unlock();
            Some(waited)
        } else {
            None
        };
        let during = reads.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        match got {
            Some(w) => println!("{name:<36}writer got in after {w:.1?} ({during} reads meanwhile)"),
            None => println!(
                "{name:<36}writer still waiting after {:.1?}: STARVED ({during} reads meanwhile)",
                PATIENCE
            ),
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    let readers = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let hold = Duration::from_millis(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2));
    if which == "naive" || which == "both" {
        trial("naive lock (wait for zero readers):", false, readers, hold);
    }
    if which == "fair" || which == "both" {
        trial("fair lock (turnstile):", true, readers, hold);
    }
}

//! The mailbox lock, driven directly with threads on a real semaphore set: it is fair in both
//! directions (liveness bounds, not speed), and a read never sees a torn message.
//!
//! No test here waits without a bound: a `Watchdog` removes the semaphore set when a test runs
//! over its limit, which wakes every thread blocked in `semop` with EIDRM, so a starving or
//! deadlocking lock fails the test within seconds, with a message saying who waited.

mod common;

use common::Scratch;
use ipclab::dipc::keys::key_for_port;
use ipclab::dipc::mailbox;
use ipclab::dipc::rwlock::RwLocks;
use ipclab::sys::sem::{semget, SemId};
use ipclab::sys::shm::Get;
use ipclab::sys::{Owner, Removable};
use ipclab::wire::dipc::SegmentHeader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the waiting side may take at most: a liveness bound, with the machine loaded.
const BOUND: Duration = Duration::from_secs(1);

/// How long a whole test may run before its watchdog ends it.
const TEST_LIMIT: Duration = Duration::from_secs(10);

/// Ends a test that runs over `TEST_LIMIT`: it sets `stop` (the looping threads quit) and
/// removes the semaphore set, so that a thread blocked in the lock wakes with EIDRM instead of
/// waiting for ever. Disarmed when dropped.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Watchdog {
    fn arm(set: SemId, stop: &'static AtomicBool, what: &'static str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if rx.recv_timeout(TEST_LIMIT) != Err(mpsc::RecvTimeoutError::Timeout) {
                return false;
            }
            eprintln!(
                "{what}: still waiting after {TEST_LIMIT:?}: the lock starves or deadlocks; \
                 removing its semaphore set to end the test"
            );
            stop.store(true, Ordering::Relaxed);
            let _ = set.remove();
            true
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }

    /// Disarms it; true if it had fired.
    fn fired(mut self) -> bool {
        drop(self.disarm.take());
        self.thread.take().is_some_and(|t| t.join().unwrap_or(true))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A flag that lives as long as the test binary, for a watchdog thread to set.
fn leaked_flag() -> &'static AtomicBool {
    Box::leak(Box::new(AtomicBool::new(false)))
}

fn locks(s: &Scratch, n: u32) -> (Owner<SemId>, RwLocks) {
    let key = s.key(&s.key_file("locks"), b'L');
    let set =
        Owner::new(semget(key, RwLocks::sems_needed(n).unwrap(), Get::Create(0o600)).unwrap());
    let l = RwLocks::new(set.get(), n);
    l.init().unwrap();
    (set, l)
}

#[test]
fn a_writer_gets_in_under_eight_looping_readers() {
    let s = Scratch::new("lock-w");
    let (set, l) = locks(&s, 1);
    let stop = leaked_flag();
    let dog = Watchdog::arm(set.get(), stop, "a writer among eight looping readers");
    let reads = AtomicU64::new(0);
    let mut worst = Duration::ZERO;
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(_g) = l.read(0) else { break };
                    reads.fetch_add(1, Ordering::Relaxed);
                    // Hold it a while, so that the readers' visits always overlap: the load
                    // under which the naive lock never lets a writer in.
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        while reads.load(Ordering::Relaxed) < 50 && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..5 {
            let t = Instant::now();
            let Ok(g) = l.write(0) else { break };
            worst = worst.max(t.elapsed());
            drop(g);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        !dog.fired(),
        "the writer never got in under eight looping readers within {TEST_LIMIT:?}: the lock starves writers"
    );
    assert!(worst < BOUND, "the writer waited {worst:?}");
}

#[test]
fn a_reader_gets_in_under_eight_looping_writers() {
    let s = Scratch::new("lock-r");
    let (set, l) = locks(&s, 1);
    let stop = leaked_flag();
    let dog = Watchdog::arm(set.get(), stop, "a reader among eight looping writers");
    let writes = AtomicU64::new(0);
    let mut worst = Duration::ZERO;
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(_g) = l.write(0) else { break };
                    writes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        while writes.load(Ordering::Relaxed) < 30 && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..5 {
            let t = Instant::now();
            let Ok(g) = l.read(0) else { break };
            worst = worst.max(t.elapsed());
            drop(g);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        !dog.fired(),
        "the reader never got in under eight looping writers within {TEST_LIMIT:?}: the lock starves readers"
    );
    assert!(worst < BOUND, "the reader waited {worst:?}");
}

#[test]
fn a_read_never_returns_a_torn_message() {
    let s = Scratch::new("torn");
    // Objects made the way the server makes them, under the key of a port nobody serves.
    let port = common::free_port(key_for_port);
    s.track_key(key_for_port(port));
    let header = SegmentHeader {
        port,
        mailboxes: 2,
        creator_pid: 0,
        mailbox_size: 4096,
        packet_size: 4096,
    };
    let created = mailbox::create(port, header, 0o600, |_| {}).unwrap();
    let boxes = &created.boxes;
    let stop = leaked_flag();
    let dog = Watchdog::arm(created.sem.get(), stop, "four readers among four writers");
    // Writer w writes a message of length 4096 - 512*w, every byte equal to w+1: a read that
    // mixed two writes would show two byte values, or a length that does not match its byte.
    let checked = AtomicU64::new(0);
    let refused = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for w in 0..4u8 {
            sc.spawn(move || {
                let msg = vec![w + 1; 4096 - 512 * w as usize];
                while !stop.load(Ordering::Relaxed) {
                    if boxes.write(0, &msg).is_err() {
                        break;
                    }
                }
            });
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut out = Vec::new();
                    for _ in 0..2000 {
                        out.clear();
                        let Ok(view) = boxes.read(0) else {
                            refused.store(true, Ordering::Relaxed);
                            break;
                        };
                        view.append_to(&mut out).unwrap();
                        drop(view);
                        if out.is_empty() {
                            continue;
                        }
                        let b = out[0];
                        assert!((1..=4).contains(&b), "byte {b}");
                        assert_eq!(
                            out.len(),
                            4096 - 512 * (b as usize - 1),
                            "length of pattern {b}"
                        );
                        assert!(out.iter().all(|&x| x == b), "a torn message");
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let joined: Vec<_> = readers.into_iter().map(|h| h.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for j in joined {
            j.unwrap();
        }
    });
    assert!(
        !dog.fired() && !refused.load(Ordering::Relaxed),
        "the readers did not finish 2000 reads each among four writers within {TEST_LIMIT:?}"
    );
    assert!(checked.load(Ordering::Relaxed) > 0);
    drop(created);
    s.assert_no_leftovers();
}

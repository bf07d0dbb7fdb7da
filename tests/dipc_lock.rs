//! The mailbox lock, driven directly with threads on a real semaphore set: it is fair in both
//! directions (liveness bounds, not speed), and a read never sees a torn message.

mod common;

use common::Scratch;
use ipclab::dipc::keys::key_for_port;
use ipclab::dipc::mailbox;
use ipclab::dipc::rwlock::RwLocks;
use ipclab::sys::sem::{semget, SemId};
use ipclab::sys::shm::Get;
use ipclab::sys::Owner;
use ipclab::wire::dipc::SegmentHeader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the waiting side may take at most: a liveness bound, with the machine loaded.
const BOUND: Duration = Duration::from_secs(1);

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
    let (_set, l) = locks(&s, 1);
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _g = l.read(0).unwrap();
                    reads.fetch_add(1, Ordering::Relaxed);
                    // Hold it a while, so that the readers' visits always overlap: the load
                    // under which the naive lock never lets a writer in.
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        while reads.load(Ordering::Relaxed) < 50 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let g = l.write(0).unwrap();
            worst = worst.max(t.elapsed());
            drop(g);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(worst < BOUND, "the writer waited {worst:?}");
    });
}

#[test]
fn a_reader_gets_in_under_eight_looping_writers() {
    let s = Scratch::new("lock-r");
    let (_set, l) = locks(&s, 1);
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _g = l.write(0).unwrap();
                    writes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        while writes.load(Ordering::Relaxed) < 30 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let g = l.read(0).unwrap();
            worst = worst.max(t.elapsed());
            drop(g);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(worst < BOUND, "the reader waited {worst:?}");
    });
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
    // Writer w writes a message of length 4096 - 512*w, every byte equal to w+1: a read that
    // mixed two writes would show two byte values, or a length that does not match its byte.
    let stop = AtomicBool::new(false);
    let checked = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for w in 0..4u8 {
            let stop = &stop;
            sc.spawn(move || {
                let msg = vec![w + 1; 4096 - 512 * w as usize];
                while !stop.load(Ordering::Relaxed) {
                    boxes.write(0, &msg).unwrap();
                }
            });
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut out = Vec::new();
                    for _ in 0..2000 {
                        out.clear();
                        let view = boxes.read(0).unwrap();
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
    assert!(checked.load(Ordering::Relaxed) > 0);
    drop(created);
    s.assert_no_leftovers();
}

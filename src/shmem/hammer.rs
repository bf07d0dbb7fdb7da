//! The torn-read check: many writers, many readers, and a verdict on every single read.
//!
//! Each writer thread fills a buffer as large as the segment with one [`Stamp`] repeated (its
//! own writer number and its write count), and writes it. Each reader thread reads the whole
//! segment and decodes it: if every copy of the stamp agrees, the read saw one whole write; if
//! not, it was **torn**, its front from one write and its back from another. With the lock
//! this never happens, however the threads and processes interleave; without it
//! (`examples/shmem_writer_bad.rs`), it happens within a few thousand reads.
//!
//! A check that passes because the readers and writers never ran at the same time proves
//! nothing, and with `flock` that can happen: busy readers keep a writer out (Linux grants a
//! new `LOCK_SH` while a writer waits), so all the writes may land after the last read. So the
//! threads do *at least* `count` operations each, and then go on, if there are writers in this
//! run, until every reader has seen the segment change under it at least once (or until
//! [`SHMEM_HAMMER_OVERTIME`] passes). The report's `changes` counts those changes.
//!
//! Run it in one process with several threads, or in several processes at once (each with its
//! own `first_writer`, so that every pattern is distinct): `shmem_tool hammer` does both.

use super::Shmem;
use crate::params::{SHMEM_HAMMER_OVERTIME, SHMEM_HAMMER_READER_GAP};
use crate::wire::shmem::{Stamp, STAMP_SIZE};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Hammer {
    /// Writer threads; writer `i` stamps its writes with number `first_writer + i`.
    pub writers: usize,
    /// Reader threads.
    pub readers: usize,
    /// The least number of writes per writer thread and reads per reader thread.
    pub count: u64,
    /// The first writer number (give each process its own range).
    pub first_writer: u32,
}

impl Hammer {
    /// Are the counts within their limits (`SHMEM_HAMMER_MAX_THREADS`, `SHMEM_HAMMER_MAX_COUNT`)?
    /// The text of the error names the option, for a usage error.
    pub fn check(&self) -> Result<(), String> {
        use crate::params::{SHMEM_HAMMER_MAX_COUNT, SHMEM_HAMMER_MAX_THREADS};
        for (flag, n) in [("--writers", self.writers), ("--readers", self.readers)] {
            if n > SHMEM_HAMMER_MAX_THREADS {
                return Err(format!("{flag} {n}: at most {SHMEM_HAMMER_MAX_THREADS}"));
            }
        }
        if self.writers + self.readers == 0 {
            return Err("--writers and --readers: at least one thread".into());
        }
        if self.count > SHMEM_HAMMER_MAX_COUNT {
            return Err(format!(
                "--count {}: at most {SHMEM_HAMMER_MAX_COUNT}",
                self.count
            ));
        }
        if self.first_writer.checked_add(self.writers as u32).is_none() {
            return Err(format!(
                "--first-writer {}: the writer numbers would overflow",
                self.first_writer
            ));
        }
        Ok(())
    }
}

/// What happened, summed over the threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub reads: u64,
    pub writes: u64,
    /// Reads that were not one whole pattern.
    pub torn: u64,
    /// Reads that saw a different whole stamp from the same thread's last whole read: proof
    /// that the writers really ran while the readers read.
    pub changes: u64,
    /// The decoder's description of the first torn read.
    pub first_torn: Option<String>,
}

impl Report {
    /// The summary line `shmem_tool hammer` prints and the grader matches.
    pub fn line(&self) -> String {
        format!(
            "reads={} writes={} torn={} changes={}",
            self.reads, self.writes, self.torn, self.changes
        )
    }

    fn add(&mut self, other: Report) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.torn += other.torn;
        self.changes += other.changes;
        if self.first_torn.is_none() {
            self.first_torn = other.first_torn;
        }
    }
}

/// What the threads of one run share.
struct Shared<'a> {
    shm: &'a Shmem,
    count: u64,
    /// All threads start together, so that none has finished before another begins.
    start: Barrier,
    /// Readers that have not yet done `count` reads *and* seen a change; writers keep
    /// writing while it is above zero.
    waiting_readers: AtomicUsize,
    /// Past this instant nobody waits for anybody any more.
    give_up: Instant,
}

/// Runs the writers and readers on `shm` (see the module header for when they stop).
pub fn run(shm: &Shmem, h: Hammer) -> io::Result<Report> {
    if shm.size() < STAMP_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "hammer: the segment has {} bytes, a stamp needs {STAMP_SIZE}",
                shm.size()
            ),
        ));
    }
    let shared = Shared {
        shm,
        count: h.count,
        start: Barrier::new(h.writers + h.readers),
        // With no writer in this run (the bad/good writer demos), readers just do `count`.
        waiting_readers: AtomicUsize::new(if h.writers > 0 { h.readers } else { 0 }),
        give_up: Instant::now() + SHMEM_HAMMER_OVERTIME,
    };
    let shared = &shared;
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for i in 0..h.writers {
            let writer = h.first_writer.wrapping_add(i as u32);
            threads.push(s.spawn(move || write_patterns(shared, writer)));
        }
        for _ in 0..h.readers {
            threads.push(s.spawn(move || check_reads(shared, h.writers > 0)));
        }
        let mut total = Report::default();
        for t in threads {
            let r = t
                .join()
                .map_err(|_| io::Error::other("hammer: a thread panicked"))??;
            total.add(r);
        }
        Ok(total)
    })
}

fn write_patterns(sh: &Shared<'_>, writer: u32) -> io::Result<Report> {
    let mut buf = vec![0u8; sh.shm.size()];
    let mut writes = 0u64;
    sh.start.wait();
    while writes < sh.count
        || (sh.waiting_readers.load(Ordering::Relaxed) > 0 && Instant::now() < sh.give_up)
    {
        Stamp {
            writer,
            seq: writes as u32,
        }
        .encode(&mut buf);
        sh.shm.write(&buf)?;
        writes += 1;
    }
    Ok(Report {
        writes,
        ..Report::default()
    })
}

fn check_reads(sh: &Shared<'_>, wait_for_change: bool) -> io::Result<Report> {
    let mut buf = vec![0u8; sh.shm.size()];
    let mut report = Report::default();
    let mut last = None;
    sh.start.wait();
    loop {
        sh.shm.read(&mut buf)?;
        report.reads += 1;
        match Stamp::decode(&buf) {
            Ok(stamp) => {
                if last.is_some_and(|l| l != stamp) {
                    report.changes += 1;
                }
                last = Some(stamp);
            }
            // A torn read is no stamp at all: `last` keeps the last whole one.
            Err(e) => {
                report.torn += 1;
                report.first_torn.get_or_insert_with(|| e.to_string());
            }
        }
        if report.reads >= sh.count
            && (!wait_for_change || report.changes > 0 || Instant::now() >= sh.give_up)
        {
            break;
        }
        // Done with its count, this reader waits for a change; but readers that lock again at
        // once can keep every writer out for good (see the header), so from now on it leaves
        // a writer a gap after each read.
        if report.reads >= sh.count {
            std::thread::sleep(SHMEM_HAMMER_READER_GAP);
        }
    }
    if wait_for_change {
        // Done: the writers need not keep writing for us.
        sh.waiting_readers.fetch_sub(1, Ordering::Relaxed);
    }
    Ok(report)
}

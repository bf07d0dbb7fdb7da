//! The torn-read check: many writers, many readers, and a verdict on every single read.
//!
//! Each writer thread fills a buffer as large as the segment with one [`Stamp`] repeated (its
//! own writer number and its write count), and writes it. Each reader thread reads the whole
//! segment and decodes it: if every copy of the stamp agrees, the read saw one whole write; if
//! not, it was **torn**, its front from one write and its back from another. With the lock
//! this never happens, however the threads and processes interleave; without it
//! (`examples/shmem_writer_bad.rs`), it happens within a few thousand reads.
//!
//! Run it in one process with several threads, or in several processes at once (each with its
//! own `first_writer`, so that every pattern is distinct): `shmem_tool hammer` does both.

use super::Shmem;
use crate::wire::shmem::{Stamp, STAMP_SIZE};
use std::io;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Hammer {
    /// Writer threads; writer `i` stamps its writes with number `first_writer + i`.
    pub writers: usize,
    /// Reader threads.
    pub readers: usize,
    /// Writes per writer thread and reads per reader thread.
    pub count: u64,
    /// The first writer number (give each process its own range).
    pub first_writer: u32,
}

/// What happened, summed over the threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub reads: u64,
    pub writes: u64,
    /// Reads that were not one whole pattern.
    pub torn: u64,
    /// Reads that saw a different stamp from the same thread's read before: a check that the
    /// writers really ran while the readers read (0 would make the test prove nothing).
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

/// Runs the writers and readers on `shm` until each has done `count` operations.
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
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for i in 0..h.writers {
            let writer = h.first_writer.wrapping_add(i as u32);
            threads.push(s.spawn(move || write_patterns(shm, writer, h.count)));
        }
        for _ in 0..h.readers {
            threads.push(s.spawn(move || check_reads(shm, h.count)));
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

fn write_patterns(shm: &Shmem, writer: u32, count: u64) -> io::Result<Report> {
    let mut buf = vec![0u8; shm.size()];
    for seq in 0..count {
        Stamp {
            writer,
            seq: seq as u32,
        }
        .encode(&mut buf);
        shm.write(&buf)?;
    }
    Ok(Report {
        writes: count,
        ..Report::default()
    })
}

fn check_reads(shm: &Shmem, count: u64) -> io::Result<Report> {
    let mut buf = vec![0u8; shm.size()];
    let mut report = Report::default();
    let mut last = None;
    for _ in 0..count {
        shm.read(&mut buf)?;
        report.reads += 1;
        match Stamp::decode(&buf) {
            Ok(stamp) => {
                if last.is_some_and(|l| l != stamp) {
                    report.changes += 1;
                }
                last = Some(stamp);
            }
            Err(e) => {
                report.torn += 1;
                // A torn read is no stamp at all: `last` keeps the last whole one.
                report.first_torn.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Ok(report)
}

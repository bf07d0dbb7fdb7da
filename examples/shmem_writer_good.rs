//! shmem_writer_good: writes whole stamp patterns under the lock; readers never see a tear.
//!
//! The good half of lab 03's bad/good pair; compare it line by line with
//! `shmem_writer_bad.rs`. The only change: each pattern goes in through `Shmem::write`, which
//! takes `flock(LOCK_EX)` on the key file, so it waits until no reader holds `LOCK_SH`, and
//! readers wait until it is done.
//!
//! ```text
//! $ shmem_tool stat /tmp/k --size 4096
//! $ cargo run -q --example shmem_writer_good -- /tmp/k --seconds 3 &
//! $ shmem_tool hammer /tmp/k --writers 0 --readers 1 --count 20000
//! reads=20000 writes=0 torn=0 changes=3886
//! ```
//!
//! Ownership: none; the segment is removed with `shmem_tool delete`.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::shmem::Shmem;
use ipclab::wire::shmem::Stamp;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: shmem_writer_good KEYFILE [--seconds S]

Writes whole stamp patterns into the existing segment of KEYFILE for S seconds (default 3),
each under flock(LOCK_EX). Check a reader with: shmem_tool hammer KEYFILE --writers 0
";

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: Args) -> Result<(), Failure> {
    let mut path = None;
    let mut seconds = Duration::from_secs(3);
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("--seconds") => seconds = args.seconds("--seconds")?,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) if path.is_none() => path = Some(w),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    let path = path.ok_or_else(|| Failure::usage("missing KEYFILE"))?;
    let shm = Shmem::open_existing(&path)?;
    let mut buf = vec![0u8; shm.size()];
    let end = Instant::now() + seconds;
    let mut seq = 0u32;
    while Instant::now() < end {
        seq = seq.wrapping_add(1);
        Stamp { writer: 99, seq }.encode(&mut buf);
        // GOOD: Shmem::write takes LOCK_EX on the key file around the copy.
        shm.write(&buf)?;
    }
    println!("wrote {seq} patterns under the lock");
    Ok(())
}

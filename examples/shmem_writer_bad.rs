//! shmem_writer_bad: writes whole stamp patterns WITHOUT the lock, and tears readers' copies.
//!
//! The bad half of lab 03's bad/good pair; `shmem_writer_good.rs` is the same program with the
//! one line that matters changed. This one attaches the segment itself (plain `shmat`, as any
//! program may) and copies each pattern in with no `flock` at all. `flock` is advisory: the
//! readers' `LOCK_SH` does not stop a writer that never asks for `LOCK_EX`, so a reader's copy
//! can take its first bytes from one pattern and its last bytes from the next.
//!
//! Start order: create the segment, start this writer, then a checking reader:
//!
//! ```text
//! $ shmem_tool stat /tmp/k --size 4096
//! $ cargo run -q --example shmem_writer_bad -- /tmp/k --seconds 3 &
//! $ shmem_tool hammer /tmp/k --writers 0 --readers 1 --count 20000
//! reads=20000 writes=0 torn=6381 changes=7729
//! shmem_tool: hammer: 6381 of 20000 reads were torn; the first: invalid: torn read: bytes
//! 0..8 say writer 99 seq 528741, byte 68 differs (its copy says writer 99 seq 528742)
//! ```
//!
//! Ownership: none; the segment is removed with `shmem_tool delete`.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::shmem::Shmem;
use ipclab::sys::shm::Access;
use ipclab::wire::shmem::Stamp;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: shmem_writer_bad KEYFILE [--seconds S]

Writes whole stamp patterns into the existing segment of KEYFILE for S seconds (default 3),
WITHOUT taking the lock. Check a reader with: shmem_tool hammer KEYFILE --writers 0
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
    // BAD: our own mapping of the segment, bypassing the library's lock.
    let raw = shm.id().attach(Access::ReadWrite)?;
    let mut buf = vec![0u8; raw.len()];
    let end = Instant::now() + seconds;
    let mut seq = 0u32;
    while Instant::now() < end {
        seq = seq.wrapping_add(1);
        Stamp { writer: 99, seq }.encode(&mut buf);
        // BAD: no LOCK_EX; a reader holding LOCK_SH right now is copying these very bytes.
        raw.write_at(0, &buf)?;
    }
    println!("wrote {seq} patterns without the lock");
    Ok(())
}

//! shmem_threads_trap: why the seed calls two threads "undefined", and how ipclab avoids it.
//!
//! A `flock` belongs to the open file description. Two threads that lock through the *same*
//! `File` are one holder to the kernel, so both get `LOCK_EX` at once; two threads with their
//! *own* `open` of the file are two holders, and the second waits. This program shows both
//! with the system layer's `FileLock`, then what `Shmem` does (one description per holder).
//!
//! ```text
//! $ cargo run -q --example shmem_threads_trap -- /tmp/trap
//! one File shared by two threads:  both held LOCK_EX at the same time  (the trap)
//! one open() per thread:           the second waited for the first     (correct)
//! ```
//!
//! Ownership: none; it creates and locks a plain file, no IPC object.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::sys::flock::{FileLock, LockKind};
use std::fs::File;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const USAGE: &str = "\
Usage: shmem_threads_trap FILE

Locks FILE with flock(LOCK_EX) from two threads, first through one shared File, then through
one open() per thread, and says whether the two threads excluded each other.
";

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: Args) -> Result<(), Failure> {
    let mut path = None;
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) if path.is_none() => path = Some(w),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    let path = path.ok_or_else(|| Failure::usage("missing FILE"))?;
    let shared = File::create(&path)?;
    let both = most_inside_at_once(&path, Some(&shared))?;
    println!(
        "one File shared by two threads:  {}",
        if both == 2 {
            "both held LOCK_EX at the same time  (the trap)"
        } else {
            "the second waited for the first"
        }
    );
    let own = most_inside_at_once(&path, None)?;
    println!(
        "one open() per thread:           {}",
        if own == 1 {
            "the second waited for the first     (correct)"
        } else {
            "both held LOCK_EX at the same time"
        }
    );
    Ok(())
}

/// Two threads each take LOCK_EX, through `shared` if given, else through their own open of
/// `path`; each stays inside 200 ms. Returns the most threads that were inside at one moment.
fn most_inside_at_once(path: &str, shared: Option<&File>) -> std::io::Result<usize> {
    let inside = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> std::io::Result<()> {
                    let own;
                    let file = match shared {
                        Some(f) => f,
                        None => {
                            own = File::open(path)?;
                            &own
                        }
                    };
                    let _lock = FileLock::lock(file, LockKind::Exclusive)?;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().expect("thread")?;
        }
        Ok(most.load(Ordering::SeqCst))
    })
}

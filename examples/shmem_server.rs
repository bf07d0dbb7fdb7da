//! shmem_server: publishes a record that changes over time (the seed's `example/server.c`).
//!
//! Every `--interval` milliseconds it writes a new [`Record`](ipclab::wire::shmem::Record)
//! (update number, time, its pid, and a line of text) into the segment of KEYFILE with one
//! locked `Shmem::write`. Any number of `shmem_client`s read it meanwhile, each copy one whole
//! record: the flock on KEYFILE keeps them from copying while the server writes.
//!
//! Start order: the server first (it creates the segment); clients any time after.
//! Ownership: unlike `shmem_tool`, this server *owns* the segment for its lifetime: it wraps
//! the id in an `Owner`, so the segment is removed when it stops, after `--count` records or on
//! SIGINT/SIGTERM. Running clients notice and exit.
//!
//! ```text
//! $ cargo run -q --example shmem_server -- /tmp/k --count 3 --interval 200
//! shmem_server: key 0x4d00c1d3, shmid 753723, 96 bytes
//! published seq=1 text=tick 1
//! published seq=2 text=tick 2
//! published seq=3 text=tick 3
//! shmem_server: removed the segment
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::params::{
    SHMEM_EXAMPLE_MAX_COUNT, SHMEM_EXAMPLE_MAX_INTERVAL_MS, SHMEM_SERVER_INTERVAL_MS,
};
use ipclab::shmem::{record, Shmem};
use ipclab::sys::signal::TermSignals;
use ipclab::sys::Owner;
use ipclab::wire::shmem::RECORD_SIZE;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: shmem_server KEYFILE [--interval MS] [--count N]

Creates the segment of KEYFILE and publishes a changing record in it until SIGINT/SIGTERM
(or N records), then removes the segment.

  --interval MS   milliseconds between two records (default 500)
  --count N       stop after N records (default: run until a signal)
";

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: Args) -> Result<(), Failure> {
    // First thing: SIGINT/SIGTERM become events we poll, so that the Owner below gets dropped.
    let sigs = TermSignals::block()?;
    let mut path = None;
    let mut interval = SHMEM_SERVER_INTERVAL_MS;
    let mut count = None;
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("--interval") => interval = args.parse("--interval")?,
            Arg::Flag("--count") => count = Some(args.parse::<u64>("--count")?),
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) if path.is_none() => path = Some(w),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    let path = path.ok_or_else(|| Failure::usage("missing KEYFILE"))?;
    if interval > SHMEM_EXAMPLE_MAX_INTERVAL_MS {
        return Err(Failure::usage(format!(
            "--interval {interval}: at most {SHMEM_EXAMPLE_MAX_INTERVAL_MS} ms"
        )));
    }
    if let Some(n) = count.filter(|&n| n > SHMEM_EXAMPLE_MAX_COUNT) {
        return Err(Failure::usage(format!(
            "--count {n}: at most {SHMEM_EXAMPLE_MAX_COUNT}"
        )));
    }

    let shm = Shmem::open(&path, RECORD_SIZE)?;
    // Only the creator may own it: a segment that was already there (another server's, or
    // one made with shmem_tool) is not ours to remove.
    if !shm.created() {
        return Err(Failure::runtime(format!(
            "{path}: a segment already exists for this key (another server?); remove it with `shmem_tool delete {path}`"
        )));
    }
    // This server owns the segment: it is removed when `_owner` drops, before `shm` detaches
    // (locals drop in reverse order), whichever way `body` returns.
    let _owner = Owner::new(shm.id());
    eprintln!(
        "shmem_server: key 0x{:08x}, shmid {}, {} bytes",
        shm.key(),
        shm.id().0,
        shm.size()
    );
    let mut seq = 0;
    while count.is_none_or(|n| seq < n) {
        // Somebody else removed it (`ipcrm -m`): our mapping still works, but no client can
        // find the segment any more, so publishing on would fool nobody but us.
        if shm.is_deleted() {
            return Err(Failure::runtime(format!(
                "the segment (shmid {}) was removed by someone else (ipcrm?); stopping",
                shm.id().0
            )));
        }
        seq += 1;
        let rec = record::publish(&shm, seq, &format!("tick {seq}"))?;
        println!("published seq={} text={}", rec.seq, rec.text);
        // The sleep between records is a wait for a signal with a timeout.
        if sigs.wait_timeout(Duration::from_millis(interval)).is_some() {
            break;
        }
    }
    // The last record says that the removal that follows is ours.
    record::publish_last(&shm, seq + 1, "server stopped")?;
    eprintln!("shmem_server: removed the segment");
    Ok(())
}

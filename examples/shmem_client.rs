//! shmem_client: reads the server's record and prints it (the seed's `example/client.c`).
//!
//! Every `--interval` milliseconds it copies the whole segment out with one locked
//! `Shmem::read` and prints the record. It opens the segment with `Shmem::open_existing`, so a
//! client started before the server reports "no segment" instead of creating one.
//!
//! Start order: `shmem_server` first. Ownership: the client owns nothing; it only attaches. It
//! stops after `--count` reads, or when it notices that the server removed the segment (its last
//! record says so), and fails with `was removed by someone else (ipcrm?)` when it was anybody
//! else.
//!
//! ```text
//! $ cargo run -q --example shmem_client -- /tmp/k --count 2 --interval 100
//! seq=2 pid=31063 age_ms=51 text=tick 2
//! seq=2 pid=31063 age_ms=151 text=tick 2
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::params::{
    SHMEM_CLIENT_INTERVAL_MS, SHMEM_EXAMPLE_MAX_COUNT, SHMEM_EXAMPLE_MAX_INTERVAL_MS,
};
use ipclab::shmem::{record, Shmem};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage: shmem_client KEYFILE [--interval MS] [--count N]

Reads the record that shmem_server publishes in the segment of KEYFILE and prints it.

  --interval MS   milliseconds between two reads (default 500)
  --count N       stop after N reads (default: until the server removes the segment)
";

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: Args) -> Result<(), Failure> {
    let mut path = None;
    let mut interval = SHMEM_CLIENT_INTERVAL_MS;
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
    let shm = Shmem::open_existing(&path)?;
    let mut reads = 0;
    while count.is_none_or(|n| reads < n) {
        if reads > 0 {
            std::thread::sleep(Duration::from_millis(interval));
        }
        // Removed: our mapping still works. By the server if its last record says so (it
        // then writes no more); by somebody else otherwise, while the server may still run.
        if shm.is_deleted() {
            match record::read(&shm)? {
                Some(rec) if rec.last => println!("the server removed the segment"),
                rec => {
                    let server = match rec {
                        Some(r) if ipclab::sys::process::alive(r.pid as i32) => {
                            format!("its server (pid {}) still runs", r.pid)
                        }
                        Some(r) => format!("its server (pid {}) is gone", r.pid),
                        None => "no server published anything".to_string(),
                    };
                    return Err(Failure::runtime(format!(
                        "the segment (shmid {}) was removed by someone else (ipcrm?); {server}",
                        shm.id().0
                    )));
                }
            }
            break;
        }
        reads += 1;
        match record::read(&shm)? {
            None => println!("(no record yet)"),
            Some(rec) if rec.last => {
                println!("the server stopped");
                break;
            }
            Some(rec) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                println!(
                    "seq={} pid={} age_ms={} text={}",
                    rec.seq,
                    rec.pid,
                    now.saturating_sub(rec.time_ms),
                    rec.text
                );
            }
        }
    }
    Ok(())
}

#![forbid(unsafe_code)]
//! shm_reader: takes the message (or the stream) that `shm_writer` put into a System V shared
//! memory segment, and prints its bytes, exactly, on stdout (seed 002).
//!
//! Protocol (details in `src/xfr.rs`): the reader looks for the writer's semaphore set on the
//! key `ftok(--key-path, --proj-id)`, attaches the segment read-only ("as we will only read"),
//! claims it, copies the message (or every slot of the stream, until the 0-byte end block)
//! straight from the segment to stdout, and tells the writer it is done. It owns nothing and
//! removes nothing, except the objects of a writer that died: those are orphans, which it
//! removes and reports.
//!
//! Start order: either program first. The reader waits up to `--timeout` seconds for a writer,
//! then exits 1. A writer that dies mid-stream is noticed within 0.1 s (exit 1).
//!
//! ```text
//! $ shm_reader &
//! $ shm_writer hello world
//! shm_writer: key 0x4100c2f7, shmid 458796, semid 262182
//! shm_reader: key 0x4100c2f7, shmid 458796, semid 262182
//! hello world
//! $ shm_reader --timeout 1
//! shm_reader: timed out: no writer on key 0x4100c2f7 within 1 s
//! $ echo $?
//! 1
//! ```

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::sys::signal::TermSignals;
use ipclab::xfr::{self, Config};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: shm_reader [OPTIONS]
       shm_reader --stream [OPTIONS] > FILE

Takes the message that shm_writer put into a System V shared memory segment and prints
exactly its bytes on stdout. With --stream, copies a whole stream, byte for byte.

Options:
  -k, --key-path PATH   file that ftok turns into the key (default .)
  -i, --proj-id N       ftok project id, 1 to 255 (default 65, 'A')
  -t, --timeout SECS    wait at most this long for a writer (default 10)
      --stream          take a stream (the writer must use --stream too)
  -h, --help            print this help

The key and ids go to stderr (find them with ipcs); IPCLAB_TRACE=1 traces every IPC step.
Exit status: 0 done, 1 failure (timeout, writer died, signal...), 2 usage error.
";

fn main() -> ExitCode {
    // First thing: SIGINT/SIGTERM become events taken between waits (see sys::signal).
    let sigs = TermSignals::block();
    cli::run(USAGE, |args| run(args, sigs))
}

fn run(mut args: Args, sigs: std::io::Result<TermSignals>) -> Result<(), Failure> {
    let sigs = sigs?;
    let mut cfg = Config::default();
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-k" | "--key-path") => cfg.key_path = args.value("--key-path")?.into(),
            Arg::Flag("-i" | "--proj-id") => cfg.proj_id = args.proj_id("--proj-id")?,
            Arg::Flag("-t" | "--timeout") => cfg.timeout = args.seconds("--timeout")?,
            Arg::Flag("--stream") => cfg.stream = true,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => {
                return Err(Failure::usage(format!(
                    "unexpected argument '{w}' (the reader takes no words)"
                )))
            }
        }
    }
    let report = xfr::reader(&cfg, &sigs)?;
    ipclab::trace!("done: {} bytes in {} blocks", report.bytes, report.blocks);
    Ok(())
}

#![forbid(unsafe_code)]
//! shm_writer: puts a message, or a whole stream, into a System V shared memory segment for
//! `shm_reader` to take out (seed 002).
//!
//! Protocol (details in `src/xfr.rs`): the writer creates and owns a semaphore set and a
//! segment on the key `ftok(--key-path, --proj-id)`, writes the message (or, with `--stream`,
//! fills a ring of slots from stdin while the reader empties it), waits until the reader has
//! taken everything, removes both objects and exits 0.
//!
//! Start order: either program first. Each waits up to `--timeout` seconds for the other, then
//! exits 1, leaving nothing behind. A reader that dies is noticed within 0.1 s (exit 1, objects
//! removed), and so are SIGINT and SIGTERM.
//!
//! ```text
//! $ shm_writer hello world &
//! shm_writer: key 0x4100c2f7, shmid 458796, semid 262182
//! $ ipcs -m | grep 0x4100c2f7
//! 0x4100c2f7 458796     root       600        4160       1
//! $ shm_reader
//! shm_reader: key 0x4100c2f7, shmid 458796, semid 262182
//! hello world
//! [1]+  Done                    shm_writer hello world
//! $ shm_writer --stream < words & shm_reader --stream > words.copy
//! shm_writer: key 0x4100c2f7, shmid 458798, semid 262183
//! shm_reader: key 0x4100c2f7, shmid 458798, semid 262183
//! $ cmp words words.copy && echo same
//! same
//! ```

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::sys::signal::TermSignals;
use ipclab::xfr::{self, Config};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: shm_writer [OPTIONS] [WORD...]
       shm_writer --stream [OPTIONS] < FILE

Puts a message into a System V shared memory segment and waits until shm_reader has taken
it; then removes the segment and exits 0. The message is the WORDs joined by spaces plus a
newline (like echo), or without WORDs, all of stdin. With --stream, stdin of any size flows
through a ring of slots while shm_reader empties it.

Options:
  -k, --key-path PATH   file that ftok turns into the key (default .)
  -i, --proj-id N       ftok project id, 1 to 255 (default 65, 'A')
  -t, --timeout SECS    wait at most this long for a reader (default 10)
  -m, --mode OCTAL      permission bits of the segment and semaphores (default 600)
  -s, --size BYTES      room for the message (default 4096; message mode)
      --stream          stream stdin through a ring of slots
      --slots N         slots in the ring (default 4; stream mode)
      --slot-size BYTES bytes per slot (default 262144; stream mode)
  -h, --help            print this help

The key and ids go to stderr (find them with ipcs); IPCLAB_TRACE=1 traces every IPC step.
Exit status: 0 taken, 1 failure (timeout, reader died, signal...), 2 usage error.
";

fn main() -> ExitCode {
    // First thing, before anything could start a thread: SIGINT/SIGTERM become events we take
    // between waits, so that the segment and semaphores are removed on the way out.
    let sigs = TermSignals::block();
    cli::run(USAGE, |args| run(args, sigs))
}

fn run(mut args: Args, sigs: std::io::Result<TermSignals>) -> Result<(), Failure> {
    let sigs = sigs?;
    let mut cfg = Config::default();
    let mut words = Vec::new();
    let (mut size_given, mut ring_given) = (false, false);
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-k" | "--key-path") => cfg.key_path = args.value("--key-path")?.into(),
            Arg::Flag("-i" | "--proj-id") => cfg.proj_id = args.proj_id("--proj-id")?,
            Arg::Flag("-t" | "--timeout") => cfg.timeout = args.seconds("--timeout")?,
            Arg::Flag("-m" | "--mode") => cfg.perms = args.mode("--mode")?,
            Arg::Flag("-s" | "--size") => {
                cfg.size = args.parse("--size")?;
                size_given = true;
            }
            Arg::Flag("--stream") => cfg.stream = true,
            Arg::Flag("--slots") => {
                cfg.slots = args.parse("--slots")?;
                ring_given = true;
            }
            Arg::Flag("--slot-size") => {
                cfg.slot_size = args.parse("--slot-size")?;
                ring_given = true;
            }
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => words.push(w),
        }
    }
    if cfg.stream && !words.is_empty() {
        return Err(Failure::usage("--stream reads stdin; give no WORDs"));
    }
    if cfg.stream && size_given {
        return Err(Failure::usage(
            "--size is for message mode; a stream uses --slots and --slot-size",
        ));
    }
    if !cfg.stream && ring_given {
        return Err(Failure::usage("--slots and --slot-size need --stream"));
    }
    cfg.check().map_err(Failure::usage)?;

    let report = xfr::writer(&cfg, &words, &sigs)?;
    ipclab::trace!("done: {} bytes in {} blocks", report.bytes, report.blocks);
    Ok(())
}

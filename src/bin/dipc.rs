//! `dipc`: the mailbox server. Keeps k mailboxes in one System V shared memory segment, each
//! behind a fair readers-writer lock of System V semaphores, and serves them over TCP with one
//! thread per client.
//!
//! Protocol (see `ipclab::wire::dipc`): `r <n>\n` → `ok <len>\n<message>`; `w <n> <len>\n<data>`
//! or `w <n>\n<line>\n` → `ok <len>\n`; `q\n` → `bye\n`; anything else → `err <reason>\n`.
//!
//! Start order: `dipc` first. It checks its arguments, forks a daemon, and the daemon binds the
//! port, creates the objects (keys `0x4450PPPP`, mode 0600) and reports back; only then does the
//! command exit 0 with one line naming the port, the mailboxes and the daemon's pid. Then any
//! number of clients. `dipcrm <port>` stops it and removes everything.
//!
//! ```text
//! $ dipc 4 1 5000 1
//! dipc: serving 4 mailboxes of 1 kB on 127.0.0.1:5000, log /tmp/dipc-0-5000.log, daemon pid 8090
//! $ ipcs -m -s | grep 0x44501388
//! 0x44501388 884770     root       600        4416       1
//! 0x44501388 589887     root       600        8
//! $ dipc 4 1 5000 1
//! dipc: port 5000: a dipc server is already running (pid 8090); stop it with dipcrm 5000
//! $ dipc_client 5000 w 1 "text"
//! ok 4
//! $ dipcrm 5000
//! sent SIGTERM to dipc server pid 8090 (port 5000)
//! dipc server pid 8090 has exited
//! removed shared memory segment key 0x44501388 id 884770 (by the server)
//! removed semaphore set key 0x44501388 id 589887 (by the server)
//! ```
//!
//! If somebody removes its objects under it (`ipcrm -m` or `-s`), the server notices within
//! 0.2 s, tells its clients `err server stopping: ...`, writes why in its log, and exits:
//!
//! ```text
//! $ ipcrm -s 589887
//! $ cat /tmp/dipc-0-5000.log
//! 1764625000 dipc[8090]: serving 4 mailboxes of 1 kB on 127.0.0.1:5000
//! 1764625031 dipc[8090]: its semaphore set (semid 589887) was removed by someone else (ipcrm -s?): semctl(semid=589887, IPC_STAT): Identifier removed (os error 43); stopping
//! 1764625031 dipc[8090]: exiting: stopped: its semaphore set (semid 589887) was removed ...
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, parse_word, Arg, Failure};
use ipclab::dipc::{self, Config};
use ipclab::params::DIPC_MAX_IDLE_TIMEOUT_SECS;
use ipclab::sys::signal::TermSignals;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: dipc [OPTIONS] <mailboxes> <mailbox_kB> <port> <packet_kB>

Start the dipc mailbox server on a port, as a daemon; stop it with `dipcrm <port>`.
A message may be at most min(packet, mailbox) bytes.

Options:
      --bind ADDR           listen on ADDR (default 127.0.0.1; 0.0.0.0 for every interface)
      --foreground          stay attached to the terminal (for demos, tracing and tests)
      --idle-timeout SECS   close a client silent for SECS seconds (default 300, at most 86400)
      --log FILE            the daemon's log: start, stop, and why it stopped if its objects
                            were removed (default $TMPDIR/dipc-<uid>-<port>.log, or /tmp;
                            dipcrm deletes a default log unless it records such an end)
  -h, --help                print this help

Environment: IPCLAB_TRACE=1 prints each datagram and each lock step (use --foreground).
Exit status: 0 once the daemon listens, 1 on a runtime failure, 2 on a usage error.
";

fn main() -> ExitCode {
    // Before anything else, and before any thread: SIGTERM/SIGINT become events to handle.
    let signals = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dipc: {e}");
            return ExitCode::from(1);
        }
    };
    cli::run(USAGE, |mut args| {
        let mut words = Vec::new();
        let mut bind = None;
        let mut foreground = false;
        let mut idle = None;
        let mut log = None;
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag("--bind") => bind = Some(args.value("--bind")?),
                Arg::Flag("--foreground") => foreground = true,
                Arg::Flag("--log") => log = Some(args.value("--log")?),
                Arg::Flag("--idle-timeout") => idle = Some(args.parse::<u64>("--idle-timeout")?),
                Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
                Arg::Word(w) => words.push(w),
            }
        }
        let [k, size, port, packet] = words.as_slice() else {
            return Err(Failure::usage(format!(
                "expected 4 arguments (mailboxes, mailbox_kB, port, packet_kB), got {}",
                words.len()
            )));
        };
        let mut cfg = Config::new(
            parse_word("mailboxes", k)?,
            parse_word("mailbox_kB", size)?,
            parse_word("port", port)?,
            parse_word("packet_kB", packet)?,
        );
        if let Some(b) = bind {
            cfg.bind = b
                .parse()
                .map_err(|_| Failure::usage(format!("--bind: '{b}' is not an IP address")))?;
        }
        if let Some(secs) = idle {
            if secs == 0 || secs > DIPC_MAX_IDLE_TIMEOUT_SECS {
                return Err(Failure::usage(format!(
                    "--idle-timeout {secs}: must be 1 to {DIPC_MAX_IDLE_TIMEOUT_SECS}"
                )));
            }
            cfg.idle_timeout = Duration::from_secs(secs);
        }
        cfg.foreground = foreground;
        cfg.log = log.map(std::path::PathBuf::from);
        dipc::run(&cfg, signals)
    })
}

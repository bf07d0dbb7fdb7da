//! ipcview: the System V objects of every ipclab program on this machine, decoded and named,
//! redrawn every half second; `--once` prints one plain snapshot.
//!
//! Protocol: none of its own. It only reads: `/proc/sysvipc`, `IPC_STAT`, the semaphores'
//! `GETALL`/`GETNCNT`/`GETZCNT`/`GETPID`, segments attached read-only for a moment, and each rshm
//! server's `ls`. It owns no object and changes none. Start order: any, at any time.
//!
//! ```text
//! $ dipc 2 1 5000 1; dipc_client 5000 w 1 hello
//! $ ipcview --once --port 5000
//! dipc port 5000 key 0x44501388: shmid 884770, semid 589887
//!   daemon pid 8090 alive, 2 mailboxes of 1024 bytes, packets of 1024 bytes
//!   box 0: empty, 0 readers inside, turnstile open, 0 waiting at the turnstile, 0 writer waiting for the readers to leave
//!   box 1: 5 bytes, 0 readers inside, turnstile open, 0 waiting at the turnstile, 0 writer waiting for the readers to leave
//!   sem 0 TURN0      value 1     ncnt 0   zcnt 0   last pid 8090 alive
//!   ...
//! $ ipcview --port 5000          # live, until q or Ctrl-C
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::params::IPCVIEW_INTERVAL;
use ipclab::rshm::parse_key;
use ipclab::sys::signal::TermSignals;
use ipclab::view::{self, live, Filter};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: ipcview [--once] [--interval SECS] [--key KEY]... [--port PORT]... [--frames N]

Shows the System V objects of every ipclab program on this machine, decoded: semaphores by
name with their waiters and last pid, the xfr ring, the device's registers, the shmem key
file and its flock holders, the dipc mailboxes and locks, the rshm nodes' tables. Objects of
other programs are listed as raw ipcs rows. Nothing is changed: segments are attached
read-only, the rest is read with IPC_STAT and GET* only.

Options:
      --once            print one plain-text snapshot (no escapes) and exit
  -n, --interval SECS   time between two refreshes of the live view (default 0.5)
  -k, --key KEY         show only objects with this key (hex 0x... or decimal); repeatable
  -p, --port PORT       show only the dipc server and the rshm node on PORT; repeatable
      --frames N        stop the live view after N refreshes
  -h, --help            print this help

Live view: q or Ctrl-C quits and gives the terminal back as it was.
Exit status: 0 ok, 1 failure (/proc/sysvipc unreadable, terminal error), 2 usage error.
";

fn main() -> ExitCode {
    // First, before anything could start a thread: Ctrl-C and SIGTERM become events the live
    // view takes between frames, so that it restores the terminal on the way out.
    let sigs = TermSignals::block();
    cli::run(USAGE, |args| run(args, sigs))
}

fn run(mut args: Args, sigs: std::io::Result<TermSignals>) -> Result<(), Failure> {
    let sigs = sigs?;
    let mut filter = Filter::default();
    let mut once = false;
    let mut opts = live::Options {
        interval: IPCVIEW_INTERVAL,
        frames: None,
    };
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("--once") => once = true,
            Arg::Flag("-n" | "--interval") => {
                opts.interval = args.seconds("--interval")?;
                if opts.interval < Duration::from_millis(10) {
                    return Err(Failure::usage("--interval: at least 0.01 s"));
                }
            }
            Arg::Flag("-k" | "--key") => {
                let w = args.value("--key")?;
                let key = parse_key(&w)
                    .ok_or_else(|| Failure::usage(format!("--key: '{w}' is not a key")))?;
                filter.key(key);
            }
            Arg::Flag("-p" | "--port") => {
                let port: u16 = args.parse("--port")?;
                if port == 0 {
                    return Err(Failure::usage("--port: must be 1 to 65535"));
                }
                filter.port(port);
            }
            Arg::Flag("--frames") => {
                let n: u64 = args.parse("--frames")?;
                if n == 0 {
                    return Err(Failure::usage("--frames: at least 1"));
                }
                opts.frames = Some(n);
            }
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    if once {
        let text = view::gather(&filter)?.render();
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Failure::runtime(format!("writing stdout: {e}")))?;
        return Ok(());
    }
    live::run(&filter, &opts, &sigs)?;
    Ok(())
}

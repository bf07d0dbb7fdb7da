//! `detach`: the operator's tool for the device's objects (seed 003).
//!
//! `detach --stat` prints what the kernel keeps about the device's segment, `struct shmid_ds`
//! (size, creator pid, last pid, attach count, attach/detach/change times), the device header
//! and semaphore values, and the machine's shared memory limits from /proc/sys/kernel next to
//! the seed's Linux 3.2 table. It only reads.
//!
//! `detach` alone marks the device's segment and semaphore set for removal. Normally the device
//! removes its own objects (it owns them); this tool is for the operator, like `ipcrm`: to stop
//! a stuck device, or to clear what a `kill -9` left behind. It sets the device's status word to
//! "removed" first, so that the device and its clients exit with a message saying why, and it
//! refuses to touch a segment that is not a device register file.
//!
//! Start order: any time; `--stat` needs the device's segment to exist.
//!
//! ```text
//! $ detach -k /tmp/lab --stat
//! segment key 0x44010e2f shmid 32790
//!   shm_perm    uid 1000 mode 0600
//!   shm_segsz   160 bytes
//!   shm_cpid    5120 (creator, alive)
//!   shm_lpid    5120 (last shmat/shmdt)
//!   shm_nattch  1
//!   shm_atime   2026-11-23 22:40:01 UTC
//!   shm_dtime   never
//!   shm_ctime   2026-11-23 22:40:01 UTC
//! device status running, pid 5120 (alive), 2 channels, update 75, period 100 ms, ramp 1 units/s
//! semaphores semid 14 nsems 5 last semop 2026-11-23 22:40:08 UTC: lock=1 slot=1 cmd=0 done=0 update=1
//! limits                                   this machine          Linux 3.2.0 (seed)
//!   SHMMAX max bytes in one segment        18446744073692774399  32768
//!   SHMMIN min bytes in one segment        1 (fixed)             1
//!   SHMSEG max segments per process        SHMMNI                4096
//!   SHMMNI max segments, system wide       4096                  4096
//!   SHMALL max pages, system wide          18446744073692774399  -
//! $ detach -k /tmp/lab
//! detach: marked shmid 32790 and semid 14 for removal; 1 process(es) still attached will notice
//! ```
//!
//! Exit status: 0 ok; 1 no device objects at the key, or not a device's; 2 usage error.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::device::{self, stat};
use ipclab::params;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage: detach [-k PATH] [-i ID] [--stat]

Without --stat: marks the device's segment and semaphore set for removal (the device and its
clients notice and exit). With --stat: prints the segment's shmid_ds and the system limits.

Options:
  -k, --key-path PATH   file for ftok, as given to device (default: .)
  -i, --proj-id ID      ftok project id, as given to device (default: 68)
  -s, --stat            print shmid_ds and the limits; remove nothing
  -h, --help            this text
";

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: cli::Args) -> Result<(), Failure> {
    let mut path = PathBuf::from(params::DEVICE_KEY_PATH);
    let mut proj = params::DEVICE_PROJ_ID;
    let mut show = false;
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-k" | "--key-path") => path = PathBuf::from(args.value("--key-path")?),
            Arg::Flag("-i" | "--proj-id") => proj = args.proj_id("--proj-id")?,
            Arg::Flag("-s" | "--stat") => show = true,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    let key = device::key(&path, proj)?;
    if show {
        return cli::say(stat::stat(key)?.to_string().trim_end_matches('\n'));
    }
    let done = stat::remove(key)?;
    let shm = done
        .shm
        .map_or("no segment".to_string(), |s| format!("shmid {}", s.0));
    let sem = done
        .sem
        .map_or("no semaphore set".to_string(), |s| format!("semid {}", s.0));
    cli::say(&format!(
        "detach: marked {shm} and {sem} for removal; {} process(es) still attached will notice",
        done.still_attached
    ))
}

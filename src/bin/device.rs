//! `device`: a simulated I/O device whose registers are a shared memory segment (seed 003).
//!
//! It creates the register file (a segment) and a semaphore set, both keyed by
//! `ftok(-k PATH, -i ID)`, and owns them: it removes both when it stops. Then, in the
//! foreground, it serves commands from `device_client` (set, get, reset) through the command
//! block, and every `--period` it moves each channel's readback toward its setpoint at `--ramp`
//! units per second, under the semaphore lock, and wakes every watcher.
//!
//! Protocol: see `ipclab::device` (the semaphores) and `ipclab::wire::device` (the bytes).
//! Start order: `device` first, then any number of `device_client`s; `detach --stat` at any
//! time; `detach` (no option) removes the objects, and the device then exits by itself.
//!
//! ```text
//! $ device -k /tmp/lab --channels 2 &
//! device: key 0x44010e2f shmid 32790 semid 14 channels 2 period 100 ms ramp 1 units/s pid 5120
//! $ device_client -k /tmp/lab set 0 2
//! ok
//! $ device_client -k /tmp/lab get 0
//! channel=0 setpoint=2.000 readback=0.300 status=ramping
//! $ kill -TERM %1
//! device: signal 15: removed shmid 32790 and semid 14
//! ```
//!
//! After a `kill -9`, just start `device` again: it recycles the dead device's objects
//! (`device: recycling the objects of a device (pid 5120) that is gone: removed shmid 32790 and
//! semid 14 at key 0x44010e2f`).
//!
//! Exit status: 0 after a signal or after `detach` (or `ipcrm`) removed the objects; 1 if something failed
//! (another device on the key, say); 2 for a usage error.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::device::server::{Config, Device, Stop};
use ipclab::params;
use ipclab::sys::signal::TermSignals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: device [-k PATH] [-i ID] [--channels N] [--period MS] [--ramp RATE]

Simulates an I/O device: a register file in shared memory, commands through a semaphore-guarded
command block, readbacks that ramp toward their setpoints. Runs until SIGINT/SIGTERM, then
removes its segment and semaphore set.

Options:
  -k, --key-path PATH   file for ftok (default: .)
  -i, --proj-id ID      ftok project id, 1..255 (default: 68 = 'D')
      --channels N      number of channels, 1..256 (default: 4)
      --period MS       milliseconds between register updates, 1..10000 (default: 100)
      --ramp RATE       readback speed in units per second; 0 = instant (default: 1)
  -h, --help            this text
";

fn main() -> ExitCode {
    // First thing, before any thread: termination signals become events we take ourselves.
    let sigs = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => return cli::run(USAGE, |_| Err(e.into())),
    };
    cli::run(USAGE, |args| body(args, sigs))
}

fn body(mut args: cli::Args, sigs: TermSignals) -> Result<(), Failure> {
    let mut path = PathBuf::from(params::DEVICE_KEY_PATH);
    let mut proj = params::DEVICE_PROJ_ID;
    let mut config = Config::default();
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-k" | "--key-path") => path = PathBuf::from(args.value("--key-path")?),
            Arg::Flag("-i" | "--proj-id") => proj = args.proj_id("--proj-id")?,
            Arg::Flag("--channels") => config.channels = args.parse("--channels")?,
            Arg::Flag("--period") => config.period = Duration::from_millis(args.parse("--period")?),
            Arg::Flag("--ramp") => config.ramp = args.parse("--ramp")?,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    // Out-of-range values are usage errors (exit 2); anything the kernel refuses is not.
    config.check().map_err(Failure::usage)?;
    let key = ipclab::device::key(&path, proj)?;
    let mut device = Device::create(key, config, |n| eprintln!("device: {n}"))?;
    let (shm, sem) = (device.shm_id(), device.sem_id());
    // Status, not data: on stderr, like every other program's status line.
    eprintln!(
        "device: key 0x{key:08x} shmid {} semid {} channels {} period {} ms ramp {} units/s pid {}",
        shm.0,
        sem.0,
        config.channels,
        config.period.as_millis(),
        config.ramp,
        std::process::id()
    );
    let why = device.serve(sigs)?;
    // Read before shutdown: `detach` says so in the status word; `ipcrm` leaves no trace.
    let by_detach = device.removed_by_detach();
    device.shutdown(why)?;
    eprintln!(
        "{}",
        match why {
            Stop::Signal(sig) => format!(
                "device: signal {sig}: removed shmid {} and semid {}",
                shm.0, sem.0
            ),
            Stop::Removed if by_detach => format!(
                "device: shmid {} and semid {} were removed (by detach); stopping",
                shm.0, sem.0
            ),
            Stop::Removed => format!(
                "device: shmid {} or semid {} was removed by someone else (ipcrm?); stopping",
                shm.0, sem.0
            ),
        }
    );
    Ok(())
}

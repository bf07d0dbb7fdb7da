//! Every default and limit in ipclab, one commented constant per line.
//!
//! A student who wonders "how big is the segment?" or "how long does it wait?" looks here, and
//! only here. Each section serves one lab; the seed behind it is named in the section header.

use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Every program.

/// The environment variable that turns on one trace line per IPC step (see `trace`).
pub const TRACE_ENV: &str = "IPCLAB_TRACE";

/// Permission bits of every object a program creates unless `--mode` says otherwise: the
/// owner alone may use it, which is right on a shared lab machine.
pub const DEFAULT_MODE: u32 = 0o600;

// ---------------------------------------------------------------------------------------------
// shm_writer / shm_reader (seed 002).

/// `-k/--key-path`: the file that `ftok` turns into the key.
pub const XFR_KEY_PATH: &str = ".";

/// `-i/--proj-id`: the `ftok` project id, 65 = 'A'.
pub const XFR_PROJ_ID: u8 = 65;

/// `--timeout`: how long either side waits for the other before giving up.
pub const XFR_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// device / device_client / detach (seed 003).

/// `-k/--key-path`: the file that `ftok` turns into the key of the segment and the semaphore set.
/// Like every lab, the current directory: run `device`, `device_client` and `detach` in one place.
pub const DEVICE_KEY_PATH: &str = ".";

/// `-i/--proj-id`: the `ftok` project id, 68 = 'D' (for Device).
pub const DEVICE_PROJ_ID: u8 = 68;

/// `--channels`: how many channels the device simulates.
pub const DEVICE_CHANNELS: u16 = 4;

/// The most channels a device may have (and a client will believe a header that claims).
pub const DEVICE_MAX_CHANNELS: u16 = 256;

/// `--period`: milliseconds between two periodic updates of the registers.
pub const DEVICE_PERIOD_MS: u32 = 100;

/// The shortest `--period` accepted, in milliseconds.
pub const DEVICE_PERIOD_MIN_MS: u32 = 1;

/// The longest `--period` accepted, in milliseconds (a watcher waits up to its timeout plus one
/// period for the next update).
pub const DEVICE_PERIOD_MAX_MS: u32 = 10_000;

/// `--ramp`: how fast a readback moves toward its setpoint, in units per second: `set 0 5` takes
/// five seconds to settle, slow enough to watch. `--ramp 0` makes every set instant.
pub const DEVICE_RAMP: f64 = 1.0;

/// The largest setpoint magnitude the device accepts; anything beyond is `bad value`.
pub const DEVICE_VALUE_LIMIT: f64 = 1.0e9;

/// `--timeout` of `device_client`: how long it waits for the command slot, for the reply, or for
/// the next update, before it gives up.
pub const DEVICE_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// While a client waits, it wakes this often to check that the device is still alive, so that a
/// device killed with SIGKILL is noticed long before the timeout.
pub const DEVICE_LIVENESS_SLICE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// shmem library (seed 004).

// ---------------------------------------------------------------------------------------------
// dipc / dipcrm / dipc_client (seed 001).

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

// ---------------------------------------------------------------------------------------------

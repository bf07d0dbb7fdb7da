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

/// `-s/--size` (message mode): bytes of message the segment has room for; one page.
pub const XFR_SIZE: usize = 4096;

/// The largest `--size`: the writer holds the message in memory before copying it in.
pub const XFR_MAX_SIZE: usize = 64 << 20;

/// `--slots` (stream mode): slots in the ring. Two already let the writer fill one while the
/// reader empties the other; four absorb the jitter of two processes sharing two cores, so
/// that neither side sleeps on a semaphore while the other is merely descheduled.
pub const XFR_SLOTS: u32 = 4;

/// `--slot-size` (stream mode): bytes per slot, announced by one `semop` on each side.
/// Measured with `SHM_XFR_SWEEP=1 cargo bench --bench shm_xfr` (1 GiB, 2 cores, loaded):
/// 1 x 64 KiB (TLPI's lock-step) 1.1 GiB/s, below a pipe's 1.5; 4 x 64 KiB 3.8; 4 x 256 KiB
/// 4.7; 8 x 1 MiB 3.6. Big enough that the semops per slot cost nothing next to the copy,
/// small enough that the ring (1 MiB) stays in the CPU caches.
pub const XFR_SLOT_SIZE: usize = 256 << 10;

/// The most slots a ring may have (the final "all slots free" wait is one semop of -slots).
pub const XFR_MAX_SLOTS: u32 = 1024;

/// The largest `--slot-size` (a slot's length travels as a u32; 64 MiB is plenty).
pub const XFR_MAX_SLOT_SIZE: usize = 64 << 20;

/// How often a side that started first looks for the other (the key has no object to sleep
/// on until the writer has made one).
pub const XFR_POLL: Duration = Duration::from_millis(10);

/// The longest single sleep on a semaphore or on stdin before the program checks that its
/// peer lives and that no SIGINT/SIGTERM is pending: a dead peer is noticed within this.
pub const XFR_SLICE: Duration = Duration::from_millis(100);

/// A semaphore set that a writer created but never initialised for this long belongs to a
/// writer that died while setting up (setup takes microseconds): it is an orphan.
pub const XFR_SETUP_GRACE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// device / device_client / detach (seed 003).

// ---------------------------------------------------------------------------------------------
// shmem library (seed 004).

// ---------------------------------------------------------------------------------------------
// dipc / dipcrm / dipc_client (seed 001).

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

// ---------------------------------------------------------------------------------------------

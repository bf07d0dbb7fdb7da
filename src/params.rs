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

// ---------------------------------------------------------------------------------------------
// shmem library (seed 004).

/// The `ftok` project id of every shmem segment: 77 = 'M' (for "memory"). The key file picks
/// the segment; this byte only keeps shmem's keys apart from other labs' keys on the same file.
pub const SHMEM_PROJ_ID: u8 = b'M';

/// How many idle open file descriptions of the key file a `Shmem` keeps for the next lock
/// holder; more concurrent holders open more, and the extra ones are closed after use.
pub const SHMEM_SPARE_FILES: usize = 8;

/// How many times `Shmem::open` retries "create, else open" when the segment vanishes between
/// the two calls (someone deleted it just then).
pub const SHMEM_OPEN_ATTEMPTS: u32 = 8;

/// `shmem_tool hammer --count`: how many reads and writes each thread makes at least.
pub const SHMEM_HAMMER_COUNT: u64 = 1000;

/// How long hammer threads go on past `--count` while a reader has not yet seen a write.
pub const SHMEM_HAMMER_OVERTIME: Duration = Duration::from_secs(20);

/// `shmem_server --interval`: milliseconds between two published records.
pub const SHMEM_SERVER_INTERVAL_MS: u64 = 500;

/// `shmem_client --interval`: milliseconds between two reads of the record.
pub const SHMEM_CLIENT_INTERVAL_MS: u64 = 500;

// ---------------------------------------------------------------------------------------------
// dipc / dipcrm / dipc_client (seed 001).

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

// ---------------------------------------------------------------------------------------------

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

/// Mailbox keys: `DIPC_KEY_BASE | port`, the same key for the segment and the semaphore set
/// ("DP" in the top two bytes, so `ipcs` shows port 5000 as 0x44501388).
pub const DIPC_KEY_BASE: u32 = 0x4450_0000;

/// Most mailboxes one server may have (each takes two semaphores; SEMMSL is usually 32000).
pub const DIPC_MAX_MAILBOXES: u32 = 10_000;

/// Largest packet, in kB: a client's message is buffered whole before the write lock is taken.
pub const DIPC_MAX_PACKET_KB: u64 = 64 * 1024;

/// `--bind`: the address the server listens on unless told otherwise (this machine only).
pub const DIPC_BIND: &str = "127.0.0.1";

/// Longest request header line, newline included; a longer one loses the framing.
pub const DIPC_LINE_MAX: usize = 128;

/// Bytes each connection reads from its socket at a time (its whole idle footprint).
pub const DIPC_READ_BUF: usize = 4096;

/// Stack of each client thread: it holds no big buffer (only touched pages count in RSS).
pub const DIPC_THREAD_STACK: usize = 128 * 1024;

/// Most clients served at once; one more gets `err server busy` and is closed.
pub const DIPC_MAX_CLIENTS: usize = 1024;

/// `--idle-timeout`: a client silent for this long (mid-request included) is closed.
pub const DIPC_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the starting shell waits for the daemon to report that it listens.
pub const DIPC_START_TIMEOUT: Duration = Duration::from_secs(10);

/// On SIGTERM, how long the server waits for its client threads before removing the objects.
pub const DIPC_STOP_GRACE: Duration = Duration::from_secs(2);

/// How long `dipcrm` waits for a server to exit after SIGTERM before it sends SIGKILL.
pub const DIPC_RM_WAIT: Duration = Duration::from_secs(5);

/// How often `dipc_client chat` looks at the other mailboxes.
pub const DIPC_CHAT_POLL: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

// ---------------------------------------------------------------------------------------------

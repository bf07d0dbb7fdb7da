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

// ---------------------------------------------------------------------------------------------
// dipc / dipcrm / dipc_client (seed 001).

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

/// The port of the local `rshm_server` when neither `--port` nor `RSHM_PORT` names one.
pub const RSHM_DEFAULT_PORT: u16 = 7070;

/// The environment variable that chooses a client's node (its server's port).
pub const RSHM_PORT_ENV: &str = "RSHM_PORT";

/// A server's queue key is this plus its TCP port: "RS" in the top bytes, the port below.
pub const RSHM_QUEUE_KEY_BASE: i32 = 0x5253_0000;

/// The largest segment a node creates, and so the largest UPDATE frame it accepts.
pub const RSHM_MAX_SEGMENT: usize = 1 << 20;

/// The most segments one group's table holds (a whole `ls` must fit one queue message).
pub const RSHM_MAX_SEGMENTS: usize = 128;

/// The most `--peer`s one server takes.
pub const RSHM_MAX_PEERS: usize = 16;

/// `client write`'s segment size when `--size` is not given.
pub const RSHM_DEFAULT_SIZE: usize = 4096;

/// How long a server waits for every connected peer to acknowledge an update.
pub const RSHM_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a program waits for its server's reply (longer than `RSHM_ACK_TIMEOUT`, so that
/// the server's own "peer X did not answer" arrives first).
pub const RSHM_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a program spins (yielding the CPU) for a reply before it sleeps in msgrcv: a
/// reply usually takes one TCP round trip, and a sleep would cost more than the round trip.
pub const RSHM_SPIN: Duration = Duration::from_millis(2);

/// How long one `connect` to a peer may take.
pub const RSHM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// First pause between two attempts to reach a peer that is down; it doubles each time.
pub const RSHM_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest pause between two attempts to reach a peer that is down.
pub const RSHM_BACKOFF_MAX: Duration = Duration::from_millis(800);

/// How long a new connection may take to say HELLO before it is dropped.
pub const RSHM_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a write to a peer may block (its buffers full) before the peer is dropped.
pub const RSHM_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the server looks for updates and waits whose time is up.
pub const RSHM_SWEEP_INTERVAL: Duration = Duration::from_millis(20);

/// How often the server removes replies left in its queue for callers that died meanwhile.
pub const RSHM_DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// How many recent callers (thread and process ids) the server remembers for that cleanup.
pub const RSHM_RECENT_CALLERS: usize = 256;

/// How many destroyed rshmids a node remembers, so that a stale HELLO cannot revive them.
pub const RSHM_TOMBSTONES: usize = 1024;

/// Bytes read from a peer's socket at a time (a 4 KiB update and its header in one read).
pub const RSHM_READ_BUFFER: usize = 64 * 1024;

/// `client read --follow`: how long one wait for a change lasts before it waits again.
pub const RSHM_FOLLOW_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------

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

/// `shmem_tool hammer --writers` and `--readers`: the most threads of each kind (each thread
/// costs a stack and a file description; 100000 of them aborted the process).
pub const SHMEM_HAMMER_MAX_THREADS: usize = 256;

/// `shmem_tool hammer --count`: the most operations per thread.
pub const SHMEM_HAMMER_MAX_COUNT: u64 = 1_000_000_000;

/// `shmem_server --count` and `shmem_client --count`: the most records or reads.
pub const SHMEM_EXAMPLE_MAX_COUNT: u64 = 1_000_000_000;

/// `shmem_server --interval` and `shmem_client --interval`: the longest, in milliseconds.
pub const SHMEM_EXAMPLE_MAX_INTERVAL_MS: u64 = 3_600_000;

/// How long hammer threads go on past `--count` while a reader has not yet seen a write.
pub const SHMEM_HAMMER_OVERTIME: Duration = Duration::from_secs(20);

/// The pause after each read once a hammer reader has done its count and waits for a change:
/// a gap in which a waiting writer gets the lock (flock grants a new `LOCK_SH` while a writer
/// waits, so readers that lock again at once could keep it out for good).
pub const SHMEM_HAMMER_READER_GAP: Duration = Duration::from_micros(20);

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

/// On SIGTERM, how long the server waits for its client threads before removing the objects.
pub const DIPC_STOP_GRACE: Duration = Duration::from_secs(2);

/// How long `dipcrm` waits for a server to exit after SIGTERM before it sends SIGKILL.
pub const DIPC_RM_WAIT: Duration = Duration::from_secs(5);

/// `dipc --idle-timeout SECS`: the longest (a day).
pub const DIPC_MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;

/// `device_client watch --count N`: the most lines.
pub const DEVICE_CLIENT_MAX_COUNT: u64 = 1_000_000_000;

/// How often a dipc server checks that nobody removed its segment or semaphore set (`ipcrm`).
pub const DIPC_WATCH_PERIOD: Duration = Duration::from_millis(200);

/// A `w <n> <len>` over the message limit by at most this many bytes is read and discarded
/// (the connection lives on); one over by more is answered `err ... closing` at once.
pub const DIPC_DISCARD_MAX: u64 = 1 << 20;

/// How often `dipc_client chat` looks at the other mailboxes.
pub const DIPC_CHAT_POLL: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// rshm_server / client (seed 000).

/// The port of the local `rshm_server` when neither `--port` nor `RSHM_PORT` names one.
pub const RSHM_DEFAULT_PORT: u16 = 7070;

/// The environment variable that chooses a client's node (its server's port).
pub const RSHM_PORT_ENV: &str = "RSHM_PORT";

/// A server's queue key is this plus its TCP port: "RS" in the top bytes, the port below.
pub const RSHM_QUEUE_KEY_BASE: i32 = 0x5253_0000;

/// A server's first set of change gates (see `rshm::gate`) has this key plus its TCP port:
/// "RG" in the top bytes, the port below.
pub const RSHM_GATE_KEY_BASE: i32 = 0x5247_0000;

/// Semaphores in one of a server's gate sets: 250, the smallest SEMMSL (semaphores per set) a
/// Linux kernel has shipped with, so that the set can be made on any lab machine.
pub const RSHM_GATE_SEMS: u16 = 250;

/// The most gate sets a server makes (one at start, more as segments need gates): enough for
/// twice as many gates as `RSHM_MAX_SEGMENTS`, so that renewing a set is rare (`rshm::gate`).
pub const RSHM_GATE_SETS: usize = (2 * RSHM_MAX_SEGMENTS).div_ceil(RSHM_GATE_SEMS as usize);

/// The key base of a server's gate sets after the first: set k has `0x67000000 + (k << 16) +
/// port` ("g", k, then the port).
pub const RSHM_GATE_MORE_KEY_BASE: i32 = 0x6700_0000;

/// The largest segment a node creates: 1 GiB. The effective cap is the smaller of this and
/// the kernel's `shmmax` (`rshmget` refuses above either, saying which). No frame grows with
/// it: a change or a STATE of a large segment travels as frames of at most
/// [`RSHM_MAX_FRAME_DATA`] bytes each.
pub const RSHM_MAX_SEGMENT: usize = 1 << 30;

/// A replica of at least this many bytes (64 MiB) is put in huge pages when the node's pool
/// has room for it (`rshm::table`, `fresh`): there, filling it costs one fault per 2 MiB, not
/// per 4 KiB, and a pool reserved ahead of time is memory the kernel already holds. Below it,
/// a replica is not worth a share of a pool that root set aside.
pub const RSHM_HUGE_MIN: usize = 64 << 20;

/// The most run bytes one UPDATE or STATE frame carries (1 MiB): a larger change travels as
/// several frames, applied as one when the last arrives; a longer run is cut into runs of at
/// most this length. It bounds `MAX_BODY`, what one frame can make a peer buffer.
pub const RSHM_MAX_FRAME_DATA: usize = 1 << 20;

/// The most segments one group's table holds: 4096, the kernel's default SHMMNI (System V
/// segments per machine), since every segment has a replica on every node and a group of
/// nodes on one machine could not make more anyway. A row costs under 1 KiB of table, plus
/// per byte of segment its replica and a byte of twin (memory given only as pages are
/// touched), word stamps of 17 bytes per 4 KiB page, and 4.5 KiB more for each page whose
/// words were written by different updates (at worst 1.1 bytes per byte: the 2.1 bytes of
/// twin and stamps of a segment written word by word), and at most 202 bytes of each HELLO
/// (a full table: 0.8 MiB); `client ls` pages through it, [`RSHM_LS_PAGE`] rows per queue
/// message.
pub const RSHM_MAX_SEGMENTS: usize = 4096;

/// Rows in one LS reply: 128 rows of 48 bytes, with the header, the text and the peers, fit
/// one queue message of the default `msgmax` (8192 bytes).
pub const RSHM_LS_PAGE: usize = 128;

/// The smallest range that rshmChanged asks `mincore` about, to skip the pages that cannot
/// have changed (see `rshm::diff`): below it, reading the bytes costs less than asking.
pub const RSHM_SKIP_MIN: usize = 64 * 1024;

/// The most `--peer`s one server takes.
pub const RSHM_MAX_PEERS: usize = 16;

/// `client write`'s segment size when `--size` is not given.
pub const RSHM_DEFAULT_SIZE: usize = 4096;

/// How long a server waits for every connected peer to acknowledge an update.
pub const RSHM_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A large change gets more time for its ACKs: one more second per this many bytes of its
/// frames (64 MiB), the slowest a peer is expected to take a change in and apply it.
pub const RSHM_ACK_BYTES_PER_SEC: u64 = 64 << 20;

/// Where `rshm_server` keeps the cluster secret when `--secret` is not given, under `$HOME`.
pub const RSHM_SECRET_DEFAULT: &str = ".config/ipclab/rshm-secret";

/// The shortest cluster secret accepted, in bytes (the default file holds 64 hex digits).
pub const RSHM_SECRET_MIN: usize = 16;

/// The highest version (Lamport clock) a segment may reach: 2^48, a change every microsecond
/// for eight years. A peer's UPDATE or STATE above it is refused, so that a local change can
/// always be numbered one above every version seen, with no overflow.
pub const RSHM_MAX_VERSION: u64 = 1 << 48;

/// The key base of a server's alive semaphore set: `0x52410000 + port` ("RA", the port).
pub const RSHM_ALIVE_KEY_BASE: i32 = 0x5241_0000;
/// An alive set that has had no semop this long after it was made belongs to a server that
/// died between its `semget` and its first `semop` (the two are a few microseconds apart), not
/// to one that is starting: it is removed like any dead server's.
pub const RSHM_ALIVE_START_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a program keeps trying to put its request in a full queue before it calls the
/// server stuck (a flood the server is draining frees room within a sweep or two).
pub const RSHM_SEND_PATIENCE: Duration = Duration::from_secs(1);

/// A reply nobody has taken this long is removed from the queue, whoever it was for.
pub const RSHM_REPLY_UNREAD: Duration = Duration::from_secs(1);

/// At most this many requests the server holds in memory, taken out of a queue that a flood
/// keeps full (56 bytes each).
pub const RSHM_BACKLOG: usize = 1024;

/// How long the server keeps trying to put a reply into a queue that someone keeps full.
pub const RSHM_REPLY_ROOM_WAIT: Duration = Duration::from_millis(100);

/// The most replies the server remembers having sent (type and time), to tell its own unread
/// replies from messages nobody serves.
pub const RSHM_TRACKED_REPLIES: usize = 4096;

/// At most this many accepted connections may be in their authentication handshake at once.
pub const RSHM_MAX_HANDSHAKES: usize = 32;

/// A refused connection is logged at most once per this long per address; the next line says
/// how many were refused meanwhile. An impostor that retries for ever cannot flood the log.
pub const RSHM_REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a program waits for its server's reply (longer than `RSHM_ACK_TIMEOUT`, so that
/// the server's own "peer X did not answer" arrives first).
pub const RSHM_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a program spins (yielding the CPU) for a reply before it sleeps in msgrcv: a
/// reply usually takes one TCP round trip, and a sleep would cost more than the round trip.
pub const RSHM_SPIN: Duration = Duration::from_millis(2);

/// C's `rshm_wait_changed(id, -1)` waits for ever as waits of this length, one after another:
/// a server that died meanwhile is then found out within one slice (plus the reply timeout).
pub const RSHM_WAIT_SLICE: Duration = Duration::from_secs(60);

/// How long one `connect` to a peer may take.
pub const RSHM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// First pause between two attempts to reach a peer that is down; it doubles each time.
pub const RSHM_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest pause between two attempts to reach a peer that is down.
pub const RSHM_BACKOFF_MAX: Duration = Duration::from_millis(800);

/// How long a new connection may take to say HELLO before it is dropped.
pub const RSHM_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes that may wait to be sent to one peer (`rshm::server::outbox`): one change
/// of the largest segment, and 64 MiB of other frames behind it. A peer that falls further
/// behind is dropped, and brought up to date by HELLO when it is back.
pub const RSHM_OUTBOX: usize = RSHM_MAX_SEGMENT + (64 << 20);

/// How long a write to a peer may block (its buffers full) before the peer is dropped.
pub const RSHM_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the server looks for updates and waits whose time is up.
pub const RSHM_SWEEP_INTERVAL: Duration = Duration::from_millis(20);

/// How often the server removes replies left in its queue for callers that died meanwhile.
pub const RSHM_DRAIN_INTERVAL: Duration = Duration::from_secs(1);

/// How many destroyed rshmids a node remembers, so that a stale HELLO cannot revive them.
pub const RSHM_TOMBSTONES: usize = 1024;

/// A write of at least this many bytes into a replica and its twin (an UPDATE's or a STATE's
/// run) first asks the kernel for all its pages at once (`sys::advise`), instead of taking
/// one page fault per 4 KiB: 64 KiB, where one call costs less than the faults it saves.
pub const RSHM_POPULATE_MIN: usize = 64 * 1024;

/// Bytes read from a peer's socket at a time (a 4 KiB update and its header in one read).
pub const RSHM_READ_BUFFER: usize = 64 * 1024;

/// The most runs in one UPDATE or STATE frame, and in one change before its long runs are cut
/// to [`RSHM_MAX_FRAME_DATA`]: a diff with more is sent as one run of the whole segment, and a
/// STATE is cut into more frames. It bounds what a frame's run list, and what the runs of a
/// change being put together from several frames, can cost.
pub const RSHM_MAX_RUNS: usize = 4096;

/// Lab switch (lab/05-rshm/consistency.md): with this environment variable set to 1, a server
/// applies every update whole, ignoring the (version, node) order. Wrong on purpose.
pub const RSHM_UNORDERED_ENV: &str = "RSHM_UNORDERED";

/// `client read --follow`: how long one wait for a change lasts before it waits again.
pub const RSHM_FOLLOW_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// ipcview: every lab's objects, decoded, live.

/// Time between two refreshes of the live view (`--interval`).
pub const IPCVIEW_INTERVAL: Duration = Duration::from_millis(500);

/// How long an object that vanished stays on the live view, marked `gone`.
pub const IPCVIEW_GONE_FOR: Duration = Duration::from_secs(10);

/// The longest the live view waits for a key before it looks for Ctrl-C or SIGTERM again.
pub const IPCVIEW_KEY_SLICE: Duration = Duration::from_millis(50);

//! RSHM, seed 000: processes on different machines share memory through an API modelled on
//! System V shared memory.
//!
//! ```text
//!   node A (rshm_server --listen :7001)              node B (rshm_server --listen :7002)
//!   ┌──────────────────────────────┐  TCP frames   ┌──────────────────────────────┐
//!   │ P1 ─msg─▶ queue ─▶ server A  │◀════════════▶│  server B ◀─ queue ◀─msg─ P2 │
//!   │  │                  │        │               │       │                  │    │
//!   │  └─shmat─▶ replica ◀┘ (addr) │               │ (addr)└▶ replica ◀─shmat─┘    │
//!   └──────────────────────────────┘               └──────────────────────────────┘
//! ```
//!
//! Each node runs one server. A program talks only to its own node's server, through a
//! System V message queue whose key is derived from the server's port ([`queue_key`]). The
//! servers keep a table of every segment in the group ([`table`]) and a TCP connection to every
//! other server ([`server`]). Each node holds a *replica* of each segment, a private System V
//! segment; the bytes move between replicas over TCP, only when a program calls
//! `rshmChanged`.
//!
//! # The seed's calls, one to one
//!
//! | seed (C, `include/rshm.h`)            | Rust ([`api::Node`])                        | notes |
//! |---------------------------------------|---------------------------------------------|-------|
//! | `int rshmget(key_t key, size_t size)` | `node.rshmget(key, size) -> rshmid`         | size 0: open only |
//! | `void rshmat(int rshmid, void *addr)` | `node.rshmat(rshmid) -> RshmAttachment`     | C returns `void *` |
//! | `int rshmdt(int rshmid, void *addr)`  | `node.rshmdt(attachment)` (or drop it)      |       |
//! | `int rshmctl(int rshmid, int cmd)`    | `node.rshmctl(rshmid, IPC_RMID)`            | IPC_RMID only |
//! | `void rshmChanged(int rshmid)`        | `node.rshm_changed(rshmid) -> version`      | C returns `int` |
//! | (beyond the seed)                     | `node.rshm_changed_range(rshmid, off, len)` | C: `rshmChanged_range(id, off, len)` |
//! | (beyond the seed)                     | `node.rshm_wait_changed(rshmid, timeout)`   | C: `rshm_wait_changed(id, ms)` |
//!
//! # Why `rshmat` cannot return the server's address
//!
//! The seed has the *server* call `shmat` and return the address it got. But an address is a
//! number in one process's virtual memory: the server's mapping of the segment lives at, say,
//! `0x7f3a1c000000` in the *server's* page tables. In P1 that number points at nothing (a
//! SIGSEGV) or, worse, at some unrelated memory of P1's. Shared memory is shared *pages*, each
//! process mapping them at an address of its own choosing. So the server answers with what *is*
//! meaningful in another process, the local replica's shmid, and the API calls `shmat` in the
//! caller's own process ([`api::Node::rshmat`]). The server still attaches every replica itself
//! (the seed's `addr` field): that is how it reads and writes the bytes it sends and receives.
//!
//! # Consistency model
//!
//! What RSHM guarantees, and what it does not. An *update* is what one `rshmChanged` sends:
//! the runs of 8-byte words that differ from the segment's twin ([`diff`]). A
//! `rshmChanged_range(id, offset, len)` is the same over those bytes only (rounded out to
//! words): what the program wrote elsewhere is not part of that update, and stays unpublished
//! until a later call covers it.
//!
//! - **The order.** Every update carries a stamp `(version, node)`: the version is a Lamport
//!   clock (one above the highest version this node has applied for the segment), the node is
//!   the address of the node that made it (`--listen`, unique in the group). Stamps compare by
//!   version, then by node address (IP, then port). Every node compares two stamps the same way.
//! - **Per word, the highest stamp wins.** A node writes a word of an update only if the
//!   update's stamp is above the stamp of the update that last wrote that word
//!   ([`table::Segment::apply_update`]). So an update that arrives twice, or after a newer one,
//!   is acknowledged but changes nothing it should not: it never overwrites newer data.
//! - **Concurrent writers.** Two nodes that call `rshmChanged` on one segment at the same time
//!   (neither had seen the other's update) may pick the same version; the higher node address
//!   wins the tie. Their runs merge word by word: words only one of them changed keep that
//!   change on every node; words both changed end, on every node, with the bytes of the update
//!   with the higher stamp. Once both updates have reached every node, every replica holds the
//!   same bytes, whatever order the frames arrived in.
//! - **Release consistency.** Writes reach other nodes only at `rshmChanged`; its reply comes
//!   once every connected peer has applied the update (or names the peers that did not, within
//!   `RSHM_ACK_TIMEOUT`). After it returns, a read on any connected node sees the write, unless a
//!   concurrent update with a higher stamp overwrote the same words.
//! - **Joining, restarts, partitions.** A node that (re)connects gets, in the HELLO exchange,
//!   every row and its contents (STATE frames), cut into runs of words each with the stamp of
//!   the update that wrote them. It merges them by the same rule, word by word. So after a
//!   partition heals, every word holds, on every node, the bytes of the highest-stamped update
//!   that wrote it on either side: changes to different words on the two sides are all kept;
//!   for a word written on both sides, the side with the higher stamp wins and the other
//!   side's bytes are lost. (Frames queued in a connection that survived the partition are
//!   delivered on healing and merge the same way.) `client ls` shows `up` for a peer only once
//!   this exchange is complete.
//! - **Not guaranteed.** A program's own unsent writes are overwritten if an update from
//!   another node writes the same words before its `rshmChanged` (the server cannot tell a
//!   program's bytes from the twin's until the program says so). A peer that is down or frozen
//!   misses updates until it reconnects; a write made while it is frozen waits in its socket
//!   and applies when it runs again. Word granularity: two nodes changing different bytes of the
//!   *same* 8-byte word conflict as if they wrote the same bytes.
//!
//! # One key, one segment
//!
//! Two nodes that `rshmget` the same new key at the same moment each create a row with their
//! own random rshmid and announce it (NEW). A node that learns of two live rows with one key
//! keeps the **lower rshmid**; the other becomes an alias of it, on every node
//! ([`table::Table::adopt`]). The creator of the losing row learns it from the ACK of its NEW
//! (the ACK carries the winning row), so both callers' `rshmget` return the same rshmid. A
//! program that already holds the losing id still reaches the segment through the alias.
//!
//! # Layout
//! - [`alive`]: a server's proof of life; a dead server's objects are recognised and removed.
//! - [`api`]: the calls above, for programs; queue requests and replies, never a hang.
//! - [`auth`]: the cluster secret, and the challenge-response every peer connection opens with.
//! - [`client`]: the `client` program's P1 (write) and P2 (read) sequences, and `ls`.
//! - [`diff`]: twins and diffs: an update carries only the words that changed.
//! - [`gate`]: change gates: `rshm_wait_changed` sleeps on a semaphore that counts changes.
//! - [`server`]: `rshm_server`: start and shutdown, and in `src/rshm/server/` one file per call
//!   in the seed's order (`rshmget`, `rshmat`, `rshmdt`, `rshmctl`, `rshm_changed`, then `wait`
//!   and `hello`), each telling the local server's role and the remote servers'; then one file
//!   per thread (`queue`, `dialer`, `inbound`, `sweeper`), `peers` (frames out, ACKs in) and
//!   `state` (the one lock and its rules).
//! - [`table`]: the `rshminfo` table: rows, per-node ref counts, replicas, random rshmids.
//! - The bytes of every queue message and TCP frame: [`crate::wire::rshm`] (the tables), with
//!   `queue` (requests, replies), `peer` (frames) and `auth` under `src/wire/rshm/`.
//! - The C calls: `src/ffi/rshm.rs` and `include/rshm.h`; the timed wait for a reply:
//!   [`crate::sys::msg_wait`].

pub mod alive;
pub mod api;
pub mod auth;
pub mod client;
pub mod diff;
pub mod gate;
pub mod server;
pub mod table;

pub use api::{Listing, Node, RshmAttachment};

use crate::params::{RSHM_DEFAULT_PORT, RSHM_PORT_ENV, RSHM_QUEUE_KEY_BASE};
use crate::sys::Key;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

/// `rshmctl`'s one command, as with `shmctl`.
pub const IPC_RMID: i32 = libc::IPC_RMID;

/// The `mtype` of every request on a server's queue. Replies use the caller's thread id
/// (always > 1: tid 1 is init), so that threads of one process never take each other's.
pub const RSHM_REQUEST_TYPE: i64 = 1;

/// The key of the queue of the server on `port`: `0x52530000 + port` ("RS", then the port).
///
/// Derived from the port, not from `ftok`, so that a program needs to know only which node
/// it wants (`--port 7001`), and two servers on one machine never share a queue.
pub fn queue_key(port: u16) -> Key {
    RSHM_QUEUE_KEY_BASE + Key::from(port)
}

/// Every System V key the server on `port` makes objects under: its queue, its change gates
/// ([`gate::gate_keys`]) and its alive set ([`alive::alive_key`]). A server killed with SIGKILL
/// leaves them; the next server on the port recognises and removes them ([`alive`]).
pub fn node_keys(port: u16) -> Vec<Key> {
    let mut keys = vec![queue_key(port), alive::alive_key(port)];
    keys.extend(gate::gate_keys(port));
    keys
}

/// The node a program talks to: `RSHM_PORT` if set, else the default port.
pub fn port_from_env() -> io::Result<u16> {
    match std::env::var(RSHM_PORT_ENV) {
        Ok(v) => v.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{RSHM_PORT_ENV}='{v}' is not a port number"),
            )
        }),
        Err(_) => Ok(RSHM_DEFAULT_PORT),
    }
}

/// `ADDR:PORT`, or just `PORT` (meaning 127.0.0.1), as `--listen` and `--peer` take them.
pub fn parse_addr(s: &str) -> Option<SocketAddrV4> {
    if let Ok(port) = s.parse::<u16>() {
        return Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    }
    s.parse().ok()
}

/// A key as a user types it: decimal (`42`, `-5`) or hex (`0x2a`).
pub fn parse_key(s: &str) -> Option<Key> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok().map(|k| k as Key),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_addresses_parse_as_documented() {
        assert_eq!(queue_key(7001), 0x5253_1b59);
        assert_eq!(parse_key("0x10"), Some(16));
        assert_eq!(parse_key("0xffffffff"), Some(-1));
        assert_eq!(parse_key("-3"), Some(-3));
        assert_eq!(parse_key("x"), None);
        assert_eq!(
            parse_addr("7001"),
            Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7001))
        );
        assert_eq!(parse_addr("10.0.0.2:80").unwrap().port(), 80);
        assert_eq!(parse_addr("host:80"), None);
    }
}

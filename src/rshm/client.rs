//! What `client` does with the API: the seed's P1 (write) and P2 (read), by key.
//!
//! Each function is the sequence of seed calls a student would write in `client.c`:
//!
//! ```text
//!   write: rshmget -> rshmat -> copy the string in -> rshmChanged -> rshmdt
//!   read:  rshmget -> rshmat -> copy the string out (-> rshm_wait_changed, again) -> rshmdt
//! ```

use super::api::{Listing, Node, RshmAttachment};
use super::IPC_RMID;
use crate::params::RSHM_DEFAULT_SIZE;
use crate::sys;
use std::fmt::Write as _;
use std::io;

/// P1: puts `text` (NUL-terminated) in the segment with `key`, creating it with `size` bytes
/// (default [`RSHM_DEFAULT_SIZE`]) if the group has none, and publishes it. Returns the rshmid.
pub fn write(node: &Node, key: i32, text: &str, size: Option<usize>) -> io::Result<i32> {
    let rshmid = match size {
        Some(n) => node.rshmget(key, n)?,
        // No size given: use the segment as it is, or make one of the default size.
        None => match node.rshmget(key, 0) {
            Err(e) if sys::errno(&e) == Some(libc::ENOENT) => {
                node.rshmget(key, RSHM_DEFAULT_SIZE.max(text.len() + 1))?
            }
            other => other?,
        },
    };
    let att = node.rshmat(rshmid)?;
    att.write_string(text)?;
    node.rshm_changed(rshmid)?;
    node.rshmdt(att)?;
    Ok(rshmid)
}

/// P2: attaches the segment with `key`; the caller reads it (and waits for changes) through
/// the returned attachment, which detaches when dropped.
pub fn open(node: &Node, key: i32) -> io::Result<RshmAttachment> {
    let rshmid = node.rshmget(key, 0)?;
    node.rshmat(rshmid)
}

/// Marks the segment with `key` for removal.
pub fn remove(node: &Node, key: i32) -> io::Result<i32> {
    let rshmid = node.rshmget(key, 0)?;
    node.rshmctl(rshmid, IPC_RMID)?;
    Ok(rshmid)
}

/// `client ls`: the node and its peers on one line, then one row per segment, like `ipcs`.
/// `sent` is the length of the last UPDATE frame this node sent for the segment: the bytes
/// one rshmChanged here put on the wire to each peer (header included).
pub fn format_ls(l: &Listing) -> String {
    let mut out = format!("node {}", l.node);
    for (i, p) in l.peers.iter().enumerate() {
        let sep = if i == 0 { " peers " } else { ", " };
        let state = if p.up { "up" } else { "down" };
        let _ = write!(out, "{sep}{} {state}", p.addr);
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<11} {:<10} {:>10} {:<21} {:>8} {:>8} {:>8} {:>10} status",
        "rshmid", "key", "size", "owner", "attaches", "shmid", "version", "sent"
    );
    for e in &l.entries {
        let _ = writeln!(
            out,
            "{:<11} 0x{:08x} {:>10} {:<21} {:>8} {:>8} {:>8} {:>10}{}",
            e.rshmid,
            e.key,
            e.size,
            e.owner.to_string(),
            e.attaches,
            e.shmid,
            e.version,
            e.sent,
            // No trailing blank on a row without a status: scripts split on whitespace.
            if e.marked { " dest" } else { "" }
        );
    }
    out
}

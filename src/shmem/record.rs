//! The example server's record: publish it, read it back (`examples/shmem_server.rs` and
//! `examples/shmem_client.rs` are thin loops around these two calls).
//!
//! The layout is [`crate::wire::shmem::Record`]. The server writes the whole record with one
//! [`Shmem::write`], so a client's [`Shmem::read`] sees one record, never half of two.

use super::Shmem;
use crate::wire::shmem::{Record, RECORD_SIZE};
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// Encodes a record numbered `seq` with `text`, stamped with the time and our pid, and writes
/// it into `shm` (which must be at least [`RECORD_SIZE`] bytes).
pub fn publish(shm: &Shmem, seq: u64, text: &str) -> io::Result<Record> {
    write(shm, seq, text, false)
}

/// Like [`publish`], marked `last`: the server's final record, written just before it removes
/// the segment, so that its clients can tell its removal from anybody else's.
pub fn publish_last(shm: &Shmem, seq: u64, text: &str) -> io::Result<Record> {
    write(shm, seq, text, true)
}

fn write(shm: &Shmem, seq: u64, text: &str, last: bool) -> io::Result<Record> {
    let rec = Record {
        seq,
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        pid: std::process::id(),
        text: text.to_string(),
        last,
    };
    shm.write(&rec.encode()?)?;
    crate::trace!("shmem record: published seq {seq}");
    Ok(rec)
}

/// Reads the record: `None` while the segment is still all zeros (created, nothing published
/// yet); an `InvalidData` error for bytes that are not a record.
pub fn read(shm: &Shmem) -> io::Result<Option<Record>> {
    let mut buf = vec![0u8; shm.size()];
    shm.read(&mut buf)?;
    if buf[..RECORD_SIZE.min(buf.len())].iter().all(|&b| b == 0) {
        return Ok(None);
    }
    Ok(Some(Record::decode(&buf)?))
}

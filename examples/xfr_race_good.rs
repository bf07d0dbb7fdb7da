#![forbid(unsafe_code)]
//! The GOOD half of lab 01's race exercise: the reader waits for a semaphore that the writer
//! posts only when the message is complete.
//!
//! Same writer and reader as `examples/xfr_race_bad.rs`, plus a one-semaphore set, owned by
//! the writer like the segment: it starts at 0 ("empty"); the writer posts it (+1) after the
//! last byte; the reader's `semop(-1)` sleeps until then. `semop` is also a full memory
//! barrier, so every byte the writer stored before its post is visible after the wait.
//!
//! ```text
//! $ cargo run -q --example xfr_race_good
//! writer: segment 13, writing "hello from the writer" one byte per ms
//! reader: header says 21 bytes; read "hello from the writer"
//! ```

use ipclab::sys::sem::{semget, SemId, SemOp};
use ipclab::sys::shm::{shmget, Access, Get, ShmId};
use ipclab::sys::{Owner, IPC_PRIVATE};
use ipclab::wire::xfr::{Header, HEADER_LEN};
use std::process::Command;
use std::time::Duration;

const MESSAGE: &[u8] = b"hello from the writer";
/// The only semaphore of the set: 1 when the message is complete.
const FULL: u16 = 0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reader") {
        return reader(ShmId(args[2].parse()?), SemId(args[3].parse()?));
    }
    // The writer owns both objects: removed when dropped, at the end of main (set last).
    let sems = Owner::new(semget(IPC_PRIVATE, 1, Get::Create(0o600))?);
    let seg = Owner::new(shmget(IPC_PRIVATE, HEADER_LEN + 64, Get::Create(0o600))?);
    let att = seg.attach(Access::ReadWrite)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "reader",
            &seg.get().0.to_string(),
            &sems.get().0.to_string(),
        ])
        .spawn()?;
    println!(
        "writer: segment {}, writing {:?} one byte per ms",
        seg.get().0,
        String::from_utf8_lossy(MESSAGE)
    );
    let header = Header::message(
        std::process::id() as i32,
        sems.get().0,
        64,
        MESSAGE.len() as u64,
    );
    att.write_at(0, &header.encode())?;
    for (i, b) in MESSAGE.iter().enumerate() {
        att.write_at(header.slot_offset(0) + i, &[*b])?;
        std::thread::sleep(Duration::from_millis(1));
    }
    // GOOD: tell the reader the message is complete.
    sems.op(&[SemOp::post(FULL)])?;
    child.wait()?;
    Ok(())
}

fn reader(id: ShmId, sems: SemId) -> Result<(), Box<dyn std::error::Error>> {
    let att = id.attach(Access::ReadOnly)?;
    // GOOD: sleep until the writer says the message is complete (at most 10 s).
    if !sems.op_timeout(&[SemOp::wait(FULL)], Duration::from_secs(10))? {
        return Err("the writer never said the message was complete".into());
    }
    let mut bytes = [0u8; HEADER_LEN];
    att.read_at(0, &mut bytes)?;
    let h = Header::decode(&bytes)?;
    let mut msg = vec![0u8; h.length as usize];
    att.read_at(h.slot_offset(0), &mut msg)?;
    println!(
        "reader: header says {} bytes; read {:?}",
        h.length,
        String::from_utf8_lossy(&msg)
    );
    Ok(())
}

#![forbid(unsafe_code)]
//! The BAD half of lab 01's race exercise: a reader that does not wait for the writer.
//!
//! The writer makes a segment, starts a reader process, and then writes a message into the
//! segment the way a real producer does: a header first, then the bytes as they come (here one
//! byte per millisecond). The reader attaches and reads at once. Nothing tells it that the
//! writer has finished, so it prints whatever happens to be there: often nothing at all, or
//! the first few letters followed by zero bytes. Run it a few times:
//!
//! ```text
//! $ cargo run -q --example xfr_race_bad
//! writer: segment 12, writing "hello from the writer" one byte per ms
//! reader: header says 21 bytes; read "hel\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
//! ```
//!
//! Compare `examples/xfr_race_good.rs`, which differs in exactly two lines: the writer posts a
//! semaphore when the message is complete, and the reader waits for that post before it reads.

use ipclab::sys::shm::{shmget, Access, Get, ShmId};
use ipclab::sys::{Owner, IPC_PRIVATE};
use ipclab::wire::xfr::{Header, HEADER_LEN};
use std::process::Command;
use std::time::Duration;

const MESSAGE: &[u8] = b"hello from the writer";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reader") {
        return reader(ShmId(args[2].parse()?));
    }
    // The writer owns the segment: removed when `seg` is dropped, at the end of main.
    let seg = Owner::new(shmget(IPC_PRIVATE, HEADER_LEN + 64, Get::Create(0o600))?);
    let att = seg.attach(Access::ReadWrite)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["reader", &seg.get().0.to_string()])
        .spawn()?;
    println!(
        "writer: segment {}, writing {:?} one byte per ms",
        seg.get().0,
        String::from_utf8_lossy(MESSAGE)
    );
    let header = Header::message(std::process::id() as i32, 0, 64, MESSAGE.len() as u64);
    att.write_at(0, &header.encode())?;
    for (i, b) in MESSAGE.iter().enumerate() {
        att.write_at(header.slot_offset(0) + i, &[*b])?;
        std::thread::sleep(Duration::from_millis(1));
    }
    // BAD: nothing tells the reader that the message is complete.
    child.wait()?;
    Ok(())
}

fn reader(id: ShmId) -> Result<(), Box<dyn std::error::Error>> {
    let att = id.attach(Access::ReadOnly)?;
    // BAD: reads at once, whatever state the writer is in.
    let mut bytes = [0u8; HEADER_LEN];
    att.read_at(0, &mut bytes)?;
    match Header::decode(&bytes) {
        Err(e) => println!("reader: no message yet ({e})"),
        Ok(h) => {
            let mut msg = vec![0u8; h.length as usize];
            att.read_at(h.slot_offset(0), &mut msg)?;
            println!(
                "reader: header says {} bytes; read {:?}",
                h.length,
                String::from_utf8_lossy(&msg)
            );
        }
    }
    Ok(())
}

//! Message mode: the assignment itself. The writer puts one message into a segment; the reader
//! prints it; the writer removes the segment once the reader has taken it.
//!
//! ```text
//! writer: create set + segment, write header and message, publish with FULL +1,
//!         wait EMPTY -1 ("taken"), remove segment and set
//! reader: find + claim, wait FULL -1, write(stdout) straight from the segment, post EMPTY +1
//! ```
//!
//! The message is at most `--size` bytes; a longer one is refused before any object exists.
//! The argument form `shm_writer hello world` sends `hello world\n`, exactly what
//! `echo hello world | shm_writer` sends, so the reader always prints exactly the bytes it got.

use super::objects::{copy_out, key, stopped, ReaderObjects, Watch, WriterObjects};
use super::objects::{SEM_EMPTY, SEM_FULL};
use super::{Config, Report};
use crate::cli::Context;
use crate::params::XFR_SLICE;
use crate::sys::poll;
use crate::sys::sem::SemOp;
use crate::sys::signal::TermSignals;
use crate::wire::xfr::{Header, Mode, HEADER_LEN};
use std::io::{self, Read};
use std::os::fd::AsFd;

/// The message of `shm_writer WORD...`: the words joined by spaces, and a newline, as `echo`.
pub fn from_words(words: &[String]) -> Vec<u8> {
    let mut m = words.join(" ").into_bytes();
    m.push(b'\n');
    m
}

fn too_large(what: String, size: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("message too large: {what}; the segment holds {size} (raise --size)"),
    )
}

/// Reads the message from `input` (stdin) to its end, refusing more than `size` bytes: memory
/// stays bounded whatever is piped in. Waits in slices, so Ctrl-C works while a user types.
pub fn read_input(input: impl AsFd, size: usize, sigs: &TermSignals) -> io::Result<Vec<u8>> {
    // Our own descriptor for stdin (a dup), read without any buffering in between.
    let file = std::fs::File::from(input.as_fd().try_clone_to_owned()?);
    let mut msg = Vec::new();
    let mut chunk = vec![0u8; size.min(64 << 10) + 1];
    loop {
        if let Some(sig) = sigs.pending() {
            return Err(stopped(sig));
        }
        if !poll::readable(&file, XFR_SLICE).context("reading stdin")? {
            continue;
        }
        // Ask for one byte more than still fits, to tell "exactly full" from "too much".
        let room = (size + 1 - msg.len()).min(chunk.len());
        let n = (&file).read(&mut chunk[..room]).context("reading stdin")?;
        if n == 0 {
            return Ok(msg);
        }
        msg.extend_from_slice(&chunk[..n]);
        if msg.len() > size {
            return Err(too_large(format!("more than {size} bytes on stdin"), size));
        }
    }
}

/// The writer: publishes `msg` and waits until a reader has taken it (or the timeout passes
/// with no reader, or the reader dies, or a signal comes). The objects are removed in every
/// case, when `objs` is dropped on the way out.
pub fn write(cfg: &Config, msg: &[u8], sigs: &TermSignals) -> io::Result<Report> {
    if msg.len() > cfg.size {
        return Err(too_large(format!("{} bytes", msg.len()), cfg.size));
    }
    let key = key(&cfg.key_path, cfg.proj_id)?;
    // Owner of both objects from here on.
    let objs = WriterObjects::create(key, HEADER_LEN + cfg.size, cfg.perms)?;
    let header = Header::message(
        std::process::id() as i32,
        objs.sems.get().0,
        cfg.size as u32,
        msg.len() as u64,
    );
    // Message, then header; both before the publish, which is what readers wait for.
    objs.att.write_at(header.slot_offset(0), msg)?;
    objs.att.write_at(0, &header.encode())?;
    objs.publish(SemOp::post(SEM_FULL))?;
    crate::trace!("message: {} bytes; waiting for a reader", msg.len());

    let watch = Watch::writer(&objs, sigs, cfg.timeout, "the message");
    watch.wait(&[SemOp::wait(SEM_EMPTY)])?;
    crate::trace!("the reader took the message");
    Ok(Report {
        bytes: msg.len() as u64,
        blocks: 1,
    })
}

/// The reader: finds the writer (waiting up to the timeout), and writes the message to `out`.
pub fn read(cfg: &Config, out: impl AsFd, sigs: &TermSignals) -> io::Result<Report> {
    let key = key(&cfg.key_path, cfg.proj_id)?;
    let objs = ReaderObjects::connect(key, Mode::Message, cfg.timeout, sigs)?;
    let watch = Watch::reader(&objs, sigs);
    // Posted when the writer published, so this does not sleep; it is the protocol's step
    // all the same (a writer must never be read before it says "full").
    watch.wait(&[SemOp::wait(SEM_FULL)])?;
    let h = objs.header;
    crate::trace!("message: {} bytes", h.length);
    copy_out(&objs.att, out.as_fd(), h.slot_offset(0), h.length as usize)
        .context("writing stdout")?;
    // "Taken": from now on the writer may remove the segment.
    watch.post(&[SemOp::post(SEM_EMPTY)])?;
    Ok(Report {
        bytes: h.length,
        blocks: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn words_become_an_echo_line() {
        assert_eq!(
            from_words(&["hello".into(), "world".into()]),
            b"hello world\n"
        );
        assert_eq!(from_words(&[String::new()]), b"\n");
    }

    #[test]
    fn stdin_is_read_to_its_end_but_never_past_the_size() {
        let sigs = TermSignals::block().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"12345678").unwrap();
        drop(w);
        assert_eq!(read_input(&r, 8, &sigs).unwrap(), b"12345678");

        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"123456789").unwrap();
        let e = read_input(&r, 8, &sigs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "message too large: more than 8 bytes on stdin; the segment holds 8 (raise --size)"
        );
    }
}

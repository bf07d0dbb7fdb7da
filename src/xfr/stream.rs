//! Stream mode: any amount of data, byte for byte, through a ring of slots in the segment.
//!
//! TLPI's svshm_xfr moves a stream through ONE buffer in lock-step: the writer fills it and
//! sleeps until the reader has emptied it, so at any moment one of the two is idle. Here the
//! segment holds a ring of `--slots` slots, and two counting semaphores say how many are full
//! and how many are empty, so the writer fills slot `i+1` while the reader empties slot `i`:
//!
//! ```text
//! writer, per block:                        reader, per block:
//!   wait EMPTY -1     (a free slot)           wait FULL -1      (a filled slot)
//!   read(stdin) -> slot                       check its descriptor (block seq, length)
//!   descriptor = {seq, len}                   write(stdout) <- slot
//!   post FULL +1                              post EMPTY +1
//! a 0-byte block ends the stream; then       after the 0-byte block: done
//! wait EMPTY -slots: the reader has emptied
//! every slot, so nothing is lost when the writer removes the segment.
//! ```
//!
//! The bytes never pass through a buffer of ours: `read(2)` copies from stdin straight into
//! the slot ([`Attachment::read_from_fd`](crate::sys::shm::Attachment::read_from_fd)) and
//! `write(2)` straight out of it. A pipe moves each byte twice (into the kernel's pipe buffer
//! and out again); the ring moves it once per side.
//!
//! Each side takes one block per slot, in order, so block `seq` is always in slot
//! `seq % slots` (counted separately, so that `seq` may wrap). The descriptor's `seq` is
//! checked anyway: a broken protocol is reported, never read as data.

use super::objects::{copy_out, key, ReaderObjects, Watch, WriterObjects};
use super::objects::{SEM_EMPTY, SEM_FULL};
use super::{Config, Report};
use crate::cli::Context;
use crate::sys::poll;
use crate::sys::sem::SemOp;
use crate::sys::signal::TermSignals;
use crate::wire::xfr::{Header, Mode, SlotDesc, SLOT_DESC_LEN};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// The writer: creates the ring, streams `input` (stdin) through it to its end, then waits
/// until the reader has emptied every slot.
pub fn write(cfg: &Config, input: impl AsFd, sigs: &TermSignals) -> io::Result<Report> {
    let input = input.as_fd();
    let key = key(&cfg.key_path, cfg.proj_id)?;
    let slots = cfg.slots;
    let slot_size = cfg.slot_size as u32;
    // The layout first (for the segment's size); the set's id is filled in once it exists.
    let layout = Header::stream(std::process::id() as i32, 0, slots, slot_size);
    // Owner of both objects from here on.
    let objs = WriterObjects::create(key, layout.segment_len() as usize, cfg.perms)?;
    let h = Header {
        semid: objs.sems.get().0,
        ..layout
    };
    objs.att.write_at(0, &h.encode())?;
    // Every slot starts empty. (At most XFR_MAX_SLOTS, which fits a semop's i16.)
    objs.publish(SemOp::add(SEM_EMPTY, slots as i16))?;

    let watch = Watch::writer(&objs, sigs, cfg.timeout, "all the data");
    let mut report = Report {
        bytes: 0,
        blocks: 0,
    };
    let (mut seq, mut slot, mut eof) = (0u32, 0u32, false);
    loop {
        watch.signals()?;
        watch.wait(&[SemOp::wait(SEM_EMPTY)])?;
        // Slot `slot` is ours until we post FULL. Fill it from stdin.
        let n = if eof {
            0
        } else {
            let (n, at_end) = fill(&watch, &objs, input, h.slot_offset(slot), slot_size)?;
            eof = at_end;
            n
        };
        let desc = SlotDesc { seq, len: n };
        objs.att.write_at(h.desc_offset(slot), &desc.encode())?;
        let n = n as usize;
        // The semop is a full memory barrier: the reader that takes this FULL sees the bytes
        // and the descriptor written above.
        watch.post(&[SemOp::post(SEM_FULL)])?;
        if n == 0 {
            crate::trace!("slot {slot}: end of data");
            break;
        }
        crate::trace!("slot {slot}: {n} bytes");
        report.bytes += n as u64;
        report.blocks += 1;
        seq = seq.wrapping_add(1);
        slot = (slot + 1) % slots;
    }
    // Every slot empty again means the reader has taken every block, end of data included.
    crate::trace!("waiting for the reader to empty all {slots} slots");
    watch.wait(&[SemOp::add(SEM_EMPTY, -(slots as i16))])?;
    crate::trace!("the reader has everything: {} bytes", report.bytes);
    Ok(report)
}

/// Fills one slot from `input`: waits (watching the peer) until there is something to read,
/// then reads until the slot is full or the input has nothing more *right now*. A file fills
/// the slot in one `read(2)`; a pipe hands over what its writer wrote so far, often 4 KiB at a
/// time, and batching those pieces keeps slots full; a terminal line goes on at once.
/// Returns the bytes read and whether the input ended.
fn fill(
    watch: &Watch<'_>,
    objs: &WriterObjects,
    input: BorrowedFd<'_>,
    offset: usize,
    slot_size: u32,
) -> io::Result<(u32, bool)> {
    let size = slot_size as usize;
    watch.readable(input)?;
    let mut n = 0;
    while n < size {
        let got = objs
            .att
            .read_from_fd(input, offset + n, size - n)
            .context("reading stdin")?;
        if got == 0 {
            return Ok((n as u32, true));
        }
        n += got;
        if n < size && !poll::readable(input, Duration::ZERO)? {
            break;
        }
    }
    Ok((n as u32, false))
}

/// The reader: finds the writer (waiting up to the timeout), and writes every block to `out`
/// (stdout) until the 0-byte block that ends the stream.
pub fn read(cfg: &Config, out: impl AsFd, sigs: &TermSignals) -> io::Result<Report> {
    let out = out.as_fd();
    let key = key(&cfg.key_path, cfg.proj_id)?;
    let objs = ReaderObjects::connect(key, Mode::Stream, cfg.timeout, sigs)?;
    let h = objs.header;
    let watch = Watch::reader(&objs, sigs);
    let mut report = Report {
        bytes: 0,
        blocks: 0,
    };
    let (mut seq, mut slot) = (0u32, 0u32);
    loop {
        watch.signals()?;
        watch.wait(&[SemOp::wait(SEM_FULL)])?;
        let mut bytes = [0u8; SLOT_DESC_LEN];
        objs.att.read_at(h.desc_offset(slot), &mut bytes)?;
        let desc = SlotDesc::decode(&bytes).and_then(|d| h.check_slot(d, seq).map(|()| d));
        let desc = desc.map_err(|e| io::Error::other(format!("broken stream: {e}")))?;
        if desc.len == 0 {
            watch.post(&[SemOp::post(SEM_EMPTY)])?;
            crate::trace!("slot {slot}: end of data");
            break;
        }
        copy_out(&objs.att, out, h.slot_offset(slot), desc.len as usize)
            .context("writing stdout")?;
        // The slot is free for the writer again.
        watch.post(&[SemOp::post(SEM_EMPTY)])?;
        crate::trace!("slot {slot}: {} bytes", desc.len);
        report.bytes += u64::from(desc.len);
        report.blocks += 1;
        seq = seq.wrapping_add(1);
        slot = (slot + 1) % h.slots;
    }
    Ok(report)
}

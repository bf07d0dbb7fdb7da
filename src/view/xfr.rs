//! shm_writer / shm_reader (lab 01) as `ipcview` shows it: the header, who is alive, the message
//! or the ring, and the five semaphores.
//!
//! ```text
//! shm_writer/shm_reader key 0x4100c2f7: shmid 458796, semid 262182
//!   stream: 4 slots of 262144 bytes
//!   writer pid 5120 alive, reader pid 5130 alive
//!   ring [#][#][ ][ ]  2 full, 2 empty, 0 in use, last block 17
//!   sem 3 FULL       value 2     ncnt 0   zcnt 0   last pid 5120 alive
//! ```
//!
//! Who is alive comes from the semaphores, as in the programs themselves (`probe` in
//! `src/xfr/objects.rs`): `WRITER` and `READER` are raised with `SEM_UNDO`, so the kernel drops
//! them to 0 when their process dies. The reader's pid is not in the header: it is the last pid
//! that operated on `READER` (its claim, or the kernel's undo at its death).
//!
//! The ring: `FULL` slots hold blocks the reader has not taken, `EMPTY` are free for the
//! writer, and the rest are being filled or emptied right now. Block `seq` lives in slot
//! `seq % slots`, so the full slots are the `FULL` blocks up to the newest descriptor's `seq`.
//! The header does not count bytes, so none are shown.

use super::{sem_with_key, sems, Section, Segment};
use crate::sys::ipcs::Object;
use crate::sys::sem::SemId;
use crate::wire::xfr::{Header, Mode, SlotDesc, MAGIC, SLOT_DESC_LEN};
use crate::xfr::objects::{SEM_CLAIMED, SEM_EMPTY, SEM_FULL, SEM_READER, SEM_WRITER};

/// The names of the five semaphores, in index order (`src/xfr/objects.rs`).
pub const NAMES: [&str; 5] = ["WRITER", "READER", "CLAIMED", "FULL", "EMPTY"];

/// The section of an xfr segment, and its semaphore set's id; `None` if it is not one.
pub fn section(seg: &Segment, objs: &[Object]) -> Option<(Section, Option<i32>)> {
    if !seg.head.starts_with(MAGIC) {
        return None;
    }
    let key = seg.obj.key;
    let h = Header::decode(&seg.head).ok()?;
    // A header that describes more than the segment holds is not a writer's (`claim` in
    // `src/xfr/objects.rs` refuses it too): it is listed as a raw row.
    if (seg.att.len() as u64) < h.segment_len() {
        return None;
    }
    let semid = sem_with_key(objs, key).filter(|&s| s == h.semid);
    let title = format!(
        "shm_writer/shm_reader key 0x{:08x}: shmid {}, semid {}",
        key as u32, seg.obj.id, h.semid
    );
    let mut lines = Vec::new();
    match h.mode {
        Mode::Message => lines.push(format!("  message: room for {} bytes", h.slot_size)),
        Mode::Stream => lines.push(format!(
            "  stream: {} slots of {} bytes",
            h.slots, h.slot_size
        )),
    }
    let Some(semid) = semid else {
        lines.push(format!(
            "  writer pid {}, its semaphore set {} is gone",
            h.writer_pid, h.semid
        ));
        return Some((Section { title, lines }, None));
    };
    let s = sems::read(SemId(semid)).ok()?;
    if s.len() != NAMES.len() {
        return None;
    }
    let v = |i: u16| s[i as usize].value;
    let writer = if v(SEM_WRITER) > 0 { "alive" } else { "dead" };
    let reader = if v(SEM_CLAIMED) == 0 {
        "reader none yet".to_string()
    } else {
        let pid = s[SEM_READER as usize].pid;
        let state = if v(SEM_READER) > 0 { "alive" } else { "gone" };
        format!("reader pid {pid} {state}")
    };
    lines.push(format!("  writer pid {} {writer}, {reader}", h.writer_pid));
    match h.mode {
        Mode::Message => {
            let state = if v(SEM_EMPTY) > 0 {
                "taken by the reader"
            } else if v(SEM_FULL) > 0 {
                "waiting for the reader"
            } else {
                "being read"
            };
            lines.push(format!("  message of {} bytes, {state}", h.length));
        }
        Mode::Stream => lines.push(ring(seg, &h, v(SEM_FULL), v(SEM_EMPTY))?),
    }
    lines.extend(sems::rows(&s, |i| NAMES[i].to_string()));
    Some((Section { title, lines }, Some(semid)))
}

/// The ring as a row of cells, `[#]` for a full slot, `[ ]` for the others.
fn ring(seg: &Segment, h: &Header, full: u16, empty: u16) -> Option<String> {
    let n = h.slots as usize;
    // Cells for very long rings would not fit a line; the counts still tell everything.
    let shown = n.min(64);
    let table = seg.read(h.desc_offset(0), SLOT_DESC_LEN * n)?;
    let descs: Vec<SlotDesc> = table
        .chunks(SLOT_DESC_LEN)
        .filter_map(|c| SlotDesc::decode(c).ok())
        .collect();
    let newest = descs
        .iter()
        .filter(|d| d.seq != 0 || d.len != 0)
        .map(|d| d.seq)
        .max();
    let mut cells = vec![false; n];
    if let Some(last) = newest {
        for k in 0..u32::from(full).min(h.slots) {
            cells[(last.wrapping_sub(k) % h.slots) as usize] = true;
        }
    }
    let row: String = cells[..shown]
        .iter()
        .map(|&f| if f { "[#]" } else { "[ ]" })
        .collect();
    let more = if shown < n { "..." } else { "" };
    let in_use = (n as u32).saturating_sub(u32::from(full) + u32::from(empty));
    let last = newest.map_or("-".to_string(), |s| s.to_string());
    Some(format!(
        "  ring {row}{more}  {full} full, {empty} empty, {in_use} in use, last block {last}"
    ))
}

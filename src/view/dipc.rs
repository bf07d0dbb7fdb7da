//! A dipc server (lab 04) as `ipcview` shows it: the daemon, and per mailbox its message
//! length and its readers-writer lock, so that the turnstile can be watched letting a writer in.
//!
//! ```text
//! dipc port 5000 key 0x44501388: shmid 884770, semid 589887
//!   daemon pid 8090 alive, 4 mailboxes of 1024 bytes, packets of 1024 bytes
//!   box 1: 5 bytes, 3 readers inside, turnstile held by a writer, 2 waiting at the turnstile, 1 writer waiting for the readers to leave
//!   sem 2 TURN1      value 0     ncnt 2   zcnt 0   last pid 8090 alive
//!   sem 3 READERS1   value 3     ncnt 0   zcnt 1   last pid 8090 alive
//! ```
//!
//! How the lock's state reads off the semaphores (`src/dipc/rwlock.rs`): `READERSi` is the
//! number of readers inside; `TURNi` at 0 means a writer holds the turnstile; the sleepers at
//! the turnstile (`GETNCNT` of `TURNi`) are readers and writers queued behind it; and a writer
//! that holds it and waits for the readers to leave sleeps on "`READERSi` is zero" (`GETZCNT`).
//! Every lock holder is a thread of the daemon, so every last pid is the daemon's.

use super::{liveness, sem_with_key, sems, Section, Segment};
use crate::dipc::rwlock::SEMS_PER_LOCK;
use crate::sys::ipcs::Object;
use crate::sys::sem::SemId;
use crate::wire::dipc::{decode_slot_len, SegmentHeader, HEADER_SIZE, MAGIC, SLOT_HEADER};

/// The section of a dipc segment, and its semaphore set's id; `None` if it is not one.
pub fn section(seg: &Segment, objs: &[Object]) -> Option<(Section, Option<i32>)> {
    if !seg.head.starts_with(MAGIC) {
        return None;
    }
    let key = seg.obj.key;
    let h = SegmentHeader::decode(seg.head.get(..HEADER_SIZE)?).ok()?;
    // Every mailbox must fit the segment, or the header is not a server's (and its count
    // could be four billion): then it is a raw row.
    if SegmentHeader::segment_size(h.mailboxes, h.mailbox_size)? > seg.att.len() as u64 {
        return None;
    }
    let semid = sem_with_key(objs, key);
    let title = format!(
        "dipc port {} key 0x{:08x}: shmid {}, semid {}",
        h.port,
        key as u32,
        seg.obj.id,
        semid.map_or("-".to_string(), |s| s.to_string())
    );
    let mut lines = vec![format!(
        "  daemon pid {} {}, {} mailboxes of {} bytes, packets of {} bytes",
        h.creator_pid,
        liveness(h.creator_pid),
        h.mailboxes,
        h.mailbox_size,
        h.packet_size
    )];
    let s = match semid.map(|id| sems::read(SemId(id))) {
        Some(Ok(s)) if s.len() == h.mailboxes as usize * SEMS_PER_LOCK as usize => Some(s),
        Some(Err(_)) | None => None,
        Some(Ok(_)) => return None,
    };
    for i in 0..h.mailboxes {
        let len = seg
            .read(h.slot_offset(i), SLOT_HEADER)
            .and_then(|b| decode_slot_len(b.try_into().ok()?, h.mailbox_size).ok());
        let len = match len {
            Some(0) => "empty".to_string(),
            Some(n) => format!("{n} bytes"),
            None => "unreadable length".to_string(),
        };
        let lock = match &s {
            Some(s) => {
                let (turn, readers) = (&s[2 * i as usize], &s[2 * i as usize + 1]);
                format!(
                    ", {} readers inside, turnstile {}, {} waiting at the turnstile, {} writer waiting for the readers to leave",
                    readers.value,
                    if turn.value == 0 { "held by a writer" } else { "open" },
                    turn.ncnt,
                    readers.zcnt
                )
            }
            None => String::new(),
        };
        lines.push(format!("  box {i}: {len}{lock}"));
    }
    match &s {
        Some(s) => lines.extend(sems::rows(s, |i| {
            let name = if i % 2 == 0 { "TURN" } else { "READERS" };
            format!("{name}{}", i / 2)
        })),
        None => lines.push("  its semaphore set is gone".to_string()),
    }
    Some((Section { title, lines }, semid))
}

//! A shmem store (lab 03) as `ipcview` shows it: the key file, the segment's size and attach
//! count, the `flock` holders and waiters of the key file, and what the bytes look like.
//!
//! ```text
//! shmem key 0x4d00c4fa: shmid 688160
//!   key file /tmp/k
//!   64 bytes, 1 attached, creator pid 27100 dead
//!   flock LOCK_EX held by pid 27200 shmem_tool
//!   flock LOCK_SH waited for by pid 27210 shmem_tool
//!   content: text "hello shared memory"
//! ```
//!
//! A shmem segment has no header: it is recognised by its key, `ftok(file, 'M')`, whose top
//! byte is [`SHMEM_PROJ_ID`]. `ftok` keeps the low 16 bits of the file's inode and the low 8
//! bits of its device ([`key_of`]), which is all there is to go from a key back to its file:
//! `/proc/locks` names each lock's device and inode, and a process that has the file open shows
//! it in `/proc/PID/fd`. So the key file is looked for among the lock holders and the segment's
//! creator and last attacher; when none of them has it open, it shows as unknown.
//!
//! The content is decoded as the example server's `Record`, as the torn-read stamp pattern, or
//! else shown as the text up to the first NUL (`src/wire/shmem.rs`).

use super::{liveness, Section, Segment};
use crate::params::SHMEM_PROJ_ID;
use crate::sys::process::program_name;
use crate::sys::Key;
use crate::wire::shmem::{Record, Stamp, RECORD_MAGIC, RECORD_SIZE, STAMP_SIZE};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The most bytes of a segment read to decode its content.
const CONTENT_MAX: usize = 1 << 20;
/// The most characters of text shown.
const TEXT_MAX: usize = 48;

/// The key `ftok(file, SHMEM_PROJ_ID)` gives a file on device `dev` with inode `ino`.
pub fn key_of(dev: u64, ino: u64) -> Key {
    ((u32::from(SHMEM_PROJ_ID) << 24) | (((dev & 0xff) as u32) << 16) | (ino & 0xffff) as u32)
        as Key
}

/// One line of `/proc/locks` that is a `flock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flock {
    pub exclusive: bool,
    /// False for a process asleep in `flock`, waiting for this lock (`->` lines).
    pub held: bool,
    pub pid: i32,
    /// The low 8 bits of the minor device number (what `ftok` keeps), and the inode.
    pub dev: u64,
    pub ino: u64,
}

/// Parses `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 27200 08:01:1234 0 EOF`, and
/// `1: -> FLOCK  ADVISORY  READ  27210 08:01:1234 0 EOF` for a waiter.
pub fn parse_locks(text: &str) -> Vec<Flock> {
    text.lines()
        .filter_map(|line| {
            let mut f: Vec<&str> = line.split_whitespace().collect();
            let held = f.get(1) != Some(&"->");
            if !held {
                f.remove(1);
            }
            if f.get(1) != Some(&"FLOCK") {
                return None;
            }
            let exclusive = *f.get(3)? == "WRITE";
            let pid = f.get(4)?.parse().ok()?;
            let mut id = f.get(5)?.split(':');
            let _major = id.next()?;
            let minor = u64::from_str_radix(id.next()?, 16).ok()?;
            let ino = id.next()?.parse().ok()?;
            Some(Flock {
                exclusive,
                held,
                pid,
                dev: minor & 0xff,
                ino,
            })
        })
        .collect()
}

/// The path of the file with `key` open in one of `pids`, if any.
fn key_file(key: Key, pids: &[i32]) -> Option<PathBuf> {
    for &pid in pids.iter().filter(|&&p| p > 0) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in dir.flatten() {
            let Ok(meta) = std::fs::metadata(fd.path()) else {
                continue;
            };
            if meta.is_file() && key_of(meta.dev(), meta.ino()) == key {
                return std::fs::read_link(fd.path()).ok();
            }
        }
    }
    None
}

/// The section of a shmem segment; `None` if its key is not a shmem key.
pub fn section(seg: &Segment) -> Option<(Section, Option<i32>)> {
    let key = seg.obj.key;
    if (key as u32) >> 24 != u32::from(SHMEM_PROJ_ID) {
        return None;
    }
    let title = format!("shmem key 0x{:08x}: shmid {}", key as u32, seg.obj.id);
    let locks: Vec<Flock> = std::fs::read_to_string("/proc/locks")
        .map(|t| parse_locks(&t))
        .unwrap_or_default()
        .into_iter()
        .filter(|l| key_of(l.dev, l.ino) == key)
        .collect();
    let mut pids: Vec<i32> = locks.iter().map(|l| l.pid).collect();
    pids.extend([seg.stat.creator_pid, seg.stat.last_pid]);
    let file = match key_file(key, &pids) {
        Some(p) => format!("  key file {}", p.display()),
        None => {
            "  key file unknown (no lock holder, creator or last attacher has it open)".to_string()
        }
    };
    let mut lines = vec![
        file,
        format!(
            "  {} bytes, {} attached, creator pid {} {}",
            seg.stat.size,
            seg.stat.attaches,
            seg.stat.creator_pid,
            liveness(seg.stat.creator_pid)
        ),
    ];
    if locks.is_empty() {
        lines.push("  flock none".to_string());
    }
    for l in &locks {
        lines.push(format!(
            "  flock {} {} by pid {} {}",
            if l.exclusive { "LOCK_EX" } else { "LOCK_SH" },
            if l.held { "held" } else { "waited for" },
            l.pid,
            program_name(l.pid).unwrap_or_else(|| "-".to_string())
        ));
    }
    let bytes = seg.read(0, seg.att.len().min(CONTENT_MAX))?;
    lines.push(format!("  content: {}", content(&bytes)));
    Some((Section { title, lines }, None))
}

/// What the bytes are: a record, a stamp pattern, all zeros, or text.
fn content(bytes: &[u8]) -> String {
    if bytes.len() >= RECORD_SIZE && bytes.starts_with(RECORD_MAGIC) {
        return match Record::decode(&bytes[..RECORD_SIZE]) {
            Ok(r) => format!("record {} from pid {}: {:?}", r.seq, r.pid, r.text),
            Err(e) => format!("a broken record ({e})"),
        };
    }
    if bytes.iter().all(|&b| b == 0) {
        return "all zero".to_string();
    }
    if bytes.len() >= 2 * STAMP_SIZE {
        if let Ok(s) = Stamp::decode(bytes) {
            return format!("stamp pattern of writer {}, write {}", s.writer, s.seq);
        }
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]);
    let shown: String = text.chars().take(TEXT_MAX).collect();
    let more = if text.chars().count() > TEXT_MAX {
        "..."
    } else {
        ""
    };
    format!("text {shown:?}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_parse_held_and_waiting() {
        let text = "1: FLOCK  ADVISORY  WRITE 27200 08:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  READ  27210 08:01:1234 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 99 00:1a:5 0 EOF\n";
        let l = parse_locks(text);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            Flock {
                exclusive: true,
                held: true,
                pid: 27200,
                dev: 1,
                ino: 1234
            }
        );
        assert!(!l[1].held && !l[1].exclusive && l[1].pid == 27210);
    }

    #[test]
    fn the_key_is_ftoks() {
        let dir = crate::testutil::TempDir::new("viewshmem");
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(
            key_of(meta.dev(), meta.ino()),
            crate::sys::ftok(dir.path(), SHMEM_PROJ_ID).unwrap()
        );
    }

    #[test]
    fn content_is_told_apart() {
        assert_eq!(content(&[0; 64]), "all zero");
        let mut b = vec![0u8; 64];
        Stamp { writer: 2, seq: 7 }.encode(&mut b);
        assert_eq!(content(&b), "stamp pattern of writer 2, write 7");
        let mut t = vec![0u8; 64];
        t[..5].copy_from_slice(b"hello");
        assert_eq!(content(&t), "text \"hello\"");
    }
}

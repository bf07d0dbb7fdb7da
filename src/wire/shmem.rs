//! The bytes that shmem programs put in a segment: the torn-read stamp and the example record.
//!
//! The shmem library itself moves opaque bytes: `write` copies a buffer in, `read` copies the
//! whole segment out. What those bytes *mean* is the programs' contract, and two programs use
//! one here:
//!
//! - **The stamp pattern** (`shmem_tool hammer`, the bad/good writer demos, the benchmark): a
//!   writer fills the *whole* segment with one 8-byte stamp repeated, so that a reader can tell
//!   at a glance whether what it copied came from one write (every copy of the stamp agrees) or
//!   from two (the copy is **torn**: its front from one write, its back from another).
//! - **The record** (`examples/shmem_server.rs` publishes it, `examples/shmem_client.rs` reads
//!   it): what the seed's `example/server.c` keeps in its segment, with a magic and a version.
//!
//! Byte order is little-endian, as everywhere in [`crate::wire`].
//!
//! # Stamp pattern (the whole segment, any size of at least 8 bytes)
//!
//! | offset | size | field  | encoding                                                      |
//! |--------|------|--------|---------------------------------------------------------------|
//! | 0      | 4    | writer | u32: who wrote (0 only in a fresh, all-zero segment)          |
//! | 4      | 4    | seq    | u32: that writer's write number                               |
//! | 8·k    | 8    | copy k | the same 8 bytes again, for k = 1, 2, ...; the last copy is cut |
//! |        |      |        | short where the segment ends                                  |
//!
//! ```text
//! [ w s | w s | w s | ... | w s | w ]     one write: every copy agrees
//! [ 1 7 | 1 7 | 1 7 | 2 3 | 2 3 | 2 ]     torn: a reader copied while writer 2 overwrote
//! ```
//!
//! A fresh segment is all zeros, which decodes as writer 0, seq 0: a whole pattern too.
//!
//! # Record (`RECORD_SIZE` = 96 bytes)
//!
//! | offset | size | field    | encoding                                         |
//! |--------|------|----------|--------------------------------------------------|
//! | 0      | 4    | magic    | `SHMR`                                           |
//! | 4      | 2    | version  | u16, 1                                           |
//! | 6      | 2    | text_len | u16, at most `RECORD_TEXT_MAX` (64)              |
//! | 8      | 8    | seq      | u64: the server's update number, from 1          |
//! | 16     | 8    | time_ms  | u64: Unix time of the update, in milliseconds    |
//! | 24     | 4    | pid      | u32: the server's pid                            |
//! | 28     | 4    | flags    | u32: bit 0 `last` (the server removes the segment |
//! |        |      |          | right after this record); other bits zero        |
//! | 32     | 64   | text     | `text_len` bytes of UTF-8, then zeros            |

use super::{DecodeError, Reader, Writer};

/// The size of one stamp, and the size of the smallest segment a stamp fits.
pub const STAMP_SIZE: usize = 8;

/// One whole write of the stamp pattern: who wrote it, and which of its writes it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub writer: u32,
    pub seq: u32,
}

impl Stamp {
    /// Fills all of `buf` with this stamp, repeated (see the table).
    pub fn encode(self, buf: &mut [u8]) {
        let mut w = Writer::with_capacity(STAMP_SIZE);
        w.u32(self.writer).u32(self.seq);
        let one = w.finish();
        let head = buf.len().min(STAMP_SIZE);
        buf[..head].copy_from_slice(&one[..head]);
        // Double the filled part with each copy: a few memcpys even for a large segment.
        let mut filled = head;
        while filled < buf.len() {
            let n = filled.min(buf.len() - filled);
            buf.copy_within(..n, filled);
            filled += n;
        }
    }

    /// Reads the stamp from `buf` and checks that every copy agrees. A disagreement is
    /// `Invalid` and names the first torn byte: the read mixed two writes.
    pub fn decode(buf: &[u8]) -> Result<Stamp, DecodeError> {
        let mut r = Reader::new(buf);
        let stamp = Stamp {
            writer: r.u32()?,
            seq: r.u32()?,
        };
        // The pattern repeats every 8 bytes exactly when each byte equals the one 8 before it:
        // one comparison of the buffer with itself, shifted (fast: this runs on every read of
        // the torn-read tests). Only a torn buffer is searched for the first bad byte.
        if buf[STAMP_SIZE..] == buf[..buf.len() - STAMP_SIZE] {
            return Ok(stamp);
        }
        // Torn: find the first byte that breaks the pattern, a block of bytes at a time.
        let mut at = STAMP_SIZE;
        let bad = loop {
            if at >= buf.len() {
                return Ok(stamp); // not reached: the whole comparison above failed
            }
            let end = (at + 4096).min(buf.len());
            if buf[at..end] != buf[at - STAMP_SIZE..end - STAMP_SIZE] {
                break (at..end)
                    .find(|&j| buf[j] != buf[j - STAMP_SIZE])
                    .unwrap_or(at);
            }
            at = end;
        };
        let copy = &buf[bad - bad % STAMP_SIZE..];
        Err(DecodeError::Invalid(format!(
            "torn read: bytes 0..8 say writer {} seq {}, byte {bad} differs{}",
            stamp.writer,
            stamp.seq,
            match Stamp::decode_one(copy) {
                Some(o) => format!(" (its copy says writer {} seq {})", o.writer, o.seq),
                None => String::new(),
            }
        )))
    }

    fn decode_one(chunk: &[u8]) -> Option<Stamp> {
        let mut r = Reader::new(chunk);
        Some(Stamp {
            writer: r.u32().ok()?,
            seq: r.u32().ok()?,
        })
    }
}

/// The magic at the start of a record.
pub const RECORD_MAGIC: &[u8; 4] = b"SHMR";
/// The record version this code writes and accepts.
pub const RECORD_VERSION: u16 = 1;
/// The longest text a record carries, in bytes.
pub const RECORD_TEXT_MAX: usize = 64;
/// The size of an encoded record: the segment size of the example server.
pub const RECORD_SIZE: usize = 32 + RECORD_TEXT_MAX;

/// What the example server publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub time_ms: u64,
    pub pid: u32,
    pub text: String,
    /// The server's last record: it removes the segment next. A client that finds the segment
    /// removed without it knows somebody else did it.
    pub last: bool,
}

/// The `last` bit of a record's flags.
const RECORD_LAST: u32 = 1;

impl Record {
    /// The record's `RECORD_SIZE` bytes. Text longer than `RECORD_TEXT_MAX` bytes is an error.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        let text = self.text.as_bytes();
        if text.len() > RECORD_TEXT_MAX {
            return Err(DecodeError::Invalid(format!(
                "record text is {} bytes, the most is {RECORD_TEXT_MAX}",
                text.len()
            )));
        }
        let mut w = Writer::with_capacity(RECORD_SIZE);
        w.bytes(RECORD_MAGIC)
            .u16(RECORD_VERSION)
            .u16(text.len() as u16)
            .u64(self.seq)
            .u64(self.time_ms)
            .u32(self.pid)
            .u32(if self.last { RECORD_LAST } else { 0 })
            .bytes(text)
            .bytes(&[0u8; RECORD_TEXT_MAX][text.len()..]);
        Ok(w.finish())
    }

    /// Decodes a record from the front of `buf` (a segment may be larger than a record).
    pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader::new(buf);
        r.magic(RECORD_MAGIC)?;
        let version = r.u16()?;
        if version != RECORD_VERSION {
            return Err(DecodeError::Invalid(format!(
                "record version {version}, expected {RECORD_VERSION}"
            )));
        }
        let len = usize::from(r.u16()?);
        if len > RECORD_TEXT_MAX {
            return Err(DecodeError::Invalid(format!(
                "record text_len {len} is more than {RECORD_TEXT_MAX}"
            )));
        }
        let seq = r.u64()?;
        let time_ms = r.u64()?;
        let pid = r.u32()?;
        let flags = r.u32()?;
        if flags & !RECORD_LAST != 0 {
            return Err(DecodeError::Invalid(format!(
                "record flags 0x{flags:x}: unknown bits"
            )));
        }
        let text = r.bytes(RECORD_TEXT_MAX)?;
        let text = std::str::from_utf8(&text[..len])
            .map_err(|_| DecodeError::Invalid("record text is not UTF-8".into()))?
            .to_string();
        Ok(Record {
            seq,
            time_ms,
            pid,
            text,
            last: flags & RECORD_LAST != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_stamp_decodes_and_a_torn_one_is_invalid() {
        for size in [8, 13, 64, 4096] {
            let mut buf = vec![0u8; size];
            assert_eq!(
                Stamp::decode(&buf),
                Ok(Stamp { writer: 0, seq: 0 }),
                "fresh segment"
            );
            let s = Stamp {
                writer: 3,
                seq: 0x0102_0304,
            };
            s.encode(&mut buf);
            assert_eq!(&buf[..8], &[3, 0, 0, 0, 4, 3, 2, 1]);
            assert_eq!(Stamp::decode(&buf), Ok(s));
            if size > 8 {
                buf[size - 1] ^= 0xff;
                assert!(
                    matches!(Stamp::decode(&buf), Err(DecodeError::Invalid(m)) if m.contains(&format!("byte {}", size - 1)))
                );
            }
        }
        assert_eq!(Stamp::decode(&[0u8; 5]), Err(DecodeError::NeedMore(3)));
    }

    #[test]
    fn a_record_round_trips_and_bad_ones_are_refused() {
        let rec = Record {
            seq: 7,
            time_ms: 1_700_000_000_123,
            pid: 4242,
            text: "tick 7".into(),
            last: false,
        };
        let bytes = rec.encode().unwrap();
        assert_eq!(bytes.len(), RECORD_SIZE);
        assert_eq!(&bytes[..8], b"SHMR\x01\x00\x06\x00");
        assert_eq!(Record::decode(&bytes), Ok(rec.clone()));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[9; 100]);
        assert_eq!(Record::decode(&longer), Ok(rec));
        assert_eq!(Record::decode(&bytes[..40]), Err(DecodeError::NeedMore(56)));
        assert!(matches!(
            Record::decode(&[0u8; RECORD_SIZE]),
            Err(DecodeError::Invalid(_))
        ));
        let mut bad = bytes.clone();
        bad[6] = 200;
        assert!(matches!(Record::decode(&bad), Err(DecodeError::Invalid(_))));
        let long = Record {
            seq: 1,
            time_ms: 0,
            pid: 1,
            text: "x".repeat(65),
            last: false,
        };
        assert!(long.encode().is_err());
    }
}

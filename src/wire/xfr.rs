//! The shm_writer/shm_reader segment (seed 002): a header, then either one message or a ring of
//! slots. This file is the whole contract between the two programs' bytes; [`crate::xfr`] holds
//! the protocol (who waits on which semaphore when).
//!
//! The segment, in the two modes (offsets in bytes):
//!
//! ```text
//! message:  [ header 0..64 | message, `slot_size` bytes of room                       ]
//! stream:   [ header 0..64 | slot table, 8 bytes a slot | pad to a page | slot 0 | slot 1 | ... ]
//!                                                        ^ data_offset  ^ + slot_size
//! ```
//!
//! Slot payloads start on a page boundary, so that `read(2)` fills whole pages of the segment
//! straight from the page cache and `write(2)` hands whole pages on.
//!
//! # Header (64 bytes, at offset 0; written once by the writer before it publishes the segment)
//!
//! | offset | size | field       | encoding                                                  |
//! |--------|------|-------------|-----------------------------------------------------------|
//! | 0      | 4    | magic       | ASCII `IXFR`                                              |
//! | 4      | 2    | version     | u16, [`VERSION`]                                          |
//! | 6      | 2    | mode        | u16: 1 = message, 2 = stream                              |
//! | 8      | 4    | writer_pid  | i32: the writer's pid, for messages and orphan checks     |
//! | 12     | 4    | semid       | i32: the writer's semaphore set (also found by the key)   |
//! | 16     | 8    | length      | u64: message mode: bytes of message; stream mode: 0       |
//! | 24     | 4    | slots       | u32: message mode: 1; stream mode: slots in the ring      |
//! | 28     | 4    | slot_size   | u32: bytes of room in each slot (message mode: `--size`)  |
//! | 32     | 8    | data_offset | u64: offset of slot 0 (message mode: 64)                  |
//! | 40     | 24   | reserved    | zero                                                      |
//!
//! # Slot descriptor (8 bytes, at offset `64 + 8 * i` for slot `i`; stream mode only)
//!
//! | offset | size | field | encoding                                                         |
//! |--------|------|-------|------------------------------------------------------------------|
//! | 0      | 4    | seq   | u32: the number of this block in the stream, 0, 1, 2, ... (wraps) |
//! | 4      | 4    | len   | u32: payload bytes in the slot; **0 = end of data**              |
//!
//! Block `seq` always lives in slot `seq % slots`. The reader knows which `seq` it expects
//! next, so a descriptor with another `seq` (or a `len` larger than the slot) is a broken
//! protocol, reported as [`DecodeError::Invalid`], never silently read.

use super::{DecodeError, Reader, Writer};

/// The first four bytes of every xfr segment: `xxd` shows `IXFR`.
pub const MAGIC: &[u8; 4] = b"IXFR";

/// The layout version; a reader refuses any other.
pub const VERSION: u16 = 1;

/// Bytes of the header.
pub const HEADER_LEN: usize = 64;

/// Bytes of one slot descriptor.
pub const SLOT_DESC_LEN: usize = 8;

/// Slot payloads are aligned to this (the page size of every machine ipclab runs on).
pub const PAGE: usize = 4096;

/// What the segment carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One message of `length` bytes, right after the header.
    Message,
    /// A ring of `slots` slots of `slot_size` bytes, each announced by a descriptor.
    Stream,
}

impl Mode {
    fn code(self) -> u16 {
        match self {
            Mode::Message => 1,
            Mode::Stream => 2,
        }
    }
}

/// The segment header: see the table above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub mode: Mode,
    pub writer_pid: i32,
    pub semid: i32,
    pub length: u64,
    pub slots: u32,
    pub slot_size: u32,
    pub data_offset: u64,
}

impl Header {
    /// The header of a message segment with room for `capacity` bytes, holding `length`.
    pub fn message(writer_pid: i32, semid: i32, capacity: u32, length: u64) -> Header {
        Header {
            mode: Mode::Message,
            writer_pid,
            semid,
            length,
            slots: 1,
            slot_size: capacity,
            data_offset: HEADER_LEN as u64,
        }
    }

    /// The header of a stream segment: the slot table after the header, the slots from the
    /// next page boundary on.
    pub fn stream(writer_pid: i32, semid: i32, slots: u32, slot_size: u32) -> Header {
        let table_end = HEADER_LEN + SLOT_DESC_LEN * slots as usize;
        Header {
            mode: Mode::Stream,
            writer_pid,
            semid,
            length: 0,
            slots,
            slot_size,
            data_offset: table_end.next_multiple_of(PAGE) as u64,
        }
    }

    /// The bytes the segment needs for this layout: the end of the last slot.
    pub fn segment_len(&self) -> u64 {
        // Cannot overflow: decode and the constructors bound slots and slot_size to u32.
        self.data_offset + u64::from(self.slots) * u64::from(self.slot_size)
    }

    /// Where slot `i`'s descriptor lives.
    pub fn desc_offset(&self, i: u32) -> usize {
        HEADER_LEN + SLOT_DESC_LEN * i as usize
    }

    /// Where slot `i`'s payload starts.
    pub fn slot_offset(&self, i: u32) -> usize {
        self.data_offset as usize + i as usize * self.slot_size as usize
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut w = Writer::with_capacity(HEADER_LEN);
        w.bytes(MAGIC)
            .u16(VERSION)
            .u16(self.mode.code())
            .i32(self.writer_pid)
            .i32(self.semid)
            .u64(self.length)
            .u32(self.slots)
            .u32(self.slot_size)
            .u64(self.data_offset)
            .bytes(&[0; 24]);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    /// Reads and checks a header: magic, version, mode, and a layout that makes sense.
    /// (Whether the segment is as long as [`segment_len`](Self::segment_len) is for the
    /// caller, who knows the segment's size.)
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::NeedMore(HEADER_LEN - bytes.len()));
        }
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return Err(invalid(format!(
                "layout version {version}, expected {VERSION}"
            )));
        }
        let mode = match r.u16()? {
            1 => Mode::Message,
            2 => Mode::Stream,
            m => {
                return Err(invalid(format!(
                    "mode {m} is neither 1 (message) nor 2 (stream)"
                )))
            }
        };
        let h = Header {
            mode,
            writer_pid: r.i32()?,
            semid: r.i32()?,
            length: r.u64()?,
            slots: r.u32()?,
            slot_size: r.u32()?,
            data_offset: r.u64()?,
        };
        if h.slots == 0 || h.slot_size == 0 {
            return Err(invalid(format!(
                "{} slots of {} bytes",
                h.slots, h.slot_size
            )));
        }
        match mode {
            Mode::Message if h.slots != 1 || h.length > u64::from(h.slot_size) => {
                return Err(invalid(format!(
                    "a {}-byte message in {} slots of {} bytes",
                    h.length, h.slots, h.slot_size
                )));
            }
            Mode::Stream if h.data_offset < h.desc_offset(h.slots) as u64 => {
                return Err(invalid(format!(
                    "data at offset {} overlaps the table of {} slots",
                    h.data_offset, h.slots
                )));
            }
            _ => {}
        }
        if h.data_offset < HEADER_LEN as u64 || h.data_offset > u64::from(u32::MAX) {
            return Err(invalid(format!("data offset {}", h.data_offset)));
        }
        Ok(h)
    }

    /// Checks that `desc` is block `want_seq` and fits a slot.
    pub fn check_slot(&self, desc: SlotDesc, want_seq: u32) -> Result<(), DecodeError> {
        if desc.seq != want_seq {
            return Err(invalid(format!(
                "slot {} holds block {}, expected block {want_seq}",
                want_seq % self.slots,
                desc.seq
            )));
        }
        if desc.len > self.slot_size {
            return Err(invalid(format!(
                "block {} claims {} bytes, a slot holds {}",
                desc.seq, desc.len, self.slot_size
            )));
        }
        Ok(())
    }
}

/// One slot descriptor: which block the slot holds, and how many bytes (0 = end of data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDesc {
    pub seq: u32,
    pub len: u32,
}

impl SlotDesc {
    /// The 8 descriptor bytes.
    pub fn encode(&self) -> [u8; SLOT_DESC_LEN] {
        let mut w = Writer::with_capacity(SLOT_DESC_LEN);
        w.u32(self.seq).u32(self.len);
        let mut out = [0u8; SLOT_DESC_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    /// Reads a descriptor; any 8 bytes are one (validity depends on the stream: see
    /// [`Header::check_slot`]).
    pub fn decode(bytes: &[u8]) -> Result<SlotDesc, DecodeError> {
        let mut r = Reader::new(bytes);
        Ok(SlotDesc {
            seq: r.u32()?,
            len: r.u32()?,
        })
    }
}

fn invalid(why: String) -> DecodeError {
    DecodeError::Invalid(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_lay_out_pages() {
        let m = Header::message(42, 7, 4096, 12);
        assert_eq!(Header::decode(&m.encode()), Ok(m));
        assert_eq!(m.segment_len(), 64 + 4096);
        assert_eq!(m.slot_offset(0), 64);

        let s = Header::stream(42, 7, 8, 1 << 20);
        assert_eq!(Header::decode(&s.encode()), Ok(s));
        assert_eq!(s.data_offset, 4096);
        assert_eq!(s.desc_offset(3), 64 + 24);
        assert_eq!(s.slot_offset(2), 4096 + (2 << 20));
        assert_eq!(s.segment_len(), 4096 + (8 << 20));
        // A table that outgrows the first page pushes the data to the next boundary.
        assert_eq!(Header::stream(1, 1, 600, 4096).data_offset, 8192);
    }

    #[test]
    fn the_bytes_are_the_documented_ones() {
        let b = Header::stream(0x0102_0304, 9, 2, 0x10000).encode();
        assert_eq!(&b[0..4], b"IXFR");
        assert_eq!(&b[4..8], &[1, 0, 2, 0]);
        assert_eq!(&b[8..12], &[4, 3, 2, 1]);
        assert_eq!(&b[12..16], &[9, 0, 0, 0]);
        assert_eq!(&b[24..28], &[2, 0, 0, 0]);
        assert_eq!(&b[28..32], &[0, 0, 1, 0]);
        assert_eq!(&b[32..40], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert!(b[40..].iter().all(|&x| x == 0));
        let d = SlotDesc { seq: 5, len: 300 }.encode();
        assert_eq!(d, [5, 0, 0, 0, 0x2c, 1, 0, 0]);
    }

    #[test]
    fn short_input_needs_more_and_garbage_is_invalid() {
        let b = Header::message(1, 2, 16, 3).encode();
        assert_eq!(Header::decode(&b[..10]), Err(DecodeError::NeedMore(54)));
        assert_eq!(SlotDesc::decode(&[0; 5]), Err(DecodeError::NeedMore(3)));
        assert!(matches!(
            Header::decode(&[0u8; 64]),
            Err(DecodeError::Invalid(_))
        ));
        let mut bad = b;
        bad[4] = 9; // version
        assert!(matches!(Header::decode(&bad), Err(DecodeError::Invalid(_))));
        let mut bad = b;
        bad[6] = 3; // mode
        assert!(matches!(Header::decode(&bad), Err(DecodeError::Invalid(_))));
        // A message longer than its room.
        let long = Header::message(1, 2, 16, 17).encode();
        assert!(matches!(
            Header::decode(&long),
            Err(DecodeError::Invalid(_))
        ));
        // Data overlapping the slot table.
        let mut s = Header::stream(1, 2, 8, 4096);
        s.data_offset = 70;
        assert!(matches!(
            Header::decode(&s.encode()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn slots_must_come_in_order_and_fit() {
        let h = Header::stream(1, 2, 4, 100);
        assert!(h.check_slot(SlotDesc { seq: 6, len: 100 }, 6).is_ok());
        assert!(h.check_slot(SlotDesc { seq: 6, len: 0 }, 6).is_ok());
        assert!(h.check_slot(SlotDesc { seq: 2, len: 1 }, 6).is_err());
        assert!(h.check_slot(SlotDesc { seq: 6, len: 101 }, 6).is_err());
    }
}

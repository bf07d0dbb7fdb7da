//! The wire formats: every byte layout that crosses a process boundary, and nothing else.
//!
//! Two processes agree on nothing but bytes. A segment header that one process writes and
//! another reads, a message in a queue, a frame on a TCP connection: each has exactly one
//! `encode` and one `decode` here, next to a table of its bytes. No other module builds or
//! parses these bytes by hand, so a change of layout is a change in this module alone.
//!
//! # Conventions, stated once
//! - **Byte order**: every multi-byte integer is **little-endian**, fixed width, unsigned
//!   unless a table says otherwise. (Little-endian is what every machine ipclab runs on uses
//!   natively; a fixed order still matters, because it makes the format a documented contract
//!   rather than an accident of the compiler.)
//! - **Magic and version**: every binary format starts with a 4-byte magic (ASCII, so that
//!   `xxd` shows it) and a version. A decoder refuses other magics and versions.
//! - **Decode errors** separate [`DecodeError::NeedMore`] (the bytes so far are a valid
//!   beginning: read more and try again) from [`DecodeError::Invalid`] (no more bytes can make
//!   this valid: report it and drop the peer).
//!
//! # Layout
//! - [`xfr`]: the shm_writer/shm_reader segment (seed 002).
//! - [`device`]: the simulated device's register file and command block (seed 003).
//! - [`shmem`]: the shmem torn-read stamp and the example server's record (seed 004).
//! - [`dipc`]: the dipc datagram and mailbox segment (seed 001).
//! - [`rshm`]: RSHM queue messages and peer frames (seed 000).

pub mod device;
pub mod dipc;
pub mod rshm;
pub mod shmem;
pub mod xfr;

use std::fmt;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A valid prefix: at least this many more bytes are needed.
    NeedMore(usize),
    /// Not valid whatever follows; the text says why.
    Invalid(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NeedMore(n) => write!(f, "incomplete: {n} more bytes needed"),
            DecodeError::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for std::io::Error {
    fn from(e: DecodeError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// A cursor over bytes being decoded: each read takes fixed-width little-endian fields from
/// the front, or reports how many bytes are missing.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::NeedMore(n - self.remaining()));
        }
        let b = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A 4-byte magic that must equal `want`.
    pub fn magic(&mut self, want: &[u8; 4]) -> Result<(), DecodeError> {
        let got = self.array::<4>()?;
        if &got != want {
            return Err(DecodeError::Invalid(format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            )));
        }
        Ok(())
    }
}

/// Appends fixed-width little-endian fields to a buffer being encoded.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }
    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_what_writer_wrote_and_asks_for_more() {
        let mut w = Writer::new();
        w.bytes(b"IPCL").u16(2).u32(0xdead_beef).i64(-5);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        r.magic(b"IPCL").unwrap();
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.u8(), Err(DecodeError::NeedMore(1)));
        let mut short = Reader::new(&bytes[..5]);
        short.magic(b"IPCL").unwrap();
        assert_eq!(short.u16(), Err(DecodeError::NeedMore(1)));
        assert!(matches!(
            Reader::new(b"XXXX").magic(b"IPCL"),
            Err(DecodeError::Invalid(_))
        ));
    }
}

//! A STATE frame read and written in place: runs that borrow their bytes.
//!
//! ```text
//!   sender:   twin ──one copy──▶ frame bytes ──write──▶ socket
//!   receiver: socket ──read──▶ frame bytes ──one copy──▶ replica, twin
//! ```
//!
//! [`super::Frame::State`] owns its runs (a `Vec<u8>` each): decoding one copies every byte once
//! more, and so does building one from a twin. A late joiner takes in a whole segment this way
//! (1 GiB in 1024 frames), so the server encodes a STATE straight from its twin
//! ([`StateRef::encode`]) and merges one straight from the buffer it read ([`StateRef::decode`]).
//! The layout and the checks are those of [`super::Frame::State`] (see [`crate::wire::rshm`],
//! "Peer frame"), and so is the framing (`decode_framed`).

use super::{
    check_run, decode_framed, FRAME_HEADER_LEN, FRAME_MAGIC, STATE_RUN_HEADER_LEN, VERSION,
};
use super::{get_addr, invalid, put_addr};
use crate::params::RSHM_MAX_RUNS;
use crate::wire::{DecodeError, Reader, Writer};
use std::fmt;
use std::net::SocketAddrV4;

/// A STATE frame whose runs borrow the bytes they lie in: the frame read (receiver) or the
/// twin (sender).
#[derive(Debug)]
pub struct StateRef<'a> {
    pub rshmid: i32,
    pub last: bool,
    pub runs: Vec<StampedRunRef<'a>>,
}

/// One run of a [`StateRef`]: its stamp, its place, and its bytes.
#[derive(Debug)]
pub struct StampedRunRef<'a> {
    pub version: u64,
    pub origin: SocketAddrV4,
    pub offset: u64,
    pub data: &'a [u8],
}

/// The trace line, as [`super::Frame::State`] shows it.
impl fmt::Display for StateRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "STATE rshmid={} runs=[", self.rshmid)?;
        for (i, r) in self.runs.iter().take(8).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(
                f,
                "{sep}{}+{}:v{}@{}",
                r.offset,
                r.data.len(),
                r.version,
                r.origin
            )?;
        }
        if self.runs.len() > 8 {
            write!(f, " ...{} more", self.runs.len() - 8)?;
        }
        write!(f, "]{}", if self.last { " last" } else { "" })
    }
}

impl<'a> StateRef<'a> {
    /// The STATE in `bytes`, one whole frame (header included); `None` if it is another kind
    /// of frame (decode it with [`super::Frame::decode`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Option<StateRef<'a>>, DecodeError> {
        let (_, state, _) = decode_framed(bytes, |kind, r| {
            if kind != 11 {
                r.bytes(r.remaining())?; // another kind's body: Frame::decode reads it
                return Ok(None);
            }
            StateRef::decode_from(r).map(Some)
        })?;
        Ok(state)
    }

    /// Header and body, as [`super::Frame::State`] encodes them: each run's bytes copied once,
    /// from where they lie (a sender encodes straight from its twin).
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let data: usize = self.runs.iter().map(|r| r.data.len()).sum();
        let body = 9 + self.runs.len() * STATE_RUN_HEADER_LEN + data;
        let mut w = Writer::with_capacity(FRAME_HEADER_LEN + body);
        w.bytes(FRAME_MAGIC).u16(VERSION).u8(11).u8(0);
        w.u32(body as u32).u32(seq);
        w.i32(self.rshmid)
            .u8(u8::from(self.last))
            .u32(self.runs.len() as u32);
        for r in &self.runs {
            w.u64(r.version);
            put_addr(&mut w, r.origin);
            w.u64(r.offset).u32(r.data.len() as u32).bytes(r.data);
        }
        let buf = w.finish();
        debug_assert_eq!(buf.len(), FRAME_HEADER_LEN + body);
        buf
    }

    /// The body: rshmid, last, the runs (each checked before its bytes are taken).
    pub(super) fn decode_from(r: &mut Reader<'a>) -> Result<StateRef<'a>, DecodeError> {
        let rshmid = r.i32()?;
        let last = match r.u8()? {
            0 => false,
            1 => true,
            other => return invalid(format!("STATE last {other}, expected 0 or 1")),
        };
        let n = r.u32()? as usize;
        if n > RSHM_MAX_RUNS || n > r.remaining() / (STATE_RUN_HEADER_LEN + 1) {
            return invalid(format!(
                "state of {n} runs: at most {RSHM_MAX_RUNS}, and the body must hold them"
            ));
        }
        let mut runs = Vec::with_capacity(n);
        let (mut end, mut data) = (0u64, 0usize);
        for _ in 0..n {
            let version = r.u64()?;
            let origin = get_addr(r)?;
            let offset = r.u64()?;
            let len = r.u32()? as usize;
            check_run("state run", offset, len, end, &mut data)?;
            end = offset + len as u64;
            runs.push(StampedRunRef {
                version,
                origin,
                offset,
                data: r.bytes(len)?,
            });
        }
        Ok(StateRef { rshmid, last, runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rshm::Frame;

    #[test]
    fn a_state_read_in_place_is_the_frame_it_encodes() {
        let origin: SocketAddrV4 = "127.0.0.1:7000".parse().unwrap();
        let (a, b) = (vec![1u8; 24], vec![2u8; 8]);
        let state = StateRef {
            rshmid: 7,
            last: true,
            runs: vec![
                StampedRunRef {
                    version: 3,
                    origin,
                    offset: 0,
                    data: &a,
                },
                StampedRunRef {
                    version: 4,
                    origin,
                    offset: 64,
                    data: &b,
                },
            ],
        };
        let bytes = state.encode(9);
        let (seq, frame, used) = Frame::decode(&bytes).unwrap();
        assert_eq!((seq, used), (9, bytes.len()));
        assert_eq!(frame.encode(9), bytes, "the same bytes as Frame::State");
        let back = StateRef::decode(&bytes).unwrap().expect("a STATE");
        assert_eq!(back.to_string(), frame.to_string());
        assert_eq!((back.runs[1].offset, back.runs[1].data), (64, &b[..]));
        assert!(StateRef::decode(&Frame::Bye.encode(1)).unwrap().is_none());
    }
}

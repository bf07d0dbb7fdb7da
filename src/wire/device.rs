//! The simulated device's register file: the one segment shared by `device`, `device_client`
//! and `detach` (seed 003).
//!
//! A real I/O card exposes *registers* at fixed addresses; our simulated one exposes a shared
//! memory segment laid out the same way. Everything here is little-endian (see [`crate::wire`]);
//! floating-point values are IEEE 754 `f64`s stored as their 8-byte bit pattern.
//!
//! ```text
//! offset 0                40                 64              96          96+32   96+32·N
//!        [ header        | command request  | command reply | channel 0 | ... | channel N-1 ]
//!          written by       written by the     written by      written by the device only,
//!          the device       client holding     the device      under the LOCK semaphore
//!                           the SLOT sem.
//! ```
//!
//! Who may write what, and under which semaphore (the indices are in [`crate::device`]):
//! - the **header** is written by the device (its `update` counter under LOCK); `detach` writes
//!   only the status word, to [`STATUS_REMOVED`], just before it removes the objects;
//! - the **request** is written by the one client that holds the SLOT semaphore, then the client
//!   posts CMD;
//! - the **reply** is written by the device while it executes that command, then it posts DONE;
//! - the **channels** are written by the device only, always while it holds LOCK, so that a
//!   reader holding LOCK sees each channel whole (never a setpoint from one update with a
//!   readback from another).
//!
//! # Header (40 bytes, offset 0)
//! | offset | size | field    | encoding                                                     |
//! |--------|------|----------|--------------------------------------------------------------|
//! | 0      | 4    | magic    | ASCII `IDEV`                                                 |
//! | 4      | 2    | version  | u16, [`VERSION`]                                             |
//! | 6      | 2    | channels | u16, 1..=[`crate::params::DEVICE_MAX_CHANNELS`]              |
//! | 8      | 4    | status   | u32 device status: 0 starting, 1 running, 2 stopped, 3 removed |
//! | 12     | 4    | pid      | i32, the device's pid (clients check that it is alive)       |
//! | 16     | 8    | update   | u64, number of periodic updates so far (under LOCK)          |
//! | 24     | 4    | period   | u32, milliseconds between updates                            |
//! | 28     | 4    | reserved | zero                                                         |
//! | 32     | 8    | ramp     | f64, units per second (0 = instant)                          |
//!
//! # Request (24 bytes, offset 40)
//! | offset | size | field    | encoding                                                     |
//! |--------|------|----------|--------------------------------------------------------------|
//! | 0      | 4    | seq      | u32, chosen by the client; the reply echoes it               |
//! | 4      | 2    | op       | u16: 1 set, 2 get, 3 reset                                   |
//! | 6      | 2    | channel  | u16 (ignored by reset)                                       |
//! | 8      | 8    | value    | f64, the new setpoint (set only; 0 otherwise)                |
//! | 16     | 4    | pid      | i32, the client's pid (for the trace and for `detach --stat`) |
//! | 20     | 4    | reserved | zero                                                         |
//!
//! # Reply (32 bytes, offset 64)
//! | offset | size | field    | encoding                                                     |
//! |--------|------|----------|--------------------------------------------------------------|
//! | 0      | 4    | seq      | u32, the request's seq                                       |
//! | 4      | 4    | result   | u32: 0 ok, 1 no such channel, 2 bad value, 3 bad request     |
//! | 8      | 24   | channel  | the channel after the command, as in the channel block below (its first 24 bytes); zero for reset and errors |
//!
//! # Channel (32 bytes each, offset 96 + 32·i)
//! | offset | size | field    | encoding                                                     |
//! |--------|------|----------|--------------------------------------------------------------|
//! | 0      | 8    | setpoint | f64, where the channel is going                              |
//! | 8      | 8    | readback | f64, where it is now                                         |
//! | 16     | 4    | status   | u32: 0 ok (readback = setpoint), 1 ramping                   |
//! | 20     | 4    | reserved | zero                                                         |
//! | 24     | 8    | update   | u64, the header's update counter when the device wrote it    |

use super::{DecodeError, Reader, Writer};
use crate::params::DEVICE_MAX_CHANNELS;

/// The first four bytes of every device segment.
pub const MAGIC: &[u8; 4] = b"IDEV";
/// The layout version in this file.
pub const VERSION: u16 = 1;

/// Sizes and offsets of the four parts, as the picture above shows them.
pub const HEADER_LEN: usize = 40;
pub const REQUEST_OFFSET: usize = HEADER_LEN;
pub const REQUEST_LEN: usize = 24;
pub const REPLY_OFFSET: usize = REQUEST_OFFSET + REQUEST_LEN;
pub const REPLY_LEN: usize = 32;
pub const CHANNELS_OFFSET: usize = REPLY_OFFSET + REPLY_LEN;
pub const CHANNEL_LEN: usize = 32;
/// Offset of the header's status word, which `detach` overwrites on its own.
pub const STATUS_OFFSET: usize = 8;

/// The device status word (header offset 8).
pub const STATUS_STARTING: u32 = 0;
pub const STATUS_RUNNING: u32 = 1;
pub const STATUS_STOPPED: u32 = 2;
pub const STATUS_REMOVED: u32 = 3;

/// The size of a segment with `channels` channels.
pub const fn segment_len(channels: u16) -> usize {
    CHANNELS_OFFSET + CHANNEL_LEN * channels as usize
}

/// Where channel `i`'s block starts.
pub const fn channel_offset(i: u16) -> usize {
    CHANNELS_OFFSET + CHANNEL_LEN * i as usize
}

/// What the device is doing, from the header's status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Created, not yet serving (the semaphores may not be initialised yet).
    Starting,
    /// Serving commands and updating the registers.
    Running,
    /// Stopped by a signal; its objects are being removed.
    Stopped,
    /// `detach` marked the objects for removal.
    Removed,
}

impl DeviceStatus {
    fn code(self) -> u32 {
        match self {
            DeviceStatus::Starting => STATUS_STARTING,
            DeviceStatus::Running => STATUS_RUNNING,
            DeviceStatus::Stopped => STATUS_STOPPED,
            DeviceStatus::Removed => STATUS_REMOVED,
        }
    }

    fn from_code(c: u32) -> Result<DeviceStatus, DecodeError> {
        Ok(match c {
            STATUS_STARTING => DeviceStatus::Starting,
            STATUS_RUNNING => DeviceStatus::Running,
            STATUS_STOPPED => DeviceStatus::Stopped,
            STATUS_REMOVED => DeviceStatus::Removed,
            _ => return Err(DecodeError::Invalid(format!("unknown device status {c}"))),
        })
    }

    /// The word `detach --stat` prints.
    pub fn name(self) -> &'static str {
        match self {
            DeviceStatus::Starting => "starting",
            DeviceStatus::Running => "running",
            DeviceStatus::Stopped => "stopped",
            DeviceStatus::Removed => "removed",
        }
    }
}

/// The header at offset 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    pub channels: u16,
    pub status: DeviceStatus,
    pub pid: i32,
    pub update: u64,
    pub period_ms: u32,
    pub ramp: f64,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        w.bytes(MAGIC)
            .u16(VERSION)
            .u16(self.channels)
            .u32(self.status.code())
            .i32(self.pid)
            .u64(self.update)
            .u32(self.period_ms)
            .u32(0)
            .u64(self.ramp.to_bits());
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return Err(DecodeError::Invalid(format!(
                "device layout version {version}, this program knows {VERSION}"
            )));
        }
        let channels = r.u16()?;
        if channels == 0 || channels > DEVICE_MAX_CHANNELS {
            return Err(DecodeError::Invalid(format!(
                "{channels} channels (1..={DEVICE_MAX_CHANNELS} allowed)"
            )));
        }
        let status = DeviceStatus::from_code(r.u32()?)?;
        let pid = r.i32()?;
        let update = r.u64()?;
        let period_ms = r.u32()?;
        let _reserved = r.u32()?;
        let ramp = f64::from_bits(r.u64()?);
        if !(ramp.is_finite() && ramp >= 0.0) {
            return Err(DecodeError::Invalid(format!("ramp rate {ramp}")));
        }
        Ok(Header {
            channels,
            status,
            pid,
            update,
            period_ms,
            ramp,
        })
    }
}

/// Decodes only the status word at [`STATUS_OFFSET`] (what `detach` and the watchers look at).
pub fn decode_status(word: [u8; 4]) -> Result<DeviceStatus, DecodeError> {
    DeviceStatus::from_code(u32::from_le_bytes(word))
}

/// Encodes only the status word, for writing at [`STATUS_OFFSET`].
pub fn encode_status(status: DeviceStatus) -> [u8; 4] {
    status.code().to_le_bytes()
}

/// A channel's own status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelStatus {
    /// The readback has reached the setpoint.
    Ok,
    /// The readback is still moving toward the setpoint.
    Ramping,
}

impl ChannelStatus {
    /// The word `device_client` prints after `status=`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelStatus::Ok => "ok",
            ChannelStatus::Ramping => "ramping",
        }
    }
}

/// One channel's registers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Channel {
    pub setpoint: f64,
    pub readback: f64,
    pub status: ChannelStatus,
    /// The header's update counter when the device last wrote this block.
    pub update: u64,
}

impl Channel {
    /// A channel at rest at 0.
    pub const ZERO: Channel = Channel {
        setpoint: 0.0,
        readback: 0.0,
        status: ChannelStatus::Ok,
        update: 0,
    };

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CHANNEL_LEN);
        self.put(&mut w);
        w.u64(self.update);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Channel, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut ch = Channel::take(&mut r)?;
        ch.update = r.u64()?;
        Ok(ch)
    }

    /// The first 24 bytes, shared with the reply.
    fn put(&self, w: &mut Writer) {
        let code = match self.status {
            ChannelStatus::Ok => 0,
            ChannelStatus::Ramping => 1,
        };
        w.u64(self.setpoint.to_bits())
            .u64(self.readback.to_bits())
            .u32(code)
            .u32(0);
    }

    fn take(r: &mut Reader<'_>) -> Result<Channel, DecodeError> {
        let setpoint = f64::from_bits(r.u64()?);
        let readback = f64::from_bits(r.u64()?);
        let status = match r.u32()? {
            0 => ChannelStatus::Ok,
            1 => ChannelStatus::Ramping,
            c => return Err(DecodeError::Invalid(format!("unknown channel status {c}"))),
        };
        let _reserved = r.u32()?;
        if !setpoint.is_finite() || !readback.is_finite() {
            return Err(DecodeError::Invalid("a channel value is not finite".into()));
        }
        Ok(Channel {
            setpoint,
            readback,
            status,
            update: 0,
        })
    }
}

/// A command, as the client writes it into the request block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Set { channel: u16, value: f64 },
    Get { channel: u16 },
    Reset,
}

/// The request block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    pub seq: u32,
    pub op: Op,
    pub pid: i32,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let (code, channel, value) = match self.op {
            Op::Set { channel, value } => (1u16, channel, value),
            Op::Get { channel } => (2, channel, 0.0),
            Op::Reset => (3, 0, 0.0),
        };
        let mut w = Writer::with_capacity(REQUEST_LEN);
        w.u32(self.seq)
            .u16(code)
            .u16(channel)
            .u64(value.to_bits())
            .i32(self.pid)
            .u32(0);
        w.finish()
    }

    /// A request whose op is unknown is `Invalid`: the device answers it with `BadRequest`.
    /// The value is *not* checked here: that is the device's decision ([`ResultCode::BadValue`]).
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(bytes);
        let seq = r.u32()?;
        let code = r.u16()?;
        let channel = r.u16()?;
        let value = f64::from_bits(r.u64()?);
        let pid = r.i32()?;
        let _reserved = r.u32()?;
        let op = match code {
            1 => Op::Set { channel, value },
            2 => Op::Get { channel },
            3 => Op::Reset,
            c => return Err(DecodeError::Invalid(format!("unknown command op {c}"))),
        };
        Ok(Request { seq, op, pid })
    }

    /// The seq of a request that may not decode: what the device echoes when it answers a
    /// garbled request with `BadRequest`, so that the client recognises its reply.
    pub fn seq_of(bytes: &[u8]) -> u32 {
        Reader::new(bytes).u32().unwrap_or(0)
    }
}

/// The outcome of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    Ok,
    /// The channel number is not below the header's channel count.
    NoSuchChannel,
    /// The value is not finite or beyond [`crate::params::DEVICE_VALUE_LIMIT`].
    BadValue,
    /// The request block could not be decoded.
    BadRequest,
}

/// The reply block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reply {
    pub seq: u32,
    pub result: ResultCode,
    /// The channel after the command (`Channel::ZERO` for reset and for errors; its `update`
    /// field is not carried and reads 0).
    pub channel: Channel,
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let code = match self.result {
            ResultCode::Ok => 0u32,
            ResultCode::NoSuchChannel => 1,
            ResultCode::BadValue => 2,
            ResultCode::BadRequest => 3,
        };
        let mut w = Writer::with_capacity(REPLY_LEN);
        w.u32(self.seq).u32(code);
        self.channel.put(&mut w);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader::new(bytes);
        let seq = r.u32()?;
        let result = match r.u32()? {
            0 => ResultCode::Ok,
            1 => ResultCode::NoSuchChannel,
            2 => ResultCode::BadValue,
            3 => ResultCode::BadRequest,
            c => return Err(DecodeError::Invalid(format!("unknown result code {c}"))),
        };
        let channel = Channel::take(&mut r)?;
        Ok(Reply {
            seq,
            result,
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_tables() {
        let h = Header {
            channels: 4,
            status: DeviceStatus::Running,
            pid: 42,
            update: 7,
            period_ms: 100,
            ramp: 1.5,
        };
        let b = h.encode();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(&b[..4], b"IDEV");
        assert_eq!(&b[STATUS_OFFSET..STATUS_OFFSET + 4], &1u32.to_le_bytes());
        assert_eq!(Header::decode(&b).unwrap(), h);
        let c = Channel {
            setpoint: 5.0,
            readback: 2.5,
            status: ChannelStatus::Ramping,
            update: 9,
        };
        assert_eq!(c.encode().len(), CHANNEL_LEN);
        assert_eq!(Channel::decode(&c.encode()).unwrap(), c);
        let q = Request {
            seq: 3,
            op: Op::Set {
                channel: 2,
                value: -1.25,
            },
            pid: 77,
        };
        assert_eq!(q.encode().len(), REQUEST_LEN);
        assert_eq!(Request::decode(&q.encode()).unwrap(), q);
        let p = Reply {
            seq: 3,
            result: ResultCode::Ok,
            channel: Channel { update: 0, ..c },
        };
        assert_eq!(p.encode().len(), REPLY_LEN);
        assert_eq!(Reply::decode(&p.encode()).unwrap(), p);
        assert_eq!(segment_len(4), 96 + 128);
        assert_eq!(channel_offset(1), 128);
    }

    #[test]
    fn short_is_need_more_and_garbage_is_invalid() {
        let h = Header {
            channels: 1,
            status: DeviceStatus::Starting,
            pid: 1,
            update: 0,
            period_ms: 1,
            ramp: 0.0,
        }
        .encode();
        assert_eq!(Header::decode(&h[..10]), Err(DecodeError::NeedMore(2)));
        let mut bad = h.clone();
        bad[0] = b'X';
        assert!(matches!(Header::decode(&bad), Err(DecodeError::Invalid(_))));
        let mut zero = h.clone();
        zero[6] = 0;
        assert!(matches!(
            Header::decode(&zero),
            Err(DecodeError::Invalid(_))
        ));
        let mut q = Request {
            seq: 1,
            op: Op::Reset,
            pid: 1,
        }
        .encode();
        q[4] = 9;
        assert!(matches!(Request::decode(&q), Err(DecodeError::Invalid(_))));
        assert!(decode_status([9, 0, 0, 0]).is_err());
        assert_eq!(
            decode_status(encode_status(DeviceStatus::Removed)).unwrap(),
            DeviceStatus::Removed
        );
        let mut c = Channel::ZERO.encode();
        c[16] = 5;
        assert!(matches!(Channel::decode(&c), Err(DecodeError::Invalid(_))));
    }
}

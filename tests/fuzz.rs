//! Every decoder in `src/wire/` against at least a million generated inputs per run.
//!
//! Each decoder reads bytes that another process wrote: a client on TCP (dipc), a program in
//! the same shared memory (device, xfr, shmem), a program on the same queue (rshm). Whatever
//! those bytes are, a decoder must return `Ok`, `NeedMore` or `Invalid`, and never panic.
//! Where a decoder has an encoder, a decoded message must also encode back to bytes that
//! decode to the same message (so "decodes" really means "understood").
//!
//! The inputs, per decoder:
//! - valid messages built with the wire module's own encoders, sent as they are;
//! - the same messages mutated: bit flips, a byte set to a special value (0, 0xff, '\n', a
//!   digit, a space), a little-endian word overwritten with an edge value (0, 1, MAX, MAX-1,
//!   2^31), truncation, extension, bytes inserted or deleted, two messages spliced;
//! - random bytes of random lengths, sometimes behind the right magic.
//!
//! The PRNG is xorshift64* seeded through splitmix64 (std only). The run's seed is printed;
//! `IPCLAB_FUZZ_SEED=<seed> cargo test --test fuzz -- --nocapture` replays the same inputs, and
//! a panicking input is printed in hex with the seed that made it. Each test prints one line,
//! `fuzz DECODER: N inputs, 0 panics, seed S`. The work is split over [`THREADS`] threads
//! whose seeds derive from the run's seed, so a seed means the same inputs on any machine.
//!
//! RSHM's peer frames have their own, deeper fuzz (with an allocation bound) in
//! `tests/rshm_fuzz.rs`; here they get the same million mutated and random inputs as the rest.
//!
//! Last, the live fuzz: a real `dipc` server gets the same kinds of hostile bytes on thousands
//! of connections, from several threads at once, while a bystander client keeps writing and
//! reading its own mailbox and must get every answer right.

mod common;
use common::rng::{rshm_request, splitmix, Rng};

use ipclab::wire::{self, DecodeError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Inputs per decoder per run: the issue asks for at least a million.
const INPUTS: usize = 1_000_000;
/// Fixed, so that a seed means the same inputs everywhere.
const THREADS: usize = 2;

// ---------------------------------------------------------------------------------------------
// The PRNG (tests/common/rng.rs), what this file adds to it, and the seed.

impl Rng {
    /// A finite, infinite or NaN f64.
    fn float(&mut self) -> f64 {
        match self.below(6) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => f64::from_bits(self.next()),
            _ => (self.next() % 20_000) as f64 / 10.0 - 1000.0,
        }
    }
    /// Printable ASCII, sometimes with a multi-byte character.
    fn text(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        let mut s = String::new();
        while s.len() < n {
            match self.below(10) {
                0 => s.push('é'),
                _ => s.push((b' ' + self.below(95) as u8) as char),
            }
        }
        while s.len() > max {
            s.pop();
        }
        s
    }
}

/// The run's seed: `IPCLAB_FUZZ_SEED` (decimal or 0x-hex) to replay, else the clock and pid.
/// One seed for the whole run, shared by every test in this file.
fn run_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        if let Ok(s) = std::env::var("IPCLAB_FUZZ_SEED") {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            return parsed.unwrap_or_else(|_| panic!("IPCLAB_FUZZ_SEED='{s}' is not a number"));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        splitmix(nanos ^ (u64::from(std::process::id()) << 32))
    })
}

// ---------------------------------------------------------------------------------------------
// Mutations, shared by every decoder.

/// Applies one to three mutations to `b`; `other` is another valid message for splicing.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(9) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                const SPECIAL: [u8; 10] = [0, 0xff, b'\n', b'\r', b' ', b'0', b'9', b'w', 0x7f, 1];
                let i = rng.below(b.len());
                b[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            2 if b.len() >= 4 => {
                // A little-endian field overwritten with an edge value (at a 4-byte boundary
                // most of the time, where this crate's fields are).
                let width = if rng.one_in(2) { 4 } else { 8.min(b.len()) };
                let mut at = rng.below(b.len() - width + 1);
                if !rng.one_in(4) {
                    at -= at % 4;
                }
                let v = rng.edge().to_le_bytes();
                b[at..at + width].copy_from_slice(&v[..width]);
            }
            3 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            4 => {
                let n = rng.below(64);
                let tail = rng.bytes(n);
                b.extend_from_slice(&tail);
            }
            5 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(8);
                let ins = rng.bytes(n);
                b.splice(at..at, ins);
            }
            6 if !b.is_empty() => {
                let at = rng.below(b.len());
                let n = (1 + rng.below(8)).min(b.len() - at);
                b.drain(at..at + n);
            }
            7 => {
                let cut = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            _ => {
                // A decimal number rewritten: where text protocols break.
                let digits = rng.edge().to_string();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, digits.into_bytes());
            }
        }
    }
}

/// One input: a valid message (1 in 8), a mutated one (5 in 8), or random bytes (2 in 8),
/// half of them behind `magic`.
fn input(rng: &mut Rng, valid: &impl Fn(&mut Rng) -> Vec<u8>, magic: &[u8]) -> Vec<u8> {
    match rng.below(8) {
        0 => valid(rng),
        1..=5 => {
            let mut b = valid(rng);
            let other = valid(rng);
            mutate(rng, &mut b, &other);
            b
        }
        _ => {
            let n = match rng.below(8) {
                0 => rng.below(4096),
                _ => rng.below(160),
            };
            let mut b = if rng.one_in(2) {
                magic.to_vec()
            } else {
                Vec::new()
            };
            b.extend(rng.bytes(n));
            b
        }
    }
}

/// Runs `INPUTS` inputs of `valid`'s kind through `check`, on [`THREADS`] threads, and prints
/// the result line. `check` panics (as an assertion) when a decoder breaks a rule.
fn fuzz(
    name: &str,
    magic: &[u8],
    valid: impl Fn(&mut Rng) -> Vec<u8> + Sync,
    check: impl Fn(&[u8]) + Sync,
) {
    let seed = run_seed();
    let panics = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let name_seed = name.bytes().fold(0u64, |h, b| splitmix(h ^ u64::from(b)));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (valid, check, panics, done) = (&valid, &check, &panics, &done);
            s.spawn(move || {
                let mut rng = Rng::new(seed ^ name_seed ^ splitmix(t as u64 + 1));
                for _ in 0..INPUTS / THREADS {
                    let bytes = input(&mut rng, valid, magic);
                    let r = catch_unwind(AssertUnwindSafe(|| check(&bytes)));
                    if r.is_err() {
                        // Report the first few; the count fails the test at the end.
                        if panics.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!(
                                "fuzz {name}: panic on {} bytes {:02x?} (IPCLAB_FUZZ_SEED={seed})",
                                bytes.len(),
                                bytes
                            );
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (n, p) = (done.into_inner(), panics.into_inner());
    println!("fuzz {name}: {n} inputs, {p} panics, seed {seed}");
    assert!(n >= 1_000_000, "{name}: only {n} inputs");
    assert_eq!(
        p, 0,
        "fuzz {name}: {p} panics; replay with IPCLAB_FUZZ_SEED={seed}"
    );
}

/// The rules for a decoder of a byte stream (it returns the bytes it used): a decoded message
/// used at most what it was given, and one that stays invalid with more bytes after it.
fn stream_rules<T>(bytes: &[u8], got: &Result<(T, usize), DecodeError>) {
    match got {
        Ok((_, used)) => assert!(*used > 0 && *used <= bytes.len(), "used {used}"),
        Err(DecodeError::NeedMore(n)) => assert!(*n > 0, "NeedMore(0)"),
        Err(DecodeError::Invalid(why)) => assert!(!why.is_empty()),
    }
}

// ---------------------------------------------------------------------------------------------
// dipc: the datagram (both ways), the segment header, a slot's length, the start-up report.

fn dipc_request(rng: &mut Rng) -> Vec<u8> {
    use wire::dipc::{encode_request, Mailbox, Request};
    let m = if rng.one_in(8) {
        Mailbox::Bad(rng.text(8).replace([' ', '\t', '\n'], "x"))
    } else {
        Mailbox::Number(rng.edge() % if rng.one_in(2) { 16 } else { u64::MAX })
    };
    let req = match rng.below(5) {
        0 => Request::Read(m),
        1 => Request::Write(m, rng.edge() % 2048),
        2 => Request::WriteLine(m),
        3 => Request::Quit,
        _ => Request::Bad(rng.text(20).replace('\n', " ")),
    };
    let mut out = Vec::new();
    encode_request(&req, &mut out);
    // Some data after it: what a client sends next.
    if rng.one_in(2) {
        let n = rng.below(40);
        out.extend(rng.bytes(n));
    }
    out
}

#[test]
fn dipc_requests() {
    use wire::dipc::{decode_request, encode_request, Request, LINE_MAX};
    fuzz("dipc::decode_request", b"w ", dipc_request, |b| {
        let got = decode_request(b);
        stream_rules(b, &got);
        match got {
            Ok((req, used)) => {
                assert!(used <= LINE_MAX);
                // A decoded request encodes to a line that decodes to the same request.
                if !matches!(req, Request::Bad(_)) {
                    let mut again = Vec::new();
                    encode_request(&req, &mut again);
                    let (req2, _) = decode_request(&again).expect("re-encoded request");
                    assert_eq!(req, req2);
                }
            }
            // No newline yet: only when fewer than LINE_MAX bytes came.
            Err(DecodeError::NeedMore(_)) => assert!(b.len() < LINE_MAX),
            Err(DecodeError::Invalid(_)) => {}
        }
    });
}

#[test]
fn dipc_replies() {
    use wire::dipc::{decode_reply, encode_reply, Reply};
    let valid = |rng: &mut Rng| {
        let reply = match rng.below(3) {
            0 => Reply::Ok(rng.edge()),
            1 => Reply::Bye,
            _ => Reply::Err(rng.text(80)),
        };
        let mut out = Vec::new();
        encode_reply(&reply, &mut out);
        out
    };
    fuzz("dipc::decode_reply", b"ok ", valid, |b| {
        let got = decode_reply(b);
        stream_rules(b, &got);
        if let Ok((reply, _)) = got {
            if !matches!(reply, Reply::Err(_)) {
                let mut again = Vec::new();
                encode_reply(&reply, &mut again);
                assert_eq!(decode_reply(&again).map(|r| r.0), Ok(reply));
            }
        }
    });
}

#[test]
fn dipc_segment_headers() {
    use wire::dipc::{SegmentHeader, MAGIC};
    let valid = |rng: &mut Rng| {
        SegmentHeader {
            port: rng.u32() as u16,
            mailboxes: 1 + rng.below(10_000) as u32,
            creator_pid: rng.u32() as i32,
            mailbox_size: rng.edge() >> rng.below(64),
            packet_size: rng.edge(),
        }
        .encode()
    };
    fuzz("dipc::SegmentHeader::decode", MAGIC, valid, |b| {
        if let Ok(h) = SegmentHeader::decode(b) {
            assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
            // What the server computes from a decoded header must not overflow or panic.
            let _ = SegmentHeader::segment_size(h.mailboxes, h.mailbox_size);
            let _ = h.max_message();
        }
    });
}

#[test]
fn dipc_slot_lengths() {
    use wire::dipc::{decode_slot_len, encode_slot_len};
    let valid = |rng: &mut Rng| {
        let mut b = encode_slot_len(rng.edge() % 4096).to_vec();
        b.extend((rng.edge() >> rng.below(64)).to_le_bytes());
        b
    };
    fuzz("dipc::decode_slot_len", b"", valid, |b| {
        if b.len() < 16 {
            return;
        }
        let len: [u8; 8] = b[..8].try_into().unwrap();
        let size = u64::from_le_bytes(b[8..16].try_into().unwrap());
        match decode_slot_len(len, size) {
            Ok(n) => assert!(n <= size),
            Err(e) => assert!(matches!(e, DecodeError::Invalid(_))),
        }
    });
}

#[test]
fn dipc_start_reports() {
    use wire::dipc::StartReport;
    let valid = |rng: &mut Rng| {
        match rng.below(3) {
            0 => StartReport::Notice(rng.text(60)),
            1 => StartReport::Ready {
                pid: rng.u32() as i32,
            },
            _ => StartReport::Failed {
                code: rng.u32() as u8,
                message: rng.text(60),
            },
        }
        .encode()
    };
    fuzz("dipc::StartReport::decode", b"ready ", valid, |b| {
        let got = StartReport::decode(b);
        stream_rules(b, &got);
        // Encoding makes a text one line (a '\r' becomes a space): a decoded report encodes
        // to a line that decodes again, to a report of the same kind.
        if let Ok((r, _)) = got {
            let again = StartReport::decode(&r.encode())
                .expect("re-encoded report")
                .0;
            assert_eq!(std::mem::discriminant(&again), std::mem::discriminant(&r));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// device: the header, the status word, a channel, the request and reply blocks.

#[test]
fn device_headers() {
    use wire::device::{DeviceStatus, Header, MAGIC};
    let valid = |rng: &mut Rng| {
        let status = [
            DeviceStatus::Starting,
            DeviceStatus::Running,
            DeviceStatus::Stopped,
            DeviceStatus::Removed,
        ][rng.below(4)];
        Header {
            channels: 1 + rng.below(64) as u16,
            status,
            pid: rng.u32() as i32,
            update: rng.edge(),
            period_ms: rng.u32(),
            ramp: rng.float().abs(),
        }
        .encode()
    };
    fuzz("device::Header::decode", MAGIC, valid, |b| {
        if let Ok(h) = Header::decode(b) {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
            let _ = wire::device::segment_len(h.channels);
        }
        if b.len() >= 12 {
            let word: [u8; 4] = b[8..12].try_into().unwrap();
            if let Ok(s) = wire::device::decode_status(word) {
                assert_eq!(wire::device::encode_status(s), word);
            }
        }
    });
}

#[test]
fn device_channels() {
    use wire::device::{Channel, ChannelStatus};
    let valid = |rng: &mut Rng| {
        Channel {
            setpoint: rng.float(),
            readback: rng.float(),
            status: if rng.one_in(2) {
                ChannelStatus::Ok
            } else {
                ChannelStatus::Ramping
            },
            update: rng.edge(),
        }
        .encode()
    };
    fuzz("device::Channel::decode", b"", valid, |b| {
        if let Ok(c) = Channel::decode(b) {
            assert!(c.setpoint.is_finite() && c.readback.is_finite());
            assert_eq!(Channel::decode(&c.encode()), Ok(c));
        }
    });
}

#[test]
fn device_requests() {
    use wire::device::{Op, Request};
    let valid = |rng: &mut Rng| {
        let channel = rng.edge() as u16;
        let op = match rng.below(3) {
            0 => Op::Set {
                channel,
                value: rng.float(),
            },
            1 => Op::Get { channel },
            _ => Op::Reset,
        };
        Request {
            seq: rng.u32(),
            op,
            pid: rng.u32() as i32,
        }
        .encode()
    };
    fuzz("device::Request::decode", b"", valid, |b| {
        let seq = Request::seq_of(b);
        if let Ok(r) = Request::decode(b) {
            assert_eq!(r.seq, seq);
            // NaN values do not compare equal: compare the bytes instead.
            assert_eq!(
                Request::decode(&r.encode()).map(|x| x.encode()),
                Ok(r.encode())
            );
        }
    });
}

#[test]
fn device_replies() {
    use wire::device::{Channel, ChannelStatus, Reply, ResultCode};
    let valid = |rng: &mut Rng| {
        let result = [
            ResultCode::Ok,
            ResultCode::NoSuchChannel,
            ResultCode::BadValue,
            ResultCode::BadRequest,
        ][rng.below(4)];
        Reply {
            seq: rng.u32(),
            result,
            channel: Channel {
                setpoint: rng.float(),
                readback: rng.float(),
                status: ChannelStatus::Ramping,
                update: 0,
            },
        }
        .encode()
    };
    fuzz("device::Reply::decode", b"", valid, |b| {
        if let Ok(r) = Reply::decode(b) {
            assert_eq!(Reply::decode(&r.encode()), Ok(r));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// xfr: the segment header (with the checks a reader runs on it) and the slot descriptors.

#[test]
fn xfr_headers() {
    use wire::xfr::{Header, MAGIC};
    let valid = |rng: &mut Rng| {
        let h = if rng.one_in(2) {
            let cap = 1 + rng.below(1 << 20) as u32;
            Header::message(
                rng.u32() as i32,
                rng.u32() as i32,
                cap,
                rng.below(cap as usize + 1) as u64,
            )
        } else {
            Header::stream(
                rng.u32() as i32,
                rng.u32() as i32,
                1 + rng.below(1024) as u32,
                1 + rng.u32() % (1 << 24),
            )
        };
        h.encode().to_vec()
    };
    fuzz("xfr::Header::decode", MAGIC, valid, |b| {
        if let Ok(h) = Header::decode(b) {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
            // A reader computes these from whatever it decoded: none may overflow.
            let _ = h.segment_len();
            let _ = h.desc_offset(h.slots - 1);
            let _ = h.slot_offset(h.slots - 1);
        }
    });
}

#[test]
fn xfr_slot_descriptors() {
    use wire::xfr::{Header, SlotDesc};
    let valid = |rng: &mut Rng| {
        let mut b = SlotDesc {
            seq: rng.edge() as u32,
            len: rng.edge() as u32,
        }
        .encode()
        .to_vec();
        b.extend((rng.edge() as u32).to_le_bytes());
        b
    };
    let h = Header::stream(1, 1, 8, 4096);
    fuzz("xfr::SlotDesc::decode", b"", valid, |b| {
        if let Ok(d) = SlotDesc::decode(b) {
            assert_eq!(SlotDesc::decode(&d.encode()), Ok(d));
            let want = b
                .get(8..12)
                .map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap()));
            if h.check_slot(d, want).is_ok() {
                assert!(d.seq == want && d.len <= h.slot_size);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// shmem: the torn-read stamp and the example server's record.

#[test]
fn shmem_stamps() {
    use wire::shmem::Stamp;
    let valid = |rng: &mut Rng| {
        let mut buf = vec![0u8; 8 + rng.below(200)];
        Stamp {
            writer: rng.u32(),
            seq: rng.u32(),
        }
        .encode(&mut buf);
        buf
    };
    fuzz("shmem::Stamp::decode", b"", valid, |b| {
        if let Ok(s) = Stamp::decode(b) {
            let mut again = vec![0u8; b.len()];
            s.encode(&mut again);
            assert_eq!(again, b, "a stamp decodes only from its own pattern");
        }
    });
}

#[test]
fn shmem_records() {
    use wire::shmem::{Record, RECORD_MAGIC, RECORD_TEXT_MAX};
    let valid = |rng: &mut Rng| {
        Record {
            seq: rng.edge(),
            time_ms: rng.edge(),
            pid: rng.u32(),
            text: rng.text(RECORD_TEXT_MAX),
            last: rng.one_in(2),
        }
        .encode()
        .expect("text within the limit")
    };
    fuzz("shmem::Record::decode", RECORD_MAGIC, valid, |b| {
        if let Ok(r) = Record::decode(b) {
            let again = r.encode().expect("a decoded record encodes");
            assert_eq!(Record::decode(&again), Ok(r));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// rshm: the queue request and reply (a million each here), and the peer frames.

#[test]
fn rshm_queue_requests() {
    use wire::rshm::{Request, REQUEST_MAGIC};
    fuzz(
        "rshm::Request::decode",
        REQUEST_MAGIC,
        |rng| rshm_request(rng, Rng::edge).encode(),
        |b| {
            if let Ok(r) = Request::decode(b) {
                assert_eq!(Request::decode(&r.encode()), Ok(r));
            }
        },
    );
}

fn addr(rng: &mut Rng) -> std::net::SocketAddrV4 {
    std::net::SocketAddrV4::new(rng.u32().into(), rng.u32() as u16)
}

#[test]
fn rshm_queue_replies() {
    use wire::rshm::{GateRef, LsEntry, LsPeer, Reply, REPLY_MAGIC};
    let valid = |rng: &mut Rng| {
        let req = rshm_request(rng, Rng::edge);
        let mut reply = Reply::to(&req);
        reply.status = if rng.one_in(2) { 0 } else { rng.u32() as i32 };
        reply.rshmid = rng.u32() as i32;
        reply.shmid = rng.u32() as i32;
        reply.size = rng.edge();
        reply.changes = rng.edge();
        reply.node = rng.u32();
        reply.text = rng.text(40);
        reply.gate = rng.one_in(2).then(|| GateRef {
            semid: (rng.u32() >> 1) as i32,
            sem: rng.u32() as u16,
            value: rng.u32() as u16 & 0x7fff,
        });
        for _ in 0..rng.below(3) {
            reply.entries.push(LsEntry {
                rshmid: rng.u32() as i32,
                key: rng.u32() as i32,
                size: rng.edge(),
                owner: addr(rng),
                marked: rng.one_in(2),
                attaches: rng.u32(),
                shmid: rng.u32() as i32,
                version: rng.edge(),
                sent: rng.edge(),
            });
        }
        for _ in 0..rng.below(3) {
            reply.peers.push(LsPeer {
                addr: addr(rng),
                up: rng.one_in(2),
            });
        }
        reply.encode()
    };
    fuzz("rshm::Reply::decode", REPLY_MAGIC, valid, |b| {
        if let Ok(r) = Reply::decode(b) {
            assert_eq!(Reply::decode(&r.encode()), Ok(r));
        }
    });
}

#[test]
fn rshm_peer_frames() {
    use wire::rshm::{Entry, Frame, Hello, Run, FRAME_HEADER_LEN, FRAME_MAGIC};
    let valid = |rng: &mut Rng| {
        let rshmid = 1 + (rng.u32() >> 1) as i32;
        let entry = |rng: &mut Rng| Entry {
            rshmid,
            key: rng.u32() as i32,
            size: 1 + rng.below(4096) as u64,
            owner: addr(rng),
            marked: rng.one_in(2),
            version: rng.edge(),
            counts: (0..rng.below(3)).map(|_| (addr(rng), rng.u32())).collect(),
        };
        let frame = match rng.below(11) {
            8 | 9 => {
                let hello = Hello {
                    node: addr(rng),
                    node_id: rng.u32(),
                    entries: (0..rng.below(4)).map(|_| entry(rng)).collect(),
                };
                if rng.one_in(2) {
                    Frame::Hello(hello)
                } else {
                    Frame::HelloReply(hello)
                }
            }
            10 => Frame::State {
                rshmid,
                last: rng.one_in(2),
                runs: stamped_runs(rng),
            },
            0 => Frame::Bye,
            1 => Frame::Rmid { rshmid },
            2 => Frame::Mark { rshmid },
            3 => Frame::Destroy { rshmid },
            4 => Frame::Count {
                rshmid,
                node: addr(rng),
                count: rng.u32(),
            },
            5 => Frame::Ack {
                status: rng.u32() as i32,
                text: rng.text(40),
                winner: rng.one_in(2).then(|| entry(rng)),
            },
            6 => Frame::New(entry(rng)),
            _ => Frame::Update {
                rshmid,
                version: rng.edge(),
                origin: addr(rng),
                part: rng.below(3) as u32,
                more: rng.one_in(2),
                runs: (0..1 + rng.below(3))
                    .map(|i| {
                        let n = 1 + rng.below(32);
                        Run {
                            offset: i as u64 * 64,
                            data: rng.bytes(n),
                        }
                    })
                    .collect(),
            },
        };
        frame.encode(rng.u32())
    };
    fuzz("rshm::Frame::decode", FRAME_MAGIC, valid, |b| {
        let _ = Frame::decode_header(&b[..b.len().min(FRAME_HEADER_LEN)]);
        match Frame::decode(b) {
            Ok((seq, f, used)) => {
                assert!(used <= b.len());
                let again = f.encode(seq);
                assert_eq!(Frame::decode(&again).map(|x| x.1), Ok(f));
            }
            Err(DecodeError::NeedMore(n)) => assert!(n > 0),
            Err(DecodeError::Invalid(_)) => {}
        }
    });
}

/// One to three runs of a STATE, in order, word-aligned, each with its own stamp.
fn stamped_runs(rng: &mut Rng) -> Vec<wire::rshm::StampedRun> {
    (0..1 + rng.below(3))
        .map(|i| wire::rshm::StampedRun {
            version: rng.edge(),
            origin: addr(rng),
            run: wire::rshm::Run {
                offset: i as u64 * 64,
                data: {
                    let n = 1 + rng.below(32);
                    rng.bytes(n)
                },
            },
        })
        .collect()
}

/// The first bytes a peer sends on TCP, before it has proved anything: the challenge, the
/// answer and the proof of the authentication exchange.
#[test]
fn rshm_auth_messages() {
    use wire::rshm::{Auth, AuthKind, AUTH_MAGIC, AUTH_NONCE_LEN};
    let valid = |rng: &mut Rng| {
        let kind = [AuthKind::Challenge, AuthKind::Answer, AuthKind::Proof][rng.below(3)];
        let mut nonce = [0u8; AUTH_NONCE_LEN];
        let mut mac = [0u8; AUTH_NONCE_LEN];
        nonce.copy_from_slice(&rng.bytes(AUTH_NONCE_LEN));
        mac.copy_from_slice(&rng.bytes(AUTH_NONCE_LEN));
        Auth {
            kind,
            nonce,
            mac,
            dialer: addr(rng),
            acceptor: addr(rng),
        }
        .encode()
    };
    fuzz(
        "rshm::Auth::decode",
        AUTH_MAGIC,
        valid,
        |b| match Auth::decode(b) {
            Ok(a) => assert_eq!(a.encode(), b, "an accepted message is exactly its encoding"),
            Err(DecodeError::NeedMore(n)) => assert!(n > 0),
            Err(DecodeError::Invalid(why)) => assert!(!why.is_empty()),
        },
    );
}

/// A STATE read in place, as a late joiner merges it: it must agree with `Frame::decode`
/// on every input, and say `None` only for frames of another kind.
#[test]
fn rshm_state_frames_read_in_place() {
    use wire::rshm::{Frame, StateRef, FRAME_MAGIC};
    let valid = |rng: &mut Rng| {
        let frame = if rng.one_in(8) {
            Frame::Bye
        } else {
            Frame::State {
                rshmid: 1 + (rng.u32() >> 1) as i32,
                last: rng.one_in(2),
                runs: stamped_runs(rng),
            }
        };
        frame.encode(rng.u32())
    };
    fuzz("rshm::StateRef::decode", FRAME_MAGIC, valid, |b| {
        let whole = Frame::decode(b).map(|(seq, f, used)| (seq, f, &b[..used]));
        match (StateRef::decode(b), whole) {
            (Ok(Some(state)), Ok((seq, f @ Frame::State { .. }, bytes))) => {
                assert_eq!(state.encode(seq), bytes, "re-encodes to the same bytes");
                assert_eq!(state.to_string(), f.to_string());
            }
            // Another kind of frame (byte 6), good or bad: StateRef leaves it to Frame.
            (Ok(None), whole) => {
                assert_ne!(b[6], 11, "a STATE left to Frame::decode");
                assert!(!matches!(whole, Ok((_, Frame::State { .. }, _))));
            }
            (Err(DecodeError::NeedMore(n)), Err(DecodeError::NeedMore(m))) => {
                assert!(n > 0 && n == m)
            }
            (Err(DecodeError::Invalid(why)), Err(DecodeError::Invalid(_))) => {
                assert!(!why.is_empty())
            }
            (a, b) => panic!("StateRef says {a:?}, Frame says {b:?}"),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Live: hostile bytes on many connections to a real dipc, and a bystander served correctly.

/// Hostile connections per run, spread over [`LIVE_THREADS`] threads.
const LIVE_CONNECTIONS: usize = 10_000;
const LIVE_THREADS: usize = 4;

/// One hostile connection's bytes: a few requests, mutated or random, glued together. Every
/// digit '3' becomes '2', so that no request can name mailbox 3, the bystander's.
fn hostile(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(4) {
        out.extend(input(rng, &dipc_request, b"w "));
    }
    if rng.one_in(16) {
        // A long line, or a long run of bytes with no newline at all.
        let n = 100 + rng.below(4000);
        out.extend(rng.bytes(n));
    }
    for b in &mut out {
        if *b == b'3' {
            *b = b'2';
        }
    }
    out
}

#[test]
fn a_live_dipc_fed_hostile_bytes_keeps_serving_a_bystander() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let seed = run_seed();
    let s = common::Scratch::new("fuzz-dipc");
    let port = common::free_port(ipclab::dipc::keys::key_for_port);
    s.track_key(ipclab::dipc::keys::key_for_port(port));
    let mut c = common::cmd("dipc");
    c.args(["--foreground", "--idle-timeout", "5", "4", "1"])
        .arg(port.to_string())
        .arg("1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.dir().join("dipc.err")).unwrap());
    let pid = s.spawn(&mut c);
    let line = common::first_line_of(&s.dir().join("dipc.err"));
    assert!(line.starts_with("dipc: serving"), "{line}");

    let limit = Duration::from_secs(20);
    let connect = || {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(limit)).unwrap();
        c
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (rounds, sent) = std::thread::scope(|sc| {
        // The bystander: one connection, its own mailbox, every answer checked byte for byte.
        let bystander = sc.spawn(|| {
            let mut rng = Rng::new(seed ^ 0xb157);
            let mut conn = connect();
            conn.set_nodelay(true).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut rounds = 0u64;
            while !done.load(Ordering::Relaxed) || rounds < 100 {
                let n = 1 + rng.below(1024);
                let data = rng.bytes(n);
                let mut req = format!("w 3 {n}\n").into_bytes();
                req.extend_from_slice(&data);
                req.extend_from_slice(b"r 3\n");
                conn.write_all(&req).unwrap();
                let mut l = String::new();
                reader.read_line(&mut l).unwrap();
                assert_eq!(l, format!("ok {n}\n"), "write, seed {seed}");
                l.clear();
                reader.read_line(&mut l).unwrap();
                assert_eq!(l, format!("ok {n}\n"), "read, seed {seed}");
                let mut back = vec![0u8; n];
                reader.read_exact(&mut back).unwrap();
                assert!(
                    back == data,
                    "mailbox 3 changed under the bystander, seed {seed}"
                );
                rounds += 1;
            }
            rounds
        });
        let workers: Vec<_> = (0..LIVE_THREADS)
            .map(|t| {
                let connect = &connect;
                sc.spawn(move || {
                    let mut rng = Rng::new(seed ^ splitmix(0x11fe + t as u64));
                    let mut sent = 0usize;
                    for _ in 0..LIVE_CONNECTIONS / LIVE_THREADS {
                        let bytes = hostile(&mut rng);
                        let mut conn = connect();
                        // The server may close first (lost framing): that is an answer too.
                        let _ = conn.write_all(&bytes);
                        let _ = conn.shutdown(Shutdown::Write);
                        let start = Instant::now();
                        let mut sink = Vec::new();
                        // It must close, well before its idle timeout: it saw our end.
                        let r = conn.read_to_end(&mut sink);
                        assert!(
                            start.elapsed() < Duration::from_secs(4),
                            "no close after {:?} for {:02x?} ({r:?}, seed {seed})",
                            start.elapsed(),
                            bytes
                        );
                        sent += bytes.len();
                    }
                    sent
                })
            })
            .collect();
        let sent: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, Ordering::Relaxed);
        (bystander.join().unwrap(), sent)
    });
    // Still the same server, and it stops in order.
    assert!(ipclab::dipc::mailbox::is_dipc_server(pid as i32));
    ipclab::sys::process::kill(pid as i32, libc::SIGTERM).unwrap();
    let out = common::finish(s.take(pid), limit);
    assert!(out.status.success(), "{:?}", out.status);
    println!(
        "fuzz dipc live: {LIVE_CONNECTIONS} hostile connections, {sent} bytes, 0 panics, \
         bystander {rounds} round trips all correct, seed {seed}"
    );
    s.assert_no_leftovers();
}

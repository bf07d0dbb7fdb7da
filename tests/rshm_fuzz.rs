//! RSHM's decoders against a million hostile inputs: seeded random and mutated frames.
//!
//! A server reads frames from other machines and requests from any local program. Whatever
//! those bytes are, a decoder must answer exactly one of three things, and never panic:
//!
//! - `NeedMore(n)`: a valid beginning; read `n` more bytes (never beyond the largest frame);
//! - `Invalid(why)`: no continuation can make it valid (the server logs `why` and drops the
//!   peer); so appending bytes to an invalid input leaves it invalid;
//! - a message, which encodes back to bytes that decode to the same message.
//!
//! And what it allocates is in proportion to the bytes it was given, never to a length those
//! bytes claim: a 16-byte header that claims a 4 GiB body is `Invalid` before a byte of body is
//! allocated, and since no body may exceed `MAX_BODY`, no frame costs more than a few times
//! that. The test proves it by installing a counting global allocator
//! ([`ipclab::sys::alloc_probe`]) and measuring every decode.
//!
//! The inputs come from a small hand-written PRNG (xorshift64*, seeded through splitmix64),
//! so a failure can be replayed exactly: the seed is printed at the start, and
//! `IPCLAB_FUZZ_SEED=<seed> cargo test --test rshm_fuzz -- --nocapture` runs the same inputs
//! again. Each input is one of:
//!
//! - random bytes, sometimes behind a correct magic;
//! - a correct header in front of a random body (the body decoders get the garbage);
//! - a valid frame built with `wire::rshm`'s own encoders, sometimes sent as is;
//! - a valid frame mutated: bit flips, special values, truncation, extension, a lying length
//!   field (the header's or a count inside the body), bytes inserted or deleted, or spliced
//!   with another frame.
//!
//! The work is split over a fixed number of threads, each with its own seed derived from the
//! run's seed, so the same seed gives the same inputs on any machine.
//!
//! Last, the same kinds of frames go to a real `rshm_server` over TCP, from a connection that
//! passed the HELLO check: the server must drop each connection that sends garbage (with a log
//! line), never crash or panic, and keep serving its programs and their data.

mod common;
use common::rng::{rshm_request, splitmix, Rng};

use ipclab::params::{
    RSHM_LS_PAGE, RSHM_MAX_FRAME_DATA, RSHM_MAX_PEERS, RSHM_MAX_RUNS, RSHM_MAX_SEGMENT,
    RSHM_MAX_SEGMENTS,
};
use ipclab::sys::alloc_probe::{measure, CountingAlloc, Usage};
use ipclab::wire::rshm::{
    Entry, Frame, GateRef, Hello, LsEntry, LsPeer, Reply, Request, Run, StampedRun,
    FRAME_HEADER_LEN, FRAME_MAGIC, MAX_BODY, MAX_TEXT, REPLY_MAGIC, REQUEST_LEN, REQUEST_MAGIC,
    VERSION,
};
use ipclab::wire::DecodeError;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Peer frames per run: the issue asks for at least a million.
const FRAMES: usize = 1_000_000;
/// Queue requests and replies per run, on top of the frames.
const QUEUE_MESSAGES: usize = 200_000;
/// Fixed, so that a seed means the same inputs everywhere.
const THREADS: usize = 4;
/// Connections of a hostile peer to a live server, each sending up to 60 frames.
const LIVE_CONNECTIONS: usize = 100;

// ---------------------------------------------------------------------------------------------
// The PRNG (tests/common/rng.rs) and what this file adds to it.

impl Rng {
    /// A length that is usually small and now and then large: most bugs are at the edges.
    fn len(&mut self, max: usize) -> usize {
        match self.below(16) {
            0 => max,
            1 => self.below(max + 1),
            _ => self.below(max.min(48) + 1),
        }
    }
    fn addr(&mut self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.u32()), self.next() as u16)
    }
    /// A u32 from the values decoders trip over: limits, their neighbours, and extremes.
    fn special(&mut self, near: usize) -> u32 {
        let picks = [
            0,
            1,
            near as u32,
            (near as u32).wrapping_sub(1),
            (near as u32).wrapping_add(1),
            MAX_BODY as u32,
            MAX_BODY as u32 + 1,
            RSHM_MAX_SEGMENT as u32,
            RSHM_MAX_SEGMENT as u32 + 1,
            RSHM_MAX_FRAME_DATA as u32,
            RSHM_MAX_FRAME_DATA as u32 + 1,
            RSHM_MAX_SEGMENTS as u32 + 1,
            0x7fff_ffff,
            0x8000_0000,
            u32::MAX,
            self.u32(),
        ];
        picks[self.below(picks.len())]
    }
    /// Text with ASCII, multi-byte characters, and sometimes more than `MAX_TEXT` bytes.
    fn text(&mut self) -> String {
        let n = self.len(MAX_TEXT / 2 + 20);
        (0..n)
            .map(|_| match self.below(8) {
                0 => 'é',
                1 => '€',
                2 => '🦀',
                _ => (b' ' + self.below(95) as u8) as char,
            })
            .collect()
    }
}

/// The run's seed: `IPCLAB_FUZZ_SEED` (decimal or 0x-hex) to replay, else the clock and pid.
fn run_seed() -> u64 {
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
}

// ---------------------------------------------------------------------------------------------
// Valid messages, built with the wire module's own types and encoders.

fn entry(rng: &mut Rng) -> Entry {
    let ncounts = rng.len(RSHM_MAX_PEERS + 1).min(RSHM_MAX_PEERS + 1);
    Entry {
        rshmid: (rng.u32() >> 1).max(1) as i32,
        key: rng.u32() as i32,
        size: 1 + rng.below(RSHM_MAX_SEGMENT) as u64,
        owner: rng.addr(),
        marked: rng.one_in(2),
        version: rng.next(),
        counts: (0..ncounts).map(|_| (rng.addr(), rng.u32())).collect(),
    }
}

fn hello(rng: &mut Rng) -> Hello {
    let n = if rng.one_in(1024) {
        RSHM_MAX_SEGMENTS
    } else {
        rng.below(4)
    };
    Hello {
        node: rng.addr(),
        node_id: rng.u32(),
        entries: (0..n).map(|_| entry(rng)).collect(),
    }
}

/// The runs of one frame of a diff: non-empty, ascending, never overlapping, inside the
/// largest segment, at most `RSHM_MAX_RUNS` and `RSHM_MAX_FRAME_DATA` bytes. Now and then one
/// run of a whole frame's bytes (a part of a large change), and sometimes runs at the top of
/// the largest segment (offsets far above 4 GiB's u32 would not matter, but above 2^30 do).
fn runs(rng: &mut Rng) -> Vec<Run> {
    if rng.one_in(20_000) {
        return vec![Run {
            offset: (RSHM_MAX_SEGMENT - RSHM_MAX_FRAME_DATA) as u64,
            data: rng.bytes(RSHM_MAX_FRAME_DATA),
        }];
    }
    let mut runs = Vec::new();
    let mut at = if rng.one_in(4) {
        RSHM_MAX_SEGMENT - 1 - rng.below(8192)
    } else {
        rng.below(4096)
    };
    for _ in 0..rng.len(6).min(RSHM_MAX_RUNS) {
        let len = 1 + rng.len(64);
        if at + len > RSHM_MAX_SEGMENT {
            break;
        }
        runs.push(Run {
            offset: at as u64,
            data: rng.bytes(len),
        });
        at += len + rng.below(256);
    }
    runs
}

/// One valid frame of a random kind, with its seq.
fn valid_frame(rng: &mut Rng) -> (u32, Frame) {
    let rshmid = rng.u32() as i32;
    let frame = match rng.below(11) {
        0 => Frame::Hello(hello(rng)),
        1 => Frame::HelloReply(hello(rng)),
        2 => Frame::New(entry(rng)),
        3 => Frame::Count {
            rshmid,
            node: rng.addr(),
            count: rng.u32(),
        },
        4 => Frame::Update {
            rshmid,
            version: rng.next(),
            origin: rng.addr(),
            part: if rng.one_in(2) { 0 } else { rng.u32() },
            more: rng.one_in(2),
            runs: runs(rng),
        },
        5 => Frame::Rmid { rshmid },
        6 => Frame::Mark { rshmid },
        7 => Frame::Destroy { rshmid },
        8 => Frame::Ack {
            status: rng.u32() as i32,
            text: rng.text(),
            winner: if rng.one_in(4) {
                Some(entry(rng))
            } else {
                None
            },
        },
        9 => Frame::State {
            rshmid,
            last: rng.one_in(2),
            runs: runs(rng)
                .into_iter()
                .map(|run| StampedRun {
                    version: rng.next(),
                    origin: rng.addr(),
                    run,
                })
                .collect(),
        },
        _ => Frame::Bye,
    };
    (rng.u32(), frame)
}

fn valid_reply(rng: &mut Rng) -> Reply {
    let m = rng.len(RSHM_LS_PAGE).min(RSHM_LS_PAGE);
    let p = rng.len(RSHM_MAX_PEERS).min(RSHM_MAX_PEERS);
    Reply {
        op: rng.below(9) as u8,
        serial: rng.u32(),
        status: rng.u32() as i32,
        rshmid: rng.u32() as i32,
        shmid: rng.u32() as i32,
        size: rng.next(),
        version: rng.next(),
        changes: rng.next(),
        node: rng.u32(),
        gate: rng.one_in(2).then(|| GateRef {
            semid: (rng.u32() >> 1) as i32,
            sem: rng.u32() as u16,
            value: rng.u32() as u16 & 0x7fff,
        }),
        text: rng.text(),
        entries: (0..m)
            .map(|_| LsEntry {
                rshmid: rng.u32() as i32,
                key: rng.u32() as i32,
                size: rng.next(),
                owner: rng.addr(),
                marked: rng.one_in(2),
                attaches: rng.u32(),
                shmid: rng.u32() as i32,
                version: rng.next(),
                sent: rng.next(),
            })
            .collect(),
        peers: (0..p)
            .map(|_| LsPeer {
                addr: rng.addr(),
                up: rng.one_in(2),
            })
            .collect(),
        more: rng.one_in(2),
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if at + 4 <= b.len() {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    if at + 2 <= b.len() {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
}

/// Offsets of the counts and lengths inside a frame, by kind (from `wire::rshm`'s tables):
/// where a lie does the most damage if a decoder believes it.
fn inner_length_fields(frame: &[u8]) -> &'static [(usize, u8)] {
    const H: usize = FRAME_HEADER_LEN;
    match frame.get(6) {
        // HELLO: entry count u32 after addr and node id; the first entry's ncounts u8.
        Some(1) | Some(2) => &[(H + 10, 4), (H + 14 + 23, 1)],
        // NEW: the entry's size u64 (low half) and ncounts u8.
        Some(3) => &[(H + 8, 4), (H + 23, 1)],
        // UPDATE: nruns u32 after rshmid, version, origin; the first run's offset and len.
        Some(5) => &[(H + 18, 4), (H + 22, 4), (H + 26, 4)],
        // ACK: the text length u16.
        Some(9) => &[(H + 4, 2)],
        // STATE: nruns u32 after rshmid and last; the first run's offset and len.
        Some(11) => &[(H + 5, 4), (H + 23, 4), (H + 27, 4)],
        _ => &[],
    }
}

/// Changes `b` in one random way. `other` is another valid message, for splices.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8], frame: bool) {
    match rng.below(12) {
        // A few bits flipped anywhere.
        0 | 1 => {
            for _ in 0..1 + rng.below(4) {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        // A byte set to an edge value.
        2 => {
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
        }
        // A u32 somewhere set to a special value.
        3 => {
            if b.len() >= 4 {
                let at = rng.below(b.len() - 3);
                let v = rng.special(b.len());
                put_u32(b, at, v);
            }
        }
        // The header's length lies (frames), or the message is cut anywhere.
        4 => {
            if frame && b.len() >= FRAME_HEADER_LEN {
                let body = b.len() - FRAME_HEADER_LEN;
                let v = rng.special(body);
                put_u32(b, 8, v);
            } else {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
        }
        // A count or length inside the body lies.
        5 => {
            let fields = if frame {
                inner_length_fields(b)
            } else if b.get(..4) == Some(&REPLY_MAGIC[..]) {
                &[(40usize, 2u8), (42, 2), (44, 2)][..]
            } else {
                &[]
            };
            if !fields.is_empty() {
                let (at, width) = fields[rng.below(fields.len())];
                let v = rng.special(b.len());
                match width {
                    1 => {
                        if at < b.len() {
                            b[at] = v as u8;
                        }
                    }
                    2 => put_u16(b, at, v as u16),
                    _ => put_u32(b, at, v),
                }
            }
        }
        // Cut short.
        6 => {
            let n = rng.below(b.len() + 1);
            b.truncate(n);
        }
        // Extended with garbage or zeros.
        7 => {
            let n = rng.len(64);
            if rng.one_in(2) {
                b.extend(rng.bytes(n));
            } else {
                b.resize(b.len() + n, 0);
            }
        }
        // Bytes inserted or deleted in the middle: every later field shifts.
        8 => {
            let at = rng.below(b.len() + 1);
            if rng.one_in(2) {
                let n = rng.len(16);
                let ins = rng.bytes(n);
                b.splice(at..at, ins);
            } else {
                let n = rng.below(b.len() - at + 1).min(16);
                b.drain(at..at + n);
            }
        }
        // Spliced: our front, another message's back.
        9 => {
            let cut = rng.below(b.len() + 1);
            let from = rng.below(other.len() + 1);
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
        // Two messages back to back (a decoder must take exactly the first).
        10 => b.extend_from_slice(other),
        // A slice of itself repeated.
        _ => {
            if !b.is_empty() {
                let at = rng.below(b.len());
                let n = rng.below(b.len() - at).min(32) + 1;
                let dup = b[at..at + n].to_vec();
                b.splice(at..at, dup);
            }
        }
    }
    // Sometimes make the header's length tell the truth again, so that the mutated body gets
    // all the way into the body decoder instead of stopping at "need more" or "stray bytes".
    if frame && b.len() >= FRAME_HEADER_LEN && rng.one_in(3) {
        let body = (b.len() - FRAME_HEADER_LEN) as u32;
        put_u32(b, 8, body);
    }
}

/// Random bytes, sometimes behind the right magic (so they get past the first check).
fn random_input(rng: &mut Rng, magic: &[u8; 4]) -> Vec<u8> {
    let n = rng.len(96);
    let mut b = rng.bytes(n);
    if rng.one_in(2) && b.len() >= 4 {
        b[..4].copy_from_slice(magic);
        if b.len() >= 6 && rng.one_in(2) {
            put_u16(&mut b, 4, VERSION);
        }
    }
    b
}

/// A correct frame header (kind in and around 1..=11) in front of a random body.
fn header_and_random_body(rng: &mut Rng) -> Vec<u8> {
    let body = rng.len(160);
    let mut b = Vec::with_capacity(FRAME_HEADER_LEN + body);
    b.extend_from_slice(FRAME_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.push(rng.below(13) as u8);
    b.push(if rng.one_in(16) { 1 } else { 0 });
    b.extend_from_slice(&(body as u32).to_le_bytes());
    b.extend_from_slice(&rng.u32().to_le_bytes());
    b.extend(rng.bytes(body));
    b
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// What the inputs turned out to be, summed over a run.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    inputs: usize,
    ok: usize,
    need_more: usize,
    invalid: usize,
    /// Accepted, but not byte-for-byte what the encoder writes (ignored reserved bits, say).
    non_canonical: usize,
    largest_alloc: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.inputs += o.inputs;
        self.ok += o.ok;
        self.need_more += o.need_more;
        self.invalid += o.invalid;
        self.non_canonical += o.non_canonical;
        self.largest_alloc = self.largest_alloc.max(o.largest_alloc);
    }
}

/// How many bytes of decoded form one received byte may become: an UPDATE run's 8-byte header
/// becomes a 32-byte `Run` (offset, and a `Vec` for its bytes). The bytes themselves are
/// copied once more.
const DECODED_PER_BYTE: usize = 4;

/// What a decode may allocate: in proportion to the bytes actually received, never to a
/// number the bytes claim. One block: at most [`DECODED_PER_BYTE`] times the input, or the
/// table a HELLO announces (bounded by `RSHM_MAX_SEGMENTS`, checked before the allocation).
/// In all: that, plus one copy of the input, plus error texts.
fn alloc_bound(input: usize) -> (usize, usize) {
    let table =
        RSHM_MAX_SEGMENTS * std::mem::size_of::<Entry>().max(std::mem::size_of::<LsEntry>());
    let largest = (DECODED_PER_BYTE * input).max(table).max(4 * MAX_TEXT);
    (
        largest,
        (DECODED_PER_BYTE + 1) * input + 2 * table + 8 * MAX_TEXT,
    )
}

fn check_alloc(input: usize, u: Usage, t: &mut Tally) {
    let (largest, total) = alloc_bound(input);
    assert!(
        u.largest <= largest && u.total <= total,
        "decoding {input} bytes allocated {u:?}; the bound is {largest} in one block, {total} in all"
    );
    t.largest_alloc = t.largest_alloc.max(u.largest);
}

/// A frame whose re-encoding legitimately differs: text clipped to `MAX_TEXT` bytes (after
/// invalid UTF-8 was replaced, which can triple its length).
fn clipped(f: &Frame) -> bool {
    matches!(f, Frame::Ack { text, .. } if text.len() > MAX_TEXT)
}

fn check_frame(rng: &mut Rng, bytes: &[u8], t: &mut Tally) {
    t.inputs += 1;
    let (res, usage) = measure(|| Frame::decode(bytes));
    check_alloc(bytes.len(), usage, t);
    // The stream reader's first step: a header never announces more than MAX_BODY.
    if bytes.len() >= FRAME_HEADER_LEN {
        if let Ok((_, len, _)) = Frame::decode_header(&bytes[..FRAME_HEADER_LEN]) {
            assert!(len <= MAX_BODY, "a header announced {len} bytes");
        }
    }
    match res {
        Ok((seq, frame, used)) => {
            t.ok += 1;
            let (_, len, hseq) = Frame::decode_header(&bytes[..FRAME_HEADER_LEN])
                .expect("a decoded frame has a valid header");
            assert_eq!((used, hseq), (FRAME_HEADER_LEN + len, seq));
            assert!(used <= bytes.len());
            let again = frame.encode(seq);
            let (seq2, frame2, used2) =
                Frame::decode(&again).expect("a decoded frame, encoded again, decodes");
            assert_eq!((seq2, used2), (seq, again.len()));
            assert_eq!(
                frame2.encode(seq),
                again,
                "encode(decode(x)) is a fixed point"
            );
            if !clipped(&frame) {
                assert_eq!(frame2, frame, "the same frame after a round trip");
            }
            if again[..] != bytes[..used] {
                t.non_canonical += 1;
            }
            // What follows a frame is the next frame's business, not this one's.
            assert_eq!(
                Frame::decode(&bytes[..used]),
                Ok((seq, frame.clone(), used))
            );
            // Every frame is traced on one line; the trace must cope with any frame too.
            if rng.one_in(16) {
                let _ = frame.to_string();
            }
        }
        Err(DecodeError::NeedMore(n)) => {
            t.need_more += 1;
            assert!(n > 0, "NeedMore(0)");
            assert!(
                bytes.len() + n <= FRAME_HEADER_LEN + MAX_BODY,
                "asked for {n} more after {} bytes",
                bytes.len()
            );
            if bytes.len() >= FRAME_HEADER_LEN {
                let (_, len, _) = Frame::decode_header(&bytes[..FRAME_HEADER_LEN])
                    .expect("more is asked for only after a valid header");
                assert_eq!(n, FRAME_HEADER_LEN + len - bytes.len());
            } else {
                assert_eq!(n, FRAME_HEADER_LEN - bytes.len());
            }
        }
        Err(DecodeError::Invalid(why)) => {
            t.invalid += 1;
            assert!(!why.is_empty());
            // Invalid is final: the server drops the peer, so no continuation may be valid.
            if rng.one_in(8) {
                let mut longer = bytes.to_vec();
                let n = rng.len(64);
                longer.extend(rng.bytes(n));
                assert!(
                    matches!(Frame::decode(&longer), Err(DecodeError::Invalid(_))),
                    "invalid, yet valid or incomplete with {n} more bytes"
                );
            }
        }
    }
}

fn check_request(bytes: &[u8], t: &mut Tally) {
    t.inputs += 1;
    let (res, usage) = measure(|| Request::decode(bytes));
    check_alloc(bytes.len(), usage, t);
    match res {
        Ok(req) => {
            t.ok += 1;
            assert_eq!(bytes.len(), REQUEST_LEN);
            assert!(req.reply_type > 0, "replies go to mtype > 0 only");
            let again = req.encode();
            assert_eq!(Request::decode(&again), Ok(req));
            if again != bytes {
                t.non_canonical += 1;
            }
        }
        Err(DecodeError::NeedMore(n)) => {
            t.need_more += 1;
            assert!(n > 0 && bytes.len() + n <= REQUEST_LEN, "NeedMore({n})");
        }
        Err(DecodeError::Invalid(why)) => {
            t.invalid += 1;
            assert!(!why.is_empty());
        }
    }
}

fn check_reply(bytes: &[u8], t: &mut Tally) {
    t.inputs += 1;
    let (res, usage) = measure(|| Reply::decode(bytes));
    check_alloc(bytes.len(), usage, t);
    match res {
        Ok(reply) => {
            t.ok += 1;
            let again = reply.encode();
            let reply2 = Reply::decode(&again).expect("a decoded reply, encoded again, decodes");
            assert_eq!(reply2.encode(), again, "encode(decode(x)) is a fixed point");
            if reply.text.len() <= MAX_TEXT {
                assert_eq!(reply2, reply);
            }
            if again != bytes {
                t.non_canonical += 1;
            }
        }
        Err(DecodeError::NeedMore(n)) => {
            t.need_more += 1;
            assert!(n > 0);
        }
        Err(DecodeError::Invalid(why)) => {
            t.invalid += 1;
            assert!(!why.is_empty());
        }
    }
}

/// Runs `check` on `input`; if it panics, says how to replay before passing the panic on.
fn guarded(seed: u64, thread: usize, i: usize, input: &[u8], check: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(check)) {
        let shown: String = input.iter().take(96).map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "rshm_fuzz: input {i} of thread {thread} failed ({} bytes: {shown}{}); replay with \
             IPCLAB_FUZZ_SEED={seed}",
            input.len(),
            if input.len() > 96 { "..." } else { "" }
        );
        resume_unwind(p);
    }
}

/// One thread's share of the frames.
fn fuzz_frames(seed: u64, thread: usize, n: usize) -> Tally {
    let mut rng = Rng::new(seed ^ splitmix(thread as u64 + 1));
    let mut t = Tally::default();
    for i in 0..n {
        let input = match rng.below(10) {
            0 | 1 => random_input(&mut rng, FRAME_MAGIC),
            2 | 3 => header_and_random_body(&mut rng),
            4 => {
                let (seq, f) = valid_frame(&mut rng);
                let mut b = f.encode(seq);
                // A valid frame cut anywhere is a valid beginning: "need more", never invalid.
                if rng.one_in(4) {
                    let cut = rng.below(b.len());
                    b.truncate(cut);
                    let r = Frame::decode(&b);
                    guarded(seed, thread, i, &b, || {
                        assert!(matches!(r, Err(DecodeError::NeedMore(_))), "{r:?}")
                    });
                }
                b
            }
            _ => {
                let (seq, f) = valid_frame(&mut rng);
                let mut b = f.encode(seq);
                let (oseq, other) = valid_frame(&mut rng);
                let other = other.encode(oseq);
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut rng, &mut b, &other, true);
                }
                b
            }
        };
        guarded(seed, thread, i, &input, || {
            check_frame(&mut rng, &input, &mut t)
        });
    }
    t
}

/// One thread's share of the queue messages: requests (from any local program, so hostile)
/// and replies (from the server, but a client must survive a stray message too).
fn fuzz_queue(seed: u64, thread: usize, n: usize) -> (Tally, Tally) {
    let mut rng = Rng::new(seed ^ splitmix(0x5155_4555 + thread as u64));
    let (mut req, mut rep) = (Tally::default(), Tally::default());
    for i in 0..n {
        let reply = rng.one_in(3);
        let mut b = match (reply, rng.below(4)) {
            (false, 0) => random_input(&mut rng, REQUEST_MAGIC),
            (true, 0) => random_input(&mut rng, REPLY_MAGIC),
            (false, _) => rshm_request(&mut rng, Rng::next).encode(),
            (true, _) => valid_reply(&mut rng).encode(),
        };
        if rng.below(4) != 0 {
            let other = if reply {
                valid_reply(&mut rng).encode()
            } else {
                rshm_request(&mut rng, Rng::next).encode()
            };
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut b, &other, false);
            }
        }
        let tally = if reply { &mut rep } else { &mut req };
        guarded(seed, thread, i, &b, || {
            if reply {
                check_reply(&b, tally)
            } else {
                check_request(&b, tally)
            }
        });
    }
    (req, rep)
}

#[test]
fn a_million_random_and_mutated_frames_never_panic_and_stay_bounded() {
    let seed = run_seed();
    println!("rshm_fuzz: seed {seed} (replay with IPCLAB_FUZZ_SEED={seed})");
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|th| {
            std::thread::spawn(move || {
                let frames = fuzz_frames(seed, th, FRAMES / THREADS);
                let (req, rep) = fuzz_queue(seed, th, QUEUE_MESSAGES / THREADS);
                (frames, req, rep)
            })
        })
        .collect();
    let (mut frames, mut req, mut rep) = (Tally::default(), Tally::default(), Tally::default());
    for h in handles {
        let (f, q, r) = h
            .join()
            .expect("a fuzz thread failed: see the replay line above");
        Tally::add(&mut frames, &f);
        Tally::add(&mut req, &q);
        Tally::add(&mut rep, &r);
    }
    for (name, t) in [("frames", frames), ("requests", req), ("replies", rep)] {
        println!(
            "rshm_fuzz: {name}: {} inputs: {} decoded ({} non-canonical), {} need more, {} \
             invalid; largest allocation {} bytes",
            t.inputs, t.ok, t.non_canonical, t.need_more, t.invalid, t.largest_alloc
        );
    }
    println!("rshm_fuzz: {:.1} s", start.elapsed().as_secs_f64());
    assert!(frames.inputs >= 1_000_000);
    // Every class of answer was reached, or the generator is not doing its job.
    for t in [frames, req, rep] {
        assert!(t.ok > 0 && t.need_more > 0 && t.invalid > 0, "{t:?}");
    }
}

#[test]
fn lengths_over_the_limit_are_refused_before_anything_is_allocated() {
    let mut header = Frame::Bye.encode(7);
    for claim in [MAX_BODY as u32 + 1, 0x8000_0000, u32::MAX] {
        put_u32(&mut header, 8, claim);
        let (r, u) = measure(|| Frame::decode(&header));
        assert!(matches!(r, Err(DecodeError::Invalid(_))), "{claim}: {r:?}");
        let (h, _) = measure(|| Frame::decode_header(&header));
        assert!(matches!(h, Err(DecodeError::Invalid(_))), "{claim}: {h:?}");
        assert!(u.largest < 256, "a claim of {claim} bytes allocated {u:?}");
    }
    // The largest legal claim, with no body yet: "need more", and still nothing allocated for
    // the body (the reader allocates it only after this answer, and only up to MAX_BODY).
    put_u32(&mut header, 8, MAX_BODY as u32);
    let (r, u) = measure(|| Frame::decode(&header));
    assert_eq!(r, Err(DecodeError::NeedMore(MAX_BODY)));
    assert_eq!(u.count, 0, "{u:?}");
    // Counts inside a body that claim more than the limits: invalid before the vectors exist.
    let mut hello = Frame::Hello(Hello {
        node: "127.0.0.1:1".parse().unwrap(),
        node_id: 1,
        entries: vec![],
    })
    .encode(1);
    put_u32(&mut hello, FRAME_HEADER_LEN + 10, u32::MAX);
    let (r, u) = measure(|| Frame::decode(&hello));
    assert!(matches!(r, Err(DecodeError::Invalid(_))), "{r:?}");
    assert!(u.largest < 256, "{u:?}");
    let mut update = Frame::Update {
        rshmid: 1,
        version: 1,
        origin: "127.0.0.1:1".parse().unwrap(),
        part: 0,
        more: false,
        runs: vec![Run {
            offset: 0,
            data: vec![1, 2, 3],
        }],
    }
    .encode(1);
    // The number of runs (body offset 23, after rshmid, version, origin, part and more), then
    // the first run's length (35, after its u64 offset).
    for at in [FRAME_HEADER_LEN + 23, FRAME_HEADER_LEN + 35] {
        let mut lie = update.clone();
        put_u32(&mut lie, at, u32::MAX);
        let (r, u) = measure(|| Frame::decode(&lie));
        assert!(matches!(r, Err(DecodeError::Invalid(_))), "{r:?}");
        assert!(u.largest < 256, "{u:?}");
    }
    // A run longer than a frame may carry, and one that starts past the largest segment (or
    // whose end would overflow a u64): refused before its bytes are copied.
    let mut lie = update.clone();
    put_u32(
        &mut lie,
        FRAME_HEADER_LEN + 35,
        RSHM_MAX_FRAME_DATA as u32 + 1,
    );
    let (r, u) = measure(|| Frame::decode(&lie));
    assert!(matches!(r, Err(DecodeError::Invalid(_))), "{r:?}");
    assert!(u.largest < 256, "{u:?}");
    for offset in [RSHM_MAX_SEGMENT as u64 - 2, u64::MAX - 1] {
        let at = FRAME_HEADER_LEN + 27;
        update[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        let (r, u) = measure(|| Frame::decode(&update));
        assert!(matches!(r, Err(DecodeError::Invalid(_))), "{offset}: {r:?}");
        assert!(u.largest < 256, "{u:?}");
    }
}

#[test]
fn the_costliest_frames_allocate_in_proportion_to_what_was_sent() {
    let update = |runs: Vec<Run>| {
        Frame::Update {
            rshmid: 1,
            version: 1,
            origin: "127.0.0.1:1".parse().unwrap(),
            part: 0,
            more: false,
            runs,
        }
        .encode(1)
    };
    // The most runs a frame may carry, each of one byte: the longest list for the fewest bytes.
    let tiny = update(
        (0..RSHM_MAX_RUNS)
            .map(|i| Run {
                offset: 2 * i as u64,
                data: vec![1],
            })
            .collect(),
    );
    let (r, u) = measure(|| Frame::decode(&tiny));
    assert!(r.is_ok(), "{r:?}");
    println!(
        "rshm_fuzz: an UPDATE of {RSHM_MAX_RUNS} one-byte runs ({} bytes) allocates {u:?}",
        tiny.len()
    );
    assert!(u.total <= alloc_bound(tiny.len()).1, "{u:?}");
    // One run more, or an empty run: invalid, before the list is allocated.
    let mut more = tiny.clone();
    let n = (RSHM_MAX_RUNS + 1) as u32;
    put_u32(&mut more, FRAME_HEADER_LEN + 23, n);
    let (r, u) = measure(|| Frame::decode(&more));
    assert!(matches!(r, Err(DecodeError::Invalid(_))), "{r:?}");
    assert!(u.largest < 256, "{u:?}");
    let empty = update(vec![Run {
        offset: 0,
        data: vec![],
    }]);
    assert!(matches!(
        Frame::decode(&empty),
        Err(DecodeError::Invalid(_))
    ));
    // The most run bytes a frame may carry, as one run (a part of a large change), at the
    // top of the largest segment: whatever the segment's size, a frame costs this at most.
    let whole = update(vec![Run {
        offset: (RSHM_MAX_SEGMENT - RSHM_MAX_FRAME_DATA) as u64,
        data: vec![7; RSHM_MAX_FRAME_DATA],
    }]);
    let (r, u) = measure(|| Frame::decode(&whole));
    assert!(r.is_ok(), "{r:?}");
    println!("rshm_fuzz: an UPDATE of one {RSHM_MAX_FRAME_DATA}-byte run allocates {u:?}");
    assert!(u.total <= RSHM_MAX_FRAME_DATA + 4096, "{u:?}");
    // MAX_BODY no longer grows with the largest segment: about one frame's run bytes.
    const { assert!(MAX_BODY < 2 * RSHM_MAX_FRAME_DATA) };
    // Whatever the frame, a decode stays within a few times the largest body, the ceiling
    // that the header check puts on what a peer can send.
    for u in [measure(|| Frame::decode(&tiny)).1, u] {
        assert!(u.total <= (DECODED_PER_BYTE + 1) * (FRAME_HEADER_LEN + MAX_BODY));
    }
}

/// The frames a hostile but allowed peer sends in the live test: as in the decoder loop, but a
/// NEW (which makes a replica) asks for small segments only, so the test stays light.
fn live_frame(rng: &mut Rng) -> Vec<u8> {
    let (seq, mut f) = valid_frame(rng);
    match &mut f {
        Frame::New(e)
        | Frame::Ack {
            winner: Some(e), ..
        } => e.size = 1 + e.size % 4096,
        Frame::Hello(h) | Frame::HelloReply(h) => h.entries.iter_mut().for_each(|e| e.size %= 4096),
        _ => {}
    }
    let mut b = f.encode(seq);
    match rng.below(4) {
        0 => {}
        1 => b = header_and_random_body(rng),
        _ => {
            let (oseq, other) = valid_frame(rng);
            let other = other.encode(oseq);
            mutate(rng, &mut b, &other, true);
        }
    }
    b
}

#[test]
fn a_server_fed_garbage_by_a_peer_drops_it_and_keeps_serving() {
    use ipclab::rshm::{node_keys, Node};
    let seed = run_seed();
    println!("rshm_fuzz: live server, seed {seed} (replay with IPCLAB_FUZZ_SEED={seed})");
    let mut rng = Rng::new(seed ^ 0x4c49_5645);
    let s = common::Scratch::new("rshm-fuzz");
    // Two free ports: the server's, and the one it believes its peer listens on. Nobody
    // listens there: the server's own dialer is refused and retries, which is fine.
    let held: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let (port, peer) = (ports[0], SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[1]));
    for key in node_keys(port) {
        s.track_key(key);
    }
    let log_path = s.dir().join("server.log");
    // The secret, so that the fuzzer's connections get past the handshake to the frames.
    let secret = b"0123456789abcdef0123456789abcdef";
    let secret_path = s.dir().join("secret");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .unwrap();
        f.write_all(secret).unwrap();
    }
    let secret = ipclab::rshm::auth::Secret::new(secret);
    let pid = s.spawn(
        common::cmd("rshm_server")
            .args(["--listen", &port.to_string(), "--peer", &peer.to_string()])
            .arg("--secret")
            .arg(&secret_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap()),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let limit = std::time::Duration::from_secs(20);
    assert!(
        common::wait_until(limit, || Node::open(port).is_ok()),
        "{}",
        log()
    );
    let node = Node::open(port).unwrap();
    let id = node.rshmget(0x7a, 64).unwrap();
    let att = node.rshmat(id).unwrap();
    att.write_string("survives").unwrap();
    node.rshm_changed(id).unwrap();
    node.rshmdt(att).unwrap();

    // First of all, a well-formed row whose per-node attach counts add up
    // to more than a u32 holds: nothing forbids it on the wire, so the server must cope.
    let big_counts = Frame::New(Entry {
        rshmid: 0x7b7b_7b7b,
        key: 0x7b,
        size: 64,
        owner: peer,
        marked: false,
        version: 1,
        counts: vec![
            (peer, u32::MAX),
            (SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9), 2),
        ],
    });
    let mut first = big_counts.encode(1);
    let mut frames = 1;
    for _ in 0..LIVE_CONNECTIONS {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(limit)).unwrap();
        c.set_write_timeout(Some(limit)).unwrap();
        let ends = ipclab::rshm::auth::Ends {
            dialer: peer,
            acceptor: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        };
        ipclab::rshm::auth::dial(&mut c, &secret, ends).expect("handshake with the server");
        let hello = Frame::Hello(Hello {
            node: peer,
            node_id: rng.u32(),
            entries: vec![],
        });
        c.write_all(&hello.encode(0)).unwrap();
        // Its answer (HELLO_REPLY, then a STATE per row) is read in the background, with the
        // ACKs, so that the server never waits on a full socket.
        let mut reader = c.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        });
        for _ in 0..1 + rng.below(60) {
            frames += 1;
            let frame = if first.is_empty() {
                live_frame(&mut rng)
            } else {
                std::mem::take(&mut first)
            };
            if c.write_all(&frame).is_err() {
                break; // dropped by the server, as it should be for garbage
            }
        }
        let _ = c.shutdown(std::net::Shutdown::Write);
        drain.join().unwrap();
    }
    println!("rshm_fuzz: live server: {frames} frames on {LIVE_CONNECTIONS} connections");
    // Still running, still serving, the data intact. (The child stays with the Scratch guard
    // until the end, so that a failed assertion here still stops it.)
    assert!(
        ipclab::sys::process::program_name(pid as i32).is_some_and(|n| n == "rshm_server"),
        "the server died: {}",
        log()
    );
    let att = node.rshmat(id).unwrap();
    assert_eq!(att.read_string().unwrap(), "survives");
    node.rshmdt(att).unwrap();
    let ls = node.ls();
    let log = log();
    // A panic in a server thread is a bug even when the server lives on: the thread that
    // panicked (the queue thread, say) no longer does its work.
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:?} (seed {seed})\n{log}");
    assert!(ls.is_ok(), "{ls:?} (seed {seed})\n{log}");
    assert!(log.contains("; dropping its connection"), "{log}");
    // And it still leaves cleanly.
    ipclab::sys::process::kill(pid as i32, libc::SIGTERM).unwrap();
    let mut child = s.take(pid);
    let exited = common::wait_until(limit, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    assert!(exited && child.wait().unwrap().success(), "{log}");
    s.assert_no_leftovers();
}

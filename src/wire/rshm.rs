//! RSHM's bytes: the queue messages between a program and its local server, and the frames
//! between servers on TCP (seed 000).
//!
//! Two formats, one per boundary:
//!
//! ```text
//!   P1 --[Request, mtype 1]--> queue --> rshm_server A ==[Frame]==> TCP ==> rshm_server B
//!   P1 <--[Reply, mtype tid]-- queue <--       (A)     <==[ACK]===  TCP <==     (B)
//! ```
//!
//! Byte order is little-endian, as everywhere in [`crate::wire`]. Every format starts with a
//! 4-byte ASCII magic and a 2-byte version; a decoder refuses any other.
//!
//! # Queue request (program -> server, `mtype` 1)
//!
//! | offset | size | field      | encoding                                                  |
//! |--------|------|------------|-----------------------------------------------------------|
//! | 0      | 4    | magic      | `RSHQ`                                                    |
//! | 4      | 2    | version    | u16, [`VERSION`]                                          |
//! | 6      | 1    | op         | u8: 1 GET, 2 AT, 3 DT, 4 RMID, 5 CHANGED, 6 WAIT, 7 LS,   |
//! |        |      |            | 8 CHANGED_RANGE                                           |
//! | 7      | 1    | zero       | must be 0                                                 |
//! | 8      | 4    | reply_type | i32 > 0: the `mtype` the reply is sent with (caller's tid)|
//! | 12     | 4    | serial     | u32: echoed in the reply, so a late reply is recognised   |
//! | 16     | 4    | pid        | i32: the caller's pid                                     |
//! | 20     | 4    | rshmid     | i32 (AT, DT, RMID, CHANGED, WAIT, CHANGED_RANGE); LS: the |
//! |        |      |            | cursor, list rows with a higher rshmid (0: from the first)|
//! | 24     | 4    | key        | i32 (GET)                                                 |
//! | 28     | 4    | node       | u32 (WAIT: the node id of the server that counted `seen`) |
//! | 32     | 8    | size       | u64 (GET; 0 = open an existing segment only);             |
//! |        |      |            | CHANGED_RANGE: the range's offset                         |
//! | 40     | 8    | seen       | u64 (WAIT: the replica's `changes` the caller has seen);  |
//! |        |      |            | CHANGED_RANGE: the range's length                         |
//! | 48     | 8    | timeout_ms | u64 (WAIT)                                                |
//!
//! Always [`REQUEST_LEN`] bytes.
//!
//! # Queue reply (server -> program, `mtype` = the request's reply_type)
//!
//! | offset | size  | field    | encoding                                                 |
//! |--------|-------|----------|----------------------------------------------------------|
//! | 0      | 4     | magic    | `RSHR`                                                   |
//! | 4      | 2     | version  | u16                                                      |
//! | 6      | 1     | op       | u8, the request's op                                     |
//! | 7      | 1     | zero     |                                                          |
//! | 8      | 4     | serial   | u32, the request's serial                                |
//! | 12     | 4     | status   | i32: 0, or an errno (ENOENT, EIDRM, ETIMEDOUT, ...)      |
//! | 16     | 4     | rshmid   | i32                                                      |
//! | 20     | 4     | shmid    | i32: the local replica (AT)                              |
//! | 24     | 8     | size     | u64: the segment's size; CHANGED: the UPDATE frame's     |
//! |        |       |          | length in bytes, header included (what each peer gets)   |
//! | 32     | 8     | version  | u64: the segment's version (AT, CHANGED, WAIT)           |
//! | 40     | 8     | changes  | u64: how often this node's replica has changed (AT,      |
//! |        |       |          | CHANGED, WAIT): what a WAIT's `seen` compares with       |
//! | 48     | 4     | semid    | i32: the segment's change gate (`rshm::gate`): its       |
//! |        |       |          | semaphore set, or -1 for none (then sem and value are 0) |
//! | 52     | 2     | sem      | u16: the gate's semaphore in that set                    |
//! | 54     | 2     | value    | u16: the gate's count when `changes` was read, <= 32767  |
//! | 56     | 4     | node     | u32: this server's node id, drawn at random when it      |
//! |        |       |          | starts: `changes` counts only for this run of the server |
//! | 60     | 2     | n        | u16 text length, at most [`MAX_TEXT`]                    |
//! | 62     | 2     | m        | u16 LS entry count, at most `RSHM_LS_PAGE`               |
//! | 64     | 2     | p        | u16 LS peer count, at most `RSHM_MAX_PEERS`              |
//! | 66     | 2     | more     | u16, LS: 1 if the table has rows after the last entry    |
//! |        |       |          | (ask again with that rshmid as the cursor), else 0       |
//! | 68     | n     | text     | UTF-8: the error message, or (LS) this node's address    |
//! | 68+n   | 48*m  | entries  | [`LsEntry`], below                                       |
//! | ...    | 7*p   | peers    | ip u32, port u16, up u8 (1 = connected)                  |
//!
//! An LS entry (48 bytes):
//!
//! | offset | size | field    | encoding                                  |
//! |--------|------|----------|-------------------------------------------|
//! | 0      | 4    | rshmid   | i32                                       |
//! | 4      | 4    | key      | i32                                       |
//! | 8      | 8    | size     | u64                                       |
//! | 16     | 4    | owner ip | u32 (IPv4, most significant octet first)  |
//! | 20     | 2    | owner    | u16 port                                  |
//! | 22     | 1    | marked   | u8, 1 = marked for removal                |
//! | 23     | 1    | zero     |                                           |
//! | 24     | 4    | attaches | u32, cluster-wide                         |
//! | 28     | 4    | shmid    | i32, the local replica                    |
//! | 32     | 8    | version  | u64                                       |
//! | 40     | 8    | sent     | u64: length of the last UPDATE frame this |
//! |        |      |          | node sent for it (0: none yet)            |
//!
//! # Authentication (server <-> server, TCP, before any frame)
//!
//! Every connection starts with three fixed-size messages that prove, in both directions,
//! that each end knows the cluster secret (`crate::rshm::auth`), without sending it:
//!
//! ```text
//!   dialer                                         acceptor
//!     ── CHALLENGE  ends, nonce_d ────────────────▶   ends.acceptor must be the acceptor's name
//!     ◀───────────── ANSWER  ends, nonce_a, mac_a ──   mac_a = HMAC(secret, "rshm acceptor" ‖ nonce_d ‖ nonce_a ‖ ends)
//!     ── PROOF  ends, mac_d ──────────────────────▶   mac_d = HMAC(secret, "rshm dialer" ‖ nonce_a ‖ nonce_d ‖ ends)
//!     ── HELLO ... (frames, below) ───────────────▶   only once mac_d checked out
//! ```
//!
//! `ends` is who talks to whom: the dialer's name (its listen address) and the name of the
//! node it dialled (its `--peer`). Every message carries them, and the acceptor first checks
//! that the node dialled is itself. In the MACs, `ends` is the same 12 bytes as at offset 72
//! ([`Auth::names`]); the labels are `ipclab rshm acceptor` and `ipclab rshm dialer`.
//!
//! | offset | size | field    | encoding                                                  |
//! |--------|------|----------|-----------------------------------------------------------|
//! | 0      | 4    | magic    | `RSHA`                                                    |
//! | 4      | 2    | version  | u16, [`AUTH_VERSION`]                                     |
//! | 6      | 1    | kind     | u8: 1 CHALLENGE, 2 ANSWER, 3 PROOF                        |
//! | 7      | 1    | zero     | must be 0                                                 |
//! | 8      | 32   | nonce    | 32 random bytes (CHALLENGE, ANSWER); zeros in a PROOF     |
//! | 40     | 32   | mac      | HMAC-SHA256 (ANSWER, PROOF); zeros in a CHALLENGE         |
//! | 72     | 6    | dialer   | the dialer's name: IPv4 (u32) and port (u16)              |
//! | 78     | 6    | acceptor | the name of the node it dialled: IPv4 (u32), port (u16)   |
//!
//! Always [`AUTH_LEN`] bytes. The two labels differ, so neither end's MAC can be reflected
//! back as the other's; each MAC covers the other end's fresh nonce, so an old one cannot be
//! replayed; and each covers both names, so a stranger who passes the messages on between two
//! nodes of the group (a relay: B dials the stranger, on a peer's port that is free, and the
//! stranger dials A) cannot use them: A sees that B dialled someone else, and a stranger who
//! changes the names in between breaks both MACs.
//!
//! # Peer frame (server <-> server, TCP)
//!
//! ```text
//!   [ RSHP | ver | kind | 0 | body length | seq ][ body ............ ]
//!     0      4     6      7   8             12     16
//! ```
//!
//! | offset | size | field  | encoding                                                      |
//! |--------|------|--------|---------------------------------------------------------------|
//! | 0      | 4    | magic  | `RSHP`                                                        |
//! | 4      | 2    | version| u16                                                           |
//! | 6      | 1    | kind   | u8: 1 HELLO, 2 HELLO_REPLY, 3 NEW, 4 COUNT, 5 UPDATE, 6 RMID, |
//! |        |      |        | 7 MARK, 8 DESTROY, 9 ACK, 10 BYE, 11 STATE                    |
//! | 7      | 1    | zero   |                                                               |
//! | 8      | 4    | length | u32 body length, at most [`MAX_BODY`], checked before any     |
//! |        |      |        | allocation (see "What a frame costs" below)                   |
//! | 12     | 4    | seq    | u32: a request's number; ACK repeats the number it answers    |
//!
//! Bodies (an "addr" is 6 bytes: IPv4 u32, most significant octet first, then port u16):
//!
//! | kind        | body                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | HELLO       | addr (the sender's listen address), node u32, count u32, `Entry` each |
//! | HELLO_REPLY | as HELLO                                                              |
//! | NEW         | one `Entry`                                                           |
//! | COUNT       | rshmid i32, addr (the node), count u32 (its attaches, absolute)       |
//! | UPDATE      | rshmid i32, version u64, addr (origin), part u32 (0, 1, ... within   |
//! |             | one change), more u8 (1: more frames of this change follow), nruns    |
//! |             | u32, then each run: offset u64, len u32, len bytes (runs ascending,   |
//! |             | never overlapping, at most `RSHM_MAX_FRAME_DATA` bytes in all)        |
//! | RMID        | rshmid i32                                                            |
//! | MARK        | rshmid i32                                                            |
//! | DESTROY     | rshmid i32                                                            |
//! | ACK         | status i32 (0 or errno), n u16, text (n bytes, at most [`MAX_TEXT`]), |
//! |             | has_winner u8 (0 or 1), then (if 1) one `Entry`: the segment that won |
//! |             | a race for the NEW's key (see `crate::rshm` on concurrent rshmget)    |
//! | BYE         | empty                                                                 |
//! | STATE       | rshmid i32, last u8 (1: the row's last STATE), nruns u32, then each   |
//! |             | run: version u64, addr (origin), offset u64, len u32, len bytes (runs |
//! |             | ascending, never overlapping, at most `RSHM_MAX_FRAME_DATA` bytes in  |
//! |             | all): the contents, each run with the stamp of the update that wrote  |
//! |             | it. Sent after a HELLO_REPLY, for every row (one or more frames each, |
//! |             | the last with `last` 1); words never written are zeros everywhere and |
//! |             | are not sent.                                                         |
//!
//! An UPDATE is a *diff*: only the runs of bytes that changed since the last update (see
//! `crate::rshm::diff`). Its fixed part is 43 bytes with the header, and each run costs 12
//! bytes plus its bytes, so a 1-byte change (one 8-byte word) is a 63-byte frame. The decoder
//! checks, before it allocates, that there are at most `RSHM_MAX_RUNS` runs, and that every run
//! is non-empty, lies inside `RSHM_MAX_SEGMENT`, follows the one before it, and that the
//! runs add up to at most `RSHM_MAX_FRAME_DATA` bytes.
//!
//! # Large changes: several frames, one change
//! A change with more than `RSHM_MAX_FRAME_DATA` bytes of runs (or more runs than one frame
//! holds) travels as UPDATE frames `part` 0, 1, 2, ..., all with the same rshmid, version,
//! origin and seq, every one but the last with `more` 1 ([`update_frames`]; a long run is cut
//! in several). The receiver keeps the parts of one change (at most one per connection, at most
//! the segment's size plus `RSHM_MAX_RUNS` and the cut runs' headers), checks that they
//! continue each other (same change, next part, runs still ascending and inside the segment),
//! and applies them as one change under one hold of its state lock when the last arrives; it
//! ACKs that last frame only. A part that does not continue the change is refused with an ACK
//! that says why, and the change is dropped. STATE is cut the same way (`last` ends a row),
//! and a row's STATE is applied as one, too.
//!
//! # What a frame costs
//! A peer can announce at most [`MAX_BODY`] bytes (one frame's worth of run bytes,
//! `RSHM_MAX_FRAME_DATA`, plus the headers of `RSHM_MAX_RUNS` runs; or the fullest HELLO table
//! if that were larger), whatever the size of the segment, and nothing is allocated before that
//! check. Receiving a frame then costs its body in the reader's buffer plus the decoded copy of
//! its runs: a small constant times `RSHM_MAX_FRAME_DATA` at worst, and always in proportion to
//! the bytes that actually arrived, never to a length a peer merely claims. The parts of one
//! large change, kept until its last frame, cost at most the segment's size (plus bounded run
//! headers), and only for a segment that exists here. `tests/rshm_fuzz.rs` measures this with
//! a counting allocator. The decoders are lenient in one way: reserved bytes documented as zero
//! are not checked.
//!
//! # Decoding entry points
//! [`Request::decode`], [`Reply::decode`], [`Frame::decode_header`] and [`Frame::decode`]:
//! each takes any bytes, never panics, and answers NeedMore or Invalid.
//!
//! A table `Entry` (32 bytes + 10 per count):
//!
//! | offset | size    | field    | encoding                                          |
//! |--------|---------|----------|---------------------------------------------------|
//! | 0      | 4       | rshmid   | i32 > 0                                           |
//! | 4      | 4       | key      | i32                                               |
//! | 8      | 8       | size     | u64, 1..=`RSHM_MAX_SEGMENT`                       |
//! | 16     | 6       | owner    | addr                                              |
//! | 22     | 1       | flags    | u8, bit 0: marked for removal                     |
//! | 23     | 1       | ncounts  | u8, at most `RSHM_MAX_PEERS` + 1                  |
//! | 24     | 8       | version  | u64                                               |
//! | 32     | 10 each | counts   | addr, then u32: that node's attaches              |
//!
//! Counts travel as absolute numbers per node, never as +1/-1: applying one twice, or merging
//! a table that already has it, gives the same result.

use super::{DecodeError, Reader, Writer};
use crate::params::{
    RSHM_LS_PAGE, RSHM_MAX_FRAME_DATA, RSHM_MAX_PEERS, RSHM_MAX_RUNS, RSHM_MAX_SEGMENTS,
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The version of both formats; bumped when a layout changes (2: diffs, STATE, LS `sent`;
/// 4: UPDATE in several frames, `part` and `more`, and u64 run offsets).
pub const VERSION: u16 = 4;
/// Magic of a queue request, a queue reply and a peer frame.
pub const REQUEST_MAGIC: &[u8; 4] = b"RSHQ";
pub const REPLY_MAGIC: &[u8; 4] = b"RSHR";
pub const FRAME_MAGIC: &[u8; 4] = b"RSHP";
/// Magic and version of the authentication messages (see "Authentication").
pub const AUTH_MAGIC: &[u8; 4] = b"RSHA";
pub const AUTH_VERSION: u16 = 2;
/// An authentication message is always this long.
pub const AUTH_LEN: usize = 84;
/// The length of a nonce and of a MAC in an authentication message.
pub const AUTH_NONCE_LEN: usize = 32;
/// A request is always this long.
pub const REQUEST_LEN: usize = 56;
/// The fixed part of a reply.
pub const REPLY_HEADER_LEN: usize = 68;
/// One LS entry in a reply.
pub const LS_ENTRY_LEN: usize = 48;
/// One LS peer in a reply.
pub const LS_PEER_LEN: usize = 7;
/// The longest text (an error message) in a reply or an ACK.
pub const MAX_TEXT: usize = 256;
/// The largest reply: it must fit one queue message (`msgmax` is 8192 by default), so an LS
/// reply carries one page of the table, at most `RSHM_LS_PAGE` rows.
pub const MAX_REPLY: usize =
    REPLY_HEADER_LEN + MAX_TEXT + RSHM_LS_PAGE * LS_ENTRY_LEN + RSHM_MAX_PEERS * LS_PEER_LEN;
/// A peer frame's header.
pub const FRAME_HEADER_LEN: usize = 16;
/// An UPDATE's fixed part: header, rshmid, version, origin, part, more, nruns.
pub const UPDATE_FIXED_LEN: usize = FRAME_HEADER_LEN + 27;
/// A STATE body's fixed part: rshmid, last, nruns.
pub const STATE_FIXED_LEN: usize = 9;
/// What each run adds to a STATE besides its bytes: its stamp, offset and length.
pub const STATE_RUN_HEADER_LEN: usize = 26;
/// What each run adds to an UPDATE besides its bytes: offset and length.
pub const RUN_HEADER_LEN: usize = 12;
/// The largest body a frame may announce, whatever the segment's size: a STATE frame (the
/// larger of the two run formats) with `RSHM_MAX_RUNS` run headers and `RSHM_MAX_FRAME_DATA`
/// run bytes, or a HELLO with the fullest table, whichever is larger. With 4096 segments of
/// 17 counts each the table is about 0.8 MiB, below the STATE frame (about 1.1 MiB), so a
/// HELLO always fits one frame.
pub const MAX_BODY: usize = {
    let state = STATE_FIXED_LEN + RSHM_MAX_RUNS * STATE_RUN_HEADER_LEN + RSHM_MAX_FRAME_DATA;
    let hello = 14 + RSHM_MAX_SEGMENTS * (32 + 10 * (RSHM_MAX_PEERS + 1));
    if state > hello {
        state
    } else {
        hello
    }
};

fn invalid<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Invalid(why.into()))
}

fn put_addr(w: &mut Writer, a: SocketAddrV4) {
    w.u32(u32::from(*a.ip())).u16(a.port());
}

fn get_addr(r: &mut Reader<'_>) -> Result<SocketAddrV4, DecodeError> {
    let ip = Ipv4Addr::from(r.u32()?);
    Ok(SocketAddrV4::new(ip, r.u16()?))
}

/// A text of `n` bytes. Bytes that are not UTF-8 become U+FFFD, which takes three bytes, so a
/// hostile text can grow in the decoding: it is cut back to [`MAX_TEXT`] bytes, so that what
/// decodes always encodes again as it is (no message is ever longer than a sender may send).
fn get_text(r: &mut Reader<'_>, n: usize) -> Result<String, DecodeError> {
    if n > MAX_TEXT {
        return invalid(format!("text of {n} bytes, at most {MAX_TEXT} allowed"));
    }
    let text = String::from_utf8_lossy(r.bytes(n)?).into_owned();
    Ok(clip(&text).to_string())
}

/// Cuts a message to [`MAX_TEXT`] bytes on a character boundary.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

mod auth;
mod peer;
mod queue;

pub use auth::{Auth, AuthKind};
pub use peer::{
    update_frames, update_len, update_parts, Entry, Frame, Hello, Run, StampedRun, StampedRunRef,
    StateRef, UpdatePart,
};
pub use queue::{GateRef, LsEntry, LsPeer, Op, Reply, Request, SEMVMX};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::RSHM_MAX_SEGMENT;

    #[test]
    fn a_text_that_is_not_utf8_decodes_within_the_limit() {
        // 256 bytes that are not UTF-8: 256 U+FFFD, 768 bytes, before the cut.
        let bytes = [0xffu8; MAX_TEXT];
        let text = get_text(&mut Reader::new(&bytes), MAX_TEXT).unwrap();
        assert_eq!(text.len(), MAX_TEXT / 3 * 3);
        assert_eq!(clip(&text), text, "encodes again as it is");
    }

    #[test]
    fn auth_messages_round_trip_and_bytes_are_as_documented() {
        let a = Auth {
            kind: AuthKind::Answer,
            nonce: [0x11; AUTH_NONCE_LEN],
            mac: [0x22; AUTH_NONCE_LEN],
            dialer: "127.0.0.1:7001".parse().unwrap(),
            acceptor: "10.0.0.2:7002".parse().unwrap(),
        };
        let b = a.encode();
        assert_eq!(b.len(), AUTH_LEN);
        assert_eq!(&b[..8], b"RSHA\x02\x00\x02\x00");
        assert_eq!(&b[8..40], &[0x11; 32]);
        assert_eq!(&b[40..72], &[0x22; 32]);
        assert_eq!(
            &b[72..],
            b"\x01\x00\x00\x7f\x59\x1b\x02\x00\x00\x0a\x5a\x1b"
        );
        assert_eq!(Auth::decode(&b).unwrap(), a);
        assert_eq!(Auth::decode(&b[..83]), Err(DecodeError::NeedMore(1)));
        for (at, v) in [(0, b'X'), (4, 1), (6, 4), (6, 0), (7, 1)] {
            let mut bad = b.clone();
            bad[at] = v;
            assert!(
                matches!(Auth::decode(&bad), Err(DecodeError::Invalid(_))),
                "{at}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(Auth::decode(&long), Err(DecodeError::Invalid(_))));
        // A peer frame is not an authentication message.
        assert!(matches!(
            Auth::decode(&Frame::Bye.encode(1)),
            Err(DecodeError::Invalid(_))
        ));
    }

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn requests_round_trip_and_have_a_fixed_length() {
        for op in [
            Op::Get {
                key: 0x1234,
                size: 4096,
            },
            Op::At { rshmid: 7 },
            Op::Changed { rshmid: 9 },
            Op::Wait {
                rshmid: 9,
                node: 0x0102_0304,
                seen: 3,
                timeout_ms: 500,
            },
            Op::Ls { after: 0 },
            Op::Ls { after: 77 },
            Op::ChangedRange {
                rshmid: 9,
                offset: 1 << 40,
                len: u64::MAX,
            },
        ] {
            let req = Request {
                reply_type: 42,
                serial: 5,
                pid: 100,
                op,
            };
            let bytes = req.encode();
            assert_eq!(bytes.len(), REQUEST_LEN);
            assert_eq!(&bytes[..4], b"RSHQ");
            assert_eq!(Request::decode(&bytes).unwrap(), req);
        }
        // The fields of the two ops that reuse others' slots, where the table says.
        let range = Request {
            reply_type: 1,
            serial: 1,
            pid: 1,
            op: Op::ChangedRange {
                rshmid: 9,
                offset: 0x0102,
                len: 3,
            },
        }
        .encode();
        assert_eq!(range[6], 8);
        assert_eq!(range[20..24], 9i32.to_le_bytes());
        assert_eq!(range[32..40], 0x0102u64.to_le_bytes());
        assert_eq!(range[40..48], 3u64.to_le_bytes());
        let ls = Request {
            op: Op::Ls { after: 77 },
            ..Request::decode(&range).unwrap()
        }
        .encode();
        assert_eq!((ls[6], &ls[20..24]), (7, &77i32.to_le_bytes()[..]));
        let mut bad = Request {
            reply_type: 1,
            serial: 1,
            pid: 1,
            op: Op::Ls { after: 0 },
        }
        .encode();
        bad[6] = 99;
        assert!(matches!(
            Request::decode(&bad),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            Request::decode(&bad[..10]),
            Err(DecodeError::NeedMore(_))
        ));
    }

    #[test]
    fn replies_round_trip_with_entries_and_peers() {
        let reply = Reply {
            op: 7,
            serial: 3,
            status: 0,
            changes: 9,
            node: 0xabcd,
            gate: Some(GateRef {
                semid: 0,
                sem: 3,
                value: 9,
            }),
            text: "127.0.0.1:7001".into(),
            entries: vec![LsEntry {
                rshmid: 12345,
                key: 0x10,
                size: 4096,
                owner: addr(7001),
                marked: true,
                attaches: 2,
                shmid: 99,
                version: 4,
                sent: 54,
            }],
            peers: vec![LsPeer {
                addr: addr(7002),
                up: true,
            }],
            more: true,
            ..Reply::default()
        };
        let bytes = reply.encode();
        assert_eq!(
            bytes.len(),
            REPLY_HEADER_LEN + 14 + LS_ENTRY_LEN + LS_PEER_LEN
        );
        assert_eq!(Reply::decode(&bytes).unwrap(), reply);
        assert_eq!(bytes[66..68], [1, 0], "more");
        const { assert!(MAX_REPLY <= 8192) };
        // A page holds at most RSHM_LS_PAGE rows: a reply claiming more is invalid.
        let mut many = bytes.clone();
        many[62..64].copy_from_slice(&(RSHM_LS_PAGE as u16 + 1).to_le_bytes());
        assert!(matches!(Reply::decode(&many), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn a_reply_naming_a_gate_value_above_semvmx_is_invalid() {
        let mut reply = Reply {
            gate: Some(GateRef {
                semid: 1,
                sem: 0,
                value: SEMVMX,
            }),
            ..Reply::default()
        };
        assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        reply.gate = reply.gate.map(|g| GateRef {
            value: SEMVMX + 1,
            ..g
        });
        assert!(matches!(
            Reply::decode(&reply.encode()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn frames_round_trip_and_bytes_are_as_documented() {
        let entry = Entry {
            rshmid: 5,
            key: 6,
            size: 64,
            owner: addr(7001),
            marked: false,
            version: 2,
            counts: vec![(addr(7001), 1), (addr(7002), 0)],
        };
        let frames = [
            Frame::Hello(Hello {
                node: addr(7001),
                node_id: 0xabcd,
                entries: vec![entry.clone()],
            }),
            Frame::New(entry.clone()),
            Frame::Count {
                rshmid: 5,
                node: addr(7002),
                count: 3,
            },
            Frame::Update {
                rshmid: 5,
                version: 9,
                origin: addr(7003),
                part: 2,
                more: true,
                runs: vec![
                    Run {
                        offset: 0,
                        data: b"hello\0".to_vec(),
                    },
                    Run {
                        offset: 64,
                        data: vec![1; 8],
                    },
                ],
            },
            Frame::State {
                rshmid: 5,
                last: true,
                runs: vec![
                    StampedRun {
                        version: 9,
                        origin: addr(7003),
                        run: Run {
                            offset: 0,
                            data: vec![7; 16],
                        },
                    },
                    StampedRun {
                        version: 4,
                        origin: addr(7001),
                        run: Run {
                            offset: 16,
                            data: vec![8; 8],
                        },
                    },
                ],
            },
            Frame::Ack {
                status: 110,
                text: "timed out".into(),
                winner: None,
            },
            Frame::Ack {
                status: 0,
                text: String::new(),
                winner: Some(entry.clone()),
            },
            Frame::Bye,
        ];
        for f in frames {
            let bytes = f.encode(77);
            assert_eq!(Frame::decode(&bytes).unwrap(), (77, f.clone(), bytes.len()));
            // Every proper prefix asks for more; none is mistaken for a frame.
            for cut in [0, 3, 15, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert!(matches!(
                        Frame::decode(&bytes[..cut]),
                        Err(DecodeError::NeedMore(_))
                    ));
                }
            }
        }
        let runs = vec![Run {
            offset: 8,
            data: vec![0xee],
        }];
        let upd = Frame::Update {
            rshmid: 1,
            version: 2,
            origin: addr(0x0102),
            part: 0,
            more: false,
            runs: runs.clone(),
        }
        .encode(3);
        assert_eq!(
            upd,
            [
                b'R', b'S', b'H', b'P', 4, 0, 5, 0, 40, 0, 0, 0, 3, 0, 0, 0, // header
                1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, // rshmid, version
                1, 0, 0, 127, 2, 1, // origin 127.0.0.1:258
                0, 0, 0, 0, 0, // part 0, no more
                1, 0, 0, 0, // one run
                8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xee // offset u64, len, data
            ]
        );
        assert_eq!(upd.len(), update_len(&runs));
    }

    #[test]
    fn oversized_and_garbage_frames_are_invalid_before_allocation() {
        let mut big = Frame::Bye.encode(0);
        big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(&big), Err(DecodeError::Invalid(_))));
        assert!(matches!(
            Frame::decode(b"GET / HTTP/1.1\r\n\r\n"),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(Frame::decode(b"XY"), Err(DecodeError::Invalid(_))));
        // A body shorter than its kind needs is invalid, not "need more".
        let mut short = Frame::Rmid { rshmid: 1 }.encode(0);
        short.truncate(FRAME_HEADER_LEN + 2);
        short[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            Frame::decode(&short),
            Err(DecodeError::Invalid(_))
        ));
        // A run that would not fit the largest segment.
        let two = vec![
            Run {
                offset: 0,
                data: vec![0; 4],
            },
            Run {
                offset: 16,
                data: vec![0; 4],
            },
        ];
        let good = Frame::Update {
            rshmid: 1,
            version: 1,
            origin: addr(1),
            part: 0,
            more: false,
            runs: two,
        }
        .encode(0);
        assert!(Frame::decode(&good).is_ok());
        // The second run's offset is at 59..67: 43 fixed bytes, then 12 + 4 of the first run.
        let mut upd = good.clone();
        upd[59..67].copy_from_slice(&(RSHM_MAX_SEGMENT as u64).to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        let mut upd = good.clone();
        upd[59..67].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        // Runs that overlap (the second starts inside the first), a run count the body
        // cannot hold, and a `more` that is neither 0 nor 1.
        let mut upd = good.clone();
        upd[59..67].copy_from_slice(&2u64.to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        let mut upd = good.clone();
        upd[39..43].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
        let mut upd = good;
        upd[38] = 2;
        assert!(matches!(Frame::decode(&upd), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn a_large_change_is_cut_into_bounded_frames_that_add_up_to_it() {
        let big = RSHM_MAX_FRAME_DATA * 5 / 2 + 3; // two and a half frames, mid-word end
        let data: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
        let runs = vec![
            Run {
                offset: 16,
                data: vec![1; 8],
            },
            Run {
                offset: 64,
                data: data.clone(),
            },
        ];
        let frames = update_frames(7, 3, addr(9), &runs);
        assert_eq!(frames.len(), 3);
        for (p, f) in update_parts(&runs).iter().zip(&frames) {
            assert_eq!(
                p.encode(7, 3, addr(9), 1),
                f.encode(1),
                "borrowed and owned agree"
            );
            assert_eq!(p.len(), p.encode(7, 3, addr(9), 1).len());
        }
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let Frame::Update {
                part, more, runs, ..
            } = f
            else {
                panic!("not an UPDATE")
            };
            assert_eq!((*part as usize, *more), (i, i < 2));
            let bytes = f.encode(1);
            assert!(bytes.len() <= FRAME_HEADER_LEN + MAX_BODY);
            assert_eq!(&Frame::decode(&bytes).unwrap().1, f);
            for r in runs {
                assert_eq!(r.offset % 8, 0, "cut at word boundaries");
                assert!(!r.data.is_empty());
                got.push(r.clone());
            }
        }
        assert_eq!(got[0].offset, 16);
        let rest: Vec<u8> = got[1..].iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(rest, data, "the pieces are the run, in order");
        assert!(got
            .windows(2)
            .all(|w| w[0].offset + w[0].data.len() as u64 <= w[1].offset));
        // No runs: one empty last frame.
        assert_eq!(update_frames(7, 3, addr(9), &[]).len(), 1);
        // A frame with more run bytes than RSHM_MAX_FRAME_DATA is refused.
        let over = Frame::Update {
            rshmid: 1,
            version: 1,
            origin: addr(1),
            part: 0,
            more: false,
            runs: vec![Run {
                offset: 0,
                data: vec![0; RSHM_MAX_FRAME_DATA + 1],
            }],
        };
        assert!(matches!(
            Frame::decode(&over.encode(0)),
            Err(DecodeError::Invalid(_))
        ));
    }
}

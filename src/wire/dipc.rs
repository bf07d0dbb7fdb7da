//! The dipc bytes: the datagram on TCP, the mailbox segment, and the daemon's start-up report.
//!
//! Three parties exchange dipc bytes: a client and the server (the datagram, over TCP), the
//! server and `dipcrm` (the segment header, through shared memory), and the daemon and the
//! shell that started it (the start-up report, through a pipe). Each layout is here, and only
//! here. Integers in the segment are little-endian (see [`crate::wire`]); the datagram and the
//! report are ASCII text with decimal numbers, so that a person can speak them with `nc`.
//!
//! # The datagram: a request is one header line, then the data of a write
//!
//! | request | bytes that follow | reply |
//! | --- | --- | --- |
//! | `r <n>\n` | none | `ok <len>\n` then the message (`len` bytes; `ok 0\n` for an empty box) |
//! | `w <n> <len>\n` | exactly `len` bytes, any values | `ok <len>\n` once the message replaced the box's content |
//! | `w <n>\n` | one line; the message is that line without its `\n` (or `\r\n`) | `ok <len>\n` |
//! | `q\n` (a mailbox number may follow, ignored) | none | `bye\n`, then the server closes this connection |
//! | an empty line (nothing but spaces, tabs, `\r`) | none | none: ignored |
//! | anything else | none | `err <reason>\n` |
//!
//! Header line, byte by byte:
//!
//! | offset | size | field | encoding |
//! | --- | --- | --- | --- |
//! | 0 | 1 | command | `r`, `w` or `q` |
//! | 1 | 1+ | separator | spaces or tabs |
//! | .. | 1-20 | mailbox `n` | decimal digits, 0 to k-1 |
//! | .. | 1-20 | `len` (`w` only, optional) | separator, then decimal digits |
//! | end | 1-2 | terminator | `\n`, optionally preceded by `\r` |
//!
//! Empty lines are ignored, with no reply, so that a person at `nc` may press Enter after the
//! data of `w <n> <len>` (`w 1 5`, Enter, `hello`, Enter: the last Enter is an empty line, not
//! an `err empty request`), and a script's stray blank line costs nothing.
//!
//! Reply header line: `ok <len>\n`, `bye\n` or `err <reason>\n`, where `<reason>` is printable
//! ASCII without a newline.
//!
//! Framing: the whole header line is at most [`LINE_MAX`] bytes. A longer line, or a `w` whose
//! length is not a number, **loses the framing** (nobody can tell where the next request
//! starts): [`decode_request`] returns [`DecodeError::Invalid`], the server replies `err` and
//! closes. Any other bad request keeps the framing (the server knows exactly which bytes belong
//! to it) and decodes as [`Request::Bad`], or as a write whose mailbox is bad, whose bytes the
//! server reads and discards.
//!
//! A `w <n> <len>` whose `len` is over the server's message limit keeps the framing too, but
//! reading `len` bytes only to drop them is worth it only for a small excess: over the limit
//! by at most `DIPC_DISCARD_MAX` (1 MiB, in `params`), the bytes are read and dropped, the
//! reply is `err message of <len> bytes is over the limit of <max>`, and the connection lives
//! on; over by more (up to 18446744073709551615), the reply is the same with `; closing`,
//! sent at once, before any of the bytes, and the server closes the connection.
//!
//! # The mailbox segment (one System V shm segment per server)
//!
//! ```text
//! [ header (64 bytes) | slot 0 | slot 1 | ... | slot k-1 ]     each slot: [ len | data ... ]
//! ```
//!
//! Segment header:
//!
//! | offset | size | field | encoding |
//! | --- | --- | --- | --- |
//! | 0 | 4 | magic | ASCII `DIPC` |
//! | 4 | 2 | version | u16, [`VERSION`] |
//! | 6 | 2 | port | u16, the TCP port whose key this is |
//! | 8 | 4 | mailboxes `k` | u32 |
//! | 12 | 4 | creator pid | i32, the server process |
//! | 16 | 8 | mailbox size | u64, bytes of data per slot |
//! | 24 | 8 | packet size | u64, bytes |
//! | 32 | 8 | slot stride | u64, bytes from one slot to the next (a multiple of 64) |
//! | 40 | 24 | reserved | zero |
//!
//! Slot `i` starts at `64 + i * stride`:
//!
//! | offset | size | field | encoding |
//! | --- | --- | --- | --- |
//! | 0 | 8 | message length | u64, at most the mailbox size |
//! | 8 | mailbox size | message | raw bytes; only the first `length` mean anything |
//!
//! A slot is read and written only under its mailbox's lock (see `dipc::rwlock`). A writer
//! writes the message bytes first and the length last, so a reader never sees a torn message.
//!
//! # The start-up report (daemon to the starting shell, through a pipe)
//!
//! | line | meaning |
//! | --- | --- |
//! | `notice <text>\n` | print `<text>` on stderr and keep reading |
//! | `ready <pid>\n` | the daemon (pid) listens: print the started line, exit 0 |
//! | `failed <code> <text>\n` | start-up failed and nothing is left: print `<text>`, exit `<code>` |
//!
//! End of file before `ready` or `failed` means the daemon died: report it and exit 1.

use super::{DecodeError, Reader, Writer};

/// Longest request header line, newline included.
pub const LINE_MAX: usize = crate::params::DIPC_LINE_MAX;

/// The segment's magic: `DIPC`.
pub const MAGIC: &[u8; 4] = b"DIPC";

/// The segment layout version.
pub const VERSION: u16 = 1;

/// Bytes before slot 0.
pub const HEADER_SIZE: usize = 64;

/// Bytes of a slot before its message: the length word.
pub const SLOT_HEADER: usize = 8;

/// Slots start on 64-byte boundaries (a cache line), so two mailboxes never share one.
pub const SLOT_ALIGN: u64 = 64;

// ---------------------------------------------------------------------------------------------
// Requests.

/// A mailbox number as the client wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mailbox {
    /// Decimal digits (`u64::MAX` if they overflow: out of every range anyway).
    Number(u64),
    /// Not a number: the text, shortened and made printable, for the error reply.
    Bad(String),
}

/// One decoded request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `r <n>`.
    Read(Mailbox),
    /// `w <n> <len>`: exactly `len` bytes follow.
    Write(Mailbox, u64),
    /// `w <n>`: one line of data follows.
    WriteLine(Mailbox),
    /// `q`.
    Quit,
    /// An empty line: ignored, no reply (see the module header).
    Blank,
    /// A bad request whose framing is intact: nothing follows; reply `err <reason>`.
    Bad(String),
}

/// Shortens `raw` to a printable token for an error reply (`err unknown command 'x'`).
fn printable(raw: &[u8]) -> String {
    let mut s: String = raw
        .iter()
        .take(16)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect();
    if raw.len() > 16 {
        s.push_str("...");
    }
    s
}

fn number(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 20 digits may still overflow u64; that is a number, just a too-big one.
    Some(std::str::from_utf8(tok).ok()?.parse().unwrap_or(u64::MAX))
}

fn mailbox(tok: &[u8]) -> Mailbox {
    match number(tok) {
        Some(n) => Mailbox::Number(n),
        None => Mailbox::Bad(printable(tok)),
    }
}

/// The line without its `\n`, and without a `\r` before it (what telnet and some terminals send).
pub fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Decodes one request header from the front of `buf`; returns it and the bytes it took.
///
/// `NeedMore` while no newline has arrived within [`LINE_MAX`] bytes; `Invalid` when the
/// framing is lost (see the module header).
pub fn decode_request(buf: &[u8]) -> Result<(Request, usize), DecodeError> {
    let window = &buf[..buf.len().min(LINE_MAX)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= LINE_MAX {
            return Err(DecodeError::Invalid(format!(
                "request line longer than {LINE_MAX} bytes"
            )));
        }
        return Err(DecodeError::NeedMore(1));
    };
    let used = nl + 1;
    let line = strip_line_end(&buf[..used]);
    let mut toks = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty());
    let words: [Option<&[u8]>; 4] = std::array::from_fn(|_| toks.next());
    let req = match words {
        [None, ..] => Request::Blank,
        [Some(b"r"), Some(n), None, _] => Request::Read(mailbox(n)),
        [Some(b"r"), ..] => Request::Bad("usage: r <mailbox>".into()),
        [Some(b"w"), Some(n), None, _] => Request::WriteLine(mailbox(n)),
        [Some(b"w"), Some(n), Some(len), None] => match number(len) {
            Some(len) => Request::Write(mailbox(n), len),
            // Bytes may follow, and nobody knows how many: the framing is lost.
            None => {
                return Err(DecodeError::Invalid(format!(
                    "length '{}' is not a number",
                    printable(len)
                )))
            }
        },
        [Some(b"w"), Some(_), Some(_), Some(_)] => {
            return Err(DecodeError::Invalid(
                "usage: w <mailbox> <length>, or w <mailbox> then a line".into(),
            ))
        }
        [Some(b"w"), None, ..] => Request::Bad("usage: w <mailbox> [<length>]".into()),
        [Some(b"q"), ..] => Request::Quit,
        [Some(cmd), ..] => Request::Bad(format!("unknown command '{}'", printable(cmd))),
    };
    Ok((req, used))
}

/// Encodes a request header (the client side), appending to `out`. For [`Request::Write`], the
/// caller appends the `len` data bytes; for [`Request::WriteLine`], one line.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    use std::io::Write;
    let n = |m: &Mailbox| match m {
        Mailbox::Number(n) => n.to_string(),
        Mailbox::Bad(s) => s.clone(),
    };
    // Writing into a Vec cannot fail.
    let _ = match req {
        Request::Read(m) => writeln!(out, "r {}", n(m)),
        Request::Write(m, len) => writeln!(out, "w {} {len}", n(m)),
        Request::WriteLine(m) => writeln!(out, "w {}", n(m)),
        Request::Quit => writeln!(out, "q"),
        Request::Blank => writeln!(out),
        Request::Bad(text) => writeln!(out, "{text}"),
    };
}

// ---------------------------------------------------------------------------------------------
// Replies.

/// One decoded reply header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `ok <len>`: after a read, `len` message bytes follow; after a write, none.
    Ok(u64),
    /// `bye`: the server closes the connection.
    Bye,
    /// `err <reason>`.
    Err(String),
}

/// Appends a reply header line to `out` (the server side). An `err` reason is kept to one line
/// of printable ASCII.
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Ok(len) => {
            out.extend_from_slice(b"ok ");
            push_decimal(*len, out);
            out.push(b'\n');
        }
        Reply::Bye => out.extend_from_slice(b"bye\n"),
        Reply::Err(reason) => {
            out.extend_from_slice(b"err ");
            out.extend(reason.bytes().map(|b| {
                if b == b' ' || b.is_ascii_graphic() {
                    b
                } else {
                    b'?'
                }
            }));
            out.push(b'\n');
        }
    }
}

/// Decimal digits without going through `format!` (this is on every reply's path).
fn push_decimal(mut v: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Decodes one reply header from the front of `buf` (the client side).
pub fn decode_reply(buf: &[u8]) -> Result<(Reply, usize), DecodeError> {
    // An err reason may be longer than a request line; bound it all the same.
    let bound = LINE_MAX * 4;
    let window = &buf[..buf.len().min(bound)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= bound {
            return Err(DecodeError::Invalid("reply line too long".into()));
        }
        return Err(DecodeError::NeedMore(1));
    };
    let line = strip_line_end(&buf[..=nl]);
    let reply = if let Some(len) = line.strip_prefix(b"ok ") {
        Reply::Ok(number(len).ok_or_else(|| {
            DecodeError::Invalid(format!("bad length in reply '{}'", printable(line)))
        })?)
    } else if line == b"bye" {
        Reply::Bye
    } else if let Some(reason) = line.strip_prefix(b"err ") {
        Reply::Err(String::from_utf8_lossy(reason).into_owned())
    } else {
        return Err(DecodeError::Invalid(format!(
            "unknown reply '{}'",
            printable(line)
        )));
    };
    Ok((reply, nl + 1))
}

// ---------------------------------------------------------------------------------------------
// The segment.

/// The segment header, as the server writes it once and `dipcrm` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub port: u16,
    pub mailboxes: u32,
    pub creator_pid: i32,
    /// Bytes of message data per mailbox.
    pub mailbox_size: u64,
    /// Bytes of the largest packet.
    pub packet_size: u64,
}

impl SegmentHeader {
    /// Bytes from one slot to the next: length word plus data, rounded up to [`SLOT_ALIGN`].
    /// `None` if it overflows.
    pub fn stride(mailbox_size: u64) -> Option<u64> {
        let raw = mailbox_size.checked_add(SLOT_HEADER as u64)?;
        raw.checked_next_multiple_of(SLOT_ALIGN)
    }

    /// Size of the whole segment for `k` mailboxes of `mailbox_size` bytes; `None` if it
    /// overflows a u64 (which is certainly over SHMMAX).
    pub fn segment_size(k: u32, mailbox_size: u64) -> Option<u64> {
        Self::stride(mailbox_size)?
            .checked_mul(u64::from(k))?
            .checked_add(HEADER_SIZE as u64)
    }

    /// Offset of slot `i` (its length word); `i < mailboxes` is the caller's to check.
    pub fn slot_offset(&self, i: u32) -> usize {
        let stride = Self::stride(self.mailbox_size).unwrap_or(0) as usize;
        HEADER_SIZE + i as usize * stride
    }

    /// The longest message: min(packet size, mailbox size).
    pub fn max_message(&self) -> u64 {
        self.packet_size.min(self.mailbox_size)
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_SIZE);
        w.bytes(MAGIC)
            .u16(VERSION)
            .u16(self.port)
            .u32(self.mailboxes)
            .i32(self.creator_pid)
            .u64(self.mailbox_size)
            .u64(self.packet_size)
            .u64(Self::stride(self.mailbox_size).unwrap_or(0))
            .bytes(&[0u8; 24]);
        w.finish()
    }

    /// Decodes and checks the header bytes: magic, version, and a stride that matches.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let version = r.u16()?;
        if version != VERSION {
            return Err(DecodeError::Invalid(format!(
                "segment version {version}, expected {VERSION}"
            )));
        }
        let h = SegmentHeader {
            port: r.u16()?,
            mailboxes: r.u32()?,
            creator_pid: r.i32()?,
            mailbox_size: r.u64()?,
            packet_size: r.u64()?,
        };
        let stride = r.u64()?;
        r.bytes(24)?;
        if Some(stride) != Self::stride(h.mailbox_size) || h.mailboxes == 0 {
            return Err(DecodeError::Invalid(format!(
                "inconsistent header: {} mailboxes, size {}, stride {stride}",
                h.mailboxes, h.mailbox_size
            )));
        }
        Ok(h)
    }
}

/// The 8 bytes of a slot's length word.
pub fn encode_slot_len(len: u64) -> [u8; SLOT_HEADER] {
    len.to_le_bytes()
}

/// A slot's length word, checked against the mailbox size (a bigger one means corruption).
pub fn decode_slot_len(bytes: [u8; SLOT_HEADER], mailbox_size: u64) -> Result<u64, DecodeError> {
    let len = u64::from_le_bytes(bytes);
    if len > mailbox_size {
        return Err(DecodeError::Invalid(format!(
            "slot length {len} over the mailbox size {mailbox_size}"
        )));
    }
    Ok(len)
}

// ---------------------------------------------------------------------------------------------
// The start-up report.

/// One line of the daemon's start-up report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartReport {
    Notice(String),
    Ready { pid: i32 },
    Failed { code: u8, message: String },
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl StartReport {
    /// The line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StartReport::Notice(t) => format!("notice {}\n", one_line(t)),
            StartReport::Ready { pid } => format!("ready {pid}\n"),
            StartReport::Failed { code, message } => {
                format!("failed {code} {}\n", one_line(message))
            }
        }
        .into_bytes()
    }

    /// Decodes one line from the front of `buf`; returns it and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<(StartReport, usize), DecodeError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return Err(DecodeError::NeedMore(1));
        };
        let line = String::from_utf8_lossy(&buf[..nl]);
        let bad = || DecodeError::Invalid(format!("bad start-up report line '{line}'"));
        let report = match line.split_once(' ') {
            Some(("notice", t)) => StartReport::Notice(t.to_string()),
            Some(("ready", pid)) => StartReport::Ready {
                pid: pid.parse().map_err(|_| bad())?,
            },
            Some(("failed", rest)) => {
                let (code, message) = rest.split_once(' ').ok_or_else(bad)?;
                StartReport::Failed {
                    code: code.parse().map_err(|_| bad())?,
                    message: message.to_string(),
                }
            }
            _ => return Err(bad()),
        };
        Ok((report, nl + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &[u8]) -> Result<(Request, usize), DecodeError> {
        decode_request(s)
    }

    #[test]
    fn every_request_form_decodes() {
        use Mailbox::Number;
        assert_eq!(req(b"r 1\n"), Ok((Request::Read(Number(1)), 4)));
        assert_eq!(req(b"w 2 5\nhello"), Ok((Request::Write(Number(2), 5), 6)));
        assert_eq!(req(b"w 3\r\nhi\n"), Ok((Request::WriteLine(Number(3)), 5)));
        assert_eq!(req(b"q\n"), Ok((Request::Quit, 2)));
        assert_eq!(req(b"q 7\n"), Ok((Request::Quit, 4)));
        assert_eq!(req(b"r  \t 9\n"), Ok((Request::Read(Number(9)), 7)));
        assert_eq!(
            req(b"r 99999999999999999999\n").unwrap().0,
            Request::Read(Number(u64::MAX))
        );
    }

    #[test]
    fn bad_requests_keep_or_lose_the_framing() {
        assert_eq!(req(b"r"), Err(DecodeError::NeedMore(1)));
        assert_eq!(
            req(b"x 1\n").unwrap().0,
            Request::Bad("unknown command 'x'".into())
        );
        assert_eq!(req(b"\n"), Ok((Request::Blank, 1)));
        assert_eq!(req(b" \t\r\nr 1\n"), Ok((Request::Blank, 4)));
        assert_eq!(
            req(b"r one\n").unwrap().0,
            Request::Read(Mailbox::Bad("one".into()))
        );
        assert_eq!(
            req(b"w x 3\nabc").unwrap().0,
            Request::Write(Mailbox::Bad("x".into()), 3)
        );
        assert!(matches!(req(b"w 1 abc\n"), Err(DecodeError::Invalid(_))));
        assert!(matches!(
            req(b"w 1 hello there\n"),
            Err(DecodeError::Invalid(_))
        ));
        let long = vec![b'r'; LINE_MAX];
        assert!(matches!(req(&long), Err(DecodeError::Invalid(_))));
        assert_eq!(req(&long[..LINE_MAX - 1]), Err(DecodeError::NeedMore(1)));
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Read(Mailbox::Number(4)),
            Request::Write(Mailbox::Number(0), 12),
            Request::WriteLine(Mailbox::Number(1)),
            Request::Quit,
            Request::Blank,
        ] {
            let mut out = Vec::new();
            encode_request(&r, &mut out);
            assert_eq!(decode_request(&out), Ok((r, out.len())));
        }
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::Ok(0),
            Reply::Ok(1234567),
            Reply::Bye,
            Reply::Err("no mailbox 9".into()),
        ] {
            let mut out = Vec::new();
            encode_reply(&r, &mut out);
            assert_eq!(decode_reply(&out), Ok((r, out.len())));
        }
        let mut out = Vec::new();
        encode_reply(&Reply::Err("a\nb".into()), &mut out);
        assert_eq!(out, b"err a?b\n");
        assert_eq!(decode_reply(b"ok 1"), Err(DecodeError::NeedMore(1)));
        assert!(matches!(
            decode_reply(b"huh\n"),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn segment_header_round_trips_and_checks() {
        let h = SegmentHeader {
            port: 5000,
            mailboxes: 3,
            creator_pid: 42,
            mailbox_size: 1024,
            packet_size: 512,
        };
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert_eq!(&bytes[..4], b"DIPC");
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(h.slot_offset(1), 64 + 1088);
        assert_eq!(h.max_message(), 512);
        assert_eq!(SegmentHeader::segment_size(3, 1024), Some(64 + 3 * 1088));
        assert_eq!(SegmentHeader::segment_size(2, u64::MAX - 4), None);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            SegmentHeader::decode(&bytes[..10]),
            Err(DecodeError::NeedMore(_))
        ));
        assert_eq!(decode_slot_len(encode_slot_len(7), 10), Ok(7));
        assert!(decode_slot_len(encode_slot_len(11), 10).is_err());
    }

    #[test]
    fn start_reports_round_trip() {
        for r in [
            StartReport::Notice("recycled".into()),
            StartReport::Ready { pid: 77 },
            StartReport::Failed {
                code: 2,
                message: "bad thing".into(),
            },
        ] {
            let b = r.encode();
            assert_eq!(StartReport::decode(&b), Ok((r, b.len())));
        }
        assert_eq!(
            StartReport::decode(b"ready 1"),
            Err(DecodeError::NeedMore(1))
        );
    }
}

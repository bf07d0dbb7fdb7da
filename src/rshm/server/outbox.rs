//! Frames to one peer, handed over without ever waiting for it: an outbox and its writer.
//!
//! ```text
//!   any thread, state lock held           the outbox (one per connection)     writer thread
//!   send(frame) ── outbox empty? ──yes──▶ send what the socket takes now
//!                        │                   │ the rest, if any
//!                        no                  ▼
//!                        └──────────────▶ [frame][frame][rest] ───────────▶ write, in order,
//!                                                                            blocking
//! ```
//!
//! Frames are handed over with the state lock held, so that every peer gets them in the order
//! the table changed (`super::state`). If handing over could wait for the peer to read, two
//! nodes each sending a large change to the other would deadlock: each holds its own lock while
//! its socket is full, and the reader that would empty it, on the other node, waits for the
//! other node's lock (the test: `rshm_large::large_changes_made_on_two_nodes_at_once_...`).
//! So [`Outbox::send`] never waits:
//! - **The common case** is one non-blocking `send` ([`crate::sys::net::send_nowait`]): the
//!   outbox is empty and the socket has room (a small frame nearly always finds it). No thread
//!   is woken, so a small change costs what it did.
//! - **What the socket does not take** waits in the outbox for the writer thread, which writes
//!   it blocking, outside every lock (a write that stalls for `RSHM_WRITE_TIMEOUT` fails).
//!   While anything waits, later frames wait behind it: bytes never overtake each other.
//! - **Bounded**: at most [`RSHM_OUTBOX`] bytes wait. One more, or a failed write, breaks the
//!   outbox: the connection is shut down, as a failed write always did, the dialer sees it end
//!   and reconnects, and HELLO brings the peer up to date.
//!
//! Who owns what: the outbox owns its queue and stops its writer when dropped; the writer
//! thread owns its own clone of the socket.

use crate::params::RSHM_OUTBOX;
use crate::sys::net::send_nowait;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The sending end, kept in the peer's `out`.
pub(super) struct Outbox {
    stream: TcpStream,
    peer: SocketAddrV4,
    line: Arc<Line>,
}

/// What the sending end and the writer thread share.
struct Line {
    queue: Mutex<Queue>,
    /// Signalled when a frame is queued, when one is written, and when the outbox closes.
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// The bytes still to write, in order (the first may be the rest of a frame).
    frames: VecDeque<Vec<u8>>,
    /// Their total, and whether the writer is writing one it took out (it still counts).
    bytes: usize,
    writing: bool,
    /// Why the outbox no longer takes frames (a write failed, too much waited, it was closed).
    broken: Option<String>,
}

impl Line {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Outbox {
    /// An outbox for `stream`, the connection to `peer`, and its writer thread.
    pub(super) fn new(stream: &TcpStream, peer: SocketAddrV4) -> io::Result<Outbox> {
        let line = Arc::new(Line {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        // Both clones first: a writer started for an outbox that then failed to be made
        // would wait for ever.
        let (mut out, stream) = (stream.try_clone()?, stream.try_clone()?);
        let theirs = line.clone();
        std::thread::Builder::new()
            .name(format!("to {peer}"))
            .spawn(move || write_queued(&theirs, &mut out, peer))?;
        Ok(Outbox { stream, peer, line })
    }

    /// Hands `frame` over: sent now as far as the socket takes it, the rest queued. Never
    /// waits. An error means the outbox is broken (logged once, where it broke): drop the
    /// peer.
    pub(super) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut q = self.line.lock();
        if let Some(why) = &q.broken {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, why.clone()));
        }
        let mut rest = frame;
        if q.frames.is_empty() && !q.writing {
            match send_nowait(&self.stream, frame) {
                Ok(n) => rest = &frame[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.breaks(&mut q, format!("write failed: {e}"))),
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
        if q.bytes + rest.len() > RSHM_OUTBOX {
            let why = format!("more than {RSHM_OUTBOX} bytes wait to be sent to it");
            return Err(self.breaks(&mut q, why));
        }
        q.bytes += rest.len();
        q.frames.push_back(rest.to_vec());
        self.line.changed.notify_all();
        Ok(())
    }

    /// Marks the outbox broken for `why` and shuts the connection down (which also wakes a
    /// writer stuck in a write, and ends the dialer's reading of it).
    fn breaks(&self, q: &mut Queue, why: String) -> io::Error {
        log!("peer {}: {why}; dropping the connection", self.peer);
        q.broken = Some(why.clone());
        let _ = self.stream.shutdown(Shutdown::Both);
        self.line.changed.notify_all();
        io::Error::new(io::ErrorKind::BrokenPipe, why)
    }

    /// Waits up to `linger` for what is queued to be written (a BYE as the server stops),
    /// then shuts the connection down.
    pub(super) fn close(self, linger: Duration) {
        let until = Instant::now() + linger;
        let mut q = self.line.lock();
        while (q.writing || !q.frames.is_empty()) && q.broken.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = self
                .line
                .changed
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        // Closed before the shutdown, so that a writer whose write the shutdown cuts short
        // knows it was told to stop, and does not report a failure.
        q.broken.get_or_insert_with(|| "closed".to_string());
        drop(q);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Drop for Outbox {
    /// The writer stops: after the write it is in, if any; what is still queued is dropped.
    fn drop(&mut self) {
        let mut q = self.line.lock();
        q.broken.get_or_insert_with(|| "closed".to_string());
        q.frames.clear();
        self.line.changed.notify_all();
    }
}

/// The writer thread: the queued bytes, oldest first, until the outbox breaks or closes.
fn write_queued(line: &Line, out: &mut TcpStream, peer: SocketAddrV4) {
    loop {
        let frame = {
            let mut q = line.lock();
            while q.frames.is_empty() && q.broken.is_none() {
                q = line.changed.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.broken.is_some() {
                return;
            }
            q.writing = true;
            q.frames.pop_front().expect("not empty")
        };
        let written = out.write_all(&frame);
        let mut q = line.lock();
        q.writing = false;
        q.bytes -= frame.len();
        line.changed.notify_all();
        if let Err(e) = written {
            if q.broken.is_none() {
                log!("peer {peer}: write failed: {e}; dropping the connection");
                q.broken = Some(format!("write failed: {e}"));
                let _ = out.shutdown(Shutdown::Both);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn sends_to_a_peer_that_does_not_read_return_at_once_and_arrive_whole_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let me = "127.0.0.1:1".parse().unwrap();
        let out = Outbox::new(&s, me).unwrap();
        // 64 MiB while the peer reads nothing, far more than the socket holds: each send
        // must return without waiting (else this thread never reports back).
        let (done, sent) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            for i in 0..64u8 {
                out.send(&vec![i; 1 << 20]).unwrap();
            }
            done.send(()).unwrap();
            out
        });
        sent.recv_timeout(Duration::from_secs(20))
            .expect("a send waited for the peer");
        let out = sender.join().unwrap();
        let mut got = vec![0u8; 64 << 20];
        peer.read_exact(&mut got).unwrap();
        for (i, mib) in got.chunks(1 << 20).enumerate() {
            assert!(mib.iter().all(|&b| b == i as u8), "MiB {i} out of order");
        }
        out.close(Duration::from_secs(1));
        assert_eq!(
            peer.read(&mut [0u8; 1]).unwrap(),
            0,
            "closed after the last byte"
        );
    }
}

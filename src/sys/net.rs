//! A write to a socket that never waits: `send(2)` with `MSG_DONTWAIT`.
//!
//! A blocking `write` to a TCP socket sleeps while the socket's send buffer is full, that is,
//! while the peer does not read. A thread that must never wait for a peer (one that holds a
//! lock the peer may be waiting for, through its own replies) instead sends what fits now, and
//! hands the rest to a thread that may wait. `MSG_DONTWAIT` makes this one call non-blocking
//! without touching the socket's own mode, which other threads reading or writing the same
//! socket (through clones of its descriptor) rely on. `MSG_NOSIGNAL`: a peer gone gives EPIPE,
//! never SIGPIPE.

use super::sys_error;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Sends as much of `buf` as the socket takes at once: the bytes sent, which may be fewer than
/// `buf.len()` (or none: `WouldBlock`).
pub fn send_nowait(s: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let fd = s.as_raw_fd();
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call,
        // and `fd` is an open socket, borrowed from `s`.
        let ret = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(sys_error(format!("send(fd={fd}, {} bytes)", buf.len()), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_full_socket_takes_part_then_nothing_and_never_blocks() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_peer, _) = l.accept().unwrap(); // connected, and never reads
        let chunk = vec![7u8; 1 << 20];
        let mut sent = 0;
        loop {
            match send_nowait(&s, &chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(sent < 1 << 30, "a socket that takes a gigabyte unread?");
        }
        assert!(sent > 0, "an empty socket takes something");
    }
}

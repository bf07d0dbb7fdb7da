//! Waiting, with a time limit, until a file descriptor can be read or written: `poll(2)`.
//!
//! ipclab programs block SIGINT and SIGTERM and take them between bounded waits (see
//! [`super::signal`]). A plain blocking `read(2)` on a terminal would therefore never notice
//! Ctrl-C: the signal stays pending while the read sleeps. So a program that may wait long on
//! an fd first polls it in bounded slices, checking for signals (and for its peer) in between,
//! and only reads once the read will not block.
//!
//! "Ready" includes end of file, hang-up and errors: the read or write that follows reports
//! them.

use super::{cvt, sys_error};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Waits up to `timeout` until a `read` from `fd` will not block. `Ok(false)`: time ran out.
pub fn readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    wait(fd.as_fd().as_raw_fd(), libc::POLLIN, timeout)
}

/// Waits up to `timeout` until a `write` to `fd` will not block. `Ok(false)`: time ran out.
pub fn writable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    wait(fd.as_fd().as_raw_fd(), libc::POLLOUT, timeout)
}

fn wait(fd: i32, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let deadline = super::deadline_after(timeout);
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // Round up, so that a wait of 0.5 ms is not a busy 0 ms poll.
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        match cvt(ret, || format!("poll(fd={fd})")) {
            Ok(0) => return Ok(false),
            Ok(_) => {
                if pfd.revents & libc::POLLNVAL != 0 {
                    return Err(sys_error(
                        format!("poll(fd={fd})"),
                        io::Error::from_raw_os_error(libc::EBADF),
                    ));
                }
                return Ok(true);
            }
            // A signal with a handler interrupted us: wait again for the time that is left.
            Err(e) if super::errno(&e) == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_pipe_is_readable_once_written_and_at_eof() {
        let (r, mut w) = std::io::pipe().unwrap();
        let t = Instant::now();
        assert!(!readable(&r, Duration::from_millis(30)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(25));
        assert!(writable(&w, Duration::ZERO).unwrap());
        w.write_all(b"x").unwrap();
        assert!(readable(&r, Duration::ZERO).unwrap());
        drop(w);
        // End of file (hang-up) also counts as ready: the read will say 0.
        assert!(readable(&r, Duration::ZERO).unwrap());
    }

    #[test]
    fn a_full_pipe_is_not_writable() {
        let (r, mut w) = std::io::pipe().unwrap();
        // Fill the pipe without blocking: write in pieces while poll says there is room.
        while writable(&w, Duration::ZERO).unwrap() {
            w.write_all(&[0u8; 4096]).unwrap();
        }
        assert!(!writable(&w, Duration::from_millis(10)).unwrap());
        drop(r);
    }
}

//! The terminal's line discipline: keys one at a time for a full-screen program, and the
//! terminal given back exactly as it was found.
//!
//! A terminal normally collects a whole line (`ICANON`) and echoes what is typed (`ECHO`) before
//! a program sees anything. A program that wants to react to one key, such as `q` in
//! `ipcview`, turns both off with `tcsetattr`, and must turn them back on however it exits:
//! [`KeyInput`] is the guard that saves the settings and restores them on drop. `ISIG` stays on,
//! so Ctrl-C still sends SIGINT, which the program takes like any termination signal
//! ([`super::signal::TermSignals`]) and then unwinds through this guard.
//!
//! Rules: create a `KeyInput` only for a terminal (`std::io::IsTerminal`); keep it in `main`'s
//! scope (`process::exit` would skip the restore).

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// A terminal switched to one-key input without echo; its old settings come back on drop.
pub struct KeyInput {
    fd: RawFd,
    saved: libc::termios,
}

impl KeyInput {
    /// `tcgetattr`, then `tcsetattr` without `ICANON` and `ECHO`: each key is readable at once
    /// (`VMIN` 1, `VTIME` 0) and is not printed.
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<KeyInput> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios is plain data; all-zero is a valid value for tcgetattr to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios.
        cvt(unsafe { libc::tcgetattr(fd, &mut saved) }, || {
            format!("tcgetattr(fd={fd})")
        })?;
        let mut keys = saved;
        keys.c_lflag &= !(libc::ICANON | libc::ECHO);
        keys.c_cc[libc::VMIN] = 1;
        keys.c_cc[libc::VTIME] = 0;
        // SAFETY: `keys` is a valid termios, read by the call only.
        cvt(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &keys) }, || {
            format!("tcsetattr(fd={fd})")
        })?;
        Ok(KeyInput { fd, saved })
    }
}

impl Drop for KeyInput {
    fn drop(&mut self) {
        // SAFETY: `saved` is the valid termios that tcgetattr filled. A failure (the terminal
        // went away) leaves nothing to restore, so it is ignored rather than panicking here.
        let _ = unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

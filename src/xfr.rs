//! Seed 002: `shm_writer` puts a message (or a whole stream) into a shared memory segment and
//! `shm_reader` takes it out. The classic assignment, done so that it cannot hang, leak or race.
//!
//! # The objects, and who owns them
//!
//! Both programs turn `-k PATH -i ID` into one key with `ftok`, and find each other by it. The
//! **writer creates and owns** both objects under that key, and removes them when it exits
//! (also on an error, a timeout, SIGINT or SIGTERM: they are held by [`Owner`](crate::sys::Owner) guards):
//!
//! - a semaphore set of [`NSEMS`] counters (the rendezvous and the flow control), and
//! - a segment: a header, then the message or a ring of slots (layout in [`crate::wire::xfr`]).
//!
//! The reader only opens, attaches read-only ("as we will only read") and posts semaphores. It
//! removes nothing, with one exception: objects whose writer is provably dead (its `SEM_UNDO`
//! hold on [`SEM_WRITER`] was undone by the kernel when it died) are orphans nobody else will
//! ever remove, and the reader removes them and says so. A writer that meets a dead writer's
//! orphans on its key does the same before it creates its own.
//!
//! # The semaphores
//!
//! | index          | meaning                                            | set by                     |
//! |----------------|----------------------------------------------------|----------------------------|
//! | [`SEM_WRITER`] | 1 while the writer lives                           | writer, +1 with `SEM_UNDO` |
//! | [`SEM_READER`] | 1 while the reader lives                           | reader, +1 with `SEM_UNDO` |
//! | [`SEM_CLAIMED`]| 1 once a reader has claimed the data (never undone)| reader                     |
//! | [`SEM_FULL`]   | slots holding data for the reader                  | writer posts, reader takes |
//! | [`SEM_EMPTY`]  | slots free for the writer (message: 1 = "taken")   | reader posts, writer takes |
//!
//! `SEM_UNDO` is what makes a killed peer visible: when a process dies, even by SIGKILL, the
//! kernel reverses its undoable operations, so its "alive" counter drops to 0 at the moment of
//! death (not when a zombie is reaped, and with no pid that could be reused).
//!
//! # The protocol
//!
//! ```text
//! writer                                        reader
//! semget(key, 5, CREAT|EXCL) -> set (op time 0)
//! shmget(key, size, CREAT|EXCL), write header
//! [message mode: write the message]
//! semop(WRITER +1 undo, EMPTY +slots | FULL +1)   polls semget(key) every 10 ms until the
//!   = publish: the set's op time is now set        set exists and has been published;
//!                                                 attaches read-only, checks the header;
//!                                                 semop(CLAIMED ==0, READER +1 undo, CLAIMED +1)
//! stream: wait EMPTY, read(stdin) into slot,      wait FULL, write(stdout) from slot,
//!         post FULL; a 0-byte slot ends it         post EMPTY; stops after the 0-byte slot
//! wait EMPTY (message: -1; stream: -slots: the
//!   reader has emptied every slot)
//! remove segment, then set; exit 0               exit 0
//! ```
//!
//! Either side may start first. The reader waits up to `--timeout` for a writer to publish;
//! the writer waits up to `--timeout` for a reader to claim. Once both are there, neither
//! gives up on a slow peer (a stream may pause), but every wait is cut into slices of
//! [`XFR_SLICE`](crate::params::XFR_SLICE), and between two slices each side checks for
//! SIGINT/SIGTERM and for its peer's "alive" counter: a dead peer stops the survivor within a
//! slice, with a message and exit status 1.
//!
//! # Layout
//! - this file: the settings ([`Config`]) and the two entry points, [`writer`] and [`reader`].
//! - [`objects`]: the semaphore set, creating and publishing (writer), finding and claiming
//!   (reader), orphans, and [`objects::Watch`], the sliced wait that watches the peer.
//! - [`message`]: message mode, one message through the segment.
//! - [`stream`]: stream mode, a ring of slots moved with `read(2)`/`write(2)` straight into and
//!   out of the segment.

pub mod message;
pub mod objects;
pub mod stream;

pub use crate::wire::xfr::Mode;
pub use objects::{NSEMS, SEM_CLAIMED, SEM_EMPTY, SEM_FULL, SEM_READER, SEM_WRITER};

use crate::params;
use crate::sys::signal::TermSignals;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the command line can set, with the defaults of [`crate::params`].
#[derive(Clone, Debug)]
pub struct Config {
    /// `-k/--key-path`: the file `ftok` turns into the key.
    pub key_path: PathBuf,
    /// `-i/--proj-id`: the `ftok` project id, 1..=255.
    pub proj_id: u8,
    /// `-t/--timeout`: how long to wait for the other side to show up.
    pub timeout: Duration,
    /// `-m/--mode` (writer): permission bits of both objects.
    pub perms: u32,
    /// `--stream`: a stream through a ring of slots instead of one message.
    pub stream: bool,
    /// `-s/--size` (writer, message mode): room for the message, in bytes.
    pub size: usize,
    /// `--slots` (writer, stream mode).
    pub slots: u32,
    /// `--slot-size` (writer, stream mode).
    pub slot_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            key_path: PathBuf::from(params::XFR_KEY_PATH),
            proj_id: params::XFR_PROJ_ID,
            timeout: params::XFR_TIMEOUT,
            perms: params::DEFAULT_MODE,
            stream: false,
            size: params::XFR_SIZE,
            slots: params::XFR_SLOTS,
            slot_size: params::XFR_SLOT_SIZE,
        }
    }
}

impl Config {
    /// Checks the sizes against the limits in [`crate::params`]; the text names the option.
    pub fn check(&self) -> Result<(), String> {
        if self.proj_id == 0 {
            return Err("--proj-id: must be 1..255 (ftok ignores all but the low 8 bits)".into());
        }
        if !(1..=params::XFR_MAX_SIZE).contains(&self.size) {
            return Err(format!("--size: must be 1..{}", params::XFR_MAX_SIZE));
        }
        if !(1..=params::XFR_MAX_SLOTS).contains(&self.slots) {
            return Err(format!("--slots: must be 1..{}", params::XFR_MAX_SLOTS));
        }
        if !(1..=params::XFR_MAX_SLOT_SIZE).contains(&self.slot_size) {
            return Err(format!(
                "--slot-size: must be 1..{}",
                params::XFR_MAX_SLOT_SIZE
            ));
        }
        crate::sys::check_mode(self.perms).map_err(|e| format!("--mode: {e}"))?;
        Ok(())
    }
}

/// What a finished transfer moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Payload bytes.
    pub bytes: u64,
    /// Slots used (1 for a message).
    pub blocks: u64,
}

/// `shm_writer`: sends `words` joined by spaces plus a newline, as `echo` would, or, with no
/// words, stdin: as one message, or with [`Config::stream`] as a stream.
pub fn writer(cfg: &Config, words: &[String], sigs: &TermSignals) -> io::Result<Report> {
    cfg.check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if cfg.stream {
        stream::write(cfg, io::stdin(), sigs)
    } else {
        let msg = if words.is_empty() {
            message::read_input(io::stdin(), cfg.size, sigs)?
        } else {
            message::from_words(words)
        };
        message::write(cfg, &msg, sigs)
    }
}

/// `shm_reader`: takes the message (or with [`Config::stream`], the stream) and writes its
/// bytes, exactly, to stdout.
pub fn reader(cfg: &Config, sigs: &TermSignals) -> io::Result<Report> {
    cfg.check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if cfg.stream {
        stream::read(cfg, io::stdout(), sigs)
    } else {
        message::read(cfg, io::stdout(), sigs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_the_limits_are_named() {
        assert!(Config::default().check().is_ok());
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.check().unwrap_err()
        };
        assert!(bad(|c| c.size = 0).starts_with("--size"));
        assert!(bad(|c| c.slots = params::XFR_MAX_SLOTS + 1).starts_with("--slots"));
        assert!(bad(|c| c.slot_size = 0).starts_with("--slot-size"));
        assert!(bad(|c| c.perms = 0o1777).starts_with("--mode"));
    }
}

//! `flock(2)`: advisory whole-file locks, shared (many readers) or exclusive (one writer).
//!
//! A flock belongs to the *open file description*, not to the process or the thread: two
//! threads using the same `File` share one lock, so the second "exclusive" lock succeeds at once.
//! Each party that must exclude the others needs its own `open` of the file. The kernel drops
//! the lock when the last descriptor of that description closes, which includes the process
//! dying by SIGKILL: a crashed holder never blocks the others.
//!
//! Rules: the lock is advisory, so it protects only against parties that also take it.
//! [`FileLock`] unlocks on drop.

use super::cvt_r;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Which lock to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// `LOCK_SH`: any number of holders at once.
    Shared,
    /// `LOCK_EX`: one holder, and no shared holders.
    Exclusive,
}

fn flock(file: &File, op: libc::c_int, what: &str) -> io::Result<()> {
    let fd = file.as_raw_fd();
    cvt_r(
        // SAFETY: flock takes a descriptor we own (borrowed through `file`) and no pointers.
        || unsafe { libc::flock(fd, op) },
        || format!("flock(fd={fd}, {what})"),
    )?;
    crate::trace!("flock(fd={fd}, {what})");
    Ok(())
}

/// A held flock; `LOCK_UN` on drop.
#[derive(Debug)]
pub struct FileLock<'f> {
    file: &'f File,
}

impl<'f> FileLock<'f> {
    /// Takes the lock, sleeping while it is held incompatibly. Retries EINTR.
    pub fn lock(file: &'f File, kind: LockKind) -> io::Result<FileLock<'f>> {
        match kind {
            LockKind::Shared => flock(file, libc::LOCK_SH, "LOCK_SH")?,
            LockKind::Exclusive => flock(file, libc::LOCK_EX, "LOCK_EX")?,
        }
        Ok(FileLock { file })
    }

    /// Takes the lock only if that needs no wait: `Ok(None)` if it is held incompatibly.
    pub fn try_lock(file: &'f File, kind: LockKind) -> io::Result<Option<FileLock<'f>>> {
        let (op, what) = match kind {
            LockKind::Shared => (libc::LOCK_SH, "LOCK_SH|LOCK_NB"),
            LockKind::Exclusive => (libc::LOCK_EX, "LOCK_EX|LOCK_NB"),
        };
        match flock(file, op | libc::LOCK_NB, what) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(e) if super::errno(&e) == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = flock(self.file, libc::LOCK_UN, "LOCK_UN") {
            crate::trace!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_other_descriptions_but_not_the_same_one() {
        let dir = crate::testutil::TempDir::new("flock");
        let path = dir.path().join("f");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        let held = FileLock::lock(&a, LockKind::Exclusive).unwrap();
        assert!(FileLock::try_lock(&b, LockKind::Shared).unwrap().is_none());
        // The same open file description already holds it: this "succeeds", which is the trap.
        assert!(FileLock::try_lock(&a, LockKind::Exclusive)
            .unwrap()
            .is_some());
        drop(held);
        let s1 = FileLock::try_lock(&b, LockKind::Shared).unwrap();
        let c = File::open(&path).unwrap();
        assert!(s1.is_some() && FileLock::try_lock(&c, LockKind::Shared).unwrap().is_some());
    }
}

//! Termination signals, taken synchronously so that owners get to clean up.
//!
//! The default action of SIGINT (Ctrl-C) and SIGTERM is to end the process at once, which skips
//! every destructor, so every segment, semaphore set and queue the program owns would be left in
//! the kernel. Instead of a signal handler (which may do almost nothing safely), ipclab *blocks*
//! these signals and takes them as ordinary events:
//!
//! 1. `main` calls [`TermSignals::block`] first, before it starts any thread, so that every
//!    thread inherits the blocked mask and no thread is ever interrupted by them.
//! 2. The program asks [`TermSignals::pending`] between two bounded waits (a single-threaded
//!    loop), or one thread sleeps in [`TermSignals::wait`] and tells the others (a server).
//! 3. On a signal, the program returns from `main` normally and the owners' `Drop`s remove the
//!    objects.
//!
//! A blocked signal stays pending until taken, so none is lost between two checks. Children
//! started with `std::process::Command` get the default mask back, so they behave normally.

use std::io;
use std::time::{Duration, Instant};

/// The set SIGINT, SIGTERM and SIGHUP, blocked in this thread (and in threads it starts later).
#[derive(Clone, Copy)]
pub struct TermSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for TermSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TermSignals(SIGINT, SIGTERM, SIGHUP)")
    }
}

impl TermSignals {
    /// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread. Call it before spawning threads.
    pub fn block() -> io::Result<TermSignals> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t for these calls to fill in.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
        }
        // SAFETY: `set` is initialised; the old mask is not wanted (null).
        let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(super::sys_error(
                "pthread_sigmask(SIG_BLOCK)",
                io::Error::from_raw_os_error(ret),
            ));
        }
        Ok(TermSignals { set })
    }

    /// Takes one pending termination signal without waiting, if there is one.
    pub fn pending(&self) -> Option<i32> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits up to `timeout` for a termination signal and takes it.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<i32> {
        let deadline = super::deadline_after(timeout);
        loop {
            // After EINTR, only the time that is left (see the rules in `sys`).
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
            };
            // SAFETY: `set` and `ts` are valid; no siginfo is wanted (null).
            let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            if sig > 0 {
                crate::trace!("took signal {sig}");
                return Some(sig);
            }
            // EAGAIN: no signal in time. EINTR: some other signal's handler ran; try again.
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return None;
            }
        }
    }

    /// Waits for a termination signal, however long it takes, and returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is valid and `sig` is a writable int.
        let ret = unsafe { libc::sigwait(&self.set, &mut sig) };
        if ret != 0 {
            return Err(super::sys_error(
                "sigwait",
                io::Error::from_raw_os_error(ret),
            ));
        }
        crate::trace!("took signal {sig}");
        Ok(sig)
    }
}

/// The conventional exit status of a process ended by signal `sig`: 128 + sig.
pub fn exit_status_for(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_waits_until_taken() {
        // Blocked in this test's thread only; the signal is sent to this thread directly.
        let sigs = TermSignals::block().unwrap();
        assert_eq!(sigs.pending(), None);
        // Sending a real SIGTERM here would kill the test runner's other threads, which do not
        // block it; the binaries' integration tests send real signals. Here: the timeout path.
        let t = std::time::Instant::now();
        assert_eq!(sigs.wait_timeout(Duration::from_millis(30)), None);
        assert!(t.elapsed() >= Duration::from_millis(25));
    }
}

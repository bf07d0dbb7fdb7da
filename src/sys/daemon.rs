//! Becoming a daemon: `fork`, `setsid`, no inherited fds, stdio on `/dev/null`, reaping a child.
//!
//! A server started from a shell should give the prompt back, keep running when the terminal
//! closes, and still tell the person who started it whether it came up. The classic recipe
//! (Stevens, *Advanced Programming in the UNIX Environment*, ch. 13) is:
//!
//! 1. [`fork`]: the parent will exit, so the shell's `&&` sees its status; the child is not a
//!    process-group leader, which step 2 needs.
//! 2. [`setsid`]: the child starts a new session with no controlling terminal, so a closing
//!    terminal's SIGHUP and the shell's job control no longer reach it.
//! 3. [`close_fds_above_stdio`]: every descriptor the starting process left open (a file, a
//!    pipe whose reader waits for EOF) is closed, so the daemon holds nothing of its parent's.
//! 4. [`stdio_to_dev_null`]: fds 0, 1, 2 point at `/dev/null`, so the daemon neither holds the
//!    terminal (or a test's pipe) open nor dies writing to a closed one.
//!
//! Rules: fork only while the process has **one thread**. `fork` copies only the calling thread;
//! a lock held by any other thread at that instant stays locked forever in the child (the
//! allocator's, stdout's). [`fork`] checks `/proc/self/status` and refuses otherwise. The parent
//! should learn the outcome through a pipe (the child writes, then closes), not by sleeping.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Which side of a [`fork`] we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The original process; `child` is the new process's pid.
    Parent { child: i32 },
    /// The new process.
    Child,
}

/// The number of threads in this process, from `/proc/self/status`.
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

/// `fork()`, refused when the process has more than one thread (see the module rules).
pub fn fork() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "fork: refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked above), so the child gets a consistent
    // copy of every lock and buffer; fork takes no pointers.
    let pid = cvt(unsafe { libc::fork() }, || "fork()".to_string())?;
    if pid == 0 {
        crate::trace!("fork() = 0 (in the child, pid {})", std::process::id());
        Ok(Forked::Child)
    } else {
        crate::trace!("fork() = child pid {pid}");
        Ok(Forked::Parent { child: pid })
    }
}

/// `setsid()`: a new session and process group, with no controlling terminal. Returns the
/// new session id (our own pid).
pub fn setsid() -> io::Result<i32> {
    // SAFETY: setsid takes no arguments.
    let sid = cvt(unsafe { libc::setsid() }, || "setsid()".to_string())?;
    crate::trace!("setsid() = session {sid}");
    Ok(sid)
}

/// Closes every descriptor above 2 except those in `keep` (a daemon's report pipe, say). The
/// open descriptors are listed from `/proc/self/fd` first and closed after, so the listing's
/// own descriptor is not closed under it. Call it with one thread, before anything else opens
/// a descriptor that Rust owns (closing a `File`'s fd behind its back would break it).
pub fn close_fds_above_stdio(keep: &[RawFd]) -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // SAFETY: close takes a descriptor number; nothing in this process owns these (the
        // caller's rule), and the one that listed them was closed when read_dir ended: that
        // one fails with EBADF, which is ignored.
        let ret = unsafe { libc::close(fd) };
        if ret == 0 {
            crate::trace!("close({fd}): inherited");
        }
    }
    Ok(())
}

/// Points stdin, stdout and stderr at `/dev/null` with `dup2`.
pub fn stdio_to_dev_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 takes two descriptor numbers; `null` is open for the whole loop, and
        // replacing fds 0-2 is exactly the intent (nothing in Rust owns them as a File).
        cvt(unsafe { libc::dup2(null.as_raw_fd(), fd) }, || {
            format!("dup2(/dev/null, {fd})")
        })?;
    }
    Ok(())
}

/// `waitpid(pid, 0)`: waits for a child to end and returns its raw wait status.
pub fn wait_child(pid: i32) -> io::Result<i32> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid int for the kernel to write.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            crate::trace!("waitpid({pid}) = status {status}");
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(super::sys_error(format!("waitpid({pid})"), e));
        }
    }
}

/// `shutdown(fd, SHUT_RDWR)` on a listening socket: on Linux, a thread blocked in `accept` on
/// it wakes up with an error. This is how a server's accept loop is stopped from another thread
/// without a self-connection trick.
pub fn shutdown_listener(listener: &std::net::TcpListener) -> io::Result<()> {
    let fd = listener.as_raw_fd();
    // SAFETY: shutdown takes a descriptor borrowed from `listener` and no pointers.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }, || {
        format!("shutdown(listener fd={fd}, SHUT_RDWR)")
    })?;
    crate::trace!("shutdown(listener fd={fd}, SHUT_RDWR)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_refuses_while_another_thread_runs() {
        // A second thread for sure (the harness may run this test on the main thread).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let n = thread_count().unwrap();
        assert!(n >= 2, "{n}");
        let e = fork().unwrap_err();
        assert!(e.to_string().contains("refusing to fork"), "{e}");
        drop(tx);
        let _ = other.join();
    }

    #[test]
    fn shutdown_wakes_a_blocked_accept() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = std::sync::Arc::new(l);
        let l2 = l.clone();
        let h = std::thread::spawn(move || l2.accept().map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        shutdown_listener(&l).unwrap();
        assert!(h.join().unwrap().is_err());
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_child, which is what is tested
    fn waiting_for_a_spawned_child_gives_its_status() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let status = wait_child(child.id() as i32).unwrap();
        assert_eq!(status, 0);
    }
}

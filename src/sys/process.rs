//! Processes by pid: is one alive, signal it, what program is it.
//!
//! These serve the cleanup rules of ipclab: an IPC object records its creator's pid
//! (`shm_cpid`), and a tool that finds an object can ask whether that creator still runs before
//! it decides the object is an orphan, or check that a pid really is the server it expects
//! before it sends a signal (pids are reused).

use super::cvt;
use std::io;

pub use libc::{SIGINT, SIGKILL, SIGTERM};

/// Sends signal `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        // kill(0, ..) and kill(-1, ..) mean "my group" and "everyone": never what we want.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("kill: refusing pid {pid}"),
        ));
    }
    // SAFETY: kill takes no pointers.
    let ret = unsafe { libc::kill(pid, sig) };
    cvt(ret, || format!("kill(pid={pid}, sig={sig})"))?;
    crate::trace!("kill(pid={pid}, sig={sig})");
    Ok(())
}

/// Whether process `pid` is running (it may belong to another user: EPERM still means "it
/// exists"). A zombie, which has exited and only waits for its parent to collect its status,
/// is *not* running: its IPC objects are orphans, and it will never answer. (`kill(pid, 0)`
/// alone cannot tell, since it succeeds on a zombie; `/proc/PID/stat` can.)
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 checks existence and permission without sending anything.
    let ret = unsafe { libc::kill(pid, 0) };
    let exists = ret == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !matches!(state(pid), Some('Z' | 'X'))
}

/// The scheduler state of `pid` from `/proc/PID/stat`: `R` running, `S` sleeping, `T` stopped
/// (SIGSTOP), `Z` zombie, and so on. `None` if there is no such process (or /proc hides it).
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the name may contain spaces and ')', so look after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// The program name of a live pid (`/proc/PID/comm`, at most 15 bytes), if it can be read.
pub fn program_name(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The calling thread's id, as `gettid` returns it: distinct for every thread on the machine.
pub fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_named() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        assert!(program_name(me).is_some());
        assert!(!alive(0));
        assert!(kill(0, 0).is_err());
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(alive(pid));
        kill(pid, SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}

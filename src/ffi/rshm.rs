//! The RSHM calls for C programs: `rshmget`, `rshmat`, `rshmdt`, `rshmctl`, `rshmChanged`,
//! `rshmChanged_range` and `rshm_wait_changed`, exported with C names from the static library (`libipclab.a`) and
//! declared in `include/rshm.h`.
//!
//! Each calls the Rust API in [`crate::rshm::api`] through [`entry`], which turns its
//! `io::Result` (or a panic) into C's convention: `-1` (or `(void *)-1`) with `errno` set, and
//! the message kept for [`rshm_error`]. The node is chosen by the `RSHM_PORT` environment
//! variable; a value that is not a port is `EINVAL`.
//!
//! `rshmat` returns the address where the segment is mapped *in the caller's process*: the
//! seed's `void rshmat(int, void *)` could not hand the caller a usable address (see
//! [`crate::rshm`]). C has no guard to drop, so the attachment guards live in this file's
//! process-wide table, found again by `rshmdt` from that address.
//!
//! # fork
//! A child made by `fork` inherits the table, the mappings and the table's lock. Two rules
//! keep it right:
//! - **The table knows its process.** It records the pid that filled it; in a child, the first
//!   call finds another pid and forgets the inherited guards *without* detaching or telling
//!   the server: they count the parent's attaches, which the parent still holds. (The child's
//!   copies of the mappings stay usable until it exits or execs; its `rshmdt` of one is
//!   EINVAL.) So a child can never count down, or destroy, what its parent attached.
//! - **The lock is never inherited held.** `pthread_atfork` handlers take the lock before
//!   `fork` and release it in both parent and child, so a thread that was inside `rshmat`
//!   when another thread forked cannot leave the child's copy locked for ever.
//!
//! The per-thread "seen" table of `rshm_wait_changed` is reset the same way (by pid).

use super::entry;
use crate::params::{RSHM_DEFAULT_PORT, RSHM_PORT_ENV, RSHM_WAIT_SLICE};
use crate::rshm::api::{Node, RshmAttachment};
use crate::sys::sys_error;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::panic::catch_unwind;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

/// What `rshmat` returns on failure, as `shmat` does.
const FAILED_ADDR: *mut c_void = usize::MAX as *mut c_void;

/// The node named by `RSHM_PORT` (default 7070). Read with `getenv`, not `std::env::var`:
/// std's environment lock could be held by another thread at a `fork`, and the child would
/// wait for it for ever; `getenv` takes no lock.
fn node() -> io::Result<Node> {
    let name = CString::new(RSHM_PORT_ENV).expect("no NUL in a constant");
    // SAFETY: `name` is NUL-terminated; getenv returns NULL or a pointer to the environment's
    // NUL-terminated string, valid until the environment changes (C's own rule for getenv),
    // and we copy it out at once.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    let port = if value.is_null() {
        RSHM_DEFAULT_PORT
    } else {
        // SAFETY: as above: a valid NUL-terminated string.
        let text = unsafe { CStr::from_ptr(value) }.to_string_lossy();
        match text.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(sys_error(
                    format!("{RSHM_PORT_ENV}='{text}' is not a port number"),
                    io::Error::from_raw_os_error(libc::EINVAL),
                ))
            }
        }
    };
    Node::open(port)
}

/// The attachments made through `rshmat` in this process (`pid`), until `rshmdt`.
struct Table {
    /// The process whose attachments these are (0: none yet). Another pid: we are its child.
    pid: u32,
    atts: Vec<RshmAttachment>,
}

/// Protected by its own lock; held only to push, find or remove a guard (never over a call to
/// the server), and taken around `fork` by the handlers below.
static TABLE: Mutex<Table> = Mutex::new(Table {
    pid: 0,
    atts: Vec::new(),
});

thread_local! {
    /// The table's guard, held from the `fork` prepare handler to the parent's or child's
    /// handler: they all run in the thread that calls `fork`.
    static HELD_FOR_FORK: RefCell<Option<MutexGuard<'static, Table>>> = const { RefCell::new(None) };
}

extern "C" fn before_fork() {
    // No unwinding out of a C callback: a panic here (there is none to expect) is dropped.
    let _ = catch_unwind(|| {
        let g = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        // If this thread's locals are gone (fork from a thread-exit destructor), the guard
        // drops here and the lock is not held across fork: the old risk, in a corner case.
        let _ = HELD_FOR_FORK.try_with(|h| *h.borrow_mut() = Some(g));
    });
}

extern "C" fn after_fork() {
    let _ = catch_unwind(|| {
        let _ = HELD_FOR_FORK.try_with(|h| h.borrow_mut().take());
    });
}

/// The table, locked, with a forked child's inherited guards forgotten (see the header).
fn table() -> MutexGuard<'static, Table> {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` that never unwind (catch_unwind)
        // and stay valid for the life of the program (they are functions of this library).
        // A failure (ENOMEM) only leaves fork unguarded, so it is not reported.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
    });
    let mut t = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let me = std::process::id();
    if t.pid != me {
        // The parent's attaches, which the parent will detach: no shmdt, no DT to the server.
        for inherited in t.atts.drain(..) {
            std::mem::forget(inherited);
        }
        t.pid = me;
    }
    t
}

/// `int rshmget(key_t key, size_t size)`: the rshmid, or -1.
#[no_mangle]
pub extern "C" fn rshmget(key: c_int, size: usize) -> c_int {
    entry(-1, || node()?.rshmget(key, size))
}

/// `void *rshmat(int rshmid, const void *addr)`: the address in this process, or `(void *)-1`.
/// `addr` must be NULL (the kernel chooses), as ipclab's `shmat` always does.
#[no_mangle]
pub extern "C" fn rshmat(rshmid: c_int, addr: *const c_void) -> *mut c_void {
    entry(FAILED_ADDR, || {
        if !addr.is_null() {
            return Err(sys_error(
                "rshmat: addr must be NULL",
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let att = node()?.rshmat(rshmid)?;
        let at = att.addr();
        table().atts.push(att);
        Ok(at as *mut c_void)
    })
}

/// `int rshmdt(int rshmid, void *addr)`: 0 or -1.
#[no_mangle]
pub extern "C" fn rshmdt(rshmid: c_int, addr: *mut c_void) -> c_int {
    entry(-1, || {
        let att = {
            let mut t = table();
            let i = t
                .atts
                .iter()
                .position(|a| a.addr() == addr as usize && a.rshmid() == rshmid)
                .ok_or_else(|| {
                    sys_error(
                        format!(
                            "rshmdt(rshmid={rshmid}, addr={addr:p}): not attached by this process"
                        ),
                        io::Error::from_raw_os_error(libc::EINVAL),
                    )
                })?;
            t.atts.swap_remove(i)
        };
        // The server is told with the lock released.
        att.node().rshmdt(att).map(|()| 0)
    })
}

/// `int rshmctl(int rshmid, int cmd)`: `cmd` must be IPC_RMID; 0 or -1.
#[no_mangle]
pub extern "C" fn rshmctl(rshmid: c_int, cmd: c_int) -> c_int {
    entry(-1, || node()?.rshmctl(rshmid, cmd).map(|()| 0))
}

/// `int rshmChanged(int rshmid)`: 0 once every connected peer has the update, or -1.
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn rshmChanged(rshmid: c_int) -> c_int {
    entry(-1, || node()?.rshm_changed(rshmid).map(|_| 0))
}

/// `int rshmChanged_range(int rshmid, size_t offset, size_t len)`: as `rshmChanged`, for the
/// bytes `[offset, offset + len)` only; 0, or -1 (EINVAL: len 0, or past the segment's end).
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn rshmChanged_range(rshmid: c_int, offset: usize, len: usize) -> c_int {
    entry(-1, || {
        node()?
            .rshm_changed_range(rshmid, offset as u64, len as u64)
            .map(|_| 0)
    })
}

/// `int rshm_wait_changed(int rshmid, int timeout_ms)`: 1 changed, 0 timed out, -1 error. A
/// negative timeout waits for ever, as `poll`'s does: in slices of [`RSHM_WAIT_SLICE`], so
/// that a server that died meanwhile is an error, not a hang.
#[no_mangle]
pub extern "C" fn rshm_wait_changed(rshmid: c_int, timeout_ms: c_int) -> c_int {
    entry(-1, || {
        let node = node()?;
        match u64::try_from(timeout_ms) {
            Ok(ms) => Ok(c_int::from(
                node.rshm_wait_changed(rshmid, Duration::from_millis(ms))?,
            )),
            Err(_) => loop {
                if node.rshm_wait_changed(rshmid, RSHM_WAIT_SLICE)? {
                    return Ok(1);
                }
            },
        }
    })
}

/// `const char *rshm_error(void)`: the message of this thread's last failed call ("" if none).
/// Valid until this thread's next failing call or its end (see [`super`]).
#[no_mangle]
pub extern "C" fn rshm_error() -> *const c_char {
    super::error_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_is_minus_one_with_errno_and_a_message() {
        // Port 1 never has an rshm_server (its queue key is 0x52530001).
        std::env::set_var("RSHM_PORT", "1");
        assert_eq!(rshmget(0x1234, 64), -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOENT)
        );
        // SAFETY: rshm_error returns a valid NUL-terminated string owned by this thread.
        let msg = unsafe { std::ffi::CStr::from_ptr(rshm_error()) };
        assert!(
            msg.to_str()
                .unwrap()
                .starts_with("no rshm_server on port 1"),
            "{msg:?}"
        );
        assert_eq!(rshmctl(5, 99), -1);
        assert_eq!(rshmat(5, 8 as *const c_void), FAILED_ADDR);
    }
}

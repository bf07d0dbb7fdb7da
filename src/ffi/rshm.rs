//! The RSHM calls for C programs: `rshmget`, `rshmat`, `rshmdt`, `rshmctl`, `rshmChanged` and
//! `rshm_wait_changed`, exported with C names from the static library (`libipclab.a`) and
//! declared in `include/rshm.h`.
//!
//! They do nothing unsafe themselves: each calls the Rust API in [`crate::rshm::api`] through
//! [`entry`], which turns its `io::Result` (or a panic) into C's convention: `-1` (or
//! `(void *)-1`) with `errno` set, and the message kept for [`rshm_error`]. The node is chosen
//! by the `RSHM_PORT` environment variable.
//!
//! `rshmat` returns the address where the segment is mapped *in the caller's process*: the
//! seed's `void rshmat(int, void *)` could not hand the caller a usable address (see
//! [`crate::rshm`]). The attachment guard is kept in a process-wide table, found again by
//! `rshmdt` from that address.

use super::entry;
use crate::rshm::api::{c_rshmat, c_rshmdt, Node};
use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::time::Duration;

/// What `rshmat` returns on failure, as `shmat` does.
const FAILED_ADDR: *mut c_void = usize::MAX as *mut c_void;

fn node() -> io::Result<Node> {
    Node::from_env()
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
            return Err(crate::sys::sys_error(
                "rshmat: addr must be NULL",
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        Ok(c_rshmat(rshmid)? as *mut c_void)
    })
}

/// `int rshmdt(int rshmid, void *addr)`: 0 or -1.
#[no_mangle]
pub extern "C" fn rshmdt(rshmid: c_int, addr: *mut c_void) -> c_int {
    entry(-1, || c_rshmdt(rshmid, addr as usize).map(|()| 0))
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

/// `int rshm_wait_changed(int rshmid, int timeout_ms)`: 1 changed, 0 timed out, -1 error.
#[no_mangle]
pub extern "C" fn rshm_wait_changed(rshmid: c_int, timeout_ms: c_int) -> c_int {
    let t = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    entry(-1, || {
        Ok(c_int::from(node()?.rshm_wait_changed(rshmid, t)?))
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

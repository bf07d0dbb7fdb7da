//! The C boundary: the functions a C program calls through `include/*.h` and `libipclab.a`.
//!
//! This is the second of the two places where ipclab allows `unsafe` (the first is the kernel
//! boundary, [`crate::sys`]). `#[no_mangle]` gives a function the plain C name the linker looks
//! for, and `extern "C"` gives it C's calling convention. The rules every function here keeps:
//!
//! - **It sits above the features, never below.** It calls the safe Rust API of a feature and
//!   turns its `io::Result` into C's convention: `-1` (or `(void *)-1`) with `errno` set, and
//!   the message kept for the header's `*_error()` call. Nothing in `sys` imports from here.
//! - **It never unwinds into C, and never aborts.** A Rust panic that reaches an `extern "C"`
//!   function aborts the whole C program, so every entry point runs its body through [`entry`],
//!   which turns a panic into an ordinary failure (`errno` = `EIO`).
//! - **No `with` on a thread-local.** `LocalKey::with` panics once the thread's locals are
//!   destroyed, which is exactly when C's `atexit` handlers and thread-exit destructors run.
//!   Locals that C can reach are either `const` without `Drop` (never destroyed, as below) or
//!   read with `try_with` and a fallback (the "seen" table in [`crate::rshm::api`]).
//! - **A forked child is not its parent.** State that belongs to a process (the attachment
//!   table, a thread's "seen" table) records its pid and is reset in a child (see [`rshm`]).
//! - **The error text outlives the call, like `strerror`'s.** It is kept in a fixed buffer of
//!   the calling thread ([`ERROR_LEN`] bytes), which has no destructor, so reading or writing it
//!   can never fail, even from an `atexit` handler or a thread-exit destructor. The pointer the
//!   C program gets stays valid until the same thread's next failing call, or the thread's end.
//!
//! # Layout
//! - [`rshm`]: `rshmget`, `rshmat`, `rshmdt`, `rshmctl`, `rshmChanged`, `rshm_wait_changed` and
//!   `rshm_error`, declared in `include/rshm.h` (seed 000).
//! - [`shmem`]: `shmem_open`, `shmem_close`, `shmem_read`, `shmem_write`, `shmem_delete`,
//!   `shmem_update` and `shmem_error`, declared in `include/shmem.h` (seed 004).

pub mod rshm;
pub mod shmem;

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The size of each thread's error buffer, NUL included; longer messages are cut.
pub const ERROR_LEN: usize = 256;

thread_local! {
    // `const` initialisation of a type without `Drop`: the buffer needs no lazy set-up and
    // registers no destructor, so `with` cannot fail, whenever in the thread's life it runs.
    static LAST_ERROR: Cell<[u8; ERROR_LEN]> = const { Cell::new([0; ERROR_LEN]) };
}

/// Sets this thread's `errno`.
pub fn set_errno(n: c_int) {
    // SAFETY: __errno_location returns a pointer to this thread's errno, always valid to write.
    unsafe { *libc::__errno_location() = n };
}

/// Keeps `text` (cut to fit, at a character boundary, without NULs) as this thread's last error.
pub fn set_error_text(text: &str) {
    let mut buf = [0u8; ERROR_LEN];
    let mut end = text.len().min(ERROR_LEN - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (slot, b) in buf.iter_mut().zip(text[..end].bytes()) {
        *slot = if b == 0 { b' ' } else { b };
    }
    LAST_ERROR.with(|l| l.set(buf));
}

/// The NUL-terminated text of this thread's last error ("" if none), for `*_error()`.
pub fn error_text() -> *const c_char {
    LAST_ERROR.with(|l| l.as_ptr().cast::<c_char>())
}

/// Records `e` for the error call, sets errno from it (if it carries none, the errno of its
/// kind: a bad argument is EINVAL, not an I/O error; EIO when no kind fits).
pub fn record(e: &io::Error) {
    set_error_text(&e.to_string());
    set_errno(crate::sys::errno(e).unwrap_or(match e.kind() {
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        _ => libc::EIO,
    }));
}

/// Runs an entry point's body: its value on success; on an error, or on a panic (a bug in
/// ipclab, which must not take the C program down with it), records it and returns `failure`.
pub fn entry<T>(failure: T, body: impl FnOnce() -> io::Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            record(&e);
            failure
        }
        Err(_) => {
            set_error_text("ipclab: internal error (a panic was caught at the C boundary)");
            set_errno(libc::EIO);
            failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: error_text points at this thread's NUL-terminated buffer.
        unsafe { CStr::from_ptr(error_text()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary_and_stays_terminated() {
        let long = "é".repeat(ERROR_LEN);
        set_error_text(&long);
        let got = last();
        assert!(
            got.len() < ERROR_LEN && got.chars().all(|c| c == 'é'),
            "{got}"
        );
    }

    #[test]
    fn a_panic_becomes_a_failure_with_eio() {
        let got = entry(-1, || -> io::Result<i32> { panic!("a bug") });
        assert_eq!(got, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EIO));
        assert!(last().contains("internal error"));
    }
}

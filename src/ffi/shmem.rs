//! The shmem calls for C programs (seed 004): `shmem_open`, `shmem_close`, `shmem_read`,
//! `shmem_write`, `shmem_delete`, and beyond the seed `shmem_update`, `shmem_size`,
//! `shmem_created`, `shmem_deleted` and `shmem_error`, exported with C names from the static
//! library (`libipclab.a`) and declared in `include/shmem.h`.
//!
//! Each call checks the handle, then calls the Rust [`Shmem`] through [`entry`], so that no
//! panic reaches C, and turns its `io::Result` into the seed's convention: `NULL` or `-1`,
//! with `errno` set and the message kept for [`shmem_error`]. The locking, the one creator
//! among racing openers and the size check are all `Shmem`'s; nothing here takes a lock.
//!
//! # The handle, as rules
//! - A `shmem_t *` is a `Box<Handle>` given to C with `Box::into_raw`, and taken back exactly
//!   once, by `shmem_close` or a successful `shmem_delete`, which also set the caller's
//!   variable to NULL. A second call then finds NULL and fails cleanly (`EBADF`) instead of
//!   freeing twice. A NULL `shmem_t **` is `EINVAL`.
//! - Threads may share one handle: `Shmem` is `Sync`, and every read, write or update takes
//!   its own open file description for its lock. Only closing must wait until no other thread
//!   uses the handle (as with `close(fd)`); C cannot be protected from that here.
//! - **fork**: the child inherits the handle's descriptors, which are the *same* open file
//!   descriptions as the parent's, so a lock taken by the child would be the parent's lock
//!   too. A handle therefore remembers the pid that opened it, and in any other process every
//!   call but `shmem_close` fails with `EBADF`; the child calls `shmem_open` for its own.
//! - Inside `shmem_update`'s callback the thread holds `LOCK_EX`: a call that would lock the
//!   same segment again would wait for itself forever, and closing the handle being updated
//!   would free it under the update. Both fail with `EDEADLK` instead (`UPDATING`).

use super::{entry, set_errno, set_error_text};
use crate::shmem::Shmem;
use crate::sys::{self, Key};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// What a C `shmem_t *` points to (`struct shmem` in C, never looked into there).
#[derive(Debug)]
pub struct Handle {
    shm: Shmem,
    /// The process that opened it: the only one whose locks are its own (see the header).
    pid: u32,
}

/// The C callback of `shmem_update`.
pub type UpdateFn = unsafe extern "C" fn(data: *mut c_void, size: usize, arg: *mut c_void);

thread_local! {
    // The (handle, key) of every shmem_update this thread is inside, innermost last.
    static UPDATING: RefCell<Vec<(usize, Key)>> = const { RefCell::new(Vec::new()) };
}

fn updating(f: impl FnOnce(&mut Vec<(usize, Key)>) -> bool) -> bool {
    // try_with: during the thread's own destruction the list is gone, and nobody updates.
    UPDATING
        .try_with(|u| f(&mut u.borrow_mut()))
        .unwrap_or(false)
}

/// An error with an errno, reading `call: what: errno text`.
fn fails(call: &str, what: &str, errno: c_int) -> io::Error {
    sys::sys_error(
        format!("{call}: {what}"),
        io::Error::from_raw_os_error(errno),
    )
}

/// The errno of an error: its own if it has one; otherwise one that fits its kind (`Shmem`'s
/// own checks, such as a size mismatch, are plain `InvalidInput` errors).
fn errno_of(e: &io::Error) -> c_int {
    if let Some(n) = sys::errno(e) {
        return n;
    }
    match e.kind() {
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::OutOfMemory => libc::ENOMEM,
        _ => libc::EIO,
    }
}

/// Runs a call's body through [`entry`]; an error sets errno and the message, and gives
/// `failure`. Errno is set last, after the body's locals are dropped, so nothing clobbers it.
fn call<T: Copy>(failure: T, body: impl FnOnce() -> io::Result<T>) -> T {
    entry(failure, || match body() {
        Ok(v) => Ok(v),
        Err(e) => {
            set_error_text(&e.to_string());
            set_errno(errno_of(&e));
            Ok(failure)
        }
    })
}

/// The handle behind `shmem`, checked: not NULL, opened by this process, and (for calls that
/// lock, `locks`) not inside an update of the same segment on this thread.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds what
/// `shmem_open` returned and nobody has closed.
unsafe fn handle<'a>(shmem: *mut *mut Handle, call: &str, locks: bool) -> io::Result<&'a Handle> {
    if shmem.is_null() {
        return Err(fails(call, "shmem is NULL (pass &handle)", libc::EINVAL));
    }
    // SAFETY: the caller promises `shmem` points to a readable `shmem_t *`.
    let h = unsafe { *shmem };
    if h.is_null() {
        return Err(fails(
            call,
            "the handle is NULL (closed or deleted already, or its shmem_open failed)",
            libc::EBADF,
        ));
    }
    // SAFETY: a non-NULL handle is a live Box<Handle> from shmem_open (the caller's promise).
    let h = unsafe { &*h };
    if locks {
        if h.pid != std::process::id() {
            return Err(fails(
                call,
                &format!(
                    "the handle was opened by process {} (after fork, call shmem_open in the child)",
                    h.pid
                ),
                libc::EBADF,
            ));
        }
        let key = h.shm.key();
        if updating(|u| u.iter().any(|&(_, k)| k == key)) {
            return Err(fails(
                call,
                "called from inside shmem_update's fn on the same segment, which holds its lock",
                libc::EDEADLK,
            ));
        }
    }
    Ok(h)
}

/// `shmem_t *shmem_open(const char *fname, size_t memory_size)`: the handle, or NULL.
/// `memory_size` 0 opens an existing segment, whatever its size, and creates nothing.
///
/// # Safety
/// `fname` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmem_open(fname: *const c_char, memory_size: usize) -> *mut Handle {
    call(std::ptr::null_mut(), || {
        if fname.is_null() {
            return Err(fails("shmem_open", "fname is NULL", libc::EINVAL));
        }
        // SAFETY: the header requires a NUL-terminated string; we only read it, here.
        let path = OsStr::from_bytes(unsafe { CStr::from_ptr(fname) }.to_bytes());
        let shm = if memory_size == 0 {
            Shmem::open_existing(path)?
        } else {
            Shmem::open(path, memory_size)?
        };
        let pid = std::process::id();
        Ok(Box::into_raw(Box::new(Handle { shm, pid })))
    })
}

/// `int shmem_close(shmem_t **shmem)`: detaches, frees the handle, sets `*shmem` to NULL.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_close(shmem: *mut *mut Handle) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires (see `handle`). Not `locks`: closing an inherited
        // handle is what a child of fork should do with it.
        let h = unsafe { handle(shmem, "shmem_close", false)? };
        let addr = h as *const Handle as usize;
        if updating(|u| u.iter().any(|&(a, _)| a == addr)) {
            return Err(fails(
                "shmem_close",
                "the handle is in use by shmem_update on this thread",
                libc::EDEADLK,
            ));
        }
        // SAFETY: `shmem` is non-NULL (checked); NULL first, so no path frees it twice.
        let raw = unsafe { std::mem::replace(&mut *shmem, std::ptr::null_mut()) };
        // SAFETY: `raw` came from Box::into_raw in shmem_open and is taken back only here or
        // in shmem_delete, which both NULL the caller's variable first.
        unsafe { drop(Box::from_raw(raw)) };
        Ok(0)
    })
}

/// `int shmem_read(shmem_t **shmem, void *data, size_t size)`: copies the whole segment into
/// `data` (at least the segment's size) under `LOCK_SH`. 0 or -1.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
/// `data` points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn shmem_read(
    shmem: *mut *mut Handle,
    data: *mut c_void,
    size: usize,
) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_read", true)? };
        if data.is_null() || size > isize::MAX as usize {
            return Err(fails(
                "shmem_read",
                "data is NULL or size is absurd",
                libc::EINVAL,
            ));
        }
        // SAFETY: the header requires `data` to point to `size` writable bytes that nothing
        // else uses during the call.
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), size) };
        h.shm.read(buf).map(|_| 0)
    })
}

/// `int shmem_write(shmem_t **shmem, const void *data, size_t size)`: copies `size` bytes (at
/// most the segment's size) to its start, under `LOCK_EX`. 0 or -1.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
/// `data` points to `size` readable bytes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmem_write(
    shmem: *mut *mut Handle,
    data: *const c_void,
    size: usize,
) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_write", true)? };
        let buf: &[u8] = if size == 0 {
            &[]
        } else if data.is_null() || size > isize::MAX as usize {
            return Err(fails(
                "shmem_write",
                "data is NULL or size is absurd",
                libc::EINVAL,
            ));
        } else {
            // SAFETY: the header requires `data` to point to `size` readable bytes.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
        };
        h.shm.write(buf).map(|()| 0)
    })
}

/// `int shmem_update(shmem_t **shmem, void (*fn)(void *, size_t, void *), void *arg)`: calls
/// `fn(copy, size, arg)` on a copy of the whole segment and writes it back, all under one
/// `LOCK_EX`. 0 or -1.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_update(
    shmem: *mut *mut Handle,
    f: Option<UpdateFn>,
    arg: *mut c_void,
) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_update", true)? };
        let Some(f) = f else {
            return Err(fails("shmem_update", "fn is NULL", libc::EINVAL));
        };
        let me = (h as *const Handle as usize, h.shm.key());
        updating(|u| {
            u.push(me);
            false
        });
        let out = h.shm.update(|buf| {
            // SAFETY: `buf` is a live, exclusive buffer of `buf.len()` bytes for the whole
            // call; the header requires `fn` to return normally (no longjmp, no exception).
            unsafe { f(buf.as_mut_ptr().cast(), buf.len(), arg) }
        });
        updating(|u| {
            u.pop();
            false
        });
        out.map(|()| 0)
    })
}

/// `int shmem_delete(shmem_t **shmem)`: removes the segment; on success detaches, frees the
/// handle and sets `*shmem` to NULL. On failure the handle stays open. 0 or -1.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_delete(shmem: *mut *mut Handle) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_delete", true)? };
        let addr = h as *const Handle as usize;
        if updating(|u| u.iter().any(|&(a, _)| a == addr)) {
            return Err(fails(
                "shmem_delete",
                "the handle is in use by shmem_update on this thread",
                libc::EDEADLK,
            ));
        }
        h.shm.remove()?;
        // SAFETY: as in shmem_close.
        let raw = unsafe { std::mem::replace(&mut *shmem, std::ptr::null_mut()) };
        // SAFETY: as in shmem_close.
        unsafe { drop(Box::from_raw(raw)) };
        Ok(0)
    })
}

/// `ssize_t shmem_size(shmem_t **shmem)`: the segment's size in bytes, or -1.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_size(shmem: *mut *mut Handle) -> isize {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_size", false)? };
        Ok(h.shm.size() as isize)
    })
}

/// `int shmem_created(shmem_t **shmem)`: 1 if this handle's `shmem_open` created the segment,
/// 0 if it opened an existing one, -1 on error.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_created(shmem: *mut *mut Handle) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_created", false)? };
        Ok(c_int::from(h.shm.created()))
    })
}

/// `int shmem_deleted(shmem_t **shmem)`: 1 if somebody deleted the segment since it was
/// opened (this handle's memory is then nobody else's), 0 if not, -1 on error.
///
/// # Safety
/// `shmem` is NULL or points to a `shmem_t *` variable that is NULL or holds a handle from
/// `shmem_open` (the header's contract; C cannot be checked for it).
#[no_mangle]
pub unsafe extern "C" fn shmem_deleted(shmem: *mut *mut Handle) -> c_int {
    call(-1, || {
        // SAFETY: as the header requires.
        let h = unsafe { handle(shmem, "shmem_deleted", false)? };
        Ok(c_int::from(h.shm.is_deleted()))
    })
}

/// `const char *shmem_error(void)`: the message of this thread's last failed call ("" if
/// none). Valid until this thread's next failing call or its end (see [`super`]).
#[no_mangle]
pub extern "C" fn shmem_error() -> *const c_char {
    super::error_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> (Option<i32>, String) {
        let errno = io::Error::last_os_error().raw_os_error();
        // SAFETY: shmem_error returns this thread's NUL-terminated buffer.
        let msg = unsafe { CStr::from_ptr(shmem_error()) };
        (errno, msg.to_string_lossy().into_owned())
    }

    #[test]
    fn null_handles_are_clean_errors() {
        let mut h: *mut Handle = std::ptr::null_mut();
        // SAFETY: NULL pointers and a NULL handle are what these calls must refuse cleanly.
        unsafe {
            assert_eq!(shmem_close(&mut h), -1);
            let (errno, msg) = last();
            assert_eq!(errno, Some(libc::EBADF));
            assert!(msg.starts_with("shmem_close: the handle is NULL"), "{msg}");
            assert_eq!(
                shmem_read(std::ptr::null_mut(), std::ptr::null_mut(), 0),
                -1
            );
            assert_eq!(last().0, Some(libc::EINVAL));
            assert!(shmem_open(std::ptr::null(), 8).is_null());
            assert_eq!(last().0, Some(libc::EINVAL));
        }
    }
}

//! The system layer: the only place in ipclab that calls the kernel through `unsafe` FFI.
//!
//! Every System V call gets a small wrapper here that returns `io::Result`, and nothing outside
//! `src/sys/` writes `unsafe`. The rules every wrapper follows:
//!
//! - **Checked on the next line.** A `-1` becomes an `io::Error` whose text names the call and its
//!   arguments, then the kernel's errno text: `semget(key=0x41020304): File exists (os error 17)`.
//!   A program only has to put its own name in front (see [`crate::cli`]).
//! - **EINTR is retried** wherever the call can simply be made again (`semop`, `msgsnd`, `msgrcv`,
//!   `flock`). A timed wait is retried with the time that is left, not the whole timeout again.
//! - **"Removed" is one distinct error.** When a semaphore set, queue or segment is removed while
//!   we use it, the kernel answers `EIDRM` (if we were blocked on it) or `EINVAL` (if the id is
//!   already gone). But `EINVAL` is also the kernel's answer to a bad argument, so on `EINVAL`
//!   the operation wrappers ask again with `IPC_STAT`: only if the id no longer answers do they
//!   report `EIDRM`. Callers test it with [`is_removed`].
//! - **No timeout overflows.** A deadline is [`deadline_after`]`(timeout)`, which takes
//!   `Duration::MAX` as "for ever" instead of panicking in `Instant + Duration`.
//! - **Owning guards.** [`Owner`] removes an object when it is dropped; [`shm::Attachment`]
//!   detaches when dropped. Whoever only opens an object never removes it.
//! - **Tracing.** With `IPCLAB_TRACE=1`, each wrapper prints one line per IPC step on stderr
//!   (see [`crate::trace`](mod@crate::trace)).
//!
//! # Layout
//! - [`shm`]: shmget, shmat/shmdt as an [`shm::Attachment`], shmctl(IPC_STAT, IPC_RMID).
//! - [`sem`]: semget, semop/semtimedop, semctl(SETVAL, GETVAL, GETALL, GETNCNT, GETZCNT, GETPID,
//!   IPC_STAT, IPC_RMID).
//! - [`msg`]: msgget, msgsnd/msgrcv of typed messages, a receive with a deadline, msgctl.
//! - [`msg_wait`]: a msgrcv asleep in the kernel until a message or a deadline (timer signal).
//! - [`flock`]: advisory whole-file locks.
//! - [`net`]: a send to a socket that never waits (`MSG_DONTWAIT`).
//! - [`poll`]: wait, in bounded slices, until an fd can be read or written.
//! - [`signal`]: termination signals taken synchronously, so that owners get to clean up.
//! - [`tty`]: one-key terminal input without echo, restored on drop (`ipcview`'s `q`).
//! - [`process`]: is a pid alive, send it a signal, what program is it.
//! - [`ipcs`]: list the objects in this IPC namespace, as `ipcs` does, and find them by key.
//! - [`daemon`]: fork, setsid, stdio on /dev/null, waitpid, and waking a blocked accept.
//! - [`alloc_probe`]: a counting global allocator, so tests can prove a decoder's memory bound.
//! - [`cpu`]: pin a thread to one CPU for the rounds a benchmark times.

pub mod advise;
pub mod alloc_probe;
pub mod cpu;
pub mod daemon;
pub mod flock;
pub mod ipcs;
pub mod msg;
pub mod msg_wait;
pub mod net;
pub mod poll;
pub mod process;
pub mod sem;
pub mod shm;
pub mod signal;
pub mod tty;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// A System V IPC key, as `ftok` makes it and `ipcs` prints it (`0x41020304`).
pub type Key = libc::key_t;

/// `IPC_PRIVATE`: a key that always makes a new object, reachable only through its id.
pub const IPC_PRIVATE: Key = libc::IPC_PRIVATE;

/// An error from one system call: which call, with which arguments, and the errno it returned.
///
/// It travels inside an `io::Error` (of the errno's own kind), so callers keep using `io::Result`
/// and `?`, while [`errno`] can still find the number.
#[derive(Debug)]
pub struct SysError {
    /// The call and its arguments, e.g. `semop(id=3, [0:-1])`.
    pub call: String,
    /// The errno the kernel returned.
    pub os: io::Error,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.os)
    }
}

impl std::error::Error for SysError {}

/// Wraps an errno into an `io::Error` that names the call.
pub fn sys_error(call: impl Into<String>, os: io::Error) -> io::Error {
    io::Error::new(
        os.kind(),
        SysError {
            call: call.into(),
            os,
        },
    )
}

/// The errno inside an error from this layer (or inside a plain OS error).
pub fn errno(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
        .and_then(|s| s.os.raw_os_error())
}

/// The text of an error from this layer without the errno text its `Display` ends with (a
/// [`SysError`]'s `call`): for a message whose errno travels apart, as in an RSHM reply, and
/// is printed once by whoever reports it. Any other error: its whole text.
pub fn message(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
    {
        Some(s) => s.call.clone(),
        None => e.to_string(),
    }
}

/// True when the error means "the object was removed while we were using it" (`EIDRM`).
pub fn is_removed(e: &io::Error) -> bool {
    errno(e) == Some(libc::EIDRM)
}

/// True when a wait gave up because its time ran out, or a non-blocking call would have blocked.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(errno(e), Some(libc::EAGAIN)) || e.kind() == io::ErrorKind::TimedOut
}

/// Turns a C return value into a result: `-1` means "look at errno".
fn cvt(ret: libc::c_int, call: impl FnOnce() -> String) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(sys_error(call(), io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but calls `f` again while it fails with `EINTR` (a signal arrived meanwhile).
fn cvt_r(
    mut f: impl FnMut() -> libc::c_int,
    call: impl FnOnce() -> String,
) -> io::Result<libc::c_int> {
    loop {
        let ret = f();
        if ret != -1 {
            return Ok(ret);
        }
        let os = io::Error::last_os_error();
        if os.raw_os_error() != Some(libc::EINTR) {
            return Err(sys_error(call(), os));
        }
    }
}

/// An operation on an id that existed: `EINVAL` means *either* that the id is gone *or* that an
/// argument is bad (`semctl(GETVAL)` of counter 5 in a set of 1, `semop` with no operations).
/// Only the first is "removed" (`EIDRM`), so on `EINVAL` we ask the kernel again with
/// `still_there` (an `IPC_STAT` of the id): if the object answers, the `EINVAL` was about the
/// arguments and stays `EINVAL`. (If the id is removed *and* reused between the two calls, we
/// say EINVAL where EIDRM was due: the error is still an error, never a false "removed".)
fn removed_if_gone(e: io::Error, still_there: impl FnOnce() -> bool) -> io::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<SysError>()) {
        Some(s) if s.os.raw_os_error() == Some(libc::EINVAL) && !still_there() => {
            sys_error(s.call.clone(), io::Error::from_raw_os_error(libc::EIDRM))
        }
        _ => e,
    }
}

/// `IPC_STAT` itself: its only argument is the id (the buffer is ours), so `EINVAL` can only
/// mean that no object has this id (any more): removed.
fn removed_if_invalid(e: io::Error) -> io::Error {
    removed_if_gone(e, || false)
}

/// What an `IPC_STAT` answer says about the id: present unless it failed with EINVAL or EIDRM
/// (EACCES, say, comes from an object that exists).
fn answers<T>(stat: io::Result<T>) -> bool {
    match stat {
        Ok(_) => true,
        Err(e) => !matches!(errno(&e), Some(libc::EINVAL | libc::EIDRM)),
    }
}

/// The instant `timeout` from now, or a century from now for a timeout too long to add
/// (`Duration::MAX` means "for ever", and `Instant + Duration::MAX` would panic).
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}

/// What [`deadline_after`] gives a timeout that does not fit: a wait nobody will see end.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `ftok(path, proj_id)`: the same path (the same inode) and id always give the same key.
///
/// The key mixes the low 8 bits of `proj_id`, the low 8 bits of the device number and the low
/// 16 bits of the inode number, so two different files *can* collide; that is why every ipclab
/// program creates with `IPC_EXCL` and reports `File exists` instead of silently sharing.
pub fn ftok(path: &Path, proj_id: u8) -> io::Result<Key> {
    let call = || format!("ftok({}, {proj_id})", path.display());
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| sys_error(call(), io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let key = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(proj_id)) };
    let key = cvt(key, call)?;
    crate::trace!("ftok({}, {proj_id}) = key 0x{key:08x}", path.display());
    Ok(key)
}

/// An IPC object that can be removed by id: a segment, a semaphore set or a queue.
pub trait Removable: Copy + fmt::Debug {
    /// `shmctl`/`semctl`/`msgctl` with `IPC_RMID`. An object already gone is EIDRM.
    fn remove(self) -> io::Result<()>;
}

/// `IPC_RMID` where "already gone" is success: for a cleanup that may race with the object's
/// own owner removing it at the same moment.
pub fn remove_if_present(obj: impl Removable) -> io::Result<()> {
    match obj.remove() {
        Err(e) if is_removed(&e) => Ok(()),
        r => r,
    }
}

/// The owner of an IPC object: it removes the object when dropped.
///
/// Exactly one party owns each object, normally its creator. Everybody else holds the plain id.
/// Drop never panics: a failed removal (someone removed it first) is traced and ignored.
#[derive(Debug)]
pub struct Owner<T: Removable> {
    obj: Option<T>,
}

impl<T: Removable> Owner<T> {
    /// Takes ownership of `obj`: from now on it is removed when this guard is dropped.
    pub fn new(obj: T) -> Self {
        Owner { obj: Some(obj) }
    }

    /// The object itself, to operate on.
    pub fn get(&self) -> T {
        self.obj
            .expect("an Owner always holds its object until dropped")
    }

    /// Removes the object now, reporting any error (drop would only trace it).
    pub fn remove(mut self) -> io::Result<()> {
        match self.obj.take() {
            Some(obj) => obj.remove(),
            None => Ok(()),
        }
    }

    /// Gives up ownership without removing: for an object that someone else has removed
    /// already. (Not for handing an object to a child across `fork`: the child gets a copy of
    /// the `Owner` too, and both would remove it. Create objects after the fork instead.)
    pub fn release(mut self) -> T {
        self.obj.take().expect("an Owner always holds its object")
    }
}

impl<T: Removable> std::ops::Deref for Owner<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.obj
            .as_ref()
            .expect("an Owner always holds its object until dropped")
    }
}

impl<T: Removable> Drop for Owner<T> {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            if let Err(e) = obj.remove() {
                crate::trace!("owner drop: {e}");
            }
        }
    }
}

/// Permission bits for a new object, e.g. 0o600, checked to be nothing but rwx bits.
pub fn check_mode(mode: u32) -> io::Result<libc::c_int> {
    if mode & !0o777 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mode {mode:o} has bits beyond 0777"),
        ));
    }
    Ok(mode as libc::c_int)
}

/// The number on the line `NAME: N kB` (or `NAME: N`) of a `/proc` text such as
/// `/proc/meminfo` or `/proc/PID/status`; `name` includes its colon. 0 if there is no such line.
pub fn proc_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads a System V limit from `/proc/sys/kernel/NAME` (shmmax, shmall, shmmni, msgmax, ...):
/// its first number, so `sem` gives SEMMSL (semaphores per set), the first of its four.
pub fn kernel_limit(name: &str) -> io::Result<u64> {
    let path = format!("/proc/sys/kernel/{name}");
    let text = std::fs::read_to_string(&path)?;
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftok_is_stable_and_depends_on_the_id() {
        let dir = crate::testutil::TempDir::new("ftok");
        let a = ftok(dir.path(), b'A').unwrap();
        assert_eq!(a, ftok(dir.path(), b'A').unwrap());
        assert_ne!(a, ftok(dir.path(), b'B').unwrap());
        // The id sits in the top byte.
        assert_eq!((a as u32) >> 24, u32::from(b'A'));
    }

    #[test]
    fn ftok_of_a_missing_path_names_the_call() {
        let e = ftok(Path::new("/nonexistent/ipclab"), 1).unwrap_err();
        assert_eq!(errno(&e), Some(libc::ENOENT));
        assert!(
            e.to_string().starts_with("ftok(/nonexistent/ipclab, 1): "),
            "{e}"
        );
    }

    #[test]
    fn proc_fields_are_read_by_name_with_or_without_their_unit() {
        let text =
            "MemTotal:       24576000 kB\nHugePages_Free:      12\nHugepagesize:       2048 kB\n";
        assert_eq!(proc_field(text, "HugePages_Free:"), 12);
        assert_eq!(proc_field(text, "Hugepagesize:"), 2048);
        assert_eq!(proc_field(text, "Nothing:"), 0);
        assert!(
            proc_field(
                &std::fs::read_to_string("/proc/self/status").unwrap(),
                "VmRSS:"
            ) > 0
        );
    }

    #[test]
    fn kernel_limits_are_readable() {
        assert!(kernel_limit("shmmni").unwrap() > 0);
        assert!(kernel_limit("msgmax").unwrap() > 0);
    }

    #[test]
    fn an_object_removed_twice_is_removed_and_remove_if_present_says_ok() {
        let set = sem::semget(IPC_PRIVATE, 1, shm::Get::Create(0o600)).unwrap();
        set.remove().unwrap();
        assert!(is_removed(&set.remove().unwrap_err()));
        remove_if_present(set).unwrap();
    }

    #[test]
    fn mode_rejects_extra_bits() {
        assert_eq!(check_mode(0o600).unwrap(), 0o600);
        assert!(check_mode(0o1600).is_err());
    }
}

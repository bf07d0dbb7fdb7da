//! System V semaphores: `semget`, `semop`/`semtimedop`, `semctl`.
//!
//! A System V semaphore is a *set* of counters, and one `semop` call applies a list of
//! operations to the set atomically: either every operation in the list can proceed and all of
//! them happen, or the caller sleeps until they all can. That is what lets ipclab build locks
//! and rings from a few counters without ever seeing a half-applied state.
//!
//! One operation ([`SemOp`]) on counter `num` is:
//! - `op > 0`: add `op` (post, "V"). Never blocks.
//! - `op < 0`: subtract `|op|`, sleeping while the counter is smaller than that (wait, "P").
//! - `op == 0`: sleep until the counter is zero.
//!
//! Flags: [`SemOp::nowait`] fails with `EAGAIN` instead of sleeping; [`SemOp::undo`] asks the
//! kernel to reverse the operation if the *process* exits, which saves a lock held by a process
//! that dies, but does nothing between threads of one process.
//!
//! Rules: a new set's counters are 0 on Linux, but POSIX leaves them undefined, so the creator
//! sets them with [`SemId::set_val`]/[`SemId::set_all`] before anyone else uses the set; openers
//! can wait for `sem_otime != 0` (see [`SemStat`]) to know the creator has finished.

use super::shm::Get;
use super::{answers, cvt, cvt_r, removed_if_gone, removed_if_invalid, sys_error, Key, Removable};
use std::io;
use std::time::{Duration, Instant};

/// The id of a semaphore set, as `semget` returns it and `ipcs -s` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemId(pub i32);

/// One operation of a `semop` call: `struct sembuf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    pub flags: i16,
}

impl SemOp {
    /// Subtract 1, waiting until that is possible ("P", "down").
    pub const fn wait(num: u16) -> SemOp {
        SemOp::add(num, -1)
    }
    /// Add 1 ("V", "up").
    pub const fn post(num: u16) -> SemOp {
        SemOp::add(num, 1)
    }
    /// Wait until the counter is 0.
    pub const fn zero(num: u16) -> SemOp {
        SemOp::add(num, 0)
    }
    /// Add `op` (which may be negative, or 0 for wait-for-zero).
    pub const fn add(num: u16, op: i16) -> SemOp {
        SemOp { num, op, flags: 0 }
    }
    /// `IPC_NOWAIT`: fail with EAGAIN instead of sleeping.
    pub const fn nowait(self) -> SemOp {
        SemOp {
            flags: self.flags | libc::IPC_NOWAIT as i16,
            ..self
        }
    }
    /// `SEM_UNDO`: the kernel reverses this operation when the process exits.
    pub const fn undo(self) -> SemOp {
        SemOp {
            flags: self.flags | libc::SEM_UNDO as i16,
            ..self
        }
    }
}

fn describe(ops: &[SemOp]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|o| {
            let mut s = format!("{}:{:+}", o.num, o.op);
            if o.flags & libc::IPC_NOWAIT as i16 != 0 {
                s.push_str(" nowait");
            }
            if o.flags & libc::SEM_UNDO as i16 != 0 {
                s.push_str(" undo");
            }
            s
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn to_sembuf(ops: &[SemOp]) -> Vec<libc::sembuf> {
    ops.iter()
        .map(|o| libc::sembuf {
            sem_num: o.num,
            sem_op: o.op,
            sem_flg: o.flags,
        })
        .collect()
}

/// `union semun`, the fourth argument of `semctl`, which the caller must declare itself (glibc
/// does not). It is passed *by value* as one variadic argument, so its layout is part of the
/// ABI: a bare `int` in its place happens to work on little-endian 64-bit machines only, where
/// `val` sits in the low half of the 8-byte slot; on a big-endian one the kernel would read
/// the other half. With the union, `val` is always where `semctl` looks for it.
#[repr(C)]
#[derive(Clone, Copy)]
union Semun {
    /// SETVAL: the new value.
    val: libc::c_int,
    /// IPC_STAT, IPC_SET: the buffer.
    buf: *mut libc::semid_ds,
    /// GETALL, SETALL: `nsems` counters.
    array: *mut libc::c_ushort,
}

extern "C" {
    // glibc has it, the libc crate does not declare it for this target.
    fn semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

/// `semget(key, nsems, flags)`.
pub fn semget(key: Key, nsems: u16, how: Get) -> io::Result<SemId> {
    let flags = how.flags()?;
    // SAFETY: semget takes no pointers.
    let id = unsafe { libc::semget(key, libc::c_int::from(nsems), flags) };
    let id = cvt(id, || format!("semget(key=0x{key:08x}, nsems={nsems})"))?;
    crate::trace!("semget(key=0x{key:08x}, nsems={nsems}, flags=0{flags:o}) = semid {id}");
    Ok(SemId(id))
}

/// The fields of `struct semid_ds` from `semctl(IPC_STAT)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemStat {
    pub key: Key,
    pub uid: u32,
    pub mode: u32,
    /// Number of semaphores in the set.
    pub nsems: u16,
    /// `sem_otime`: time of the last semop, 0 if none yet. Creators that initialise with a
    /// `semop` set it, which tells openers that initialisation is finished.
    pub op_time: i64,
    /// `sem_ctime`: last change by semctl.
    pub change_time: i64,
}

impl SemId {
    /// `semop`: applies all `ops` atomically, sleeping as needed. Retries EINTR.
    pub fn op(self, ops: &[SemOp]) -> io::Result<()> {
        let mut bufs = to_sembuf(ops);
        crate::trace!("semop(semid={}, {})", self.0, describe(ops));
        cvt_r(
            // SAFETY: `bufs` is a valid array of `bufs.len()` sembufs for the duration of the call.
            || unsafe { libc::semop(self.0, bufs.as_mut_ptr(), bufs.len()) },
            || format!("semop(semid={}, {})", self.0, describe(ops)),
        )
        .map_err(|e| self.removed_if_gone(e))?;
        Ok(())
    }

    /// `semtimedop`: like [`op`](Self::op), but gives up after `timeout`. Returns `Ok(false)` if
    /// the time ran out with nothing applied. A signal does not restart the full timeout.
    pub fn op_timeout(self, ops: &[SemOp], timeout: Duration) -> io::Result<bool> {
        let deadline = super::deadline_after(timeout);
        let mut bufs = to_sembuf(ops);
        crate::trace!(
            "semtimedop(semid={}, {}, {:?})",
            self.0,
            describe(ops),
            timeout
        );
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
            };
            // SAFETY: `bufs` and `ts` are valid for the duration of the call.
            let ret = unsafe { semtimedop(self.0, bufs.as_mut_ptr(), bufs.len(), &ts) };
            if ret == 0 {
                return Ok(true);
            }
            let os = io::Error::last_os_error();
            match os.raw_os_error() {
                Some(libc::EINTR) => continue,
                // EAGAIN: the timeout expired (or IPC_NOWAIT found it would block).
                Some(libc::EAGAIN) => return Ok(false),
                _ => {
                    let call = format!("semtimedop(semid={}, {})", self.0, describe(ops));
                    return Err(self.removed_if_gone(sys_error(call, os)));
                }
            }
        }
    }

    /// `semctl(SETVAL)`: sets counter `num` to `val`.
    pub fn set_val(self, num: u16, val: i32) -> io::Result<()> {
        let arg = Semun { val };
        // SAFETY: SETVAL reads the `val` member of the `union semun` argument, and `arg` is that
        // union (with the caller's layout: see `Semun`), passed by value as the kernel ABI wants.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::SETVAL, arg) };
        cvt(ret, || {
            format!("semctl(semid={}, {num}, SETVAL, {val})", self.0)
        })
        .map_err(|e| self.removed_if_gone(e))?;
        crate::trace!("semctl(semid={}, {num}, SETVAL, {val})", self.0);
        Ok(())
    }

    /// `semctl(SETALL)`: sets every counter at once (atomically, unlike a loop of SETVAL).
    pub fn set_all(self, vals: &[u16]) -> io::Result<()> {
        let n = self.stat()?.nsems as usize;
        if vals.len() != n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("set_all: {} values for a set of {n}", vals.len()),
            ));
        }
        let arg = Semun {
            array: vals.as_ptr().cast_mut(),
        };
        // SAFETY: SETALL reads `nsems` unsigned shorts through the union's `array` pointer (it
        // never writes them, so the cast from `&[u16]` is sound), and `vals` has exactly that
        // many (checked above).
        let ret = unsafe { libc::semctl(self.0, 0, libc::SETALL, arg) };
        cvt(ret, || format!("semctl(semid={}, SETALL)", self.0))
            .map_err(|e| self.removed_if_gone(e))?;
        crate::trace!("semctl(semid={}, SETALL, {vals:?})", self.0);
        Ok(())
    }

    /// `semctl(GETVAL)`: the current value of counter `num`.
    pub fn get_val(self, num: u16) -> io::Result<i32> {
        // SAFETY: GETVAL takes no further argument.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::GETVAL) };
        cvt(ret, || format!("semctl(semid={}, {num}, GETVAL)", self.0))
            .map_err(|e| self.removed_if_gone(e))
    }

    /// `semctl(GETALL)`: every counter's current value.
    pub fn get_all(self) -> io::Result<Vec<u16>> {
        let n = self.stat()?.nsems as usize;
        let mut vals = vec![0u16; n];
        let arg = Semun {
            array: vals.as_mut_ptr(),
        };
        // SAFETY: GETALL writes `nsems` unsigned shorts through the union's `array` pointer;
        // `vals` has that many.
        let ret = unsafe { libc::semctl(self.0, 0, libc::GETALL, arg) };
        cvt(ret, || format!("semctl(semid={}, GETALL)", self.0))
            .map_err(|e| self.removed_if_gone(e))?;
        Ok(vals)
    }

    /// `semctl(GETNCNT)`: how many processes/threads sleep waiting for counter `num` to grow.
    pub fn waiting(self, num: u16) -> io::Result<i32> {
        // SAFETY: GETNCNT takes no further argument.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::GETNCNT) };
        cvt(ret, || format!("semctl(semid={}, {num}, GETNCNT)", self.0))
            .map_err(|e| self.removed_if_gone(e))
    }

    /// `semctl(GETZCNT)`: how many processes/threads sleep waiting for counter `num` to be 0.
    pub fn waiting_for_zero(self, num: u16) -> io::Result<i32> {
        // SAFETY: GETZCNT takes no further argument.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::GETZCNT) };
        cvt(ret, || format!("semctl(semid={}, {num}, GETZCNT)", self.0))
            .map_err(|e| self.removed_if_gone(e))
    }

    /// `semctl(GETPID)`: the pid of the last process that operated on counter `num` (0 if none;
    /// Linux also counts the kernel's undo of a dying process's `SEM_UNDO` operations).
    pub fn last_pid(self, num: u16) -> io::Result<i32> {
        // SAFETY: GETPID takes no further argument.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::GETPID) };
        cvt(ret, || format!("semctl(semid={}, {num}, GETPID)", self.0))
            .map_err(|e| self.removed_if_gone(e))
    }

    /// `semctl(IPC_STAT)`.
    pub fn stat(self) -> io::Result<SemStat> {
        // SAFETY: semid_ds is plain data; all-zero is a valid value.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        let arg = Semun { buf: &mut ds };
        // SAFETY: IPC_STAT writes one semid_ds through the union's `buf` pointer, which points
        // at `ds`, alive and writable for the call.
        let ret = unsafe { libc::semctl(self.0, 0, libc::IPC_STAT, arg) };
        cvt(ret, || format!("semctl(semid={}, IPC_STAT)", self.0)).map_err(removed_if_invalid)?;
        Ok(SemStat {
            key: ds.sem_perm.__key,
            uid: ds.sem_perm.uid,
            mode: u32::from(ds.sem_perm.mode) & 0o777,
            nsems: ds.sem_nsems as u16,
            op_time: ds.sem_otime,
            change_time: ds.sem_ctime,
        })
    }
}

impl SemId {
    /// An operation's EINVAL: "removed" only if the set no longer answers (see the rules in
    /// `sys`); otherwise an argument was bad and EINVAL stays.
    fn removed_if_gone(self, e: io::Error) -> io::Error {
        removed_if_gone(e, || answers(self.stat()))
    }
}

impl Removable for SemId {
    /// `semctl(IPC_RMID)`: removed at once; every sleeper wakes with EIDRM.
    fn remove(self) -> io::Result<()> {
        // SAFETY: IPC_RMID takes no further argument.
        let ret = unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
        cvt(ret, || format!("semctl(semid={}, IPC_RMID)", self.0)).map_err(removed_if_invalid)?;
        crate::trace!("semctl(semid={}, IPC_RMID)", self.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{is_removed, Owner, IPC_PRIVATE};
    use super::*;
    use std::thread;

    fn private(n: u16) -> Owner<SemId> {
        Owner::new(semget(IPC_PRIVATE, n, Get::Create(0o600)).unwrap())
    }

    #[test]
    fn set_get_and_all() {
        let s = private(3);
        s.set_all(&[1, 2, 3]).unwrap();
        assert_eq!(s.get_all().unwrap(), vec![1, 2, 3]);
        s.set_val(1, 9).unwrap();
        assert_eq!(s.get_val(1).unwrap(), 9);
        assert!(s.set_all(&[1]).is_err());
        let st = s.stat().unwrap();
        assert_eq!((st.nsems, st.mode, st.op_time), (3, 0o600, 0));
    }

    #[test]
    fn ops_are_atomic_across_the_list() {
        let s = private(2);
        s.set_all(&[1, 0]).unwrap();
        // Needs both counters >= 1: counter 1 is 0, so nothing at all may be applied.
        assert!(!s
            .op_timeout(&[SemOp::wait(0), SemOp::wait(1)], Duration::ZERO)
            .unwrap());
        assert_eq!(s.get_all().unwrap(), vec![1, 0]);
        s.op(&[SemOp::post(1)]).unwrap();
        s.op(&[SemOp::wait(0), SemOp::wait(1)]).unwrap();
        assert_eq!(s.get_all().unwrap(), vec![0, 0]);
        assert_ne!(s.stat().unwrap().op_time, 0);
    }

    #[test]
    fn timed_wait_times_out_and_nowait_fails_fast() {
        let s = private(1);
        let t = Instant::now();
        assert!(!s
            .op_timeout(&[SemOp::wait(0)], Duration::from_millis(50))
            .unwrap());
        assert!(t.elapsed() >= Duration::from_millis(45));
        let e = s.op(&[SemOp::wait(0).nowait()]).unwrap_err();
        assert!(super::super::is_timeout(&e), "{e}");
    }

    #[test]
    fn a_post_from_another_thread_wakes_the_waiter() {
        let s = private(1);
        let id = s.get();
        let h = thread::spawn(move || id.op_timeout(&[SemOp::wait(0)], Duration::from_secs(5)));
        thread::sleep(Duration::from_millis(20));
        id.op(&[SemOp::post(0)]).unwrap();
        assert!(h.join().unwrap().unwrap());
    }

    #[test]
    fn removal_wakes_sleepers_with_removed() {
        let s = private(1);
        let id = s.get();
        let h = thread::spawn(move || id.op(&[SemOp::wait(0)]));
        while id.waiting(0).unwrap() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        s.remove().unwrap();
        let e = h.join().unwrap().unwrap_err();
        assert!(is_removed(&e), "{e}");
        // And afterwards, the stale id also reads as removed.
        assert!(is_removed(&id.op(&[SemOp::post(0)]).unwrap_err()));
    }

    #[test]
    fn zero_waiters_and_the_last_pid_are_counted() {
        let s = private(1);
        let id = s.get();
        assert_eq!(id.last_pid(0).unwrap(), 0);
        id.op(&[SemOp::post(0)]).unwrap();
        assert_eq!(id.last_pid(0).unwrap(), std::process::id() as i32);
        let h = thread::spawn(move || id.op_timeout(&[SemOp::zero(0)], Duration::from_secs(5)));
        while id.waiting_for_zero(0).unwrap() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(id.waiting(0).unwrap(), 0);
        id.op(&[SemOp::wait(0)]).unwrap();
        assert!(h.join().unwrap().unwrap());
        assert_eq!(id.waiting_for_zero(0).unwrap(), 0);
    }

    #[test]
    fn a_bad_argument_is_einval_not_removed() {
        let s = private(1);
        // Counter 5 of a set of 1, and a semop with nothing to do: EINVAL from a live set.
        for e in [s.get_val(5).unwrap_err(), s.op(&[]).unwrap_err()] {
            assert!(!is_removed(&e), "{e}");
            assert_eq!(super::super::errno(&e), Some(libc::EINVAL), "{e}");
        }
        let id = s.get();
        s.remove().unwrap();
        // The same calls on the removed set: removed.
        assert!(is_removed(&id.get_val(0).unwrap_err()));
        assert!(is_removed(&id.get_val(5).unwrap_err()));
    }

    #[test]
    fn set_val_passes_a_union_semun() {
        // SETVAL reads `union semun`'s `val`: the whole range must come back as set.
        let s = private(2);
        for v in [0, 1, 255, 256, 32767] {
            s.set_val(1, v).unwrap();
            assert_eq!(s.get_val(1).unwrap(), v);
            assert_eq!(s.get_val(0).unwrap(), 0);
        }
        assert_eq!(std::mem::size_of::<Semun>(), std::mem::size_of::<*mut u8>());
    }

    #[test]
    fn a_timeout_of_duration_max_is_for_ever_not_a_panic() {
        let s = private(1);
        s.set_val(0, 1).unwrap();
        assert!(s.op_timeout(&[SemOp::wait(0)], Duration::MAX).unwrap());
        assert!(super::super::deadline_after(Duration::MAX) > Instant::now());
    }
}

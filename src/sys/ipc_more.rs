//! Two more System V calls, both about objects someone else left behind:
//!
//! - `semctl(GETPID)`: the pid of the last process that operated on a semaphore. After a
//!   process that held a `SEM_UNDO` count dies, the kernel's undo is that last operation, made
//!   in the dying process's name: so GETPID names the dead holder.
//! - `msgrcv(..., MSG_EXCEPT | IPC_NOWAIT)`: the oldest message of any type *but* one. A server
//!   that reads only type 1 uses it to find messages of types nobody serves, which would
//!   otherwise sit in its queue for ever and fill it.

use super::msg::MsgId;
use super::sem::SemId;
use super::{cvt, removed_if_invalid};
use std::io;

impl SemId {
    /// `semctl(GETPID)`: who last operated on semaphore `num` (0 if nobody has).
    pub fn last_pid(self, num: u16) -> io::Result<i32> {
        // SAFETY: GETPID takes no further argument.
        let ret = unsafe { libc::semctl(self.0, libc::c_int::from(num), libc::GETPID) };
        cvt(ret, || format!("semctl(semid={}, {num}, GETPID)", self.0)).map_err(removed_if_invalid)
    }
}

impl MsgId {
    /// `msgrcv(type, MSG_EXCEPT | IPC_NOWAIT)`: the oldest message whose type is *not*
    /// `mtype`, or `Ok(None)` if there is none. Retries EINTR.
    pub fn try_recv_except(self, mtype: i64, buf: &mut [u8]) -> io::Result<Option<(i64, usize)>> {
        loop {
            match self.recv_once(mtype, buf, libc::MSG_EXCEPT | libc::IPC_NOWAIT) {
                Ok(m) => return Ok(Some(m)),
                Err(e) if super::errno(&e) == Some(libc::ENOMSG) => return Ok(None),
                Err(e) if super::errno(&e) == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

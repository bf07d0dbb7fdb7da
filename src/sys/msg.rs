//! System V message queues: `msgget`, `msgsnd`, `msgrcv`, `msgctl`.
//!
//! A queue holds whole messages, each tagged with a positive *type* (`mtype`). A receiver asks
//! for a type and gets the oldest message of that type, so one queue can carry many
//! conversations: a server reads type 1 (requests), and each client reads only the type that
//! names it (replies). Messages never split or merge, unlike bytes in a pipe.
//!
//! Limits: one message is at most `msgmax` bytes (`/proc/sys/kernel/msgmax`, 8192 by default),
//! and a queue holds at most `msgmnb` bytes; a full queue makes `msgsnd` sleep, or fail with
//! EAGAIN under `IPC_NOWAIT`. A message larger than the receiver's buffer fails with E2BIG and
//! stays in the queue.
//!
//! There is no `msgrcv` with a timeout. [`MsgId::recv_deadline`] polls with `IPC_NOWAIT` and a
//! growing pause instead, which costs a little latency but can never hang on a queue whose
//! server has died without removing it; [`super::msg_wait::recv_until`] sleeps in `msgrcv`
//! itself until a timer signal at the deadline, and falls back to the poll.

use super::shm::Get;
use super::{answers, cvt, cvt_r, removed_if_gone, removed_if_invalid, sys_error, Key, Removable};
use std::io;
use std::time::{Duration, Instant};

/// The id of a message queue, as `msgget` returns it and `ipcs -q` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId(pub i32);

/// `msgget(key, flags)`.
pub fn msgget(key: Key, how: Get) -> io::Result<MsgId> {
    let flags = how.flags()?;
    // SAFETY: msgget takes no pointers.
    let id = unsafe { libc::msgget(key, flags) };
    let id = cvt(id, || format!("msgget(key=0x{key:08x})"))?;
    crate::trace!("msgget(key=0x{key:08x}, flags=0{flags:o}) = msqid {id}");
    Ok(MsgId(id))
}

/// The fields of `struct msqid_ds` from `msgctl(IPC_STAT)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgStat {
    pub key: Key,
    pub uid: u32,
    pub mode: u32,
    /// Messages now in the queue.
    pub messages: u64,
    /// Bytes now in the queue, and the most it may hold (`msg_qbytes`).
    pub bytes: u64,
    pub max_bytes: u64,
    /// pids of the last msgsnd and msgrcv.
    pub last_send_pid: i32,
    pub last_recv_pid: i32,
}

/// A message buffer as the kernel wants it: a `long` type, then the text. Kept in `u64`s so
/// that the type is aligned.
fn buffer(len: usize) -> Vec<u64> {
    vec![0u64; 1 + len.div_ceil(8)]
}

impl MsgId {
    /// `msgsnd`: queues one message of type `mtype` (> 0). Sleeps while the queue is full
    /// unless `nowait`, in which case a full queue is `EAGAIN` (see [`super::is_timeout`]).
    pub fn send(self, mtype: i64, data: &[u8], nowait: bool) -> io::Result<()> {
        if mtype <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("msgsnd: message type {mtype} must be positive"),
            ));
        }
        let mut buf = buffer(data.len());
        buf[0] = mtype as u64;
        // SAFETY: `buf` has room for `data.len()` bytes after the 8-byte type; both are valid.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                buf.as_mut_ptr().add(1).cast::<u8>(),
                data.len(),
            )
        };
        let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
        crate::trace!(
            "msgsnd(msqid={}, type={mtype}, {} bytes)",
            self.0,
            data.len()
        );
        cvt_r(
            // SAFETY: `buf` is a valid msgbuf with `data.len()` bytes of text.
            || unsafe { libc::msgsnd(self.0, buf.as_ptr().cast(), data.len(), flags) },
            || {
                format!(
                    "msgsnd(msqid={}, type={mtype}, {} bytes)",
                    self.0,
                    data.len()
                )
            },
        )
        .map_err(|e| {
            // EINVAL means a removed queue, or a message over msgmax: tell them apart.
            let limit = super::kernel_limit("msgmax").unwrap_or(u64::MAX);
            if super::errno(&e) == Some(libc::EINVAL) && data.len() as u64 > limit {
                return sys_error(
                    format!(
                        "msgsnd(msqid={}, {} bytes): larger than msgmax ({limit} bytes)",
                        self.0,
                        data.len()
                    ),
                    io::Error::from_raw_os_error(libc::EINVAL),
                );
            }
            removed_if_gone(e, || answers(self.stat()))
        })?;
        Ok(())
    }

    fn recv_flags(
        self,
        mtype: i64,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> io::Result<(i64, usize)> {
        loop {
            match self.recv_once(mtype, buf, flags) {
                Err(e) if super::errno(&e) == Some(libc::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// `msgrcv(type, MSG_EXCEPT | IPC_NOWAIT)`: the oldest message whose type is *not*
    /// `mtype`, or `Ok(None)` if there is none. Retries EINTR. A server that reads only one
    /// type uses it to find messages of types nobody serves, which would otherwise sit in its
    /// queue for ever and fill it.
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

    /// One `msgrcv`, EINTR included: for [`super::msg_wait`], whose timer signal ends a wait
    /// that way on purpose; everyone else goes through [`recv`](Self::recv) and its relatives.
    pub(super) fn recv_once(
        self,
        mtype: i64,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> io::Result<(i64, usize)> {
        let mut raw = buffer(buf.len());
        // SAFETY: `raw` holds a type word plus at least `buf.len()` bytes for the kernel to fill.
        let got = cvt(
            unsafe {
                libc::msgrcv(self.0, raw.as_mut_ptr().cast(), buf.len(), mtype, flags)
                    as libc::c_int
            },
            || {
                format!(
                    "msgrcv(msqid={}, type={mtype}, max {} bytes)",
                    self.0,
                    buf.len()
                )
            },
        )
        .map_err(|e| removed_if_gone(e, || answers(self.stat())))? as usize;
        // SAFETY: the kernel wrote `got` <= buf.len() bytes after the type word.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr().add(1).cast::<u8>(), buf.as_mut_ptr(), got)
        };
        let t = raw[0] as i64;
        crate::trace!(
            "msgrcv(msqid={}, type={mtype}) = type {t}, {got} bytes",
            self.0
        );
        Ok((t, got))
    }

    /// `msgrcv`: waits for a message and copies it into `buf`; returns its type and length.
    /// `mtype` 0 takes the first message of any type, `> 0` the first of exactly that type,
    /// `< 0` the first of the lowest type `<= |mtype|`.
    pub fn recv(self, mtype: i64, buf: &mut [u8]) -> io::Result<(i64, usize)> {
        self.recv_flags(mtype, buf, 0)
    }

    /// `msgrcv` with `IPC_NOWAIT`: `Ok(None)` when no such message is queued.
    pub fn try_recv(self, mtype: i64, buf: &mut [u8]) -> io::Result<Option<(i64, usize)>> {
        match self.recv_flags(mtype, buf, libc::IPC_NOWAIT) {
            Ok(m) => Ok(Some(m)),
            Err(e) if super::errno(&e) == Some(libc::ENOMSG) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for a message until `deadline`; `Ok(None)` if none came in time.
    ///
    /// It polls: first it yields the CPU a few times (a reply from a local server usually
    /// arrives within microseconds), then sleeps for a pause that doubles up to 2 ms. A removed
    /// queue still fails at once with EIDRM.
    pub fn recv_deadline(
        self,
        mtype: i64,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<Option<(i64, usize)>> {
        let mut pause = Duration::from_micros(20);
        let mut spins = 0;
        loop {
            if let Some(m) = self.try_recv(mtype, buf)? {
                return Ok(Some(m));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if spins < 50 {
                spins += 1;
                std::thread::yield_now();
            } else {
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
    }

    /// `msgctl(IPC_STAT)`.
    pub fn stat(self) -> io::Result<MsgStat> {
        // SAFETY: msqid_ds is plain data; all-zero is a valid value.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT fills the msqid_ds we pass.
        let ret = unsafe { libc::msgctl(self.0, libc::IPC_STAT, &mut ds) };
        cvt(ret, || format!("msgctl(msqid={}, IPC_STAT)", self.0)).map_err(removed_if_invalid)?;
        Ok(MsgStat {
            key: ds.msg_perm.__key,
            uid: ds.msg_perm.uid,
            mode: u32::from(ds.msg_perm.mode) & 0o777,
            messages: ds.msg_qnum as u64,
            bytes: ds.__msg_cbytes as u64,
            max_bytes: ds.msg_qbytes as u64,
            last_send_pid: ds.msg_lspid,
            last_recv_pid: ds.msg_lrpid,
        })
    }
}

impl Removable for MsgId {
    /// `msgctl(IPC_RMID)`: removed at once; blocked senders and receivers wake with EIDRM.
    fn remove(self) -> io::Result<()> {
        // SAFETY: IPC_RMID takes no buffer.
        let ret = unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        cvt(ret, || format!("msgctl(msqid={}, IPC_RMID)", self.0)).map_err(removed_if_invalid)?;
        crate::trace!("msgctl(msqid={}, IPC_RMID)", self.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{errno, is_removed, is_timeout, Owner, IPC_PRIVATE};
    use super::*;

    fn private() -> Owner<MsgId> {
        Owner::new(msgget(IPC_PRIVATE, Get::Create(0o600)).unwrap())
    }

    #[test]
    fn typed_messages_are_picked_by_type() {
        let q = private();
        q.send(2, b"two", false).unwrap();
        q.send(1, b"one", false).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(q.recv(1, &mut buf).unwrap(), (1, 3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(q.recv(0, &mut buf).unwrap(), (2, 3));
        assert_eq!(q.try_recv(0, &mut buf).unwrap(), None);
        assert!(q.send(0, b"x", false).is_err());
        let st = q.stat().unwrap();
        assert_eq!(
            (st.messages, st.last_send_pid),
            (0, std::process::id() as i32)
        );
    }

    #[test]
    fn empty_and_binary_messages_pass_unchanged() {
        let q = private();
        q.send(5, b"", false).unwrap();
        q.send(5, &[0, 255, 10, 0], false).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(q.recv(5, &mut buf).unwrap(), (5, 0));
        assert_eq!(q.recv(5, &mut buf).unwrap(), (5, 4));
        assert_eq!(buf, [0, 255, 10, 0]);
    }

    #[test]
    fn a_message_over_msgmax_is_einval_and_says_so() {
        let q = private();
        let max = crate::sys::kernel_limit("msgmax").unwrap() as usize;
        let e = q.send(1, &vec![0u8; max + 1], true).unwrap_err();
        assert_eq!(crate::sys::errno(&e), Some(libc::EINVAL));
        assert!(e.to_string().contains("larger than msgmax"), "{e}");
    }

    #[test]
    fn a_too_small_buffer_is_e2big_and_the_message_stays() {
        let q = private();
        q.send(1, b"hello", false).unwrap();
        let e = q.recv(1, &mut [0u8; 2]).unwrap_err();
        assert_eq!(errno(&e), Some(libc::E2BIG));
        assert_eq!(q.recv(1, &mut [0u8; 5]).unwrap(), (1, 5));
    }

    #[test]
    fn deadline_receive_gives_up_in_time() {
        let q = private();
        let t = Instant::now();
        let got = q
            .recv_deadline(1, &mut [0u8; 8], t + Duration::from_millis(50))
            .unwrap();
        assert_eq!(got, None);
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn a_full_queue_is_eagain_with_nowait() {
        let q = private();
        let big = vec![7u8; 4096];
        let mut sent = 0;
        let e = loop {
            match q.send(1, &big, true) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(sent > 0 && is_timeout(&e), "{e}");
    }

    #[test]
    fn removal_wakes_a_blocked_receiver() {
        let q = private();
        let id = q.get();
        let h = std::thread::spawn(move || id.recv(1, &mut [0u8; 8]));
        std::thread::sleep(Duration::from_millis(30));
        q.remove().unwrap();
        assert!(is_removed(&h.join().unwrap().unwrap_err()));
        let e = id
            .recv_deadline(1, &mut [0u8; 8], Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert!(is_removed(&e), "{e}");
    }
}

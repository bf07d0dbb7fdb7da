//! System V shared memory: `shmget`, `shmat`/`shmdt`, `shmctl`.
//!
//! A segment lives in the kernel until someone removes it, even after every process that used
//! it has exited; that is why its creator holds it in an [`Owner`](super::Owner), which calls
//! `shmctl(IPC_RMID)` on drop. Removal is deferred: the kernel destroys the memory only when the
//! last attachment is gone, and meanwhile `ipcs -m` shows the segment with status `dest`.
//!
//! An [`Attachment`] is a mapping of the segment into this process. It detaches on drop, and it
//! never hands out a Rust reference to bytes that another process may change under us: plain
//! data moves with bounded copies ([`Attachment::read_at`], [`Attachment::write_at`], or straight
//! to and from a file descriptor), and words that are shared without a lock are reached as
//! atomics ([`Attachment::atomic_u32`], [`Attachment::atomic_u64`]).
//!
//! Rules: keep an `Attachment` no longer than you need the memory; the id may be removed while
//! you are attached (the memory stays valid until you detach, but nobody new can attach).

use super::{cvt, removed_if_invalid, sys_error, Key, Removable};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The id of a shared memory segment, as `shmget` returns it and `ipcs -m` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShmId(pub i32);

/// How to get a segment.
#[derive(Clone, Copy, Debug)]
pub enum Get {
    /// Open an existing segment; fail with ENOENT if there is none.
    Open,
    /// Create a new segment with these permission bits; fail with EEXIST if the key is taken.
    Create(u32),
    /// Open the segment, creating it (with these bits) if it does not exist yet.
    OpenOrCreate(u32),
}

impl Get {
    /// The `shmflg`/`semflg`/`msgflg` bits for this choice.
    pub(crate) fn flags(self) -> io::Result<libc::c_int> {
        Ok(match self {
            Get::Open => 0,
            Get::Create(mode) => libc::IPC_CREAT | libc::IPC_EXCL | super::check_mode(mode)?,
            Get::OpenOrCreate(mode) => libc::IPC_CREAT | super::check_mode(mode)?,
        })
    }
}

/// `shmget(key, size, flags)`. With [`Get::Open`], `size` may be 0 (any size matches).
pub fn shmget(key: Key, size: usize, how: Get) -> io::Result<ShmId> {
    let flags = how.flags()?;
    // SAFETY: shmget takes no pointers.
    let id = unsafe { libc::shmget(key, size, flags) };
    let id = cvt(id, || format!("shmget(key=0x{key:08x}, size={size})"))?;
    crate::trace!("shmget(key=0x{key:08x}, size={size}, flags=0{flags:o}) = shmid {id}");
    Ok(ShmId(id))
}

/// The fields of `struct shmid_ds` that a student learns from `shmctl(IPC_STAT)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    /// The key the segment was created with (0 once it has been marked for removal).
    pub key: Key,
    /// Owner's uid and the permission bits.
    pub uid: u32,
    pub mode: u32,
    /// `shm_segsz`: size in bytes.
    pub size: usize,
    /// `shm_cpid`: pid of the creator.
    pub creator_pid: i32,
    /// `shm_lpid`: pid of the last shmat/shmdt.
    pub last_pid: i32,
    /// `shm_nattch`: number of current attachments, in every process.
    pub attaches: u64,
    /// `shm_atime`, `shm_dtime`, `shm_ctime`: seconds since the epoch (0 = never).
    pub attach_time: i64,
    pub detach_time: i64,
    pub change_time: i64,
    /// Marked for removal (`SHM_DEST`): destroyed when the last attachment goes.
    pub removed: bool,
}

impl ShmId {
    /// `shmctl(IPC_STAT)`.
    pub fn stat(self) -> io::Result<ShmStat> {
        // SAFETY: shmid_ds is plain data; all-zero is a valid value.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: `ds` is a valid, writable shmid_ds for the kernel to fill.
        let ret = unsafe { libc::shmctl(self.0, libc::IPC_STAT, &mut ds) };
        cvt(ret, || format!("shmctl(shmid={}, IPC_STAT)", self.0)).map_err(removed_if_invalid)?;
        let mode = u32::from(ds.shm_perm.mode);
        Ok(ShmStat {
            key: ds.shm_perm.__key,
            uid: ds.shm_perm.uid,
            mode: mode & 0o777,
            size: ds.shm_segsz,
            creator_pid: ds.shm_cpid,
            last_pid: ds.shm_lpid,
            attaches: ds.shm_nattch,
            attach_time: ds.shm_atime,
            detach_time: ds.shm_dtime,
            change_time: ds.shm_ctime,
            // SHM_DEST (01000) is set in the mode word once IPC_RMID has been called.
            removed: mode & 0o1000 != 0,
        })
    }

    /// Attaches the segment into this process, read-write or read-only.
    pub fn attach(self, access: Access) -> io::Result<Attachment> {
        let len = self.stat()?.size;
        let flags = match access {
            Access::ReadWrite => 0,
            Access::ReadOnly => libc::SHM_RDONLY,
        };
        // SAFETY: a null address lets the kernel choose where to map; no memory is touched.
        let ptr = unsafe { libc::shmat(self.0, std::ptr::null(), flags) };
        // shmat reports failure as (void *)-1, not NULL.
        if ptr as isize == -1 {
            let e = sys_error(
                format!("shmat(shmid={})", self.0),
                io::Error::last_os_error(),
            );
            return Err(removed_if_invalid(e));
        }
        crate::trace!(
            "shmat(shmid={}, {access:?}) = {len} bytes at {ptr:p}",
            self.0
        );
        Ok(Attachment {
            id: self,
            ptr: ptr.cast::<u8>(),
            len,
            access,
        })
    }
}

impl Removable for ShmId {
    /// `shmctl(IPC_RMID)`: mark for removal; destroyed when the last process detaches.
    fn remove(self) -> io::Result<()> {
        // SAFETY: IPC_RMID takes no buffer.
        let ret = unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        cvt(ret, || format!("shmctl(shmid={}, IPC_RMID)", self.0)).map_err(removed_if_invalid)?;
        crate::trace!("shmctl(shmid={}, IPC_RMID)", self.0);
        Ok(())
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// `SHM_RDONLY`: a write through this mapping would be a SIGSEGV, so `write_at` refuses.
    ReadOnly,
}

/// A segment mapped into this process; `shmdt` on drop.
#[derive(Debug)]
pub struct Attachment {
    id: ShmId,
    ptr: *mut u8,
    len: usize,
    access: Access,
}

// SAFETY: the mapping is plain memory, valid in every thread of the process until shmdt; all
// access goes through copies and atomics, which are as safe from two threads as from two
// processes.
unsafe impl Send for Attachment {}
// SAFETY: as above: `&Attachment` only offers copies and atomics.
unsafe impl Sync for Attachment {}

fn out_of_bounds(what: &str, offset: usize, n: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: {n} bytes at offset {offset} do not fit a {len}-byte segment"),
    )
}

impl Attachment {
    /// The segment this maps.
    pub fn id(&self) -> ShmId {
        self.id
    }

    /// The segment's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-size mapping (which the kernel never makes).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the mapping in *this* process, for printing: it means nothing elsewhere.
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    fn check(&self, what: &str, offset: usize, n: usize) -> io::Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(out_of_bounds(what, offset, n, self.len)),
        }
    }

    fn check_writable(&self, what: &str) -> io::Result<()> {
        if self.access == Access::ReadOnly {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{what}: segment {} is attached read-only", self.id.0),
            ));
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes out of the segment, starting at `offset`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.check("read_at", offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above), which stays valid while
        // `self` lives; `buf` is a distinct, writable Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.check_writable("write_at")?;
        self.check("write_at", offset, data.len())?;
        // SAFETY: as in read_at, and the mapping is writable (checked above).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        Ok(())
    }

    /// Fills `n` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, n: usize, byte: u8) -> io::Result<()> {
        self.check_writable("fill")?;
        self.check("fill", offset, n)?;
        // SAFETY: in bounds and writable, as checked.
        unsafe { std::ptr::write_bytes(self.ptr.add(offset), byte, n) };
        Ok(())
    }

    /// `read(2)` from `fd` straight into the segment: the kernel copies once, with no buffer of
    /// ours in between. Returns the byte count (0 at end of file); retries EINTR.
    pub fn read_from_fd(&self, fd: impl AsFd, offset: usize, n: usize) -> io::Result<usize> {
        self.check_writable("read_from_fd")?;
        self.check("read_from_fd", offset, n)?;
        let raw = fd.as_fd().as_raw_fd();
        loop {
            // SAFETY: the kernel writes at most `n` bytes into the mapping, in bounds as checked.
            let got = unsafe { libc::read(raw, self.ptr.add(offset).cast(), n) };
            if got >= 0 {
                return Ok(got as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// `write(2)` from the segment straight to `fd`. Returns the byte count; retries EINTR.
    pub fn write_to_fd(&self, fd: impl AsFd, offset: usize, n: usize) -> io::Result<usize> {
        self.check("write_to_fd", offset, n)?;
        let raw = fd.as_fd().as_raw_fd();
        loop {
            // SAFETY: the kernel reads at most `n` bytes of the mapping, in bounds as checked.
            let put = unsafe { libc::write(raw, self.ptr.add(offset).cast(), n) };
            if put >= 0 {
                return Ok(put as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The 4-byte word at `offset` as an atomic, shared with every process that maps the segment.
    /// `offset` must be a multiple of 4. Atomics in shared memory work across processes because
    /// they are plain CPU instructions on the same physical memory.
    pub fn atomic_u32(&self, offset: usize) -> io::Result<&AtomicU32> {
        self.check("atomic_u32", offset, 4)?;
        if !offset.is_multiple_of(4) {
            return Err(out_of_bounds("atomic_u32 (unaligned)", offset, 4, self.len));
        }
        // SAFETY: in bounds, 4-aligned (segments are page-aligned), valid for the lifetime of
        // `&self`; AtomicU32 has the layout of u32, and every access to it is atomic.
        Ok(unsafe { &*self.ptr.add(offset).cast::<AtomicU32>() })
    }

    /// The 8-byte word at `offset` as an atomic; `offset` must be a multiple of 8.
    pub fn atomic_u64(&self, offset: usize) -> io::Result<&AtomicU64> {
        self.check("atomic_u64", offset, 8)?;
        if !offset.is_multiple_of(8) {
            return Err(out_of_bounds("atomic_u64 (unaligned)", offset, 8, self.len));
        }
        // SAFETY: as in atomic_u32, with 8-byte alignment.
        Ok(unsafe { &*self.ptr.add(offset).cast::<AtomicU64>() })
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from shmat and is detached exactly once, here.
        let ret = unsafe { libc::shmdt(self.ptr.cast()) };
        match cvt(ret, || format!("shmdt({:p})", self.ptr)) {
            Ok(_) => crate::trace!("shmdt(shmid={}, {:p})", self.id.0, self.ptr),
            Err(e) => crate::trace!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{is_removed, Owner, IPC_PRIVATE};
    use super::*;

    fn private(size: usize) -> Owner<ShmId> {
        Owner::new(shmget(IPC_PRIVATE, size, Get::Create(0o600)).unwrap())
    }

    #[test]
    fn write_then_read_through_two_attachments() {
        let seg = private(4096);
        let a = seg.attach(Access::ReadWrite).unwrap();
        let b = seg.attach(Access::ReadOnly).unwrap();
        a.write_at(100, b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(seg.stat().unwrap().attaches, 2);
    }

    #[test]
    fn bounds_and_read_only_are_enforced() {
        let seg = private(4096);
        let ro = seg.attach(Access::ReadOnly).unwrap();
        assert_eq!(ro.len(), 4096);
        assert!(ro.write_at(0, b"x").is_err());
        let rw = seg.attach(Access::ReadWrite).unwrap();
        assert!(rw.write_at(4095, b"xy").is_err());
        assert!(rw.read_at(usize::MAX, &mut [0u8; 2]).is_err());
        assert!(rw.atomic_u32(2).is_err());
        rw.atomic_u64(8)
            .unwrap()
            .store(7, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            ro.atomic_u64(8)
                .unwrap()
                .load(std::sync::atomic::Ordering::SeqCst),
            7
        );
    }

    #[test]
    fn stat_reports_creator_size_and_removal() {
        let seg = private(8192);
        let st = seg.stat().unwrap();
        assert_eq!(st.size, 8192);
        assert_eq!(st.creator_pid, std::process::id() as i32);
        assert_eq!(st.mode, 0o600);
        assert!(!st.removed);
        let att = seg.attach(Access::ReadWrite).unwrap();
        let id = seg.get();
        seg.remove().unwrap();
        // Still attached: marked for removal, not gone.
        assert!(id.stat().unwrap().removed);
        drop(att);
        assert!(is_removed(&id.stat().unwrap_err()));
    }

    #[test]
    fn exclusive_create_reports_exists_and_open_finds_it() {
        let dir = crate::testutil::TempDir::new("shm");
        let key = super::super::ftok(dir.path(), b's').unwrap();
        let seg = Owner::new(shmget(key, 64, Get::Create(0o600)).unwrap());
        let e = shmget(key, 64, Get::Create(0o600)).unwrap_err();
        assert_eq!(super::super::errno(&e), Some(libc::EEXIST));
        assert!(e.to_string().contains("shmget(key=0x"), "{e}");
        assert_eq!(shmget(key, 0, Get::Open).unwrap(), seg.get());
    }

    #[test]
    fn fd_copies_go_straight_through_the_segment() {
        let seg = private(4096);
        let att = seg.attach(Access::ReadWrite).unwrap();
        let (r, w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut &w, b"abc").unwrap();
        assert_eq!(att.read_from_fd(&r, 10, 100).unwrap(), 3);
        let (r2, w2) = std::io::pipe().unwrap();
        assert_eq!(att.write_to_fd(&w2, 10, 3).unwrap(), 3);
        drop(w2);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut &r2, &mut out).unwrap();
        assert_eq!(out, b"abc");
    }
}

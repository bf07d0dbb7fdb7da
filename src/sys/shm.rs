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
//! atomics ([`Attachment::atomic_u32`], [`Attachment::atomic_u64`], or on a read-only
//! attachment [`Attachment::load_u32`], [`Attachment::load_u64`]). The copies themselves are
//! made of relaxed atomic loads and stores, one 8-byte word at a time, so that two threads (or
//! a thread and another process) on the same bytes are never a data race: see the `Sync` impl.
//!
//! Rules: keep an `Attachment` no longer than you need the memory; the id may be removed while
//! you are attached (the memory stays valid until you detach, but nobody new can attach).
//! Its length is learnt *after* `shmat`, from the segment actually mapped. Do not copy over a
//! word that another thread uses as an atomic at the same moment (a mixed-size race).

use super::{
    answers, cvt, removed_if_gone, removed_if_invalid, sys_error, Key, Removable, IPC_PRIVATE,
};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

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
    get(key, size, how.flags()?)
}

/// [`shmget`] of a new private segment whose memory comes from the kernel's pool of huge
/// pages (`SHM_HUGETLB`; 2 MiB on x86-64, reserved by root in `/proc/sys/vm/nr_hugepages`),
/// not from 4 KiB pages given out one fault at a time.
///
/// The kernel sets the pages aside at this call, rounded up to whole huge pages, so a later
/// write can never find the pool empty; a pool that is too small is ENOMEM here. Without
/// CAP_IPC_LOCK (or the group in `/proc/sys/vm/hugetlb_shm_group`) it is EPERM, unless the
/// segment fits the caller's `RLIMIT_MEMLOCK`. Programs attach it with a plain `shmat`.
pub fn shmget_huge(size: usize, mode: u32) -> io::Result<ShmId> {
    get(
        IPC_PRIVATE,
        size,
        Get::Create(mode).flags()? | libc::SHM_HUGETLB,
    )
}

fn get(key: Key, size: usize, flags: libc::c_int) -> io::Result<ShmId> {
    let huge = if flags & libc::SHM_HUGETLB != 0 {
        ", SHM_HUGETLB"
    } else {
        ""
    };
    // SAFETY: shmget takes no pointers.
    let id = unsafe { libc::shmget(key, size, flags) };
    let id = cvt(id, || format!("shmget(key=0x{key:08x}, size={size}{huge})"))?;
    crate::trace!("shmget(key=0x{key:08x}, size={size}, flags=0{flags:o}) = shmid {id}");
    Ok(ShmId(id))
}

/// The part of the huge page pool that no segment has yet, in bytes, and the size of one huge
/// page, read from `/proc/meminfo`. `HugePages_Free` counts the pages set aside for segments
/// that have not touched them yet (`HugePages_Rsvd`) as free, so those are taken off.
/// `(0, 0)` if it says nothing.
pub fn huge_pages_free() -> (u64, u64) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name| super::proc_field(&info, name);
    let page = field("Hugepagesize:") * 1024;
    let free = field("HugePages_Free:").saturating_sub(field("HugePages_Rsvd:"));
    (free * page, page)
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
        self.attach_then_stat(access, || {})
    }

    /// [`attach`](Self::attach), with `between` run after `shmat` and before the `IPC_STAT`
    /// that learns the size (a test puts a removal and a reuse of the id there).
    ///
    /// The order is the point: an id that is attached cannot be freed (`IPC_RMID` only marks
    /// it), so the size we read afterwards is the size of what we mapped. Read first, and the
    /// id could be removed and given to a smaller segment before `shmat`, and the attachment
    /// would believe in bytes beyond its mapping: a bounds-checked `read_at` could SIGSEGV.
    fn attach_then_stat(self, access: Access, between: impl FnOnce()) -> io::Result<Attachment> {
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
            return Err(removed_if_gone(e, || answers(self.stat())));
        }
        // Held at length 0 until the size is known: a failed stat still detaches, on drop.
        let mut att = Attachment {
            id: self,
            ptr: ptr.cast::<u8>(),
            len: 0,
            access,
        };
        between();
        att.len = self.stat()?.size;
        crate::trace!(
            "shmat(shmid={}, {access:?}) = {} bytes at {ptr:p}",
            self.0,
            att.len
        );
        Ok(att)
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

// SAFETY: the mapping is plain memory, valid in every thread of the process until shmdt (in
// Drop, which needs `&mut self`, so no `&Attachment` outlives it); moving the guard to another
// thread changes nothing about it.
unsafe impl Send for Attachment {}
// SAFETY: `&Attachment` reaches the segment's bytes only through atomic operations: the copies
// (`read_at`, `write_at`, `fill`) move them as relaxed atomic words and bytes (`copy_out`,
// `copy_in`), and `atomic_u32`/`atomic_u64`/`load_u*` are atomics. Two threads on one
// attachment, or a thread and another process, therefore never make a data race in Rust's
// memory model: they can interleave (a reader may see half of a concurrent write, which is why
// the features lock or version their data), but every access is defined. The one rule left to
// callers is the model's rule against *mixed-size* races: do not copy over a word while another
// thread uses it as an atomic (ipclab keeps its atomic words out of the bytes it copies). The
// kernel's own copies (`read_from_fd`, `write_to_fd`) are, to Rust, another process's.
unsafe impl Sync for Attachment {}

/// Copies `n` bytes out of the mapping at `src` into `dst`, in relaxed atomic loads: bytes up
/// to an 8-byte boundary of the mapping, then whole words, then the last bytes. (A relaxed
/// atomic load or store of a word is a plain `mov` on x86-64 and aarch64; what it gives up is
/// only the compiler's freedom to merge words into vector instructions.)
///
/// Relaxed loads of at most register width are sound on a read-only mapping too (see
/// [`Attachment::load_u32`]).
///
/// # Safety
/// `src..src+n` lies in a live mapping whose bytes are only ever accessed atomically from this
/// process (the rule of [`Attachment`]'s `Sync`), and `dst` is valid for `n` byte writes.
unsafe fn copy_out(src: *const u8, dst: *mut u8, n: usize) {
    let head = src.align_offset(8).min(n);
    let words = (n - head) / 8;
    for i in (0..head).chain(head + words * 8..n) {
        // SAFETY: `src + i` is in the mapping, accessed only atomically (the caller's promise;
        // an AtomicU8 needs no alignment); `dst + i` is writable.
        unsafe { *dst.add(i) = AtomicU8::from_ptr(src.add(i).cast_mut()).load(Ordering::Relaxed) };
    }
    // SAFETY: `src + head` is 8-aligned, and the `words` words after it are in the mapping.
    let from = unsafe { src.add(head) }.cast::<u64>().cast_mut();
    // SAFETY: `dst + head` starts `words * 8` writable bytes (of any alignment).
    let to = unsafe { dst.add(head) }.cast::<u64>();
    for w in 0..words {
        // SAFETY: word `w` of `from` is aligned, in the mapping and accessed only atomically;
        // word `w` of `to` is writable, perhaps unaligned.
        unsafe {
            let v = AtomicU64::from_ptr(from.add(w)).load(Ordering::Relaxed);
            to.add(w).write_unaligned(v);
        }
    }
}

/// Copies `n` bytes from `src` into the mapping at `dst`, in relaxed atomic stores (as
/// [`copy_out`]). If `src` is `None`, stores `byte` instead.
///
/// # Safety
/// `dst..dst+n` lies in a live, *writable* mapping whose bytes are only ever accessed
/// atomically from this process, and `src`, if given, is valid for `n` byte reads.
unsafe fn copy_in(src: Option<*const u8>, byte: u8, dst: *mut u8, n: usize) {
    let head = dst.align_offset(8).min(n);
    let words = (n - head) / 8;
    for i in (0..head).chain(head + words * 8..n) {
        // SAFETY: `s + i` is readable (the caller's promise); `dst + i` is in the writable
        // mapping, accessed only atomically.
        unsafe {
            let b = src.map_or(byte, |s| *s.add(i));
            AtomicU8::from_ptr(dst.add(i)).store(b, Ordering::Relaxed);
        }
    }
    // SAFETY: `dst + head` is 8-aligned, and the `words` words after it are in the mapping.
    let to = unsafe { dst.add(head) }.cast::<u64>();
    match src {
        Some(s) => {
            // SAFETY: `s + head` starts `words * 8` readable bytes (of any alignment).
            let from = unsafe { s.add(head) }.cast::<u64>();
            for w in 0..words {
                // SAFETY: word `w` of `from` is readable, perhaps unaligned; word `w` of `to`
                // is aligned, in the writable mapping, accessed only atomically.
                unsafe {
                    let v = from.add(w).read_unaligned();
                    AtomicU64::from_ptr(to.add(w)).store(v, Ordering::Relaxed);
                }
            }
        }
        None => {
            let v = u64::from_ne_bytes([byte; 8]);
            for w in 0..words {
                // SAFETY: as above.
                unsafe { AtomicU64::from_ptr(to.add(w)).store(v, Ordering::Relaxed) };
            }
        }
    }
}

/// The size of a memory page (`sysconf(_SC_PAGESIZE)`): the unit of [`Attachment::resident`].
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(1)
}

/// The swap space configured on this machine, in bytes (`sysinfo(2)`): 0 means a page of shared
/// memory, once the kernel holds it, stays in memory until the segment is destroyed.
pub fn swap_total() -> io::Result<u64> {
    // SAFETY: sysinfo is plain data; all-zero is a valid value.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `si` is a valid, writable struct sysinfo for the kernel to fill.
    cvt(unsafe { libc::sysinfo(&mut si) }, || "sysinfo".to_string())?;
    // `c_ulong` is u64 here, u32 on 32-bit targets: the conversion is not useless there.
    #[allow(clippy::useless_conversion)]
    let total = u64::from(si.totalswap);
    Ok(total.saturating_mul(u64::from(si.mem_unit)))
}

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
        // `self` lives and is reached only atomically (see `Sync`); `buf` is a distinct,
        // writable Rust buffer of that length.
        unsafe { copy_out(self.ptr.add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.check_writable("write_at")?;
        self.check("write_at", offset, data.len())?;
        // SAFETY: as in read_at, and the mapping is writable (checked above); `data` is a
        // readable Rust buffer of that length.
        unsafe { copy_in(Some(data.as_ptr()), 0, self.ptr.add(offset), data.len()) };
        Ok(())
    }

    /// Fills `n` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, n: usize, byte: u8) -> io::Result<()> {
        self.check_writable("fill")?;
        self.check("fill", offset, n)?;
        // SAFETY: in bounds and writable, as checked; reached only atomically (see `Sync`).
        unsafe { copy_in(None, byte, self.ptr.add(offset), n) };
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

    /// `mincore(2)`: which pages of `[offset, offset + len)` are resident, one `bool` per page
    /// of [`page_size`] bytes (the last may be partly outside the range). `offset` must be a
    /// multiple of the page size. For a shm segment "resident" means the kernel holds a page
    /// of memory for it, whoever touched it: a page no process ever wrote or read has none,
    /// and reads as zeros (unless it was swapped out: see [`swap_total`]).
    pub fn resident(&self, offset: usize, len: usize) -> io::Result<Vec<bool>> {
        self.check("mincore", offset, len)?;
        let page = page_size();
        if !offset.is_multiple_of(page) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mincore: offset {offset} is not a multiple of the page size {page}"),
            ));
        }
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range is inside our mapping (checked above; the kernel rounds `len` up
        // to whole pages, and a mapping is whole pages), the start is page-aligned (shmat maps
        // at a page boundary, and `offset` is a multiple of the page size), and `vec` has one
        // writable byte per page of the range. mincore reads no memory of the range.
        let ret = unsafe { libc::mincore(self.ptr.add(offset).cast(), len, vec.as_mut_ptr()) };
        cvt(ret, || {
            format!("mincore(shmid={}, offset={offset}, len={len})", self.id.0)
        })?;
        Ok(vec.iter().map(|b| b & 1 == 1).collect())
    }

    /// The 4-byte word at `offset` as an atomic, shared with every process that maps the segment.
    /// `offset` must be a multiple of 4, and the attachment read-write: a store through a
    /// read-only mapping would be a SIGSEGV (use [`load_u32`](Self::load_u32) there). Atomics in
    /// shared memory work across processes because they are plain CPU instructions on the same
    /// physical memory.
    pub fn atomic_u32(&self, offset: usize) -> io::Result<&AtomicU32> {
        self.check_writable("atomic_u32")?;
        self.check_word("atomic_u32", offset, 4)?;
        // SAFETY: in bounds, 4-aligned (segments are page-aligned), writable (checked), valid
        // for the lifetime of `&self`; AtomicU32 has the layout of u32, and every access to
        // the segment from this process is atomic (see `Sync`).
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.add(offset).cast()) })
    }

    /// The 8-byte word at `offset` as an atomic; `offset` must be a multiple of 8, and the
    /// attachment read-write (as [`atomic_u32`](Self::atomic_u32)).
    pub fn atomic_u64(&self, offset: usize) -> io::Result<&AtomicU64> {
        self.check_writable("atomic_u64")?;
        self.check_word("atomic_u64", offset, 8)?;
        // SAFETY: as in atomic_u32, with 8-byte alignment.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.add(offset).cast()) })
    }

    /// A relaxed load of the 4-byte word at `offset` (a multiple of 4): what a read-only
    /// attachment may do with a shared word. std guarantees that *relaxed* atomic loads no wider
    /// than a register are sound on read-only memory ("Atomic accesses to read-only memory" in
    /// `core::sync::atomic`); for acquire order, follow it with `fence(Ordering::Acquire)`.
    pub fn load_u32(&self, offset: usize) -> io::Result<u32> {
        self.check_word("load_u32", offset, 4)?;
        // SAFETY: in bounds and 4-aligned, as checked, and valid while `&self` lives; only a
        // relaxed load of register width is made, which std guarantees a read-only mapping
        // allows; all access is atomic (see `Sync`).
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.add(offset).cast()) }.load(Ordering::Relaxed))
    }

    /// A relaxed load of the 8-byte word at `offset` (a multiple of 8), as [`load_u32`](Self::load_u32).
    pub fn load_u64(&self, offset: usize) -> io::Result<u64> {
        self.check_word("load_u64", offset, 8)?;
        // SAFETY: as in load_u32, with 8-byte alignment.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.add(offset).cast()) }.load(Ordering::Relaxed))
    }

    fn check_word(&self, what: &str, offset: usize, size: usize) -> io::Result<()> {
        self.check(what, offset, size)?;
        if !offset.is_multiple_of(size) {
            return Err(out_of_bounds(
                &format!("{what} (unaligned)"),
                offset,
                size,
                self.len,
            ));
        }
        Ok(())
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
    fn mincore_sees_the_pages_written_through_any_attachment() {
        let page = page_size();
        let shm = private(8 * page);
        let (writer, server) = (
            shm.attach(Access::ReadWrite).unwrap(),
            shm.attach(Access::ReadOnly).unwrap(),
        );
        assert_eq!(server.resident(0, 8 * page).unwrap(), vec![false; 8]);
        // Written through the *other* mapping: the kernel's page, not our page tables.
        writer.write_at(3 * page + 5, &[1]).unwrap();
        writer.write_at(7 * page, &[0]).unwrap();
        let r = server.resident(0, 8 * page).unwrap();
        assert_eq!(r, [false, false, false, true, false, false, false, true]);
        assert_eq!(server.resident(3 * page, 1).unwrap(), [true]);
        assert!(server.resident(1, page).is_err(), "not page-aligned");
        assert!(server.resident(page, 8 * page).is_err(), "past the end");
        assert!(swap_total().is_ok());
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
        rw.atomic_u64(8).unwrap().store(7, Ordering::SeqCst);
        assert_eq!(ro.load_u64(8).unwrap(), 7);
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

    #[test]
    fn atomics_refuse_a_read_only_attachment_and_loads_work_there() {
        let seg = private(4096);
        let ro = seg.attach(Access::ReadOnly).unwrap();
        // A store through a read-only mapping would be a SIGSEGV: no atomic to store through.
        let e = ro.atomic_u32(0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(ro.atomic_u64(8).is_err());
        let rw = seg.attach(Access::ReadWrite).unwrap();
        rw.atomic_u32(4)
            .unwrap()
            .store(0x0102_0304, Ordering::Relaxed);
        assert_eq!(ro.load_u32(4).unwrap(), 0x0102_0304);
        assert!(ro.load_u32(2).is_err() && ro.load_u64(4096).is_err());
    }

    #[test]
    fn copies_are_exact_at_every_alignment_and_length() {
        let seg = private(256);
        let att = seg.attach(Access::ReadWrite).unwrap();
        for off in 0..17 {
            for n in 0..40 {
                let data: Vec<u8> = (0..n).map(|i| (off * 31 + i * 7 + 1) as u8).collect();
                att.fill(0, 256, 0xee).unwrap();
                att.write_at(off, &data).unwrap();
                let mut all = [0u8; 256];
                att.read_at(0, &mut all).unwrap();
                assert!(all[..off].iter().all(|&b| b == 0xee), "before {off}+{n}");
                assert_eq!(&all[off..off + n], &data[..], "at {off}+{n}");
                assert!(all[off + n..].iter().all(|&b| b == 0xee), "after {off}+{n}");
                let mut back = vec![0u8; n];
                att.read_at(off, &mut back).unwrap();
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn two_threads_may_copy_through_one_attachment() {
        // Sync: both threads use the same `&Attachment`; every byte moves atomically, so a
        // reader sees each 8-byte word whole (all of one write or of the other), never torn.
        let seg = private(4096);
        let att = seg.attach(Access::ReadWrite).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..2000u32 {
                    att.fill(0, 4096, if i % 2 == 0 { 0x11 } else { 0x22 })
                        .unwrap();
                }
            });
            let mut buf = [0u8; 4096];
            for _ in 0..2000 {
                att.read_at(0, &mut buf).unwrap();
                for w in buf.chunks(8) {
                    assert!(w.iter().all(|&b| b == w[0]), "a torn word: {w:?}");
                }
            }
        });
    }

    /// Writes `value` to /proc/sys/kernel/shm_next_id (root only): the id the next shmget gets.
    fn set_next_id(value: i32) -> io::Result<()> {
        std::fs::write("/proc/sys/kernel/shm_next_id", value.to_string())
    }

    #[test]
    fn the_length_is_that_of_the_mapping_even_if_the_id_is_reused_meanwhile() {
        // Remove the segment and give its id to a smaller one in the window between shmat and
        // IPC_STAT. Had the size been read before shmat, the window would lie between them and
        // the attachment would claim 1 MiB over a 4 KiB mapping (read_at(len - 1): SIGSEGV).
        let big = shmget(IPC_PRIVATE, 1 << 20, Get::Create(0o600)).unwrap();
        let mut small = None;
        let mut skipped = false;
        let att = big
            .attach_then_stat(Access::ReadWrite, || {
                big.remove().unwrap();
                if set_next_id(big.0).is_err() {
                    skipped = true;
                    return;
                }
                // An attached id cannot be freed, so the kernel cannot honour shm_next_id
                // (ENOSPC) or gives another id: either way not ours.
                small = shmget(IPC_PRIVATE, 4096, Get::Create(0o600))
                    .ok()
                    .map(Owner::new);
                let _ = set_next_id(-1);
            })
            .unwrap();
        if skipped {
            eprintln!(
                "skipped the id reuse: /proc/sys/kernel/shm_next_id is not writable (not root)"
            );
        }
        assert_ne!(
            small.as_ref().map(|s| s.get()),
            Some(big),
            "the id was reused"
        );
        assert_eq!(att.len(), 1 << 20);
        let mut last = [0u8; 1];
        att.read_at(att.len() - 1, &mut last).unwrap();
    }
}

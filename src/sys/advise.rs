//! Pages ahead of the writes: `madvise(MADV_POPULATE_WRITE)`.
//!
//! Fresh memory (an anonymous buffer, a new shm segment) gets its pages one page fault at a
//! time, at the first write to each 4 KiB page. Filling a large region that way (a late
//! joiner's replica and twin: 2 GiB for a 1 GiB segment) spends more time entering and
//! leaving the kernel than copying. `MADV_POPULATE_WRITE` (Linux 5.14) asks the kernel to
//! make every page of a range present and writable in one call, as the write faults would,
//! without changing a byte. On an older kernel the call fails with EINVAL and nothing is lost:
//! the writes fault the pages in as before.
//!
//! Safe: the call changes no memory's contents, and on an address range that is not mapped it
//! only fails (ENOMEM). It is a hint, so its result is ignored.

/// `MADV_POPULATE_WRITE` (not in every `libc` release yet).
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// Makes the pages of `[addr, addr + len)` present and writable, rounded out to whole pages.
pub fn populate_write(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    let page = super::shm::page_size();
    let start = addr / page * page;
    let end = (addr + len).div_ceil(page) * page;
    // SAFETY: madvise with MADV_POPULATE_WRITE reads and writes no byte of the range; on
    // memory that is not mapped it returns ENOMEM, and the result is only a hint.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) };
}

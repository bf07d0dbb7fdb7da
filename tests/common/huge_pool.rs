//! A pool of huge pages for a test or a benchmark that needs one (root only).
//!
//! Root sizes the kernel's pool in `/proc/sys/vm/nr_hugepages`. [`HugePool::add`] raises it by
//! what the caller needs, and dropping the guard puts the old number back, also when a test
//! panics. The pool is memory, not an IPC object: the kernel returns a segment's huge pages
//! to it when the segment goes, so nothing here needs removing but the raise itself.
//! (A process killed by SIGKILL leaves the pool raised; `echo 0 > ...` gives it back.)

use ipclab::sys::shm::{huge_pages_free, shmget_huge, Access};
use ipclab::sys::Owner;

pub const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The pool, raised; the old size comes back on drop.
pub struct HugePool {
    before: u64,
}

impl HugePool {
    /// At least `bytes` more of free huge pages, or why not (not root, no huge pages on this
    /// kernel, not enough memory for the kernel to find them).
    pub fn add(bytes: u64) -> Result<HugePool, String> {
        let why = |e: &dyn std::fmt::Display| format!("{NR_HUGEPAGES}: {e}");
        let text = std::fs::read_to_string(NR_HUGEPAGES).map_err(|e| why(&e))?;
        let before: u64 = text.trim().parse().map_err(|e| why(&e))?;
        let (_, page) = huge_pages_free();
        if page == 0 {
            return Err("this kernel has no huge pages".into());
        }
        let pages = bytes.div_ceil(page);
        std::fs::write(NR_HUGEPAGES, (before + pages).to_string()).map_err(|e| why(&e))?;
        let pool = HugePool { before };
        let (free, _) = huge_pages_free();
        if free < pages * page {
            return Err(format!(
                "the kernel found only {} MiB for the pool",
                free >> 20
            ));
        }
        Ok(pool)
    }

    /// Writes every free page of the pool once: one segment over all of them, filled and
    /// removed. A pool reserved at boot has been used so by whatever ran before; one reserved a
    /// moment ago, on a virtual machine that hands unused memory back to its host, is not yet
    /// backed by the host, and its first use would pay the host's page faults.
    pub fn warm(&self) -> Result<(), String> {
        let (free, _) = huge_pages_free();
        let seg = Owner::new(shmget_huge(free as usize, 0o600).map_err(|e| e.to_string())?);
        let att = seg.attach(Access::ReadWrite).map_err(|e| e.to_string())?;
        att.fill(0, att.len(), 0).map_err(|e| e.to_string())
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.before.to_string());
    }
}

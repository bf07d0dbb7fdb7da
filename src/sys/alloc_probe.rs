//! Measuring what a piece of code allocates: a global allocator that counts, for tests.
//!
//! A decoder that reads a length from the wire and then allocates that many bytes lets any
//! peer make the server allocate 4 GiB with a 16-byte frame. The rule in [`crate::wire`] is
//! that every claimed length is checked against its documented limit *before* anything is
//! allocated. A test can only prove that by watching the allocator, so a test binary installs
//! [`CountingAlloc`] as its global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: ipclab::sys::alloc_probe::CountingAlloc = ipclab::sys::alloc_probe::CountingAlloc;
//!
//! let (result, usage) = ipclab::sys::alloc_probe::measure(|| Frame::decode(&bytes));
//! assert!(usage.largest <= bytes.len().max(LIMIT));
//! ```
//!
//! It hands every request to the system allocator unchanged and, while [`measure`] runs on the
//! calling thread, records the largest single request and the sum of all requests of that
//! thread. The counters are per thread (so that tests running in parallel do not see each
//! other's allocations) and are plain `Cell`s with a `const` initialiser: reading them never
//! allocates, which matters because the allocator itself reads them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// A pass-through allocator that counts the requests of threads inside [`measure`].
pub struct CountingAlloc;

/// What a measured closure allocated on its thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The largest single request, in bytes (a `realloc` counts as a request of its new size).
    pub largest: usize,
    /// All requests together, in bytes (freed or not).
    pub total: usize,
    /// How many requests.
    pub count: usize,
}

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// Records one request of `size` bytes, if this thread is measuring.
fn note(size: usize) {
    // try_with: during thread teardown the slots may be gone; then there is nothing to count.
    if ON.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
        let _ = TOTAL.try_with(|c| c.set(c.get().saturating_add(size)));
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// GlobalAlloc contract; `note` only touches this thread's counters and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received; the caller upholds alloc's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through one of the methods above, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as dealloc; the caller upholds realloc's contract on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns what it allocated on this thread. Only meaningful in a binary whose
/// global allocator is [`CountingAlloc`]; elsewhere the usage is all zero. Not reentrant: a
/// `measure` inside `f` ends the outer one's counting early.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    LARGEST.with(|c| c.set(0));
    TOTAL.with(|c| c.set(0));
    COUNT.with(|c| c.set(0));
    ON.with(|c| c.set(true));
    let r = f();
    ON.with(|c| c.set(false));
    let usage = Usage {
        largest: LARGEST.with(Cell::get),
        total: TOTAL.with(Cell::get),
        count: COUNT.with(Cell::get),
    };
    (r, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's own unit tests run with the counter installed: it passes everything on.
    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    #[test]
    fn a_measured_closure_reports_its_largest_request() {
        let (v, u) = measure(|| {
            let mut v: Vec<u8> = Vec::with_capacity(1000);
            v.extend_from_slice(&[1, 2, 3]);
            let s = String::from("x").repeat(10);
            (v, s)
        });
        assert_eq!(v.0, [1, 2, 3]);
        assert_eq!(u.largest, 1000);
        assert!(u.total >= 1010 && u.count >= 2, "{u:?}");
        // Outside `measure` nothing is counted, and another thread never counts for this one.
        let (_, idle) = measure(|| std::thread::spawn(|| vec![0u8; 5000]).join().unwrap());
        assert!(idle.largest < 5000, "{idle:?}");
    }
}

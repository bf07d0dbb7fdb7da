//! Twins and diffs: send only what changed (TreadMarks, Munin), and read only what may have.
//!
//! ```text
//!   twin    | h e l l o \0 . . | . . . . . . . . | . . . . . . . . |   what the peers have
//!   replica | h e l l o \0 . . | . . . . . . . . | . . x . . . . . |   after the program wrote
//!                                                  ^^^^^^^^^^^^^^^^
//!                                                  one changed word: run (16, 8 bytes)
//! ```
//!
//! For each segment the server keeps a *twin*: a private copy of the contents as they were last
//! sent to, or received from, the other nodes (made when a program first attaches on this node,
//! [`Twin::copy_of`]: before that, nothing here can differ from what was published). On rshmChanged it compares the replica with the
//! twin, 8-byte word by 8-byte word, and sends only the *runs* of words that differ, each as
//! (offset, length, bytes). A 1-byte change in a 1 MiB segment costs one word, a 63-byte frame,
//! instead of a megabyte.
//!
//! Two cheap tricks keep the comparison fast: whole blocks are compared first (a `memcmp` the
//! compiler vectorises), and only a block that differs is walked word by word; and two runs
//! separated by a single unchanged word are merged, because a run header (8 bytes) costs as
//! much as the word it would save.
//!
//! # What the comparison reads
//! The frame costs the changed bytes; the *search* for them costs what is read. Three ways to
//! keep that small, from the cheapest:
//!
//! ```text
//!   rshmChanged_range(id, off, len)   reads [off, off+len), rounded out to words:  O(len)
//!   rshmChanged(id), no swap          reads the resident pages only:      O(resident pages)
//!   rshmChanged(id), swap present     reads every page:                   O(segment)
//!     (or the replica in huge pages)
//!
//!   page       0        1        2        3        4        5
//!   resident   yes      no       yes      no       no       yes      (mincore on the replica)
//!   twin may   yes      no       no       yes      no       no       (one bit per page, below)
//!   be != 0
//!   read?      read     SKIP     read     read     SKIP     read
//! ```
//!
//! A page of a System V segment that no process has ever touched has no memory behind it: the
//! kernel gives it a zeroed page the first time someone writes (or reads) it. `mincore(2)` on
//! the server's attachment tells which pages have one, whoever touched them, through whichever
//! mapping (but not for a segment in huge pages: there it sees only the caller's own mappings,
//! so a huge replica is always read whole). Without swap (checked at each call) a page never leaves memory once it has one, so
//! a page with none has never been written: it reads as zeros. If the twin's page is zeros too
//! it cannot differ, and is skipped without being read (reading it would even give it memory).
//! The twin keeps one bit per page, "may be non-zero", set whenever any code takes a mutable
//! view of that page of the twin ([`Twin`]'s `IndexMut`): a bit never set is a twin page of
//! zeros, for certain, whoever wrote the rest.
//!
//! The server cannot see *which* resident pages the program wrote since the last call: the
//! program writes through its own page tables, which the server cannot read. Write detection
//! (the kernel's soft-dirty bits, or `mprotect` and a fault handler as TreadMarks does) would
//! have to run in the writing program. So a page the program wrote once is read at every whole
//! call after that; a program that knows what it wrote says so with the ranged call.
//!
//! The comparison goes through a buffer of at most [`CHUNK`] bytes, never a copy of the segment.

use crate::params::RSHM_POPULATE_MIN;
use crate::sys::advise::populate_write;
use std::io;
use std::ops::{Deref, Index, IndexMut, Range};

/// Words: the unit of comparison, and of the order of concurrent writes ([`super::table`]).
pub const WORD: usize = 8;

/// Blocks compared whole before looking at their words; also the twin's page, the unit of its
/// "may be non-zero" bits (mincore's page must be the same size for pages to be skipped).
pub const BLOCK: usize = 4096;

/// The most bytes read from the replica at once: the comparison's buffer.
pub const CHUNK: usize = 256 * BLOCK;

/// The twin of a segment: its bytes, and per page a bit "may hold a non-zero byte".
#[derive(Clone, PartialEq, Eq)]
pub struct Twin {
    bytes: Vec<u8>,
    maybe: Vec<u64>,
}

impl Twin {
    /// All zeros, and known to be (no bit set).
    pub fn zeroed(size: usize) -> Twin {
        Twin {
            bytes: vec![0; size],
            maybe: vec![0; size.div_ceil(BLOCK).div_ceil(64)],
        }
    }

    /// False only if page `page` (of [`BLOCK`] bytes) of the twin is certainly all zeros.
    pub fn may_be_nonzero(&self, page: usize) -> bool {
        self.maybe[page / 64] & (1 << (page % 64)) != 0
    }

    /// Every page of `[a, b)` may now take non-zero bytes.
    fn mark(&mut self, a: usize, b: usize) {
        if a < b {
            for page in a / BLOCK..=(b - 1) / BLOCK {
                self.maybe[page / 64] |= 1 << (page % 64);
            }
        }
    }
}

/// Reading: the bytes.
impl Deref for Twin {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Index<Range<usize>> for Twin {
    type Output = [u8];
    fn index(&self, r: Range<usize>) -> &[u8] {
        &self.bytes[r]
    }
}

/// Writing: the only way to change a twin's bytes, and it marks the pages it hands out.
impl IndexMut<Range<usize>> for Twin {
    fn index_mut(&mut self, r: Range<usize>) -> &mut [u8] {
        self.mark(r.start, r.end);
        &mut self.bytes[r]
    }
}

impl PartialEq<Vec<u8>> for Twin {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.bytes == *other
    }
}

impl std::fmt::Debug for Twin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Twin({} bytes)", self.bytes.len())
    }
}

/// Runs, merged as they come: adjacent, or one unchanged word apart, make one run.
struct Runs(Vec<(usize, usize)>);

impl Runs {
    fn push(&mut self, start: usize, end: usize) {
        match self.0.last_mut() {
            // One run is cheaper than two (a run header costs as much as the word).
            Some(last) if start <= last.0 + last.1 + WORD => last.1 = end - last.0,
            _ => self.0.push((start, end - start)),
        }
    }

    /// Compares `live` with `twin` (the same bytes of the segment, from offset `base`, a
    /// multiple of [`WORD`]), block by block, then word by word in a block that differs.
    fn compare(&mut self, twin: &[u8], live: &[u8], mut base: usize) {
        for (t, l) in twin.chunks(BLOCK).zip(live.chunks(BLOCK)) {
            if t != l {
                let mut open: Option<usize> = None;
                for (i, (tw, lw)) in t.chunks(WORD).zip(l.chunks(WORD)).enumerate() {
                    let at = base + i * WORD;
                    match (tw != lw, open) {
                        (true, None) => open = Some(at),
                        (false, Some(s)) => {
                            self.push(s, at);
                            open = None;
                        }
                        _ => {}
                    }
                }
                if let Some(s) = open {
                    self.push(s, base + t.len());
                }
            }
            base += t.len();
        }
    }
}

/// The runs `(offset, length)` where `live` differs from `twin`, ascending, word-aligned
/// (the last may end with the segment, mid-word). Both slices have the same length.
pub fn diff(twin: &[u8], live: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(twin.len(), live.len(), "a twin is as long as its segment");
    let mut runs = Runs(Vec::new());
    runs.compare(twin, live, 0);
    runs.0
}

/// Where the replica's bytes come from, for [`diff_range`]: the live contents.
pub trait Live {
    /// Copies `buf.len()` bytes of the replica from `offset`.
    fn read(&self, offset: usize, buf: &mut [u8]) -> io::Result<()>;
    /// Which pages (of [`BLOCK`] bytes) from page `first`, `n` of them, have memory; `None`
    /// when that cannot tell what a page holds (swap, another page size): read them all.
    fn resident(&self, first: usize, n: usize) -> Option<Vec<bool>>;
}

/// As [`diff`], over the bytes `[start, end)` of the segment only (`start` a multiple of
/// [`WORD`]), reading the replica through a buffer of at most [`CHUNK`] bytes and skipping the
/// pages that cannot differ (see the module header). `None` as soon as there are more than
/// `max_runs` runs: the caller sends the whole range, and the rest need not be read.
pub fn diff_range(
    twin: &Twin,
    replica: &impl Live,
    (start, end): (usize, usize),
    max_runs: usize,
) -> io::Result<Option<Vec<(usize, usize)>>> {
    assert!(start % WORD == 0 && start <= end && end <= twin.len());
    let mut runs = Runs(Vec::new());
    let mut buf = vec![0u8; CHUNK.min(end - start)];
    let mut at = start;
    while at < end {
        // One chunk, ending on a page boundary (or at `end`).
        let stop = ((at / BLOCK + CHUNK / BLOCK) * BLOCK).min(end);
        let first = at / BLOCK;
        let pages = (stop - 1) / BLOCK + 1 - first;
        let resident = replica.resident(first, pages);
        let read = |p: usize| match &resident {
            Some(r) => r[p - first] || twin.may_be_nonzero(p),
            None => true,
        };
        for (p, q) in stretches(first..first + pages, read) {
            let (a, b) = ((p * BLOCK).max(at), (q * BLOCK).min(stop));
            let live = &mut buf[..b - a];
            replica.read(a, live)?;
            runs.compare(&twin[a..b], live, a);
            if runs.0.len() > max_runs {
                return Ok(None);
            }
        }
        at = stop;
    }
    Ok(Some(runs.0))
}

/// The pages of `pages` that `keep` picks, as stretches `[p, q)` of consecutive pages.
fn stretches(
    pages: Range<usize>,
    keep: impl Fn(usize) -> bool,
) -> impl Iterator<Item = (usize, usize)> {
    let end = pages.end;
    let mut p = pages.start;
    std::iter::from_fn(move || {
        p = (p..end).find(|&p| keep(p))?;
        let q = (p..end).find(|&q| !keep(q)).unwrap_or(end);
        let stretch = (p, q);
        p = q;
        Some(stretch)
    })
}

impl Twin {
    /// A twin that holds what `live` (a replica of `size` bytes) holds now: made when the first
    /// program attaches on this node (see `table::Segment`). Only the pages that have memory
    /// are copied, one chunk at a time; the others read as zeros, as the zeroed twin does, and
    /// keep its "certainly zero" bits.
    ///
    /// Without the `mincore` answer (swap, huge pages) every page is read, through a buffer,
    /// and only the pages that hold a non-zero byte are copied: a sparse segment keeps a
    /// sparse twin, rather than one whose every page has memory.
    pub fn copy_of(live: &impl Live, size: usize) -> io::Result<Twin> {
        let mut twin = Twin::zeroed(size);
        let pages = size.div_ceil(BLOCK);
        let mut buf = Vec::new();
        for first in (0..pages).step_by(CHUNK / BLOCK) {
            let n = (CHUNK / BLOCK).min(pages - first);
            let Some(resident) = live.resident(first, n) else {
                let (a, b) = (first * BLOCK, ((first + n) * BLOCK).min(size));
                buf.resize(b - a, 0);
                live.read(a, &mut buf)?;
                for (i, page) in buf.chunks(BLOCK).enumerate() {
                    if page.iter().any(|&x| x != 0) {
                        let at = a + i * BLOCK;
                        twin[at..at + page.len()].copy_from_slice(page);
                    }
                }
                continue;
            };
            for (p, q) in stretches(first..first + n, |p| resident[p - first]) {
                let (a, b) = (p * BLOCK, (q * BLOCK).min(size));
                let bytes = &mut twin[a..b];
                if bytes.len() >= RSHM_POPULATE_MIN {
                    populate_write(bytes.as_ptr() as usize, bytes.len());
                }
                live.read(a, bytes)?;
            }
        }
        Ok(twin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn runs_are_the_changed_words() {
        let twin = vec![0u8; 10_003];
        let mut live = twin.clone();
        assert!(diff(&twin, &live).is_empty());
        live[17] = 1; // word 2
        assert_eq!(diff(&twin, &live), [(16, 8)]);
        live[40] = 1; // word 5: two unchanged words after word 2, a second run
        assert_eq!(diff(&twin, &live), [(16, 8), (40, 8)]);
        live[32] = 1; // word 4: one gap word left, merged into one run
        assert_eq!(diff(&twin, &live), [(16, 32)]);
        // Across a block boundary, and at the unaligned end.
        live[4095] = 9;
        live[4096] = 9;
        live[10_002] = 9;
        assert_eq!(
            diff(&twin, &live),
            [(16, 32), (4088, 16), (10_000, 3)],
            "the last run ends with the segment"
        );
        let all = vec![1u8; 10_003];
        assert_eq!(diff(&twin, &all), [(0, 10_003)]);
    }

    /// A replica in a Vec: pages listed in `resident` have memory, and every read is counted.
    struct Fake {
        bytes: Vec<u8>,
        resident: Option<Vec<bool>>,
        read: Cell<usize>,
    }

    impl Live for Fake {
        fn read(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
            assert!(buf.len() <= CHUNK, "a bounded buffer");
            self.read.set(self.read.get() + buf.len());
            buf.copy_from_slice(&self.bytes[offset..offset + buf.len()]);
            Ok(())
        }
        fn resident(&self, first: usize, n: usize) -> Option<Vec<bool>> {
            self.resident.as_ref().map(|r| r[first..first + n].to_vec())
        }
    }

    fn fake(bytes: Vec<u8>, resident: Option<Vec<bool>>) -> Fake {
        Fake {
            bytes,
            resident,
            read: Cell::new(0),
        }
    }

    #[test]
    fn pages_without_memory_and_with_a_zero_twin_are_not_read() {
        let size = 300 * BLOCK + 5; // more than one chunk, and a partial last page
        let pages = size.div_ceil(BLOCK);
        let mut twin = Twin::zeroed(size);
        // Page 3 of the twin held data (a peer's update, say); the replica has it too.
        twin[3 * BLOCK..3 * BLOCK + 8].copy_from_slice(&[7; 8]);
        assert!(twin.may_be_nonzero(3) && !twin.may_be_nonzero(2));
        let mut live = twin.to_vec();
        // The program wrote page 10 and the last page, and zeros over page 3's data.
        live[10 * BLOCK + 9] = 1;
        live[size - 1] = 2;
        live[3 * BLOCK..3 * BLOCK + 8].copy_from_slice(&[0; 8]);
        let mut resident = vec![false; pages];
        resident[10] = true;
        resident[pages - 1] = true;
        // Page 3 has no memory any more? It cannot, without swap: but its twin bit forces a
        // read anyway, and the zeros written over the data are found.
        let r = fake(live.clone(), Some(resident));
        let runs = diff_range(&twin, &r, (0, size), usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(runs, diff(&twin, &live));
        assert_eq!(runs, [(3 * BLOCK, 8), (10 * BLOCK + 8, 8), (size - 5, 5)]);
        assert_eq!(r.read.get(), 2 * BLOCK + 5, "three pages read, of {pages}");
        // No residency known (swap): every byte read, same answer.
        let r = fake(live.clone(), None);
        let runs2 = diff_range(&twin, &r, (0, size), usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!((runs2, r.read.get()), (runs, size));
    }

    #[test]
    fn a_range_reads_only_itself_and_finds_only_its_changes() {
        let size = 3 * BLOCK;
        let twin = Twin::zeroed(size);
        let mut live = vec![0u8; size];
        live[100] = 1;
        live[5000] = 1;
        let r = fake(live, None);
        let runs = diff_range(&twin, &r, (4096, 8192), usize::MAX).unwrap();
        assert_eq!(runs, Some(vec![(5000 / 8 * 8, 8)]), "byte 100 lies outside");
        assert_eq!(r.read.get(), 4096);
        // Too many runs (one word in three changed): given up after the first chunk.
        let size = 3 * CHUNK;
        let scattered: Vec<u8> = (0..size).map(|i| u8::from((i / 8) % 3 == 0)).collect();
        let r = fake(scattered, None);
        assert_eq!(
            diff_range(&Twin::zeroed(size), &r, (0, size), 10).unwrap(),
            None
        );
        assert_eq!(r.read.get(), CHUNK, "stopped after the first chunk");
    }

    #[test]
    fn a_twin_copied_without_residency_is_exact_and_marks_only_the_pages_with_data() {
        let size = 300 * BLOCK + 5;
        let mut live = vec![0u8; size];
        live[7 * BLOCK + 3] = 1;
        live[size - 1] = 2;
        for resident in [None, Some(vec![true; size.div_ceil(BLOCK)])] {
            let known = resident.is_some();
            let twin = Twin::copy_of(&fake(live.clone(), resident), size).unwrap();
            assert!(twin.to_vec() == live, "residency known: {known}");
            let marked: Vec<usize> = (0..size.div_ceil(BLOCK))
                .filter(|&p| twin.may_be_nonzero(p))
                .collect();
            if !known {
                assert_eq!(marked, [7, 300], "only the pages with data");
            }
        }
    }

    #[test]
    fn the_twin_marks_every_page_it_lends_for_writing() {
        let mut t = Twin::zeroed(5 * BLOCK);
        t[BLOCK - 1..BLOCK + 1].copy_from_slice(&[0, 0]);
        let marked: Vec<bool> = (0..5).map(|p| t.may_be_nonzero(p)).collect();
        assert_eq!(marked, [true, true, false, false, false]);
        t[4 * BLOCK..4 * BLOCK].copy_from_slice(&[]);
        assert!(!t.may_be_nonzero(4), "an empty range marks nothing");
    }
}

//! Word stamps, kept per page where a page is uniform: which update last wrote each word.
//!
//! ```text
//!   page:   | p0: v7@A | p1: mixed ─────────────┐ | p2: v7@A | p3: v0 (never written) |
//!                                                ▼
//!                        words of p1: v7@A v7@A v9@B v9@B ... (512 stamps)
//! ```
//!
//! The consistency model ([`super::Segment::apply_update`]) needs the stamp of every 8-byte
//! word. Kept as one stamp per word, a 1 GiB segment carries 128 Mi of them (1.1 GiB, touched
//! page by page at the first write), and every STATE walks them all. But a segment is mostly
//! written in big changes, so the 512 words of a page usually share one stamp. Here each page
//! of [`PAGE_WORDS`] words has one stamp, and only a page whose words differ gets its own
//! table of word stamps (allocated when a write first covers part of it, dropped when a write
//! covers all of it again). A question about a stretch of words ([`Stamps::stretch`]) is then
//! answered a page at a time wherever the page is uniform.
//!
//! What a word's stamp *is* never depends on how it is stored: [`Stamps::get`] gives the same
//! answer as the one-stamp-per-word table did, and so does every comparison built on it.
//! Memory: 17 bytes per page (a 1 GiB segment: 4.3 MiB), plus 4.5 KiB per mixed page (at
//! worst, every page mixed: the 9 bytes per word of the plain table, and 17 per page more).

use crate::rshm::diff::BLOCK;
use std::ops::Range;

/// Words per page of stamps: one 4 KiB page of the segment.
pub const PAGE_WORDS: usize = BLOCK / super::WORD;

/// The word stamps of a page whose words differ.
struct Mixed {
    ver: [u64; PAGE_WORDS],
    org: [u8; PAGE_WORDS],
}

/// The stamp `(version, origin index)` of every word of a segment.
pub struct Stamps {
    words: usize,
    /// Per page: the stamp of all its words, unless `mixed` holds the page's own table.
    ver: Vec<u64>,
    org: Vec<u8>,
    mixed: Vec<Option<Box<Mixed>>>,
}

impl Stamps {
    /// `words` words, all stamped `(0, 0)`: never written.
    pub fn zeroed(words: usize) -> Stamps {
        let pages = words.div_ceil(PAGE_WORDS);
        let mut mixed = Vec::new();
        mixed.resize_with(pages, || None);
        Stamps {
            words,
            ver: vec![0; pages],
            org: vec![0; pages],
            mixed,
        }
    }

    pub fn len(&self) -> usize {
        self.words
    }

    /// The stamp of word `w`.
    pub fn get(&self, w: usize) -> (u64, u8) {
        let p = w / PAGE_WORDS;
        match &self.mixed[p] {
            Some(m) => (m.ver[w % PAGE_WORDS], m.org[w % PAGE_WORDS]),
            None => (self.ver[p], self.org[p]),
        }
    }

    /// Words `words` now have the stamp `(version, org)`.
    pub fn fill(&mut self, words: Range<usize>, version: u64, org: u8) {
        let mut w = words.start;
        while w < words.end {
            let p = w / PAGE_WORDS;
            let (first, last) = (p * PAGE_WORDS, ((p + 1) * PAGE_WORDS).min(self.words));
            let to = words.end.min(last);
            if w == first && to == last {
                // The whole page: uniform again.
                self.ver[p] = version;
                self.org[p] = org;
                self.mixed[p] = None;
            } else {
                let (pv, po) = (self.ver[p], self.org[p]);
                let m = self.mixed[p].get_or_insert_with(|| {
                    Box::new(Mixed {
                        ver: [pv; PAGE_WORDS],
                        org: [po; PAGE_WORDS],
                    })
                });
                m.ver[w - first..to - first].fill(version);
                m.org[w - first..to - first].fill(org);
            }
            w = to;
        }
    }

    /// From word `w`, the end (at most `end`) of the stretch of words whose stamps all satisfy
    /// `keep`: `w` itself if word `w`'s does not. A uniform page is decided by one call.
    pub fn stretch(&self, mut w: usize, end: usize, keep: impl Fn(u64, u8) -> bool) -> usize {
        while w < end {
            let p = w / PAGE_WORDS;
            let last = ((p + 1) * PAGE_WORDS).min(end);
            match &self.mixed[p] {
                None if keep(self.ver[p], self.org[p]) => w = last,
                None => return w,
                Some(m) => {
                    while w < last {
                        if !keep(m.ver[w % PAGE_WORDS], m.org[w % PAGE_WORDS]) {
                            return w;
                        }
                        w += 1;
                    }
                }
            }
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain table, one stamp per word: what `Stamps` must always agree with.
    fn check(s: &Stamps, plain: &[(u64, u8)]) {
        for (w, want) in plain.iter().enumerate() {
            assert_eq!(s.get(w), *want, "word {w}");
        }
    }

    #[test]
    fn fills_agree_with_a_plain_table() {
        let words = 3 * PAGE_WORDS + 100; // a partial last page
        let mut s = Stamps::zeroed(words);
        let mut plain = vec![(0u64, 0u8); words];
        let fills = [
            (0, words, 1, 1),
            (10, 20, 2, 2),
            (PAGE_WORDS - 3, 2 * PAGE_WORDS + 5, 3, 1),
            (PAGE_WORDS, 2 * PAGE_WORDS, 4, 2),
            (3 * PAGE_WORDS, words, 5, 3),
            (3 * PAGE_WORDS + 7, 3 * PAGE_WORDS + 8, 6, 1),
        ];
        for (a, b, v, o) in fills {
            s.fill(a..b, v, o);
            plain[a..b].fill((v, o));
            check(&s, &plain);
        }
        // Page 1 was covered whole by the fourth fill: uniform again.
        assert!(s.mixed[1].is_none() && s.mixed[0].is_some() && s.mixed[3].is_some());
    }

    #[test]
    fn a_stretch_ends_at_the_first_word_that_fails() {
        let words = 4 * PAGE_WORDS;
        let mut s = Stamps::zeroed(words);
        s.fill(0..words, 5, 1);
        s.fill(2 * PAGE_WORDS + 9..2 * PAGE_WORDS + 10, 7, 2);
        let older_than_6 = |v: u64, _: u8| v < 6;
        assert_eq!(s.stretch(0, words, older_than_6), 2 * PAGE_WORDS + 9);
        assert_eq!(
            s.stretch(2 * PAGE_WORDS + 9, words, older_than_6),
            2 * PAGE_WORDS + 9
        );
        assert_eq!(s.stretch(2 * PAGE_WORDS + 10, words, older_than_6), words);
        assert_eq!(s.stretch(3, 40, older_than_6), 40);
    }
}

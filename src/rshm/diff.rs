//! Twins and diffs: send only what changed (TreadMarks, Munin).
//!
//! ```text
//!   twin    | h e l l o \0 . . | . . . . . . . . | . . . . . . . . |   what the peers have
//!   replica | h e l l o \0 . . | . . . . . . . . | . . x . . . . . |   after the program wrote
//!                                                  ^^^^^^^^^^^^^^^^
//!                                                  one changed word: run (16, 8 bytes)
//! ```
//!
//! For each segment the server keeps a *twin*: a private copy of the contents as they were last
//! sent to, or received from, the other nodes. On rshmChanged it compares the replica with the
//! twin, 8-byte word by 8-byte word, and sends only the *runs* of words that differ, each as
//! (offset, length, bytes). A 1-byte change in a 1 MiB segment costs one word, a 54-byte frame,
//! instead of a megabyte.
//!
//! Two cheap tricks keep the comparison fast: whole blocks are compared first (a `memcmp` the
//! compiler vectorises), and only a block that differs is walked word by word; and two runs
//! separated by a single unchanged word are merged, because a run header (8 bytes) costs as
//! much as the word it would save.

/// Words: the unit of comparison, and of the order of concurrent writes ([`super::table`]).
pub const WORD: usize = 8;

/// Blocks compared whole before looking at their words.
const BLOCK: usize = 4096;

/// The runs `(offset, length)` where `live` differs from `twin`, ascending, word-aligned
/// (the last may end with the segment, mid-word). Both slices have the same length.
pub fn diff(twin: &[u8], live: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(twin.len(), live.len(), "a twin is as long as its segment");
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut push = |start: usize, end: usize| match runs.last_mut() {
        // Adjacent, or one unchanged word apart: one run is cheaper than two.
        Some(last) if start <= last.0 + last.1 + WORD => last.1 = end - last.0,
        _ => runs.push((start, end - start)),
    };
    let mut base = 0;
    for (t, l) in twin.chunks(BLOCK).zip(live.chunks(BLOCK)) {
        if t != l {
            let mut open: Option<usize> = None;
            for (i, (tw, lw)) in t.chunks(WORD).zip(l.chunks(WORD)).enumerate() {
                let at = base + i * WORD;
                match (tw != lw, open) {
                    (true, None) => open = Some(at),
                    (false, Some(s)) => {
                        push(s, at);
                        open = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = open {
                push(s, base + t.len());
            }
        }
        base += t.len();
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

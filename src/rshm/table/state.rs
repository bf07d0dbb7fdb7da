//! A row's contents as STATE frames: what a node streams to a late joiner, and how the joiner
//! merges them.
//!
//! ```text
//!   sender:   published + word stamps ──state_spans(from)──▶ runs (stamp, start, end), <= 1 MiB
//!   receiver: each run ──apply_state_run──▶ replica (twin), stamps, word by word where newer
//! ```
//!
//! A STATE run is a stretch of words written by one update, sent with that update's stamp, so
//! the receiver merges it exactly as it would have merged the update: a word is written only
//! if the run's stamp is newer than the word's own. Words never written (stamp zero) are zeros
//! on every node and are not sent. Uniform pages of stamps are read whole ([`super::stamps`]),
//! so a segment written in big changes costs one look per 4 KiB page, not per word.

use super::{check_version, err, Segment, Stamp};
use crate::params::{RSHM_MAX_FRAME_DATA, RSHM_MAX_RUNS};
use crate::rshm::diff::WORD;
use crate::wire::rshm::{Run, StampedRun};
use std::io;

impl Segment {
    /// One STATE frame's worth of the contents, from byte `from` (a multiple of 8): what was
    /// last published ([`Segment::published`]), cut into runs of consecutive words written by the same
    /// update, each with that update's stamp, until `RSHM_MAX_FRAME_DATA` bytes or
    /// `RSHM_MAX_RUNS` runs. Words never written are zeros on every node, and are left out.
    /// Returns the runs and where the next chunk starts (the segment's size: done).
    ///
    /// Only this chunk is copied, never the whole segment: the caller holds the state lock
    /// for one chunk at a time (see `hello::stream_states`).
    pub fn state_chunk(&self, from: usize) -> io::Result<(Vec<StampedRun>, usize)> {
        let (spans, next) = self.state_spans(from);
        let mut runs = Vec::with_capacity(spans.len());
        for (stamp, a, b) in spans {
            runs.push(StampedRun {
                version: stamp.version,
                origin: stamp.origin,
                run: Run {
                    offset: a as u64,
                    data: self.published(a, b)?.into_owned(),
                },
            });
        }
        Ok((runs, next))
    }

    /// [`Segment::state_chunk`] without the copies: each run as `(stamp, start, end)`, for a
    /// caller that encodes the frame straight from [`Segment::published`] (still under the
    /// lock).
    pub fn state_spans(&self, from: usize) -> (Vec<(Stamp, usize, usize)>, usize) {
        let mut out = Vec::new();
        let words = self.stamps.len();
        let mut w = from / WORD;
        let mut room = RSHM_MAX_FRAME_DATA;
        // Words never written cost no bytes, but their stamps are still read: stop after a
        // few chunks' worth of words, so that one hold of the lock stays short either way
        // (a uniform page of stamps is read as one).
        let scan_end = words.min(w + 8 * RSHM_MAX_FRAME_DATA / WORD);
        while w < scan_end && room >= WORD && out.len() < RSHM_MAX_RUNS {
            let (v, o) = self.stamps.get(w);
            let first = w;
            let most = scan_end.min(first + room / WORD);
            w = self.stamps.stretch(w, most, |v2, o2| (v2, o2) == (v, o));
            let stamp = Stamp {
                version: v,
                origin: self.origins[usize::from(o)],
            };
            if stamp == Stamp::ZERO {
                continue;
            }
            let (a, b) = (first * WORD, (w * WORD).min(self.size));
            room -= b - a;
            out.push((stamp, a, b));
        }
        (out, (w * WORD).min(self.size))
    }

    /// The whole contents as STATE runs, chunk after chunk (tests; a server streams chunks).
    #[cfg(test)]
    pub fn state_runs(&self) -> Vec<StampedRun> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < self.size {
            let (runs, next) = self
                .state_chunk(at)
                .expect("a replica reads inside its size");
            out.extend(runs);
            at = next;
        }
        out
    }

    /// A STATE from a peer (HELLO exchange): each run applied as an update with its own stamp,
    /// so word by word the newer bytes win, exactly as if the updates had arrived one by one.
    /// Returns the number of bytes written. The server applies a row's STATE frame by frame
    /// as they arrive, and counts the change once, after the last (see `hello::read_states`).
    pub fn apply_state(&mut self, runs: &[StampedRun]) -> io::Result<usize> {
        let mut written = 0;
        for r in runs {
            let stamp = Stamp {
                version: r.version,
                origin: r.origin,
            };
            written += self.apply_state_run(stamp, r.run.offset, &r.run.data)?;
        }
        Ok(written)
    }

    /// One run of a STATE, its bytes borrowed from the frame they came in: written word by
    /// word where `stamp` is newer, as [`Segment::apply_update`] does.
    pub fn apply_state_run(&mut self, stamp: Stamp, offset: u64, data: &[u8]) -> io::Result<usize> {
        check_version(stamp.version)?;
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= self.size as u64);
        if !fits {
            return Err(err(
                libc::EINVAL,
                format!(
                    "run of {} bytes at {offset} outside the segment of {} bytes",
                    data.len(),
                    self.size
                ),
            ));
        }
        let org = self.origin_index(stamp.origin)?;
        // Inside the segment (checked above), so the offset fits a usize.
        let written = self.write_newer(stamp, org, offset as usize, data)?;
        self.stamp = self.stamp.max(stamp);
        Ok(written)
    }
}

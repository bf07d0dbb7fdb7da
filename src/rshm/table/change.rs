//! A local change: what `rshmChanged(id)` and `rshmChanged_range(id, offset, len)` find in this
//! node's replica, and what they stamp.
//!
//! ```text
//!   whole call:   [0, size)                               every page that may differ is read
//!   ranged call:  [offset, offset + len) rounded out to words, and only that is read
//!                          |<-- len -->|
//!   segment  ....|....|....|..xx|x...|....|....
//!                          ^^^^^^^^^^ compared and published; bytes outside stay unpublished
//! ```
//!
//! Both compare the replica with the twin over their range only ([`diff_range`]): runs that
//! differ are stamped one above the newest version seen, copied into the twin, and sent. Bytes
//! the program wrote *outside* a ranged call's range are not compared, so they stay as they
//! were in the twin, unpublished, until a later call (ranged or whole) covers them.

use super::{err, Replica, Segment, Stamp};
use crate::params::{RSHM_MAX_RUNS, RSHM_MAX_VERSION, RSHM_SKIP_MIN};
use crate::rshm::diff::{diff_range, Live, Twin, BLOCK, WORD};
use crate::sys::shm::{page_size, swap_total, Attachment};
use crate::wire::rshm::{Run, RUN_HEADER_LEN};
use std::io;
use std::net::SocketAddrV4;

/// The replica as [`diff_range`] reads it: through the server's attachment, and with
/// `mincore` telling which pages have memory, when that tells what they hold.
struct LiveReplica<'a> {
    att: &'a Attachment,
    /// Pages may be skipped: no swap (asked at this call), mincore's page is the twin's, and
    /// the replica is in ordinary pages.
    skip: bool,
}

impl<'a> LiveReplica<'a> {
    /// `replica`, skipping pages where `mincore` tells what they hold; with `skip` false,
    /// every page is read.
    ///
    /// Where it cannot tell: with swap, a page with no memory may be on disk, not zero. And in
    /// huge pages, `mincore` answers from the *caller's* page tables only (for ordinary shm it
    /// asks the segment itself), so a page that a program wrote and the server never touched
    /// would look empty, and its bytes would never be published.
    fn new(replica: &'a Replica, skip: bool) -> LiveReplica<'a> {
        let skip =
            skip && !replica.huge && page_size() == BLOCK && swap_total().is_ok_and(|s| s == 0);
        LiveReplica {
            att: &replica.att,
            skip,
        }
    }
}

impl Live for LiveReplica<'_> {
    fn read(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.att.read_at(offset, buf)
    }

    fn resident(&self, first: usize, n: usize) -> Option<Vec<bool>> {
        if !self.skip {
            return None;
        }
        let len = (n * BLOCK).min(self.att.len() - first * BLOCK);
        // A failure only costs the skip: every page of the chunk is read instead.
        self.att.resident(first * BLOCK, len).ok()
    }
}

impl Segment {
    /// The first `rshmat` here: the twin, a copy of the replica as it stands, which is what
    /// was published (see [`Segment::twin`]). Only the replica's pages with memory are copied.
    /// It runs under the state lock, once per row and node, and costs what copying those bytes
    /// costs (0.5 to 2.4 s for a full 1 GiB on the lab machine). Later calls do nothing.
    pub fn ensure_twin(&mut self) -> io::Result<()> {
        if self.twin.is_none() {
            let replica = LiveReplica::new(&self.replica, true);
            self.twin = Some(Twin::copy_of(&replica, self.size)?);
        }
        Ok(())
    }

    /// rshmChanged here: the runs that differ from the twin anywhere in the segment.
    pub fn local_change(&mut self, me: SocketAddrV4) -> io::Result<(Stamp, Vec<Run>)> {
        self.change(me, 0, self.size)
    }

    /// rshmChanged_range here: the runs that differ within `[offset, offset + len)`, rounded
    /// out to whole words. EINVAL for an empty range, or one that does not fit the segment.
    pub fn local_change_range(
        &mut self,
        me: SocketAddrV4,
        offset: u64,
        len: u64,
    ) -> io::Result<(Stamp, Vec<Run>)> {
        let size = self.size as u64;
        let end = match offset.checked_add(len) {
            _ if len == 0 => {
                return Err(err(
                    libc::EINVAL,
                    "len 0: an empty range publishes nothing".into(),
                ))
            }
            None => {
                return Err(err(
                    libc::EINVAL,
                    format!("offset {offset} + len {len} overflows"),
                ))
            }
            Some(end) if end > size => {
                return Err(err(
                    libc::EINVAL,
                    format!("offset {offset} + len {len} = {end} is past the end of the segment ({size} bytes)"),
                ))
            }
            Some(end) => end as usize,
        };
        let start = offset as usize / WORD * WORD;
        let end = end.div_ceil(WORD).saturating_mul(WORD).min(self.size);
        self.change(me, start, end)
    }

    /// The change found in `[start, end)` (`start` word-aligned), stamped one above the newest
    /// update seen. The twin and the word stamps take the new bytes. If the runs would cost
    /// more on the wire than the whole range, or are more than `RSHM_MAX_RUNS`, the whole
    /// range is one run.
    fn change(
        &mut self,
        me: SocketAddrV4,
        start: usize,
        end: usize,
    ) -> io::Result<(Stamp, Vec<Run>)> {
        // Checked first: a version at the limit refuses the change rather than wrap (the
        // limit is far beyond any real count; see `RSHM_MAX_VERSION`).
        let version = self
            .stamp
            .version
            .checked_add(1)
            .filter(|v| *v <= RSHM_MAX_VERSION)
            .ok_or_else(|| {
                err(
                    libc::EOVERFLOW,
                    format!(
                        "version {} is at the limit {RSHM_MAX_VERSION}",
                        self.stamp.version
                    ),
                )
            })?;
        let stamp = Stamp {
            version,
            origin: me,
        };
        let org = self.origin_index(me)?;
        let Some(twin) = &mut self.twin else {
            // No program has attached here: nothing here can differ from what was published.
            // The call still counts as a change, as one that finds nothing always has.
            self.stamp = stamp;
            return Ok((stamp, Vec::new()));
        };
        // Small ranges are read whole: two system calls cost more than reading them.
        let replica = LiveReplica::new(&self.replica, end - start >= RSHM_SKIP_MIN);
        let whole = vec![(start, end - start)];
        let changed = match diff_range(twin, &replica, (start, end), RSHM_MAX_RUNS)? {
            Some(runs) => {
                let cost: usize = runs.iter().map(|(_, len)| RUN_HEADER_LEN + len).sum();
                // More bytes than a copy: the whole range, as one run, and every word of it
                // stamped (the peers stamp every word of it, and the stamps must agree).
                if cost > RUN_HEADER_LEN + (end - start) {
                    whole
                } else {
                    runs
                }
            }
            None => whole,
        };
        let mut runs = Vec::with_capacity(changed.len());
        for (off, len) in changed {
            // Read again, run by run: what the twin takes is exactly what is sent.
            let mut data = vec![0u8; len];
            self.replica.att.read_at(off, &mut data)?;
            twin[off..off + len].copy_from_slice(&data);
            runs.push(Run {
                offset: off as u64,
                data,
            });
        }
        for r in &runs {
            let off = r.offset as usize;
            self.stamp_words(off, off + r.data.len(), stamp.version, org);
        }
        self.stamp = stamp;
        Ok((stamp, runs))
    }
}

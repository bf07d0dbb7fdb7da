//! The table's unit tests: rows, counts, stamps and merges, without a server.

use super::*;
use crate::params::{RSHM_MAX_FRAME_DATA, RSHM_MAX_RUNS};
use std::net::Ipv4Addr;

fn node(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn bytes(seg: &Segment) -> Vec<u8> {
    let mut b = vec![0u8; seg.size];
    seg.replica.att.read_at(0, &mut b).unwrap();
    b
}

/// What a program's `rshmat` does to the row before the program writes: the twin is made.
fn attach(seg: &mut Segment) -> &mut Segment {
    seg.ensure_twin().unwrap();
    seg
}

fn twin(seg: &Segment) -> Vec<u8> {
    seg.twin.as_ref().expect("a program attached").to_vec()
}

fn published(seg: &Segment) -> Vec<u8> {
    seg.published(0, seg.size).unwrap().into_owned()
}

#[test]
fn versions_from_peers_are_checked_and_never_overflow() {
    let (a, b) = (node(1), node(2));
    let mut t = Table::new(a).unwrap();
    let id = t.create(0x98, 16).unwrap().rshmid;
    let seg = t.get_mut(id).unwrap();
    let run = |v: u8| {
        vec![Run {
            offset: 0,
            data: vec![v; 8],
        }]
    };
    // A forged version far above any real one, and u64::MAX: refused, nothing written.
    for version in [RSHM_MAX_VERSION + 1, 1 << 62, u64::MAX] {
        let e = seg
            .apply_update(Stamp { version, origin: b }, &run(0xee))
            .unwrap_err();
        assert_eq!(crate::sys::errno(&e), Some(libc::EOVERFLOW), "{e}");
        let e = seg
            .apply_unordered(Stamp { version, origin: b }, &run(0xee))
            .unwrap_err();
        assert_eq!(crate::sys::errno(&e), Some(libc::EOVERFLOW), "{e}");
    }
    assert_eq!(bytes(seg), vec![0; 16]);
    // A run whose end would overflow, or leave the segment: refused.
    let far = [Run {
        offset: u64::MAX - 4,
        data: vec![1; 8],
    }];
    assert!(seg
        .apply_update(
            Stamp {
                version: 1,
                origin: b
            },
            &far
        )
        .is_err());
    // At the limit itself an update applies, and the next local change is refused, not
    // wrapped (or, in a debug build, a panic).
    let top = Stamp {
        version: RSHM_MAX_VERSION,
        origin: b,
    };
    assert_eq!(seg.apply_update(top, &run(0x11)).unwrap(), 8);
    seg.replica.att.write_at(8, &[2; 8]).unwrap();
    let e = seg.local_change(a).unwrap_err();
    assert_eq!(crate::sys::errno(&e), Some(libc::EOVERFLOW), "{e}");
    assert_eq!(seg.stamp, top);
}

#[test]
fn concurrent_updates_converge_in_any_order_and_repeats_change_nothing() {
    // Two nodes change one segment at once, from the same starting point: A words 0 and 1,
    // B words 1 and 2. Both stamps have version 1; B's address is higher, so B wins word 1.
    let (a, b, c) = (node(1), node(2), node(3));
    let mut ta = Table::new(a).unwrap();
    let id = ta.create(0x99, 32).unwrap().rshmid;
    let e = ta.get(id).unwrap().entry();
    let mut tb = Table::new(b).unwrap();
    tb.adopt(&e).unwrap();
    let sa = attach(ta.get_mut(id).unwrap());
    sa.replica.att.write_at(0, &[0xaa; 16]).unwrap();
    let (stamp_a, runs_a) = sa.local_change(a).unwrap();
    let sb = attach(tb.get_mut(id).unwrap());
    sb.replica.att.write_at(8, &[0xbb; 16]).unwrap();
    let (stamp_b, runs_b) = sb.local_change(b).unwrap();
    assert_eq!(stamp_a.version, stamp_b.version);
    assert!(stamp_a < stamp_b);
    assert_eq!(runs_a.len(), 1);
    assert_eq!((runs_a[0].offset, runs_a[0].data.len()), (0, 16));
    // Each applies the other's; a third node gets them in the other order, twice.
    ta.get_mut(id)
        .unwrap()
        .apply_update(stamp_b, &runs_b)
        .unwrap();
    tb.get_mut(id)
        .unwrap()
        .apply_update(stamp_a, &runs_a)
        .unwrap();
    let mut tc = Table::new(c).unwrap();
    tc.adopt(&e).unwrap();
    let sc = tc.get_mut(id).unwrap();
    sc.apply_update(stamp_b, &runs_b).unwrap();
    assert_eq!(
        sc.apply_update(stamp_a, &runs_a).unwrap(),
        8,
        "word 1 is B's"
    );
    assert_eq!(sc.apply_update(stamp_b, &runs_b).unwrap(), 0, "a repeat");
    assert_eq!(sc.apply_update(stamp_a, &runs_a).unwrap(), 0, "a repeat");
    let want: Vec<u8> = [[0xaa; 8], [0xbb; 8], [0xbb; 8], [0; 8]].concat();
    for (t, name) in [(&ta, "A"), (&tb, "B"), (&tc, "C")] {
        let seg = t.get(id).unwrap();
        assert_eq!(bytes(seg), want, "node {name}");
        assert_eq!(published(seg), want, "node {name}'s published bytes");
        assert_eq!(seg.stamp, stamp_b);
    }
    assert!(
        tc.get(id).unwrap().twin.is_none(),
        "no program attached on C"
    );
    // The next change anywhere is numbered above both, and sends only what changed (C's
    // twin, made at the attach, is a copy of the replica).
    let sc = attach(tc.get_mut(id).unwrap());
    sc.replica.att.write_at(31, &[1]).unwrap();
    let (s3, r3) = sc.local_change(c).unwrap();
    assert_eq!(s3.version, 2);
    assert_eq!((r3[0].offset, r3[0].data.len()), (24, 8));
    // A state merges word by word: A takes C's newer word 3, and nothing else.
    let state = tc.get(id).unwrap().state_runs();
    assert_eq!(state.len(), 3, "words 0, 1-2, 3: three writers {state:?}");
    let sa = ta.get_mut(id).unwrap();
    assert_eq!(sa.apply_state(&state).unwrap(), 8);
    assert_eq!(sa.apply_state(&state).unwrap(), 0, "a repeat");
    assert_eq!(bytes(ta.get(id).unwrap()), bytes(tc.get(id).unwrap()));
    assert_eq!(ta.get(id).unwrap().stamp, s3);
    // A run outside the segment is refused.
    let bad = [Run {
        offset: 30,
        data: vec![0; 8],
    }];
    assert!(ta.get_mut(id).unwrap().apply_update(s3, &bad).is_err());
}

#[test]
fn too_many_runs_become_one_run_of_the_whole_segment() {
    let mut t = Table::new(node(1)).unwrap();
    let id = t.create(0x98, 1 << 20).unwrap().rshmid;
    let seg = attach(t.get_mut(id).unwrap());
    // One changed word in every three: far more runs than RSHM_MAX_RUNS.
    for w in (0..(1 << 20) / 8).step_by(3) {
        seg.replica.att.write_at(w * 8, &[1]).unwrap();
    }
    let (_, runs) = seg.local_change(node(1)).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].offset, runs[0].data.len()), (0, 1 << 20));
    // The state of it still fits frames of at most RSHM_MAX_RUNS runs each.
    assert!(seg.state_runs().len() <= RSHM_MAX_RUNS);
}

#[test]
fn a_key_made_twice_goes_to_the_lower_rshmid_everywhere() {
    let (a, b) = (node(1), node(2));
    let mut ta = Table::new(a).unwrap();
    let mut tb = Table::new(b).unwrap();
    let ea = ta.create(0x42, 64).unwrap().entry();
    let eb = tb.create(0x42, 64).unwrap().entry();
    let (lo, hi) = if ea.rshmid < eb.rshmid {
        (ea.rshmid, eb.rshmid)
    } else {
        (eb.rshmid, ea.rshmid)
    };
    let ra = ta.adopt(&eb).unwrap();
    let rb = tb.adopt(&ea).unwrap();
    for t in [&ta, &tb] {
        assert_eq!(t.by_key(0x42).unwrap().rshmid, lo);
        assert_eq!(t.resolve(hi), lo);
        assert_eq!(t.rows().count(), 1);
    }
    // One side renamed its row, the other reports the winner to the sender.
    let outcomes = [ra, rb];
    assert!(outcomes.contains(&Adopted::Renamed { from: hi }));
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Adopted::Lost(w) if w.rshmid == lo)));
}

#[test]
fn ids_are_positive_random_and_distinct() {
    let mut a = Table::new(node(1)).unwrap();
    let mut b = Table::new(node(2)).unwrap();
    let ids: Vec<i32> = (0..1000).map(|_| a.new_id()).collect();
    assert!(ids.iter().all(|&i| i > 0));
    // Two tables seeded from the OS do not produce the same sequence.
    assert_ne!(ids[..4], (0..4).map(|_| b.new_id()).collect::<Vec<_>>()[..]);
}

#[test]
fn counts_merge_per_node_and_destroy_removes_the_replica() {
    let me = node(1);
    let mut t = Table::new(me).unwrap();
    let id = t.create(0x77, 64).unwrap().rshmid;
    let shmid = t.get(id).unwrap().replica.shmid;
    t.set_count(id, me, 2);
    let mut e = t.get(id).unwrap().entry();
    // Another node's view of our count never overrides ours; its own count is taken.
    e.counts = vec![(me, 9), (node(2), 3)];
    t.adopt(&e).unwrap();
    t.hello_counts(node(2), &[e.clone()]);
    assert_eq!(t.get(id).unwrap().total(), 5);
    assert!(t.forget_node(node(2)).is_empty());
    t.get_mut(id).unwrap().marked = true;
    t.set_count(id, me, 0);
    assert_eq!(t.forget_node(node(2)), vec![id]);
    assert!(t.destroy(id));
    assert!(shmid.stat().is_err());
    // A stale table that still lists it does not bring it back.
    assert!(!t.insert(&e).unwrap());
    assert!(t.get(id).is_none());
}

#[test]
fn ls_pages_by_rshmid_and_says_when_more_follow() {
    let mut t = Table::new(node(1)).unwrap();
    let mut ids: Vec<i32> = (0..5)
        .map(|k| t.create(0x700 + k, 8).unwrap().rshmid)
        .collect();
    ids.sort();
    let (page, more) = t.ls(0, 2);
    assert_eq!(page.iter().map(|e| e.rshmid).collect::<Vec<_>>(), ids[..2]);
    assert!(more);
    let (page, more) = t.ls(ids[1], 2);
    assert_eq!(page.iter().map(|e| e.rshmid).collect::<Vec<_>>(), ids[2..4]);
    assert!(more);
    let (page, more) = t.ls(ids[3], 2);
    assert_eq!((page.len(), page[0].rshmid, more), (1, ids[4], false));
    let (page, more) = t.ls(ids[4], 2);
    assert!(page.is_empty() && !more);
    assert!(t.ls(i32::MAX, 2).0.is_empty());
}

#[test]
fn a_ranged_change_compares_and_publishes_its_range_only() {
    let me = node(1);
    let mut t = Table::new(me).unwrap();
    let id = t.create(0x99, 100).unwrap().rshmid;
    let seg = attach(t.get_mut(id).unwrap());
    seg.replica.att.write_at(3, &[1]).unwrap();
    seg.replica.att.write_at(50, &[2]).unwrap();
    seg.replica.att.write_at(99, &[3]).unwrap();
    // Byte 50: its word, 48..56, and nothing else.
    let (stamp, runs) = seg.local_change_range(me, 50, 1).unwrap();
    assert_eq!(stamp.version, 1);
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].offset, runs[0].data.len()), (48, 8));
    assert_eq!(twin(seg)[48..56], [0, 0, 2, 0, 0, 0, 0, 0]);
    assert_eq!(twin(seg)[0..8], [0; 8], "byte 3 is not published");
    // The last byte: a word cut short by the segment's end.
    let (_, runs) = seg.local_change_range(me, 99, 1).unwrap();
    assert_eq!(
        (runs[0].offset, runs[0].data.clone()),
        (96, vec![0, 0, 0, 3])
    );
    // Edges: refused, and nothing changes (no version used up).
    for (offset, len) in [
        (100, 1),
        (99, 2),
        (0, 0),
        (0, 101),
        (u64::MAX, 1),
        (1, u64::MAX),
    ] {
        let e = seg.local_change_range(me, offset, len).unwrap_err();
        assert_eq!(
            crate::sys::errno(&e),
            Some(libc::EINVAL),
            "({offset}, {len})"
        );
    }
    assert_eq!(seg.stamp.version, 2);
    // The whole segment, as a range: finds byte 3, left unpublished until now.
    let (_, runs) = seg.local_change_range(me, 0, 100).unwrap();
    assert_eq!((runs.len(), runs[0].offset), (1, 0));
    assert_eq!(bytes(seg), twin(seg));
}

#[test]
fn a_large_state_travels_in_bounded_chunks_that_rebuild_it_exactly() {
    let (a, b) = (node(1), node(2));
    let size = 3 * RSHM_MAX_FRAME_DATA + 12; // not a whole number of chunks, nor of words
    let mut ta = Table::new(a).unwrap();
    let id = ta.create(0x97, size).unwrap().rshmid;
    let e = ta.get(id).unwrap().entry();
    let sa = attach(ta.get_mut(id).unwrap());
    let pattern: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
    sa.replica.att.write_at(0, &pattern).unwrap();
    sa.local_change(a).unwrap();
    // A second writer's word in the middle: a run of its own, with its own stamp.
    sa.apply_update(
        Stamp {
            version: 9,
            origin: b,
        },
        &[Run {
            offset: 2 * RSHM_MAX_FRAME_DATA as u64 + 8,
            data: vec![0xee; 8],
        }],
    )
    .unwrap();
    let mut tb = Table::new(b).unwrap();
    tb.adopt(&e).unwrap();
    let (mut at, mut chunks, mut all) = (0, 0, Vec::new());
    while at < size {
        let (runs, next) = ta.get(id).unwrap().state_chunk(at).unwrap();
        assert!(next > at && next <= size);
        let bytes: usize = runs.iter().map(|r| r.run.data.len()).sum();
        assert!(bytes <= RSHM_MAX_FRAME_DATA && runs.len() <= RSHM_MAX_RUNS);
        all.extend(runs);
        at = next;
        chunks += 1;
    }
    assert_eq!(chunks, 4);
    let sb = tb.get_mut(id).unwrap();
    assert_eq!(sb.apply_state(&all).unwrap(), size);
    let mut want = pattern;
    want[2 * RSHM_MAX_FRAME_DATA + 8..2 * RSHM_MAX_FRAME_DATA + 16].fill(0xee);
    assert_eq!(bytes(sb), want);
    assert_eq!(sb.stamp, ta.get(id).unwrap().stamp);
    // A run whose offset is past a u32 (a segment above 4 GiB) is refused here, not wrapped.
    let far = [Run {
        offset: 1 << 32,
        data: vec![1; 8],
    }];
    assert!(sb
        .apply_update(
            Stamp {
                version: 10,
                origin: b
            },
            &far
        )
        .is_err());
    assert!(sb
        .apply_unordered(
            Stamp {
                version: 10,
                origin: b
            },
            &far
        )
        .is_err());
}

/// Word stamps kept per page (`stamps.rs`) decide exactly as one stamp per word did: many
/// updates of every size, from three nodes, in a scrambled order, against a plain model of the
/// rule (a word takes an update's bytes only if the update's stamp is above the word's).
#[test]
fn stamps_per_page_decide_as_stamps_per_word() {
    let me = node(1);
    let nodes = [node(2), node(3), node(4)];
    let size = 3 * 4096 + 100;
    let mut t = Table::new(me).unwrap();
    let id = t.create(0x99, size).unwrap().rshmid;
    let seg = t.get_mut(id).unwrap();
    let words = size.div_ceil(WORD);
    let mut model_stamp = vec![Stamp::ZERO; words];
    let mut model = vec![0u8; size];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..600u64 {
        if i == 300 {
            // A program attaches half-way: the updates after it go to the twin too.
            attach(seg);
        }
        let r = rng.next();
        // Whole pages, page-crossing runs, and single words; unaligned starts and ends.
        let len = match r % 4 {
            0 => 4096 * (1 + (r >> 8) as usize % 3),
            1 => 1 + (r >> 8) as usize % 9000,
            _ => 1 + (r >> 8) as usize % 16,
        }
        .min(size);
        let offset = (rng.next() as usize) % (size - len + 1);
        let stamp = Stamp {
            version: 1 + rng.next() % 40,
            origin: nodes[(rng.next() % 3) as usize],
        };
        let data: Vec<u8> = (0..len).map(|k| (i as u8) ^ (k as u8)).collect();
        seg.apply_update(
            stamp,
            &[Run {
                offset: offset as u64,
                data: data.clone(),
            }],
        )
        .unwrap();
        let first = offset / WORD;
        let last = (offset + len).div_ceil(WORD);
        for (w, word) in model_stamp.iter_mut().enumerate().take(last).skip(first) {
            if *word < stamp {
                *word = stamp;
                let (a, b) = ((w * WORD).max(offset), ((w + 1) * WORD).min(offset + len));
                model[a..b].copy_from_slice(&data[a - offset..b - offset]);
            }
        }
    }
    assert_eq!(bytes(seg), model, "replica");
    assert!(twin(seg) == model, "twin");
    // And the STATE says the same: each run's words have the run's stamp, the rest are zero.
    let mut seen = vec![Stamp::ZERO; words];
    for r in seg.state_runs() {
        let w0 = r.run.offset as usize / WORD;
        let n = r.run.data.len().div_ceil(WORD);
        seen[w0..w0 + n].fill(Stamp {
            version: r.version,
            origin: r.origin,
        });
    }
    assert_eq!(seen, model_stamp, "STATE stamps");
}

#[test]
fn the_twin_is_made_at_the_first_attach_as_a_copy_of_the_pages_with_memory() {
    let (a, b) = (node(1), node(2));
    let mut t = Table::new(a).unwrap();
    let id = t.create(0x96, 64 * 4096).unwrap().rshmid;
    let seg = t.get_mut(id).unwrap();
    // A peer's update lands in the replica alone: no program here, no twin.
    let update = Run {
        offset: 3 * 4096,
        data: vec![7; 4096],
    };
    let stamp = Stamp {
        version: 1,
        origin: b,
    };
    seg.apply_update(stamp, &[update]).unwrap();
    assert!(seg.twin.is_none());
    // Without a twin, a STATE (to a late joiner) is read from the replica: the update's bytes.
    let runs = seg.state_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].run.offset, runs[0].run.data.clone()),
        (3 * 4096, vec![7; 4096])
    );
    // rshmChanged from a program that never attached here finds nothing, and still counts.
    let (s, runs) = seg.local_change(a).unwrap();
    assert!(runs.is_empty());
    assert_eq!(s.version, 2);
    attach(seg);
    assert_eq!(twin(seg), bytes(seg));
    let skips = crate::sys::shm::swap_total().is_ok_and(|s| s == 0);
    if skips {
        // Only the page with memory was copied: the others are still certainly zeros.
        let t = seg.twin.as_ref().unwrap();
        let copied: Vec<usize> = (0..64).filter(|&p| t.may_be_nonzero(p)).collect();
        assert_eq!(copied, [3]);
    }
    // A program's write is found against it, and only that.
    seg.replica.att.write_at(5, &[1]).unwrap();
    let (_, runs) = seg.local_change(a).unwrap();
    assert_eq!((runs.len(), runs[0].offset, runs[0].data.len()), (1, 0, 8));
}

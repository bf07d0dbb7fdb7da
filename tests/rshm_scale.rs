//! RSHM at scale, across real server processes: ranged changes (`rshmChanged_range`), the
//! whole-segment change that skips pages nobody touched, `ls` paging through a table larger
//! than one queue message, and more segments with a waiter each than one gate set holds.
//!
//! Each test takes free ports (its own queue and gate keys); the `Scratch` guard kills the
//! servers and removes every object under the nodes' keys, even on failure.

mod common;

mod rshm_cluster;

use common::wait_until;
use ipclab::rshm::gate::gate_keys;
use ipclab::rshm::Node;
use ipclab::sys::{errno, ipcs};
use ipclab::wire::rshm::{RUN_HEADER_LEN, UPDATE_FIXED_LEN};
use rshm_cluster::{Cluster, LIMIT};
use std::time::Duration;

/// Two nodes, connected.
fn two(tag: &str) -> (Cluster, Node, Node) {
    let mut c = Cluster::new(tag, 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let (a, b) = (
        Node::open(c.ports[0]).unwrap(),
        Node::open(c.ports[1]).unwrap(),
    );
    (c, a, b)
}

fn bytes(att: &ipclab::rshm::RshmAttachment, off: usize, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    att.read_at(off, &mut v).unwrap();
    v
}

#[test]
fn a_ranged_change_is_replicated_exactly_and_bytes_outside_it_stay_unpublished() {
    let (_c, a, b) = two("scale-range");
    let size = 64 * 1024;
    let id = a.rshmget(0x5c01, size).unwrap();
    let (pa, pb) = (a.rshmat(id).unwrap(), b.rshmat(id).unwrap());
    // Three writes; only the middle one is published, with a range that is not word-aligned.
    pa.write_at(10, b"outside, before").unwrap();
    pa.write_at(30_001, b"inside the range").unwrap();
    pa.write_at(60_000, b"outside, after").unwrap();
    let (v1, wire) = a.rshm_changed_range_wire(id, 30_001, 16).unwrap();
    assert_eq!(bytes(&pb, 30_001, 16), b"inside the range");
    assert_eq!(
        bytes(&pb, 10, 15),
        [0; 15],
        "before the range: not published"
    );
    assert_eq!(
        bytes(&pb, 60_000, 14),
        [0; 14],
        "after the range: not published"
    );
    // Rounded out to words: 30000..30024, three words, one run (frame, run header, 24 bytes).
    assert_eq!(wire as usize, UPDATE_FIXED_LEN + RUN_HEADER_LEN + 24);
    // A ranged call that covers a byte written long ago publishes it now; the rest stays.
    let v2 = a.rshm_changed_range(id, 60_000, 1).unwrap();
    assert!(v2 > v1);
    assert_eq!(bytes(&pb, 60_000, 8), b"outside,", "its word went along");
    assert_eq!(bytes(&pb, 60_008, 6), [0; 6]);
    // The whole call finds everything still unpublished, and only that.
    let (_, wire) = a.rshm_changed_wire(id).unwrap();
    assert_eq!(
        wire as usize,
        UPDATE_FIXED_LEN + (RUN_HEADER_LEN + 24) + (RUN_HEADER_LEN + 8),
        "two runs: words 8..32 and 60008..60016"
    );
    assert_eq!(bytes(&pb, 0, size), bytes(&pa, 0, size), "now every byte");
    // The other way, and the segment's last byte.
    pb.write_at(size - 1, &[0xee]).unwrap();
    b.rshm_changed_range(id, size as u64 - 1, 1).unwrap();
    assert_eq!(bytes(&pa, size - 1, 1), [0xee]);
    // A range with nothing changed in it is a change of nothing: a new version, no run.
    let (_, wire) = a.rshm_changed_range_wire(id, 0, 8).unwrap();
    assert_eq!(wire as usize, UPDATE_FIXED_LEN);
}

#[test]
fn ranges_at_the_segments_edges_are_taken_and_beyond_them_refused_with_a_clear_error() {
    let (_c, a, _b) = two("scale-edges");
    let size: u64 = 4096 + 3; // an end that is no word boundary
    let id = a.rshmget(0x5c02, size as usize).unwrap();
    let p = a.rshmat(id).unwrap();
    p.write_at(size as usize - 1, &[7]).unwrap();
    a.rshm_changed_range(id, 0, size).unwrap();
    a.rshm_changed_range(id, size - 1, 1).unwrap();
    let refused = |offset: u64, len: u64, why: &str| {
        let e = a.rshm_changed_range(id, offset, len).unwrap_err();
        assert_eq!(errno(&e), Some(libc::EINVAL), "({offset}, {len}): {e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "rshmChanged_range(rshmid={id}, offset={offset}, len={len}): "
            )) && text.contains(why),
            "({offset}, {len}): {text}"
        );
    };
    refused(size, 1, "past the end of the segment (4099 bytes)");
    refused(size - 1, 2, "= 4100 is past the end of the segment");
    refused(0, 0, "len 0");
    refused(0, size + 1, "past the end");
    refused(1 << 40, 1, "past the end");
    refused(u64::MAX, 1, "overflows");
    refused(1, u64::MAX, "overflows");
    refused(u64::MAX, u64::MAX, "overflows");
    // An unknown segment, as for rshmChanged.
    let e = a.rshm_changed_range(0x7eadbeef, 0, 1).unwrap_err();
    assert!(e.to_string().contains("no such segment"), "{e}");
    // The server kept serving, and the segment is as it was.
    assert!(a.rshm_changed_range(id, 0, 1).is_ok());
}

#[test]
fn the_whole_call_still_finds_every_change_in_a_large_segment() {
    let (_c, a, b) = two("scale-whole");
    // Large enough that the server asks mincore which pages to skip (RSHM_SKIP_MIN).
    let size = 4 << 20;
    let id = a.rshmget(0x5c03, size).unwrap();
    let (pa, pb) = (a.rshmat(id).unwrap(), b.rshmat(id).unwrap());
    // Data on pages 1 and 700, published from A.
    pa.write_at(4096 + 8, &[1; 100]).unwrap();
    pa.write_at(700 * 4096, &[2; 4096]).unwrap();
    let (_, wire) = a.rshm_changed_wire(id).unwrap();
    assert!(
        (wire as usize) < UPDATE_FIXED_LEN + 2 * RUN_HEADER_LEN + 100 + 4096 + 16,
        "a diff, not the segment: {wire}"
    );
    assert_eq!(bytes(&pb, 4096, 200), bytes(&pa, 4096, 200));
    // Zeros over a page that held data, and a write into a page nobody ever touched.
    pa.write_at(700 * 4096, &[0; 4096]).unwrap();
    pa.write_at(1000 * 4096 + 17, &[3]).unwrap();
    pa.write_at(size - 1, &[4]).unwrap();
    a.rshm_changed(id).unwrap();
    assert_eq!(bytes(&pb, 0, size), bytes(&pa, 0, size));
    // Data that came from a peer (B), then overwritten on A with zeros: found too.
    pb.write_at(900 * 4096, &[5; 64]).unwrap();
    b.rshm_changed(id).unwrap();
    assert_eq!(bytes(&pa, 900 * 4096, 64), [5; 64]);
    pa.write_at(900 * 4096, &[0; 64]).unwrap();
    a.rshm_changed(id).unwrap();
    assert_eq!(bytes(&pb, 900 * 4096, 64), [0; 64]);
    assert_eq!(bytes(&pb, 0, size), bytes(&pa, 0, size));
    // Nothing changed: nothing sent.
    let (_, wire) = a.rshm_changed_wire(id).unwrap();
    assert_eq!(wire as usize, UPDATE_FIXED_LEN);
}

#[test]
fn ls_pages_through_a_table_of_more_rows_than_one_reply_holds() {
    let (c, a, b) = two("scale-ls");
    let n = 300;
    let mut ids: Vec<i32> = (0..n)
        .map(|k| {
            let node = if k % 2 == 0 { &a } else { &b };
            node.rshmget(0x5d00 + k, 64).unwrap()
        })
        .collect();
    ids.sort();
    for i in 0..2 {
        let out = c.ok(i, &["ls"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 + n as usize, "node {i}: {out}");
        assert!(lines[0].starts_with("node 127.0.0.1:"), "{}", lines[0]);
        assert_eq!(
            lines[1],
            "rshmid      key              size owner                 attaches    shmid  version       sent status"
        );
        let listed: Vec<i32> = lines[2..]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(listed, ids, "node {i}: every row, once, in rshmid order");
        let mut keys: Vec<String> = c.rows(i).iter().map(|r| r[1].clone()).collect();
        keys.sort();
        let want: Vec<String> = (0..n).map(|k| format!("0x{:08x}", 0x5d00 + k)).collect();
        assert_eq!(keys, want);
    }
    // The API's listing is the same, page by page.
    assert_eq!(a.ls().unwrap().entries.len(), n as usize);
}

/// The WAIT requests node `i` was asked (its log, traced).
fn waits_asked(c: &Cluster, i: usize) -> usize {
    c.log(i)
        .lines()
        .filter(|l| l.contains("queue <- ") && l.contains(" WAIT "))
        .count()
}

fn gate_sets(port: u16) -> Vec<i32> {
    let keys = gate_keys(port);
    ipcs::list()
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == ipcs::Kind::Sem && keys.contains(&o.key))
        .map(|o| o.id)
        .collect()
}

#[test]
fn more_segments_with_a_waiter_each_than_one_gate_set_holds() {
    let mut c = Cluster::new("scale-gates", 2);
    c.start(0);
    c.start_with(1, &[("IPCLAB_TRACE", "1")]);
    c.connected(0);
    c.connected(1);
    let (a, b) = (
        Node::open(c.ports[0]).unwrap(),
        Node::open(c.ports[1]).unwrap(),
    );
    let n = 300; // one gate set holds 250
    let ids: Vec<i32> = (0..n).map(|k| a.rshmget(0x5e00 + k, 64).unwrap()).collect();
    let writers: Vec<_> = ids.iter().map(|&id| a.rshmat(id).unwrap()).collect();
    // A sleeper per segment on B, each in its own thread (what a thread has seen is its own).
    let ready = std::sync::Barrier::new(n as usize + 1);
    let woke = std::thread::scope(|s| {
        let sleepers: Vec<_> = ids
            .iter()
            .map(|&id| {
                let (b, ready) = (&b, &ready);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let att = b.rshmat(id).unwrap();
                        ready.wait();
                        let woke = b.rshm_wait_changed(id, LIMIT).unwrap();
                        let got = bytes(&att, 0, 4);
                        (woke, got)
                    })
                    .unwrap()
            })
            .collect();
        ready.wait();
        std::thread::sleep(Duration::from_millis(300));
        for (k, (w, &id)) in writers.iter().zip(&ids).enumerate() {
            w.write_at(0, &(k as u32 + 1).to_le_bytes()).unwrap();
            a.rshm_changed(id).unwrap();
        }
        sleepers
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (k, (w, got)) in woke.iter().enumerate() {
        assert!(*w, "segment {k} woke for its change");
        assert_eq!(*got, (k as u32 + 1).to_le_bytes(), "segment {k}");
    }
    // Every wait slept on a gate of its own: not one asked the server, so no gate set was
    // replaced under a sleeper. Two sets hold them.
    assert_eq!(waits_asked(&c, 1), 0, "{}", c.log(1));
    let sets = gate_sets(c.ports[1]);
    assert_eq!(sets.len(), 2, "{sets:?}");

    // A server killed with SIGKILL leaves both sets; the next one on its port removes them.
    c.kill(1);
    assert_eq!(gate_sets(c.ports[1]), sets);
    c.start(1);
    assert!(
        wait_until(LIMIT, || {
            let now = gate_sets(c.ports[1]);
            now.len() == 1 && !sets.contains(&now[0])
        }),
        "{:?}",
        gate_sets(c.ports[1])
    );
    drop(writers);
}

//! RSHM at the kernel's scale: segments far above one frame (64 MiB here, 64 frames a change),
//! replicated exactly, applied as one change, streamed back to a restarted node, and peers
//! that send the parts of a change out of turn refused with clear errors. Real `rshm_server`
//! processes on loopback, real segments, real TCP.
//!
//! Every test has its own free ports (so its own queue keys); the `Scratch` guard stops the
//! servers and removes anything under those keys, even on failure.

mod common;
mod rshm_cluster;

use common::huge_pool::{HugePool, NR_HUGEPAGES};
use ipclab::params::{RSHM_MAX_FRAME_DATA, RSHM_MAX_SEGMENT};
use ipclab::rshm::Node;
use ipclab::sys::proc_field;
use ipclab::wire::rshm::{Frame, Hello, Run, MAX_BODY};
use rshm_cluster::{next_frame, Cluster, LIMIT};
use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::sync::mpsc;

/// 64 MiB: 64 times the largest frame's run bytes, 64 times the old 1 MiB cap.
const BIG: usize = 64 << 20;

/// One test of this file at a time: each moves hundreds of MiB through loopback on a 2-core
/// machine, and together they would only slow each other down.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Byte `i` of pattern `k`: never zero (so a whole-segment diff is one run), and different at
/// every offset (so a run put at the wrong place shows).
fn pattern(k: u8, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i / 8 % 251) as u8).wrapping_add(k) | 1)
        .collect()
}

fn read_all(node: &Node, rshmid: i32, size: usize) -> Vec<u8> {
    let att = node.rshmat(rshmid).unwrap();
    let mut got = vec![0u8; size];
    att.read_at(0, &mut got).unwrap();
    node.rshmdt(att).unwrap();
    got
}

/// Where the first byte of `a` and `b` differ, for a message that does not print 64 MiB.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Asserts that `got` is `want`, byte for byte; the message names `who` and the first byte
/// that differs.
#[track_caller]
fn assert_same_bytes(got: &[u8], want: &[u8], who: &str) {
    assert!(
        got == want,
        "{who}: first difference at {:?}",
        first_difference(got, want)
    );
}

#[test]
fn a_64_mib_segment_is_replicated_in_bounded_frames_and_reads_back_exactly() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-copy", 3);
    c.start_with(0, &[("IPCLAB_TRACE", "1")]);
    c.start(1);
    c.start(2);
    for i in 0..3 {
        c.connected(i);
    }
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x1700, BIG).unwrap();
    let att = a.rshmat(id).unwrap();
    let want = pattern(3, BIG);
    att.write_at(0, &want).unwrap();
    let t = std::time::Instant::now();
    let (version, wire) = a.rshm_changed_wire(id).unwrap();
    println!(
        "rshm_large: a 64 MiB change to 2 peers took {:.2} s",
        t.elapsed().as_secs_f64()
    );
    a.rshmdt(att).unwrap();
    // 64 frames, every one bounded: 43 bytes of frame and 12 of run header each, and the
    // segment's bytes once.
    let frames = BIG / RSHM_MAX_FRAME_DATA;
    assert_eq!(version, 1);
    assert_eq!(wire as usize, BIG + frames * (43 + 12));
    let log = c.log(0);
    assert!(
        log.contains(&format!("part {} last", frames - 1)),
        "no last part in the trace"
    );
    assert!(
        !log.contains(&format!("part {frames} ")),
        "one part too many"
    );
    for i in 1..3 {
        let node = Node::open(c.ports[i]).unwrap();
        let got = read_all(&node, node.rshmget(0x1700, 0).unwrap(), BIG);
        assert_same_bytes(&got, &want, &format!("node {i}"));
        assert_eq!(c.rows(i)[0][6], "1", "node {i}: version");
    }
    // A small change after the large one is still a small frame: bounded both ways.
    let att = a.rshmat(id).unwrap();
    att.write_at(BIG - 1, &[0]).unwrap();
    let (_, wire) = a.rshm_changed_wire(id).unwrap();
    a.rshmdt(att).unwrap();
    assert_eq!(wire, 43 + 12 + 8);
    let node = Node::open(c.ports[2]).unwrap();
    let got = read_all(&node, id, BIG);
    assert_eq!(got[BIG - 1], 0);
    assert!(got[..BIG - 1] == want[..BIG - 1]);
}

#[test]
fn a_reader_on_another_node_never_sees_half_of_a_large_change() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-whole", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x1701, BIG).unwrap();
    let (to_reader, changes) = mpsc::channel::<u8>();
    let (to_writer, checked) = mpsc::channel::<Result<(), String>>();
    let port_b = c.ports[1];
    // The follower on B: attached first, then for each change, wait for it and read the whole
    // segment: every byte must be of one pattern, the one just written.
    let follower = std::thread::spawn(move || {
        let b = Node::open(port_b).unwrap();
        let att = b.rshmat(id).unwrap();
        let mut got = vec![0u8; BIG];
        for k in changes {
            assert!(
                b.rshm_wait_changed(id, LIMIT).unwrap(),
                "change {k} never came"
            );
            att.read_at(0, &mut got).unwrap();
            let want = pattern(k, BIG);
            let verdict = match first_difference(&got, &want) {
                None => Ok(()),
                Some(at) => Err(format!(
                    "change {k}: byte {at} is {} (pattern {k} has {}): half a change",
                    got[at], want[at]
                )),
            };
            to_writer.send(verdict).unwrap();
        }
        b.rshmdt(att).unwrap();
    });
    let att = a.rshmat(id).unwrap();
    for k in 1..=5u8 {
        // The reader is told first, so that it is already waiting when the change lands.
        to_reader.send(k).unwrap();
        att.write_at(0, &pattern(k, BIG)).unwrap();
        assert_eq!(a.rshm_changed(id).unwrap(), u64::from(k));
        let verdict = checked.recv_timeout(LIMIT).expect("the reader answers");
        verdict.unwrap();
    }
    drop(to_reader);
    follower.join().unwrap();
    a.rshmdt(att).unwrap();
}

#[test]
fn a_restarted_node_streams_a_large_segment_back_exactly() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-restart", 2);
    c.start_with(0, &[("IPCLAB_TRACE", "1")]);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x1702, BIG).unwrap();
    let att = a.rshmat(id).unwrap();
    att.write_at(0, &pattern(1, BIG)).unwrap();
    a.rshm_changed(id).unwrap();
    // B dies without a word; A changes half the segment meanwhile (the peer is down, so the
    // change reaches nobody), and a word of the other half.
    c.kill(1);
    assert!(
        common::wait_until(LIMIT, || c
            .ok(0, &["ls"])
            .lines()
            .next()
            .unwrap_or("")
            .contains("down")),
        "A never saw B go"
    );
    let mut want = pattern(2, BIG);
    want[BIG / 2..].copy_from_slice(&pattern(1, BIG)[BIG / 2..]);
    want[BIG - 8..].fill(0x55);
    att.write_at(0, &want).unwrap();
    a.rshm_changed(id).unwrap();
    a.rshmdt(att).unwrap();
    // Back with the same command: its HELLO brings the STATE, in bounded chunks, and "up"
    // means all of it is applied.
    c.start(1);
    c.connected(1);
    let b = Node::open(c.ports[1]).unwrap();
    let bid = b.rshmget(0x1702, 0).unwrap();
    let got = read_all(&b, bid, BIG);
    assert_same_bytes(&got, &want, "restarted B");
    assert_eq!(c.rows(1)[0][6], "2", "version");
    // B held only the replica until that rshmat, which made B's twin from it: so a word
    // changed there now is found as one word (a twin that missed the STATE would make it the
    // whole 64 MiB), and A gets exactly that.
    let batt = b.rshmat(bid).unwrap();
    batt.write_at(BIG / 2 + 8, &[0xab; 8]).unwrap();
    let (_, wire) = b.rshm_changed_wire(bid).unwrap();
    b.rshmdt(batt).unwrap();
    assert!(wire <= 64, "{wire} bytes on the wire for one word");
    want[BIG / 2 + 8..BIG / 2 + 16].fill(0xab);
    let got = read_all(&a, id, BIG);
    assert_same_bytes(&got, &want, "A");
    // The STATE went as many frames (at least one per MiB written), none above a frame's
    // run bytes.
    let log = c.log(0);
    let states = log.matches(&format!("STATE rshmid={id} ")).count();
    assert!(states >= BIG / RSHM_MAX_FRAME_DATA, "{states} STATE frames");
}

#[test]
fn parts_of_a_change_that_do_not_belong_together_are_refused_and_the_server_keeps_serving() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-parts", 2);
    c.start(0);
    let size = 2 * RSHM_MAX_FRAME_DATA;
    c.ok(0, &["write", "0x1703", "kept", "--size", &size.to_string()]);
    let id: i32 = c.rows(0)[0][0].parse().unwrap();
    // We play node 1 (not started): a configured peer, with the group's secret.
    let me: SocketAddrV4 = format!("127.0.0.1:{}", c.ports[1]).parse().unwrap();
    let mut s = c.authed(0, me);
    let hello = Frame::Hello(Hello {
        node: me,
        node_id: 7,
        entries: vec![],
    });
    s.write_all(&hello.encode(0)).unwrap();
    let mut got = Vec::new();
    assert!(matches!(next_frame(&mut s, &mut got), Frame::HelloReply(_)));
    while !matches!(
        next_frame(&mut s, &mut got),
        Frame::State { last: true, .. }
    ) {}
    let update =
        |rshmid: i32, version: u64, part: u32, more: bool, offset: u64, n: usize| Frame::Update {
            rshmid,
            version,
            origin: me,
            part,
            more,
            runs: vec![Run {
                offset,
                data: vec![b'x'; n],
            }],
        };
    // Each case: the frames sent (the last one is answered), and what the ACK must say.
    let cases: Vec<(Vec<Frame>, &str)> = vec![
        (
            vec![
                update(id, 5, 0, true, 0, 8),
                update(id + 1, 5, 1, false, 8, 8),
            ],
            "does not continue the change",
        ),
        (
            vec![update(id, 6, 0, true, 0, 8), update(id, 7, 1, false, 8, 8)],
            "does not continue the change",
        ),
        (
            vec![update(id, 8, 3, false, 0, 8)],
            "its first part never came",
        ),
        (
            vec![update(id, 9, 0, true, 64, 8), update(id, 9, 1, false, 0, 8)],
            "overlaps the runs before it",
        ),
        (
            vec![update(id, 10, 0, true, size as u64 - 4, 8)],
            "outside the segment",
        ),
        (
            vec![update(id + 1, 11, 0, true, 0, 8)],
            "no segment with rshmid",
        ),
    ];
    let mut seq = 100;
    for (frames, needle) in &cases {
        seq += 1;
        for f in frames {
            s.write_all(&f.encode(seq)).unwrap();
        }
        match next_frame(&mut s, &mut got) {
            Frame::Ack { status, text, .. } => {
                assert_ne!(status, 0, "{needle}: accepted");
                assert!(text.contains(needle), "{needle}: the ACK says {text}");
            }
            other => panic!("{needle}: {other}"),
        }
    }
    // A whole change in two parts, one in each half: applied as one, answered once.
    seq += 1;
    let good = [
        Frame::Update {
            rshmid: id,
            version: 20,
            origin: me,
            part: 0,
            more: true,
            runs: vec![Run {
                offset: 0,
                data: b"two part".to_vec(),
            }],
        },
        Frame::Update {
            rshmid: id,
            version: 20,
            origin: me,
            part: 1,
            more: false,
            runs: vec![Run {
                offset: RSHM_MAX_FRAME_DATA as u64,
                data: b"second!\0".to_vec(),
            }],
        },
    ];
    for f in &good {
        s.write_all(&f.encode(seq)).unwrap();
    }
    match next_frame(&mut s, &mut got) {
        Frame::Ack { status: 0, .. } => {}
        other => panic!("the good change: {other}"),
    }
    let node = Node::open(c.ports[0]).unwrap();
    let data = read_all(&node, id, size);
    assert_eq!(&data[..8], b"two part");
    assert_eq!(
        &data[RSHM_MAX_FRAME_DATA..RSHM_MAX_FRAME_DATA + 8],
        b"second!\0"
    );
    assert_eq!(c.rows(0)[0][6], "20", "version");
    // A header that claims more than MAX_BODY: the connection goes, the server stays.
    let mut lie = Frame::Bye.encode(1);
    lie[8..12].copy_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
    s.write_all(&lie).unwrap();
    let mut rest = [0u8; 64];
    assert_eq!(s.read(&mut rest).unwrap_or(0), 0, "still connected");
    let log = c.log(0);
    for (_, needle) in &cases {
        assert!(log.contains(needle), "no log line with '{needle}': {log}");
    }
    assert!(log.contains("at most"), "{log}");
    assert_eq!(c.read(0, "0x1703"), "two part\n");
    // Above the largest segment: refused with the limit's name (the kernel's shmmax is the
    // other cap, named the same way).
    let e = node.rshmget(0x1704, RSHM_MAX_SEGMENT + 1).unwrap_err();
    assert!(e.to_string().contains("(RSHM_MAX_SEGMENT)"), "{e}");
    // And nothing else was written: the refused parts left no byte behind.
    assert!(data[8..RSHM_MAX_FRAME_DATA].iter().all(|b| *b == 0));
}

/// The window of a rejoin: node 1 dials node 0 and gets its STATE, but node 0's own connection
/// to node 1 is not up yet, so a change made on node 0 then is broadcast to nobody. Node 0's
/// greeting, when its dialer gets through, must carry that change (the catch-up).
#[test]
fn a_change_made_while_a_rejoining_peer_is_half_connected_reaches_it() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-catch-up", 2);
    c.start(0);
    c.ok(0, &["write", "0x1704", "before"]);
    let id: i32 = c.rows(0)[0][0].parse().unwrap();
    // We play node 1: dial node 0, HELLO, take the reply and the STATE; node 1's port is not
    // listening yet, so node 0's dialer cannot reach "us".
    let me: SocketAddrV4 = format!("127.0.0.1:{}", c.ports[1]).parse().unwrap();
    let mut s = c.authed(0, me);
    let hello = |entries| {
        Frame::Hello(Hello {
            node: me,
            node_id: 7,
            entries,
        })
    };
    s.write_all(&hello(vec![]).encode(0)).unwrap();
    let mut got = Vec::new();
    assert!(matches!(next_frame(&mut s, &mut got), Frame::HelloReply(_)));
    while !matches!(
        next_frame(&mut s, &mut got),
        Frame::State { last: true, .. }
    ) {}
    // The change in the window: node 0 has no way to send it to us now.
    c.ok(0, &["write", "0x1704", "after"]);
    // Now "we" listen; node 0's dialer (kicked by our HELLO, then backing off) gets through.
    let listener = std::net::TcpListener::bind(("127.0.0.1", c.ports[1])).unwrap();
    let (mut back, _) = listener.accept().unwrap();
    back.set_read_timeout(Some(LIMIT)).unwrap();
    let (secret, _) = ipclab::rshm::auth::Secret::load(&c.secret, false).unwrap();
    let dialer = ipclab::rshm::auth::accept(&mut back, &secret, me).expect("handshake");
    assert_eq!(dialer.port(), c.ports[0], "node 0 dialled us by our name");
    let mut got = Vec::new();
    assert!(matches!(next_frame(&mut back, &mut got), Frame::Hello(_)));
    match next_frame(&mut back, &mut got) {
        Frame::Update {
            rshmid,
            origin,
            runs,
            ..
        } => {
            assert_eq!((rshmid, origin.port()), (id, c.ports[0]));
            assert!(
                runs[0].data.starts_with(b"after\0"),
                "the catch-up carries the change: {:?}",
                String::from_utf8_lossy(&runs[0].data)
            );
        }
        other => panic!("expected the catch-up UPDATE after HELLO, got {other}"),
    }
}

/// Nodes on different machines may have different `shmmax`. A segment that one of them cannot
/// hold is refused at `rshmget`, with that node and its limit named, and not made anywhere
/// (it would fail on that node at every later call); one that fits every node is made at once.
#[test]
fn a_segment_one_node_cannot_hold_is_refused_with_its_limit_and_not_made() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-shmmax", 2);
    c.start(0);
    // B's kernel allows 1 MiB segments; A's the machine's default, far more.
    if let Err(why) = c.start_with_shmmax(1, 1 << 20) {
        println!("skipped: no IPC namespace of its own for node B here: {why}");
        return;
    }
    c.connected(0);
    let a = Node::open(c.ports[0]).unwrap();
    let e = a.rshmget(0x1703, 2 << 20).unwrap_err();
    let text = e.to_string();
    assert_eq!(ipclab::sys::errno(&e), Some(libc::EINVAL), "{text}");
    for part in [
        format!("peer 127.0.0.1:{} refused", c.ports[1]),
        "larger than this node's kernel shmmax, 1048576 bytes".into(),
        "the segment was not made".into(),
    ] {
        assert!(text.contains(&part), "{part:?} in {text:?}");
    }
    assert!(c.rows(0).is_empty(), "A keeps no row: {:?}", c.rows(0));
    assert!(
        c.log(1).contains("cannot hold rshmid"),
        "B says why: {}",
        c.log(1)
    );
    // Nothing is stuck: the same key, at a size both can hold, is made, and B takes its
    // change (rshmChanged waits for B's ACK).
    let id = a.rshmget(0x1703, 1 << 20).unwrap();
    let att = a.rshmat(id).unwrap();
    att.write_at(0, &pattern(3, 1 << 20)).unwrap();
    a.rshm_changed(id).unwrap();
    a.rshmdt(att).unwrap();
    a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
    c.stop(1);
    c.stop(0);
}

/// Two nodes each publish a change of the whole 64 MiB at the same moment: each writes its
/// parts while the other's arrive. Neither waits for the other for ever, both calls succeed,
/// and the two nodes end with the same bytes (the same version on both: the higher node
/// address wins every word, on both).
#[test]
fn large_changes_made_on_two_nodes_at_once_both_go_through_and_agree() {
    let _one = one_at_a_time();
    let mut c = Cluster::new("rshm-large-both", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x1704, BIG).unwrap();
    let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (port, ready) = (c.ports[i], ready.clone());
            std::thread::spawn(move || {
                let node = Node::open(port).unwrap();
                let att = node.rshmat(id).unwrap();
                att.write_at(0, &pattern(5 + i as u8, BIG)).unwrap();
                ready.wait();
                let t = std::time::Instant::now();
                let r = node.rshm_changed(id);
                let took = t.elapsed();
                node.rshmdt(att).unwrap();
                (r.map_err(|e| e.to_string()), took)
            })
        })
        .collect();
    for (i, w) in writers.into_iter().enumerate() {
        let (r, took) = w.join().unwrap();
        println!("node {i}: rshmChanged of 64 MiB, racing the other's: {r:?} in {took:?}");
        assert!(r.is_ok(), "node {i}: {r:?}");
    }
    let b = Node::open(c.ports[1]).unwrap();
    let (got_a, got_b) = (read_all(&a, id, BIG), read_all(&b, id, BIG));
    assert_same_bytes(&got_a, &got_b, "A against B");
    let winner = if c.ports[0] > c.ports[1] { 5 } else { 6 };
    assert!(got_a == pattern(winner, BIG), "the higher address wins");
    // And without a stall: no node gave up on the other's connection to get there.
    for i in 0..2 {
        let log = c.log(i);
        assert!(
            !log.contains("dropping") && !log.contains("lost peer"),
            "node {i}: {log}"
        );
    }
    a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
}

/// Whether process `pid` maps a System V segment of at least `size` bytes in huge pages: its
/// `/proc/PID/smaps` block for a `SYSV` mapping says `KernelPageSize: 2048 kB` (or more).
fn maps_huge_sysv(pid: i32, size: usize) -> bool {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // A block starts at a line with an address range; split before each "/SYSV" header.
    smaps.split("/SYSV").skip(1).any(|block| {
        proc_field(block, "Size:") * 1024 >= size as u64
            && proc_field(block, "KernelPageSize:") >= 2048
    })
}

/// With a pool of huge pages (which root reserves), a large replica takes its pages from it:
/// one fault per 2 MiB instead of per 4 KiB, which is what lets a late joiner fill 1 GiB at
/// loopback speed (`cargo bench --bench rshm`). A program's writes into pages that the server
/// never touched are still found by a whole rshmChanged: `mincore` cannot be trusted there,
/// since for huge pages it answers from the server's own page tables only. A node that joins
/// late streams the segment into huge pages too, and every node reads back the same bytes.
#[test]
fn large_replicas_in_huge_pages_replicate_exactly_and_a_late_joiner_gets_all_of_it() {
    let _one = one_at_a_time();
    // Not a whole number of pages of either size: the kernel rounds the segment up to 2 MiB
    // pages, and every byte up to `size` must still travel.
    let size = BIG + 5;
    // Three replicas of 66 MiB each (33 huge pages), and a few pages to spare.
    let pool = match HugePool::add(3 * (66 << 20) + (8 << 20)) {
        Ok(pool) => pool,
        Err(why) => {
            println!("skipped: no pool of huge pages could be made here (root reserves it in {NR_HUGEPAGES}): {why}");
            return;
        }
    };
    let mut c = Cluster::new("rshm-large-huge", 3);
    c.start(0);
    c.start(1);
    c.connected_to(0, 1);
    c.connected_to(1, 0);
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x1705, size).unwrap();
    let att = a.rshmat(id).unwrap();
    let want = pattern(5, size);
    // Written by this process, through its own mapping: the server has touched none of it.
    att.write_at(0, &want).unwrap();
    assert_eq!(a.rshm_changed(id).unwrap(), 1);
    a.rshmdt(att).unwrap();
    for i in 0..2 {
        assert!(
            maps_huge_sysv(c.pid(i), size),
            "node {i}'s replica is not in huge pages"
        );
    }
    let b = Node::open(c.ports[1]).unwrap();
    let got = read_all(&b, id, size);
    assert_same_bytes(&got, &want, "B");
    // C joins late: the STATE streams into a replica in huge pages.
    c.start(2);
    c.connected(2);
    assert!(
        maps_huge_sysv(c.pid(2), size),
        "C's replica is not in huge pages"
    );
    let node = Node::open(c.ports[2]).unwrap();
    let got = read_all(&node, id, size);
    assert_same_bytes(&got, &want, "C");
    assert_eq!(c.rows(2)[0][6], "1", "C: version");
    a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
    for i in 0..3 {
        c.stop(i);
    }
    drop(pool);
}

//! RSHM beyond the seed: diffs on the wire, late joiners and restarts, a race for one key,
//! and faults (peers killed or frozen, a local server dying, dead clients, a full queue,
//! garbage from a peer). Real `rshm_server` processes on loopback, real queues, real TCP.
//!
//! Every test has its own free ports, so its queue keys (`0x52530000 + port`) are its own; the
//! `Scratch` guard stops the servers and removes anything with those keys, even on failure.

mod common;
mod rshm_cluster;

use common::{cmd, finish, wait_until};
use ipclab::rshm::{queue_key, Node};
use ipclab::sys::msg::msgget;
use ipclab::sys::shm::Get;
use ipclab::sys::Removable;
use ipclab::wire::rshm::{Frame, Hello};
use rshm_cluster::{shared_columns, Cluster, LIMIT};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Instant;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_one_byte_change_in_a_mebibyte_costs_one_word_on_the_wire() {
    let mut c = Cluster::new("rshm6-diff", 2);
    c.start_with(0, &[("IPCLAB_TRACE", "1")]);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let size = (1usize << 20).to_string();
    c.ok(0, &["write", "0x61", "hello", "--size", &size]);
    c.ok(0, &["write", "0x61", "hellp"]);
    assert_eq!(c.read(1, "0x61"), "hellp\n");
    // ls: version 2 on both nodes, and the last update from node 0 was 63 bytes: 43 of
    // frame and 12 of run header, and the one 8-byte word that holds the changed byte.
    let (r0, r1) = (c.rows(0), c.rows(1));
    assert_eq!(r0[0][6], "2", "{r0:?}");
    assert_eq!(r1[0][6], "2", "{r1:?}");
    assert_eq!(r0[0][7], "63", "{r0:?}");
    assert_eq!(shared_columns(&r0), shared_columns(&r1));
    // The trace shows the runs and the bytes of each update.
    let log = c.log(0);
    assert!(log.contains(" runs=[0+8] 63 bytes on the wire"), "{log}");
    // The API reports the same number.
    let node = Node::open(c.ports[1]).unwrap();
    let id = node.rshmget(0x61, 0).unwrap();
    let att = node.rshmat(id).unwrap();
    att.write_at(4096, &[1; 1024]).unwrap();
    let (version, wire) = node.rshm_changed_wire(id).unwrap();
    assert_eq!((version, wire), (3, 43 + 12 + 1024));
    node.rshmdt(att).unwrap();
}

#[test]
fn late_joiners_and_restarted_nodes_read_the_current_data_at_once() {
    let mut c = Cluster::new("rshm6-join", 3);
    c.start(0);
    c.start(1);
    c.ok(0, &["write", "0x62", "written before C started"]);
    c.ok(1, &["write", "0x63", "B's too", "--size", "100"]);
    c.start(2);
    c.connected(2);
    // No write since C joined: the contents came in the HELLO exchange.
    assert_eq!(c.read(2, "0x62"), "written before C started\n");
    assert_eq!(c.read(2, "0x63"), "B's too\n");
    // Killed outright and restarted: it gets what was written while it was away.
    c.kill(2);
    c.ok(0, &["write", "0x62", "while C was dead"]);
    c.start(2);
    c.connected(2);
    assert_eq!(c.read(2, "0x62"), "while C was dead\n");
    for i in 0..3 {
        c.connected(i);
    }
    let rows: Vec<_> = (0..3).map(|i| c.rows(i)).collect();
    assert_eq!(shared_columns(&rows[0]), shared_columns(&rows[2]));
    let versions: Vec<_> = rows.iter().map(|r| r[0][6].clone()).collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
}

#[test]
fn two_nodes_racing_for_one_key_end_with_one_rshmid() {
    let mut c = Cluster::new("rshm6-race", 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.connected(i);
    }
    let (pa, pb) = (c.ports[0], c.ports[1]);
    for round in 0..12 {
        let key = 0x6400 + round;
        let gate = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [pa, pb]
            .into_iter()
            .map(|port| {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let node = Node::open(port).unwrap();
                    gate.wait();
                    node.rshmget(key, 64).unwrap()
                })
            })
            .collect();
        let ids: Vec<i32> = racers.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            ids[0], ids[1],
            "round {round}: two rshmids for key 0x{key:x}"
        );
        let hex = format!("0x{key:08x}");
        for i in 0..3 {
            let rows: Vec<_> = c.rows(i).into_iter().filter(|r| r[1] == hex).collect();
            assert_eq!(rows.len(), 1, "round {round}, node {i}: {rows:?}");
            assert_eq!(rows[0][0], ids[0].to_string(), "round {round}, node {i}");
        }
    }
    // The winner is a real segment: written on one node, read on another.
    c.ok(0, &["write", "0x6400", "one segment"]);
    assert_eq!(c.read(1, "0x6400"), "one segment\n");
    assert_eq!(c.read(2, "0x6400"), "one segment\n");
}

#[test]
fn concurrent_writers_on_two_nodes_converge_to_the_same_bytes() {
    let mut c = Cluster::new("rshm6-conc", 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.connected(i);
    }
    let ports = c.ports.clone();
    let id = Node::open(ports[0]).unwrap().rshmget(0x69, 256).unwrap();
    // Two writers, on nodes 0 and 1, each in a loop: its own word (0 or 1, offsets 0 and 8)
    // and a shared word (offset 64), then rshmChanged, at the same moments (a barrier).
    let rounds = 40;
    let gate = Arc::new(Barrier::new(2));
    let writers: Vec<_> = (0..2u8)
        .map(|w| {
            let (gate, port) = (gate.clone(), ports[usize::from(w)]);
            std::thread::spawn(move || {
                let node = Node::open(port).unwrap();
                let att = node.rshmat(id).unwrap();
                for r in 0..rounds {
                    gate.wait();
                    att.write_at(usize::from(w) * 8, &[r + 1; 8]).unwrap();
                    att.write_at(64, &[0x10 * (w + 1) + r % 16; 8]).unwrap();
                    node.rshm_changed(id).unwrap();
                }
                node.rshmdt(att).unwrap();
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    // Every replica: the same bytes, and both writers' own last words.
    let bytes: Vec<Vec<u8>> = ports
        .iter()
        .map(|&p| {
            let node = Node::open(p).unwrap();
            let att = node.rshmat(id).unwrap();
            let mut b = vec![0u8; 256];
            att.read_at(0, &mut b).unwrap();
            node.rshmdt(att).unwrap();
            b
        })
        .collect();
    assert_eq!(bytes[0], bytes[1], "nodes 0 and 1 differ");
    assert_eq!(bytes[0], bytes[2], "nodes 0 and 2 differ");
    assert_eq!(bytes[0][..16], [[rounds; 8], [rounds; 8]].concat()[..]);
    let versions: Vec<String> = (0..3).map(|i| c.rows(i)[0][6].clone()).collect();
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
}

#[test]
fn a_frozen_or_killed_peer_is_named_and_converges_when_back() {
    let mut c = Cluster::new("rshm6-fault", 3);
    c.start_with(0, &[("IPCLAB_TRACE", "1")]);
    c.start(1);
    c.start(2);
    for i in 0..3 {
        c.connected(i);
    }
    c.ok(0, &["write", "0x65", "first"]);
    let peer_c = format!("peer 127.0.0.1:{}", c.ports[2]);

    // Frozen: the write fails naming C; A and B agree; C catches up when it runs again.
    ipclab::sys::process::kill(c.pid(2), libc::SIGSTOP).unwrap();
    assert!(c.stopped(2));
    let out = c.client(0, &["write", "0x65", "while C froze"]);
    ipclab::sys::process::kill(c.pid(2), libc::SIGCONT).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&peer_c), "{}", stderr(&out));
    assert_eq!(c.read(1, "0x65"), "while C froze\n");
    assert!(wait_until(LIMIT, || c.read(2, "0x65") == "while C froze\n"));

    // Killed while a client waits in rshmChanged: freeze it first so that the write is
    // surely waiting for its ACK, then SIGKILL it.
    ipclab::sys::process::kill(c.pid(2), libc::SIGSTOP).unwrap();
    assert!(c.stopped(2));
    let writer = cmd("client")
        .args(["--port", &c.ports[0].to_string()])
        .args(["write", "0x65", "while C died"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until node 0 has sent the update (its trace says so), then kill C.
    // (two lines for each of "first" and "while C froze", two for this one).
    assert!(wait_until(LIMIT, || c
        .log(0)
        .matches(" UPDATE rshmid=")
        .count()
        >= 6));
    let t = Instant::now();
    c.kill(2);
    let out = finish(writer, LIMIT);
    assert!(t.elapsed() < LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stderr(&out), c.log(0));
    assert!(stderr(&out).contains(&peer_c), "{}", stderr(&out));
    assert_eq!(c.read(0, "0x65"), "while C died\n");
    assert_eq!(c.read(1, "0x65"), "while C died\n");
    // Restarted: HELLO brings it the contents, and it takes part again.
    c.start(2);
    c.connected(2);
    assert_eq!(c.read(2, "0x65"), "while C died\n");
    c.ok(2, &["write", "0x65", "C is back"]);
    assert_eq!(c.read(0, "0x65"), "C is back\n");
    assert_eq!(c.read(1, "0x65"), "C is back\n");
}

#[test]
fn a_wait_ends_when_the_local_server_dies_or_its_queue_goes() {
    let mut c = Cluster::new("rshm6-local", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    c.ok(0, &["write", "0x66", "x"]);
    // SIGKILL: the queue stays, nobody answers; the follower's wait ends at its deadline.
    let mut f = c.follower(0, "0x66");
    assert_eq!(f.line(), "x\n");
    c.kill(0);
    let t = Instant::now();
    assert!(wait_until(LIMIT, || f.child.try_wait().unwrap().is_some()));
    assert!(t.elapsed() < LIMIT);
    let err = f.stderr();
    assert!(
        err.starts_with("client: WAIT rshmid=") && err.contains("no reply from rshm_server"),
        "{err}"
    );
    // The queue removed under a waiting follower: an error at once.
    let mut f = c.follower(1, "0x66");
    assert_eq!(f.line(), "x\n");
    let q = msgget(queue_key(c.ports[1]), Get::Open).unwrap();
    q.remove().unwrap();
    assert!(wait_until(LIMIT, || f.child.try_wait().unwrap().is_some()));
    let err = f.stderr();
    assert!(err.contains("queue was removed"), "{err}");
}

#[test]
fn a_client_killed_while_attached_does_not_block_removal() {
    let mut c = Cluster::new("rshm6-nattch", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    c.ok(0, &["write", "0x67", "held"]);
    let mut f = c.follower(1, "0x67");
    assert_eq!(f.line(), "held\n");
    assert_eq!(c.rows(0)[0][4], "1");
    c.ok(0, &["rm", "0x67"]);
    f.child.kill().unwrap();
    f.child.wait().unwrap();
    // Node 1's server finds the follower's pid gone, drops its attach, and the removal
    // completes.
    for i in 0..2 {
        assert!(wait_until(LIMIT, || c.rows(i).is_empty()), "node {i}");
    }
    assert!(
        c.log(1)
            .contains(" died with 1 attach(es) and no rshmdt; count corrected to 0"),
        "{}",
        c.log(1)
    );
}

#[test]
fn a_full_queue_and_oversized_messages_get_clear_errors() {
    let mut c = Cluster::new("rshm6-queue", 1);
    c.start(0);
    let q = msgget(queue_key(c.ports[0]), Get::Open).unwrap();
    ipclab::sys::process::kill(c.pid(0), libc::SIGSTOP).unwrap();
    assert!(c.stopped(0));
    // Junk fills the queue while the server is frozen.
    let junk = vec![0x55u8; 1024];
    let mut sent = 0;
    while q.send(1, &junk, true).is_ok() {
        sent += 1;
        assert!(sent < 10_000, "the queue never filled");
    }
    let out = c.client(0, &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "client: LS: port {}: the rshm_server's queue is full (server stuck?)",
            c.ports[0]
        )),
        "{}",
        stderr(&out)
    );
    // Over MSGMAX: the kernel refuses it at once.
    let msgmax = ipclab::sys::kernel_limit("msgmax").unwrap() as usize;
    let e = q.send(1, &vec![0u8; msgmax + 1], true).unwrap_err();
    assert_eq!(ipclab::sys::errno(&e), Some(libc::EINVAL), "{e}");
    assert!(e.to_string().contains("larger than msgmax"), "{e}");
    // Thawed: the server drops the junk with a log line and serves again.
    ipclab::sys::process::kill(c.pid(0), libc::SIGCONT).unwrap();
    assert!(wait_until(LIMIT, || c.client(0, &["ls"]).status.success()));
    assert!(
        c.log(0).contains("queue: dropped a 1024-byte message"),
        "{}",
        c.log(0)
    );
}

#[test]
fn bad_frames_from_a_peer_drop_its_connection_and_nothing_else() {
    let mut c = Cluster::new("rshm6-frames", 2);
    c.start(0);
    c.ok(0, &["write", "0x68", "survives"]);
    // We play node 1 (not started): a configured peer's address, from its IP.
    let me: std::net::SocketAddrV4 = format!("127.0.0.1:{}", c.ports[1]).parse().unwrap();
    let hello = Frame::Hello(Hello {
        node: me,
        node_id: 7,
        entries: vec![],
    })
    .encode(0);
    let bad_frames: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not a frame at all".to_vec()),
        ("oversized", {
            let mut f = Frame::Bye.encode(1);
            f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            f
        }),
        ("truncated", {
            let f = Frame::Rmid { rshmid: 1 }.encode(1);
            f[..f.len() - 2].to_vec()
        }),
    ];
    for (what, bytes) in &bad_frames {
        let mut s = c.authed(0, me);
        s.write_all(&hello).unwrap();
        // HELLO_REPLY and one STATE: we are accepted as node 1.
        let mut got = Vec::new();
        for frames in 0..2 {
            let f = rshm_cluster::next_frame(&mut s, &mut got);
            assert!(
                matches!(
                    (frames, &f),
                    (0, Frame::HelloReply(_)) | (1, Frame::State { .. })
                ),
                "{what}: {f}"
            );
        }
        s.write_all(bytes).unwrap();
        if *what == "truncated" {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // The server drops the connection: end of stream (or a reset).
        assert_eq!(s.read(&mut [0u8; 64]).unwrap_or(0), 0, "{what}");
    }
    let log = c.log(0);
    for needle in ["bad magic", "at most", "truncated frame"] {
        assert!(
            log.contains(&format!("peer {me}: ")) && log.contains(needle),
            "no log line with '{needle}': {log}"
        );
    }
    assert_eq!(log.matches("dropping its connection").count(), 3, "{log}");
    // The server and the data survive.
    assert_eq!(c.read(0, "0x68"), "survives\n");
}

/// A node that learned of a row from its creator passes the row on before it sends anything
/// about it: frames on one connection arrive in order, frames on two connections need not
/// (`rshmget::remote`). Node C here is the test itself, so it sees each connection's frames
/// in the order they were sent: on B's connection, the NEW of A's row must come before B's
/// COUNT for it, whenever A's own NEW reaches C.
#[test]
fn a_node_passes_a_row_on_before_it_says_anything_about_it() {
    use ipclab::rshm::auth::{self, Secret};
    use rshm_cluster::read_frame;
    use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
    let mut c = Cluster::new("rshm-pass-on", 3);
    let me = SocketAddrV4::new(Ipv4Addr::LOCALHOST, c.ports[2]);
    let listener = TcpListener::bind(me).unwrap();
    c.start(0);
    c.start(1);
    let (secret, _) = Secret::load(&c.secret, false).unwrap();
    // A's and B's dialers: the handshake, their HELLO, an empty HELLO_REPLY; then every
    // frame is recorded, with the node that sent it, and ACKed.
    let (seen, frames) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let from = auth::accept(&mut s, &secret, me).expect("a real node's handshake");
        let mut got = Vec::new();
        assert!(matches!(
            read_frame(&mut s, &mut got),
            Some((_, Frame::Hello(_)))
        ));
        let reply = Frame::HelloReply(Hello {
            node: me,
            node_id: 7,
            entries: vec![],
        });
        s.write_all(&reply.encode(0)).unwrap();
        let seen = seen.clone();
        readers.push(std::thread::spawn(move || {
            while let Some((seq, f)) = read_frame(&mut s, &mut got) {
                let ack = Frame::Ack {
                    status: 0,
                    text: String::new(),
                    winner: None,
                };
                let _ = s.write_all(&ack.encode(seq));
                let _ = seen.send((from, f));
            }
        }));
    }
    drop(seen);
    c.connected(0);
    c.connected(1);
    let (a, b) = (
        Node::open(c.ports[0]).unwrap(),
        Node::open(c.ports[1]).unwrap(),
    );
    let id = a.rshmget(0x9a55, 64).unwrap();
    let att = b.rshmat(id).unwrap();
    b.rshmdt(att).unwrap();
    a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
    c.stop(1);
    c.stop(0);
    for r in readers {
        r.join().unwrap();
    }
    let b_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, c.ports[1]);
    let from_b: Vec<String> = frames
        .iter()
        .filter(|(from, _)| *from == b_addr)
        .filter_map(|(_, f)| match f {
            Frame::New(e) if e.rshmid == id => Some("NEW".to_string()),
            Frame::Count { rshmid, .. } if rshmid == id => Some("COUNT".to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        from_b.first().map(String::as_str),
        Some("NEW"),
        "B's frames about A's row, in order: {from_b:?}"
    );
    assert!(from_b.contains(&"COUNT".to_string()), "{from_b:?}");
}

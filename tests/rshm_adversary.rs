//! RSHM under attack, on a shared machine: real `rshm_server` processes on loopback.
//!
//! - An impostor that knows the ports but not the cluster secret (as root: another uid) gets
//!   nothing and changes nothing; nor does one who relays the handshake between two real
//!   nodes; two groups with different secrets on one machine stay apart.
//! - A server killed with SIGKILL restarts in the same IPC namespace with no manual step, and
//!   catches up; a live server, or another user's objects, on the port are named clearly.
//! - A flood of foreign messages and unread replies does not stop a third program's calls.
//! - Attach counts are exact after an attached program is killed, on every node.

mod common;
mod rshm_cluster;

use common::{cmd, run_with_limit, wait_until};
use ipclab::rshm::auth::{self, AuthError, Secret};
use ipclab::rshm::{alive::alive_key, gate::gate_key, queue_key, Node, RSHM_REQUEST_TYPE};
use ipclab::sys::ipcs;
use ipclab::sys::msg::msgget;
use ipclab::sys::shm::Get;
use ipclab::wire::rshm::{Auth, Frame, Hello, Op, Request, Run, AUTH_LEN};
use rshm_cluster::{write_secret, Cluster, LIMIT};
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// An unused uid (and gid) for "another user", when the test runs as root.
const OTHER_UID: u32 = 64_000;

fn root() -> bool {
    auth::euid().unwrap() == 0
}

/// A secret file of `uid`'s own (mode 0600), as `rshm_server` requires.
fn secret_of(path: &Path, uid: u32) -> std::path::PathBuf {
    let p = write_secret(path);
    std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
    p
}

/// `rshm_server --listen port --peer peers... --secret secret`, as `uid` (our own if `None`),
/// stderr in `log`.
fn server_as(
    c: &Cluster,
    uid: Option<u32>,
    port: u16,
    peers: &[u16],
    secret: &Path,
    log: &Path,
) -> u32 {
    let mut cmd = cmd("rshm_server");
    cmd.args(["--listen", &port.to_string(), "--secret"])
        .arg(secret)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for p in peers {
        cmd.arg("--peer").arg(p.to_string());
    }
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let pid = c.s.spawn(&mut cmd);
    assert!(
        wait_until(LIMIT, || Node::open(port).is_ok_and(|n| n.ls().is_ok())),
        "server on {port} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    pid
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_impostor_without_the_secret_gets_nothing_and_changes_nothing() {
    // Nodes 0 and 1 are the group; port 2 is configured as their third peer, and the impostor
    // takes it: it knows every port, and it runs with a secret of its own.
    let mut c = Cluster::new("rshm-impostor", 3);
    c.start(0);
    c.start(1);
    c.connected_to(0, 1);
    c.ok(0, &["write", "0x71", "private data"]);
    let before = [c.rows(0), c.rows(1)];
    let uid = if root() {
        Some(OTHER_UID)
    } else {
        println!("skipped: not root, so the impostor runs as this same uid (with another secret)");
        None
    };
    let secret = secret_of(
        &c.s.dir().join("impostor-secret"),
        uid.unwrap_or(auth::euid().unwrap()),
    );
    let log = c.s.dir().join("impostor.log");
    let pid = server_as(&c, uid, c.ports[2], &c.ports[..2], &secret, &log);
    // Both sides log the refusal; the impostor's dialers, once each (not at every retry).
    for i in 0..2 {
        assert!(
            wait_until(LIMIT, || c
                .log(i)
                .contains("refused connection from 127.0.0.1:")
                && c.log(i).contains("authentication failed")),
            "node {i}: {}",
            c.log(i)
        );
    }
    assert!(
        wait_until(LIMIT, || read_log(&log)
            .matches("authentication failed")
            .count()
            >= 2),
        "{}",
        read_log(&log)
    );
    // The impostor learned nothing: no row, both peers down. It writes the same key on its
    // own node, which reaches nobody.
    let listing = Node::open(c.ports[2]).unwrap().ls().unwrap();
    assert!(listing.entries.is_empty(), "{:?}", listing.entries);
    assert!(listing.peers.iter().all(|p| !p.up), "{:?}", listing.peers);
    let forged = run_with_limit(
        cmd("client").args(["--port", &c.ports[2].to_string(), "write", "0x71", "forged"]),
        LIMIT,
    );
    assert!(forged.status.success(), "{}", stderr(&forged));
    std::thread::sleep(Duration::from_millis(300));
    for (i, rows) in before.iter().enumerate() {
        assert_eq!(c.read(i, "0x71"), "private data\n", "node {i}");
        assert_eq!(&c.rows(i), rows, "node {i}'s table changed");
    }
    let impostor_log = read_log(&log);
    assert_eq!(
        impostor_log
            .matches("not connecting (same --secret on both nodes?)")
            .count(),
        2,
        "one line per peer, not one per retry: {impostor_log}"
    );
    // The impostor keeps retrying (every 800 ms at most); the nodes log each kind of refusal
    // once per 10 s, not once per retry.
    std::thread::sleep(Duration::from_millis(2000));
    for i in 0..2 {
        let log = c.log(i);
        let refusals: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once("refused connection from 127.0.0.1:"))
            .map(|(_, rest)| rest.split_once(": ").map_or(rest, |(_, why)| why))
            .collect();
        let kinds: std::collections::HashSet<&&str> = refusals.iter().collect();
        assert_eq!(
            refusals.len(),
            kinds.len(),
            "node {i} logged one kind of refusal twice within 10 s: {log}"
        );
    }
    ipclab::sys::process::kill(pid as i32, libc::SIGTERM).unwrap();

    // By hand, on raw TCP: a HELLO and a forged UPDATE without any handshake get nothing but a
    // closed connection.
    let me: std::net::SocketAddrV4 = format!("127.0.0.1:{}", c.ports[2]).parse().unwrap();
    let mut raw = TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    raw.set_read_timeout(Some(LIMIT)).unwrap();
    let mut bytes = Frame::Hello(Hello {
        node: me,
        node_id: 1,
        entries: vec![],
    })
    .encode(0);
    bytes.extend(
        Frame::Update {
            rshmid: before[0][0][0].parse().unwrap(),
            version: 1 << 62,
            origin: me,
            part: 0,
            more: false,
            runs: vec![Run {
                offset: 0,
                data: b"forged!!".to_vec(),
            }],
        }
        .encode(1),
    );
    let _ = raw.write_all(&bytes);
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(got.is_empty(), "{} bytes sent to a stranger", got.len());
    // The right protocol with the wrong secret: the server's answer (a nonce and a MAC) is
    // all it gets, and the dialer learns the server is not of its group.
    let mut wrong = TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    wrong.set_read_timeout(Some(LIMIT)).unwrap();
    let ends = auth::Ends {
        dialer: me,
        acceptor: format!("127.0.0.1:{}", c.ports[0]).parse().unwrap(),
    };
    let e = auth::dial(
        &mut wrong,
        &Secret::new(b"not the group's secret at all"),
        ends,
    )
    .unwrap_err();
    assert!(matches!(e, AuthError::WrongSecret), "{e}");
    let _ = wrong.write_all(&bytes);
    let mut rest = Vec::new();
    let _ = wrong.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "{} bytes after a failed handshake",
        rest.len()
    );
    for (i, rows) in before.iter().enumerate() {
        assert_eq!(c.read(i, "0x71"), "private data\n", "node {i}");
        assert_eq!(&c.rows(i), rows, "node {i}'s table changed");
    }
}

#[test]
fn two_groups_with_different_secrets_on_one_machine_stay_apart() {
    // Group B lists group A's ports among its peers (two students who picked the same ports
    // for their "other machine"), and A lists B's: each side's IP check passes, the secret
    // does not.
    let mut a = Cluster::new("rshm-group-a", 2);
    let mut b = Cluster::new("rshm-group-b", 2);
    a.extra_peers = b.ports.clone();
    b.extra_peers = a.ports.clone();
    for i in 0..2 {
        a.start(i);
        b.start(i);
    }
    a.connected_to(0, 1);
    b.connected_to(0, 1);
    a.ok(0, &["write", "0x72", "group A"]);
    b.ok(0, &["write", "0x72", "group B"]);
    for i in 0..2 {
        assert_eq!(a.read(i, "0x72"), "group A\n");
        assert_eq!(b.read(i, "0x72"), "group B\n");
        assert_eq!(a.rows(i).len(), 1);
        assert_eq!(b.rows(i).len(), 1);
        for (g, other) in [(&a, &b), (&b, &a)] {
            let l = Node::open(g.ports[i]).unwrap().ls().unwrap();
            for p in &l.peers {
                let foreign = other.ports.contains(&p.addr.port());
                assert_eq!(p.up, !foreign, "{:?}", l.peers);
            }
            assert!(g.log(i).contains("authentication failed"), "{}", g.log(i));
        }
    }
}

/// The objects a server has under its keys with a small table: its queue, its first gate set
/// and its alive set (more gate sets come only with more than 250 gated segments).
fn at_rest(port: u16) -> [i32; 3] {
    [queue_key(port), gate_key(port), alive_key(port)]
}

#[test]
fn a_server_killed_with_sigkill_restarts_by_itself_and_catches_up() {
    let mut c = Cluster::new("rshm-restart", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    c.ok(0, &["write", "0x73", "before"]);
    let dead = c.pid(1);
    c.kill(1);
    // What the kill left: the queue, the change gates and the alive set (now 0).
    let port = c.ports[1];
    for key in at_rest(port) {
        assert_eq!(ipcs::with_key(key).unwrap().len(), 1, "key 0x{key:08x}");
    }
    c.ok(0, &["write", "0x73", "after the kill"]);
    // A second server on a live port is refused, by pid (before it even tries the TCP port).
    let live = run_with_limit(
        cmd("rshm_server")
            .args(["--listen", &c.ports[0].to_string(), "--secret"])
            .arg(&c.secret),
        LIMIT,
    );
    assert_eq!(live.status.code(), Some(1));
    assert!(
        stderr(&live).contains(&format!("another rshm_server (pid {} of uid", c.pid(0))),
        "{}",
        stderr(&live)
    );
    // No manual step: the same command again.
    c.start(1);
    c.connected(1);
    let log = c.log(1);
    assert!(
        log.contains(&format!(
            "the rshm_server that served port {port} (pid {dead}) died without cleaning up; removed its alive set"
        )),
        "{log}"
    );
    assert_eq!(c.read(1, "0x73"), "after the kill\n");
    c.ok(1, &["write", "0x73", "and back"]);
    assert_eq!(c.read(0, "0x73"), "and back\n");
    for key in at_rest(port) {
        assert_eq!(ipcs::with_key(key).unwrap().len(), 1, "key 0x{key:08x}");
    }
}

#[test]
fn another_users_objects_on_the_port_are_named_not_clobbered() {
    if !root() {
        println!("skipped: needs root, to run servers as two other uids");
        return;
    }
    // uid OTHER_UID's server on a port; then uid OTHER_UID+1 wants the same port.
    let c = Cluster::new("rshm-squat", 1);
    let port = c.ports[0];
    let mine = OTHER_UID + 1;
    let (s1, s2) = (
        secret_of(&c.s.dir().join("s1"), OTHER_UID),
        secret_of(&c.s.dir().join("s2"), mine),
    );
    let squatter = server_as(
        &c,
        Some(OTHER_UID),
        port,
        &[],
        &s1,
        &c.s.dir().join("sq.log"),
    );
    let try_start = || {
        run_with_limit(
            cmd("rshm_server")
                .args(["--listen", &port.to_string(), "--secret"])
                .arg(&s2)
                .uid(mine)
                .gid(mine),
            LIMIT,
        )
    };
    let want = format!("port {port} is taken in this IPC namespace by uid {OTHER_UID}");
    let out = try_start();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    // Killed, it leaves its objects; they are still not ours to remove.
    let mut child = c.s.take(squatter);
    child.kill().unwrap();
    child.wait().unwrap();
    let out = try_start();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&want) && stderr(&out).contains("ipcrm"),
        "{}",
        stderr(&out)
    );
    for key in at_rest(port) {
        assert!(!ipcs::with_key(key).unwrap().is_empty(), "key 0x{key:08x}");
    }
    // (The Scratch guard, as root, removes them.)
}

#[test]
fn a_flood_of_foreign_messages_and_unread_replies_does_not_stop_other_calls() {
    let mut c = Cluster::new("rshm-flood", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    let port = c.ports[0];
    let q = msgget(queue_key(port), Get::Open).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let junk = [0x5au8; 64];
            let mut n = 0u32;
            // Ten times a second, what jammed a node for good before: 300 messages of a type
            // nobody serves, and 300 valid requests whose replies nobody reads (pid 1 as the
            // caller, which never dies). Each burst fills the queue to the brim.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..300 {
                    let _ = q.send(424_242, &junk, true);
                    let req = Request {
                        reply_type: 7_000_000 + (n % 1000) as i32,
                        serial: n,
                        pid: 1,
                        op: Op::Ls { after: 0 },
                    };
                    let _ = q.send(RSHM_REQUEST_TYPE, &req.encode(), true);
                    n = n.wrapping_add(1);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Meanwhile a third program works, on node 0, through whole calls.
    let node = Node::open(port).unwrap();
    let t = Instant::now();
    let mut calls = 0;
    let log = || c.log(0);
    while t.elapsed() < Duration::from_secs(3) {
        let round = || -> std::io::Result<()> {
            let id = node.rshmget(0x74, 64)?;
            let att = node.rshmat(id)?;
            att.write_string(&format!("call {calls}"))?;
            node.rshm_changed(id)?;
            node.rshmdt(att)
        };
        if let Err(e) = round() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("call {calls} during the flood: {e}\n{}", log());
        }
        calls += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    println!("rshm_adversary: {calls} rounds of calls during the flood");
    assert!(calls >= 10, "only {calls} rounds in 3 s");
    assert_eq!(c.read(1, "0x74"), format!("call {}\n", calls - 1));
    // Once the flood stops, the queue empties by itself, and the server said what it removed.
    assert!(
        wait_until(LIMIT, || q.stat().unwrap().messages == 0),
        "{:?}",
        q.stat()
    );
    assert!(
        wait_until(LIMIT, || c.log(0).contains("queue: removed ")),
        "{}",
        c.log(0)
    );
    let log = c.log(0);
    assert!(log.contains("424242"), "{log}");
    assert!(log.lines().count() < 100, "the log was flooded too: {log}");
}

#[test]
fn attach_counts_are_exact_after_an_attached_program_is_killed() {
    let mut c = Cluster::new("rshm-counts", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    c.ok(0, &["write", "0x75", "counted"]);
    let count = |i: usize| c.rows(i)[0][4].clone();
    let all_show = |n: &str| (0..2).all(|i| count(i) == n);
    let mut killed = c.follower(1, "0x75");
    let kept = c.follower(1, "0x75");
    let mut far = c.follower(0, "0x75");
    for f in [&mut killed, &mut far] {
        assert_eq!(f.line(), "counted\n");
    }
    assert!(
        wait_until(LIMIT, || all_show("3")),
        "{:?}",
        (count(0), count(1))
    );
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    assert!(
        wait_until(LIMIT, || all_show("2")),
        "{:?}",
        (count(0), count(1))
    );
    // The correction left no credit behind: a later detach on that node counts, and a new
    // attach and its detach too.
    kept.stop();
    assert!(
        wait_until(LIMIT, || all_show("1")),
        "{:?}",
        (count(0), count(1))
    );
    let again = c.follower(1, "0x75");
    assert!(
        wait_until(LIMIT, || all_show("2")),
        "{:?}",
        (count(0), count(1))
    );
    again.stop();
    assert!(
        wait_until(LIMIT, || all_show("1")),
        "{:?}",
        (count(0), count(1))
    );
    for _ in 0..5 {
        assert_eq!(c.read(1, "0x75"), "counted\n");
    }
    std::thread::sleep(Duration::from_millis(1200)); // a full correction round
    assert_eq!((count(0), count(1)), ("1".into(), "1".into()));
    let log = c.log(1);
    assert_eq!(log.matches("and no rshmdt").count(), 1, "{log}");
    // Removed while the last one is attached, then that one killed: gone at once everywhere.
    c.ok(1, &["rm", "0x75"]);
    far.child.kill().unwrap();
    far.child.wait().unwrap();
    let t = Instant::now();
    for i in 0..2 {
        assert!(wait_until(LIMIT, || c.rows(i).is_empty()), "node {i}");
    }
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

/// Copies what `from` sends to `to` until `from` closes or is quiet for a second, and returns
/// it. With `rename`, the first message (an authentication message) gets that acceptor name
/// on its way, as a relay that hides where it was dialled would do.
fn pump(mut from: TcpStream, mut to: TcpStream, rename: Option<SocketAddrV4>) -> Vec<u8> {
    from.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    // How much of `seen` has gone on to `to`.
    let mut forwarded = 0;
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break, // closed, or quiet for a second
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let mut out = seen[forwarded..].to_vec();
        if let (Some(name), 0) = (rename, forwarded) {
            if seen.len() < AUTH_LEN {
                continue; // wait for the whole first message, then rename it
            }
            let mut m = Auth::decode(&seen[..AUTH_LEN]).unwrap();
            m.acceptor = name;
            out.splice(..AUTH_LEN, m.encode());
        }
        forwarded = seen.len();
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    seen
}

#[test]
fn a_stranger_who_relays_the_handshake_between_two_nodes_gets_nothing() {
    // Nodes 0 and 1 are the group; port 2 is their third configured peer, down. A stranger
    // without the secret listens on it: a node that dials "node 2" reaches the stranger, who
    // dials node 0 and passes every byte on, both ways. Both ends know the secret, so without
    // the names in the MACs both would accept, and node 0 would send its table and contents.
    // Twice: passing the messages on as they are, and renaming the node dialled to node 0.
    let mut c = Cluster::new("rshm-relay", 3);
    c.start(0);
    c.start(1);
    c.connected_to(0, 1);
    c.ok(0, &["write", "0x73", "never through a relay"]);
    let before = [c.rows(0), c.rows(1)];
    let name = |i: usize| -> SocketAddrV4 { format!("127.0.0.1:{}", c.ports[i]).parse().unwrap() };
    let listener = TcpListener::bind(("127.0.0.1", c.ports[2])).unwrap();
    for rename in [None, Some(name(0))] {
        // A node's dialer retries every 800 ms at most.
        let (dialler, _) = listener.accept().unwrap();
        let to_node_0 = TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
        let (d, n) = (dialler.try_clone().unwrap(), to_node_0.try_clone().unwrap());
        let there = std::thread::spawn(move || pump(d, n, rename));
        let back_from_0 = pump(to_node_0, dialler, rename.map(|_| name(2)));
        there.join().unwrap();
        // Plainly relayed, node 0 sees a connection meant for node 2 and answers nothing;
        // renamed, it answers (a nonce and a MAC over the names it saw), and the dialer, who
        // dialled node 2, finds the MAC wrong and hangs up before any proof.
        let most = if rename.is_some() { AUTH_LEN } else { 0 };
        assert!(
            back_from_0.len() <= most,
            "node 0 sent {} bytes through the relay",
            back_from_0.len()
        );
        let text = String::from_utf8_lossy(&back_from_0);
        assert!(!text.contains("never through a relay"));
    }
    assert!(
        wait_until(LIMIT, || c.log(0).contains(&format!(
            "it dialled {}, not this node ({})",
            name(2),
            name(0)
        ))),
        "{}",
        c.log(0)
    );
    assert!(
        wait_until(LIMIT, || (0..2)
            .any(|i| c.log(i).contains("does not know our cluster secret"))),
        "{}\n{}",
        c.log(0),
        c.log(1)
    );
    drop(listener);
    for (i, rows) in before.iter().enumerate() {
        assert_eq!(c.read(i, "0x73"), "never through a relay\n", "node {i}");
        assert_eq!(&c.rows(i), rows, "node {i}'s table changed");
    }
    let listing = Node::open(c.ports[0]).unwrap().ls().unwrap();
    let peer_2 = listing.peers.iter().find(|p| p.addr == name(2)).unwrap();
    assert!(!peer_2.up, "{:?}", listing.peers);
}

#[test]
fn a_server_killed_between_semget_and_semop_does_not_block_the_port_for_ever() {
    // What a server killed in the few microseconds between creating its alive set and its
    // first semop leaves: the set at 0 with no semop. At first that looks like a server that
    // is starting, and a new one is refused; once the set is older than any start takes
    // (RSHM_ALIVE_START_GRACE), it is a dead server's, and the same command starts.
    let mut c = Cluster::new("rshm-half-started", 1);
    let port = c.ports[0];
    let _left = ipclab::sys::sem::semget(alive_key(port), 1, Get::Create(0o600)).unwrap();
    let again = || {
        run_with_limit(
            cmd("rshm_server")
                .args(["--listen", &port.to_string(), "--secret"])
                .arg(&c.secret),
            LIMIT,
        )
    };
    let early = again();
    assert_eq!(early.status.code(), Some(1), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("starting now"),
        "{}",
        stderr(&early)
    );
    std::thread::sleep(ipclab::params::RSHM_ALIVE_START_GRACE + Duration::from_secs(1));
    c.start(0);
    assert!(
        c.log(0).contains(&format!(
            "the rshm_server that served port {port} (killed while it started) died without cleaning up; removed its alive set"
        )),
        "{}",
        c.log(0)
    );
    for key in at_rest(port) {
        assert_eq!(ipcs::with_key(key).unwrap().len(), 1, "key 0x{key:08x}");
    }
}

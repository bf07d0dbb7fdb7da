//! RSHM across real server processes: three `rshm_server`s on loopback, real queues, real TCP.
//!
//! Each test takes free ports, so its queue keys (`0x52530000 + port`) are its own; the
//! `Scratch` guard kills the servers and removes anything with those keys, even on failure.

mod common;

mod rshm_cluster;

use common::{cmd, finish, run_with_limit, wait_until};
use ipclab::rshm::{queue_key, Node};
use ipclab::sys::shm::ShmId;
use rshm_cluster::{shared_columns, Cluster, LIMIT};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

#[test]
fn written_on_one_node_read_on_every_node() {
    let mut c = Cluster::new("rshm-rw", 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.connected(i);
    }
    let id = c.ok(0, &["write", "0x51", "hello", "from", "A"]);
    assert!(id.trim().parse::<i32>().unwrap() > 0, "{id}");
    for i in 0..3 {
        assert_eq!(c.ok(i, &["read", "0x51"]), "hello from A\n");
    }
    // The same key from another node is the same segment; its write reaches A and B.
    assert_eq!(c.ok(2, &["write", "0x51", "C was here"]), id);
    assert_eq!(c.ok(0, &["read", "0x51"]), "C was here\n");
    assert_eq!(c.ok(1, &["read", "0x51"]), "C was here\n");
    // Every node's table: the same row, each with its own replica.
    let rows: Vec<_> = (0..3).map(|i| c.rows(i)).collect();
    assert_eq!(rows[0].len(), 1);
    assert_eq!(rows[0][0][0], id.trim());
    assert_eq!(rows[0][0][1], "0x00000051");
    assert_eq!(rows[0][0][2], "4096");
    assert_eq!(rows[0][0][3], format!("127.0.0.1:{}", c.ports[0]));
    assert_eq!(shared_columns(&rows[0]), shared_columns(&rows[1]));
    assert_eq!(shared_columns(&rows[0]), shared_columns(&rows[2]));
    assert_eq!(rows[0][0][6], rows[1][0][6], "versions");
    let shmids: std::collections::HashSet<_> = rows.iter().map(|r| r[0][5].clone()).collect();
    assert_eq!(shmids.len(), 3, "three replicas: {rows:?}");

    // Interactive P1/P2: the same commands at a prompt; an error does not end the session.
    let mut child = cmd("client")
        .args(["--port", &c.ports[1].to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"write 0x5f typed in\nbogus\nread 0x5f\nread 0x51\nquit\n")
        .unwrap();
    let out = finish(child, LIMIT);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let prompt = format!("rshm:{}> ", c.ports[1]);
    let plain = stdout.replace(&prompt, "");
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(stdout.matches(&prompt).count(), 5, "{stdout}");
    assert!(lines[0].parse::<i32>().unwrap() > 0, "{stdout}");
    assert_eq!(lines[1..], ["typed in", "C was here"], "{stdout}");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "client: unknown command 'bogus'\n"
    );
    assert_eq!(c.ok(2, &["read", "0x5f"]), "typed in\n");
}

#[test]
fn ref_counts_agree_everywhere_and_removal_waits_for_the_last_detach() {
    let mut c = Cluster::new("rshm-ref", 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.connected(i);
    }
    c.ok(0, &["write", "0x52", "counted"]);
    let mut f1 = c.follower(1, "0x52");
    assert_eq!(f1.line(), "counted\n");
    let mut f2 = c.follower(2, "0x52");
    assert_eq!(f2.line(), "counted\n");
    // rshmat returns after every node counted it: the same count everywhere, at once.
    for i in 0..3 {
        assert_eq!(c.rows(i)[0][4], "2", "attaches seen from node {i}");
    }
    // A follower sees a change made on another node.
    c.ok(0, &["write", "0x52", "changed"]);
    assert_eq!(f1.line(), "changed\n");
    assert_eq!(f2.line(), "changed\n");
    let replicas: Vec<i32> = (0..3).map(|i| c.rows(i)[0][5].parse().unwrap()).collect();
    // Removal asked on a node that is not the owner: forwarded, marked everywhere.
    c.ok(2, &["rm", "0x52"]);
    for i in 0..3 {
        assert!(
            wait_until(LIMIT, || c.rows(i)[0].get(8).map(String::as_str)
                == Some("dest")),
            "node {i} never marked it"
        );
    }
    // The key is gone for new users, as with shm after IPC_RMID.
    let out = c.client(1, &["read", "0x52"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("client: rshmget(key=0x00000052): no segment with this key in the group: "));
    f1.stop();
    for i in 0..3 {
        assert!(wait_until(LIMIT, || c.rows(i)[0][4] == "1"), "node {i}");
    }
    for (i, r) in replicas.iter().enumerate() {
        assert!(
            ShmId(*r).stat().is_ok(),
            "replica on node {i} went too early"
        );
    }
    f2.stop();
    for (i, r) in replicas.iter().enumerate() {
        assert!(
            wait_until(LIMIT, || c.rows(i).is_empty()),
            "node {i} kept it"
        );
        assert!(ShmId(*r).stat().is_err(), "replica {i} left");
    }
}

#[test]
fn a_node_that_starts_last_merges_the_tables_by_hello() {
    let mut c = Cluster::new("rshm-hello", 3);
    c.start(0);
    c.start(1);
    let a = c.ok(0, &["write", "0x53", "made on A"]);
    let b = c.ok(1, &["write", "0x54", "made on B", "--size", "100"]);
    // Tracing on the late node: one line per frame and per queue message.
    c.start_with(2, &[("IPCLAB_TRACE", "1")]);
    for i in 0..3 {
        c.connected(i);
    }
    let rows = c.rows(2);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert!(
        ids.contains(&a.trim()) && ids.contains(&b.trim()),
        "{rows:?}"
    );
    assert_eq!(shared_columns(&c.rows(0)), shared_columns(&rows));
    // The late node takes part fully: its writes reach the others and theirs reach it.
    c.ok(2, &["write", "0x53", "C overwrote"]);
    assert_eq!(c.ok(0, &["read", "0x53"]), "C overwrote\n");
    c.ok(1, &["write", "0x54", "B again"]);
    assert_eq!(c.ok(2, &["read", "0x54"]), "B again\n");
    let log = c.log(2);
    assert!(
        log.contains("rshm_server: trace: tcp -> 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains(" HELLO node=127.0.0.1:"), "{log}");
    assert!(log.contains("HELLO_REPLY node="), "{log}");
    assert!(log.contains("rshm_server: trace: queue <- tid "), "{log}");
    assert!(log.contains(" UPDATE rshmid="), "{log}");
}

#[test]
fn a_peer_down_at_the_start_is_reached_when_it_comes_up() {
    let mut c = Cluster::new("rshm-late", 2);
    c.start(0);
    // Alone: it serves locally, and says its peer is down.
    let id = c.ok(0, &["write", "0x55", "before B"]);
    let ls = c.ok(0, &["ls"]);
    assert!(
        ls.starts_with(&format!(
            "node 127.0.0.1:{} peers 127.0.0.1:{} down\n",
            c.ports[0], c.ports[1]
        )),
        "{ls}"
    );
    assert!(c.log(0).contains("is down"), "{}", c.log(0));
    c.start(1);
    c.connected(0);
    c.connected(1);
    assert_eq!(c.rows(1)[0][0], id.trim());
    c.ok(0, &["write", "0x55", "after B"]);
    assert_eq!(c.ok(1, &["read", "0x55"]), "after B\n");
}

#[test]
fn sigterm_leaves_no_object_behind() {
    let mut c = Cluster::new("rshm-stop", 3);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.connected(i);
    }
    c.ok(0, &["write", "0x56", "one"]);
    c.ok(1, &["write", "0x57", "two"]);
    let replicas: Vec<i32> = (0..3)
        .flat_map(|i| c.rows(i))
        .map(|r| r[5].parse().unwrap())
        .collect();
    assert_eq!(replicas.len(), 6);
    for i in 0..3 {
        c.stop(i);
        assert!(c.log(i).contains("leaving the group"), "{}", c.log(i));
    }
    for r in replicas {
        assert!(ShmId(r).stat().is_err(), "replica shmid {r} left behind");
    }
    c.s.assert_no_leftovers();
    // And a client of a stopped node gets a clear error, at once.
    let out = c.client(0, &["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "client: no rshm_server on port {} (queue key 0x{:08x}): No such file",
            c.ports[0],
            queue_key(c.ports[0])
        )),
        "{err}"
    );
}

#[test]
fn a_server_killed_outright_leaves_no_replica() {
    let mut c = Cluster::new("rshm-kill", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.ok(0, &["write", "0x5d", "doomed"]);
    let replica: i32 = c.rows(1)[0][5].parse().unwrap();
    assert!(
        ShmId(replica).stat().unwrap().removed,
        "marked from the start"
    );
    // SIGKILL: no destructor runs. The kernel detaches, and a marked segment then goes.
    let mut child = c.s.take(c.pids[1].take().unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ShmId(replica).stat().is_err(),
        "replica {replica} outlived its server"
    );
    // Its queue stays (it has a key, so ipcrm or the Scratch guard can find it).
    let q = ipclab::sys::msg::msgget(queue_key(c.ports[1]), ipclab::sys::shm::Get::Open);
    assert!(q.is_ok());
}

#[test]
fn bad_input_gets_clear_errors_and_never_hangs() {
    let mut c = Cluster::new("rshm-err", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let err = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let out = c.client(0, &["read", "0x77"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).starts_with("client: rshmget(key=0x00000077): no segment"),
        "{}",
        err(&out)
    );
    let out = c.client(0, &["write", "0x58", "far too long", "--size", "8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).starts_with("client: text of 13 bytes (with its NUL) does not fit segment "),
        "{}",
        err(&out)
    );
    assert_eq!(c.client(0, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(c.client(0, &["read"]).status.code(), Some(2));
    // A usage error is exit 2 whether or not a server runs on the port.
    assert_eq!(c.client(0, &["write", "zz", "hi"]).status.code(), Some(2));
    let nobody = common::free_port(queue_key);
    let out = run_with_limit(
        cmd("client").args(["--port", &nobody.to_string(), "write", "zz", "hi"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", err(&out));
    assert!(err(&out).starts_with("client: KEY: 'zz' is not a number\n"));
    let out = run_with_limit(
        cmd("client").args(["--port", &nobody.to_string(), "read", "0x10"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "no server is a runtime failure");
    assert_eq!(
        c.client(0, &["write", "0x58", "x", "--size", "0"])
            .status
            .code(),
        Some(2)
    );
    let out = run_with_limit(
        cmd("rshm_server")
            .args(["--listen", &c.ports[0].to_string(), "--secret"])
            .arg(&c.secret),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second server on a taken port"
    );
    for bad in [&["--listen", "0.0.0.0:7001"][..], &[], &["--listen", "x"]] {
        let out = run_with_limit(cmd("rshm_server").args(bad), LIMIT);
        assert_eq!(out.status.code(), Some(2), "rshm_server {bad:?}");
        assert!(err(&out).starts_with("rshm_server: "), "{}", err(&out));
    }
    assert!(
        err(&out).starts_with("rshm_server: starting node 127.0.0.1:"),
        "{}",
        err(&out)
    );

    // Strangers are refused: a HELLO (after a good handshake) naming an address that is not a
    // configured peer, and garbage. The server logs them and keeps serving.
    let mut s = c.authed(0, "127.0.0.1:9".parse().unwrap());
    let hello = ipclab::wire::rshm::Frame::Hello(ipclab::wire::rshm::Hello {
        node: "127.0.0.1:9".parse().unwrap(),
        node_id: 1,
        entries: vec![],
    });
    s.write_all(&hello.encode(0)).unwrap();
    assert_eq!(
        s.read(&mut [0u8; 16]).unwrap_or(0),
        0,
        "closed without a reply"
    );
    let mut g = TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    g.set_read_timeout(Some(LIMIT)).unwrap();
    g.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(g.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!(
        wait_until(LIMIT, || c
            .log(0)
            .matches("refused connection from")
            .count()
            >= 2),
        "{}",
        c.log(0)
    );

    // A peer that is frozen: rshmChanged names it, within the ack timeout.
    c.ok(0, &["write", "0x59", "first"]);
    let pid = c.pids[1].unwrap() as i32;
    ipclab::sys::process::kill(pid, libc::SIGSTOP).unwrap();
    // SIGSTOP takes effect asynchronously: wait until the kernel shows it stopped.
    let state = || ipclab::sys::process::state(pid);
    assert!(wait_until(LIMIT, || state() == Some('T')), "{:?}", state());
    let out = c.client(0, &["write", "0x59", "second"]);
    ipclab::sys::process::kill(pid, libc::SIGCONT).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "write with a frozen peer: {out:?}\n{}",
        c.log(0)
    );
    assert!(
        err(&out).contains(&format!(
            "peer 127.0.0.1:{} did not acknowledge within",
            c.ports[1]
        )),
        "{}",
        err(&out)
    );
    // Once it runs again, it gets the update (it was queued on the connection).
    assert!(wait_until(LIMIT, || c.ok(1, &["read", "0x59"]) == "second\n"));

    // A follower killed outright (no cleanup) while it waits: the reply meant for it must not
    // stay in the queue for ever.
    let mut f = c.follower(0, "0x59");
    assert_eq!(f.line(), "second\n");
    f.child.kill().unwrap();
    f.child.wait().unwrap();
    c.ok(1, &["write", "0x59", "third"]);
    let q = ipclab::sys::msg::msgget(queue_key(c.ports[0]), ipclab::sys::shm::Get::Open).unwrap();
    // A follower sleeps on its gate, not in the queue: so, as the one that asked just before
    // it was killed would, send a WAIT from a process that is gone. Its answer is queued at
    // once (it has seen nothing), and must be removed (the server's `sweep_queue`).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id() as i32;
    gone.wait().unwrap();
    let rows = c.rows(0);
    let row = rows
        .iter()
        .find(|r| r[1] == "0x00000059")
        .expect("0x59 listed");
    let rshmid: i32 = row[0].parse().unwrap();
    let wait = ipclab::wire::rshm::Request {
        reply_type: pid,
        serial: 1,
        pid,
        op: ipclab::wire::rshm::Op::Wait {
            rshmid,
            node: 0,
            seen: 0,
            timeout_ms: 1000,
        },
    };
    q.send(ipclab::rshm::RSHM_REQUEST_TYPE, &wait.encode(), true)
        .unwrap();
    assert!(
        wait_until(LIMIT, || q.stat().unwrap().messages == 0),
        "replies left in the queue: {:?}",
        q.stat()
    );
}

#[test]
fn threads_of_one_process_get_their_own_replies() {
    let mut c = Cluster::new("rshm-threads", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    let (pa, pb) = (c.ports[0], c.ports[1]);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let node = Node::open(pa).unwrap();
                let mut mine = Vec::new();
                for k in 0..5 {
                    let key = 0x600 + t * 16 + k;
                    let id = node.rshmget(key, 64 + t as usize).unwrap();
                    let att = node.rshmat(id).unwrap();
                    assert_eq!(att.len(), 64 + t as usize, "a reply for another thread");
                    att.write_string(&format!("t{t}k{k}")).unwrap();
                    node.rshm_changed(id).unwrap();
                    node.rshmdt(att).unwrap();
                    mine.push((key, id));
                }
                mine
            })
        })
        .collect();
    let all: Vec<(i32, i32)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let b = Node::open(pb).unwrap();
    for (key, id) in &all {
        assert_eq!(b.rshmget(*key, 0).unwrap(), *id);
        let att = b.rshmat(*id).unwrap();
        let t = (key - 0x600) / 16;
        let k = (key - 0x600) % 16;
        assert_eq!(att.read_string().unwrap(), format!("t{t}k{k}"));
    }
    let ids: std::collections::HashSet<_> = all.iter().map(|x| x.1).collect();
    assert_eq!(ids.len(), 40, "rshmids are unique");
}

/// The static library of this build: `cargo build` puts it in target/debug; `cargo test` alone
/// leaves it in target/debug/deps with a hash in its name (the newest is this build's).
fn static_lib() -> std::path::PathBuf {
    let top = common::bin_dir().join("libipclab.a");
    let deps = std::fs::read_dir(common::bin_dir().join("deps"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("libipclab-") && n.ends_with(".a")
        });
    let newest = std::iter::once(top)
        .chain(deps)
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.expect("libipclab.a (crate-type staticlib) was not built")
}

#[test]
fn c_client_p1_on_one_node_p2_on_another() {
    let mut c = Cluster::new("rshm-c", 2);
    let lib = static_lib();
    let exe = c.s.dir().join("client_c");
    let root = common::project_dir();
    let cc = Command::new("cc")
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join("lab/05-rshm/client.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output();
    let cc = match cc {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no C compiler ({e})");
            return;
        }
    };
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let run = |i: usize, args: &[&str]| {
        run_with_limit(
            Command::new(&exe)
                .args(args)
                .env("RSHM_PORT", c.ports[i].to_string()),
            LIMIT,
        )
    };
    let p1 = run(0, &["p1", "0x5a", "hello from C"]);
    assert!(
        p1.status.success(),
        "{}",
        String::from_utf8_lossy(&p1.stderr)
    );
    assert!(String::from_utf8_lossy(&p1.stdout).starts_with("p1: rshmid "));
    let p2 = run(1, &["p2", "0x5a"]);
    assert_eq!(String::from_utf8_lossy(&p2.stdout), "hello from C\n");
    // The Rust client reads what C wrote, and C reads what Rust writes.
    assert_eq!(c.ok(1, &["read", "0x5a"]), "hello from C\n");
    c.ok(1, &["write", "0x5a", "hello from Rust"]);
    assert_eq!(
        String::from_utf8_lossy(&run(0, &["p2", "0x5a"]).stdout),
        "hello from Rust\n"
    );
    let bad = run(0, &["p2", "0x5b"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .starts_with("client_c: rshmget: rshmget(key=0x0000005b): no segment"));
}

/// WAIT requests node `i`'s server has received so far (it runs with tracing on).
fn waits_asked(c: &Cluster, i: usize) -> usize {
    c.log(i)
        .lines()
        .filter(|l| l.contains("queue <- ") && l.contains(" WAIT "))
        .count()
}

#[test]
fn a_follower_sleeps_on_the_change_gate_and_asks_the_server_nothing() {
    let mut c = Cluster::new("rshm-gate", 2);
    c.start(0);
    c.start_with(1, &[("IPCLAB_TRACE", "1")]);
    c.connected(0);
    c.connected(1);
    let (a, b) = (
        Node::open(c.ports[0]).unwrap(),
        Node::open(c.ports[1]).unwrap(),
    );
    let id = a.rshmget(0x6a, 64).unwrap();
    let p1 = a.rshmat(id).unwrap();
    let p2 = b.rshmat(id).unwrap();

    // Changes made before the wait are not lost: each wait returns at once, and reads them.
    for n in 1..=20u8 {
        p1.write_at(0, &[n]).unwrap();
        a.rshm_changed(id).unwrap();
        assert!(b.rshm_wait_changed(id, LIMIT).unwrap());
        let mut got = [0u8];
        p2.read_at(0, &mut got).unwrap();
        assert_eq!(got[0], n);
    }
    // A wait that sleeps is woken by the change.
    let t = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let att = b.rshmat(id).unwrap();
            let woke = b.rshm_wait_changed(id, LIMIT).unwrap();
            b.rshmdt(att).unwrap();
            woke
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        p1.write_at(0, &[99]).unwrap();
        a.rshm_changed(id).unwrap();
        w.join().unwrap()
    });
    assert!(t);
    // This thread has not seen that change yet (what a thread has seen is its own).
    assert!(b.rshm_wait_changed(id, LIMIT).unwrap());
    // Not one of those waits was a request: they slept on the gate's semaphore.
    assert_eq!(waits_asked(&c, 1), 0, "{}", c.log(1));

    // No change: the gate's wait times out, and the server confirms it (one request).
    assert!(!b
        .rshm_wait_changed(id, std::time::Duration::from_millis(100))
        .unwrap());
    assert_eq!(waits_asked(&c, 1), 1, "{}", c.log(1));

    // Removal retires the gate: a sleeper wakes, asks the server, and hears EIDRM.
    let gone = std::thread::scope(|s| {
        let w = s.spawn(|| {
            // A new thread has seen nothing: its first wait returns at once.
            assert!(b.rshm_wait_changed(id, LIMIT).unwrap());
            b.rshm_wait_changed(id, LIMIT)
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        b.rshmdt(p2).unwrap();
        a.rshmdt(p1).unwrap();
        a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
        w.join().unwrap()
    });
    let e = gone.unwrap_err();
    assert_eq!(ipclab::sys::errno(&e), Some(libc::EIDRM), "{e}");
}

#[test]
fn a_killed_servers_gate_set_is_replaced_by_the_next_server_on_its_port() {
    let mut c = Cluster::new("rshm-gate-kill", 1);
    c.start(0);
    let key = ipclab::rshm::gate::gate_key(c.ports[0]);
    let gates = || ipclab::sys::ipcs::with_key(key).unwrap();
    // `start` returns once the queue exists; the gates are made a moment after it.
    assert!(wait_until(LIMIT, || !gates().is_empty()));
    let before = gates();
    assert_eq!(before.len(), 1, "one gate set per server: {before:?}");
    c.kill(0);
    // SIGKILL leaves the queue and the gates; the next server on the port, finding the alive
    // semaphore at 0, removes them (no manual step) and makes a fresh gate set.
    assert_eq!(gates(), before);
    c.start(0);
    assert!(wait_until(LIMIT, || {
        let after = gates();
        after.len() == 1 && after[0].id != before[0].id
    }));
    let after = gates();
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].id, before[0].id);
    c.stop(0);
    assert!(gates().is_empty(), "a clean shutdown removes the gates");
}

#[test]
fn a_wait_after_the_local_server_restarted_counts_from_its_new_run() {
    let mut c = Cluster::new("rshm-gate-restart", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    let a = Node::open(c.ports[0]).unwrap();
    let id = a.rshmget(0x6b, 64).unwrap();
    let p1 = a.rshmat(id).unwrap();
    let change = |n: u8| {
        p1.write_at(0, &[n]).unwrap();
        a.rshm_changed(id).unwrap();
    };
    let five = std::time::Duration::from_secs(5);
    // This thread sees a few changes on B: its count is B's count, a handful.
    let b = Node::open(c.ports[1]).unwrap();
    for n in 1..=5 {
        change(n);
        assert!(b.rshm_wait_changed(id, five).unwrap());
    }
    // B dies and comes back: its new run counts again from the contents it merges.
    c.kill(1);
    c.start(1);
    c.connected(1);
    c.connected(0);
    // The old count is not compared with the new run's: B's replica is news to this thread.
    let b = Node::open(c.ports[1]).unwrap();
    assert!(b.rshm_wait_changed(id, five).unwrap());
    // And the next change wakes it, rather than the sixth after it.
    change(6);
    assert!(b.rshm_wait_changed(id, five).unwrap());
    a.rshmdt(p1).unwrap();
    a.rshmctl(id, ipclab::rshm::IPC_RMID).unwrap();
}

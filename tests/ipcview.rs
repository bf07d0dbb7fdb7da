//! `ipcview` against the real programs of all five labs: each test starts one system's binaries
//! on its own keys and ports, then checks `ipcview --once` for exact decoded lines, with pids,
//! ids and counters that change from run to run replaced by `N` (see [`norm`]).
//!
//! Values that move (a waiter between two slices of its timed wait, say) are checked by running
//! `--once` again until every expected line is there, within a bound ([`until_lines`]). Also
//! pinned down: `--key` and `--port` narrow the view, unknown objects are raw rows, nothing is
//! changed by looking, the live view marks a vanished object `gone` (a decoded one and a raw
//! row) and gives the terminal back on SIGTERM, and usage errors.

mod common;

mod rshm_cluster;

use common::{cmd, run_with_limit, wait_until, Scratch};
use ipclab::dipc::keys::key_for_port;
use ipclab::params::SHMEM_PROJ_ID;
use ipclab::rshm::{gate::gate_key, queue_key};
use ipclab::sys::process::{kill, SIGTERM};
use ipclab::sys::sem::{semget, SemOp};
use ipclab::sys::shm::{shmget, Get};
use ipclab::sys::Key;
use rshm_cluster::Cluster;
use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// The words after which a number changes from run to run: pids, ids, counters.
const VARIABLE: [&str; 7] = [
    "pid ", "shmid ", "semid ", "msqid ", "rshmid ", "update ", "request ",
];

/// `line` with every number after one of [`VARIABLE`] replaced by `N`.
fn norm(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'outer: while !rest.is_empty() {
        for w in VARIABLE {
            if let Some(after) = rest.strip_prefix(w) {
                let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str(w);
                    out.push('N');
                    rest = &after[digits..];
                    continue 'outer;
                }
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `ipcview --once ARGS`: its stdout, after checking it exited 0 with nothing on stderr.
fn once(args: &[&str]) -> String {
    let out = run_with_limit(cmd("ipcview").arg("--once").args(args), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "ipcview: {err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "--once must print no escapes: {text:?}"
    );
    text
}

/// Runs `--once ARGS` until every line of `want` is one of its normalised lines; returns that
/// output. Fails the test with the last output after [`LIMIT`].
fn until_lines(args: &[&str], want: &[String]) -> String {
    let start = Instant::now();
    loop {
        let text = once(args);
        let lines: Vec<String> = text.lines().map(norm).collect();
        let missing: Vec<&String> = want.iter().filter(|w| !lines.contains(w)).collect();
        if missing.is_empty() {
            return text;
        }
        if start.elapsed() > LIMIT {
            panic!("missing {missing:#?}\nin:\n{}", lines.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn hex(k: Key) -> String {
    format!("0x{:08x}", k as u32)
}

/// Waits until the first line of the file at `path` is complete.
fn first_line(path: &std::path::Path) -> String {
    assert!(
        wait_until(LIMIT, || std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains('\n')),
        "no line in {}",
        path.display()
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn xfr_message_and_stream_writers_are_decoded() {
    let s = Scratch::new("view-xfr");
    let (msg_file, stream_file) = (s.key_file("msg"), s.key_file("stream"));
    let (mk, sk) = (s.key(&msg_file, 65), s.key(&stream_file, 65));
    let input = s.dir().join("input");
    std::fs::write(&input, b"abc").unwrap();
    s.spawn(
        cmd("shm_writer")
            .arg("-k")
            .arg(&msg_file)
            .args(["-t", "30", "hello"])
            .stderr(Stdio::null()),
    );
    s.spawn(
        cmd("shm_writer")
            .arg("-k")
            .arg(&stream_file)
            .args(["-t", "30", "--stream"])
            .stdin(File::open(&input).unwrap())
            .stderr(Stdio::null()),
    );
    let text = until_lines(
        &["--key", &hex(mk)],
        &lines(&[
            &format!("shm_writer/shm_reader key {}: shmid N, semid N", hex(mk)),
            "  message: room for 4096 bytes",
            "  writer pid N alive, reader none yet",
            "  message of 6 bytes, waiting for the reader",
            "  sem 0 WRITER     value 1     ncnt 0   zcnt 0   last pid N alive",
            "  sem 1 READER     value 0     ncnt 0   zcnt 0   last pid -",
            "  sem 2 CLAIMED    value 0     ncnt 0   zcnt 0   last pid -",
            "  sem 3 FULL       value 1     ncnt 0   zcnt 0   last pid N alive",
            "  sem 4 EMPTY      value 0     ncnt 1   zcnt 0   last pid -",
        ]),
    );
    // Narrowed to one key: the other writer is not shown.
    assert!(!text.contains(&hex(sk)), "{text}");
    // The stream: "abc" is block 0, the end of data block 1, both waiting in the ring.
    until_lines(
        &["--key", &hex(sk)],
        &lines(&[
            "  stream: 4 slots of 262144 bytes",
            "  ring [#][#][ ][ ]  2 full, 2 empty, 0 in use, last block 1",
            "  sem 3 FULL       value 2     ncnt 0   zcnt 0   last pid N alive",
            "  sem 4 EMPTY      value 2     ncnt 1   zcnt 0   last pid N alive",
        ]),
    );
    // A reader takes the message: the writer finishes and removes both objects.
    let o = run_with_limit(cmd("shm_reader").arg("-k").arg(&msg_file), LIMIT);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    assert!(wait_until(LIMIT, || !once(&["--key", &hex(mk)]).contains("shm_writer")));
}

#[test]
fn device_registers_command_slot_and_watchers_are_decoded() {
    let s = Scratch::new("view-dev");
    let key_file = s.key_file("key");
    let key = s.key(&key_file, 68);
    let out = s.dir().join("device.out");
    s.spawn(
        cmd("device")
            .arg("-k")
            .arg(&key_file)
            .args(["--channels", "2", "--ramp", "0"])
            .stdout(Stdio::null())
            .stderr(File::create(&out).unwrap()),
    );
    first_line(&out);
    let o = run_with_limit(
        cmd("device_client")
            .arg("-k")
            .arg(&key_file)
            .args(["set", "1", "2.5"]),
        LIMIT,
    );
    assert!(o.status.success());
    s.spawn(
        cmd("device_client")
            .arg("-k")
            .arg(&key_file)
            .args(["watch", "0", "--count", "100000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    until_lines(
        &["--key", &hex(key)],
        &lines(&[
            &format!("device key {}: shmid N, semid N", hex(key)),
            "  device pid N alive, status running, 2 channels, period 100 ms, ramp 0 units/s, update N",
            "  channel 0 setpoint 0.000 readback 0.000 ok",
            "  channel 1 setpoint 2.500 readback 2.500 ok",
            "  command slot free, last request N (set channel 1 to 2.5) from pid N dead",
            "  watchers waiting for an update: 1",
            "  sem 1 SLOT       value 1     ncnt 0   zcnt 0   last pid N dead",
            "  sem 2 CMD        value 0     ncnt 1   zcnt 0   last pid N alive",
            "  sem 4 UPDATE     value 1     ncnt 0   zcnt 1   last pid N alive",
        ]),
    );
}

#[test]
fn shmem_key_file_and_flock_holder_are_decoded() {
    let s = Scratch::new("view-shmem");
    let key_file = s.dir().join("store");
    let w = run_with_limit(
        cmd("shmem_tool")
            .arg("write")
            .arg(&key_file)
            .args(["--size", "64", "hello", "shared", "memory"]),
        LIMIT,
    );
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let key = s.key(&key_file, SHMEM_PROJ_ID);
    let title = format!("shmem key {}: shmid N", hex(key));
    let before = lines(&[
        &title,
        "  key file unknown (no lock holder, creator or last attacher has it open)",
        "  64 bytes, 0 attached, creator pid N dead",
        "  flock none",
        "  content: text \"hello shared memory\"",
    ]);
    until_lines(&["--key", &hex(key)], &before);
    let held = s.dir().join("hold.out");
    s.spawn(
        cmd("shmem_tool")
            .arg("hold")
            .arg(&key_file)
            .arg("--exclusive")
            .stdout(File::create(&held).unwrap()),
    );
    first_line(&held);
    until_lines(
        &["--key", &hex(key)],
        &lines(&[
            &title,
            &format!("  key file {}", key_file.display()),
            "  64 bytes, 1 attached, creator pid N dead",
            "  flock LOCK_EX held by pid N shmem_tool",
        ]),
    );
}

#[test]
fn dipc_mailboxes_and_their_locks_are_decoded_and_port_narrows() {
    let s = Scratch::new("view-dipc");
    let port = common::free_port(key_for_port);
    s.track_key(key_for_port(port));
    let p = port.to_string();
    let _pid = s.spawn(
        cmd("dipc")
            .args(["--foreground", "2", "1", &p, "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.dir().join("dipc.err")).unwrap()),
    );
    let line = common::first_line_of(&s.dir().join("dipc.err"));
    assert!(line.starts_with("dipc: serving"), "{line}");
    let o = run_with_limit(cmd("dipc_client").args([&p, "w", "1", "hello"]), LIMIT);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok 5\n");
    let free = "0 readers inside, turnstile open, 0 waiting at the turnstile, 0 writer waiting for the readers to leave";
    let text = until_lines(
        &["--port", &p],
        &lines(&[
            &format!(
                "dipc port {port} key {}: shmid N, semid N",
                hex(key_for_port(port))
            ),
            "  daemon pid N alive, 2 mailboxes of 1024 bytes, packets of 1024 bytes",
            &format!("  box 0: empty, {free}"),
            &format!("  box 1: 5 bytes, {free}"),
            "  sem 0 TURN0      value 1     ncnt 0   zcnt 0   last pid N alive",
            "  sem 1 READERS0   value 0     ncnt 0   zcnt 0   last pid N alive",
            "  sem 2 TURN1      value 1     ncnt 0   zcnt 0   last pid N alive",
            "  sem 3 READERS1   value 0     ncnt 0   zcnt 0   last pid N alive",
        ]),
    );
    // --port shows that server alone: one section, and no raw rows.
    assert_eq!(text.matches("\n\n").count(), 1, "{text}");
    assert!(!text.contains("other System V objects"), "{text}");

    // The turnstile at work. The test plays a reader inside box 1 (READERS1 += 1, as
    // RwLocks::read does); a writer then takes the turnstile and waits for that reader to
    // leave, and a reader arriving after it queues at the closed turnstile.
    let set = semget(key_for_port(port), 0, Get::Open).unwrap();
    set.op(&[SemOp::post(3)]).unwrap();
    let writer = s.spawn(
        cmd("dipc_client")
            .args([&p, "w", "1", "bye"])
            .stdout(Stdio::null()),
    );
    until_lines(
        &["--port", &p],
        &lines(&["  box 1: 5 bytes, 1 readers inside, turnstile held by a writer, 0 waiting at the turnstile, 1 writer waiting for the readers to leave"]),
    );
    let reader = s.spawn(
        cmd("dipc_client")
            .args([&p, "r", "1"])
            .stdout(Stdio::piped()),
    );
    until_lines(
        &["--port", &p],
        &lines(&[
            "  box 1: 5 bytes, 1 readers inside, turnstile held by a writer, 1 waiting at the turnstile, 1 writer waiting for the readers to leave",
            "  sem 2 TURN1      value 0     ncnt 1   zcnt 0   last pid N alive",
            "  sem 3 READERS1   value 1     ncnt 0   zcnt 1   last pid N alive",
        ]),
    );
    // Our reader leaves: the writer goes first, then the reader that queued reads its message.
    set.op(&[SemOp::wait(3)]).unwrap();
    let mut w = s.take(writer);
    assert!(wait_until(LIMIT, || w.try_wait().unwrap().is_some()));
    let r = common::finish(s.take(reader), LIMIT);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "bye\n");
    until_lines(
        &["--port", &p],
        &lines(&[&format!("  box 1: 3 bytes, {free}")]),
    );
}

#[test]
fn rshm_nodes_are_asked_for_their_tables() {
    let mut c = Cluster::new("view-rshm", 2);
    c.start(0);
    c.start(1);
    c.connected(0);
    c.connected(1);
    c.ok(0, &["write", "0x51", "hello"]);
    let [a, b] = [c.ports[0], c.ports[1]];
    let node = |me: u16, peer: u16| {
        lines(&[
            &format!(
                "rshm node 127.0.0.1:{me} queue key {}: msqid N, gate semid N",
                hex(queue_key(me))
            ),
            "  server pid N alive, queue 0 messages",
            &format!("  peer 127.0.0.1:{peer} up"),
            "  segment rshmid N key 0x00000051 size 4096 version 1 attaches 0 replica shmid N",
        ])
    };
    let text = until_lines(&["--port", &a.to_string()], &node(a, b));
    assert!(!text.contains(&format!(":{b} queue")), "{text}");
    // Both nodes; with key 0 too, which would list any keyless segment nobody claims.
    let mut both = node(a, b);
    both.extend(node(b, a));
    let all = until_lines(
        &[
            "--port",
            &a.to_string(),
            "--port",
            &b.to_string(),
            "--key",
            "0",
        ],
        &both,
    );
    // The replicas (no key) are the nodes', not raw rows.
    let replicas: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split("replica shmid ").nth(1))
        .collect();
    assert_eq!(replicas.len(), 2, "{all}");
    for id in replicas {
        assert!(
            !all.contains(&format!("shm key 0x00000000 shmid {id} ")),
            "{all}"
        );
    }
    // The gate sets are the nodes' too.
    for p in [a, b] {
        assert!(!all.contains(&hex(gate_key(p))), "{all}");
    }
}

#[test]
fn unknown_objects_are_raw_rows_and_looking_changes_nothing() {
    let s = Scratch::new("view-raw");
    let f = s.key_file("other");
    let key = s.key(&f, b'Z');
    let set = semget(key, 3, Get::Create(0o640)).unwrap();
    let seg = shmget(key, 100, Get::Create(0o600)).unwrap();
    set.set_all(&[1, 2, 3]).unwrap();
    let stat_before = (set.stat().unwrap(), seg.stat().unwrap().attaches);
    let text = once(&["--key", &hex(key)]);
    let got: Vec<String> = text.lines().map(norm).collect();
    assert_eq!(
        got,
        lines(&[
            "other System V objects (ipcs)",
            &format!(
                "  shm key {} shmid N uid 0 mode 600 size 100 attaches 0 creator pid N",
                hex(key)
            ),
            &format!("  sem key {} semid N uid 0 mode 640 nsems 3", hex(key)),
            "",
        ]),
        "{text}"
    );
    // Nothing changed: the values, the last semop time, the attach count.
    assert_eq!(set.get_all().unwrap(), vec![1, 2, 3]);
    assert_eq!(
        (set.stat().unwrap(), seg.stat().unwrap().attaches),
        stat_before
    );
    // A key with nothing on it shows nothing.
    assert_eq!(
        once(&["--key", "0x7fffff01"]),
        "no System V objects to show\n"
    );
}

#[test]
fn hostile_headers_are_raw_rows_and_a_queue_without_server_is_asked_once() {
    use ipclab::sys::msg::msgget;
    use ipclab::sys::shm::Access;
    use ipclab::wire::{dipc::SegmentHeader, xfr::Header};
    let s = Scratch::new("view-hostile");
    let f = s.key_file("h");
    // An xfr header that describes 3 GB of slot table, in a 4 KiB segment; a dipc header with
    // four billion mailboxes.
    let (xk, dk) = (s.key(&f, 65), s.key(&f, 66));
    let xs = shmget(xk, 4096, Get::Create(0o600)).unwrap();
    let bogus = Header::stream(1, 1, 400_000_000, 4096).encode();
    xs.attach(Access::ReadWrite)
        .unwrap()
        .write_at(0, &bogus)
        .unwrap();
    let ds = shmget(dk, 4096, Get::Create(0o600)).unwrap();
    let many = SegmentHeader {
        port: 1,
        mailboxes: u32::MAX,
        creator_pid: 1,
        mailbox_size: 8,
        packet_size: 8,
    }
    .encode();
    ds.attach(Access::ReadWrite)
        .unwrap()
        .write_at(0, &many)
        .unwrap();
    let text = once(&["--key", &hex(xk), "--key", &hex(dk)]);
    let got: Vec<String> = text.lines().map(norm).collect();
    assert_eq!(got.len(), 4, "{text}");
    assert_eq!(got[0], "other System V objects (ipcs)");
    assert!(
        got[1].starts_with(&format!("  shm key {} shmid N", hex(xk))),
        "{text}"
    );
    assert!(
        got[2].starts_with(&format!("  shm key {} shmid N", hex(dk))),
        "{text}"
    );

    // A queue on an rshm key with no server behind it: asked once (one reply timeout), and
    // then, its last sender being a dead ipcview, not again.
    let port = common::free_port(queue_key);
    s.track_key(queue_key(port));
    msgget(queue_key(port), Get::Create(0o600)).unwrap();
    let p = port.to_string();
    let first = once(&["--port", &p]);
    assert!(first.contains("  ls failed: "), "{first}");
    let t = Instant::now();
    let again = until_lines(
        &["--port", &p],
        &lines(&[
            &format!(
                "rshm node port {port} queue key {}: msqid N, gate semid -",
                hex(queue_key(port))
            ),
            "  queue 1 messages",
            "  last sender pid N dead: server not asked",
        ]),
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{again}");
}

#[test]
fn another_user_sees_what_it_may_not_read_as_raw_rows() {
    use std::os::unix::process::CommandExt;
    // Running a child as another uid needs root; /proc/self/status says who we are.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        eprintln!(
            "skipped: another_user_sees_what_it_may_not_read_as_raw_rows: not root (euid {euid})"
        );
        return;
    }
    let s = Scratch::new("view-uid");
    let f = s.key_file("u");
    let key = s.key(&f, 65);
    let set = semget(key, 5, Get::Create(0o600)).unwrap();
    let out = run_with_limit(
        cmd("ipcview")
            .args(["--once", "--key", &hex(key)])
            .uid(64_123)
            .gid(64_123),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "other System V objects (ipcs)\n  sem key {} id {} uid 0: semctl(semid={}, IPC_STAT): Permission denied (os error 13)\n\n",
            hex(key),
            set.0,
            set.0
        )
    );
}

#[test]
fn the_live_view_marks_a_vanished_device_gone_and_restores_the_terminal() {
    let s = Scratch::new("view-live");
    let key_file = s.key_file("key");
    let key = s.key(&key_file, 68);
    let out = s.dir().join("device.out");
    let dev = s.spawn(
        cmd("device")
            .arg("-k")
            .arg(&key_file)
            .stdout(Stdio::null())
            .stderr(File::create(&out).unwrap()),
    );
    first_line(&out);
    let screen = s.dir().join("screen");
    let view = s.spawn(
        cmd("ipcview")
            .args(["--interval", "0.05", "--key", &hex(key)])
            .stdin(Stdio::null())
            .stdout(File::create(&screen).unwrap()),
    );
    let read = || std::fs::read_to_string(&screen).unwrap_or_default();
    let title = format!("device key {}: shmid ", hex(key));
    assert!(wait_until(LIMIT, || read().contains(&title)), "{}", read());
    // SIGTERM: the device removes its objects; the next frames say so.
    kill(dev as i32, SIGTERM).unwrap();
    assert!(
        wait_until(LIMIT, || read().contains(": gone")),
        "{}",
        read()
    );
    // And SIGTERM ends the view with exit 0, the cursor and the shell's screen given back.
    kill(view as i32, SIGTERM).unwrap();
    let mut child = s.take(view);
    assert!(wait_until(LIMIT, || child.try_wait().unwrap().is_some()));
    assert!(child.wait().unwrap().success());
    let text = read();
    assert!(text.starts_with("\x1b[?1049h\x1b[?25l\x1b[H"), "{text:?}");
    assert!(text.ends_with("\x1b[?25h\x1b[?1049l"), "{text:?}");
    let gone_line = text
        .split("\x1b[K\n")
        .find(|l| l.contains(": gone"))
        .unwrap();
    assert_eq!(
        norm(gone_line),
        format!(
            "\x1b[2mdevice key {}: shmid N, semid N: gone\x1b[0m",
            hex(key)
        )
    );
    // --frames stops by itself.
    let o = run_with_limit(
        cmd("ipcview").args(["--frames", "2", "--interval", "0.01", "--key", "0x7fffff02"]),
        LIMIT,
    );
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).matches("\x1b[H").count(),
        2
    );
}

#[test]
fn the_live_view_marks_a_vanished_raw_row_gone_and_keeps_the_others() {
    use ipclab::sys::Removable;
    // Objects of no ipclab program: a segment and a semaphore set under one key of the test's
    // own. The segment is removed while the live view runs; the set stays.
    let s = Scratch::new("view-live-raw");
    let f = s.key_file("raw");
    let key = s.key(&f, b'R');
    let seg = shmget(key, 100, Get::Create(0o600)).unwrap();
    let set = semget(key, 2, Get::Create(0o600)).unwrap();
    let screen = s.dir().join("screen");
    let view = s.spawn(
        cmd("ipcview")
            .args(["--interval", "0.05", "--key", &hex(key)])
            .stdin(Stdio::null())
            .stdout(File::create(&screen).unwrap()),
    );
    let read = || std::fs::read_to_string(&screen).unwrap_or_default();
    let row = format!("  shm key {} shmid {} uid ", hex(key), seg.0);
    assert!(wait_until(LIMIT, || read().contains(&row)), "{}", read());
    seg.remove().unwrap();
    let gone = format!("\x1b[2m  shm key {} shmid {}: gone\x1b[0m", hex(key), seg.0);
    assert!(wait_until(LIMIT, || read().contains(&gone)), "{}", read());
    kill(view as i32, SIGTERM).unwrap();
    let mut child = s.take(view);
    assert!(wait_until(LIMIT, || child.try_wait().unwrap().is_some()));
    assert!(child.wait().unwrap().success());
    // The last frame: the set still a live row, then the segment gone, under the raw title.
    let text = read();
    let last = text.rsplit("\x1b[H").next().unwrap();
    let rows: Vec<String> = last
        .split("\x1b[K\n")
        .skip_while(|l| !l.contains("other System V objects"))
        .map(norm)
        .collect();
    assert_eq!(
        rows[..3],
        [
            "\x1b[1mother System V objects (ipcs)\x1b[0m".to_string(),
            format!("  sem key {} semid N uid 0 mode 600 nsems 2", hex(key)),
            format!("\x1b[2m  shm key {} shmid N: gone\x1b[0m", hex(key)),
        ],
        "{last:?}"
    );
    set.remove().unwrap();
}

#[test]
fn q_on_a_terminal_quits_and_gives_the_terminal_back_as_it_was() {
    use std::io::Write;
    // A real terminal: util-linux `script` runs the shell line on a pseudo-terminal and copies
    // our pipe to it, so `q` arrives as a key press.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: q_on_a_terminal_quits...: no `script` (util-linux) here");
        return;
    }
    let line = format!(
        "stty -g; {} --interval 0.05 --key 0x7fffff04 >/dev/null; echo rc=$?; stty -g",
        common::bin("ipcview").display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfc", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"q").unwrap();
    drop(stdin);
    let out = common::finish(child, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert_eq!(lines[1], "rc=0", "{text:?}");
    assert_eq!(lines[0], lines[2], "the terminal modes changed: {text:?}");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    for bad in [
        &["--bogus"][..],
        &["--interval", "soon"],
        &["--interval", "0"],
        &["--key", "zz"],
        &["--port", "0"],
        &["--frames", "0"],
        &["extra"],
    ] {
        let o = run_with_limit(cmd("ipcview").args(bad), LIMIT);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with("ipcview: "),
            "{bad:?}"
        );
    }
    let o = run_with_limit(cmd("ipcview").arg("--help"), LIMIT);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Usage: ipcview"));
}

#[test]
fn norm_replaces_only_the_variable_numbers() {
    assert_eq!(
        norm("  writer pid 123 alive, shmid 4, semid 5, channel 0 setpoint 2.000"),
        "  writer pid N alive, shmid N, semid N, channel 0 setpoint 2.000"
    );
    assert_eq!(norm("last pid -"), "last pid -");
}

//! The shmem library (seed 004) on real segments and real flocks: in threads of this process,
//! and in separate processes through `shmem_tool`.
//!
//! Every test uses its own key files in a `Scratch` directory, whose guard kills the children
//! and removes every segment with the test's keys, also when the test fails.

mod common;

use common::{cmd, run_with_limit, wait_until, Scratch};
use ipclab::params::SHMEM_PROJ_ID;
use ipclab::shmem::hammer::{self, Hammer};
use ipclab::shmem::{record, LockKind, Shmem};
use ipclab::sys::{ipcs, process, Owner};
use ipclab::wire::shmem::RECORD_SIZE;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The segment size of the torn-read tests. Big on purpose: a longer copy overlaps a
/// concurrent write more often, so a reader or writer that skipped the lock would tear
/// hundreds of reads in a run (a few at 4 KiB; tried by removing the lock from `read`).
const TORN_SIZE: usize = 64 * 1024;

/// Reads and writes per thread in the torn-read tests.
const TORN_COUNT: u64 = 2000;

/// A key file in the scratch directory, with its key tracked for cleanup.
fn key_file(s: &Scratch, name: &str) -> PathBuf {
    let p = s.key_file(name);
    s.key(&p, SHMEM_PROJ_ID);
    p
}

fn tool(args: &[&str]) -> Output {
    run_with_limit(cmd("shmem_tool").args(args), LIMIT)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `shmem_tool` child whose output we collect; killed and reaped on drop if still there.
struct Running(Option<Child>);

impl Running {
    fn start(args: &[&str]) -> Running {
        let child = cmd("shmem_tool")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmem_tool");
        Running(Some(child))
    }

    fn has_exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_some())
    }

    /// Waits for it (a minute at most) and returns its output.
    fn finish(mut self) -> Output {
        common::finish(self.0.take().unwrap(), Duration::from_secs(60))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_round_trip_between_two_processes() {
    let s = Scratch::new("shmem-rt");
    let k = key_file(&s, "k");
    let k = path_str(&k);
    let w = tool(&["write", k, "--size", "16", "hello", "world"]);
    assert!(w.status.success(), "{}", stderr(&w));
    assert_eq!(w.stdout, b"");
    let r = tool(&["read", k]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(r.stdout, b"hello world\0\0\0\0\0");
    // A shorter write replaces only its own bytes, as the seed's memcpy does.
    assert!(tool(&["write", k, "HELP"]).status.success());
    assert_eq!(tool(&["read", k, "--text"]).stdout, b"HELPo world\n");
    // Data from stdin, all 16 bytes.
    let mut c = cmd("shmem_tool");
    c.args(["write", k]).stdin(Stdio::piped());
    let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
    io::Write::write_all(&mut child.stdin.take().unwrap(), b"0123456789abcdef").unwrap();
    assert!(common::finish(child, LIMIT).status.success());
    assert_eq!(tool(&["read", k]).stdout, b"0123456789abcdef");
    assert!(tool(&["delete", k]).status.success());
    s.assert_no_leftovers();
}

#[test]
fn the_library_follows_the_seeds_sizes() {
    let s = Scratch::new("shmem-sizes");
    let k = key_file(&s, "k");
    let shm = Shmem::open(&k, 64).unwrap();
    let _owner = Owner::new(shm.id());
    assert_eq!(shm.size(), 64);
    // Reading needs a buffer at least the segment's size; a bigger one is fine.
    let e = shm.read(&mut [0u8; 63]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        "shmem read: a 63-byte buffer cannot hold the 64-byte segment"
    );
    let mut big = [7u8; 100];
    assert_eq!(shm.read(&mut big).unwrap(), 64);
    assert_eq!(&big[..64], &[0u8; 64]);
    assert_eq!(&big[64..], &[7u8; 36]);
    // Writing takes at most the segment's size.
    let e = shm.write(&[1u8; 65]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        "shmem write: 65 bytes do not fit the 64-byte segment"
    );
    shm.write(&[2u8; 64]).unwrap();
    shm.write(&[]).unwrap();
    shm.read(&mut big).unwrap();
    assert_eq!(&big[..64], &[2u8; 64]);
}

#[test]
fn size_mismatches_and_impossible_sizes_are_clear_errors() {
    let s = Scratch::new("shmem-mismatch");
    let k = key_file(&s, "k");
    let shm = Shmem::open(&k, 64).unwrap();
    let _owner = Owner::new(shm.id());
    let e = Shmem::open(&k, 128).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        e.to_string(),
        format!(
            "shmem open {}: the segment of key 0x{:08x} has 64 bytes, not 128",
            k.display(),
            shm.key()
        )
    );
    // Smaller does not match either (shmget alone would accept it silently).
    assert!(Shmem::open(&k, 32).is_err());
    let e = Shmem::open(&k, 0).unwrap_err();
    assert!(
        e.to_string().ends_with("size must be at least 1 byte"),
        "{e}"
    );
    let other = key_file(&s, "huge");
    let e = Shmem::open(&other, usize::MAX / 2).unwrap_err();
    assert!(
        e.to_string()
            .contains("beyond the kernel's shared memory limits"),
        "{e}"
    );
    // The same through the tool: exit 1, `shmem_tool: what: why`.
    let o = tool(&["read", path_str(&k), "--size", "128"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "shmem_tool: shmem open {}: the segment of key 0x{:08x} has 64 bytes, not 128\n",
            k.display(),
            shm.key()
        )
    );
    let o = tool(&["write", path_str(&k), &"x".repeat(65)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "shmem_tool: shmem write: 65 bytes do not fit the 64-byte segment\n"
    );
}

#[test]
fn opening_without_a_size_never_creates() {
    let s = Scratch::new("shmem-existing");
    let missing = s.dir().join("no-such-file");
    let e = Shmem::open_existing(&missing).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(!missing.exists());
    let k = key_file(&s, "k");
    let e = Shmem::open_existing(&k).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let o = tool(&["read", path_str(&k)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "shmem_tool: shmem open {}: no segment with key 0x",
            k.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(s.leftovers().is_empty());
    // `open` with a size creates the key file too.
    let fresh = s.dir().join("fresh");
    let shm = Shmem::open(&fresh, 8).unwrap();
    s.key(&fresh, SHMEM_PROJ_ID);
    assert!(fresh.exists() && shm.created());
    shm.delete().unwrap();
}

#[test]
fn exactly_one_of_racing_openers_creates_the_segment() {
    let s = Scratch::new("shmem-race");
    // Threads: eight openers released at once, five rounds on fresh key files.
    for round in 0..5 {
        let k = key_file(&s, &format!("t{round}"));
        let barrier = Barrier::new(8);
        let opened: Vec<Shmem> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        Shmem::open(&k, 4096).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(opened.iter().filter(|m| m.created()).count(), 1);
        assert!(opened.iter().all(|m| m.id() == opened[0].id()));
        let _owner = Owner::new(opened[0].id());
    }
    // Processes: six shmem_tools started together, each reporting created=yes or no.
    for round in 0..3 {
        let k = key_file(&s, &format!("p{round}"));
        let children: Vec<Running> = (0..6)
            .map(|_| Running::start(&["stat", path_str(&k), "--size", "4096"]))
            .collect();
        let mut lines = Vec::new();
        for c in children {
            let out = c.finish();
            assert!(out.status.success(), "{}", stderr(&out));
            lines.push(stdout(&out));
        }
        assert_eq!(
            lines.iter().filter(|l| l.contains("created=yes")).count(),
            1,
            "{lines:?}"
        );
        let shmid = |l: &str| l.split_whitespace().nth(1).unwrap().to_string();
        assert!(
            lines.iter().all(|l| shmid(l) == shmid(&lines[0])),
            "{lines:?}"
        );
        assert!(tool(&["delete", path_str(&k)]).status.success());
    }
    s.assert_no_leftovers();
}

#[test]
fn threads_of_one_process_exclude_each_other() {
    // The seed's trap: with one descriptor per process, a second thread's LOCK_EX succeeds at
    // once. Here every holder has its own open file description.
    let s = Scratch::new("shmem-threads");
    let k = key_file(&s, "k");
    let shm = Shmem::open(&k, 64).unwrap();
    let _owner = Owner::new(shm.id());
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let wrote = AtomicBool::new(false);
    let (shm, wrote) = (&shm, &wrote);
    std::thread::scope(|sc| {
        sc.spawn(move || {
            shm.locked(LockKind::Exclusive, || {
                held_tx.send(()).unwrap();
                release_rx.recv_timeout(LIMIT).unwrap();
                // Still ours: the other thread's write has not happened.
                assert!(!wrote.load(Ordering::SeqCst));
            })
            .unwrap();
        });
        held_rx.recv_timeout(LIMIT).unwrap();
        sc.spawn(|| {
            shm.write(b"second").unwrap();
            wrote.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !wrote.load(Ordering::SeqCst),
            "a write got past a held LOCK_EX"
        );
        release_tx.send(()).unwrap();
    });
    assert!(wrote.load(Ordering::SeqCst));

    // Shared holders do coexist: two threads inside LOCK_SH at the same time.
    let inside = AtomicUsize::new(0);
    let both = Barrier::new(2);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                shm.locked(LockKind::Shared, || {
                    inside.fetch_add(1, Ordering::SeqCst);
                    both.wait();
                })
                .unwrap()
            });
        }
    });
    assert_eq!(inside.load(Ordering::SeqCst), 2);
}

#[test]
fn a_holder_killed_by_sigkill_does_not_block_the_others() {
    let s = Scratch::new("shmem-kill");
    let k = key_file(&s, "k");
    let k = path_str(&k);
    assert!(tool(&["write", k, "--size", "32", "before"])
        .status
        .success());
    for (kind, blocked) in [("--exclusive", "read"), ("--shared", "write")] {
        let out = s.dir().join(format!("hold{kind}.out"));
        let holder = s.spawn(
            cmd("shmem_tool")
                .args(["hold", k, kind])
                .stdout(std::fs::File::create(&out).unwrap()),
        );
        assert!(
            wait_until(LIMIT, || std::fs::read_to_string(&out)
                .is_ok_and(|t| t.starts_with("holding LOCK_"))),
            "the holder never reported holding the lock"
        );
        let mut args = vec![blocked, k];
        if blocked == "write" {
            args.push("after");
        }
        let mut waiter = Running::start(&args);
        // The lock is really held: the other side waits.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.has_exited(), "{blocked} did not wait");
        process::kill(holder as i32, process::SIGKILL).unwrap();
        let _ = s.take(holder).wait();
        assert!(
            wait_until(LIMIT, || waiter.has_exited()),
            "{blocked} still blocked after its holder was killed"
        );
        let o = waiter.finish();
        assert!(o.status.success(), "{}", stderr(&o));
        if blocked == "read" {
            let mut want = b"before".to_vec();
            want.resize(32, 0);
            assert_eq!(o.stdout, want);
        }
    }
    assert_eq!(tool(&["read", k, "--text"]).stdout, b"aftere\n");
    assert!(tool(&["delete", k]).status.success());
    s.assert_no_leftovers();
}

#[test]
fn no_read_is_ever_torn_between_threads() {
    let s = Scratch::new("shmem-torn-t");
    let k = key_file(&s, "k");
    let shm = Shmem::open(&k, TORN_SIZE).unwrap();
    let _owner = Owner::new(shm.id());
    let report = hammer::run(
        &shm,
        Hammer {
            writers: 2,
            readers: 3,
            count: TORN_COUNT,
            first_writer: 1,
        },
    )
    .unwrap();
    assert_eq!(report.torn, 0, "{:?}", report.first_torn);
    assert!(report.reads >= 3 * TORN_COUNT && report.writes >= 2 * TORN_COUNT);
    // Each reader goes on until it has seen a write (module header of shmem::hammer).
    assert!(
        report.changes >= 3,
        "the readers never saw a writer: {report:?}"
    );
}

#[test]
fn no_read_is_ever_torn_between_processes() {
    let s = Scratch::new("shmem-torn-p");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    // Create it first, so that all processes agree on the size.
    let size = TORN_SIZE.to_string();
    let count = TORN_COUNT.to_string();
    assert!(tool(&["stat", kp, "--size", &size]).status.success());
    // Three processes, each a writer and a reader thread with its own writer number, plus
    // two reader threads here: patterns from three processes cross in every reader.
    let children: Vec<Running> = (0..3)
        .map(|i| {
            let first = (10 * (i + 1)).to_string();
            Running::start(&[
                "hammer",
                kp,
                "--writers",
                "1",
                "--readers",
                "1",
                "--count",
                &count,
                "--first-writer",
                &first,
            ])
        })
        .collect();
    let shm = Shmem::open_existing(&k).unwrap();
    let here = hammer::run(
        &shm,
        Hammer {
            writers: 0,
            readers: 2,
            count: TORN_COUNT,
            first_writer: 0,
        },
    )
    .unwrap();
    assert_eq!(here.torn, 0, "{:?}", here.first_torn);
    let mut changes = here.changes;
    for c in children {
        let o = c.finish();
        assert!(o.status.success(), "{}", stderr(&o));
        let line = stdout(&o);
        let field = |name: &str| -> u64 {
            let f = line.split_whitespace().find_map(|w| w.strip_prefix(name));
            f.and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        assert_eq!(field("torn="), 0, "{line}");
        assert!(
            field("reads=") >= TORN_COUNT && field("writes=") >= TORN_COUNT,
            "{line}"
        );
        assert!(field("changes=") >= 1, "{line}");
        changes += field("changes=");
    }
    assert!(changes > 0, "no reader ever saw a write");
    shm.delete().unwrap();
    s.assert_no_leftovers();
}

#[test]
fn update_loses_no_increment() {
    let s = Scratch::new("shmem-update");
    let k = key_file(&s, "k");
    let shm = Shmem::open(&k, 8).unwrap();
    let _owner = Owner::new(shm.id());
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..300 {
                    shm.update(|b| {
                        let n = u64::from_le_bytes(b[..8].try_into().unwrap());
                        b[..8].copy_from_slice(&(n + 1).to_le_bytes());
                    })
                    .unwrap();
                }
            });
        }
    });
    let mut b = [0u8; 8];
    shm.read(&mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 1200);
}

#[test]
fn delete_removes_the_segment_and_close_detaches() {
    let s = Scratch::new("shmem-delete");
    let k = key_file(&s, "k");
    let a = Shmem::open(&k, 64).unwrap();
    let b = Shmem::open(&k, 64).unwrap();
    let c = Shmem::open_existing(&k).unwrap();
    assert!(a.created() && !b.created() && !c.created());
    assert_eq!(a.stat().unwrap().attaches, 3);
    c.close().unwrap();
    assert_eq!(a.stat().unwrap().attaches, 2);
    b.write(b"old").unwrap();
    let (key, old) = (a.key(), a.id());
    let twin = Shmem::open_existing(&k).unwrap();
    a.delete().unwrap();
    let e = twin.delete().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().ends_with("was already deleted"), "{e}");
    // Gone from the key at once; `b` still maps the old memory until it detaches.
    assert!(ipcs::with_key(key).unwrap().is_empty());
    assert!(b.is_deleted());
    let mut buf = [0u8; 64];
    b.read(&mut buf).unwrap();
    assert_eq!(&buf[..3], b"old");
    // A new open of the path makes a new, zeroed segment.
    let fresh = Shmem::open(&k, 64).unwrap();
    assert!(fresh.created() && fresh.id() != old);
    fresh.read(&mut buf).unwrap();
    assert_eq!(buf, [0u8; 64]);
    b.close().unwrap();
    assert!(
        old.stat().is_err(),
        "the old segment outlived its last attachment"
    );
    // Through the tool: delete prints what it removed; a second delete is a clear error.
    let o = tool(&["delete", path_str(&k)]);
    assert_eq!(
        stdout(&o),
        format!("deleted key=0x{key:08x} shmid={}\n", fresh.id().0)
    );
    drop(fresh);
    let o = tool(&["delete", path_str(&k)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no segment with key"), "{}", stderr(&o));
    s.assert_no_leftovers();
}

#[test]
fn the_record_is_published_and_read_whole() {
    let s = Scratch::new("shmem-record");
    let k = key_file(&s, "k");
    let server = Shmem::open(&k, RECORD_SIZE).unwrap();
    let _owner = Owner::new(server.id());
    let client = Shmem::open_existing(&k).unwrap();
    assert_eq!(record::read(&client).unwrap(), None);
    let sent = record::publish(&server, 7, "tick 7").unwrap();
    let got = record::read(&client).unwrap().unwrap();
    assert_eq!(got, sent);
    assert_eq!(got.pid, std::process::id());
    client.write(&[0xff; 8]).unwrap();
    let e = record::read(&client).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(record::publish(&server, 8, &"x".repeat(65)).is_err());
}

#[test]
fn the_example_server_and_client_talk_when_built() {
    // `cargo test` builds the examples; `cargo test --test shmem` does not. Run them if there.
    let dir = common::bin_dir().join("examples");
    let (server, client) = (dir.join("shmem_server"), dir.join("shmem_client"));
    if !server.exists() || !client.exists() {
        eprintln!("examples not built; skipping (run `cargo build --examples`)");
        return;
    }
    let s = Scratch::new("shmem-example");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        Command::new(&server)
            .args([kp, "--interval", "100", "--count", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(wait_until(LIMIT, || Shmem::open_existing(&k).is_ok()));
    let o = run_with_limit(
        Command::new(&client).args([kp, "--interval", "50", "--count", "4"]),
        LIMIT,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("seq=") && l.contains(&format!("pid={srv} "))),
        "{text}"
    );
    // SIGTERM: the server removes its segment and exits 0.
    process::kill(srv as i32, process::SIGTERM).unwrap();
    let st = common::finish(s.take(srv), LIMIT).status;
    assert!(st.success());
    s.assert_no_leftovers();
}

#[test]
fn ipcrm_under_the_example_server_is_named_by_server_and_client() {
    let dir = common::bin_dir().join("examples");
    let (server, client) = (dir.join("shmem_server"), dir.join("shmem_client"));
    if !server.exists() || !client.exists() {
        eprintln!("examples not built; skipping (run `cargo build --examples`)");
        return;
    }
    let s = Scratch::new("shmem-ipcrm");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        Command::new(&server)
            .args([kp, "--interval", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    assert!(wait_until(LIMIT, || Shmem::open_existing(&k).is_ok()));
    let shm = Shmem::open_existing(&k).unwrap();
    let id = shm.id().0;
    let cli = s.spawn(
        Command::new(&client)
            .args([kp, "--interval", "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(wait_until(LIMIT, || shm
        .stat()
        .is_ok_and(|st| st.attaches == 3)));
    drop(shm);
    let o = run_with_limit(Command::new("ipcrm").args(["-m", &id.to_string()]), LIMIT);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = common::finish(s.take(cli), LIMIT);
    assert_eq!(c.status.code(), Some(1));
    assert!(
        stderr(&c).starts_with(&format!(
            "shmem_client: the segment (shmid {id}) was removed by someone else (ipcrm?); its server (pid {srv})"
        )),
        "{}",
        stderr(&c)
    );
    assert!(!stdout(&c).contains("the server removed"), "{}", stdout(&c));
    let o = common::finish(s.take(srv), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with(&format!(
            "shmem_server: the segment (shmid {id}) was removed by someone else (ipcrm?); stopping\n"
        )),
        "{}",
        stderr(&o)
    );
    s.assert_no_leftovers();
}

#[test]
fn counts_over_their_limits_are_usage_errors() {
    use ipclab::params::{SHMEM_HAMMER_MAX_COUNT, SHMEM_HAMMER_MAX_THREADS};
    let s = Scratch::new("shmem-limits");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let over = (SHMEM_HAMMER_MAX_THREADS + 1).to_string();
    let big = (SHMEM_HAMMER_MAX_COUNT + 1).to_string();
    for (args, want) in [
        (
            vec!["hammer", kp, "--size", "64", "--writers", "100000"],
            format!("shmem_tool: --writers 100000: at most {SHMEM_HAMMER_MAX_THREADS}\n"),
        ),
        (
            vec!["hammer", kp, "--size", "64", "--readers", &over],
            format!("shmem_tool: --readers {over}: at most {SHMEM_HAMMER_MAX_THREADS}\n"),
        ),
        (
            vec!["hammer", kp, "--size", "64", "--count", &big],
            format!("shmem_tool: --count {big}: at most {SHMEM_HAMMER_MAX_COUNT}\n"),
        ),
        (
            vec![
                "hammer",
                kp,
                "--size",
                "64",
                "--writers",
                "0",
                "--readers",
                "0",
            ],
            "shmem_tool: --writers and --readers: at least one thread\n".to_string(),
        ),
    ] {
        let o = tool(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with(&want), "{args:?}: {}", stderr(&o));
    }
    // Nothing was created: the usage error comes before the segment.
    s.assert_no_leftovers();
}

#[test]
fn the_tool_follows_the_command_line_conventions() {
    let o = tool(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Usage: shmem_tool COMMAND KEYFILE"));
    let o = tool(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("shmem_tool: missing COMMAND\n"));
    let o = tool(&["frobnicate", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("shmem_tool: unknown command 'frobnicate'\n"));
    let o = tool(&["hold", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("shmem_tool: hold: say --shared or --exclusive\n"));
    let o = tool(&["read", "/tmp/x", "--size", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("shmem_tool: --size: 'lots' is not a valid number\n"));
}

#[test]
fn trace_shows_the_lock_steps() {
    let s = Scratch::new("shmem-trace");
    let k = key_file(&s, "k");
    let o = run_with_limit(
        cmd("shmem_tool")
            .args(["write", path_str(&k), "--size", "8", "hi"])
            .env("IPCLAB_TRACE", "1"),
        LIMIT,
    );
    assert!(o.status.success());
    let err = stderr(&o);
    for want in [
        "shmem_tool: trace: ftok(",
        "shmem_tool: trace: shmget(",
        "shmem_tool: trace: flock(fd=",
        "LOCK_EX)",
        "shmem_tool: trace: shmem write: 2 bytes under LOCK_EX",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(tool(&["delete", path_str(&k)]).status.success());
}

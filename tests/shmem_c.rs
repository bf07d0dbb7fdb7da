//! The shmem library from C (seed 004): `include/shmem.h` and `libipclab.a`, compiled with
//! the one-line `cc` command of the lab and run as real processes on real segments.
//!
//! `cargo test` does not build the static library for us, so the first test to need it runs
//! `cargo build --lib` (with the two Rust examples, to talk to) into a target directory of its
//! own, `target/shmem-c` (the outer `cargo test` holds the lock of the usual one), then
//! compiles the lab's `server.c` and `client.c` and the checks in `tests/c/`. Without a C
//! compiler the tests say so and pass.
//!
//! Every test uses its own key files in a `Scratch` directory, whose guard kills the children
//! and removes every segment with the test's keys, also when the test fails.
//!
//! The checks of every rule of the header also run under valgrind where it is installed
//! (`--error-exitcode=1`), as the RSHM C programs do in `tests/ffi.rs`.

mod common;

use common::{cmd, finish, have_valgrind, run_with_limit, wait_until, Scratch};
use ipclab::params::SHMEM_PROJ_ID;
use ipclab::shmem::{record, Shmem};
use ipclab::sys::process;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The compiled programs, or `None` if there is no C compiler.
struct Progs {
    server: PathBuf,
    client: PathBuf,
    api: PathBuf,
    hammer: PathBuf,
    rust_server: PathBuf,
    rust_client: PathBuf,
}

fn progs() -> Option<&'static Progs> {
    static P: OnceLock<Option<Progs>> = OnceLock::new();
    P.get_or_init(build).as_ref()
}

fn build() -> Option<Progs> {
    let root = common::project_dir();
    let target = common::bin_dir()
        .parent()
        .expect("target dir")
        .join("shmem-c");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--quiet", "--lib"])
        .args(["--example", "shmem_server", "--example", "shmem_client"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build --lib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let debug = target.join("debug");
    let lib = debug.join("libipclab.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    // The lab's command, but for the paths and the warnings (any warning fails the test):
    //   cc -Iinclude server.c target/debug/libipclab.a -lpthread -ldl -lm -o server_c
    // Each program is built under a name of this run's own, then renamed into place: a run of
    // these tests beside another then never rewrites a program the other is starting.
    let cc = |src: &str, exe: &str| -> Option<PathBuf> {
        let exe = debug.join(exe);
        let fresh = exe.with_extension(format!("new-{}", std::process::id()));
        let o = match Command::new("cc")
            .arg(format!("-I{}", root.join("include").display()))
            .args(["-Wall", "-Wextra", "-Werror"])
            .arg(root.join(src))
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&fresh)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipped: no C compiler ({e})");
                return None;
            }
        };
        assert!(
            o.status.success(),
            "cc {src}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&fresh, &exe).expect("rename the program into place");
        Some(exe)
    };
    Some(Progs {
        server: cc("lab/03-shmem-flock/server.c", "shmem_server_c")?,
        client: cc("lab/03-shmem-flock/client.c", "shmem_client_c")?,
        api: cc("tests/c/shmem_api.c", "shmem_api_c")?,
        hammer: cc("tests/c/shmem_hammer.c", "shmem_hammer_c")?,
        rust_server: debug.join("examples/shmem_server"),
        rust_client: debug.join("examples/shmem_client"),
    })
}

/// A key file in the scratch directory, with its key tracked for cleanup.
fn key_file(s: &Scratch, name: &str) -> PathBuf {
    let p = s.key_file(name);
    s.key(&p, SHMEM_PROJ_ID);
    p
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

/// Runs `shmem_tool` and asserts that it succeeded.
fn tool_ok(args: &[&str]) {
    let o = run_with_limit(cmd("shmem_tool").args(args), LIMIT);
    assert!(o.status.success(), "shmem_tool {args:?}: {}", stderr(&o));
}

/// A command for one of the compiled programs, with tracing off whatever the caller's
/// environment (the library would print trace lines on their stderr).
fn c_cmd(exe: &Path) -> Command {
    let mut c = Command::new(exe);
    c.env_remove(ipclab::params::TRACE_ENV);
    c
}

fn run(exe: &Path, args: &[&str]) -> Output {
    run_with_limit(c_cmd(exe).args(args), LIMIT)
}

/// Whether the server has published its first record (a client started between the
/// server's create and its first write would print "(no record yet)").
fn published(k: &Path) -> bool {
    Shmem::open_existing(k)
        .and_then(|shm| record::read(&shm))
        .is_ok_and(|r| r.is_some())
}

/// Checks one line a client printed for the server `pid`: `seq=N pid=P age_ms=A text=tick N`.
fn check_client_line(line: &str, pid: u32) {
    let f: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(f.len(), 4, "{line}");
    let seq = f[0].strip_prefix("seq=").expect(line);
    assert!(seq.parse::<u64>().is_ok(), "{line}");
    assert_eq!(f[1], format!("pid={pid}"), "{line}");
    assert!(
        f[2].strip_prefix("age_ms=")
            .is_some_and(|a| a.parse::<u64>().is_ok()),
        "{line}"
    );
    assert_eq!(f[3], format!("text=tick {seq}"), "{line}");
}

#[test]
fn every_rule_of_the_header_holds_from_c() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-api");
    // The files the checks open, made here so that their keys are tracked ("none" must not
    // exist; "zero" exists but has no segment).
    for name in ["a", "race", "zero"] {
        key_file(&s, name);
    }
    let all_ok = "ok round_trip_keeps_the_tail\n\
         ok sizes_and_open_existing\n\
         ok bad_arguments_are_errors_with_errno\n\
         ok a_call_inside_update_is_edeadlk_not_a_hang\n\
         ok fork_child_must_open_its_own\n\
         ok close_and_delete_null_the_handle\n\
         ok one_creator_among_racing_threads\n";
    let o = run(&p.api, &["check", path_str(s.dir())]);
    assert_eq!(stdout(&o), all_ok, "{}", stderr(&o));
    assert!(o.status.success());
    // The same checks under valgrind: every call above, on every path (errors, NULLed
    // handles, shmem_error()'s text read after later calls, the racing threads, the forked
    // child), is checked for invalid reads and writes.
    if have_valgrind() {
        let mut v = Command::new("valgrind");
        v.args(["-q", "--error-exitcode=1", "--trace-children=no"])
            .arg(&p.api)
            .args(["check", path_str(s.dir())])
            .env_remove(ipclab::params::TRACE_ENV);
        let o = run_with_limit(&mut v, LIMIT);
        assert_eq!(stdout(&o), all_ok, "under valgrind: {}", stderr(&o));
        assert!(o.status.success(), "under valgrind: {}", stderr(&o));
    } else {
        println!("skipped: valgrind is not installed, so the checks ran without it");
    }
    s.assert_no_leftovers();
}

#[test]
fn the_c_server_publishes_and_c_and_rust_clients_read_whole_records() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-server");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        c_cmd(&p.server)
            .args([kp, "--interval", "20", "--count", "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(wait_until(LIMIT, || published(&k)));
    let c = run(&p.client, &[kp, "--interval", "20", "--count", "3"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let text = stdout(&c);
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        check_client_line(line, srv);
    }
    // The Rust client decodes the C server's record: one layout, two languages.
    let r = run(&p.rust_client, &[kp, "--interval", "20", "--count", "2"]);
    assert!(r.status.success(), "{}", stderr(&r));
    for line in stdout(&r).lines() {
        check_client_line(line, srv);
    }
    let o = finish(s.take(srv), LIMIT);
    assert!(o.status.success(), "{}", stderr(&o));
    let want: String = (1..=50)
        .map(|i| format!("published seq={i} text=tick {i}\n"))
        .collect();
    assert_eq!(stdout(&o), want);
    assert_eq!(
        stderr(&o),
        format!("shmem_server_c: {kp}: created the segment, 96 bytes\nshmem_server_c: removed the segment\n")
    );
    s.assert_no_leftovers();
}

#[test]
fn the_c_client_reads_the_rust_server_until_it_removes_the_segment() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-client");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        c_cmd(&p.rust_server)
            .args([kp, "--interval", "50", "--count", "8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(wait_until(LIMIT, || published(&k)));
    // No --count: the client stops when it sees the segment deleted.
    let c = run(&p.client, &[kp, "--interval", "20"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let text = stdout(&c);
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.pop(),
        Some("the server removed the segment"),
        "{text}"
    );
    assert!(!lines.is_empty(), "{text}");
    for line in lines {
        check_client_line(line, srv);
    }
    assert!(s.take(srv).wait().unwrap().success());
    s.assert_no_leftovers();
}

#[test]
fn the_c_server_owns_its_segment_refuses_a_second_and_removes_it_on_sigterm() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-term");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        c_cmd(&p.server)
            .args([kp, "--interval", "10000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(wait_until(LIMIT, || published(&k)));
    let second = run(&p.server, &[kp]);
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(
        stderr(&second),
        format!("shmem_server_c: {kp}: a segment already exists for this key (another server?); remove it with `shmem_tool delete {kp}`\n")
    );
    // The first server still owns it, and a client still reads it.
    let c = run(&p.client, &[kp, "--count", "1"]);
    assert!(c.status.success(), "{}", stderr(&c));
    check_client_line(stdout(&c).trim_end(), srv);
    // SIGTERM interrupts its 10-second sleep at once: it deletes the segment and exits 0.
    process::kill(srv as i32, process::SIGTERM).unwrap();
    let o = finish(s.take(srv), Duration::from_secs(5));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "published seq=1 text=tick 1\n");
    assert!(stderr(&o).ends_with("shmem_server_c: removed the segment\n"));
    s.assert_no_leftovers();
}

#[test]
fn the_c_programs_say_what_is_wrong() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-errors");
    let missing = s.dir().join("missing");
    let mp = path_str(&missing);
    let c = run(&p.client, &[mp]);
    assert_eq!(c.status.code(), Some(1));
    assert_eq!(
        stderr(&c),
        format!("shmem_client_c: shmem open {mp}: opening the key file: No such file or directory (os error 2)\n")
    );
    assert!(!missing.exists(), "the client must create nothing");
    for exe in [&p.client, &p.server] {
        let o = run(exe, &[]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains(": missing KEYFILE\nusage: "),
            "{}",
            stderr(&o)
        );
        let o = run(exe, &["k", "--frob"]);
        assert_eq!(o.status.code(), Some(2));
    }
    // A segment of the wrong size for a record: the server names both sizes.
    let k = key_file(&s, "small");
    let kp = path_str(&k);
    tool_ok(&["write", kp, "--size", "16", "x"]);
    let o = run(&p.server, &[kp, "--count", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "shmem_server_c: shmem open {kp}: the segment of key 0x"
        )) && stderr(&o).ends_with(" has 16 bytes, not 96\n"),
        "{}",
        stderr(&o)
    );
    let o = run(&p.client, &[kp]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("shmem_client_c: {kp}: the segment has 16 bytes, a record needs 96\n")
    );
    tool_ok(&["delete", kp]);
    s.assert_no_leftovers();
}

/// Parses `reads=N writes=N torn=N changes=N`.
fn hammer_counts(line: &str) -> [u64; 4] {
    let mut out = [0; 4];
    for (i, (f, name)) in line
        .split_whitespace()
        .zip(["reads", "writes", "torn", "changes"])
        .enumerate()
    {
        let v = f.strip_prefix(name).and_then(|v| v.strip_prefix('='));
        out[i] = v.and_then(|v| v.parse().ok()).expect(line);
    }
    out
}

#[test]
fn c_threads_sharing_one_handle_never_read_a_torn_segment() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-hammer");
    let k = key_file(&s, "k");
    // 64 KiB: a long copy overlaps a write often (see tests/shmem.rs).
    let o = run(&p.hammer, &[path_str(&k), "65536", "2", "3", "2000", "1"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let [reads, writes, torn, changes] = hammer_counts(stdout(&o).trim_end());
    assert_eq!(torn, 0);
    assert!(
        reads >= 6000 && writes >= 4000 && changes >= 3,
        "{}",
        stdout(&o)
    );
    tool_ok(&["delete", path_str(&k)]);
    s.assert_no_leftovers();
}

#[test]
fn a_c_process_and_a_rust_process_hammer_one_segment_with_no_torn_read() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-mixed");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    // Both open it with its size, so either may create it (zeros: writer 0's whole pattern).
    let c = c_cmd(&p.hammer)
        .args([kp, "65536", "2", "2", "1500", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = cmd("shmem_tool")
        .args([
            "hammer",
            kp,
            "--size",
            "65536",
            "--writers",
            "1",
            "--readers",
            "2",
        ])
        .args(["--count", "1500", "--first-writer", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (c, r) = (finish(c, LIMIT), finish(r, LIMIT));
    for o in [&c, &r] {
        assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
        let [_, _, torn, changes] = hammer_counts(stdout(o).trim_end());
        assert_eq!(torn, 0, "{}", stdout(o));
        assert!(changes > 0, "{}", stdout(o));
    }
    tool_ok(&["delete", kp]);
    s.assert_no_leftovers();
}

#[test]
fn shmem_update_loses_no_increment_across_c_processes_and_threads() {
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-update");
    let k = key_file(&s, "counter");
    let kp = path_str(&k);
    // Three processes of four threads each, all at once, on one 8-byte counter.
    let children: Vec<_> = (0..3)
        .map(|_| {
            c_cmd(&p.api)
                .args(["incr", kp, "4", "300"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = finish(c, LIMIT);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(&p.api, &["get", kp]);
    assert_eq!(stdout(&o), "3600\n", "{}", stderr(&o));
    // The same counter, little-endian, as the Rust tool sees it.
    let o = run_with_limit(cmd("shmem_tool").args(["read", kp]), LIMIT);
    assert_eq!(o.stdout, 3600u64.to_le_bytes());
    tool_ok(&["delete", kp]);
    s.assert_no_leftovers();
}

/// Whether this test runs as root (from /proc, which needs no unsafe call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn another_user_cannot_open_the_servers_segment_and_hostile_bytes_are_refused() {
    use std::os::unix::process::CommandExt;
    let Some(p) = progs() else { return };
    let s = Scratch::new("shmemc-adversary");
    let k = key_file(&s, "k");
    let kp = path_str(&k);
    let srv = s.spawn(
        c_cmd(&p.server)
            .args([kp, "--interval", "10000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(wait_until(LIMIT, || published(&k)));
    if is_root() {
        // An unused uid: the segment is mode 0600, so shmget refuses it, and the client says so.
        let o = run_with_limit(c_cmd(&p.client).arg(kp).uid(64001).gid(64001), LIMIT);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("shmem_client_c: shmem open {kp}: "))
                && stderr(&o).contains("Permission denied"),
            "{}",
            stderr(&o)
        );
    } else {
        eprintln!("skipped the other-user half: not root");
    }
    // Somebody writes garbage over the record, ignoring the protocol: the client refuses it.
    tool_ok(&["write", kp, "not a record"]);
    let o = run(&p.client, &[kp, "--count", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "shmem_client_c: the segment does not hold a version 1 record\n"
    );
    // The server did not notice, and still removes its segment on SIGTERM.
    process::kill(srv as i32, process::SIGTERM).unwrap();
    assert!(s.take(srv).wait().unwrap().success());
    s.assert_no_leftovers();
}

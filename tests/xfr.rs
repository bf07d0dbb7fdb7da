//! shm_writer / shm_reader (seed 002), run as real programs on real kernel objects.
//!
//! Every test takes its own key (an `ftok` of a file in its own scratch directory) and its
//! `Scratch` kills the children and removes every object with that key, even on a panic.
//! Assertions are on exact bytes, exact exit codes and exact stderr prefixes; deadlines are
//! generous and only guard against hangs.

mod common;

use common::{cmd, run_with_limit, wait_until, Scratch};
use ipclab::sys::{ipcs, process, Key};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// A scratch area with one key file and its tracked key (proj id 65, the default).
fn setup(tag: &str) -> (Scratch, PathBuf, Key) {
    let s = Scratch::new(tag);
    let kf = s.key_file("key");
    let key = s.key(&kf, 65);
    (s, kf, key)
}

fn writer(kf: &Path) -> Command {
    let mut c = cmd("shm_writer");
    c.arg("-k").arg(kf);
    c
}

fn reader(kf: &Path) -> Command {
    let mut c = cmd("shm_reader");
    c.arg("-k").arg(kf);
    c
}

/// Starts `c` in the background (killed by the scratch guard if the test fails).
fn spawn(s: &Scratch, c: &mut Command) -> u32 {
    s.spawn(c.stdout(Stdio::piped()).stderr(Stdio::piped()))
}

/// Waits for a background child, failing the test if it takes longer than `limit`.
fn finish(s: &Scratch, pid: u32, limit: Duration) -> Output {
    common::finish(s.take(pid), limit)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// True once the writer's objects exist on `key` (the segment is made after the set).
fn writer_is_up(key: Key) -> bool {
    ipcs::with_key(key)
        .unwrap()
        .iter()
        .any(|o| o.kind == ipcs::Kind::Shm)
}

/// The line both programs print, e.g. `shm_writer: key 0x41010002, shmid 7, semid 3`.
fn assert_key_line(text: &str, prog: &str, key: Key) {
    let prefix = format!("{prog}: key 0x{key:08x}, shmid ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in: {text}"));
    let rest = &line[prefix.len()..];
    let (shmid, semid) = rest.split_once(", semid ").expect("semid");
    shmid.parse::<i32>().expect("shmid is a number");
    semid.parse::<i32>().expect("semid is a number");
}

/// Deterministic pseudo-random bytes (xorshift64), for byte-exactness checks.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Message mode.

#[test]
fn writer_first_then_reader_prints_the_words_and_a_newline() {
    let (s, kf, key) = setup("msg-wfirst");
    let w = spawn(&s, writer(&kf).args(["hello", "world"]));
    assert!(wait_until(LIMIT, || writer_is_up(key)));
    // The student's view: the segment is in ipcs with our key, mode 0600, size header + 4096.
    let seg = ipcs::with_key(key).unwrap();
    assert_eq!(seg.len(), 2, "{seg:?}"); // a segment and a semaphore set
    let r = run_with_limit(&mut reader(&kf), LIMIT);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(r.stdout, b"hello world\n");
    assert_key_line(&stderr(&r), "shm_reader", key);
    let w = finish(&s, w, LIMIT);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    assert_key_line(&stderr(&w), "shm_writer", key);
    assert!(w.stdout.is_empty());
    s.assert_no_leftovers();
}

#[test]
fn reader_first_then_writer_from_stdin() {
    let (s, kf, key) = setup("msg-rfirst");
    let r = spawn(&s, &mut reader(&kf));
    std::thread::sleep(Duration::from_millis(200));
    let mut w = writer(&kf);
    let mut child = w
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"text\n").unwrap();
    let w = common::finish(child, LIMIT);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    let r = finish(&s, r, LIMIT);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(r.stdout, b"text\n");
    assert_key_line(&stderr(&r), "shm_reader", key);
    s.assert_no_leftovers();
}

/// Sends `data` on the writer's stdin with `extra` arguments, and returns what the reader
/// printed, after checking that both exited 0.
fn message_via_stdin(s: &Scratch, kf: &Path, data: &[u8], extra: &[&str]) -> Vec<u8> {
    let r = spawn(s, &mut reader(kf));
    let mut w = writer(kf);
    let mut child = w
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let w = common::finish(child, LIMIT);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    let r = finish(s, r, LIMIT);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    r.stdout
}

#[test]
fn binary_and_empty_messages_arrive_exactly() {
    let (s, kf, _) = setup("msg-binary");
    let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    assert_eq!(message_via_stdin(&s, &kf, &all, &[]), all);
    // Exactly --size bytes fit.
    assert_eq!(message_via_stdin(&s, &kf, &all, &["--size", "1000"]), all);
    assert_eq!(message_via_stdin(&s, &kf, b"", &[]), b"");
    s.assert_no_leftovers();
}

#[test]
fn a_message_larger_than_the_segment_is_refused_before_anything_exists() {
    let (s, kf, _) = setup("msg-oversize");
    let o = run_with_limit(writer(&kf).args(["--size", "8", "123456789"]), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("shm_writer: message too large: 10 bytes; the segment holds 8"),
        "{}",
        stderr(&o)
    );
    let mut child = writer(&kf)
        .args(["--size", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The writer stops reading after 4097 bytes; it may close the pipe before we finish.
    let _ = child.stdin.take().unwrap().write_all(&[b'x'; 100_000]);
    let o = common::finish(child, LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("shm_writer: message too large: more than 4096 bytes on stdin"),
        "{}",
        stderr(&o)
    );
    s.assert_no_leftovers();
}

#[test]
fn each_side_alone_times_out_and_leaves_nothing() {
    let (s, kf, key) = setup("timeout");
    let t = Instant::now();
    let o = run_with_limit(reader(&kf).args(["--timeout", "0.5"]), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("shm_reader: timed out: no writer on key 0x{key:08x} within 0.5 s\n")
    );
    assert!(t.elapsed() >= Duration::from_millis(450));

    let o = run_with_limit(writer(&kf).args(["-t", "1", "nobody", "reads"]), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_key_line(&err, "shm_writer", key);
    assert!(
        err.contains(&format!(
            "\nshm_writer: timed out: no reader came for key 0x{key:08x} within 1 s\n"
        )),
        "{err}"
    );
    s.assert_no_leftovers();

    let o = run_with_limit(
        writer(&kf)
            .args(["--stream", "-t", "0.5"])
            .stdin(Stdio::null()),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shm_writer: timed out: no reader came"));
    s.assert_no_leftovers();
}

#[test]
fn mismatched_modes_and_a_second_reader_get_clear_errors() {
    let (s, kf, key) = setup("mismatch");
    let w = spawn(&s, writer(&kf).arg("once"));
    assert!(wait_until(LIMIT, || writer_is_up(key)));
    let o = run_with_limit(reader(&kf).arg("--stream"), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "shm_reader: the writer on key 0x{key:08x} is in message mode: \
             run shm_reader without --stream\n"
        )
    );
    // The writer is still waiting for a proper reader.
    let o = run_with_limit(&mut reader(&kf), LIMIT);
    assert_eq!(o.stdout, b"once\n");
    assert_eq!(finish(&s, w, LIMIT).status.code(), Some(0));

    // A stream with a reader already attached refuses a second one.
    let mut w = writer(&kf);
    w.arg("--stream").stdin(Stdio::piped());
    let w = spawn(&s, &mut w);
    let r1 = spawn(&s, reader(&kf).arg("--stream"));
    assert!(wait_until(LIMIT, || {
        ipcs::with_key(key)
            .unwrap()
            .iter()
            .any(|o| o.attaches == Some(2))
    }));
    let o = run_with_limit(reader(&kf).arg("--stream"), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "shm_reader: the writer on key 0x{key:08x} already has a reader (one reader per writer)\n"
        )
    );
    process::kill(w as i32, process::SIGTERM).unwrap();
    assert_eq!(finish(&s, w, LIMIT).status.code(), Some(1));
    assert_eq!(finish(&s, r1, LIMIT).status.code(), Some(1));
    s.assert_no_leftovers();
}

#[test]
fn a_new_writer_clears_a_killed_writers_orphans() {
    let (s, kf, key) = setup("orphans");
    let w = spawn(&s, writer(&kf).arg("lost"));
    assert!(wait_until(LIMIT, || writer_is_up(key)));
    let mut child = s.take(w);
    child.kill().unwrap(); // SIGKILL: no cleanup possible
    child.wait().unwrap();
    assert_eq!(s.leftovers().len(), 2, "a killed writer leaves its objects");

    let r = spawn(&s, &mut reader(&kf));
    let w = run_with_limit(writer(&kf).arg("found"), LIMIT);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    let r = finish(&s, r, LIMIT);
    assert_eq!(r.stdout, b"found\n");
    // Whichever came first removed the orphans, and said so.
    let both = stderr(&w) + &stderr(&r);
    assert!(
        both.contains(": removed the orphaned objects of a dead writer (pid "),
        "{both}"
    );
    s.assert_no_leftovers();
}

// ---------------------------------------------------------------------------------------------
// Stream mode.

/// Streams `data` from a file through a writer with `extra` options; `reader_first` picks the
/// start order. Returns the bytes the reader wrote.
fn stream_file(s: &Scratch, kf: &Path, data: &[u8], extra: &[&str], reader_first: bool) -> Vec<u8> {
    let input = s.dir().join("in");
    let output = s.dir().join("out");
    std::fs::write(&input, data).unwrap();
    let mut rc = reader(kf);
    rc.arg("--stream")
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::piped());
    let mut wc = writer(kf);
    wc.arg("--stream")
        .args(extra)
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (r, w);
    if reader_first {
        r = s.spawn(&mut rc);
        std::thread::sleep(Duration::from_millis(50));
        w = s.spawn(&mut wc);
    } else {
        w = s.spawn(&mut wc);
        std::thread::sleep(Duration::from_millis(50));
        r = s.spawn(&mut rc);
    }
    let wo = finish(s, w, LIMIT);
    assert_eq!(wo.status.code(), Some(0), "writer: {}", stderr(&wo));
    let ro = finish(s, r, LIMIT);
    assert_eq!(ro.status.code(), Some(0), "reader: {}", stderr(&ro));
    std::fs::read(&output).unwrap()
}

#[test]
fn streams_are_byte_exact_at_every_awkward_size() {
    let (s, kf, _) = setup("stream-sizes");
    let ring = ["--slots", "3", "--slot-size", "4096"];
    for (i, n) in [0usize, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 1, 100_003]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(n as u64 + 1, n);
        let got = stream_file(&s, &kf, &data, &ring, i % 2 == 0);
        assert!(got == data, "{n} bytes: got {} bytes back", got.len());
    }
    s.assert_no_leftovers();
}

#[test]
fn a_big_stream_with_the_default_ring_is_byte_exact_in_both_orders() {
    let (s, kf, _) = setup("stream-big");
    let data = random_bytes(7, 5 << 20 | 12345);
    assert!(stream_file(&s, &kf, &data, &[], false) == data);
    // The TLPI way, one small buffer in lock-step, still works (slowly).
    let data = random_bytes(8, 200_000);
    assert!(
        stream_file(
            &s,
            &kf,
            &data,
            &["--slots", "1", "--slot-size", "1024"],
            true
        ) == data
    );
    s.assert_no_leftovers();
}

#[test]
fn a_stream_from_a_trickling_pipe_arrives_whole() {
    let (s, kf, _) = setup("stream-pipe");
    let output = s.dir().join("out");
    let r = s.spawn(
        reader(&kf)
            .arg("--stream")
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(Stdio::piped()),
    );
    let mut child = writer(&kf)
        .args(["--stream", "--slot-size", "8192"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = random_bytes(3, 300_000);
    let mut stdin = child.stdin.take().unwrap();
    // Uneven pieces with pauses: the writer publishes whatever each read(2) returns.
    for (i, piece) in data.chunks(7777).enumerate() {
        stdin.write_all(piece).unwrap();
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    drop(stdin);
    let w = common::finish(child, LIMIT);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    assert_eq!(finish(&s, r, LIMIT).status.code(), Some(0));
    assert!(std::fs::read(&output).unwrap() == data);
    s.assert_no_leftovers();
}

/// A child the test holds directly (to keep its stdin pipe), killed on drop like the scratch
/// guard's children. Declared after the `Scratch`, so it is dropped first.
struct Bg(Option<Child>);

impl Bg {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }
    fn finish(&mut self, limit: Duration) -> Output {
        common::finish(self.0.take().expect("child"), limit)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running stream whose writer reads a pipe the test holds open: returns the writer, its
/// stdin, the reader, and the reader's output file, once 50 000 bytes have arrived.
fn flowing_stream(s: &Scratch, kf: &Path) -> (Bg, std::process::ChildStdin, Bg, PathBuf) {
    let output = s.dir().join("out");
    let mut w = writer(kf)
        .arg("--stream")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = w.stdin.take().unwrap();
    let w = Bg(Some(w));
    let r = reader(kf)
        .arg("--stream")
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = Bg(Some(r));
    let data = random_bytes(5, 50_000);
    stdin.write_all(&data).unwrap();
    assert!(wait_until(LIMIT, || std::fs::metadata(&output)
        .is_ok_and(|m| m.len() == data.len() as u64)));
    (w, stdin, r, output)
}

#[test]
fn a_writer_killed_mid_stream_is_noticed_and_its_orphans_removed() {
    let (s, kf, key) = setup("kill-writer");
    let (mut w, _stdin, mut r, output) = flowing_stream(&s, &kf);
    process::kill(w.pid() as i32, process::SIGKILL).unwrap();
    let t = Instant::now();
    let ro = r.finish(LIMIT);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(ro.status.code(), Some(1));
    let err = stderr(&ro);
    let pid = w.pid();
    assert!(
        err.contains(&format!(
            "shm_reader: removed the orphaned objects of a dead writer (pid {pid}): shmid "
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "shm_reader: the writer (pid {pid}) died before the end\n"
        )),
        "{err}"
    );
    // Everything written before the death had arrived, and no more.
    assert_eq!(std::fs::read(&output).unwrap(), random_bytes(5, 50_000));
    let _ = w.finish(LIMIT);
    s.assert_no_leftovers();
    let _ = key;
}

#[test]
fn a_reader_killed_mid_stream_is_noticed_and_the_writer_cleans_up() {
    let (s, kf, _) = setup("kill-reader");
    let (mut w, _stdin, mut r, _) = flowing_stream(&s, &kf);
    process::kill(r.pid() as i32, process::SIGKILL).unwrap();
    let _ = r.finish(LIMIT);
    let t = Instant::now();
    // The writer is waiting on its stdin (we keep it open): it still notices.
    let wo = w.finish(LIMIT);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(wo.status.code(), Some(1));
    assert!(
        stderr(&wo).ends_with("shm_writer: the reader quit or died before taking all the data\n"),
        "{}",
        stderr(&wo)
    );
    s.assert_no_leftovers();
}

#[test]
fn a_reader_killed_while_the_writer_waits_on_a_full_ring_is_noticed() {
    let (s, kf, key) = setup("kill-reader-full");
    // The reader writes to a pipe nobody reads: it blocks, the ring fills, the writer waits
    // on EMPTY (not on stdin) when the reader dies.
    let input = s.dir().join("in");
    std::fs::write(&input, random_bytes(9, 4 << 20)).unwrap();
    let mut w = Bg(Some(
        writer(&kf)
            .args(["--stream", "--slots", "2", "--slot-size", "65536"])
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut r = Bg(Some(
        reader(&kf)
            .arg("--stream")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    assert!(wait_until(LIMIT, || ipcs::with_key(key)
        .unwrap()
        .iter()
        .any(|o| o.attaches == Some(2))));
    std::thread::sleep(Duration::from_millis(200));
    process::kill(r.pid() as i32, process::SIGKILL).unwrap();
    let _ = r.finish(LIMIT);
    let wo = w.finish(LIMIT);
    assert_eq!(wo.status.code(), Some(1));
    assert!(
        stderr(&wo).ends_with("shm_writer: the reader quit or died before taking all the data\n"),
        "{}",
        stderr(&wo)
    );
    s.assert_no_leftovers();
}

#[test]
fn sigterm_and_sigint_clean_up_on_both_sides() {
    let (s, kf, _) = setup("signals");
    // SIGTERM to the writer mid-stream: it removes its objects; the reader notices.
    let (mut w, _stdin, mut r, _) = flowing_stream(&s, &kf);
    process::kill(w.pid() as i32, process::SIGTERM).unwrap();
    let wo = w.finish(LIMIT);
    assert_eq!(wo.status.code(), Some(1));
    assert!(
        stderr(&wo).ends_with("shm_writer: stopped by SIGTERM\n"),
        "{}",
        stderr(&wo)
    );
    let ro = r.finish(LIMIT);
    assert_eq!(ro.status.code(), Some(1));
    assert!(
        stderr(&ro).contains("shm_reader: the writer (pid "),
        "{}",
        stderr(&ro)
    );
    s.assert_no_leftovers();

    // SIGTERM to the reader mid-stream: it stops; the writer notices and cleans up.
    let (mut w, _stdin, mut r, _) = flowing_stream(&s, &kf);
    process::kill(r.pid() as i32, process::SIGTERM).unwrap();
    let ro = r.finish(LIMIT);
    assert_eq!(ro.status.code(), Some(1));
    assert!(stderr(&ro).ends_with("shm_reader: stopped by SIGTERM\n"));
    assert_eq!(w.finish(LIMIT).status.code(), Some(1));
    s.assert_no_leftovers();

    // SIGINT (Ctrl-C) to a message writer waiting for its reader, and to a writer waiting
    // for stdin typed at a terminal (here a pipe that never says anything).
    let w = spawn(&s, writer(&kf).arg("unread"));
    assert!(wait_until(LIMIT, || !s.leftovers().is_empty()));
    std::thread::sleep(Duration::from_millis(100));
    process::kill(w as i32, process::SIGINT).unwrap();
    let wo = finish(&s, w, LIMIT);
    assert_eq!(wo.status.code(), Some(1));
    assert!(stderr(&wo).ends_with("shm_writer: stopped by SIGINT\n"));
    s.assert_no_leftovers();
    let mut w = Bg(Some(
        writer(&kf)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    std::thread::sleep(Duration::from_millis(200));
    process::kill(w.pid() as i32, process::SIGINT).unwrap();
    let wo = w.finish(LIMIT);
    assert_eq!(wo.status.code(), Some(1));
    assert_eq!(stderr(&wo), "shm_writer: stopped by SIGINT\n");

    // And to a reader still waiting for a writer.
    let r = spawn(&s, reader(&kf).arg("--stream"));
    std::thread::sleep(Duration::from_millis(200));
    process::kill(r as i32, process::SIGINT).unwrap();
    let ro = finish(&s, r, LIMIT);
    assert_eq!(ro.status.code(), Some(1));
    assert_eq!(stderr(&ro), "shm_reader: stopped by SIGINT\n");
    s.assert_no_leftovers();
}

// ---------------------------------------------------------------------------------------------
// The command line, permissions and tracing.

#[test]
fn usage_errors_exit_2_and_help_goes_to_stdout() {
    for (prog, args, want) in [
        (
            "shm_writer",
            &["--bogus"][..],
            "shm_writer: unknown option '--bogus'\n",
        ),
        (
            "shm_writer",
            &["--stream", "word"],
            "shm_writer: --stream reads stdin; give no WORDs\n",
        ),
        (
            "shm_writer",
            &["--slots", "3", "x"],
            "shm_writer: --slots and --slot-size need --stream\n",
        ),
        (
            "shm_writer",
            &["--stream", "--size", "9"],
            "shm_writer: --size is for message mode",
        ),
        (
            "shm_writer",
            &["--size", "0", "x"],
            "shm_writer: --size: must be 1..",
        ),
        (
            "shm_writer",
            &["--size", "lots", "x"],
            "shm_writer: --size: 'lots' is not a valid number\n",
        ),
        (
            "shm_writer",
            &["--mode", "999", "x"],
            "shm_writer: --mode: '999' is not octal",
        ),
        (
            "shm_writer",
            &["--timeout", "-1", "x"],
            "shm_writer: --timeout: '-1' is not a number of seconds",
        ),
        (
            "shm_writer",
            &["-i", "256", "x"],
            "shm_writer: --proj-id: '256' is not a project id (1 to 255)\n",
        ),
        (
            "shm_writer",
            &["-k"],
            "shm_writer: option '--key-path' needs a value\n",
        ),
        (
            "shm_reader",
            &["extra"],
            "shm_reader: unexpected argument 'extra'",
        ),
        (
            "shm_reader",
            &["--size", "5"],
            "shm_reader: unknown option '--size'\n",
        ),
        (
            "shm_reader",
            &["-i", "0"],
            "shm_reader: --proj-id: '0' is not a project id",
        ),
    ] {
        let o = run_with_limit(cmd(prog).args(args), LIMIT);
        assert_eq!(o.status.code(), Some(2), "{prog} {args:?}");
        let err = stderr(&o);
        assert!(err.starts_with(want), "{prog} {args:?}: {err}");
        assert!(err.ends_with(&format!("Try '{prog} --help' for more information.\n")));
        assert!(o.stdout.is_empty());
    }
    for prog in ["shm_writer", "shm_reader"] {
        let o = run_with_limit(cmd(prog).arg("--help"), LIMIT);
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("Usage: {prog} ")));
        assert!(o.stderr.is_empty());
    }
}

#[test]
fn a_missing_key_path_is_a_runtime_error_naming_ftok() {
    let o = run_with_limit(
        cmd("shm_reader").args(["-k", "/nonexistent/ipclab-key", "-t", "0"]),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("shm_reader: ftok(/nonexistent/ipclab-key, 65): No such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn mode_and_proj_id_reach_the_kernel_objects() {
    let s = Scratch::new("perms");
    let kf = s.key_file("key");
    let key = s.key(&kf, 7);
    let w = spawn(
        &s,
        writer(&kf).args(["-i", "7", "--mode", "640", "--size", "100", "x"]),
    );
    assert!(wait_until(LIMIT, || writer_is_up(key)));
    let seg = ipcs::with_key(key)
        .unwrap()
        .into_iter()
        .find(|o| o.kind == ipcs::Kind::Shm)
        .unwrap();
    let st = ipclab::sys::shm::ShmId(seg.id).stat().unwrap();
    assert_eq!(st.mode, 0o640);
    assert_eq!(st.size, 64 + 100);
    let r = run_with_limit(reader(&kf).args(["--proj-id", "7"]), LIMIT);
    assert_eq!(r.stdout, b"x\n");
    assert_eq!(finish(&s, w, LIMIT).status.code(), Some(0));
    s.assert_no_leftovers();
}

#[test]
fn tracing_shows_every_ipc_step_and_every_slot() {
    let (s, kf, key) = setup("trace");
    let data = random_bytes(11, 10_000);
    let input = s.dir().join("in");
    std::fs::write(&input, &data).unwrap();
    let r = s.spawn(
        reader(&kf)
            .arg("--stream")
            .env("IPCLAB_TRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let w = run_with_limit(
        writer(&kf)
            .args(["--stream", "--slot-size", "4096"])
            .env("IPCLAB_TRACE", "1")
            .stdin(std::fs::File::open(&input).unwrap()),
        LIMIT,
    );
    assert_eq!(w.status.code(), Some(0));
    let err = stderr(&w);
    for want in [
        format!(
            "shm_writer: trace: ftok({}, 65) = key 0x{key:08x}\n",
            kf.display()
        ),
        format!("shm_writer: trace: semget(key=0x{key:08x}, nsems=5, flags=03600) = semid "),
        "shm_writer: trace: semop(semid=".to_string(),
        "shm_writer: trace: slot 0: 4096 bytes\n".to_string(),
        "shm_writer: trace: slot 2: 1808 bytes\n".to_string(),
        "shm_writer: trace: slot 3: end of data\n".to_string(),
        "shm_writer: trace: shmctl(shmid=".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    let r = finish(&s, r, LIMIT);
    assert_eq!(r.stdout, data);
    let err = stderr(&r);
    assert!(
        err.contains("shm_reader: trace: slot 1: 4096 bytes\n"),
        "{err}"
    );
    assert!(
        err.contains("shm_reader: trace: slot 3: end of data\n"),
        "{err}"
    );
    s.assert_no_leftovers();
}

/// True once the writer has published its set (its first semop sets `sem_otime`).
fn writer_published(key: Key) -> bool {
    ipclab::sys::sem::semget(key, 0, ipclab::sys::shm::Get::Open)
        .and_then(|s| s.stat())
        .is_ok_and(|st| st.op_time != 0)
}

fn ipcrm(flag: &str, id: i32) {
    let o = run_with_limit(Command::new("ipcrm").args([flag, &id.to_string()]), LIMIT);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn ipcrm_under_a_waiting_writer_is_named_by_both_sides() {
    let (s, kf, key) = setup("ipcrm-m");
    let w = spawn(&s, writer(&kf).args(["-t", "20", "hello"]));
    assert!(common::wait_until(LIMIT, || writer_published(key)));
    let obj = |kind| {
        ipcs::with_key(key)
            .unwrap()
            .into_iter()
            .find(|o| o.kind == kind)
            .unwrap()
            .id
    };
    let (shmid, semid) = (obj(ipcs::Kind::Shm), obj(ipcs::Kind::Sem));
    // Stopped, the writer cannot notice before the reader looks.
    ipclab::sys::process::kill(w as i32, libc::SIGSTOP).unwrap();
    ipcrm("-m", shmid);
    let o = run_with_limit(reader(&kf).args(["--timeout", "5"]), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "shm_reader: the writer on key 0x{key:08x} (semid {semid}) has no segment: it was \
             removed by someone else (ipcrm?)\n"
        )
    );
    ipclab::sys::process::kill(w as i32, libc::SIGCONT).unwrap();
    let o = finish(&s, w, LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with(&format!(
            "shm_writer: our segment {shmid} was removed by someone else (ipcrm?)\n"
        )),
        "{}",
        stderr(&o)
    );
    s.assert_no_leftovers();

    // The set instead: the writer says so at once.
    let w = spawn(&s, writer(&kf).args(["-t", "20", "hello"]));
    assert!(common::wait_until(LIMIT, || writer_published(key)));
    let semid = obj(ipcs::Kind::Sem);
    ipcrm("-s", semid);
    let o = finish(&s, w, LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with(&format!(
            "shm_writer: our semaphore set {semid} was removed by someone else (ipcrm?)\n"
        )),
        "{}",
        stderr(&o)
    );
    s.assert_no_leftovers();
}

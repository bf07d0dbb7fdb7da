//! Shared helpers for the integration tests: real binaries, private keys, guaranteed cleanup.
//!
//! Tests run in parallel, and the machine's IPC namespace is shared with other tests and other
//! programs. So every test gets a [`Scratch`]: a private directory whose files give `ftok` keys
//! that nobody else uses, and which on drop (also when the test panics) kills the children it
//! started and removes every System V object with one of its keys.

#![allow(dead_code)]

pub mod huge_pool;
pub mod rng;

use ipclab::sys::{ftok, ipcs, Key};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The directory with the binaries cargo built for this test run (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The path of one of ipclab's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The project's top directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test's private directory, keys, children and objects; all cleaned up on drop: children
/// get SIGTERM (then SIGKILL), and objects under the test's keys are removed.
pub struct Scratch {
    dir: PathBuf,
    keys: std::cell::RefCell<Vec<Key>>,
    children: std::cell::RefCell<Vec<Child>>,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ipclab-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch {
            dir,
            keys: Default::default(),
            children: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file in the scratch directory (created empty if missing), for `-k/--key-path`.
    pub fn key_file(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        if !p.exists() {
            std::fs::write(&p, b"").expect("create key file");
        }
        p
    }

    /// `ftok(path, proj)`, remembered so that drop removes whatever uses this key.
    pub fn key(&self, path: &Path, proj: u8) -> Key {
        let k = ftok(path, proj).expect("ftok");
        self.track_key(k);
        k
    }

    /// Remember a key that a program derives by itself (from a port, say).
    pub fn track_key(&self, k: Key) {
        self.keys.borrow_mut().push(k);
    }

    /// Starts a child that is killed on drop.
    pub fn spawn(&self, cmd: &mut Command) -> u32 {
        let child = cmd.spawn().expect("spawn child");
        let pid = child.id();
        self.children.borrow_mut().push(child);
        pid
    }

    /// Takes the stdout and stderr pipes of a started child (spawned with `Stdio::piped()`),
    /// leaving the child itself in the scratch's care.
    pub fn pipes(&self, pid: u32) -> (Option<ChildStdout>, Option<ChildStderr>) {
        let mut v = self.children.borrow_mut();
        let c = v.iter_mut().find(|c| c.id() == pid).expect("known child");
        (c.stdout.take(), c.stderr.take())
    }

    /// Takes a started child back, to wait for it.
    pub fn take(&self, pid: u32) -> Child {
        let mut v = self.children.borrow_mut();
        let i = v.iter().position(|c| c.id() == pid).expect("known child");
        v.remove(i)
    }

    /// The objects now alive with one of this test's keys.
    pub fn leftovers(&self) -> Vec<ipcs::Object> {
        let keys = self.keys.borrow();
        ipcs::list()
            .expect("read /proc/sysvipc")
            .into_iter()
            .filter(|o| keys.contains(&o.key))
            .collect()
    }

    /// Asserts that no object with one of this test's keys is alive.
    pub fn assert_no_leftovers(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "IPC objects left behind: {left:?}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SIGTERM first, so that each program removes what it owns (a private-key object can
        // be found by nobody else); SIGKILL whoever is still running after a grace period.
        let mut children: Vec<Child> = self.children.borrow_mut().drain(..).collect();
        for c in &children {
            let _ = ipclab::sys::process::kill(c.id() as i32, ipclab::sys::process::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for c in &mut children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for o in self.leftovers() {
            let _ = ipcs::remove(&o);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on now, and whose derived key (`key_of(port)`) has no objects. It is
/// picked at random below the kernel's ephemeral range (32768 and up), where the client sockets
/// of the tests running in parallel get their ports: one of those could otherwise take it
/// before the server binds it.
pub fn free_port(key_of: impl Fn(u16) -> Key) -> u16 {
    static N: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos()
        ^ std::process::id().wrapping_mul(2_654_435_761)
        ^ N.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    let mut x = seed | 1;
    loop {
        // xorshift32: cheap, and different in every test and every process.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = 10_000 + (x % 20_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && ipcs::with_key(key_of(port))
                .expect("read /proc/sysvipc")
                .is_empty()
        {
            return port;
        }
    }
}

/// A command for one of ipclab's binaries, with tracing off whatever the caller's environment.
pub fn cmd(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env_remove(ipclab::params::TRACE_ENV);
    c
}

/// Runs a command to completion, with piped output, killing it after `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(child, limit)
}

/// Whether valgrind is installed (the C tests then run their programs under it too).
pub fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for a child to exit and collects its output; after `limit`, kills it and fails the
/// test with what it wrote on stderr.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first line that `r` (a child's stdout, say) gives within `limit`, newline included.
/// A child that never writes one fails the test instead of hanging it: the read runs in a
/// thread of its own, which ends, dropping `r`, once the line or the end of the pipe comes.
pub fn line_within(r: impl Read + Send + 'static, limit: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(r).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no line within {limit:?}"))
}

/// The lines of a pipe, each awaited for at most a limit (see [`line_within`]).
pub struct LinesWithin(std::sync::mpsc::Receiver<String>);

impl LinesWithin {
    pub fn new(r: impl Read + Send + 'static) -> LinesWithin {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LinesWithin(rx)
    }

    /// The next line, without its newline; fails the test if none comes within `limit`.
    pub fn next(&self, limit: Duration) -> String {
        self.0
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no further line within {limit:?}"))
    }
}

/// Polls `cond` until it holds or `limit` passes; true if it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Reads one line (up to and with its `\n`) from a child's pipe, a byte at a time, so that
/// nothing after it is taken from the pipe: a server's status line on stderr, with the rest of
/// stderr left for later. A child that stays silent fails the test after 20 s, not hangs it.
pub fn first_line(r: &mut (impl std::io::Read + std::os::fd::AsFd)) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if !ipclab::sys::poll::readable(r.as_fd(), left).unwrap_or(false) {
            panic!(
                "no whole line within 20 s; got so far: {:?}",
                String::from_utf8_lossy(&line)
            );
        }
        if r.read(&mut b).unwrap_or(0) != 1 {
            break;
        }
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Waits (at most 10 s) for a first whole line in a file a child writes its stderr to, and
/// returns it (empty if none came). A file, not a pipe: a long-running server's later notices
/// can neither fill a pipe nobody reads nor hit a closed one.
pub fn first_line_of(path: &Path) -> String {
    let mut line = String::new();
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        match text.split_once('\n') {
            Some((first, _)) => {
                line = format!("{first}\n");
                true
            }
            None => false,
        }
    });
    line
}

//! The test cluster shared by the RSHM test files: nodes on loopback, each knowing all the
//! others, started and stopped as real `rshm_server` processes, and `client` runs against them.
//! The `Scratch` guard removes the objects under every node's keys (its queue and its change
//! gates: `rshm::node_keys`), even on failure.

#![allow(dead_code)]

use crate::common::{self, cmd, run_with_limit, wait_until, Scratch};
use ipclab::rshm::{node_keys, queue_key, Node};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const LIMIT: Duration = Duration::from_secs(20);

/// Writes a fresh cluster secret (32 random bytes in hex, mode 0600) to `path`: every test
/// has its own, so no test touches the user's default secret and clusters never meet.
pub fn write_secret(path: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    ipclab::rshm::auth::random_bytes(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, hex.as_bytes()).unwrap();
    path.to_path_buf()
}

/// `n` distinct ports that were free a moment ago, with no queue under their keys.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = common::free_port(queue_key);
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// A group of nodes on loopback, each knowing all the others.
pub struct Cluster {
    pub s: Scratch,
    pub ports: Vec<u16>,
    pub pids: Vec<Option<u32>>,
    /// The group's secret file (`--secret`), in the scratch directory.
    pub secret: std::path::PathBuf,
    /// More `--peer` ports for every node (another group's, in the tests that try to merge).
    pub extra_peers: Vec<u16>,
}

impl Cluster {
    pub fn new(tag: &str, n: usize) -> Cluster {
        let s = Scratch::new(tag);
        let ports = free_ports(n);
        for &p in &ports {
            for key in node_keys(p) {
                s.track_key(key);
            }
        }
        let secret = write_secret(&s.dir().join("secret"));
        Cluster {
            s,
            pids: vec![None; n],
            ports,
            secret,
            extra_peers: Vec::new(),
        }
    }

    /// Starts node `i`, its stderr in `node<i>.log`.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Node `i`'s command: its port, the secret, every other node as a peer.
    fn command(&self, i: usize) -> Command {
        let mut c = cmd("rshm_server");
        c.arg("--listen").arg(self.ports[i].to_string());
        c.arg("--secret").arg(&self.secret);
        for (j, p) in self.ports.iter().enumerate() {
            if j != i {
                c.arg("--peer").arg(format!("127.0.0.1:{p}"));
            }
        }
        for p in &self.extra_peers {
            c.arg("--peer").arg(format!("127.0.0.1:{p}"));
        }
        c
    }

    pub fn start_with(&mut self, i: usize, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.log_path(i)).unwrap();
        let mut c = self.command(i);
        c.envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        self.pids[i] = Some(self.s.spawn(&mut c));
        let port = self.ports[i];
        // Its start-up line first: a queue may be there already, left by a killed server,
        // which the new one removes before it makes its own.
        assert!(
            wait_until(LIMIT, || self.log(i).contains(" serving queue key ")
                && Node::open(port).is_ok()),
            "node {i} did not start: {}",
            self.log(i)
        );
    }

    /// Starts node `i` in an IPC namespace of its own whose `kernel.shmmax` is `shmmax`: a
    /// machine whose largest segment is smaller. (`unshare --ipc`; without root, in a user
    /// namespace of its own too, which most kernels allow.) Its queue is in there with it, so
    /// only its log and its peers see it, and its objects go with the namespace. `Err` with
    /// the reason if this machine cannot make one.
    pub fn start_with_shmmax(&mut self, i: usize, shmmax: u64) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path(i)).unwrap();
        let server = self.command(i);
        let mut c = Command::new("unshare");
        if ipclab::rshm::auth::euid().unwrap() != 0 {
            c.args(["--user", "--map-root-user"]);
        }
        c.args(["--ipc", "--", "sh", "-c"])
            .arg(r#"echo "$0" > /proc/sys/kernel/shmmax && exec "$@""#)
            .arg(shmmax.to_string())
            .arg(server.get_program())
            .args(server.get_args())
            .stdout(Stdio::null())
            .stderr(log);
        let pid = self.s.spawn(&mut c);
        self.pids[i] = Some(pid);
        let started = wait_until(LIMIT, || {
            self.log(i).contains(" serving queue key ")
                || ipclab::sys::process::state(pid as i32).is_none_or(|s| s == 'Z')
        });
        if started && self.log(i).contains(" serving queue key ") {
            return Ok(());
        }
        let mut child = self.s.take(self.pids[i].take().expect("spawned"));
        let _ = child.kill();
        let _ = child.wait();
        Err(self.log(i))
    }

    pub fn log_path(&self, i: usize) -> std::path::PathBuf {
        self.s.dir().join(format!("node{i}.log"))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Stops node `i` with SIGTERM and checks it exits 0.
    pub fn stop(&mut self, i: usize) {
        let pid = self.pids[i].take().expect("running");
        ipclab::sys::process::kill(pid as i32, libc::SIGTERM).unwrap();
        let mut child = self.s.take(pid);
        assert!(
            wait_until(LIMIT, || child.try_wait().unwrap().is_some()),
            "node {i} did not stop"
        );
        assert!(child.wait().unwrap().success(), "node {i}: {}", self.log(i));
    }

    /// `client --port <node i> args...`, run to completion.
    pub fn client(&self, i: usize, args: &[&str]) -> Output {
        let mut c = cmd("client");
        c.arg("--port").arg(self.ports[i].to_string()).args(args);
        run_with_limit(&mut c, LIMIT)
    }

    /// As `client`, asserting success; returns stdout.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.client(i, args);
        assert!(
            out.status.success(),
            "client {args:?} on node {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until node `i` has every one of its peers up.
    pub fn connected(&self, i: usize) {
        assert!(
            wait_until(LIMIT, || {
                let first = self.ok(i, &["ls"]);
                let first = first.lines().next().unwrap_or("").to_string();
                first.contains(" up") && !first.contains("down")
            }),
            "node {i} never saw all peers up: {}",
            self.log(i)
        );
    }

    /// Waits until node `i` has peer node `j` up (whatever its other peers are doing).
    pub fn connected_to(&self, i: usize, j: usize) {
        let want = format!("127.0.0.1:{} up", self.ports[j]);
        assert!(
            wait_until(LIMIT, || self
                .ok(i, &["ls"])
                .lines()
                .next()
                .is_some_and(|l| l.contains(&want))),
            "node {i} never saw node {j} up: {}",
            self.log(i)
        );
    }

    /// Node `i`'s table rows: (rshmid, key, size, owner, attaches, shmid, version, sent,
    /// status).
    pub fn rows(&self, i: usize) -> Vec<Vec<String>> {
        self.ok(i, &["ls"])
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    /// A long-running `client` (read --follow): stdout piped, killed on drop.
    pub fn follower(&self, i: usize, key: &str) -> Follower {
        let mut child = cmd("client")
            .arg("--port")
            .arg(self.ports[i].to_string())
            .args(["read", key, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Follower { child, out }
    }
}

pub struct Follower {
    pub child: Child,
    pub out: BufReader<std::process::ChildStdout>,
}

impl Follower {
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l
    }

    /// Everything it wrote on stderr (read to the end: call it once it has exited).
    pub fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        err
    }

    /// SIGTERM, as Ctrl-C would: it detaches and exits 0.
    pub fn stop(mut self) {
        ipclab::sys::process::kill(self.child.id() as i32, libc::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "follower exited with {status}");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The columns that must be the same on every node: rshmid, key, size, owner, attaches.
pub fn shared_columns(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r[..5].to_vec()).collect()
}

impl Cluster {
    /// Node `i`'s pid.
    pub fn pid(&self, i: usize) -> i32 {
        self.pids[i].expect("running") as i32
    }

    /// SIGKILL node `i`: no cleanup runs; its objects stay until the next server on its port
    /// recognises them as a dead server's and removes them.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.s.take(self.pids[i].take().expect("running"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A TCP connection to node `i` that has passed the handshake with the group's secret, as
    /// the node named `me`: what a real peer has before its HELLO.
    pub fn authed(&self, i: usize, me: std::net::SocketAddrV4) -> std::net::TcpStream {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.set_write_timeout(Some(LIMIT)).unwrap();
        let (secret, _) = ipclab::rshm::auth::Secret::load(&self.secret, false).unwrap();
        let ends = ipclab::rshm::auth::Ends {
            dialer: me,
            acceptor: format!("127.0.0.1:{}", self.ports[i]).parse().unwrap(),
        };
        ipclab::rshm::auth::dial(&mut s, &secret, ends).expect("handshake");
        s
    }

    /// Waits until node `i`'s process is stopped (SIGSTOP takes effect asynchronously).
    pub fn stopped(&self, i: usize) -> bool {
        let pid = self.pid(i);
        wait_until(LIMIT, || ipclab::sys::process::state(pid) == Some('T'))
    }

    /// The text in the segment with `key`, read on node `i`.
    pub fn read(&self, i: usize, key: &str) -> String {
        self.ok(i, &["read", key])
    }
}

/// Reads one frame and its seq from a peer's stream (with whatever bytes came before it in
/// `got`); `None` once the stream ends.
pub fn read_frame(
    s: &mut impl Read,
    got: &mut Vec<u8>,
) -> Option<(u32, ipclab::wire::rshm::Frame)> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if let Ok((seq, f, used)) = ipclab::wire::rshm::Frame::decode(got) {
            got.drain(..used);
            return Some((seq, f));
        }
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// As [`read_frame`], for a test that expects a frame.
pub fn next_frame(s: &mut impl Read, got: &mut Vec<u8>) -> ipclab::wire::rshm::Frame {
    read_frame(s, got)
        .expect("a whole frame before the stream ended")
        .1
}

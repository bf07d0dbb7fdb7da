//! dipc, dipcrm and dipc_client, run for real: servers on free loopback ports, their objects
//! under the port-derived keys, raw bytes on the wire.
//!
//! Every test takes a free port (bind port 0, read it, release it), tracks the port's key in a
//! `Scratch` (which removes whatever is left, even on panic) and kills any server it started.

mod common;

use common::{cmd, run_with_limit, Scratch};
use ipclab::dipc::keys::key_for_port;
use ipclab::sys::ipcs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    common::free_port(key_for_port)
}

/// A server in the foreground, a child of the test: killed on drop, and then its scratch
/// removes whatever is left under the port's key.
struct Server {
    port: u16,
    pid: u32,
    stderr: Option<std::process::ChildStderr>,
    /// What stderr said before the started line (trace lines, notices), for `stop`.
    head: String,
    /// Owns the server process (SIGTERM, then SIGKILL, on drop) and removes what it left.
    s: Scratch,
}

fn foreground(tag: &str, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let s = Scratch::new(tag);
    let port = free_port();
    s.track_key(key_for_port(port));
    let mut c = cmd("dipc");
    c.args(["--foreground", "4", "1"])
        .arg(port.to_string())
        .arg("1")
        .args(extra)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let pid = s.spawn(&mut c);
    let (_, mut stderr) = s.pipes(pid);
    // The started line is status, on stderr after any trace line or notice; the rest of
    // stderr stays in the pipe for `stop`.
    let mut head = String::new();
    let line = loop {
        let line = common::first_line(stderr.as_mut().unwrap());
        if line.is_empty() || line.starts_with("dipc: serving") {
            break line;
        }
        head.push_str(&line);
    };
    let srv = Server {
        port,
        pid,
        stderr,
        head,
        s,
    };
    assert_eq!(
        line,
        format!("dipc: serving 4 mailboxes of 1 kB on 127.0.0.1:{port}, pid {pid}\n")
    );
    srv
}

impl Server {
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s
    }

    /// Sends `req`, half-closes, and returns everything the server sent until it closed.
    fn exchange(&self, req: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        // The server may close first (lost framing): what it sent until then is the answer.
        let _ = s.write_all(req);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    }

    /// SIGKILL, as a crash would: the objects stay behind.
    fn crash(&mut self) {
        let mut child = self.s.take(self.pid);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit status and the whole stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.s.take(self.pid);
        ipclab::sys::process::kill(self.pid as i32, libc::SIGTERM).unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(start.elapsed() < LIMIT, "server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = std::mem::take(&mut self.head);
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (status, err)
    }
}

/// Reads exactly the bytes of one reply header line.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8(line).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The protocol.

#[test]
fn every_protocol_row() {
    let srv = foreground("rows", &[], &[]);
    let mut c = srv.connect();
    // r of an empty box; w, length form; r; w, line form (with \r\n); unknown command; q.
    c.write_all(b"r 1\n").unwrap();
    assert_eq!(read_line(&mut c), "ok 0\n");
    c.write_all(b"w 1 11\nhello there").unwrap();
    assert_eq!(read_line(&mut c), "ok 11\n");
    c.write_all(b"r 1\n").unwrap();
    assert_eq!(read_line(&mut c), "ok 11\n");
    let mut msg = [0u8; 11];
    c.read_exact(&mut msg).unwrap();
    assert_eq!(&msg, b"hello there");
    c.write_all(b"w 2\ntyped in netcat\r\n").unwrap();
    assert_eq!(read_line(&mut c), "ok 15\n");
    c.write_all(b"hello\n").unwrap();
    assert_eq!(read_line(&mut c), "err unknown command 'hello'\n");
    c.write_all(b"q 3\n").unwrap();
    assert_eq!(read_line(&mut c), "bye\n");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The server still serves, and box 2 holds the line without its end.
    assert_eq!(srv.exchange(b"r 2\n"), b"ok 15\ntyped in netcat");
    let (status, _) = srv.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn binary_data_and_the_size_limit() {
    let srv = foreground("binary", &[], &[]);
    // Every byte value, the full 1024 bytes (min(packet, mailbox) = 1 kB).
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut req = b"w 0 1024\n".to_vec();
    req.extend_from_slice(&data);
    // One byte too many: read, discarded, refused; the connection stays usable.
    req.extend_from_slice(b"w 0 1025\n");
    req.extend(std::iter::repeat_n(b'x', 1025));
    req.extend_from_slice(b"r 0\n");
    let mut want =
        b"ok 1024\nerr message of 1025 bytes is over the limit of 1024\nok 1024\n".to_vec();
    want.extend_from_slice(&data);
    assert_eq!(srv.exchange(&req), want);
    // A line longer than the limit is skipped up to its newline; then the next request works.
    let mut req = b"w 0\n".to_vec();
    req.extend(std::iter::repeat_n(b'y', 5000));
    req.extend_from_slice(b"\nr 0\n");
    let got = srv.exchange(&req);
    assert!(
        got.starts_with(b"err message line longer than 1024 bytes\nok 1024\n"),
        "{}",
        String::from_utf8_lossy(&got[..60.min(got.len())])
    );
}

#[test]
fn bad_requests_keep_the_connection_when_framing_is_intact() {
    let srv = foreground("bad", &[], &[]);
    let got = srv.exchange(b"r 4\nr x\nw 9 3\nabcw y\nline\nr\n\nw\nr 99999999999999999999\nr 3\n");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "err no mailbox 4 (mailboxes are 0 to 3)\n\
         err bad mailbox 'x' (mailboxes are 0 to 3)\n\
         err no mailbox 9 (mailboxes are 0 to 3)\n\
         err bad mailbox 'y' (mailboxes are 0 to 3)\n\
         err usage: r <mailbox>\n\
         err usage: w <mailbox> [<length>]\n\
         err no mailbox 18446744073709551615 (mailboxes are 0 to 3)\n\
         ok 0\n"
    );
}

#[test]
fn an_empty_line_is_ignored_so_an_enter_after_the_data_earns_nothing() {
    let srv = foreground("blank", &[], &[]);
    // What a person types at nc: `w 1 5`, Enter, `hello`, Enter; then a blank line, then r 1.
    let got = srv.exchange(b"w 1 5\nhello\n\n \t\r\nr 1\n");
    assert_eq!(String::from_utf8(got).unwrap(), "ok 5\nok 5\nhello");
}

#[test]
fn dipc_client_joins_its_words_like_echo() {
    let srv = foreground("words", &[], &[]);
    let p = srv.port.to_string();
    let o = run_with_limit(
        cmd("dipc_client").args([&p, "w", "1", "two", "words"]),
        LIMIT,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok 9\n", "{o:?}");
    let o = run_with_limit(cmd("dipc_client").args([&p, "r", "1"]), LIMIT);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "two words\n");
    // A closed stdout ends it quietly (`dipc_client P r 1 | true`), status 0 or 141.
    let mut c = cmd("dipc_client");
    c.args([&p, "r", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let o = common::finish(child, LIMIT);
    assert!(matches!(o.status.code(), Some(0 | 141)), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

#[test]
fn lost_framing_is_answered_then_closed() {
    let srv = foreground("framing", &[], &[]);
    assert_eq!(
        srv.exchange(b"w 1 abc\nr 1\n"),
        b"err length 'abc' is not a number; closing\n"
    );
    assert_eq!(
        srv.exchange(b"w 1 hello there\n"),
        b"err usage: w <mailbox> <length>, or w <mailbox> then a line; closing\n"
    );
    let mut long = vec![b'r'; 100_000];
    long.push(b'\n');
    assert_eq!(
        srv.exchange(&long),
        b"err request line longer than 128 bytes; closing\n"
    );
    // Other clients never noticed.
    assert_eq!(srv.exchange(b"r 1\n"), b"ok 0\n");
}

#[test]
fn pipelined_and_byte_split_requests_give_the_same_replies() {
    let srv = foreground("split", &[], &[]);
    let script: &[u8] = b"w 0 3\nabcw 1\nline one\nr 0\nr 1\nbogus\nw 3 0\nr 3\nr 7\nq\n";
    let whole = srv.exchange(script);
    let mut c = srv.connect();
    c.set_nodelay(true).unwrap();
    for b in script {
        c.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut split = Vec::new();
    c.read_to_end(&mut split).unwrap();
    assert_eq!(split, whole);
    assert_eq!(
        String::from_utf8(whole).unwrap(),
        "ok 3\nok 8\nok 3\nabcok 8\nline oneerr unknown command 'bogus'\nok 0\nok 0\n\
         err no mailbox 7 (mailboxes are 0 to 3)\nbye\n"
    );
}

#[test]
fn a_stalled_writer_holds_no_lock_and_a_disconnect_changes_nothing() {
    let srv = foreground("stall", &[], &[]);
    assert_eq!(srv.exchange(b"w 1 3\nold"), b"ok 3\n");
    // A client announces 100 bytes, sends 10, and stalls.
    let mut stalled = srv.connect();
    stalled.write_all(b"w 1 100\n0123456789").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Meanwhile others read and write that very box without waiting.
    assert_eq!(srv.exchange(b"r 1\n"), b"ok 3\nold");
    assert_eq!(srv.exchange(b"w 1 3\nnewr 1\n"), b"ok 3\nok 3\nnew");
    // The stalled client goes away mid-payload: no partial message, ever.
    drop(stalled);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(srv.exchange(b"r 1\n"), b"ok 3\nnew");
}

#[test]
fn the_idle_timeout_closes_a_stalled_client() {
    let srv = foreground("idle", &["--idle-timeout", "1"], &[]);
    let mut c = srv.connect();
    c.write_all(b"w 2 100\nabc").unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"err idle timeout; closing\n");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(srv.exchange(b"r 2\n"), b"ok 0\n");
}

#[test]
fn sigterm_closes_every_client_and_removes_the_objects() {
    let srv = foreground("sigterm", &[], &[]);
    let key = key_for_port(srv.port);
    assert_eq!(ipcs::with_key(key).unwrap().len(), 2);
    let mut idle = srv.connect();
    let mut stalled = srv.connect();
    stalled.write_all(b"w 0 50\nabc").unwrap();
    idle.write_all(b"r 0\n").unwrap();
    assert_eq!(read_line(&mut idle), "ok 0\n");
    let (status, stderr) = srv.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "");
    for mut c in [idle, stalled] {
        let mut rest = Vec::new();
        // EOF (or a reset): either way, closed.
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
    }
    assert!(ipcs::with_key(key).unwrap().is_empty());
}

#[test]
fn tracing_shows_each_datagram_and_lock_step() {
    let srv = foreground("trace", &[], &[("IPCLAB_TRACE", "1")]);
    assert_eq!(srv.exchange(b"w 1 2\nhir 1\n"), b"ok 2\nok 2\nhi");
    let out = run_with_limit(
        cmd("dipc_client")
            .env("IPCLAB_TRACE", "1")
            .args([&srv.port.to_string(), "r", "1"]),
        LIMIT,
    );
    assert_eq!(out.stdout, b"hi\n");
    let client_err = String::from_utf8(out.stderr).unwrap();
    assert!(
        client_err.contains("dipc_client: trace: send r 1"),
        "{client_err}"
    );
    assert!(
        client_err.contains("dipc_client: trace: recv Ok(2)"),
        "{client_err}"
    );
    let (_, err) = srv.stop();
    for want in [
        ": recv w 1 2",
        "dipc: trace: lock 1: write lock held",
        "dipc: trace: lock 1: write lock released",
        ": recv r 1",
        "dipc: trace: lock 1: read lock held",
        "dipc: trace: lock 1: read lock released",
        "semop(semid=",
    ] {
        assert!(err.contains(want), "no '{want}' in:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Start-up: daemon, second server, orphans, arguments.

/// A daemon started by a test; SIGKILLed on drop if still running (the scratch then removes).
struct Daemon(i32);
impl Drop for Daemon {
    fn drop(&mut self) {
        if ipclab::dipc::mailbox::is_dipc_server(self.0) {
            let _ = ipclab::sys::process::kill(self.0, libc::SIGKILL);
        }
    }
}

/// The log a test's daemon writes, in the test's scratch directory.
fn log_of(s: &Scratch) -> std::path::PathBuf {
    s.dir().join("dipc.log")
}

fn start_daemon(s: &Scratch, port: u16) -> Daemon {
    start_daemon_with(s, port, &mut cmd("dipc"))
}

/// `dipc --log <scratch>/dipc.log 4 1 PORT 1` through `c` (a `dipc`, or a shell that runs it).
fn start_daemon_with(s: &Scratch, port: u16, c: &mut std::process::Command) -> Daemon {
    let log = log_of(s);
    let out = run_with_limit(
        c.arg("--log")
            .arg(&log)
            .args(["4", "1", &port.to_string(), "1"]),
        LIMIT,
    );
    // The started line is status: on stderr, and stdout stays empty.
    let stdout = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout} {:?}", out.stdout);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "");
    let prefix = format!(
        "dipc: serving 4 mailboxes of 1 kB on 127.0.0.1:{port}, log {}, daemon pid ",
        log.display()
    );
    let pid: i32 = stdout
        .strip_prefix(&prefix)
        .and_then(|p| p.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("started line: {stdout:?}"))
        .parse()
        .unwrap();
    let _ = s;
    Daemon(pid)
}

#[test]
fn the_daemon_reports_its_pid_refuses_a_second_server_and_dipcrm_stops_it() {
    let s = Scratch::new("daemon");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    let d = start_daemon(&s, port);
    assert!(ipclab::dipc::mailbox::is_dipc_server(d.0));
    // Its objects: one segment created by the daemon itself (mode 0600), one set.
    let objs = ipcs::with_key(key).unwrap();
    assert_eq!(objs.len(), 2, "{objs:?}");
    let shm = objs.iter().find(|o| o.kind == ipcs::Kind::Shm).unwrap();
    assert_eq!(shm.creator_pid, Some(d.0));
    let st = ipclab::sys::shm::ShmId(shm.id).stat().unwrap();
    assert_eq!(st.mode, 0o600);
    // A daemon has its own session and no terminal: it is the leader of a new session.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.0)).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], d.0.to_string(), "session id: {stat}");
    // Its stdio is /dev/null, and it left the starting directory.
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", d.0)).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", d.0)).unwrap(),
        std::path::Path::new("/")
    );

    let out = run_with_limit(cmd("dipc").args(["4", "1", &port.to_string(), "1"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "dipc: port {port}: a dipc server is already running (pid {}); stop it with dipcrm {port}\n",
            d.0
        )
    );
    // The first keeps serving.
    let out = run_with_limit(
        cmd("dipc_client").args([&port.to_string(), "w", "1", "text"]),
        LIMIT,
    );
    assert_eq!(out.stdout, b"ok 4\n");
    let out = run_with_limit(
        cmd("dipc_client").args([&port.to_string(), "r", "1"]),
        LIMIT,
    );
    assert_eq!(out.stdout, b"text\n");

    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert!(out.status.success());
    let shm_id = shm.id;
    let sem_id = objs.iter().find(|o| o.kind == ipcs::Kind::Sem).unwrap().id;
    let k = key as u32;
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "sent SIGTERM to dipc server pid {pid} (port {port})\n\
             dipc server pid {pid} has exited\n\
             removed shared memory segment key 0x{k:08x} id {shm_id} (by the server)\n\
             removed semaphore set key 0x{k:08x} id {sem_id} (by the server)\n",
            pid = d.0
        )
    );
    assert!(ipcs::with_key(key).unwrap().is_empty());
    assert!(!ipclab::dipc::mailbox::is_dipc_server(d.0));
    // Nothing left: dipcrm says so and exits 1.
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("dipcrm: no dipc server and no objects for port {port} (key 0x{k:08x})\n")
    );
}

#[test]
fn a_killed_servers_objects_are_recycled_and_dipcrm_removes_orphans() {
    let mut srv = foreground("orphan", &[], &[]);
    let port = srv.port;
    let key = key_for_port(port);
    let k = key as u32;
    srv.crash();
    let orphans = ipcs::with_key(key).unwrap();
    assert_eq!(orphans.len(), 2, "SIGKILL leaves the objects");

    // A new server on the port recycles them, with a notice.
    let s = Scratch::new("orphan2");
    s.track_key(key);
    // Returns the child and what it printed on stderr up to its started line (status, on
    // stderr like every notice).
    let start_fg = || {
        let mut c = cmd("dipc");
        c.args(["--foreground", "4", "1", &port.to_string(), "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let pid = s.spawn(&mut c);
        let mut child = s.take(pid);
        let mut err = String::new();
        let pipe = child.stderr.as_mut().unwrap();
        loop {
            let line = common::first_line(pipe);
            err.push_str(&line);
            if line.is_empty() || line.starts_with("dipc: serving") {
                break;
            }
        }
        assert!(err.contains("dipc: serving"), "{err}");
        (child, err)
    };
    let (child, head) = start_fg();
    let pid2 = child.id();
    ipclab::sys::process::kill(pid2 as i32, libc::SIGTERM).unwrap();
    let out = common::finish(child, LIMIT);
    let err = head + &String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "dipc: recycling orphaned objects of port {port} (key 0x{k:08x}; server pid {} is gone)\n",
            srv.pid
        )),
        "{err}"
    );
    assert!(
        err.contains("dipc: removed shared memory segment key"),
        "{err}"
    );
    assert!(err.contains("dipc: removed semaphore set key"), "{err}");
    assert!(ipcs::with_key(key).unwrap().is_empty());

    // Orphans again (a crash), and this time dipcrm removes them.
    let (mut child, _) = start_fg();
    let pid3 = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!(
            "no dipc server runs for port {port} (creator pid {pid3} is gone); removing orphans\n\
             removed shared memory segment key 0x{k:08x} id "
        )),
        "{stdout}"
    );
    assert!(stdout.contains("removed semaphore set key"), "{stdout}");
    assert!(ipcs::with_key(key).unwrap().is_empty());
}

#[test]
fn dipcrm_kills_a_server_that_does_not_stop() {
    let mut srv = foreground("stuck", &[], &[]);
    let key = key_for_port(srv.port);
    let objs = ipcs::with_key(key).unwrap();
    // A stopped process cannot act on SIGTERM; SIGKILL still ends it.
    ipclab::sys::process::kill(srv.pid as i32, libc::SIGSTOP).unwrap();
    let out = run_with_limit(cmd("dipcrm").arg(srv.port.to_string()), LIMIT);
    assert!(out.status.success(), "{:?}", out.stderr);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let pid = srv.pid;
    let k = key as u32;
    let shm = objs.iter().find(|o| o.kind == ipcs::Kind::Shm).unwrap().id;
    let sem = objs.iter().find(|o| o.kind == ipcs::Kind::Sem).unwrap().id;
    assert_eq!(
        stdout,
        format!(
            "sent SIGTERM to dipc server pid {pid} (port {port})\n\
             pid {pid} did not exit within 5 s; sent SIGKILL\n\
             dipc server pid {pid} has exited\n\
             removed shared memory segment key 0x{k:08x} id {shm}\n\
             removed semaphore set key 0x{k:08x} id {sem}\n",
            port = srv.port
        )
    );
    assert!(ipcs::with_key(key).unwrap().is_empty());
    srv.crash();
}

#[test]
fn objects_that_are_not_dipcs_are_left_alone() {
    let s = Scratch::new("foreign");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    // Somebody else's segment under our key: no magic.
    let _seg = ipclab::sys::shm::shmget(key, 100, ipclab::sys::shm::Get::Create(0o600)).unwrap();
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("dipcrm: segment key 0x"), "{err}");
    assert!(err.contains("is not a dipc segment"), "{err}");
    let out = run_with_limit(
        cmd("dipc").args(["--foreground", "4", "1", &port.to_string(), "1"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("is not a dipc segment"));
    // Still there, untouched (the scratch removes it).
    assert_eq!(ipcs::with_key(key).unwrap().len(), 1);
}

#[test]
fn bad_arguments_exit_2_or_1_and_leave_nothing() {
    let s = Scratch::new("args");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    let p = port.to_string();
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["0", "1", &p, "1"],
            2,
            "dipc: mailboxes: 0 is out of range (1 to 10000)\n".into(),
        ),
        (
            vec!["10001", "1", &p, "1"],
            2,
            "dipc: mailboxes: 10001 is out of range (1 to 10000)\n".into(),
        ),
        (
            vec!["x", "1", &p, "1"],
            2,
            "dipc: mailboxes: 'x' is not a valid number\n".into(),
        ),
        (
            vec!["4", "1", "70000", "1"],
            2,
            "dipc: port: '70000' is not a valid number\n".into(),
        ),
        (
            vec!["4", "1", &p],
            2,
            "dipc: expected 4 arguments (mailboxes, mailbox_kB, port, packet_kB), got 3\n".into(),
        ),
        (
            vec!["4", "0", &p, "1"],
            2,
            "dipc: mailbox_kB: must be at least 1\n".into(),
        ),
        (
            vec!["4", "1", &p, "0"],
            2,
            "dipc: packet_kB: 0 is out of range (1 to 65536)\n".into(),
        ),
        (
            vec!["16", "18014398509481984", &p, "1"],
            2,
            "dipc: 16 mailboxes of 18014398509481984 kB need more than 2^64 bytes, over SHMMAX"
                .into(),
        ),
        (
            vec!["--bind", "nowhere", "4", "1", &p, "1"],
            2,
            "dipc: --bind: 'nowhere' is not an IP address\n".into(),
        ),
        (
            vec!["--idle-timeout", "86401", "4", "1", &p, "1"],
            2,
            "dipc: --idle-timeout 86401: must be 1 to 86400\n".into(),
        ),
    ];
    for (args, code, err) in cases {
        let out = run_with_limit(cmd("dipc").args(&args), LIMIT);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&err), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
        s.assert_no_leftovers();
    }
    // A port in use, in the foreground and as a daemon (the error comes back through the pipe).
    let taken = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for fg in [true, false] {
        let mut c = cmd("dipc");
        if fg {
            c.arg("--foreground");
        }
        let out = run_with_limit(c.args(["4", "1", &p, "1"]), LIMIT);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "dipc: bind(127.0.0.1:{port}): Address already in use"
            )),
            "{stderr}"
        );
        s.assert_no_leftovers();
    }
    drop(taken);
    // --help goes to stdout.
    let out = run_with_limit(cmd("dipc").arg("--help"), LIMIT);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("Usage: dipc "));
    for args in [vec![], vec!["x"], vec!["0"], vec!["1", "2"]] {
        let out = run_with_limit(cmd("dipcrm").args(&args), LIMIT);
        assert_eq!(out.status.code(), Some(2), "dipcrm {args:?}");
        assert!(out.stderr.starts_with(b"dipcrm: "));
    }
    let out = run_with_limit(cmd("dipc_client").args([&p, "r", "1"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with(&format!(
        "dipc_client: connect(127.0.0.1:{port}): Connection refused"
    )),);
}

// ---------------------------------------------------------------------------------------------
// The client.

#[test]
fn the_client_is_interactive_one_shot_and_reports_errors() {
    let srv = foreground("client", &[], &[]);
    let p = srv.port.to_string();
    let mut child = cmd("dipc_client")
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"r 1\nw 1 hello there\nr 1\nw 9 x\nhelp\nq\n")
        .unwrap();
    let out = common::finish(child, LIMIT);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok 0\nok 11\nok 11\nhello there\nerr no mailbox 9 (mailboxes are 0 to 3)\n\
         commands: r <mailbox> | w <mailbox> <text> | q\nbye\n"
    );
    // One-shot, with binary data from stdin and --raw back.
    let data: Vec<u8> = (0..=255u8).collect();
    let mut w = cmd("dipc_client")
        .args([&p, "w", "2", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    w.stdin.take().unwrap().write_all(&data).unwrap();
    assert_eq!(common::finish(w, LIMIT).stdout, b"ok 256\n");
    let out = run_with_limit(cmd("dipc_client").args([&p, "--raw", "r", "2"]), LIMIT);
    assert_eq!(out.stdout, data);
    let out = run_with_limit(cmd("dipc_client").args([&p, "r", "4"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        b"dipc_client: server: no mailbox 4 (mailboxes are 0 to 3)\n"
    );
}

#[test]
fn chat_shows_the_other_persons_messages() {
    let srv = foreground("chat", &[], &[]);
    let p = srv.port.to_string();
    let mut bob = cmd("dipc_client")
        .args([&p, "chat", "1", "--name", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut alice = cmd("dipc_client")
        .args([&p, "chat", "0", "--name", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = common::LinesWithin::new(bob.stdout.take().unwrap());
    assert_eq!(
        lines.next(LIMIT),
        "chat: you are 'bob' writing mailbox 1; watching the other 3 (Ctrl-D leaves)"
    );
    alice
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello bob\n")
        .unwrap();
    assert_eq!(lines.next(LIMIT), "[0] alice: hello bob");
    drop(alice.stdin.take());
    drop(bob.stdin.take());
    assert!(common::finish(alice, LIMIT).status.success());
    assert!(common::finish(bob, LIMIT).status.success());
}

// ---------------------------------------------------------------------------------------------
// Load and the grader.

#[test]
fn many_clients_at_once_each_see_their_own_writes() {
    let srv = foreground("many", &[], &[]);
    let port = srv.port;
    let handles: Vec<_> = (0..16u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = ipclab::dipc::client::Client::connect("127.0.0.1", port).unwrap();
                // A small seeded PRNG: the same sequence every run.
                let mut x: u32 = 0x9e37_79b9 ^ t;
                for _ in 0..100 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let b = x % 4;
                    let msg = format!("t{t} {x}");
                    match c.write(b, msg.as_bytes()).unwrap() {
                        ipclab::dipc::client::Answer::Ok { len, .. } => {
                            assert_eq!(len as usize, msg.len())
                        }
                        other => panic!("{other:?}"),
                    }
                    match c.read(b).unwrap() {
                        // Another thread may have written since: any whole message will do.
                        ipclab::dipc::client::Answer::Ok { data, .. } => {
                            let s = String::from_utf8(data).unwrap();
                            assert!(s.starts_with('t') && s.contains(' '), "{s}");
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Faults from outside: ipcrm under a running server, inherited descriptors, squatted keys.

fn wait_gone(pid: i32, limit: Duration) -> bool {
    common::wait_until(limit, || !ipclab::dipc::mailbox::is_dipc_server(pid))
}

fn ipcrm(flag: &str, id: i32) {
    let out = run_with_limit(
        std::process::Command::new("ipcrm").args([flag, &id.to_string()]),
        LIMIT,
    );
    assert!(out.status.success(), "ipcrm {flag} {id}: {:?}", out.stderr);
}

#[test]
fn a_daemon_whose_set_is_removed_says_why_in_its_log_tells_its_clients_and_exits() {
    let s = Scratch::new("ipcrm-s");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    let d = start_daemon(&s, port);
    let objs = ipcs::with_key(key).unwrap();
    let sem = objs.iter().find(|o| o.kind == ipcs::Kind::Sem).unwrap().id;
    // A client connected before the removal, waiting between requests.
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"w 1 2\nhi").unwrap();
    assert_eq!(read_line(&mut client), "ok 2\n");

    ipcrm("-s", sem);
    assert!(
        wait_gone(d.0, Duration::from_secs(5)),
        "the daemon still runs"
    );
    let why = format!(
        "server stopping: its semaphore set (semid {sem}) was removed by someone else (ipcrm -s?)"
    );
    // The client is told why, whatever it was doing.
    let line = read_line(&mut client);
    assert!(line.starts_with(&format!("err {why}")), "{line}");
    let log = std::fs::read_to_string(log_of(&s)).unwrap();
    assert!(
        log.contains(&format!(
            "its semaphore set (semid {sem}) was removed by someone else"
        )),
        "{log}"
    );
    assert!(log.contains("exiting: stopped: its semaphore set"), "{log}");
    // The daemon removed what was left of its objects (the segment) before exiting.
    assert!(ipcs::with_key(key).unwrap().is_empty());
    // The port is free again: a new server starts at once.
    let d2 = start_daemon(&s, port);
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert!(out.status.success(), "{:?}", out.stderr);
    assert!(wait_gone(d2.0, LIMIT));
}

#[test]
fn a_daemon_whose_segment_is_removed_exits_and_dipcrm_finds_one_by_its_port() {
    let s = Scratch::new("ipcrm-m");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    let d = start_daemon(&s, port);
    let shm = ipcs::with_key(key)
        .unwrap()
        .into_iter()
        .find(|o| o.kind == ipcs::Kind::Shm)
        .unwrap()
        .id;
    ipcrm("-m", shm);
    assert!(
        wait_gone(d.0, Duration::from_secs(5)),
        "the daemon still runs"
    );
    let log = std::fs::read_to_string(log_of(&s)).unwrap();
    assert!(
        log.contains(&format!(
            "its shared memory segment (shmid {shm}) was removed by someone else (ipcrm -m?); stopping"
        )),
        "{log}"
    );
    assert!(ipcs::with_key(key).unwrap().is_empty());

    // A server that has not noticed yet (stopped, as a busy machine might delay it): dipcrm
    // cannot find it by its segment any more, only by the port it holds, and stops it.
    let d = start_daemon(&s, port);
    ipclab::sys::process::kill(d.0, libc::SIGSTOP).unwrap();
    for o in ipcs::with_key(key).unwrap() {
        ipcrm(
            if o.kind == ipcs::Kind::Shm {
                "-m"
            } else {
                "-s"
            },
            o.id,
        );
    }
    let rm = cmd("dipcrm")
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ipclab::sys::process::kill(d.0, libc::SIGCONT).unwrap();
    let out = common::finish(rm, LIMIT);
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let k = key as u32;
    assert!(
        stdout.starts_with(&format!(
            "dipc server pid {pid} listens on port {port}, but the objects under key 0x{k:08x} \
             are not its own (removed with ipcrm?)\n\
             sent SIGTERM to dipc server pid {pid} (port {port})\n",
            pid = d.0
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("dipc server pid {} has exited\n", d.0)),
        "{stdout}"
    );
    assert!(!ipclab::dipc::mailbox::is_dipc_server(d.0));
    // And a new server gets the port.
    let d3 = start_daemon(&s, port);
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert!(out.status.success());
    assert!(wait_gone(d3.0, LIMIT));
}

#[test]
fn the_daemon_keeps_no_descriptor_it_inherited() {
    let s = Scratch::new("fds");
    let port = free_port();
    s.track_key(key_for_port(port));
    let file = s.dir().join("inherited");
    // A shell that opens a file on fd 7 and /dev/zero on fd 9, then becomes dipc.
    let mut sh = std::process::Command::new("bash");
    sh.arg("-c")
        .arg(r#"exec 7>"$1" 9</dev/zero; shift; exec "$@""#)
        .arg("sh")
        .arg(&file)
        .arg(common::bin("dipc"));
    let d = start_daemon_with(&s, port, &mut sh);
    let mut targets = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{}/fd", d.0))
        .unwrap()
        .flatten()
    {
        let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
        let t = std::fs::read_link(e.path()).unwrap();
        targets.push((fd, t.to_string_lossy().into_owned()));
    }
    for (fd, t) in &targets {
        let expected = (*fd <= 2 && t == "/dev/null")
            || t.starts_with("socket:[")
            || std::path::Path::new(t) == log_of(&s);
        assert!(expected, "fd {fd} -> {t} in {targets:?}");
    }
    let out = run_with_limit(cmd("dipcrm").arg(port.to_string()), LIMIT);
    assert!(out.status.success());
}

#[test]
fn a_write_announcing_an_enormous_length_is_refused_at_once() {
    let srv = foreground("huge", &[], &[]);
    let mut c = srv.connect();
    let start = Instant::now();
    c.write_all(b"w 0 18446744073709551615\n").unwrap();
    assert_eq!(
        read_line(&mut c),
        "err message of 18446744073709551615 bytes is over the limit of 1024; closing\n"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // A slightly-too-long write is still read and dropped, and the connection lives on.
    let mut c = srv.connect();
    let mut req = b"w 0 2000\n".to_vec();
    req.extend(vec![b'x'; 2000]);
    req.extend(b"r 0\n");
    c.write_all(&req).unwrap();
    assert_eq!(
        read_line(&mut c),
        "err message of 2000 bytes is over the limit of 1024\n"
    );
    assert_eq!(read_line(&mut c), "ok 0\n");
    let (status, _) = srv.stop();
    assert!(status.success());
}

/// Runs `c` as uid:gid `id` (root only: setpriv drops the privileges).
fn as_user(id: u32, c: &mut std::process::Command) -> std::process::Command {
    let mut sp = std::process::Command::new("setpriv");
    sp.args([
        format!("--reuid={id}"),
        format!("--regid={id}"),
        "--clear-groups".into(),
    ])
    .arg(c.get_program())
    .args(c.get_args());
    sp
}

#[test]
fn a_key_squatted_by_another_user_is_named_with_its_owner_and_what_to_do() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        eprintln!("skipped: needs root to run processes as two other users");
        return;
    }
    let s = Scratch::new("squat");
    let port = free_port();
    let key = key_for_port(port);
    s.track_key(key);
    let (squatter, victim) = (64_010u32, 64_011u32);
    // The squatter's server dies by SIGKILL and leaves its objects under the port's key.
    let mut c = as_user(
        squatter,
        cmd("dipc").args(["--foreground", "4", "1", &port.to_string(), "1"]),
    );
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let pid = s.spawn(&mut c);
    let mut child = s.take(pid);
    let line = common::first_line(child.stderr.as_mut().unwrap());
    assert!(line.starts_with("dipc: serving"), "{line}");
    // setpriv execs dipc in place: the child's pid is the server's.
    child.kill().unwrap();
    child.wait().unwrap();
    let shm = ipcs::with_key(key)
        .unwrap()
        .into_iter()
        .find(|o| o.kind == ipcs::Kind::Shm)
        .unwrap();
    assert_eq!(shm.uid, squatter);
    let expect = format!(
        "key 0x{:08x} is taken: shared memory segment id {id} belongs to uid {squatter}, created \
         by pid {pid} (gone), not to you (uid {victim}); ask its owner (or root) to remove it \
         with `ipcrm -m {id}`, or use another port\n",
        key as u32,
        id = shm.id
    );
    let out = run_with_limit(
        &mut as_user(
            victim,
            cmd("dipc").args(["--foreground", "4", "1", &port.to_string(), "1"]),
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("dipc: {expect}")
    );
    let out = run_with_limit(
        &mut as_user(victim, cmd("dipcrm").arg(port.to_string())),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("dipcrm: {expect}")
    );
    // Nothing of the squatter's was touched.
    assert_eq!(ipcs::with_key(key).unwrap().len(), 2);
}

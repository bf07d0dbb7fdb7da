//! RSHM with real separation: every node in its own network namespace and its own IPC
//! namespace, so the nodes share no System V object and can reach each other only by TCP.
//!
//! The other RSHM tests run three servers on one loopback and one IPC namespace; a bug that
//! let data travel through a shared segment, or a test that read one node's replica while
//! meaning another's, would go unnoticed there. Here each node is, for the kernel, a separate
//! machine on a small LAN, and a link can be cut as a cable would be:
//!
//! ```text
//!             netns <tag>-hub: bridge br0
//!           ┌────────┼─────────────┐
//!         veth0    veth1         veth2          (ip -n <tag>-hub link set veth2 down = cut)
//!           │        │             │
//!   netns <tag>-0  <tag>-1       <tag>-2        each: eth0 169.254.X.(i+1)/24, lo up
//!   unshare --ipc  unshare --ipc unshare --ipc  each: its own queue and replicas
//!   rshm_server    rshm_server   rshm_server    --listen 169.254.X.(i+1):7001
//! ```
//!
//! A node's server is started with `ip netns exec NS unshare --ipc -- rshm_server ...`; both
//! tools exec, so the child's pid is the server's. Its programs run in the same two namespaces
//! with `nsenter --target PID --ipc --net -- client ...`. A server killed with SIGKILL takes
//! its IPC namespace, and so its queue and replicas, with it.
//!
//! Only link-local addresses (169.254.0.0/16) inside the namespaces made here are used, and
//! nothing is added to the machine's own network namespace. The [`Lan`] guard stops every
//! server and deletes every namespace (which deletes the veths and the bridge in it) when a
//! test ends, also when it fails; names carry the test process's pid, and namespaces left by a
//! test process that no longer exists are removed at the next run.
//!
//! This needs root (`ip netns add`), so the tests are `#[ignore]`d: `cargo test` lists them as
//! ignored, and CI runs them as root with `--include-ignored`; run so without root, each test
//! prints why it is skipped and passes.

mod common;

use common::{bin, run_with_limit, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Every node listens on the same port: each has a network namespace of its own.
const PORT: u16 = 7001;
/// Liveness only: generous, never a statement about speed.
const LIMIT: Duration = Duration::from_secs(20);
/// Namespaces made by these tests start with this; the pid of the test process follows.
const PREFIX: &str = "ipclab-rshm-";

/// Runs a setup command to completion and returns its output; `Err` with its stderr if it
/// failed.
fn run(args: &[&str]) -> Result<Output, String> {
    let out = run_with_limit(Command::new(args[0]).args(&args[1..]), LIMIT);
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("not root (euid {euid}); ip netns add needs root"));
    }
    for tool in [
        &["ip", "-V"][..],
        &["unshare", "--version"],
        &["nsenter", "--version"],
    ] {
        if let Err(e) = Command::new(tool[0]).args(&tool[1..]).output() {
            return Some(format!("no {} ({e})", tool[0]));
        }
    }
    None
}

/// Prints why a test is skipped; true if it must be.
fn skipped(test: &str) -> bool {
    match skip_reason() {
        Some(why) => {
            eprintln!("rshm_netns: {test}: skipped: {why}");
            true
        }
        None => false,
    }
}

/// Deletes namespaces that earlier runs left behind (their test process was killed before its
/// guard could run), and the servers still running in them: ours by prefix, and only those
/// whose test process is no longer alive.
fn remove_stale_namespaces() {
    let Ok(out) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid > 0 && !ipclab::sys::process::alive(pid) {
            // Deleting the name does not stop what runs inside: end its servers first.
            if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
                for p in String::from_utf8_lossy(&pids.stdout).lines() {
                    let p: i32 = p.trim().parse().unwrap_or(0);
                    if ipclab::sys::process::program_name(p).as_deref() == Some("rshm_server") {
                        let _ = ipclab::sys::process::kill(p, libc::SIGKILL);
                    }
                }
            }
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

/// A small LAN of namespaces with one `rshm_server` per node; all removed on drop.
struct Lan {
    /// `ipclab-rshm-<pid>-<n>`: the prefix of every namespace name.
    tag: String,
    /// 169.254.X.0/24: X, different for every LAN of a run.
    subnet: u8,
    /// Namespaces created so far (the hub first), deleted on drop.
    namespaces: Vec<String>,
    servers: Vec<Option<Child>>,
    /// The servers' logs (`node<i>.log`, appended across restarts); removed on drop.
    dir: PathBuf,
    /// The links of the machine's own network namespace when we began.
    root_links: Vec<String>,
}

impl Lan {
    /// Makes the hub and `n` nodes, linked through the hub's bridge; `Err` if `ip` cannot
    /// (the caller skips then). Starts no server.
    fn new(n: usize) -> Result<Lan, String> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let k = COUNT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut lan = Lan {
            tag: format!("{PREFIX}{pid}-{k}"),
            subnet: 1 + ((pid + k * 37) % 250) as u8,
            namespaces: Vec::new(),
            servers: (0..n).map(|_| None).collect(),
            dir: std::env::temp_dir().join(format!("ipclab-test-rshm-netns-{pid}-{k}")),
            root_links: root_links(),
        };
        std::fs::create_dir_all(&lan.dir).map_err(|e| format!("{}: {e}", lan.dir.display()))?;
        // One cluster secret, as if copied to every machine of the LAN (mode 0600).
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut bytes = [0u8; 32];
            ipclab::rshm::auth::random_bytes(&mut bytes).map_err(|e| e.to_string())?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(lan.dir.join("secret"))
                .and_then(|mut f| f.write_all(hex.as_bytes()))
                .map_err(|e| format!("writing the secret: {e}"))?;
        }
        let hub = lan.hub();
        lan.add_namespace(&hub)?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = lan.ns(i);
            lan.add_namespace(&ns)?;
            // The veth is made in the hub, its peer end moved straight into the node as eth0.
            let veth = format!("veth{i}");
            run(&[
                "ip", "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            run(&[
                "ip", "-n", &hub, "link", "set", &veth, "master", "br0", "up",
            ])?;
            let cidr = format!("{}/24", lan.ip(i));
            run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            // A cut as a teacher draws it: the nodes notice (a connection with frames unacked
            // for about 3 s breaks, instead of after 15 retries and many minutes), and once the
            // cable is back, frames still queued go out within a second (retransmission timer
            // capped at 1 s, instead of doubling up to 2 minutes). Both knobs are per network
            // namespace, so they touch only the namespaces made here; a kernel without them
            // (tcp_rto_max_ms is 6.15+) keeps its defaults and the generous deadlines cover it.
            for knob in ["net.ipv4.tcp_retries2=3", "net.ipv4.tcp_rto_max_ms=1000"] {
                let _ = run(&["ip", "netns", "exec", &ns, "sysctl", "-qw", knob]);
            }
        }
        Ok(lan)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    fn ip(&self, i: usize) -> String {
        format!("169.254.{}.{}", self.subnet, i + 1)
    }

    /// Node `i`'s name in the group: its listen address.
    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.ip(i))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.log"))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn pid(&self, i: usize) -> u32 {
        self.servers[i].as_ref().expect("node is running").id()
    }

    /// Starts node `i`'s server in its network namespace and a new IPC namespace, and waits
    /// until a client there gets an answer.
    fn start(&mut self, i: usize) {
        assert!(self.servers[i].is_none(), "node {i} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let server = bin("rshm_server");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i), "unshare", "--ipc", "--"])
            .arg(&server)
            .args(["--listen", &self.addr(i)])
            .arg("--secret")
            .arg(self.dir.join("secret"));
        for j in (0..self.servers.len()).filter(|&j| j != i) {
            c.args(["--peer", &self.addr(j)]);
        }
        c.env_remove("IPCLAB_TRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = c.spawn().expect("spawn ip netns exec");
        let pid = child.id() as i32;
        self.servers[i] = Some(child);
        // `ip` and `unshare` both exec: once the pid is rshm_server, both namespaces are set.
        assert!(
            wait_until(LIMIT, || ipclab::sys::process::program_name(pid).as_deref()
                == Some("rshm_server")),
            "node {i} never became rshm_server: {}",
            self.log(i)
        );
        assert!(
            wait_until(LIMIT, || self.client(i, &["ls"]).status.success()),
            "node {i} does not answer: {}",
            self.log(i)
        );
    }

    /// SIGKILL: no cleanup runs; the IPC namespace goes with the last process in it.
    fn kill(&mut self, i: usize) {
        let mut child = self.servers[i].take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM: the server leaves the group and exits 0.
    fn stop(&mut self, i: usize) {
        let mut child = self.servers[i].take().expect("node is running");
        ipclab::sys::process::kill(child.id() as i32, libc::SIGTERM).unwrap();
        let status = wait_exit(&mut child, LIMIT).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("node {i} ignored SIGTERM: {}", self.log(i))
        });
        assert!(
            status.success(),
            "node {i} exited {status}: {}",
            self.log(i)
        );
    }

    /// `client --port 7001 ARGS` in node `i`'s namespaces, run to completion.
    fn client(&self, i: usize, args: &[&str]) -> Output {
        let target = self.pid(i).to_string();
        let mut c = Command::new("nsenter");
        c.args(["--target", &target, "--ipc", "--net", "--"])
            .arg(bin("client"))
            .args(["--port", &PORT.to_string()])
            .args(args)
            .env_remove("IPCLAB_TRACE");
        run_with_limit(&mut c, LIMIT)
    }

    /// As `client`, asserting success; returns stdout.
    fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.client(i, args);
        assert!(
            out.status.success(),
            "client {args:?} on node {i} failed: {}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log(i)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What `client read KEY` prints on node `i`, or its error.
    fn read(&self, i: usize, key: &str) -> String {
        let out = self.client(i, &["read", key]);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            format!("error: {}", String::from_utf8_lossy(&out.stderr))
        }
    }

    /// Waits until node `i` has every peer up.
    fn connected(&self, i: usize) {
        assert!(
            wait_until(LIMIT, || {
                let ls = self.ok(i, &["ls"]);
                let first = ls.lines().next().unwrap_or("");
                first.contains(" up") && !first.contains("down")
            }),
            "node {i} never saw all peers up: {}",
            self.log(i)
        );
    }

    /// Node `i`'s table rows, split into columns (rshmid, key, size, owner, attaches, shmid,
    /// version, status).
    fn rows(&self, i: usize) -> Vec<Vec<String>> {
        self.ok(i, &["ls"])
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    /// The `ls` row of `key` on node `i`.
    fn row(&self, i: usize, key: &str) -> Option<Vec<String>> {
        let want = format!("0x{:08x}", ipclab::rshm::parse_key(key).unwrap());
        self.rows(i).into_iter().find(|r| r.get(1) == Some(&want))
    }

    /// How many objects of one kind (`msg`, `shm`, `sem`) node `i`'s IPC namespace holds.
    fn count(&self, i: usize, kind: &str) -> usize {
        let target = self.pid(i).to_string();
        let file = format!("/proc/sysvipc/{kind}");
        let out = run(&["nsenter", "--target", &target, "--ipc", "--", "cat", &file]).unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() - 1
    }

    /// The System V objects in node `i`'s IPC namespace: (queues, segments).
    fn objects(&self, i: usize) -> (usize, usize) {
        (self.count(i, "msg"), self.count(i, "shm"))
    }

    /// Cuts (`false`) or mends (`true`) node `i`'s cable: its port on the hub's bridge.
    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "-n",
            &self.hub(),
            "link",
            "set",
            &format!("veth{i}"),
            state,
        ])
        .unwrap();
    }

    /// Stops every server with SIGTERM (checking each exits 0), deletes the namespaces, and
    /// checks that none is left: the end of a test that passed.
    fn close(mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].is_some() {
                self.stop(i);
            }
        }
        self.remove_namespaces();
        let list = run(&["ip", "netns", "list"]).unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(
            !list.lines().any(|l| l.starts_with(&self.tag)),
            "namespaces left: {list}"
        );
        // Nothing was ever added to our own network namespace; check that it stayed so.
        assert_eq!(
            root_links(),
            self.root_links,
            "links in the machine's namespace"
        );
    }

    fn remove_namespaces(&mut self) {
        // Deleting a namespace deletes its devices: the veth pairs and the bridge go with it.
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = run(&["ip", "netns", "del", &ns]) {
                eprintln!("rshm_netns: {e}");
            }
        }
    }
}

/// The names of the links of the machine's own network namespace that these tests could make.
fn root_links() -> Vec<String> {
    let out = run(&["ip", "-o", "link"])
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with("veth") || name == "br0" || name == "eth0")
        .collect()
}

/// Waits for a child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().ok().flatten() {
            return Some(s);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.servers.len() {
                eprintln!("--- node {i} log ---\n{}", self.log(i));
            }
        }
        // SIGTERM first so that each server leaves cleanly; SIGKILL whoever is still there.
        for c in self.servers.iter().flatten() {
            let _ = ipclab::sys::process::kill(c.id() as i32, libc::SIGTERM);
        }
        for mut c in self.servers.drain(..).flatten() {
            if wait_exit(&mut c, Duration::from_secs(3)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.remove_namespaces();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A LAN with `n` nodes, all started and connected; `None` (the test is skipped) without root.
fn lan(test: &str, n: usize) -> Option<Lan> {
    if skipped(test) {
        return None;
    }
    remove_stale_namespaces();
    let mut lan = match Lan::new(n) {
        Ok(l) => l,
        // Root, yet no namespaces (a container without the capability, say): skip, and say so.
        Err(e) => {
            eprintln!("rshm_netns: {test}: skipped: cannot make network namespaces: {e}");
            return None;
        }
    };
    for i in 0..n {
        lan.start(i);
    }
    for i in 0..n {
        lan.connected(i);
    }
    Some(lan)
}

#[test]
#[ignore = "needs root (ip netns add): cargo test --test rshm_netns -- --include-ignored"]
fn nodes_in_their_own_namespaces_share_data_only_over_tcp() {
    let Some(lan) = lan("namespaces", 3) else {
        return;
    };
    // Three separate IPC and network namespaces, none of them ours.
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let me = std::process::id();
    for kind in ["ipc", "net"] {
        let all: std::collections::HashSet<_> = (0..3)
            .map(|i| ns(lan.pid(i), kind))
            .chain([ns(me, kind)])
            .collect();
        assert_eq!(all.len(), 4, "{kind} namespaces: {all:?}");
    }
    // Each node names itself and its peers by their link-local addresses.
    let first = lan.ok(1, &["ls"]).lines().next().unwrap().to_string();
    assert_eq!(
        first,
        format!(
            "node {} peers {} up, {} up",
            lan.addr(1),
            lan.addr(0),
            lan.addr(2)
        )
    );

    let id = lan.ok(0, &["write", "0x61", "hello", "across", "namespaces"]);
    for i in 0..3 {
        assert_eq!(lan.ok(i, &["read", "0x61"]), "hello across namespaces\n");
    }
    assert_eq!(lan.ok(2, &["write", "0x61", "and back"]), id);
    assert_eq!(lan.ok(0, &["read", "0x61"]), "and back\n");
    assert_eq!(lan.ok(1, &["read", "0x61"]), "and back\n");
    // The same row everywhere, owned by node 0; each node's replica in its own namespace: one
    // queue and one segment there, and nothing of any other node's.
    for i in 0..3 {
        let row = lan.row(i, "0x61").expect("row");
        assert_eq!(row[0], id.trim());
        assert_eq!(row[3], lan.addr(0));
        assert_eq!(
            lan.objects(i),
            (1, 1),
            "objects in node {i}'s IPC namespace"
        );
        // Two semaphore sets: the change gates and the alive set (`rshm::alive`).
        assert_eq!(
            lan.count(i, "sem"),
            2,
            "node {i}'s change gates and alive set"
        );
    }
    lan.close();
}

#[test]
#[ignore = "needs root (ip netns add): cargo test --test rshm_netns -- --include-ignored"]
fn a_node_killed_and_restarted_converges() {
    let Some(mut lan) = lan("restart", 3) else {
        return;
    };
    let id = lan.ok(0, &["write", "0x62", "before the crash"]);
    assert_eq!(lan.ok(2, &["read", "0x62"]), "before the crash\n");
    lan.kill(2);
    // The survivors notice at once (the kernel closed the dead server's sockets), and carry on
    // between themselves.
    assert!(
        wait_until(LIMIT, || lan
            .ok(0, &["ls"])
            .contains(&format!("{} down", lan.addr(2)))),
        "{}",
        lan.log(0)
    );
    lan.ok(1, &["write", "0x62", "written while C was dead"]);
    assert_eq!(lan.ok(0, &["read", "0x62"]), "written while C was dead\n");

    // Restarted: a new process in the same network namespace and a fresh IPC namespace (the
    // old one, with its replica, went with the killed process).
    lan.start(2);
    for i in 0..3 {
        lan.connected(i);
    }
    assert_eq!(lan.row(2, "0x62").expect("row after HELLO")[0], id.trim());
    assert_eq!(lan.objects(2), (1, 1));
    assert_eq!(
        lan.count(2, "sem"),
        2,
        "the restarted node's change gates and alive set"
    );
    // Issue 6 point 2 (late joiners get the contents in HELLO): once the restarted node shows
    // its peers up, the exchange is complete, and a reader there gets the current data at
    // once, without anybody writing again.
    assert_eq!(
        lan.read(2, "0x62"),
        "written while C was dead\n",
        "the restarted node must get the contents in the HELLO exchange"
    );
    // And it takes part fully again: its writes reach the others and theirs reach it.
    lan.ok(2, &["write", "0x62", "C is back"]);
    assert_eq!(lan.ok(0, &["read", "0x62"]), "C is back\n");
    assert_eq!(lan.ok(1, &["read", "0x62"]), "C is back\n");
    lan.ok(0, &["write", "0x62", "A again"]);
    assert_eq!(lan.ok(2, &["read", "0x62"]), "A again\n");
    lan.close();
}

#[test]
#[ignore = "needs root (ip netns add): cargo test --test rshm_netns -- --include-ignored"]
fn a_partitioned_node_converges_by_the_documented_order_once_healed() {
    let Some(lan) = lan("partition", 3) else {
        return;
    };
    lan.ok(0, &["write", "0x63", "before"]);
    lan.ok(0, &["write", "0x64", "before"]);
    for i in 0..3 {
        assert_eq!(lan.ok(i, &["read", "0x63"]), "before\n");
    }
    let v0: u64 = lan.row(0, "0x63").unwrap()[6].parse().unwrap();
    assert_eq!(lan.row(2, "0x64").unwrap()[6], v0.to_string());

    // Cut C's cable. Both sides keep serving their own programs and write the same segments,
    // neither seeing the other's writes:
    // - 0x63 once on each side: both updates get version v0+1, a tie;
    // - 0x64 twice on A's side (v0+1, v0+2) and once on C's (v0+1).
    // (A's second text differs from its first in every word that C's text touches, so that
    // the outcome is the same whether the nodes merge queued updates word by word or swap
    // whole contents in HELLO when they reconnect.)
    lan.link(2, false);
    // Every write may wait for acknowledgements that cannot come, so they run side by side.
    let (a, c) = std::thread::scope(|sc| {
        let a63 = sc.spawn(|| lan.client(0, &["write", "0x63", "majority"]));
        let a64 = sc.spawn(|| {
            let first = lan.client(0, &["write", "0x64", "majority 1"]);
            (first, lan.client(0, &["write", "0x64", "MAJORITY 2"]))
        });
        let c63 = sc.spawn(|| lan.client(2, &["write", "0x63", "minority"]));
        let c64 = sc.spawn(|| lan.client(2, &["write", "0x64", "minority"]));
        let a64 = a64.join().unwrap();
        (
            [a63.join().unwrap(), a64.0, a64.1],
            [c63.join().unwrap(), c64.join().unwrap()],
        )
    });
    // A write that cannot reach every peer either says so, naming the peer, or succeeds
    // because its server already counts the peer as down; it never hangs, and it is applied
    // on its own side either way.
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let cut_off = [
        (&a[..], lan.addr(2)),
        (&c[..], lan.addr(0)),
        (&c[..], lan.addr(1)),
    ];
    for (outputs, unreachable) in cut_off {
        for o in outputs.iter().filter(|o| !o.status.success()) {
            assert_eq!(o.status.code(), Some(1), "{}", err(o));
            assert!(err(o).contains(&unreachable), "{}", err(o));
        }
    }
    assert_eq!(lan.ok(1, &["read", "0x63"]), "majority\n");
    assert_eq!(lan.ok(1, &["read", "0x64"]), "MAJORITY 2\n");
    assert_eq!(lan.ok(2, &["read", "0x63"]), "minority\n");
    assert_eq!(lan.ok(2, &["read", "0x64"]), "minority\n");

    // Mend the cable: the nodes reconnect (HELLO with contents), or frames still queued go
    // through; either way every node must end with the same bytes, by the documented order
    // (`ipclab::rshm`, "Consistency model"): stamps (version, node address) compare by version,
    // then by address; the highest wins.
    lan.link(2, true);
    let a_addr: std::net::SocketAddrV4 = lan.addr(0).parse().unwrap();
    let c_addr: std::net::SocketAddrV4 = lan.addr(2).parse().unwrap();
    // 0x63, a tie in versions: the higher address wins.
    let tie = if c_addr > a_addr {
        "minority\n"
    } else {
        "majority\n"
    };
    // 0x64: A's side reached the higher version; that beats C's higher address.
    for (key, want, version) in [("0x63", tie, v0 + 1), ("0x64", "MAJORITY 2\n", v0 + 2)] {
        let mut seen = Vec::new();
        let converged = wait_until(LIMIT, || {
            seen = (0..3).map(|i| lan.read(i, key)).collect();
            seen.iter().all(|s| s == want)
        });
        assert!(
            converged,
            "{key} after healing: {seen:?}, but the order says {want:?} everywhere"
        );
        let versions: Vec<String> = (0..3)
            .map(|i| lan.row(i, key).unwrap()[6].clone())
            .collect();
        assert_eq!(versions, vec![version.to_string(); 3], "{key}'s versions");
    }
    for i in 0..3 {
        lan.connected(i);
    }
    // After the heal the group works as one again.
    lan.ok(1, &["write", "0x63", "healed"]);
    for i in 0..3 {
        assert_eq!(lan.ok(i, &["read", "0x63"]), "healed\n");
    }
    lan.close();
}

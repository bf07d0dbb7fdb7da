//! `cargo bench --bench dipc`: dipc against Redis, under the same load generator.
//!
//! The load: 50 connections, each a thread, doing a 50/50 mix of reads and writes of 1 KiB
//! messages over 50 mailboxes (Redis: GET/SET of 50 keys, spoken in RESP) for a fixed time.
//! Both servers run on this machine's loopback, started by the benchmark, and are measured in
//! alternation, three rounds each; the figures are the medians. The last line is the ratio of
//! dipc's ops/s to Redis's: `dipc_vs_redis_ops: R`.
//!
//! It also records the dipc server's peak RSS (`VmHWM`) with 200 idle clients connected.
//!
//! Everything is std-only, like the rest of ipclab. The machine is shared and noisy: read the
//! ratio, not the absolute numbers.

use ipclab::dipc::keys::key_for_port;
use ipclab::wire::dipc::{self as wire, Mailbox, Reply, Request};
use ipclab::wire::DecodeError;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 50;
const BOXES: u32 = 50;
const MESSAGE: usize = 1024;
const RUN: Duration = Duration::from_secs(2);
const ROUNDS: usize = 5;
const IDLE_CLIENTS: usize = 200;

/// One request/response protocol: how to read and write box `i`.
trait Proto: Send {
    fn write(&mut self, i: u32, data: &[u8]);
    fn read(&mut self, i: u32);
}

/// A connection with a read buffer (replies are parsed straight out of it).
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        Conn {
            s,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            out: Vec::with_capacity(2048),
        }
    }

    fn fill(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.s.read(&mut self.buf[self.end..]).expect("read");
        assert!(n > 0, "server closed the connection");
        self.end += n;
    }

    /// One line, without its "\r\n" or "\n"; returned as a range into the buffer.
    fn line(&mut self) -> (usize, usize) {
        loop {
            if let Some(p) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let (a, mut b) = (self.start, self.start + p);
                if b > a && self.buf[b - 1] == b'\r' {
                    b -= 1;
                }
                self.start += p + 1;
                return (a, b);
            }
            self.fill();
        }
    }

    fn skip(&mut self, mut n: usize) {
        while n > 0 {
            if self.start == self.end {
                self.fill();
            }
            let k = n.min(self.end - self.start);
            self.start += k;
            n -= k;
        }
    }

    fn number(&self, a: usize, b: usize) -> i64 {
        std::str::from_utf8(&self.buf[a..b])
            .unwrap()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "bad number in {:?}",
                    String::from_utf8_lossy(&self.buf[a..b])
                )
            })
    }

    fn send(&mut self) {
        self.s.write_all(&self.out).expect("write");
        self.out.clear();
    }
}

/// dipc's datagram, encoded and decoded by `ipclab::wire::dipc` like every dipc byte.
struct Dipc(Conn);

impl Dipc {
    fn reply(&mut self) -> u64 {
        let c = &mut self.0;
        loop {
            match wire::decode_reply(&c.buf[c.start..c.end]) {
                Ok((Reply::Ok(len), used)) => {
                    c.start += used;
                    return len;
                }
                Ok((other, _)) => panic!("dipc replied {other:?}"),
                Err(DecodeError::NeedMore(_)) => c.fill(),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

impl Proto for Dipc {
    fn write(&mut self, i: u32, data: &[u8]) {
        let c = &mut self.0;
        let req = Request::Write(Mailbox::Number(i.into()), data.len() as u64);
        wire::encode_request(&req, &mut c.out);
        c.out.extend_from_slice(data);
        c.send();
        self.reply();
    }
    fn read(&mut self, i: u32) {
        wire::encode_request(&Request::Read(Mailbox::Number(i.into())), &mut self.0.out);
        self.0.send();
        let len = self.reply() as usize;
        self.0.skip(len);
    }
}

/// Redis's RESP: `SET k v` → `+OK`; `GET k` → `$len\r\n<data>\r\n`.
struct Resp(Conn);

impl Proto for Resp {
    fn write(&mut self, i: u32, data: &[u8]) {
        let c = &mut self.0;
        let key = format!("box{i}");
        write!(
            c.out,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
            key.len(),
            data.len()
        )
        .unwrap();
        c.out.extend_from_slice(data);
        c.out.extend_from_slice(b"\r\n");
        c.send();
        let (a, b) = c.line();
        assert_eq!(&c.buf[a..b], b"+OK");
    }
    fn read(&mut self, i: u32) {
        let c = &mut self.0;
        let key = format!("box{i}");
        write!(c.out, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).unwrap();
        c.send();
        let (a, b) = c.line();
        assert_eq!(c.buf[a], b'$');
        let len = c.number(a + 1, b);
        if len >= 0 {
            c.skip(len as usize + 2);
        }
    }
}

/// Ops per second, and latency percentiles in microseconds.
#[derive(Clone, Copy, Debug)]
struct Figures {
    ops: f64,
    p50: f64,
    p99: f64,
}

/// The load generator: `CONNECTIONS` threads, each with its own connection from `connect`.
fn load(connect: impl Fn() -> Box<dyn Proto> + Sync) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(std::sync::Barrier::new(CONNECTIONS + 1));
    let mut all: Vec<u32> = Vec::new();
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|t| {
                let (stop, go, connect) = (stop.clone(), go.clone(), &connect);
                sc.spawn(move || {
                    let mut p = connect();
                    let msg = vec![b'a' + (t % 26) as u8; MESSAGE];
                    // xorshift32: the same sequence of boxes and operations in every run.
                    let mut x: u32 = 0x9e37_79b9 ^ (t as u32 + 1).wrapping_mul(2_654_435_761);
                    let mut lat = Vec::with_capacity(1 << 16);
                    go.wait();
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let i = x % BOXES;
                        let t0 = Instant::now();
                        if x & (1 << 20) != 0 {
                            p.write(i, &msg);
                        } else {
                            p.read(i);
                        }
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    lat
                })
            })
            .collect();
        go.wait();
        let t0 = Instant::now();
        std::thread::sleep(RUN);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            all.extend(h.join().unwrap());
        }
        elapsed = t0.elapsed();
    });
    all.sort_unstable();
    let pct = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64;
    Figures {
        ops: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn free_port() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if ipclab::sys::ipcs::with_key(key_for_port(p))
            .unwrap()
            .is_empty()
        {
            return p;
        }
    }
}

/// A child server, stopped with SIGTERM (so that dipc removes its objects) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = ipclab::sys::process::kill(self.0.id() as i32, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dipc(port: u16) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dipc"))
        .args([
            "--foreground",
            &BOXES.to_string(),
            "1",
            &port.to_string(),
            "1",
        ])
        .env_remove("IPCLAB_TRACE")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start dipc");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("dipc: serving"), "{line}");
    Running(child)
}

fn start_redis(port: u16) -> Option<Running> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let r = Running(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(r)
}

fn fill(p: &mut dyn Proto) {
    let msg = vec![b'z'; MESSAGE];
    for i in 0..BOXES {
        p.write(i, &msg);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn summary(name: &str, runs: &[Figures]) -> f64 {
    let ops = median(runs.iter().map(|f| f.ops).collect());
    let p50 = median(runs.iter().map(|f| f.p50).collect());
    let p99 = median(runs.iter().map(|f| f.p99).collect());
    println!(
        "{name:>5}: {ops:>9.0} ops/s   p50 {p50:>6.0} us   p99 {p99:>6.0} us   (median of {})",
        runs.len()
    );
    ops
}

/// The dipc server's peak RSS with `IDLE_CLIENTS` idle connections, in kB.
fn idle_rss() -> u64 {
    let port = free_port();
    let server = start_dipc(port);
    let mut clients = Vec::new();
    for _ in 0..IDLE_CLIENTS {
        // One request each, so that every client thread has really started and used its buffers.
        let mut c = Dipc(Conn::new(port));
        c.read(0);
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap();
    let hwm = ipclab::sys::proc_field(&status, "VmHWM:");
    drop(clients);
    hwm
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is accepted and ignored.
    println!(
        "dipc bench: {CONNECTIONS} connections, 50/50 r/w of {MESSAGE}-byte messages over {BOXES} boxes, {} s x {ROUNDS} rounds each",
        RUN.as_secs()
    );
    let dipc_port = free_port();
    let dipc = start_dipc(dipc_port);
    fill(&mut Dipc(Conn::new(dipc_port)));

    let redis_port = free_port();
    let redis = start_redis(redis_port);
    if redis.is_some() {
        fill(&mut Resp(Conn::new(redis_port)));
    }

    let (mut d, mut r) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let f = load(|| Box::new(Dipc(Conn::new(dipc_port))));
        println!(
            "round {round}: dipc  {:>9.0} ops/s  p50 {:>5.0} us  p99 {:>5.0} us",
            f.ops, f.p50, f.p99
        );
        d.push(f);
        if redis.is_some() {
            let f = load(|| Box::new(Resp(Conn::new(redis_port))));
            println!(
                "round {round}: redis {:>9.0} ops/s  p50 {:>5.0} us  p99 {:>5.0} us",
                f.ops, f.p50, f.p99
            );
            r.push(f);
        }
    }
    drop(dipc);
    drop(redis);
    let dipc_ops = summary("dipc", &d);
    let redis_ops = if r.is_empty() {
        None
    } else {
        Some(summary("redis", &r))
    };
    println!(
        "dipc peak RSS with {IDLE_CLIENTS} idle clients: {} kB (VmHWM)",
        idle_rss()
    );
    match redis_ops {
        Some(rops) => println!("dipc_vs_redis_ops: {:.2}", dipc_ops / rops),
        None => println!(
            "dipc_vs_redis_ops: skipped (redis-server not found; apt-get install redis-server)"
        ),
    }
}

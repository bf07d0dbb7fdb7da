//! `cargo bench --bench device`: the device's command round trip against a raw semop ping-pong.
//!
//! Ours: a real `device` process (`--ramp 0`, ticking every 100 ms as usual) and this process
//! as its client, through `ipclab::device::client::Client::get`: take the slot, write the
//! request, post CMD, wait for DONE, read the reply, give the slot back.
//!
//! The anchor: the least any two-process round trip over System V semaphores can cost. A second
//! process (this bench, started again with `IPCLAB_BENCH_PONG=<semid>`) and this one bounce
//! `CMD +1` / `DONE -1` over a set of the device's own shape (same size, same indices), with
//! nothing else: no slot, no lock, no shared memory.
//!
//! Both are measured in the same run, as [`REPEATS`] back-to-back pairs (which one goes first
//! alternates). The machine is shared and noisy, and worse, a two-process round trip costs
//! a few µs when the scheduler keeps both processes on one CPU and 15 µs when every wake-up crosses
//! to the other CPU, which depends on what the rest of the machine is doing at that moment. So
//! the figure is taken pair by pair: R is the median, over the pairs, of ours / raw (latencies,
//! so lower is better and 1.0 is the floor). The medians of each kind are printed too. The last
//! line is `device_roundtrip_vs_semop_pingpong: R`.

#![forbid(unsafe_code)]

use ipclab::device::client::Client;
use ipclab::device::{NSEMS, SEM_CMD, SEM_DONE};
use ipclab::sys::sem::{semget, SemId, SemOp};
use ipclab::sys::shm::Get;
use ipclab::sys::{is_removed, Owner, IPC_PRIVATE};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Round trips per measurement: short, so that a pair of measurements sees the same machine.
const ROUND_TRIPS: u32 = 5_000;
/// Measurements of each kind; the median is reported.
const REPEATS: usize = 31;
/// The environment variable that turns this program into the raw ping-pong's second process.
const PONG_ENV: &str = "IPCLAB_BENCH_PONG";

fn main() {
    if let Ok(id) = std::env::var(PONG_ENV) {
        pong(SemId(id.parse().expect("semid")));
        return;
    }
    let dir = std::env::temp_dir().join(format!("ipclab-bench-device-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key_file = dir.join("key");
    std::fs::write(&key_file, b"").expect("key file");

    // The device under test, in its own process, as a student would run it.
    let mut device = Running(
        Command::new(env!("CARGO_BIN_EXE_device"))
            .arg("-k")
            .arg(&key_file)
            .args(["--ramp", "0", "--period", "100"])
            .env_remove("IPCLAB_TRACE")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start device"),
    );
    let mut first = String::new();
    // Kept open until the device has exited, so that its goodbye line has somewhere to go.
    let mut said = BufReader::new(device.0.stdout.take().expect("stdout"));
    said.read_line(&mut first).expect("device's first line");
    assert!(first.starts_with("device: key"), "device said {first:?}");
    let key = ipclab::device::key(&key_file, ipclab::params::DEVICE_PROJ_ID).expect("ftok");
    let mut client = Client::open(key, Duration::from_secs(5)).expect("open device");

    // The anchor's set (owned here, removed on drop, which also ends the pong process).
    let raw = Owner::new(semget(IPC_PRIVATE, NSEMS, Get::Create(0o600)).expect("semget"));
    let mut ponger = Command::new(std::env::current_exe().expect("own path"))
        .env(PONG_ENV, raw.get().0.to_string())
        .spawn()
        .expect("start pong process");

    // Warm up both paths (page faults, caches, the scheduler's idea of who wakes whom).
    ours(&mut client, 2_000);
    ping(raw.get(), 2_000);

    let mut our_ns = Vec::new();
    let mut raw_ns = Vec::new();
    for i in 0..REPEATS {
        // Alternate which goes first, so that a drift in the machine's load favours neither.
        if i % 2 == 0 {
            our_ns.push(ours(&mut client, ROUND_TRIPS));
            raw_ns.push(ping(raw.get(), ROUND_TRIPS));
        } else {
            raw_ns.push(ping(raw.get(), ROUND_TRIPS));
            our_ns.push(ours(&mut client, ROUND_TRIPS));
        }
    }
    // Each pair ran back to back on the same machine: their ratio is the steadiest figure.
    let mut pairs: Vec<f64> = our_ns.iter().zip(&raw_ns).map(|(o, r)| o / r).collect();
    let paired = median(&mut pairs);
    let (o, r) = (median(&mut our_ns), median(&mut raw_ns));
    println!("device command round trip (get): median {o:.0} ns over {REPEATS}x{ROUND_TRIPS}");
    println!("raw two-process semop ping-pong:  median {r:.0} ns over {REPEATS}x{ROUND_TRIPS}");
    println!("all ours, sorted (ns): {}", list(&our_ns));
    println!("all raw, sorted (ns):  {}", list(&raw_ns));
    println!("ratio of the two medians: {:.2}", o / r);

    drop(client);
    drop(raw);
    let _ = ponger.wait();
    drop(device);
    drop(said);
    let _ = std::fs::remove_dir_all(&dir);
    println!("device_roundtrip_vs_semop_pingpong: {paired:.2}");
}

/// The device process, stopped with SIGTERM when dropped (it then removes its objects), so that
/// a bench that panics half-way leaves no device running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = ipclab::sys::process::kill(self.0.id() as i32, ipclab::sys::process::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `n` device commands; nanoseconds per round trip.
fn ours(client: &mut Client, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        client.get(0).expect("get");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

/// `n` raw round trips; nanoseconds per round trip.
fn ping(sems: SemId, n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        sems.op(&[SemOp::post(SEM_CMD)]).expect("post");
        sems.op(&[SemOp::wait(SEM_DONE)]).expect("wait");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

/// The other end of the raw ping-pong, until the set is removed.
fn pong(sems: SemId) {
    loop {
        let r = sems
            .op(&[SemOp::wait(SEM_CMD)])
            .and_then(|()| sems.op(&[SemOp::post(SEM_DONE)]));
        match r {
            Ok(()) => {}
            Err(e) if is_removed(&e) => return,
            Err(e) => panic!("pong: {e}"),
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}

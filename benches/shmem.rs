//! Benchmark: shmem reads and writes per second on a 4 KiB segment, 1 writer and 4 readers.
//!
//! The main figure uses **processes**, the library's main use: this benchmark starts itself
//! five more times (`IPCLAB_SHMEM_BENCH_ROLE=reader|writer`), one writer and four readers, all
//! on the same segment and key file. They start together at an agreed wall-clock instant, run
//! for `WINDOW`, and each prints how many operations it completed. The same workload then runs
//! as **threads** of this one process (each operation has its own lock description, so it is
//! the same kernel lock), and, as the anchor, one thread alone reads and then writes with
//! nobody else around: the cost of two flock calls and a 4 KiB copy with no contention.
//!
//! Each setting is repeated `REPEATS` times and the median is reported, because the machine is
//! shared and noisy. The last line is the summary for processes:
//!
//! ```text
//! shmem_ops_per_sec: reads=R writes=W
//! ```
//!
//! Expect few writes next to many reads: Linux grants `LOCK_SH` to a new reader while other
//! readers still hold it, even when a writer waits, so four busy readers keep the writer out
//! most of the time (the shmem module header says so under "Limits").

use ipclab::shmem::Shmem;
use ipclab::sys::Owner;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SIZE: usize = 4096;
const READERS: usize = 4;
const WINDOW: Duration = Duration::from_millis(500);
const REPEATS: usize = 5;
const ROLE_ENV: &str = "IPCLAB_SHMEM_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        child(&role);
        return;
    }
    let dir = std::env::temp_dir().join(format!("ipclab-bench-shmem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("key");
    let shm = Shmem::open(&path, SIZE).expect("open the bench segment");
    // The benchmark owns its segment: removed when `_owner` drops, at the end of main.
    let _owner = Owner::new(shm.id());
    println!(
        "shmem bench: {SIZE}-byte segment, 1 writer and {READERS} readers, {REPEATS} x {WINDOW:?}"
    );

    let (r, w) = median_of(|| alone(&shm));
    println!("anchor, one thread alone (no contention): reads={r:.0}/s writes={w:.0}/s");
    let (r, w) = median_of(|| threads(&shm));
    println!("threads of one process:                   reads={r:.0}/s writes={w:.0}/s");
    let (r, w) = median_of(|| processes(&path));
    println!("separate processes:                       reads={r:.0}/s writes={w:.0}/s");
    println!("(medians of {REPEATS}; other programs on this machine add noise)");

    drop(shm);
    let _ = std::fs::remove_dir_all(&dir);
    println!("shmem_ops_per_sec: reads={r:.0} writes={w:.0}");
}

/// Runs `f` REPEATS times, printing each (reads/s, writes/s), and returns the medians.
fn median_of(mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for _ in 0..REPEATS {
        let (r, w) = f();
        reads.push(r);
        writes.push(w);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let line = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  runs: reads [{}] writes [{}]",
        line(&reads),
        line(&writes)
    );
    (med(&mut reads), med(&mut writes))
}

/// Reads for one window, then writes for one window, with nobody else on the segment.
fn alone(shm: &Shmem) -> (f64, f64) {
    let end = Instant::now() + WINDOW;
    let reads = run_until(shm, "reader", end);
    let end = Instant::now() + WINDOW;
    let writes = run_until(shm, "writer", end);
    (per_sec(reads), per_sec(writes))
}

fn threads(shm: &Shmem) -> (f64, f64) {
    let end = Instant::now() + WINDOW;
    std::thread::scope(|s| {
        let w = s.spawn(|| run_until(shm, "writer", end));
        let rs: Vec<_> = (0..READERS)
            .map(|_| s.spawn(|| run_until(shm, "reader", end)))
            .collect();
        let reads: u64 = rs.into_iter().map(|h| h.join().unwrap()).sum();
        (per_sec(reads), per_sec(w.join().unwrap()))
    })
}

fn processes(path: &Path) -> (f64, f64) {
    // Everybody starts at the same wall-clock instant, far enough ahead for all to be ready.
    let start = SystemTime::now() + Duration::from_millis(300);
    let start_ns = start
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let exe = std::env::current_exe().expect("bench executable");
    let spawn = |role: &str| {
        Command::new(&exe)
            .env(ROLE_ENV, role)
            .env("IPCLAB_SHMEM_BENCH_PATH", path)
            .env("IPCLAB_SHMEM_BENCH_START", &start_ns)
            .env_remove("IPCLAB_TRACE")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a bench child")
    };
    let writer = spawn("writer");
    let readers: Vec<_> = (0..READERS).map(|_| spawn("reader")).collect();
    let count = |c: std::process::Child| -> u64 {
        let out = c.wait_with_output().expect("bench child");
        assert!(out.status.success(), "a bench child failed");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a count")
    };
    let writes = count(writer);
    let reads: u64 = readers.into_iter().map(count).sum();
    (per_sec(reads), per_sec(writes))
}

/// A child process: open the segment, wait for the start instant, run one window, print the
/// number of operations.
fn child(role: &str) {
    let path = PathBuf::from(std::env::var_os("IPCLAB_SHMEM_BENCH_PATH").expect("path"));
    let start_ns: u128 = std::env::var("IPCLAB_SHMEM_BENCH_START")
        .expect("start")
        .parse()
        .expect("start ns");
    let shm = Shmem::open(&path, SIZE).expect("open");
    let start = UNIX_EPOCH + Duration::from_nanos(start_ns as u64);
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    let n = run_until(&shm, role, Instant::now() + WINDOW);
    println!("{n}");
}

/// Reads (or writes distinct full-size buffers) until `end`; returns the operation count.
fn run_until(shm: &Shmem, role: &str, end: Instant) -> u64 {
    let mut buf = vec![0u8; SIZE];
    let mut n = 0u64;
    while Instant::now() < end {
        if role == "writer" {
            buf.fill(n as u8);
            shm.write(&buf).expect("write");
        } else {
            shm.read(&mut buf).expect("read");
        }
        n += 1;
    }
    n
}

fn per_sec(n: u64) -> f64 {
    n as f64 / WINDOW.as_secs_f64()
}

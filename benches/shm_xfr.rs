//! Benchmark: a 1 GiB stream through `shm_writer --stream | shm_reader --stream`, against a
//! plain pipe (`cat FILE | cat`) in the same run, on the same file and into the same sink.
//!
//! ```text
//! cargo bench --bench shm_xfr                       # the comparison; last line is the ratio
//! SHM_XFR_SWEEP=1 cargo bench --bench shm_xfr       # also try other ring shapes (slow)
//! ```
//!
//! Why the ring should win: a pipe copies every byte twice (from the first `cat` into the
//! kernel's pipe buffer, and out again into the second `cat`), 64 KiB at a time, waking the
//! other side at every turn. The ring copies each byte once into the segment (`read(2)` from
//! the file, straight into a slot) and hands it on from there (`write(2)` straight from the
//! slot), with two semaphore operations per side per 256 KiB slot.
//!
//! The sink is `/dev/null` for the ratio: it measures the transport, not the speed at which a
//! filesystem can allocate 1 GiB of pages (which would be the same large cost on both sides
//! and would hide the difference). A regular-file sink is measured too and printed for
//! information.
//!
//! Method: the input file is written once and is then in the page cache; each variant runs
//! `REPEATS` times, alternating, and the median counts (other programs load the machine).
//! Byte-exactness is checked once, outside the timed runs, by piping the reader into `cmp`.
//! The last line is exactly `shm_stream_vs_pipe: R`, R = our throughput / the pipe's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;
const REPEATS: usize = 5;

fn main() {
    let writer = env!("CARGO_BIN_EXE_shm_writer");
    let reader = env!("CARGO_BIN_EXE_shm_reader");
    let dir = std::env::temp_dir().join(format!("ipclab-bench-xfr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let _cleanup = RemoveDir(dir.clone());
    let input = dir.join("input.bin");
    let key = dir.join("key");
    std::fs::write(&key, b"").expect("key file");
    write_input(&input, SIZE);

    let ours = |ring: &str, sink: &str| {
        format!(
            "{writer} --stream {ring} -k {k} < {i} 2>/dev/null | {reader} --stream -k {k} > {sink} 2>/dev/null",
            k = key.display(),
            i = input.display()
        )
    };
    let pipe = |sink: &str| format!("cat {} | cat > {sink}", input.display());

    // Byte-exactness, once, untimed.
    let check = format!(
        "{writer} --stream -k {k} < {i} 2>/dev/null | {reader} --stream -k {k} 2>/dev/null | cmp - {i}",
        k = key.display(),
        i = input.display()
    );
    assert!(
        sh(&check).is_some(),
        "the stream through the ring differs from its input"
    );
    println!("binaries: {writer}, {reader}");
    println!("byte-exact: 1 GiB through the ring compares equal to the input (cmp)");

    let null = "/dev/null";
    let (t_ours, t_pipe) = compare(&ours("", null), &pipe(null));
    let file_sink = dir.join("sink.bin");
    let fs = file_sink.display().to_string();
    let (f_ours, f_pipe) = compare(&ours("", &fs), &pipe(&fs));
    let _ = std::fs::remove_file(&file_sink);

    if std::env::var_os("SHM_XFR_SWEEP").is_some() {
        println!("ring shapes, sink /dev/null (median of {REPEATS}):");
        for ring in [
            "--slots 1 --slot-size 65536",
            "--slots 2 --slot-size 65536",
            "--slots 4 --slot-size 65536",
            "--slots 8 --slot-size 65536",
            "--slots 2 --slot-size 262144",
            "--slots 4 --slot-size 262144",
            "--slots 8 --slot-size 262144",
            "--slots 4 --slot-size 1048576",
            "--slots 8 --slot-size 1048576",
            "--slots 4 --slot-size 4194304",
        ] {
            let t = median(REPEATS, || sh(&ours(ring, null)).expect("ring run"));
            println!("  {ring:<30} {}", rate(t));
        }
    }

    println!("shm ring -> /dev/null:  {}", rate(t_ours));
    println!("pipe     -> /dev/null:  {}", rate(t_pipe));
    println!("shm ring -> file:       {}", rate(f_ours));
    println!("pipe     -> file:       {}", rate(f_pipe));
    println!(
        "(file sink, for information: ratio {:.2})",
        f_pipe.as_secs_f64() / f_ours.as_secs_f64()
    );
    println!(
        "shm_stream_vs_pipe: {:.2}",
        t_pipe.as_secs_f64() / t_ours.as_secs_f64()
    );
}

/// Medians of `a` and `b`, run alternately `REPEATS` times each.
fn compare(a: &str, b: &str) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        ta.push(sh(a).expect("timed run"));
        tb.push(sh(b).expect("timed run"));
    }
    (mid(ta), mid(tb))
}

fn median(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    mid((0..n).map(|_| f()).collect())
}

fn mid(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs a bash command line; its wall time, or None if it failed.
fn sh(line: &str) -> Option<Duration> {
    let t = Instant::now();
    let ok = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {line}"))
        .stdin(Stdio::null())
        .status()
        .expect("bash")
        .success();
    ok.then(|| t.elapsed())
}

fn rate(t: Duration) -> String {
    let mib = SIZE as f64 / (1 << 20) as f64;
    format!(
        "{:8.0} MiB/s  ({:.3} s per GiB)",
        mib / t.as_secs_f64(),
        t.as_secs_f64()
    )
}

/// Writes `size` pseudo-random bytes (xorshift64: incompressible enough, and fast).
fn write_input(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// Removes the bench's directory (the 1 GiB input) on the way out.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

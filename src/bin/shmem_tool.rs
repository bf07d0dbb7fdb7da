//! shmem_tool: the shmem library (seed 004) from the command line, one library call per command.
//!
//! The seed is a library with no programs of its own. This tool exists so that a shell, a
//! grading script or a test can drive the library from *separate processes*: write from one,
//! read from another, hold the lock in a third and kill it with SIGKILL. Each command opens the
//! segment of KEYFILE, makes one call and exits.
//!
//! Protocol: none beyond the library's: `write` copies in under `flock(LOCK_EX)` on KEYFILE,
//! `read` copies the whole segment out under `flock(LOCK_SH)`, and `incr` adds 1 to a counter
//! in the first 8 bytes (a little-endian u64) with `Shmem::update`: read, add and write back
//! under *one* `LOCK_EX`, so that racing incrementers never lose an update. Start order: any;
//! the first command with `--size` creates KEYFILE and the segment, and `delete` removes it.
//!
//! Ownership: shmem_tool owns no object. The segment is a shared store that outlives every
//! command; it goes only when someone runs `delete`. So the tool does not block SIGINT/SIGTERM:
//! Ctrl-C leaves nothing behind, and a command waiting for a lock must stay interruptible.
//!
//! ```text
//! $ shmem_tool write /tmp/k --size 64 hello shared memory
//! $ shmem_tool read /tmp/k --text
//! hello shared memory
//! $ shmem_tool stat /tmp/k
//! key=0x4d00c4fa shmid=688160 size=64 attaches=1 created=no
//! $ shmem_tool hold /tmp/k --exclusive &
//! holding LOCK_EX on /tmp/k (pid 27200)
//! $ shmem_tool hammer /tmp/k --writers 2 --readers 2 --count 5000 &   # waits for the lock...
//! $ kill -KILL 27200                    # ...until the holder dies: the kernel drops its lock
//! reads=10000 writes=10976 torn=0 changes=5
//! $ shmem_tool incr /tmp/k --count 500 & shmem_tool incr /tmp/k --count 500 --threads 2
//! counter=1480
//! $ wait; shmem_tool incr /tmp/k
//! counter=1501
//! $ shmem_tool delete /tmp/k
//! deleted key=0x4d00c4fa shmid=688160
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Args, Failure};
use ipclab::params::{SHMEM_HAMMER_COUNT, SHMEM_HAMMER_MAX_THREADS};
use ipclab::shmem::hammer::{self, Hammer};
use ipclab::shmem::{LockKind, Shmem};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: shmem_tool COMMAND KEYFILE [OPTIONS] [TEXT...]

The shmem library from the command line: one System V segment per key file, locked with
flock(2) on that file.

Commands:
  write KEYFILE [TEXT...]   write TEXT (the words joined by spaces; stdin if no TEXT) at the
                            start of the segment, under LOCK_EX; the bytes after it stay
  read KEYFILE [--text]     print the whole segment, under LOCK_SH; --text prints it up to
                            the first NUL byte, then a newline
  hold KEYFILE --shared|--exclusive [--for SECS]
                            take the lock, print 'holding ...', keep it SECS seconds
                            (default: until killed)
  hammer KEYFILE [--writers W] [--readers R] [--count N] [--first-writer N]
                            torn-read check: W writer threads (default 1) write whole stamp
                            patterns, R reader threads (default 1) check every read; each does
                            at least N operations (default 1000), and with writers, readers go
                            on until they have seen a write; prints
                            'reads=N writes=N torn=N changes=N', exits 1 if any read was torn;
                            W and R at most 256 each, N at most 1000000000
  incr KEYFILE [--count N] [--threads T]
                            add 1 to the little-endian u64 in the first 8 bytes, N times
                            (default 1) in each of T threads (default 1), each time a read,
                            an add and a write under one LOCK_EX; prints 'counter=N', the
                            value after this command's last increment; T at most 256
  stat KEYFILE              print key, shmid, size, attach count, and whether we created it
  delete KEYFILE            remove the segment

Options:
  -s, --size N     open the N-byte segment of KEYFILE, creating KEYFILE and the segment if
                   missing (an existing segment of another size is an error); without
                   --size the segment must exist already
  -h, --help       show this help

Exit status: 0 ok, 1 runtime error (or torn reads), 2 usage error.
";

#[derive(Default)]
struct Opts {
    size: Option<usize>,
    text: bool,
    lock: Option<LockKind>,
    hold_for: Option<Duration>,
    hammer: Option<Hammer>,
    incr_count: Option<u64>,
    threads: usize,
    words: Vec<String>,
}

fn main() -> ExitCode {
    cli::run(USAGE, body)
}

fn body(mut args: Args) -> Result<(), Failure> {
    let mut command = None;
    let mut path = None;
    let mut o = Opts {
        threads: 1,
        ..Opts::default()
    };
    let mut h = Hammer {
        writers: 1,
        readers: 1,
        count: SHMEM_HAMMER_COUNT,
        first_writer: 1,
    };
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-s" | "--size") => o.size = Some(args.parse("--size")?),
            Arg::Flag("--text") => o.text = true,
            Arg::Flag("--shared") => o.lock = Some(LockKind::Shared),
            Arg::Flag("--exclusive") => o.lock = Some(LockKind::Exclusive),
            Arg::Flag("--for") => o.hold_for = Some(args.seconds("--for")?),
            Arg::Flag("--writers") => h.writers = args.parse("--writers")?,
            Arg::Flag("--readers") => h.readers = args.parse("--readers")?,
            // --count is hammer's operation count and incr's increment count.
            Arg::Flag("--count") => {
                let n: u64 = args.parse("--count")?;
                h.count = n;
                o.incr_count = Some(n);
            }
            Arg::Flag("--threads") => o.threads = args.parse("--threads")?,
            Arg::Flag("--first-writer") => h.first_writer = args.parse("--first-writer")?,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) if command.is_none() => command = Some(w),
            Arg::Word(w) if path.is_none() => path = Some(w),
            Arg::Word(w) => o.words.push(w),
        }
    }
    h.check().map_err(Failure::usage)?;
    o.hammer = Some(h);
    let command = command.ok_or_else(|| Failure::usage("missing COMMAND"))?;
    if !["write", "read", "hold", "hammer", "incr", "stat", "delete"].contains(&command.as_str()) {
        return Err(Failure::usage(format!("unknown command '{command}'")));
    }
    let path = path.ok_or_else(|| Failure::usage(format!("{command}: missing KEYFILE")))?;
    if !o.words.is_empty() && command != "write" {
        return Err(Failure::usage(format!(
            "{command}: unexpected argument '{}'",
            o.words[0]
        )));
    }
    match command.as_str() {
        "write" => write(&path, &o),
        "read" => read(&path, &o),
        "hold" => hold(&path, &o),
        "hammer" => run_hammer(&path, &o),
        "incr" => incr(&path, &o),
        "stat" => stat(&path, &o),
        _ => delete(&path, &o),
    }
}

/// `--size N` opens or creates; without it the segment must exist.
fn open(path: &str, o: &Opts) -> Result<Shmem, Failure> {
    Ok(match o.size {
        Some(size) => Shmem::open(path, size)?,
        None => Shmem::open_existing(path)?,
    })
}

fn write(path: &str, o: &Opts) -> Result<(), Failure> {
    let shm = open(path, o)?;
    let data = if o.words.is_empty() {
        // At most one byte more than fits: enough for `write` to refuse it, and `yes |` cannot
        // fill memory.
        let mut v = Vec::new();
        std::io::stdin()
            .take(shm.size() as u64 + 1)
            .read_to_end(&mut v)
            .map_err(|e| Failure::runtime(format!("reading stdin: {e}")))?;
        v
    } else {
        o.words.join(" ").into_bytes()
    };
    shm.write(&data)?;
    Ok(())
}

fn read(path: &str, o: &Opts) -> Result<(), Failure> {
    let shm = open(path, o)?;
    let mut buf = vec![0u8; shm.size()];
    shm.read(&mut buf)?;
    if o.text {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        buf.push(b'\n');
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(format!("writing stdout: {e}")))
}

fn hold(path: &str, o: &Opts) -> Result<(), Failure> {
    let kind = o
        .lock
        .ok_or_else(|| Failure::usage("hold: say --shared or --exclusive"))?;
    let shm = open(path, o)?;
    let name = match kind {
        LockKind::Shared => "LOCK_SH",
        LockKind::Exclusive => "LOCK_EX",
    };
    shm.locked(kind, || {
        // Printed (and flushed) only once the lock is ours: a script waits for this line. (If
        // nobody reads it any more, holding the lock still does what was asked.)
        let _ = cli::say(&format!(
            "holding {name} on {path} (pid {})",
            std::process::id()
        ));
        match o.hold_for {
            Some(d) => std::thread::sleep(d),
            // Until killed: the kernel releases the lock when the process dies.
            None => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
        }
    })?;
    cli::say(&format!("released {name} on {path}"))?;
    Ok(())
}

fn run_hammer(path: &str, o: &Opts) -> Result<(), Failure> {
    let shm = open(path, o)?;
    let h = o.hammer.expect("set by body");
    let report = hammer::run(&shm, h)?;
    cli::say(&report.line())?;
    if report.torn > 0 {
        return Err(Failure::runtime(format!(
            "hammer: {} of {} reads were torn; the first: {}",
            report.torn,
            report.reads,
            report.first_torn.unwrap_or_default()
        )));
    }
    Ok(())
}

/// The counter `incr` keeps: the first 8 bytes of the segment, a little-endian u64.
const COUNTER_BYTES: usize = 8;

fn incr(path: &str, o: &Opts) -> Result<(), Failure> {
    // Checked before the segment is opened: a usage error changes nothing.
    if o.threads == 0 || o.threads > SHMEM_HAMMER_MAX_THREADS {
        return Err(Failure::usage(format!(
            "--threads {}: from 1 to {SHMEM_HAMMER_MAX_THREADS}",
            o.threads
        )));
    }
    let shm = open(path, o)?;
    if shm.size() < COUNTER_BYTES {
        return Err(Failure::runtime(format!(
            "incr: the segment has {} bytes; the counter needs {COUNTER_BYTES}",
            shm.size()
        )));
    }
    let count = o.incr_count.unwrap_or(1);
    let add_one = |b: &mut [u8]| {
        let mut word = [0u8; COUNTER_BYTES];
        word.copy_from_slice(&b[..COUNTER_BYTES]);
        let n = u64::from_le_bytes(word).wrapping_add(1);
        b[..COUNTER_BYTES].copy_from_slice(&n.to_le_bytes());
        n
    };
    // Each thread returns the value after its own last increment; the largest is this
    // command's last. Threads share one `Shmem`: each update takes its own lock description.
    let last = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..o.threads)
            .map(|_| {
                sc.spawn(|| -> std::io::Result<u64> {
                    let mut last = 0;
                    for _ in 0..count {
                        last = shm.update(add_one)?;
                    }
                    Ok(last)
                })
            })
            .collect();
        let mut last = 0;
        for w in workers {
            last = last.max(w.join().expect("an incr thread panicked")?);
        }
        Ok::<u64, std::io::Error>(last)
    })?;
    if count == 0 {
        // Nothing added: print the counter as it is.
        let mut b = vec![0u8; shm.size()];
        shm.read(&mut b)?;
        let mut word = [0u8; COUNTER_BYTES];
        word.copy_from_slice(&b[..COUNTER_BYTES]);
        cli::say(&format!("counter={}", u64::from_le_bytes(word)))?;
    } else {
        cli::say(&format!("counter={last}"))?;
    }
    Ok(())
}

fn stat(path: &str, o: &Opts) -> Result<(), Failure> {
    let shm = open(path, o)?;
    let st = shm.stat()?;
    cli::say(&format!(
        "key=0x{:08x} shmid={} size={} attaches={} created={}",
        shm.key(),
        shm.id().0,
        st.size,
        st.attaches,
        if shm.created() { "yes" } else { "no" }
    ))?;
    Ok(())
}

fn delete(path: &str, o: &Opts) -> Result<(), Failure> {
    let shm = open(path, o)?;
    let (key, id) = (shm.key(), shm.id().0);
    shm.delete()?;
    cli::say(&format!("deleted key=0x{key:08x} shmid={id}"))?;
    Ok(())
}

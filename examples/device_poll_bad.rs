//! The BAD half of a pair: wait for a channel to settle by *polling* the shared registers.
//!
//! This program sets channel CH to TARGET on a running `device`, then waits until the readback
//! has got there by reading the channel's status word in a tight loop, without the semaphore
//! lock. Two things are wrong with that, and the lab's exercise 1 measures the first:
//!
//! 1. It burns a whole CPU doing nothing useful: the registers change once per `--period`, but
//!    it reads them millions of times in between, stealing the core the device needs.
//! 2. It reads without LOCK, so it may see a channel half-written (a new setpoint with an old
//!    readback). Here that is rare, because a channel is 32 bytes copied in one go; with bigger
//!    registers, or a compiler that reorders, it is a real bug.
//!
//! Compare `examples/device_block_good.rs`, which sleeps on the update semaphore instead.
//!
//! ```text
//! $ device -k /tmp/lab --ramp 2 &
//! $ cargo run --release --example device_poll_bad -- -k /tmp/lab 0 3
//! settled: channel=0 setpoint=3.000 readback=3.000 status=ok
//! polled 74005403 times in 1498 ms, using 1490 ms of CPU
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::device::client::Client;
use ipclab::device::{channel_line, key};
use ipclab::params;
use ipclab::wire::device::ChannelStatus;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "Usage: device_poll_bad [-k PATH] [-i ID] CH TARGET\n";

fn main() -> ExitCode {
    cli::run(USAGE, |mut args| {
        let mut path = PathBuf::from(params::DEVICE_KEY_PATH);
        let mut proj = params::DEVICE_PROJ_ID;
        let mut words = Vec::new();
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag("-k" | "--key-path") => path = PathBuf::from(args.value("-k")?),
                Arg::Flag("-i" | "--proj-id") => proj = args.parse("-i")?,
                Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
                Arg::Word(w) => words.push(w),
            }
        }
        let [ch, target] = &words[..] else {
            return Err(Failure::usage("expected CH TARGET"));
        };
        let ch: u16 = cli::parse_word("CH", ch)?;
        let target: f64 = cli::parse_word("TARGET", target)?;
        let mut client = Client::open(key(&path, proj)?, params::DEVICE_CLIENT_TIMEOUT)?;
        client.set(ch, target)?;
        let (start, cpu0) = (Instant::now(), cpu_ms());
        let mut polls = 0u64;
        // BAD: spin on shared memory. No sleep, no lock, no limit.
        let last = loop {
            let c = client.peek_unlocked(ch)?;
            polls += 1;
            if c.status == ChannelStatus::Ok && c.setpoint == target {
                break c;
            }
        };
        println!("settled: {}", channel_line(ch, &last));
        println!(
            "polled {polls} times in {} ms, using {} ms of CPU",
            start.elapsed().as_millis(),
            cpu_ms() - cpu0
        );
        Ok(())
    })
}

/// CPU time this process has used (user + system), in ms, from /proc/self/stat (fields 14 and
/// 15, in clock ticks of 1/100 s, which is what Linux reports to user space).
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state), so utime (field 14) is f[11] and stime f[12].
    let tick = |i: usize| f.get(i).and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) * 10
}

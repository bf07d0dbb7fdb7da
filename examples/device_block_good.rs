//! The GOOD half of a pair: wait for a channel to settle by *blocking* on the update semaphore.
//!
//! Same job as `examples/device_poll_bad.rs`: set channel CH to TARGET, wait until the readback
//! has got there. But this one sleeps in the kernel until the device opens its UPDATE gate (a
//! `semop` waiting for zero), then reads the channel under the LOCK semaphore, once per update:
//! it wakes exactly as often as there is something new to see, uses almost no CPU, and always
//! sees a channel whole. It is what `device_client watch` does (`Client::wait_update`).
//!
//! ```text
//! $ device -k /tmp/lab --ramp 2 &
//! $ cargo run --release --example device_block_good -- -k /tmp/lab 0 3
//! settled: channel=0 setpoint=3.000 readback=3.000 status=ok
//! woke 15 times in 1497 ms, using 0 ms of CPU
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

const USAGE: &str = "Usage: device_block_good [-k PATH] [-i ID] CH TARGET\n";

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
        let mut wakeups = 0u64;
        // GOOD: sleep until the device says "updated", then read under the lock.
        let mut snap = client.snapshot(ch)?;
        while !(snap.channel.status == ChannelStatus::Ok && snap.channel.setpoint == target) {
            snap = client.wait_update(ch, snap.update)?;
            wakeups += 1;
        }
        println!("settled: {}", channel_line(ch, &snap.channel));
        println!(
            "woke {wakeups} times in {} ms, using {} ms of CPU",
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

//! `device_client`: the device support: commands for a running `device`, and a channel watcher
//! (seed 003).
//!
//! `set` and `get` are command round trips through the device's command block: take the command
//! slot, write the request, post CMD, wait for DONE, read the reply. `watch` sleeps on the
//! device's update gate and prints the channel, read under the register lock, after every
//! periodic update. Every wait is bounded by `--timeout` and checks that the device is alive,
//! so a client never hangs on a dead device. The client removes nothing: the device owns the
//! objects.
//!
//! Start order: `device` first (same `-k`/`-i`).
//!
//! ```text
//! $ device_client -k /tmp/lab set 1 3
//! ok
//! $ device_client -k /tmp/lab watch 1 --count 3
//! update=41 channel=1 setpoint=3.000 readback=0.100 status=ramping
//! update=42 channel=1 setpoint=3.000 readback=0.200 status=ramping
//! update=43 channel=1 setpoint=3.000 readback=0.300 status=ramping
//! $ device_client -k /tmp/lab get 7
//! device_client: get: channel 7 out of range: the device has channels 0..3
//! $ device_client -k /tmp/lab set 0 volts
//! device_client: set: 'volts' is not a number
//! ```
//!
//! Exit status: 0 ok; 1 the device refused (a channel it does not have), is missing, died or
//! timed out; 2 usage error (missing or unknown arguments, a channel or value that is not a
//! number). A closed stdout (`watch 0 | head -1`) ends it quietly with 141.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::device::client::Client;
use ipclab::device::{self, channel_line};
use ipclab::params;
use ipclab::sys::signal::{exit_status_for, TermSignals};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage: device_client [-k PATH] [-i ID] [--timeout SECS] COMMAND

Commands:
  set CH VALUE          set channel CH's setpoint; prints ok
  get CH                print the channel: channel=CH setpoint=V readback=R status=S
  reset                 every channel back to 0 at once; prints ok
  watch CH [--count N]  print the channel after every device update (N lines, or until Ctrl-C)

Options:
  -k, --key-path PATH   file for ftok, as given to device (default: .)
  -i, --proj-id ID      ftok project id, as given to device (default: 68)
  -t, --timeout SECS    give up waiting for the device after this long (default: 5)
  -h, --help            this text
";

/// What to do, once the arguments are read.
enum Command {
    Set(String, String),
    Get(String),
    Reset,
    Watch(String, Option<u64>),
}

fn main() -> ExitCode {
    let sigs = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => return cli::run(USAGE, |_| Err(e.into())),
    };
    cli::run(USAGE, |args| body(args, sigs))
}

fn body(mut args: cli::Args, sigs: TermSignals) -> Result<(), Failure> {
    let mut path = PathBuf::from(params::DEVICE_KEY_PATH);
    let mut proj = params::DEVICE_PROJ_ID;
    let mut timeout = params::DEVICE_CLIENT_TIMEOUT;
    let mut count = None;
    let mut words = Vec::new();
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-k" | "--key-path") => path = PathBuf::from(args.value("--key-path")?),
            Arg::Flag("-i" | "--proj-id") => proj = args.proj_id("--proj-id")?,
            Arg::Flag("-t" | "--timeout") => timeout = args.seconds("--timeout")?,
            Arg::Flag("-n" | "--count") => count = Some(args.parse("--count")?),
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => words.push(w),
        }
    }
    let command = match (words.first().map(String::as_str), words.len()) {
        (Some("set"), 3) => Command::Set(words[1].clone(), words[2].clone()),
        (Some("get"), 2) => Command::Get(words[1].clone()),
        (Some("reset"), 1) => Command::Reset,
        (Some("watch"), 2) => Command::Watch(words[1].clone(), count),
        (Some(c @ ("set" | "get" | "reset" | "watch")), _) => {
            return Err(Failure::usage(format!(
                "wrong number of arguments for '{c}'"
            )))
        }
        (Some(c), _) => return Err(Failure::usage(format!("unknown command '{c}'"))),
        (None, _) => {
            return Err(Failure::usage(
                "a command is needed: set, get, reset or watch",
            ))
        }
    };
    if let Some(n) = count.filter(|&n| n > params::DEVICE_CLIENT_MAX_COUNT) {
        return Err(Failure::usage(format!(
            "--count {n}: at most {}",
            params::DEVICE_CLIENT_MAX_COUNT
        )));
    }
    if count.is_some() && !matches!(command, Command::Watch(..)) {
        return Err(Failure::usage("--count goes with watch only"));
    }

    let key = device::key(&path, proj)?;
    let open =
        || -> Result<Client, Failure> { Ok(Client::open(key, timeout)?.interruptible(sigs)) };
    match command {
        Command::Set(ch, value) => {
            let (ch, value) = (channel("set", &ch)?, number("set", &value)?);
            let mut c = open()?;
            c.set(ch, value).map_err(|e| failed("set", &c, e))?;
            cli::say("ok")?;
        }
        Command::Get(ch) => {
            let ch = channel("get", &ch)?;
            let mut c = open()?;
            let got = c.get(ch).map_err(|e| failed("get", &c, e))?;
            cli::say(&channel_line(ch, &got))?;
        }
        Command::Reset => {
            let mut c = open()?;
            c.reset().map_err(|e| failed("reset", &c, e))?;
            cli::say("ok")?;
        }
        Command::Watch(ch, count) => {
            let ch = channel("watch", &ch)?;
            let c = open()?;
            let mut last = c.snapshot(ch).map_err(|e| failed("watch", &c, e))?.update;
            let mut printed = 0;
            while count.is_none_or(|n| printed < n) {
                let snap = c
                    .wait_update(ch, last)
                    .map_err(|e| failed("watch", &c, e))?;
                // Flushed line by line: a watcher is read by people and by scripts as it runs.
                let line = channel_line(ch, &snap.channel);
                cli::say(&format!("update={} {line}", snap.update))?;
                last = snap.update;
                printed += 1;
            }
        }
    }
    Ok(())
}

/// A channel number: not a number at all is a usage error (exit 2), like every program's bad
/// number; a number the device has no channel for is a runtime error (exit 1), since only the
/// running device knows how many it has.
fn channel(cmd: &str, word: &str) -> Result<u16, Failure> {
    word.parse()
        .map_err(|_| Failure::usage(format!("{cmd}: '{word}' is not a channel number")))
}

/// A setpoint: a finite decimal number (`inf` and `nan` parse as floats but are refused here).
fn number(cmd: &str, word: &str) -> Result<f64, Failure> {
    match word.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Failure::usage(format!("{cmd}: '{word}' is not a number"))),
    }
}

/// A failed command: Ctrl-C ends quietly with 128+signal; anything else is `cmd: why`.
fn failed(cmd: &str, c: &Client, e: io::Error) -> Failure {
    match c.signal() {
        Some(sig) => Failure::Exit(exit_status_for(sig)),
        None => Failure::runtime(format!("{cmd}: {e}")),
    }
}

//! `dipcrm`: stops the dipc server of a port and removes its System V objects.
//!
//! It finds the segment and the semaphore set by the port's key (`0x4450PPPP`), and the server
//! by the segment's creator pid. It checks that the pid is a dipc before it sends SIGTERM, waits
//! for the server to clean up and exit (SIGKILL after 5 s, then it removes the objects itself),
//! and prints what was removed. Objects left by a killed server are removed as orphans. There is
//! no network shutdown command: the kernel's permissions decide who may stop a server.
//!
//! Start order: after `dipc <k> <kB> <port> <kB>`; clients are disconnected by the stop.
//!
//! ```text
//! $ dipcrm 5000
//! sent SIGTERM to dipc server pid 8090 (port 5000)
//! dipc server pid 8090 has exited
//! removed shared memory segment key 0x44501388 id 884770 (by the server)
//! removed semaphore set key 0x44501388 id 589887 (by the server)
//! $ dipcrm 5000
//! dipcrm: no dipc server and no objects for port 5000 (key 0x44501388)
//! $ echo $?
//! 1
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, parse_word, Arg, Failure};
use ipclab::dipc::keys::key_for_port;
use ipclab::dipc::rm::{dipcrm, Removed};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: dipcrm <port>

Stop the dipc server listening on <port> (SIGTERM, then SIGKILL if it does not exit) and
remove its shared memory segment and semaphore set, also when the server is already dead.

Exit status: 0 if something was stopped or removed, 1 if there was nothing for that port or
removal failed, 2 on a usage error.
";

fn main() -> ExitCode {
    cli::run(USAGE, |mut args| {
        let mut port = None;
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
                Arg::Word(w) if port.is_none() => port = Some(parse_word::<u16>("port", &w)?),
                Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
            }
        }
        let port = port.ok_or_else(|| Failure::usage("missing <port>"))?;
        if port == 0 {
            return Err(Failure::usage("port: must be 1 to 65535"));
        }
        match dipcrm(port, |line| println!("{line}"))? {
            Removed::Nothing => Err(Failure::runtime(format!(
                "no dipc server and no objects for port {port} (key 0x{:08x})",
                key_for_port(port) as u32
            ))),
            Removed::Server { .. } | Removed::Orphans => Ok(()),
        }
    })
}

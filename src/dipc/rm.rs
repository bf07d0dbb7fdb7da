//! `dipcrm PORT`: stop the dipc server of a port and remove its objects.
//!
//! There is deliberately no "shutdown" datagram: any client could send it. Who may stop a
//! server is decided by the operating system instead: only its owner (or root) may signal it,
//! and only the owner may remove its 0600 objects.
//!
//! Steps:
//! 1. Find the objects by the port's key (`keys::key_for_port`), and the server by the
//!    segment's creator pid (`shm_cpid`), which works even if the server has died.
//! 2. If that pid runs and is a dipc (`/proc/PID/comm` or `argv[0]`), send it SIGTERM: it
//!    stops accepting, closes its clients, removes the objects and exits. Wait for it; after
//!    [`DIPC_RM_WAIT`] send SIGKILL and remove the objects here.
//! 3. If nobody runs (the server was killed), the objects are orphans: remove them. But first
//!    look for a dipc listening on the port (`/proc/net/tcp` and `/proc/PID/fd`): a server
//!    whose segment somebody removed with `ipcrm` is found that way, and stopped.
//! 4. If there is nothing at all, say so (the caller exits 1).

use super::keys::key_for_port;
use super::listening::listener_pids;
use super::mailbox::{inspect, is_dipc_server, remove_objects, Found};
use crate::params::DIPC_RM_WAIT;
use crate::sys::ipcs;
use crate::sys::process::{kill, SIGKILL, SIGTERM};
use std::io;
use std::time::{Duration, Instant};

/// What `dipcrm` found and did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// No server and no objects for the port.
    Nothing,
    /// A server was stopped (its objects are gone).
    Server { pid: i32 },
    /// Only orphans were there; they were removed.
    Orphans,
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !is_dipc_server(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !is_dipc_server(pid)
}

/// SIGTERM to `pid`, a wait, SIGKILL if it does not exit in time.
fn stop(pid: i32, port: u16, say: &mut impl FnMut(String)) -> io::Result<()> {
    kill(pid, SIGTERM)?;
    say(format!(
        "sent SIGTERM to dipc server pid {pid} (port {port})"
    ));
    if !wait_gone(pid, DIPC_RM_WAIT) {
        say(format!(
            "pid {pid} did not exit within {} s; sent SIGKILL",
            DIPC_RM_WAIT.as_secs()
        ));
        // It may exit between our check and the kill: that is fine.
        let _ = kill(pid, SIGKILL);
        wait_gone(pid, Duration::from_secs(2));
    }
    say(format!("dipc server pid {pid} has exited"));
    Ok(())
}

/// Stops port `port`'s server and removes its objects, describing each step through `say`.
///
/// The server is found by its segment's creator pid, or else by the port it listens on
/// ([`super::listening`]): after an `ipcrm`, the segment is gone but the server may still
/// hold the port, and it must be stopped all the same.
pub fn dipcrm(port: u16, say: impl FnMut(String)) -> io::Result<Removed> {
    let removed = stop_and_remove(port, say)?;
    // A default log left by a killed server records nothing but its start; one that records
    // an abnormal end (objects removed under it) stays for a person to read.
    let log = super::default_log_path(port);
    if removed != Removed::Nothing && log.exists() && !super::records_abnormal_end(&log) {
        let _ = std::fs::remove_file(&log);
    }
    Ok(removed)
}

fn stop_and_remove(port: u16, mut say: impl FnMut(String)) -> io::Result<Removed> {
    let found = inspect(port)?;
    if !matches!(found, Found::Running { .. }) {
        let listener = listener_pids(port)?
            .into_iter()
            .find(|&pid| is_dipc_server(pid));
        if let Some(pid) = listener {
            say(format!(
                "dipc server pid {pid} listens on port {port}, but the objects under key \
                 0x{:08x} are not its own (removed with ipcrm?)",
                key_for_port(port) as u32
            ));
            stop(pid, port, &mut say)?;
            // Whatever is under the key now is somebody's leftovers, or foreign.
            match inspect(port)? {
                Found::Orphans { objects, .. } => remove_objects(&objects, say)?,
                Found::Foreign(why) => say(format!("left alone: {why}")),
                Found::Nothing | Found::Running { .. } => {}
            }
            return Ok(Removed::Server { pid });
        }
    }
    match found {
        Found::Nothing => Ok(Removed::Nothing),
        Found::Foreign(why) => Err(io::Error::other(why)),
        Found::Orphans { creator, objects } => {
            say(match creator {
                Some(pid) => format!(
                    "no dipc server runs for port {port} (creator pid {pid} is gone); removing orphans"
                ),
                None => format!("no dipc server runs for port {port}; removing orphans"),
            });
            remove_objects(&objects, say)?;
            Ok(Removed::Orphans)
        }
        Found::Running { pid, objects } => {
            stop(pid, port, &mut say)?;
            // Normally the server removed both objects before exiting; whatever is left (it
            // was killed) we remove. Either way, each one is gone now.
            let key = key_for_port(port);
            let left: Vec<ipcs::Object> = ipcs::with_key(key)?
                .into_iter()
                .filter(|o| objects.iter().any(|p| p.kind == o.kind && p.id == o.id))
                .collect();
            for o in &objects {
                if !left.iter().any(|l| l.kind == o.kind && l.id == o.id) {
                    say(format!(
                        "removed {} key 0x{:08x} id {} (by the server)",
                        if o.kind == ipcs::Kind::Shm {
                            "shared memory segment"
                        } else {
                            "semaphore set"
                        },
                        o.key as u32,
                        o.id
                    ));
                }
            }
            remove_objects(&left, say)?;
            Ok(Removed::Server { pid })
        }
    }
}

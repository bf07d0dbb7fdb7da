//! Seed 003: a simulated I/O device, its "device support" client, and the operator's `detach`.
//!
//! In a control system (EPICS, say) the *device support* is the code that talks to a piece of
//! hardware through its registers. Here the hardware is simulated by the `device` program, and
//! its registers are a System V shared memory segment, guarded by a System V semaphore set:
//!
//! ```text
//!   device_client ──(1) take SLOT, write request, post CMD──▶ ┌──────────────────────────┐
//!                 ◀─(3) wait DONE, read reply, give SLOT back─ │ segment: register file   │
//!   device_client ──(watch) wait for the UPDATE gate, ───────▶ │ header│request│reply│ch0…│
//!                   read a channel under LOCK                  └──────────────────────────┘
//!   device        ──(2) wait CMD (or the next tick), execute (a set takes LOCK), post DONE
//!                 ──every period: under LOCK ramp each readback toward its setpoint,
//!                   then open the UPDATE gate for every watcher at once
//! ```
//!
//! The byte layout of the segment is in [`crate::wire::device`]; this module is the behaviour.
//!
//! # Who owns what
//! - The **device** creates the segment and the semaphore set and owns both (`Owner` guards in
//!   [`server::Device`]): whichever way it stops, by a signal, an error or a panic, they are
//!   removed. It is the only writer of the channels and the header.
//! - **Clients** only open and attach. They never remove anything. Every semaphore they hold
//!   (SLOT, LOCK) is taken with `SEM_UNDO`, so a client killed while holding one gives it back.
//! - **`detach`** is the operator's tool, the one exception to "only the owner removes": like
//!   `ipcrm`, it is how a human removes a device that is stuck, or whose objects were left behind
//!   by a `kill -9`. It removes only objects whose header says they are a device, and it first
//!   sets the status word to `removed`, so that everybody attached learns why (see [`stat`]).
//!   A new `device` does not need it: like `shm_writer` and `dipc`, it recycles what a dead
//!   device left under its key (`server::recycle_leftovers`), and says so. Objects removed by
//!   anybody else (`ipcrm`) leave the status word at `running`: the device and its clients
//!   then say "removed by someone else", never "by detach".
//!
//! # The semaphores (one set, [`NSEMS`] counters)
//! | index | name   | initial | meaning                                                        |
//! |-------|--------|---------|----------------------------------------------------------------|
//! | 0     | LOCK   | 1       | mutex over the channels and the header's update counter        |
//! | 1     | SLOT   | 1       | the one command slot: a client holds it from request to reply  |
//! | 2     | CMD    | 0       | "a request is waiting": posted by the client, taken by device  |
//! | 3     | DONE   | 0       | "the reply is ready": posted by the device, taken by the client|
//! | 4     | UPDATE | 1       | a gate: watchers wait for zero; the device opens it (1→0→1)    |
//!
//! # Layout
//! - [`server`]: the `device` side: create, serve commands, ramp, shut down.
//! - [`client`]: the `device_client` side: open, command round trip, snapshot, watch.
//! - [`stat`]: what `detach` does: `shmid_ds`, the kernel's limits, and removal.

pub mod client;
pub mod server;
pub mod stat;

use crate::sys::{self, Key};
use crate::wire::device::Channel;
use std::io;
use std::path::Path;

/// Semaphore 0: the register lock (see the table above).
pub const SEM_LOCK: u16 = 0;
/// Semaphore 1: the command slot.
pub const SEM_SLOT: u16 = 1;
/// Semaphore 2: a command is posted.
pub const SEM_CMD: u16 = 2;
/// Semaphore 3: the reply is posted.
pub const SEM_DONE: u16 = 3;
/// Semaphore 4: the update gate.
pub const SEM_UPDATE: u16 = 4;
/// How many semaphores the set has.
pub const NSEMS: u16 = 5;
/// The initial values, in index order.
pub const SEM_INITIAL: [u16; NSEMS as usize] = [1, 1, 0, 0, 1];
/// Names for printing, in index order.
pub const SEM_NAMES: [&str; NSEMS as usize] = ["lock", "slot", "cmd", "done", "update"];

/// The device's key: `ftok(path, proj_id)`, shared by the segment and the semaphore set (they
/// live in separate key spaces, so one key names both).
pub fn key(path: &Path, proj_id: u8) -> io::Result<Key> {
    sys::ftok(path, proj_id)
}

/// One channel as `device_client get` prints it: `channel=0 setpoint=5.000 readback=2.500
/// status=ramping`. Three decimals, so that scripts can compare lines exactly.
pub fn channel_line(channel: u16, c: &Channel) -> String {
    format!(
        "channel={channel} setpoint={:.3} readback={:.3} status={}",
        c.setpoint,
        c.readback,
        c.status.name()
    )
}

/// An error with a message of ours in front of the system's: `no device at key 0x..: shmget..`.
pub(crate) fn err(kind: io::ErrorKind, msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

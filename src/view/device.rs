//! The simulated device (lab 02) as `ipcview` shows it: the header, every channel's registers,
//! the command slot, the watchers, and the five semaphores.
//!
//! ```text
//! device key 0x44010e2f: shmid 32790, semid 14
//!   device pid 5120 alive, status running, 4 channels, period 100 ms, ramp 1 units/s, update 31
//!   channel 0 setpoint 2.000 readback 0.100 ramping
//!   command slot free, last request 3 (set channel 0 to 2) from pid 5200 dead
//!   watchers waiting for an update: 1
//! ```
//!
//! The channels are copied without taking LOCK (taking it would change the set, and could make
//! the device wait for us), so a channel may show a setpoint from one update beside a readback
//! from the next: `device_client get` is the torn-free way. The command slot is held when SLOT
//! is 0, by the last pid that operated on it; watchers are the sleepers waiting for UPDATE to be
//! zero (`GETZCNT`), see `Client::wait_update` in `src/device/client.rs`.

use super::{liveness, sem_with_key, sems, Section, Segment};
use crate::device::{NSEMS, SEM_NAMES, SEM_SLOT, SEM_UPDATE};
use crate::sys::ipcs::Object;
use crate::sys::sem::SemId;
use crate::wire::device::{
    channel_offset, Channel, Header, Op, Request, CHANNEL_LEN, HEADER_LEN, MAGIC, REQUEST_LEN,
    REQUEST_OFFSET,
};

/// The section of a device segment, and its semaphore set's id; `None` if it is not one.
pub fn section(seg: &Segment, objs: &[Object]) -> Option<(Section, Option<i32>)> {
    if !seg.head.starts_with(MAGIC) {
        return None;
    }
    let key = seg.obj.key;
    let h = Header::decode(seg.head.get(..HEADER_LEN)?).ok()?;
    let semid = sem_with_key(objs, key);
    let title = format!(
        "device key 0x{:08x}: shmid {}, semid {}",
        key as u32,
        seg.obj.id,
        semid.map_or("-".to_string(), |s| s.to_string())
    );
    let mut lines = vec![format!(
        "  device pid {} {}, status {}, {} channels, period {} ms, ramp {} units/s, update {}",
        h.pid,
        liveness(h.pid),
        h.status.name(),
        h.channels,
        h.period_ms,
        h.ramp,
        h.update
    )];
    for i in 0..h.channels {
        let bytes = seg.read(channel_offset(i), CHANNEL_LEN)?;
        match Channel::decode(&bytes) {
            Ok(c) => lines.push(format!(
                "  channel {i} setpoint {:.3} readback {:.3} {}",
                c.setpoint,
                c.readback,
                c.status.name()
            )),
            Err(e) => lines.push(format!("  channel {i} unreadable: {e}")),
        }
    }
    let request = seg
        .read(REQUEST_OFFSET, REQUEST_LEN)
        .and_then(|b| Request::decode(&b).ok());
    let Some(semid) = semid else {
        lines.push("  its semaphore set is gone".to_string());
        return Some((Section { title, lines }, None));
    };
    let s = sems::read(SemId(semid)).ok()?;
    if s.len() != NSEMS as usize {
        return None;
    }
    let slot = &s[SEM_SLOT as usize];
    let holder = if slot.value == 0 {
        format!("held by pid {} {}", slot.pid, liveness(slot.pid))
    } else {
        "free".to_string()
    };
    let last = match request {
        Some(r) => format!(
            ", last request {} ({}) from pid {} {}",
            r.seq,
            describe(r.op),
            r.pid,
            liveness(r.pid)
        ),
        None => ", no request yet".to_string(),
    };
    lines.push(format!("  command slot {holder}{last}"));
    lines.push(format!(
        "  watchers waiting for an update: {}",
        s[SEM_UPDATE as usize].zcnt
    ));
    lines.extend(sems::rows(&s, |i| SEM_NAMES[i].to_uppercase()));
    Some((Section { title, lines }, Some(semid)))
}

fn describe(op: Op) -> String {
    match op {
        Op::Set { channel, value } => format!("set channel {channel} to {value}"),
        Op::Get { channel } => format!("get channel {channel}"),
        Op::Reset => "reset".to_string(),
    }
}

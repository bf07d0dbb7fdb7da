//! What `detach` does: show the kernel's bookkeeping for the device's segment (`shmid_ds`) next
//! to the machine's limits, or mark the device's objects for removal.
//!
//! `shmctl(IPC_STAT)` fills a `struct shmid_ds`, the record the kernel keeps for every segment:
//! its size, who created it (`shm_cpid`), who last attached or detached (`shm_lpid`), how many
//! attachments exist right now (`shm_nattch`), and when it was last attached, detached and
//! changed. Reading it needs only read permission, and attaches nothing (so it does not change
//! `shm_nattch` or `shm_lpid` itself).
//!
//! # Why `detach` may remove what it does not own
//! ipclab's rule is that only an object's owner removes it. `detach` is the operator's tool, the
//! exception every System V installation has (`ipcrm`): the way to take down a device that is
//! stuck, or to clear objects that a `kill -9`ed device left behind. It stays polite:
//! - it removes nothing whose header is not a device register file (wrong magic: not ours);
//! - it writes `removed` into the header's status word first, so that the device and every
//!   client still attached learn *why* their semaphores vanished;
//! - it marks the segment for removal first (nobody new can attach; the kernel destroys it when
//!   the last process detaches), then removes the semaphore set, which wakes everybody asleep on
//!   it at once with EIDRM. In that order, the device finds both already gone when it wakes, and
//!   lets go of them instead of racing `detach` to remove them.

use super::{err, NSEMS, SEM_NAMES};
use crate::sys::sem::{self, SemId, SemStat};
use crate::sys::shm::{self, Access, Get, ShmId, ShmStat};
use crate::sys::{self, Key};
use crate::wire::device::{self as wire, DeviceStatus, Header};
use std::fmt;
use std::io;

/// The machine's shared memory limits, from `/proc/sys/kernel`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `shmmax`: the largest segment, in bytes.
    pub shmmax: u64,
    /// `shmmni`: the most segments on the machine.
    pub shmmni: u64,
    /// `shmall`: the most shared memory on the machine, in pages.
    pub shmall: u64,
}

impl Limits {
    pub fn read() -> io::Result<Limits> {
        Ok(Limits {
            shmmax: sys::kernel_limit("shmmax")?,
            shmmni: sys::kernel_limit("shmmni")?,
            shmall: sys::kernel_limit("shmall")?,
        })
    }
}

/// Everything `detach --stat` shows.
#[derive(Clone, Debug)]
pub struct Report {
    pub key: Key,
    pub shm: ShmId,
    pub stat: ShmStat,
    /// The device header, if the segment holds one.
    pub header: Option<Header>,
    /// The semaphore set and its values, if it exists.
    pub sems: Option<(SemId, SemStat, Vec<u16>)>,
    pub limits: Limits,
}

/// `detach --stat`: the device segment's `shmid_ds`, its header, its semaphores, the limits.
pub fn stat(key: Key) -> io::Result<Report> {
    let shm = shm::shmget(key, 0, Get::Open).map_err(|e| no_device(key, e))?;
    let st = shm.stat()?;
    // The header is read through a read-only attachment, *after* the stat above, so that the
    // numbers printed are those from before we looked.
    let header = shm.attach(Access::ReadOnly).ok().and_then(|att| {
        let mut buf = [0u8; wire::HEADER_LEN];
        att.read_at(0, &mut buf).ok()?;
        Header::decode(&buf).ok()
    });
    let sems = sem::semget(key, 0, Get::Open)
        .ok()
        .and_then(|id| Some((id, id.stat().ok()?, id.get_all().ok()?)));
    Ok(Report {
        key,
        shm,
        stat: st,
        header,
        sems,
        limits: Limits::read()?,
    })
}

/// What [`remove`] did.
#[derive(Clone, Copy, Debug)]
pub struct Removed {
    pub shm: Option<ShmId>,
    pub sem: Option<SemId>,
    /// Processes other than `detach` still attached when the segment was marked: they keep the
    /// memory until they detach (`ipcs -m` shows it as `dest`).
    pub still_attached: u64,
}

/// `detach`: mark the device's segment and semaphore set at `key` for removal.
pub fn remove(key: Key) -> io::Result<Removed> {
    let shm = shm::shmget(key, 0, Get::Open).ok();
    let sem = sem::semget(key, 0, Get::Open).ok();
    if shm.is_none() && sem.is_none() {
        return Err(no_device(key, io::Error::from_raw_os_error(libc::ENOENT)));
    }
    let mut still_attached = 0;
    let att = match shm {
        Some(id) => {
            let att = id.attach(Access::ReadWrite)?;
            let mut buf = [0u8; wire::HEADER_LEN];
            att.read_at(0, &mut buf)?;
            if let Err(e) = Header::decode(&buf) {
                return Err(err(
                    io::ErrorKind::InvalidData,
                    format!("shmid {} at key 0x{key:08x} is not a device register file ({e}); not removing it", id.0),
                ));
            }
            // First the word that tells everyone attached why, then the objects.
            att.write_at(
                wire::STATUS_OFFSET,
                &wire::encode_status(DeviceStatus::Removed),
            )?;
            still_attached = id.stat()?.attaches.saturating_sub(1);
            Some(att)
        }
        None => None,
    };
    if let Some(id) = sem {
        let n = id.stat()?.nsems;
        if n != NSEMS {
            return Err(err(
                io::ErrorKind::InvalidData,
                format!("semid {} at key 0x{key:08x} has {n} semaphores, not a device's {NSEMS}; not removing it", id.0),
            ));
        }
    }
    drop(att);
    if let Some(id) = shm {
        // Marked, not yet destroyed: everyone attached keeps reading the status word. (Gone
        // already: a device that stopped at that very moment removed its own.)
        sys::remove_if_present(id)?;
    }
    if let Some(id) = sem {
        // Every process asleep on the set wakes now, with EIDRM.
        sys::remove_if_present(id)?;
    }
    Ok(Removed {
        shm,
        sem,
        still_attached,
    })
}

fn no_device(key: Key, e: io::Error) -> io::Error {
    if sys::errno(&e) == Some(libc::ENOENT) {
        err(
            io::ErrorKind::NotFound,
            format!("no device objects at key 0x{key:08x}: {e}"),
        )
    } else {
        e
    }
}

/// Seconds since the epoch as `2026-01-31 12:00:00 UTC`, or `never` for 0 (std has no calendar,
/// so this is the usual days-to-civil arithmetic).
pub fn utc(secs: i64) -> String {
    if secs == 0 {
        return "never".to_string();
    }
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to year, month, day.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = &self.stat;
        let alive = |pid: i32| {
            if sys::process::alive(pid) {
                "alive"
            } else {
                "gone"
            }
        };
        writeln!(
            f,
            "segment key 0x{:08x} shmid {}{}",
            self.key,
            self.shm.0,
            if st.removed {
                " (marked for removal)"
            } else {
                ""
            }
        )?;
        writeln!(f, "  shm_perm    uid {} mode {:04o}", st.uid, st.mode)?;
        writeln!(f, "  shm_segsz   {} bytes", st.size)?;
        writeln!(
            f,
            "  shm_cpid    {} (creator, {})",
            st.creator_pid,
            alive(st.creator_pid)
        )?;
        writeln!(f, "  shm_lpid    {} (last shmat/shmdt)", st.last_pid)?;
        writeln!(f, "  shm_nattch  {}", st.attaches)?;
        writeln!(f, "  shm_atime   {}", utc(st.attach_time))?;
        writeln!(f, "  shm_dtime   {}", utc(st.detach_time))?;
        writeln!(f, "  shm_ctime   {}", utc(st.change_time))?;
        match &self.header {
            Some(h) => writeln!(
                f,
                "device status {}, pid {} ({}), {} channels, update {}, period {} ms, ramp {} units/s",
                h.status.name(),
                h.pid,
                alive(h.pid),
                h.channels,
                h.update,
                h.period_ms,
                h.ramp
            )?,
            None => writeln!(f, "device header: not a device register file")?,
        }
        match &self.sems {
            Some((id, ss, vals)) => {
                let named: Vec<String> = vals
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{}={v}", SEM_NAMES.get(i).unwrap_or(&"?")))
                    .collect();
                writeln!(
                    f,
                    "semaphores semid {} nsems {} last semop {}: {}",
                    id.0,
                    ss.nsems,
                    utc(ss.op_time),
                    named.join(" ")
                )?;
            }
            None => writeln!(f, "semaphores: none at this key")?,
        }
        let l = &self.limits;
        writeln!(
            f,
            "limits                                   this machine          Linux 3.2.0 (seed)"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, here: String, seed: &str| {
            writeln!(f, "  {name:<39}{here:<22}{seed}")
        };
        row(
            f,
            "SHMMAX max bytes in one segment",
            l.shmmax.to_string(),
            "32768",
        )?;
        row(
            f,
            "SHMMIN min bytes in one segment",
            "1 (fixed)".into(),
            "1",
        )?;
        row(
            f,
            "SHMSEG max segments per process",
            "SHMMNI".into(),
            "4096",
        )?;
        row(
            f,
            "SHMMNI max segments, system wide",
            l.shmmni.to_string(),
            "4096",
        )?;
        row(
            f,
            "SHMALL max pages, system wide",
            l.shmall.to_string(),
            "-",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "never");
        assert_eq!(utc(1), "1970-01-01 00:00:01 UTC");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00 UTC");
        assert_eq!(utc(1_767_225_599), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn remove_refuses_a_segment_that_is_not_a_device() {
        let dir = crate::testutil::TempDir::new("detach");
        let key = sys::ftok(dir.path(), b'X').unwrap();
        let seg = sys::Owner::new(shm::shmget(key, 64, Get::Create(0o600)).unwrap());
        let e = remove(key).unwrap_err();
        assert!(e.to_string().contains("not a device register file"), "{e}");
        assert!(!seg.stat().unwrap().removed);
        // A key of this private directory that nobody created anything with.
        let unused = sys::ftok(dir.path(), b'Y').unwrap();
        let e = stat(unused).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}

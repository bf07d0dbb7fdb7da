//! One row per semaphore: what `ipcs -s -i ID` shows, plus what it does not: the semaphore's
//! name in its lab, and the waiters.
//!
//! ```text
//!   sem 3 FULL       value 1  ncnt 0  zcnt 0  last pid 5120 alive
//! ```
//!
//! - `value` is `GETVAL` (all of them at once with `GETALL`, so the row values are one instant);
//! - `ncnt` (`GETNCNT`) counts the processes and threads asleep until the value grows, and
//!   `zcnt` (`GETZCNT`) those asleep until it is zero. For a `semop` of several operations,
//!   Linux counts a sleeper only at the operation it is blocked on (`ipc/sem.c`, `check_qop`);
//! - `last pid` (`GETPID`) made the last operation on this semaphore, or the kernel undid a
//!   `SEM_UNDO` operation for it when it died.
//!
//! The waiter counts and pids are read one semaphore after another, so they may be a few
//! microseconds apart from the values: good enough to watch, not to prove anything.

use super::liveness;
use crate::sys::sem::SemId;
use std::io;

/// The current state of one semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sem {
    pub value: u16,
    pub ncnt: i32,
    pub zcnt: i32,
    pub pid: i32,
}

/// Reads every semaphore of the set. Fails if the set is gone.
pub fn read(set: SemId) -> io::Result<Vec<Sem>> {
    let values = set.get_all()?;
    let mut out = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let n = i as u16;
        out.push(Sem {
            value,
            ncnt: set.waiting(n)?,
            zcnt: set.waiting_for_zero(n)?,
            pid: set.last_pid(n)?,
        });
    }
    Ok(out)
}

/// Like [`read`], for a large set of which few semaphores are in use (rshm's gates): the pid
/// is read only for a semaphore with a value or a sleeper, and is 0 for the others. Two
/// `semctl` calls for an idle semaphore instead of three: a refresh with two rshm nodes up makes
/// a thousand of them.
pub fn read_sparse(set: SemId) -> io::Result<Vec<Sem>> {
    let values = set.get_all()?;
    let mut out = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let n = i as u16;
        let (ncnt, zcnt) = (set.waiting(n)?, set.waiting_for_zero(n)?);
        let used = value != 0 || ncnt != 0 || zcnt != 0;
        out.push(Sem {
            value,
            ncnt,
            zcnt,
            pid: if used { set.last_pid(n)? } else { 0 },
        });
    }
    Ok(out)
}

/// The row of semaphore `index`, named `name`.
pub fn row(index: usize, name: &str, s: &Sem) -> String {
    let pid = if s.pid > 0 {
        format!("{} {}", s.pid, liveness(s.pid))
    } else {
        "-".to_string()
    };
    format!(
        "  sem {index} {name:<10} value {:<5} ncnt {:<3} zcnt {:<3} last pid {pid}",
        s.value, s.ncnt, s.zcnt
    )
}

/// The rows of a whole set, with one name per semaphore.
pub fn rows(sems: &[Sem], name: impl Fn(usize) -> String) -> Vec<String> {
    sems.iter()
        .enumerate()
        .map(|(i, s)| row(i, &name(i), s))
        .collect()
}

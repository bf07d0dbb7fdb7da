//! The sweeper thread: time limits, a queue nobody can jam, and the counts of programs that
//! died attached.
//!
//! # Rules
//! - Every `RSHM_SWEEP_INTERVAL`: fails the pendings and waits whose time is up, removes
//!   what nobody takes from the queue ([`sweep_queue`]), and drops the attaches of dead
//!   programs on segments marked for removal; every `RSHM_DRAIN_INTERVAL`, those of every
//!   segment ([`correct_counts`]), and logs what it removed (one line at most).
//! - It takes the state lock only for short critical sections, and answers programs after
//!   releasing it.

use super::peers::{broadcast, finish, settle};
use super::queue::{lock_sent, reply};
use super::rshmctl::destroy_if_done;
use super::state::{lock, Shared};
use crate::params::{
    RSHM_DRAIN_INTERVAL, RSHM_REPLY_ROOM_WAIT, RSHM_REPLY_UNREAD, RSHM_SWEEP_INTERVAL,
};
use crate::rshm::RSHM_REQUEST_TYPE;
use crate::sys;
use crate::wire::rshm::{Frame, Reply};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

pub(super) fn sweep_loop(shared: &Shared) {
    let mut drained = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(RSHM_SWEEP_INTERVAL);
        let removed = sweep_queue(shared, false);
        lock_drained(shared).add(removed);
        if drained.elapsed() >= RSHM_DRAIN_INTERVAL {
            let d = std::mem::take(&mut *lock_drained(shared));
            if d.unread + d.foreign > 0 {
                log!(
                    "queue: removed {} repl(ies) nobody took (within {} ms, or whose thread does not exist) and {} message(s) of types nobody serves (types {:?}{})",
                    d.unread,
                    RSHM_REPLY_UNREAD.as_millis(),
                    d.foreign,
                    d.types,
                    if d.types.len() == 5 { ", ..." } else { "" }
                );
            }
            correct_counts(shared, false);
            drained = Instant::now();
        } else {
            correct_counts(shared, true);
        }
        let now = Instant::now();
        let mut st = lock(shared);
        let late: Vec<u32> = st
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        let mut done = Vec::new();
        for seq in late {
            let mut p = st.pending.remove(&seq).expect("present");
            for peer in std::mem::take(&mut p.waiting) {
                p.failures.push(format!(
                    "peer {peer} did not acknowledge within {} ms",
                    p.patience.as_millis()
                ));
            }
            settle(shared, &mut st, &mut p);
            done.push(p);
        }
        let mut timed_out = Vec::new();
        st.waiters.retain(|w| {
            let keep = w.deadline > now;
            if !keep {
                timed_out.push(w.req.clone());
            }
            keep
        });
        drop(st);
        for p in done {
            finish(shared, p);
        }
        for req in timed_out {
            reply(
                shared,
                &req,
                &Reply::error(&req, libc::ETIMEDOUT, "no change within the timeout"),
            );
        }
    }
}

/// Programs that died attached (SIGKILL: no rshmdt) leave the server's count too high, and a
/// marked segment would then never go. The server counts attaches per process
/// (`Segment::local`), so it corrects exactly: the attaches of a pid that is no longer
/// running are dropped, and the new count announced. Nothing else changes: a live program's
/// detach is its own and is counted when its DT comes, whatever the order of its `shmdt` and
/// its DT. (The kernel's `shm_nattch` cannot do this: it cannot tell a program that died from
/// one between its `shmdt` and its DT, nor one that attached but has not called `shmat` yet.)
///
/// With `only_marked`, only rows marked for removal are looked at: the sweeper does those
/// every sweep, so that a removed segment whose last user was killed goes at once, and the
/// rest once a second.
pub(super) fn correct_counts(shared: &Shared, only_marked: bool) {
    let me = shared.me;
    let mut st = lock(shared);
    let ids: Vec<i32> = st
        .table
        .rows()
        .filter(|s| !s.local.is_empty() && (s.marked || !only_marked))
        .map(|s| s.rshmid)
        .collect();
    // Asked once per pid per sweep: with thousands of segments, the same few programs hold
    // most attaches, and each question reads /proc under the lock.
    let known = std::cell::RefCell::new(std::collections::HashMap::new());
    let alive = |pid: i32| {
        *known
            .borrow_mut()
            .entry(pid)
            .or_insert_with(|| sys::process::alive(pid))
    };
    for rshmid in ids {
        let Some(seg) = st.table.get_mut(rshmid) else {
            continue;
        };
        let (dead, count) = seg.drop_dead(me, alive);
        if dead.is_empty() {
            continue;
        }
        for (pid, n) in dead {
            log!("rshmid {rshmid}: pid {pid} died with {n} attach(es) and no rshmdt; count corrected to {count}");
        }
        broadcast(
            &mut st,
            &Frame::Count {
                rshmid,
                node: me,
                count,
            },
        );
        destroy_if_done(shared, &mut st, rshmid);
    }
}

/// What the sweeper took out of the queue since it last said so: logged once a second at
/// most, so that a flood cannot flood the log too.
#[derive(Default)]
pub(super) struct Drained {
    /// Our replies that nobody took within the bound.
    pub(super) unread: u64,
    /// Messages of types no rshm_server serves (not type 1, not a reply of ours).
    pub(super) foreign: u64,
    /// A few of the types seen, for the log line.
    pub(super) types: Vec<i64>,
}

impl Drained {
    pub(super) fn add(&mut self, other: Drained) {
        self.unread += other.unread;
        self.foreign += other.foreign;
        for t in other.types {
            if self.types.len() < 5 && !self.types.contains(&t) {
                self.types.push(t);
            }
        }
    }
}

pub(super) fn lock_drained(shared: &Shared) -> MutexGuard<'_, Drained> {
    shared.drained.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the queue from jamming. Anyone who may write to it can fill it (`msg_qbytes`, 16 KiB
/// by default) with messages of a type we never read, or with requests whose replies nobody
/// reads; from then on no program could send a request. So, every sweep:
///
/// - a reply we sent more than `RSHM_REPLY_UNREAD` ago is no longer ours to keep: a caller
///   that waits takes its reply within microseconds, and one that gave up drops it anyway.
///   While the queue is more than half full, at once for a reply whose caller thread does not
///   exist (`/proc/PID/task/TID`): whatever pid a request claims (pid 1 never dies), a reply
///   to a thread that is not there is read by nobody;
/// - if the queue holds more messages than we have replies to keep, some are not ours to
///   keep: every message but requests (type 1) is taken out in turn (`msgrcv` with
///   `MSG_EXCEPT`), and those we keep are put back at the end, the others dropped.
///
/// Returns what was dropped. Cheap when there is nothing to do: one `IPC_STAT`.
pub(super) fn sweep_queue(shared: &Shared, full: bool) -> Drained {
    let mut out = Drained::default();
    let Ok(stat) = shared.queue.stat() else {
        return out;
    };
    if stat.messages == 0 {
        return out;
    }
    let pressed = full || stat.bytes.saturating_mul(2) > stat.max_bytes;
    // Held to the end: no reply is sent meanwhile, so every reply to keep is in `keep`.
    let mut sent = lock_sent(shared);
    let now = Instant::now();
    while sent
        .front()
        .is_some_and(|r| now.duration_since(r.at) >= RSHM_REPLY_UNREAD)
    {
        sent.pop_front();
    }
    if pressed {
        let mut cache: HashMap<(i32, i64), bool> = HashMap::new();
        sent.retain(|r| {
            *cache
                .entry((r.pid, r.mtype))
                .or_insert_with(|| thread_exists(r.pid, r.mtype))
        });
    }
    // A caller waits for one reply at a time (its type is its thread id): if the queue holds
    // no more messages than there are callers to keep replies for, all may be theirs.
    let keep: HashSet<i64> = sent.iter().map(|r| r.mtype).collect();
    if stat.messages <= keep.len() as u64 {
        return out;
    }
    let mut buf = vec![0u8; shared.msgmax];
    let mut back = Vec::new();
    for _ in 0..stat.messages {
        let Ok(Some((mtype, n))) = shared.queue.try_recv_except(RSHM_REQUEST_TYPE, &mut buf) else {
            break;
        };
        if keep.contains(&mtype) {
            back.push((mtype, buf[..n].to_vec()));
            continue;
        }
        if buf[..n].starts_with(crate::wire::rshm::REPLY_MAGIC) {
            out.unread += 1;
        } else {
            out.foreign += 1;
        }
        if out.types.len() < 5 && !out.types.contains(&mtype) {
            out.types.push(mtype);
        }
    }
    // Back in the queue, at its end (each caller reads only its own type, so the order
    // between callers does not matter). The room they left may have been taken by a flood
    // meanwhile: those that do not fit are tried again for a while, without the lock, so
    // that the queue thread can go on replying and taking requests out meanwhile.
    back.retain(|(mtype, bytes)| shared.queue.send(*mtype, bytes, true).is_err());
    drop(sent);
    let until = Instant::now() + RSHM_REPLY_ROOM_WAIT;
    for (mtype, bytes) in back {
        while let Err(e) = shared.queue.send(mtype, &bytes, true) {
            if !sys::is_timeout(&e) || Instant::now() >= until {
                log!("reply to tid {mtype} lost while sweeping the queue: {e}");
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    out
}

/// Does thread `tid` of process `pid` exist? (A reply's `mtype` is its caller's thread id.)
pub(super) fn thread_exists(pid: i32, tid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

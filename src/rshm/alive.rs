//! A node's proof of life, so that a server killed with SIGKILL is replaced without help.
//!
//! A server keeps three objects under keys derived from its port: its queue
//! ([`super::queue_key`]), its change gates ([`super::gate::gate_keys`]) and this *alive* set
//! ([`alive_key`], `0x52410000 + port`), one semaphore. At start the server adds 1 to it with
//! `SEM_UNDO`. While it runs the value is 1; when it dies, however it dies, the kernel undoes
//! the +1, and the value is 0. (The same idea as `shm_writer`'s alive semaphore.)
//!
//! So a new server on the port knows, from the kernel alone, whether the objects it finds
//! belong to a live server or to a dead one:
//!
//! | alive set           | what it means                      | what the new server does          |
//! |---------------------|------------------------------------|-----------------------------------|
//! | none                | nobody serves the port             | takes it                          |
//! | value 1             | a live server (GETPID: its pid)    | refuses to start, naming the pid  |
//! | value 0, semop done | its server died (GETPID: who)      | removes the three objects, starts |
//! | value 0, no semop   | a server between semget and semop  | refuses: one is starting          |
//! | the same, for long  | a server killed in between         | removes the three objects, starts |
//!
//! A queue found under our key while we hold the alive set is another matter: either a dead
//! server's of ours (same uid: removed), or an object of another user (refused, naming its
//! owner and what to do, since only they, or root, can remove it).
//!
//! # Who owns what
//! The server that claimed the set ([`Alive::claim`]) removes it at shutdown, after its queue
//! (dropping [`Alive`]). Nobody else ever operates on it.

use super::gate::{gate_key, gate_keys};
use super::queue_key;
use crate::params::{DEFAULT_MODE, RSHM_ALIVE_KEY_BASE, RSHM_ALIVE_START_GRACE};
use crate::sys::msg::{msgget, MsgId};
use crate::sys::sem::{semget, SemId, SemOp};
use crate::sys::shm::Get;
use crate::sys::{self, ipcs, Key, Owner, Removable};
use std::io;

/// The key of the alive set of the server on `port`: `0x52410000 + port` ("RA", the port).
pub fn alive_key(port: u16) -> Key {
    RSHM_ALIVE_KEY_BASE + Key::from(port)
}

/// This server's claim on its port. Dropping it removes the set.
pub struct Alive {
    set: Owner<SemId>,
}

impl Alive {
    /// Claims `port` for this process: creates the alive set and counts us in (SEM_UNDO).
    /// If a dead server's objects are in the way, removes them and says so through `log`.
    /// Fails, with a message naming the pid, if a live server has the port.
    pub fn claim(port: u16, mut log: impl FnMut(String)) -> io::Result<Alive> {
        let key = alive_key(port);
        // Twice at most: once to find and clear a dead server's set, once to make ours.
        for _ in 0..2 {
            match semget(key, 1, Get::Create(DEFAULT_MODE)) {
                Ok(id) => {
                    let set = Owner::new(id);
                    set.get().op(&[SemOp::post(0).undo()])?;
                    return Ok(Alive { set });
                }
                Err(e) if sys::errno(&e) == Some(libc::EEXIST) => {
                    // Another user's: we may not even read its value (mode 0600), let alone
                    // remove it. Say whose it is, from /proc/sysvipc, which anyone may read.
                    let me = super::auth::euid()?;
                    if let Some(o) = ipcs::with_key(key)?
                        .into_iter()
                        .find(|o| o.kind == ipcs::Kind::Sem)
                    {
                        if o.uid != me && me != 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::AddrInUse,
                                format!(
                                    "port {port} is taken in this IPC namespace by uid {}{}: its rshm_server's alive set 0x{key:08x} (semid {}) is there. Only that user (or root) can stop that server or, if it died, remove its objects (ipcrm -S 0x{key:08x} -Q 0x{:08x} -S 0x{:08x}); ask them, or choose another --listen port",
                                    o.uid,
                                    user_name(o.uid).map(|n| format!(" ({n})")).unwrap_or_default(),
                                    o.id,
                                    queue_key(port),
                                    gate_key(port)
                                ),
                            ));
                        }
                    }
                    let old = semget(key, 0, Get::Open)?;
                    let stat = old.stat()?;
                    let (value, pid) = (old.get_val(0)?, old.last_pid(0)?);
                    // No semop yet: a server is starting, unless the set is older than any
                    // start takes (sem_ctime is when it was made; no semctl changes it).
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let starting = stat.op_time == 0
                        && now - stat.change_time < RSHM_ALIVE_START_GRACE.as_secs() as i64;
                    if value > 0 || starting {
                        let who = if value > 0 {
                            format!("pid {pid}")
                        } else {
                            "another one, starting now,".to_string()
                        };
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!(
                                "another rshm_server ({who} of uid {}) serves port {port} in this IPC namespace (alive set 0x{key:08x} semid {}); stop it first, or choose another --listen port",
                                stat.uid, old.0
                            ),
                        ));
                    }
                    // Dead: the kernel undid its +1. Its queue and gates go with it.
                    let mut gone = vec![format!("alive set semid {}", old.0)];
                    old.remove()
                        .map_err(|e| foreign(e, "semaphore set", key, stat.uid))?;
                    let keys = std::iter::once(queue_key(port)).chain(gate_keys(port));
                    for k in keys {
                        for o in ipcs::with_key(k)? {
                            ipcs::remove(&o).map_err(|e| foreign(e, o.kind.name(), k, o.uid))?;
                            gone.push(format!("{} id {} (key 0x{k:08x})", o.kind.name(), o.id));
                        }
                    }
                    let who = if stat.op_time == 0 {
                        "killed while it started".to_string()
                    } else {
                        format!("pid {pid}")
                    };
                    log(format!(
                        "the rshm_server that served port {port} ({who}) died without cleaning up; removed its {}",
                        gone.join(", ")
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("port {port}: the alive set 0x{key:08x} keeps coming back; another server is starting"),
        ))
    }

    /// The set's id, for the trace.
    pub fn semid(&self) -> i32 {
        self.set.get().0
    }
}

/// Creates the queue of the server on `port`, which holds the port's alive set. A queue that
/// is already there is a dead server's (ours: removed, and said so through `log`), or another
/// user's object (an error naming whose it is, and what to do).
pub fn create_queue(port: u16, mut log: impl FnMut(String)) -> io::Result<Owner<MsgId>> {
    let key = queue_key(port);
    match msgget(key, Get::Create(DEFAULT_MODE)) {
        Ok(q) => return Ok(Owner::new(q)),
        Err(e) if sys::errno(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let me = super::auth::euid()?;
    let found = ipcs::with_key(key)?;
    let Some(old) = found.iter().find(|o| o.kind == ipcs::Kind::Msg) else {
        // Removed between the two calls: try once more.
        return msgget(key, Get::Create(DEFAULT_MODE)).map(Owner::new);
    };
    // A queue has no creator pid; its last sender and receiver are as good a lead. From
    // /proc/sysvipc/msg, since IPC_STAT needs read permission, which another user's lacks.
    let pids = queue_pids(old.id)
        .map(|(s, r)| format!("last msgsnd by pid {s}, last msgrcv by pid {r}"))
        .unwrap_or_else(|| "no pids known".to_string());
    if old.uid != me && me != 0 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "msgget(key=0x{key:08x}): File exists: the queue (msqid {}) belongs to uid {}{} ({pids}); it is not one of our servers'. Ask its owner to remove it (ipcrm -q {}), or choose another --listen port",
                old.id,
                old.uid,
                user_name(old.uid).map(|n| format!(" ({n})")).unwrap_or_default(),
                old.id
            ),
        ));
    }
    // Ours, and no live server holds the port (we hold its alive set): left by a server that
    // died before the alive set existed.
    ipcs::remove(old)?;
    log(format!(
        "removed queue msqid {} (key 0x{key:08x}, {pids}), left by an rshm_server that is gone",
        old.id
    ));
    msgget(key, Get::Create(DEFAULT_MODE)).map(Owner::new)
}

/// `(lspid, lrpid)` of queue `msqid`, from `/proc/sysvipc/msg`.
fn queue_pids(msqid: i32) -> Option<(i32, i32)> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 6 && f[1].parse() == Ok(msqid))
            .then(|| Some((f[5].parse().ok()?, f[6].parse().ok()?)))?
    })
}

/// An object we could not remove: another user's.
fn foreign(e: io::Error, what: &str, key: Key, uid: u32) -> io::Error {
    if sys::errno(&e) == Some(libc::EPERM) {
        return io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "a dead rshm_server's {what} under key 0x{key:08x} belongs to uid {uid}{}, and only they (or root) can remove it: ask them (ipcrm), or choose another --listen port",
                user_name(uid).map(|n| format!(" ({n})")).unwrap_or_default()
            ),
        );
    }
    e
}

/// The login name of `uid`, from /etc/passwd, if it has one.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

//! What `ipcs` shows: every System V object in this IPC namespace, read from `/proc/sysvipc`.
//!
//! Tools use it to find objects by key (a grader checking that nothing leaked, `dipcrm` looking
//! for orphans), and tests use it to remove whatever a failed test left behind. Only objects
//! the caller may see are listed, exactly as with `ipcs`.

use super::Key;
use std::io;

/// The three kinds of System V object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Shm,
    Sem,
    Msg,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Shm, Kind::Sem, Kind::Msg];

    fn proc_file(self) -> &'static str {
        match self {
            Kind::Shm => "/proc/sysvipc/shm",
            Kind::Sem => "/proc/sysvipc/sem",
            Kind::Msg => "/proc/sysvipc/msg",
        }
    }

    /// The name `ipcs` and `ipcrm` use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Sem => "sem",
            Kind::Msg => "msg",
        }
    }
}

/// One object, as a line of `/proc/sysvipc/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    pub key: Key,
    pub id: i32,
    /// Owner's uid.
    pub uid: u32,
    /// For shm only: the creator's pid and the number of attachments.
    pub creator_pid: Option<i32>,
    pub attaches: Option<u64>,
}

/// Every object of every kind.
pub fn list() -> io::Result<Vec<Object>> {
    let mut all = Vec::new();
    for kind in Kind::ALL {
        let text = std::fs::read_to_string(kind.proc_file())?;
        all.extend(text.lines().skip(1).filter_map(|l| parse(kind, l)));
    }
    Ok(all)
}

/// Every object whose key is `key`.
pub fn with_key(key: Key) -> io::Result<Vec<Object>> {
    Ok(list()?.into_iter().filter(|o| o.key == key).collect())
}

fn parse(kind: Kind, line: &str) -> Option<Object> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let key: Key = f.first()?.parse().ok()?;
    let id: i32 = f.get(1)?.parse().ok()?;
    // Column of the owner's uid: shm has size, cpid, lpid, nattch before it; sem has nsems;
    // msg has cbytes, qnum, lspid, lrpid.
    let uid_col = match kind {
        Kind::Shm => 7,
        Kind::Sem => 4,
        Kind::Msg => 7,
    };
    let uid = f.get(uid_col)?.parse().ok()?;
    let (creator_pid, attaches) = match kind {
        Kind::Shm => (f.get(4)?.parse().ok(), f.get(6)?.parse().ok()),
        _ => (None, None),
    };
    Some(Object {
        kind,
        key,
        id,
        uid,
        creator_pid,
        attaches,
    })
}

/// Removes one object by id (what `ipcrm -m/-s/-q ID` does).
pub fn remove(obj: &Object) -> io::Result<()> {
    use super::Removable;
    match obj.kind {
        Kind::Shm => super::shm::ShmId(obj.id).remove(),
        Kind::Sem => super::sem::SemId(obj.id).remove(),
        Kind::Msg => super::msg::MsgId(obj.id).remove(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::shm::{shmget, Get};
    use super::super::{ftok, Owner};
    use super::*;

    #[test]
    fn a_new_segment_is_listed_by_its_key() {
        let dir = crate::testutil::TempDir::new("ipcs");
        let key = ftok(dir.path(), b'i').unwrap();
        let seg = Owner::new(shmget(key, 100, Get::Create(0o600)).unwrap());
        let found = with_key(key).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].kind, found[0].id), (Kind::Shm, seg.get().0));
        assert_eq!(found[0].creator_pid, Some(std::process::id() as i32));
        assert_eq!(found[0].attaches, Some(0));
        remove(&found[0]).unwrap();
        assert!(with_key(key).unwrap().is_empty());
        // The owner's drop now finds it gone, and only traces that.
    }
}

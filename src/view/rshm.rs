//! The rshm nodes on this machine (lab 05) as `ipcview` shows them: each server's own table
//! and peers, asked through its queue, and the change gates that programs sleep on.
//!
//! ```text
//! rshm node 127.0.0.1:7001 queue key 0x52531b59: msqid 3, gate semid 9
//!   server pid 4100 alive, queue 0 messages
//!   peer 127.0.0.1:7002 up
//!   segment rshmid 65536 key 0x00000010 size 4096 version 2 attaches 1 replica shmid 12
//!   sem 0 GATE0      value 2     ncnt 1   zcnt 0   last pid 4100 alive
//!   sem 0 ALIVE      value 1     ncnt 0   zcnt 0   last pid 4100 alive
//! ```
//!
//! A node's segments live in replicas with no key (`IPC_PRIVATE`), which only the server can
//! name: so `ipcview` asks it, with the `ls` request of `client ls` ([`Node::ls`]), which reads
//! the table and changes nothing. The server's pid is the sender of that reply (the queue's
//! `msg_lspid`); when the queue's last sender is dead, the server is not asked, so that a
//! refresh does not wait for a reply that cannot come. (A queue on such a key with no server
//! behind it costs one reply timeout, `RSHM_REPLY_TIMEOUT`, the first time; after that its
//! last sender is our own request, or a dead `ipcview`, and it is not asked again.) Only the
//! gates in use (a count, or a sleeper) are listed. The node's alive semaphore
//! (`src/rshm/alive.rs`) is 1 while its server lives, raised with `SEM_UNDO`: a 0 there is
//! what a restarted server reads as "the old one died, its objects are orphans".

use super::{liveness, sems, Section};
use crate::params::RSHM_QUEUE_KEY_BASE;
use crate::rshm::alive::alive_key;
use crate::rshm::api::Node;
use crate::rshm::gate::{gate_key, gate_keys, RETIRED};
use crate::sys::ipcs::{Kind, Object};
use crate::sys::msg::MsgId;
use crate::sys::sem::SemId;
use crate::sys::Key;

/// The port of the rshm node whose queue has `key`, if it is one.
pub fn port_of_queue(key: Key) -> Option<u16> {
    let port = i64::from(key) - i64::from(RSHM_QUEUE_KEY_BASE);
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// A node's section, and the objects it accounts for (queue, gates, replicas).
pub struct NodeView {
    pub section: Section,
    pub claims: Vec<(Kind, i32)>,
}

/// The section of the node whose queue is `q`; `None` if the queue is gone.
pub fn section(q: &Object, port: u16, objs: &[Object]) -> Option<NodeView> {
    let queue = MsgId(q.id);
    let before = queue.stat().ok()?;
    let gates = objs
        .iter()
        .find(|o| o.kind == Kind::Sem && o.key == gate_key(port))
        .map(|o| o.id);
    let alive = objs
        .iter()
        .find(|o| o.kind == Kind::Sem && o.key == alive_key(port))
        .map(|o| o.id);
    let mut claims = vec![(Kind::Msg, q.id)];
    // Every gate set is the node's (the first is the one shown below; more are made only when
    // a table outgrows it, see `rshm::gate`).
    let all_gates = gate_keys(port);
    claims.extend(
        objs.iter()
            .filter(|o| o.kind == Kind::Sem && all_gates.contains(&o.key))
            .map(|o| (Kind::Sem, o.id)),
    );
    claims.extend(alive.map(|a| (Kind::Sem, a)));
    // Every request is answered, so at rest the last sender is the server (its last reply). A
    // dead last sender is a server that died, or a request it never answered: either way,
    // asking would only wait for the reply timeout.
    // And when the last sender is this process, our previous request got no reply: a queue
    // with this key but no server behind it costs one reply timeout, not one per refresh.
    let sender = before.last_send_pid;
    let listing = if sender > 0 && !crate::sys::process::alive(sender) {
        Err(format!("last sender pid {sender} dead: server not asked"))
    } else if sender == std::process::id() as i32 {
        Err("our last request got no reply: server not asked".to_string())
    } else {
        Node::open(port)
            .and_then(|n| n.ls())
            .map_err(|e| format!("ls failed: {e}"))
    };
    let node = match &listing {
        Ok(l) => l.node.clone(),
        Err(_) => format!("port {port}"),
    };
    let title = format!(
        "rshm node {node} queue key 0x{:08x}: msqid {}, gate semid {}",
        q.key as u32,
        q.id,
        gates.map_or("-".to_string(), |g| g.to_string())
    );
    let after = queue.stat().ok()?;
    let mut lines = Vec::new();
    if listing.is_ok() {
        // The sender of the reply we just took (unless another program's request came in
        // between, which a later refresh corrects).
        let pid = after.last_send_pid;
        lines.push(format!(
            "  server pid {pid} {}, queue {} messages",
            liveness(pid),
            after.messages
        ));
    } else {
        lines.push(format!("  queue {} messages", after.messages));
    }
    match listing {
        Ok(l) => {
            for p in &l.peers {
                lines.push(format!(
                    "  peer {} {}",
                    p.addr,
                    if p.up { "up" } else { "down" }
                ));
            }
            if l.entries.is_empty() {
                lines.push("  no segments".to_string());
            }
            for e in &l.entries {
                claims.push((Kind::Shm, e.shmid));
                lines.push(format!(
                    "  segment rshmid {} key 0x{:08x} size {} version {} attaches {} replica shmid {}{}",
                    e.rshmid,
                    e.key as u32,
                    e.size,
                    e.version,
                    e.attaches,
                    e.shmid,
                    if e.marked { " marked" } else { "" }
                ));
            }
        }
        Err(why) => lines.push(format!("  {why}")),
    }
    if let Some(s) = gates.and_then(|g| sems::read_sparse(SemId(g)).ok()) {
        // A retired gate holds SEMVMX for ever (src/rshm/gate.rs): counted, not listed.
        let retired = s.iter().filter(|g| g.value == RETIRED).count();
        let used: Vec<String> = s
            .iter()
            .enumerate()
            .filter(|(_, g)| g.value != RETIRED && (g.value != 0 || g.ncnt != 0 || g.zcnt != 0))
            .map(|(i, g)| sems::row(i, &format!("GATE{i}"), g))
            .collect();
        if used.is_empty() {
            lines.push("  gates: none in use".to_string());
        }
        lines.extend(used);
        if retired > 0 {
            lines.push(format!("  gates retired: {retired}"));
        }
    }
    if let Some(a) = alive.and_then(|a| sems::read(SemId(a)).ok()) {
        lines.extend(a.iter().take(1).map(|g| sems::row(0, "ALIVE", g)));
    }
    Some(NodeView {
        section: Section { title, lines },
        claims,
    })
}

//! `rshm_server`: one node of an RSHM group, shared memory across machines (seed 000).
//!
//! It serves the programs on its machine through a System V message queue (key `0x52530000 +
//! port`) and keeps a TCP connection to every `--peer`. It holds the table of every segment in
//! the group and a private replica of each; `rshmChanged` copies a replica's bytes to every
//! other node over TCP.
//!
//! Protocol: see `ipclab::rshm::server` (threads, HELLO, acks) and `ipclab::wire::rshm` (the
//! bytes). Start order: any; each server retries its peers with backoff and serves its local
//! programs meanwhile. Stop with SIGINT or SIGTERM: it tells its peers it leaves, removes its
//! replicas and its queue, and exits 0.
//!
//! Every node of a group must share one secret (`--secret FILE`, by default
//! `~/.config/ipclab/rshm-secret`, made on first use): each TCP connection opens with a
//! challenge-response that proves both ends know it (`ipclab::rshm::auth`).
//!
//! ```text
//! $ rshm_server --listen 7001 --peer 7002 &
//! rshm_server: node 127.0.0.1:7001 (id 5c1e0f3a) serving queue key 0x52531b59 (msqid 3), 1 peer(s)
//! rshm_server: peer 127.0.0.1:7002 is down (Connection refused (os error 111)); retrying with backoff, serving locally
//! $ rshm_server --listen 7002 --peer 7001 &
//! rshm_server: node 127.0.0.1:7002 (id 0b8d27c4) serving queue key 0x52531b5a (msqid 4), 1 peer(s)
//! rshm_server: connected to peer 127.0.0.1:7001 (id 5c1e0f3a, 0 segment(s))
//! rshm_server: connected to peer 127.0.0.1:7002 (id 0b8d27c4, 0 segment(s))
//! $ client --port 7001 write 0x10 hello
//! rshm_server: created rshmid 1702349821 (key 0x00000010, 4096 bytes)
//! 1702349821
//! $ client --port 7002 read 0x10
//! hello
//! $ kill %1 %2
//! rshm_server: signal 15: leaving the group
//! ```
//!
//! A server killed with SIGKILL is replaced by starting it again: the new one recognises the
//! dead one's queue and gates by its alive semaphore (`ipclab::rshm::alive`) and removes them.
//!
//! Exit status: 0 after SIGINT/SIGTERM; 1 if it cannot start (a live server on the port, named
//! by pid; the TCP port taken; another user's objects on the keys; a bad secret file); 2 for a
//! usage error.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::params::RSHM_MAX_PEERS;
use ipclab::rshm::auth::Secret;
use ipclab::rshm::parse_addr;
use ipclab::rshm::server::{Config, Server};
use ipclab::sys::signal::TermSignals;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage: rshm_server --listen [ADDR:]PORT [--peer [ADDR:]PORT]... [--secret FILE]

One node of an RSHM group. Local programs (client, or your own using the rshm API) reach it
through the message queue with key 0x52530000 + PORT; the other nodes through TCP. ADDR
defaults to 127.0.0.1. Runs until SIGINT/SIGTERM, then leaves the group and removes its
replicas and its queue.

Options:
  -l, --listen [ADDR:]PORT   where to listen; also this node's name in the group, so ADDR must
                             be the address the peers give in their --peer (not 0.0.0.0)
  -p, --peer [ADDR:]PORT     another node (repeat for each, at most 16); only these may connect
  -s, --secret FILE          the cluster secret: every node of the group must use the same
                             bytes (copy the file to each machine); a peer that cannot prove
                             it knows them gets nothing. Default ~/.config/ipclab/rshm-secret,
                             created (mode 0600, random bytes) if missing. Refused if group or
                             others may read it
  -h, --help                 this text

Environment: IPCLAB_TRACE=1 prints every queue message and every TCP frame.
";

fn main() -> ExitCode {
    // First thing, before any thread: termination signals become events we take ourselves.
    let sigs = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => return cli::run(USAGE, |_| Err(e.into())),
    };
    cli::run(USAGE, |args| body(args, &sigs))
}

fn addr(flag: &str, s: &str) -> Result<SocketAddrV4, Failure> {
    parse_addr(s).ok_or_else(|| Failure::usage(format!("{flag}: '{s}' is not [ADDR:]PORT")))
}

fn body(mut args: cli::Args, sigs: &TermSignals) -> Result<(), Failure> {
    let mut listen = None;
    let mut peers: Vec<SocketAddrV4> = Vec::new();
    let mut secret: Option<PathBuf> = None;
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-l" | "--listen") => {
                listen = Some(addr("--listen", &args.value("--listen")?)?)
            }
            Arg::Flag("-p" | "--peer") => peers.push(addr("--peer", &args.value("--peer")?)?),
            Arg::Flag("-s" | "--secret") => secret = Some(args.value("--secret")?.into()),
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => return Err(Failure::usage(format!("unexpected argument '{w}'"))),
        }
    }
    let listen = listen.ok_or_else(|| Failure::usage("--listen is required"))?;
    if listen.ip().is_unspecified() {
        return Err(Failure::usage(
            "--listen: give the address the peers use for this node, not 0.0.0.0",
        ));
    }
    if listen.port() == 0 {
        return Err(Failure::usage(
            "--listen: the port must not be 0 (it names the queue)",
        ));
    }
    if peers.len() > RSHM_MAX_PEERS {
        return Err(Failure::usage(format!("at most {RSHM_MAX_PEERS} peers")));
    }
    if peers.contains(&listen) {
        return Err(Failure::usage(format!(
            "--peer {listen} is this node itself"
        )));
    }
    peers.sort();
    peers.dedup();
    // Only the default file is created when missing: a --secret that names no file is a typo.
    let (path, create) = match secret {
        Some(p) => (p, false),
        None => (
            Secret::default_path().map_err(|e| Failure::runtime(e.to_string()))?,
            true,
        ),
    };
    let (secret, made) = Secret::load(&path, create)
        .map_err(|e| Failure::runtime(format!("cluster secret: {e}")))?;
    if made {
        // On stderr, with the server's other log lines.
        eprintln!(
            "rshm_server: created the cluster secret {} (mode 0600); copy it to every node of the group",
            path.display()
        );
    }
    let server = Server::start(Config {
        listen,
        peers,
        secret,
    })
    .map_err(|e| Failure::runtime(format!("starting node {listen}: {e}")))?;
    server.serve(sigs)?;
    Ok(())
}

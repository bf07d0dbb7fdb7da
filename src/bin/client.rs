//! `client`: the seed's P1 and P2, a program that uses RSHM through its node's `rshm_server`.
//!
//! Each command is a few seed calls (see `ipclab::rshm::client`): `write` is rshmget, rshmat,
//! copy, rshmChanged, rshmdt; `read` is rshmget, rshmat, copy out, rshmdt; `rm` is rshmctl
//! with IPC_RMID; `ls` prints the node's table. Without a command it asks for commands on
//! stdin, for a person at a terminal.
//!
//! Start order: the node's `rshm_server` first. The node is `--port P`, else `RSHM_PORT`,
//! else 7070.
//!
//! ```text
//! $ client --port 7001 write 0x10 "hello from A"
//! 1702349821
//! $ client --port 7002 read 0x10
//! hello from A
//! $ client --port 7003 ls
//! node 127.0.0.1:7003 peers 127.0.0.1:7001 up, 127.0.0.1:7002 up
//! rshmid      key              size owner                 attaches    shmid  version       sent status
//! 1702349821  0x00000010       4096 127.0.0.1:7001               0    32792        1          0
//! $ client --port 7002 rm 0x10
//! $ client --port 7002 read 0x10
//! client: rshmget(key=0x00000010): no segment with this key in the group: No such file or directory (os error 2)
//! ```
//!
//! Exit status: 0 ok; 1 if a call failed (no server on the port, unknown key, text too long,
//! segment removed, a peer that did not acknowledge); 2 for a usage error.

#![forbid(unsafe_code)]

use ipclab::cli::{self, Arg, Failure};
use ipclab::params::{RSHM_FOLLOW_WAIT, RSHM_MAX_SEGMENT};
use ipclab::rshm::{client, parse_key, port_from_env, Node};
use ipclab::sys::signal::TermSignals;
use std::io::{BufRead, Write};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: client [--port P] write KEY TEXT... [--size N]
       client [--port P] read KEY [--follow]
       client [--port P] rm KEY
       client [--port P] ls
       client [--port P]                      (interactive: type the same commands)

P1/P2 of RSHM: shared memory across nodes, through the rshm_server on port P.

Commands:
  write KEY TEXT   put TEXT (NUL-terminated) in the segment with KEY, creating it if the group
                   has none, then rshmChanged: every connected node has it when this returns.
                   Prints the rshmid.
  read KEY         print the string in the segment with KEY
  rm KEY           mark it for removal (destroyed on every node at the last detach)
  ls               this node's table: rshmid, key, size, owner, attaches, shmid, version,
                   sent (bytes of the last update this node sent for it, per peer)

Options:
  -p, --port P     the node's port (default: $RSHM_PORT, else 7070)
  -s, --size N     write: the size of a new segment (default 4096)
  -f, --follow     read: print the string again after every change, until Ctrl-C
  -h, --help       this text

KEY is decimal or 0x-hex.
";

fn main() -> ExitCode {
    // First thing: Ctrl-C during `read --follow` becomes an event, so that we detach first.
    let sigs = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => return cli::run(USAGE, |_| Err(e.into())),
    };
    cli::run(USAGE, |args| body(args, &sigs))
}

#[derive(Default)]
struct Opts {
    port: Option<u16>,
    size: Option<usize>,
    follow: bool,
    words: Vec<String>,
}

fn parse(mut args: cli::Args) -> Result<Opts, Failure> {
    let mut o = Opts::default();
    while let Some(arg) = args.next()? {
        match arg {
            Arg::Flag("-p" | "--port") => o.port = Some(args.parse("--port")?),
            Arg::Flag("-s" | "--size") => {
                let n: usize = args.parse("--size")?;
                if n == 0 || n > RSHM_MAX_SEGMENT {
                    return Err(Failure::usage(format!(
                        "--size: must be 1..={RSHM_MAX_SEGMENT}"
                    )));
                }
                o.size = Some(n);
            }
            Arg::Flag("-f" | "--follow") => o.follow = true,
            Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
            Arg::Word(w) => o.words.push(w),
        }
    }
    Ok(o)
}

fn body(args: cli::Args, sigs: &TermSignals) -> Result<(), Failure> {
    let o = parse(args)?;
    // The command line is checked before any server is asked, so that a usage error is exit 2
    // whether or not a server runs on the port.
    if !o.words.is_empty() {
        check(&o.words)?;
    }
    let port = match o.port {
        Some(p) => p,
        None => port_from_env().map_err(Failure::usage)?,
    };
    let node = Node::open(port)?;
    if o.words.is_empty() {
        return interactive(&node, sigs);
    }
    command(&node, &o, sigs)
}

fn key(word: Option<&String>) -> Result<i32, Failure> {
    let w = word.ok_or_else(|| Failure::usage("KEY is missing"))?;
    parse_key(w).ok_or_else(|| Failure::usage(format!("KEY: '{w}' is not a number")))
}

/// The usage errors of a command (its name, its arguments, its KEY), found without a server.
fn check(w: &[String]) -> Result<(), Failure> {
    match w[0].as_str() {
        "write" => {
            key(w.get(1))?;
            if w.len() < 3 {
                return Err(Failure::usage("write: TEXT is missing"));
            }
        }
        "read" | "rm" if w.len() == 2 => {
            key(w.get(1))?;
        }
        "ls" if w.len() == 1 => {}
        "read" | "rm" | "ls" => {
            return Err(Failure::usage(format!(
                "{}: wrong number of arguments",
                w[0]
            )))
        }
        other => return Err(Failure::usage(format!("unknown command '{other}'"))),
    }
    Ok(())
}

/// One command: `write`, `read`, `rm` or `ls`.
fn command(node: &Node, o: &Opts, sigs: &TermSignals) -> Result<(), Failure> {
    let w = &o.words;
    check(w)?;
    match w[0].as_str() {
        "write" => {
            let k = key(w.get(1))?;
            let id = client::write(node, k, &w[2..].join(" "), o.size)?;
            cli::say(&id.to_string())
        }
        "read" if w.len() == 2 => {
            let att = client::open(node, key(w.get(1))?)?;
            cli::say(&att.read_string()?)?;
            while o.follow && sigs.pending().is_none() {
                // A bounded wait, so that Ctrl-C is noticed within a second.
                if node.rshm_wait_changed(att.rshmid(), RSHM_FOLLOW_WAIT)? {
                    cli::say(&att.read_string()?)?;
                }
            }
            node.rshmdt(att)?;
            Ok(())
        }
        "rm" if w.len() == 2 => {
            client::remove(node, key(w.get(1))?)?;
            Ok(())
        }
        "ls" if w.len() == 1 => {
            let l = node.ls()?;
            let mut out = std::io::stdout().lock();
            out.write_all(client::format_ls(&l).as_bytes())
                .and_then(|()| out.flush())
                .map_err(cli::stdout_failure)
        }
        // check() let nothing else through.
        _ => Err(Failure::usage(format!("unknown command '{}'", w[0]))),
    }
}

/// The seed's interactive P1/P2: a prompt, the same commands, errors that do not end it.
fn interactive(node: &Node, sigs: &TermSignals) -> Result<(), Failure> {
    let prog = ipclab::trace::program();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("rshm:{}> ", node.port());
        std::io::stdout().flush().ok();
        let Some(line) = lines.next() else {
            println!();
            return Ok(());
        };
        let line = line.map_err(|e| Failure::runtime(format!("reading stdin: {e}")))?;
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        match words.first().map(String::as_str) {
            None => continue,
            Some("quit" | "exit") => return Ok(()),
            Some("help") => {
                println!("commands: write KEY TEXT... | read KEY | rm KEY | ls | quit");
                continue;
            }
            _ => {}
        }
        let args = cli::Args::new(words);
        let result = parse(args).and_then(|mut o| {
            o.follow = false;
            command(node, &o, sigs)
        });
        match result {
            Ok(()) => {}
            Err(Failure::Usage(m) | Failure::Runtime(m)) => eprintln!("{prog}: {m}"),
            Err(Failure::Help) => print!("{USAGE}"),
            Err(Failure::Exit(_)) => {}
        }
    }
}

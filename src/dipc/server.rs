//! The server: a listening socket, one thread per client, and an orderly stop on SIGTERM.
//!
//! ```text
//!   main thread:      start() ... serve(): sigwait ───────────────► stop: see below
//!   acceptor thread:  accept ─► spawn client thread ─► accept ...
//!   client thread:    read request ─► [lock, copy, unlock] ─► send reply ─► ...
//! ```
//!
//! A client thread moves bytes between its socket and the segment, and it never holds a lock
//! while it talks to the socket: a write's payload is read *whole* into memory before the write
//! lock is taken, and a read copies the message out under the read lock and sends it after the
//! lock is released. So a client that stalls, however it stalls, delays nobody else.
//!
//! Rules for each connection (all bounded, whatever a client sends):
//! - It reads into a fixed buffer of [`DIPC_READ_BUF`] bytes; a header line is at most
//!   [`DIPC_LINE_MAX`] bytes, and the payload buffer at most the largest message. Oversized
//!   payloads are read in buffer-sized chunks and thrown away.
//! - Replies are queued and sent when the thread is about to wait for the client: requests that
//!   arrive together (pipelined) are answered together, and requests split byte by byte get the
//!   same replies, one at a time.
//! - A client silent for the idle timeout (also in the middle of a payload) gets
//!   `err idle timeout` and is closed. One that disconnects mid-payload changes nothing.
//!
//! Stop (SIGTERM, SIGINT or SIGHUP, taken by the main thread, which waits for them
//! [`DIPC_WATCH_PERIOD`] at a time and checks in between that its segment and set are still
//! there: if someone removed them with `ipcrm`, it logs why and stops the same way, telling each
//! client `err server stopping: <why>`): mark the server as stopping, wake the acceptor (`shutdown` on the listener), shut down every client socket
//! (which wakes threads blocked reading or writing), wait up to [`DIPC_STOP_GRACE`] for the
//! client threads, then remove the semaphore set and the segment (their `Owner`s are here).

use super::mailbox::{self, CreateError, Created, Mailboxes};
use super::Config;
use crate::params::{
    DIPC_DISCARD_MAX, DIPC_LINE_MAX, DIPC_MAX_CLIENTS, DIPC_READ_BUF, DIPC_STOP_GRACE,
    DIPC_THREAD_STACK, DIPC_WATCH_PERIOD,
};
use crate::sys::sem::SemId;
use crate::sys::shm::ShmId;
use crate::sys::signal::TermSignals;
use crate::sys::{daemon, errno};
use crate::wire::dipc::{self as wire, Mailbox, Reply, Request, SegmentHeader};
use crate::wire::DecodeError;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A started server: listening, with its objects created, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// The segment's and the set's owner is this server; see [`Server::serve`] for the order.
    objects: Created,
    idle: Duration,
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A live dipc server already has this port.
    AlreadyRunning { port: u16, pid: i32 },
    /// Anything else: the text reads `what: errno text`.
    Failed(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AlreadyRunning { port, pid } => write!(
                f,
                "port {port}: a dipc server is already running (pid {pid}); stop it with dipcrm {port}"
            ),
            StartError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Binds the port and creates (or recycles) the objects. Recycling notices go to `notice`.
pub fn start(cfg: &Config, notice: impl FnMut(String)) -> Result<Server, StartError> {
    let addr = SocketAddr::new(cfg.bind, cfg.port);
    // The port first: it is the cheap, kernel-enforced "only one server here" check.
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            if errno(&e) == Some(libc::EADDRINUSE) {
                if let Ok(mailbox::Found::Running { pid, .. }) = mailbox::inspect(cfg.port) {
                    return Err(StartError::AlreadyRunning {
                        port: cfg.port,
                        pid,
                    });
                }
            }
            return Err(StartError::Failed(io::Error::new(
                e.kind(),
                format!("bind({addr}): {e}"),
            )));
        }
    };
    crate::trace!("listening on {addr}");
    let header = SegmentHeader {
        port: cfg.port,
        mailboxes: cfg.mailboxes,
        creator_pid: 0,
        mailbox_size: cfg.mailbox_bytes(),
        packet_size: cfg.packet_bytes(),
    };
    let objects = match mailbox::create(cfg.port, header, cfg.mode, notice) {
        Ok(c) => c,
        Err(CreateError::AlreadyRunning(pid)) => {
            return Err(StartError::AlreadyRunning {
                port: cfg.port,
                pid,
            })
        }
        Err(CreateError::Failed(e)) => return Err(StartError::Failed(e)),
    };
    Ok(Server {
        listener,
        objects,
        idle: cfg.idle_timeout,
    })
}

/// What the client threads share.
#[derive(Debug)]
struct Shared {
    boxes: Mailboxes,
    idle: Duration,
    /// The live connections (a clone of each socket, to shut it down at stop); protected by
    /// its mutex, and `drained` is signalled whenever one leaves.
    clients: Mutex<Clients>,
    drained: Condvar,
}

#[derive(Debug, Default)]
struct Clients {
    next_id: u64,
    live: HashMap<u64, TcpStream>,
    stopping: bool,
    /// Why the server stops, when it is because its objects were removed under it.
    lost: Option<String>,
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until a termination signal arrives, then stops in order and removes the objects.
    /// `signals` must have been blocked before any thread started. If someone else removes the
    /// segment or the set meanwhile, it says so through `log`, stops the same way, and returns
    /// the reason as an error.
    pub fn serve(self, signals: &TermSignals, mut log: impl FnMut(String)) -> io::Result<()> {
        let Server {
            listener,
            objects,
            idle,
        } = self;
        let Created { shm, sem, boxes } = objects;
        let shared = Arc::new(Shared {
            boxes,
            idle,
            clients: Mutex::new(Clients::default()),
            drained: Condvar::new(),
        });
        let waker = listener.try_clone()?;
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dipc-accept".into())
                .spawn(move || accept_loop(listener, shared))?
        };

        // Wait for a signal, and between waits check that nobody removed our objects: a
        // server whose segment or set is gone cannot serve, and must not linger holding the
        // port (see `lost_objects`).
        let lost = loop {
            if let Some(sig) = signals.wait_timeout(DIPC_WATCH_PERIOD) {
                crate::trace!("signal {sig}: stopping");
                break None;
            }
            if let Some(why) = lost_objects(shm.get(), sem.get()) {
                log(format!("{why}; stopping"));
                break Some(why);
            }
        };
        {
            let mut clients = lock(&shared.clients);
            clients.stopping = true;
            clients.lost = lost.clone();
        }
        daemon::shutdown_listener(&waker)?;
        let _ = acceptor.join();
        {
            let clients = lock(&shared.clients);
            for s in clients.live.values() {
                if let Some(why) = &lost {
                    // Tell each client why it is being cut off. A reply being sent by its
                    // thread at this instant may be cut in the middle; it is the last anyway.
                    refuse_ref(s, &format!("server stopping: {why}"));
                }
                // Wakes the thread whether it waits to read a request or to send a reply.
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let deadline = Instant::now() + DIPC_STOP_GRACE;
        let mut clients = lock(&shared.clients);
        while !clients.live.is_empty() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            clients = match shared.drained.wait_timeout(clients, left) {
                Ok((c, _)) => c,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if !clients.live.is_empty() {
            crate::trace!(
                "{} client threads still busy; removing anyway",
                clients.live.len()
            );
        }
        drop(clients);
        // The set first: a thread still waiting on a lock wakes with EIDRM. The segment last,
        // so that a crash in between leaves a segment with a dead creator: a recognisable orphan.
        // After a loss, whatever is left of ours goes (a set already removed is not an error).
        match lost {
            None => {
                sem.remove()?;
                shm.remove()?;
                Ok(())
            }
            Some(why) => {
                let _ = removed_or(sem.remove());
                let _ = removed_or(shm.remove());
                Err(io::Error::other(format!("stopped: {why}")))
            }
        }
    }
}

/// `Ok` when `r` is "already gone" (EIDRM, or EINVAL for an id that was ours and valid).
fn removed_or(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if gone(&e) => Ok(()),
        r => r,
    }
}

/// An IPC call on an id this server created, and has not removed, failed because the object
/// is no longer there: EIDRM (removed while we waited on it), or EINVAL (the id is no longer
/// valid; ours was, so someone removed it).
fn gone(e: &io::Error) -> bool {
    crate::sys::is_removed(e) || errno(e) == Some(libc::EINVAL)
}

/// Why this server's own objects can no longer be used, or `None` if they are intact. Checked
/// by the main thread every [`DIPC_WATCH_PERIOD`].
///
/// `ipcrm -m` on an attached segment only marks it (`SHM_DEST`): it lives until the last
/// detach, but its key is gone, so no tool can find it, and it is destroyed when we exit. So a
/// marked segment is a removed one. `ipcrm -s` destroys the set at once: IPC_STAT then fails.
fn lost_objects(shm: ShmId, sem: SemId) -> Option<String> {
    match shm.stat() {
        Ok(st) if st.removed => {
            return Some(format!(
                "its shared memory segment (shmid {}) was removed by someone else (ipcrm -m?)",
                shm.0
            ))
        }
        Ok(_) => {}
        Err(e) if gone(&e) => {
            return Some(format!(
                "its shared memory segment (shmid {}) was removed by someone else: {e}",
                shm.0
            ))
        }
        Err(e) => crate::trace!("watch: {e}"),
    }
    match sem.stat() {
        Err(e) if gone(&e) => Some(format!(
            "its semaphore set (semid {}) was removed by someone else (ipcrm -s?): {e}",
            sem.0
        )),
        _ => None,
    }
}

/// The mutex, even if a client thread panicked while holding it (it holds nothing we trust
/// less for that: a map of sockets).
fn lock(m: &Mutex<Clients>) -> std::sync::MutexGuard<'_, Clients> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if lock(&shared.clients).stopping {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, or a connection reset before we took it: not fatal, but
                // do not spin on a persistent error.
                crate::trace!("accept: {e}");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        // Replies are small and the client waits for each: send them at once (no Nagle delay).
        let _ = stream.set_nodelay(true);
        let id = {
            let mut clients = lock(&shared.clients);
            if clients.live.len() >= DIPC_MAX_CLIENTS {
                drop(clients);
                refuse(stream, "server busy, try later");
                continue;
            }
            let Ok(clone) = stream.try_clone() else {
                continue;
            };
            clients.next_id += 1;
            let id = clients.next_id;
            clients.live.insert(id, clone);
            id
        };
        crate::trace!("{peer}: connected");
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("dipc-client".into())
            .stack_size(DIPC_THREAD_STACK)
            .spawn(move || {
                let mut conn = Connection::new(stream, peer, &shared2);
                if let Err(e) = conn.run() {
                    crate::trace!("{peer}: {e}");
                }
                crate::trace!("{peer}: closed");
                drop(conn);
                lock(&shared2.clients).live.remove(&id);
                shared2.drained.notify_all();
            });
        if let Err(e) = spawned {
            crate::trace!("spawn: {e}");
            if let Some(s) = lock(&shared.clients).live.remove(&id) {
                refuse(s, "server busy, try later");
            }
        }
    }
}

fn refuse(stream: TcpStream, why: &str) {
    refuse_ref(&stream, why);
}

fn refuse_ref(mut stream: &TcpStream, why: &str) {
    let mut out = Vec::new();
    wire::encode_reply(&Reply::Err(why.into()), &mut out);
    let _ = stream.write_all(&out);
}

/// Replies are sent at the latest when this many bytes are queued.
const FLUSH_AT: usize = 64 * 1024;

/// One client's connection, run by its own thread.
struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    /// Bytes read from the socket; `inbuf[start..end]` are not decoded yet.
    inbuf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Replies not yet sent.
    out: Vec<u8>,
    /// The message of the write being received (at most the largest message).
    payload: Vec<u8>,
    /// Set once `close` has run (after an idle timeout, say), so it runs only once.
    closed: bool,
}

/// Whether to go on with the next request.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

/// How reading some bytes from the client ended.
enum Got {
    Bytes(usize),
    /// End of file, idle timeout or a socket error: the connection is over.
    Gone,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Connection<'a> {
        let _ = stream.set_read_timeout(Some(shared.idle));
        let _ = stream.set_write_timeout(Some(shared.idle));
        Connection {
            stream,
            peer,
            shared,
            inbuf: vec![0u8; DIPC_READ_BUF.max(DIPC_LINE_MAX)].into_boxed_slice(),
            start: 0,
            end: 0,
            out: Vec::new(),
            payload: Vec::new(),
            closed: false,
        }
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            match wire::decode_request(&self.inbuf[self.start..self.end]) {
                Ok((req, used)) => {
                    crate::trace!(
                        "{}: recv {}",
                        self.peer,
                        String::from_utf8_lossy(wire::strip_line_end(
                            &self.inbuf[self.start..self.start + used]
                        ))
                    );
                    self.start += used;
                    if self.handle(req)? == Next::Close {
                        return self.close();
                    }
                }
                Err(DecodeError::NeedMore(_)) => {
                    // Make room at the front, then wait for more of the header line.
                    self.inbuf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    let end = self.end;
                    let mut buf = std::mem::take(&mut self.inbuf);
                    let got = self.recv(&mut buf[end..]);
                    self.inbuf = buf;
                    match got? {
                        Got::Bytes(n) => self.end += n,
                        Got::Gone => return Ok(()),
                    }
                }
                Err(DecodeError::Invalid(why)) => {
                    // Framing lost: we cannot tell where the next request starts. Say why, close.
                    self.reply(Reply::Err(format!("{why}; closing")));
                    return self.close();
                }
            }
        }
    }

    /// Sends the queued replies, then reads what the client sent (at most `buf.len()` bytes).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        self.flush()?;
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Ok(Got::Gone),
                Ok(n) => Ok(Got::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.reply(Reply::Err("idle timeout; closing".into()));
                    let _ = self.close();
                    Ok(Got::Gone)
                }
                Err(_) => Ok(Got::Gone),
            };
        }
    }

    /// Takes `n` bytes of the stream: first what is buffered, then from the socket, each chunk
    /// handed to `sink`. False if the client went away first.
    fn take(&mut self, mut n: u64, mut sink: impl FnMut(&[u8])) -> io::Result<bool> {
        let buffered = (self.end - self.start).min(n.min(usize::MAX as u64) as usize);
        sink(&self.inbuf[self.start..self.start + buffered]);
        self.start += buffered;
        n -= buffered as u64;
        let mut buf = std::mem::take(&mut self.inbuf);
        let result = (|| {
            while n > 0 {
                let want = buf.len().min(n.min(usize::MAX as u64) as usize);
                match self.recv(&mut buf[..want])? {
                    Got::Bytes(got) => {
                        sink(&buf[..got]);
                        n -= got as u64;
                    }
                    Got::Gone => return Ok(false),
                }
            }
            Ok(true)
        })();
        self.inbuf = buf;
        // The buffer was used as scratch space: nothing in it is pending any more.
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        result
    }

    /// Takes one line of data (the `w <n>` form) into `payload`. `Some(true)`: the line is in
    /// `payload`, without its end. `Some(false)`: longer than `max`, thrown away. `None`: gone.
    fn take_line(&mut self, max: usize) -> io::Result<Option<bool>> {
        self.payload.clear();
        let mut fits = true;
        loop {
            let pending = &self.inbuf[self.start..self.end];
            let nl = pending.iter().position(|&b| b == b'\n');
            let chunk = &pending[..nl.map_or(pending.len(), |i| i + 1)];
            // Keep at most max + 2 bytes ("\r\n"); past that, the line is only skipped.
            if fits && self.payload.len() + chunk.len() <= max + 2 {
                self.payload.extend_from_slice(chunk);
            } else {
                fits = false;
                self.payload.clear();
            }
            self.start += chunk.len();
            if nl.is_some() {
                let len = wire::strip_line_end(&self.payload).len();
                self.payload.truncate(len);
                return Ok(Some(fits && len <= max));
            }
            self.start = 0;
            self.end = 0;
            let mut buf = std::mem::take(&mut self.inbuf);
            let got = self.recv(&mut buf);
            self.inbuf = buf;
            match got? {
                Got::Bytes(n) => self.end = n,
                Got::Gone => return Ok(None),
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        crate::trace!("{}: send {reply:?}", self.peer);
        wire::encode_reply(&reply, &mut self.out);
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
            if self.out.capacity() > FLUSH_AT * 2 {
                self.out = Vec::new();
            }
        }
        Ok(())
    }

    /// Sends what is queued and closes, letting the client read the last reply: closing with
    /// unread input would make the kernel send a reset, which can destroy that reply.
    fn close(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let _ = self.flush();
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        // Drain for at most a second and a megabyte; a fixed 512-byte buffer does it.
        let mut sink = [0u8; 512];
        let (start, mut drained) = (Instant::now(), 0usize);
        while start.elapsed() < Duration::from_secs(1) && drained < 1 << 20 {
            match self.stream.read(&mut sink) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
        Ok(())
    }

    /// The mailbox index, or the error reply's reason.
    fn mailbox(&self, m: &Mailbox) -> Result<u32, String> {
        let k = self.shared.boxes.header().mailboxes;
        match m {
            Mailbox::Number(n) if *n < u64::from(k) => Ok(*n as u32),
            Mailbox::Number(n) => Err(format!("no mailbox {n} (mailboxes are 0 to {})", k - 1)),
            Mailbox::Bad(s) => Err(format!("bad mailbox '{s}' (mailboxes are 0 to {})", k - 1)),
        }
    }

    fn too_long(&self, len: u64) -> String {
        format!(
            "message of {len} bytes is over the limit of {}",
            self.shared.boxes.header().max_message()
        )
    }

    fn handle(&mut self, req: Request) -> io::Result<Next> {
        let max = self.shared.boxes.header().max_message();
        match req {
            Request::Read(m) => match self.mailbox(&m) {
                Ok(i) => return self.read_box(i),
                Err(why) => self.reply(Reply::Err(why)),
            },
            Request::Write(m, len) => {
                let target = self.mailbox(&m);
                match target {
                    Ok(i) if len <= max => {
                        let mut payload = std::mem::take(&mut self.payload);
                        payload.clear();
                        payload.reserve(len as usize);
                        let complete = self.take(len, |b| payload.extend_from_slice(b))?;
                        self.payload = payload;
                        if !complete {
                            // Gone mid-payload: the mailbox is not touched.
                            return Ok(Next::Close);
                        }
                        return self.write_box(i);
                    }
                    // Far too long to be worth reading: answer at once and close (the
                    // framing rule in wire::dipc), rather than read up to 2^64 bytes.
                    _ if len.saturating_sub(max) > DIPC_DISCARD_MAX => {
                        self.reply(Reply::Err(format!("{}; closing", self.too_long(len))));
                        return Ok(Next::Close);
                    }
                    // Framing is intact: read the bytes that belong to this request, drop them.
                    _ => {
                        if !self.take(len, |_| {})? {
                            return Ok(Next::Close);
                        }
                        let why = target.err().unwrap_or_else(|| self.too_long(len));
                        self.reply(Reply::Err(why));
                    }
                }
            }
            Request::WriteLine(m) => {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                match self.take_line(max)? {
                    None => return Ok(Next::Close),
                    Some(fits) => match self.mailbox(&m) {
                        Err(why) => self.reply(Reply::Err(why)),
                        Ok(_) if !fits => {
                            self.reply(Reply::Err(format!("message line longer than {max} bytes")))
                        }
                        Ok(i) => return self.write_box(i),
                    },
                }
            }
            Request::Quit => {
                self.reply(Reply::Bye);
                return Ok(Next::Close);
            }
            Request::Bad(why) => self.reply(Reply::Err(why)),
            // An Enter after a write's data, typed at `nc`: no reply (wire::dipc).
            Request::Blank => {}
        }
        Ok(Next::Continue)
    }

    /// `r <i>`: copy the message out under the read lock; it is sent after the lock is gone.
    fn read_box(&mut self, i: u32) -> io::Result<Next> {
        let view = match self.shared.boxes.read(i) {
            Ok(v) => v,
            Err(e) => return self.fail(e),
        };
        let len = view.len();
        wire::encode_reply(&Reply::Ok(len), &mut self.out);
        let copied = view.append_to(&mut self.out);
        drop(view);
        if let Err(e) = copied {
            return self.fail(e);
        }
        crate::trace!("{}: send ok {len} (+{len} bytes)", self.peer);
        if self.out.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(Next::Continue)
    }

    /// Stores `payload` in mailbox `i` (under the write lock, taken only now that the whole
    /// message is here).
    fn write_box(&mut self, i: u32) -> io::Result<Next> {
        if let Err(e) = self.shared.boxes.write(i, &self.payload) {
            return self.fail(e);
        }
        let len = self.payload.len() as u64;
        if self.payload.capacity() > FLUSH_AT {
            // A big message was here; do not keep its memory while idle.
            self.payload = Vec::new();
        }
        self.reply(Reply::Ok(len));
        Ok(Next::Continue)
    }

    /// A lock or the segment failed: the server is stopping (the set was removed). Tell the
    /// client and close.
    fn fail(&mut self, e: io::Error) -> io::Result<Next> {
        let why = if gone(&e) {
            let clients = lock(&self.shared.clients);
            match (&clients.lost, clients.stopping) {
                (Some(lost), _) => format!("server stopping: {lost}"),
                (None, true) => "server shutting down".to_string(),
                // The main thread will notice within DIPC_WATCH_PERIOD and stop the server.
                (None, false) => "server stopping: its semaphore set was removed by someone \
                                  else (ipcrm -s?)"
                    .to_string(),
            }
        } else {
            format!("server error: {e}")
        };
        self.reply(Reply::Err(why));
        Ok(Next::Close)
    }
}

//! `dipc_client`: speaks the datagram (`crate::wire::dipc`) for a person or a script.
//!
//! Three ways to use it:
//! - **one-shot**, for scripts: `dipc_client 5000 w 1 "text"` prints `ok 4`; `dipc_client 5000
//!   r 1` prints the message.
//! - **interactive**, for a person: type `r 1`, `w 1 hello there` or `q`; each reply is printed.
//!   A typed `w <n> <text>` is sent in the length form (`w 1 11\nhello there`), so any text,
//!   spaces included, arrives exactly as typed.
//! - **chat**: each person writes lines into their own mailbox and sees the others' mailboxes
//!   as they change. The server has no notifications (the seed's datagram has none), so a
//!   second connection polls the other boxes every [`DIPC_CHAT_POLL`].
//!
//! Rules: one request, then its whole reply, on one connection; the client never pipelines, so
//! every reply belongs to the last request.

use crate::params::DIPC_CHAT_POLL;
use crate::wire::dipc::{self as wire, Mailbox, Reply, Request};
use crate::wire::DecodeError;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;

/// A connection to a dipc server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    /// Bytes received and not yet decoded.
    pending: Vec<u8>,
}

/// The server's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `ok <len>`: for a read, `data` is the message; for a write, it is empty.
    Ok { len: u64, data: Vec<u8> },
    /// `bye`.
    Bye,
    /// `err <reason>`.
    Err(String),
}

impl Client {
    /// Connects to `host:port`.
    pub fn connect(host: &str, port: u16) -> io::Result<Client> {
        let stream = TcpStream::connect((host, port))
            .map_err(|e| io::Error::new(e.kind(), format!("connect({host}:{port}): {e}")))?;
        stream.set_nodelay(true)?;
        crate::trace!("connected to {host}:{port}");
        Ok(Client {
            stream,
            pending: Vec::new(),
        })
    }

    /// Sends one request (and its data) and receives the whole answer.
    pub fn call(&mut self, req: &Request, data: &[u8]) -> io::Result<Answer> {
        let mut out = Vec::with_capacity(32 + data.len());
        wire::encode_request(req, &mut out);
        crate::trace!(
            "send {} (+{} bytes)",
            String::from_utf8_lossy(wire::strip_line_end(&out)),
            data.len()
        );
        out.extend_from_slice(data);
        self.stream.write_all(&out)?;
        let reply = loop {
            match wire::decode_reply(&self.pending) {
                Ok((reply, used)) => {
                    self.pending.drain(..used);
                    break reply;
                }
                Err(DecodeError::NeedMore(_)) => self.fill()?,
                Err(e) => return Err(e.into()),
            }
        };
        crate::trace!("recv {reply:?}");
        Ok(match reply {
            Reply::Ok(len) if matches!(req, Request::Read(_)) => {
                let len_usize = usize::try_from(len)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply too long"))?;
                while self.pending.len() < len_usize {
                    self.fill()?;
                }
                let data: Vec<u8> = self.pending.drain(..len_usize).collect();
                Answer::Ok { len, data }
            }
            Reply::Ok(len) => Answer::Ok { len, data: vec![] },
            Reply::Bye => Answer::Bye,
            Reply::Err(why) => Answer::Err(why),
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// `r <n>`.
    pub fn read(&mut self, n: u32) -> io::Result<Answer> {
        self.call(&Request::Read(Mailbox::Number(n.into())), &[])
    }

    /// `w <n> <len>` + data.
    pub fn write(&mut self, n: u32, data: &[u8]) -> io::Result<Answer> {
        self.call(
            &Request::Write(Mailbox::Number(n.into()), data.len() as u64),
            data,
        )
    }

    /// `q`.
    pub fn quit(&mut self) -> io::Result<Answer> {
        self.call(&Request::Quit, &[])
    }
}

/// A mailbox number as typed: a number, or the text (sent as is, for the server to refuse).
fn typed_mailbox(tok: &str) -> Mailbox {
    match tok.parse() {
        Ok(n) => Mailbox::Number(n),
        Err(_) => Mailbox::Bad(tok.to_string()),
    }
}

/// Prints an answer for a person: the reply line, then a read's message on its own line.
fn show(answer: &Answer, out: &mut impl Write) -> io::Result<()> {
    match answer {
        Answer::Ok { len, data } if !data.is_empty() => {
            writeln!(out, "ok {len}")?;
            out.write_all(data)?;
            if !data.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
        Answer::Ok { len, .. } => writeln!(out, "ok {len}")?,
        Answer::Bye => writeln!(out, "bye")?,
        Answer::Err(why) => writeln!(out, "err {why}")?,
    }
    out.flush()
}

const HELP: &str = "commands: r <mailbox> | w <mailbox> <text> | q";

/// The interactive loop: reads typed requests from `input` until `q` or end of input.
pub fn interactive(
    client: &mut Client,
    input: impl BufRead,
    out: &mut impl Write,
    prompt: bool,
) -> io::Result<()> {
    if prompt {
        write!(out, "dipc> ")?;
        out.flush()?;
    }
    for line in input.lines() {
        let line = line?;
        let trimmed = line.trim_start();
        let (cmd, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        let answer = match cmd {
            "" => None,
            "r" => Some(client.call(&Request::Read(typed_mailbox(rest.trim())), &[])?),
            "w" => {
                let rest = rest.trim_start();
                let (n, text) = rest.split_once(' ').unwrap_or((rest, ""));
                if n.is_empty() {
                    writeln!(out, "{HELP}")?;
                    None
                } else {
                    let req = Request::Write(typed_mailbox(n), text.len() as u64);
                    Some(client.call(&req, text.as_bytes())?)
                }
            }
            "q" => {
                show(&client.quit()?, out)?;
                return Ok(());
            }
            _ => {
                writeln!(out, "{HELP}")?;
                None
            }
        };
        if let Some(a) = answer {
            show(&a, out)?;
        }
        if prompt {
            write!(out, "dipc> ")?;
            out.flush()?;
        }
    }
    // End of input: say goodbye politely.
    let _ = client.quit();
    Ok(())
}

/// The mailboxes a server has, found by reading 0, 1, 2, ... until it answers "no mailbox".
pub fn count_mailboxes(client: &mut Client, limit: u32) -> io::Result<u32> {
    for i in 0..limit {
        if let Answer::Err(_) = client.read(i)? {
            return Ok(i);
        }
    }
    Ok(limit)
}

/// Chat: lines from `input` go to mailbox `mine` as "name: line"; changes to the other
/// mailboxes are printed as they are seen. Returns at end of input.
pub fn chat(host: &str, port: u16, mine: u32, name: &str, input: impl BufRead) -> io::Result<()> {
    let mut writer = Client::connect(host, port)?;
    let mut watcher = Client::connect(host, port)?;
    let k = count_mailboxes(&mut watcher, crate::params::DIPC_MAX_MAILBOXES)?;
    if mine >= k {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "no mailbox {mine} (mailboxes are 0 to {})",
                k.saturating_sub(1)
            ),
        ));
    }
    println!(
        "chat: you are '{name}' writing mailbox {mine}; watching the other {} (Ctrl-D leaves)",
        k - 1
    );
    // The watcher thread only prints; when this function returns, the process ends and the
    // thread with it (it holds no lock and no IPC object, only a socket).
    std::thread::spawn(move || {
        let mut seen: Vec<Vec<u8>> = vec![Vec::new(); k as usize];
        loop {
            for i in (0..k).filter(|&i| i != mine) {
                match watcher.read(i) {
                    Ok(Answer::Ok { data, .. }) => {
                        if data != seen[i as usize] && !data.is_empty() {
                            println!("[{i}] {}", String::from_utf8_lossy(&data));
                        }
                        seen[i as usize] = data;
                    }
                    _ => return,
                }
            }
            std::thread::sleep(DIPC_CHAT_POLL);
        }
    });
    for line in input.lines() {
        let msg = format!("{name}: {}", line?);
        if let Answer::Err(why) = writer.write(mine, msg.as_bytes())? {
            eprintln!("dipc_client: server: {why}");
        }
    }
    let _ = writer.quit();
    Ok(())
}

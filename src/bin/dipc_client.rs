//! `dipc_client`: talks to a dipc server, for a person (interactive, chat) or a script
//! (one-shot).
//!
//! Protocol: the datagram of `ipclab::wire::dipc`; typed `w 1 hello there` is sent as
//! `w 1 11\nhello there`, and the reply `ok 11` is printed.
//!
//! Start order: after `dipc`; any number of clients at once.
//!
//! ```text
//! $ dipc_client 5000 w 1 "text"
//! ok 4
//! $ dipc_client 5000 r 1
//! text
//! $ dipc_client 5000
//! dipc> r 1
//! ok 4
//! text
//! dipc> w 7 x
//! err no mailbox 7 (mailboxes are 0 to 3)
//! dipc> q
//! bye
//! $ dipc_client 5000 chat 0 --name alice        (and bob runs: chat 1 --name bob)
//! chat: you are 'alice' writing mailbox 0; watching the other 3 (Ctrl-D leaves)
//! hello bob
//! [1] bob: hi alice
//! ```

#![forbid(unsafe_code)]

use ipclab::cli::{self, parse_word, Arg, Failure};
use ipclab::dipc::client::{self, Answer, Client};
use ipclab::params::DIPC_MAX_PACKET_KB;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: dipc_client [--host H] <port>                      interactive: r N, w N TEXT, q
       dipc_client [--host H] <port> r <n>                print mailbox n's message
       dipc_client [--host H] <port> w <n> <text...|->    store the words, joined by spaces (- reads stdin), print ok LEN
       dipc_client [--host H] <port> chat <n> [--name NAME]  chat: write box n, watch the others

Options:
      --host H      the server's host (default 127.0.0.1)
      --name NAME   your name in chat mode (default $USER)
      --raw         one-shot r: print the message bytes exactly, without a newline
  -h, --help        print this help

Environment: IPCLAB_TRACE=1 prints each datagram sent and received.
Exit status: 0 ok, 1 if the server refused (err) or could not be reached, 2 on a usage error.
";

fn main() -> ExitCode {
    cli::run(USAGE, |mut args| {
        let mut host = "127.0.0.1".to_string();
        let mut name = std::env::var("USER").unwrap_or_else(|_| "someone".into());
        let mut raw = false;
        let mut words = Vec::new();
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag("--host") => host = args.value("--host")?,
                Arg::Flag("--name") => name = args.value("--name")?,
                Arg::Flag("--raw") => raw = true,
                Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
                Arg::Word(w) => words.push(w),
            }
        }
        let Some((port, rest)) = words.split_first() else {
            return Err(Failure::usage("missing <port>"));
        };
        let port: u16 = parse_word("port", port)?;
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let answer = match rest.as_slice() {
            [] => {
                let mut c = Client::connect(&host, port)?;
                let stdin = std::io::stdin();
                let prompt = stdin.is_terminal();
                return Ok(client::interactive(
                    &mut c,
                    stdin.lock(),
                    &mut std::io::stdout(),
                    prompt,
                )?);
            }
            ["chat", n] => {
                let n: u32 = parse_word("mailbox", n)?;
                return Ok(client::chat(
                    &host,
                    port,
                    n,
                    &name,
                    std::io::stdin().lock(),
                )?);
            }
            ["r", n] => {
                let n: u32 = parse_word("mailbox", n)?;
                Client::connect(&host, port).and_then(|mut c| c.read(n))
            }
            // The words are joined with one space, as echo does: `w 1 two words`.
            ["w", n, text @ ..] if !text.is_empty() => {
                let n: u32 = parse_word("mailbox", n)?;
                let data = if *text == ["-"] {
                    // No message is larger than the largest packet a server takes: read no
                    // more than one byte past it, so that `yes |` cannot fill memory.
                    let mut d = Vec::new();
                    std::io::stdin()
                        .take(DIPC_MAX_PACKET_KB * 1024 + 1)
                        .read_to_end(&mut d)?;
                    d
                } else {
                    text.join(" ").into_bytes()
                };
                Client::connect(&host, port).and_then(|mut c| c.write(n, &data))
            }
            _ => {
                return Err(Failure::usage(
                    "expected: <port>, <port> r <n>, <port> w <n> <text>, or <port> chat <n>",
                ))
            }
        }?;
        let mut out = std::io::stdout().lock();
        let printed = match answer {
            Answer::Ok { data, .. } if rest[0] == "r" => {
                out.write_all(&data)
                    .and_then(|()| if raw { Ok(()) } else { out.write_all(b"\n") })
            }
            Answer::Ok { len, .. } => writeln!(out, "ok {len}"),
            Answer::Bye => writeln!(out, "bye"),
            Answer::Err(why) => return Err(Failure::runtime(format!("server: {why}"))),
        };
        // A closed stdout (`| head`) ends us quietly with 141, like any filter.
        printed
            .and_then(|()| out.flush())
            .map_err(cli::stdout_failure)
    })
}

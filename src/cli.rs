//! Command-line conventions shared by every ipclab binary.
//!
//! - `--help` prints the usage to stdout and exits 0.
//! - A usage error prints `program: message` and a hint to stderr and exits 2.
//! - A runtime failure prints `program: what: errno text` to stderr and exits 1.
//!   Graders match these prefixes, so keep them stable.
//!
//! Arguments are parsed by hand with [`Args`], as a `match` loop in each binary:
//!
//! ```no_run
//! # use ipclab::cli::{Args, Arg, Failure};
//! # fn f(mut args: Args) -> Result<(), Failure> {
//! while let Some(arg) = args.next()? {
//!     match arg {
//!         Arg::Flag("-t" | "--timeout") => { let secs: u64 = args.parse("--timeout")?; }
//!         Arg::Flag(other) => return Err(Failure::unknown_flag(other)),
//!         Arg::Word(w) => { /* a positional argument */ }
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// Why a program stops early.
#[derive(Debug)]
pub enum Failure {
    /// `--help` was asked for: print the usage to stdout, exit 0.
    Help,
    /// The command line is wrong: exit 2.
    Usage(String),
    /// Something failed while running: exit 1. The text is `what: errno text`.
    Runtime(String),
    /// Stop with this exit code and no message (the message was already printed).
    Exit(u8),
}

impl Failure {
    pub fn usage(msg: impl Display) -> Failure {
        Failure::Usage(msg.to_string())
    }
    pub fn runtime(msg: impl Display) -> Failure {
        Failure::Runtime(msg.to_string())
    }
    pub fn unknown_flag(flag: &str) -> Failure {
        Failure::Usage(format!("unknown option '{flag}'"))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Runtime(e.to_string())
    }
}

/// Adds "what we were doing" in front of an error: `reading stdin: Broken pipe (os error 32)`.
pub trait Context<T> {
    fn context(self, what: impl Display) -> io::Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl Display) -> io::Result<T> {
        self.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Runs a program's body and turns its outcome into the conventional output and exit code.
/// `usage` is the full `--help` text.
pub fn run(usage: &str, body: impl FnOnce(Args) -> Result<(), Failure>) -> ExitCode {
    let prog = crate::trace::program();
    let args = match Args::from_env() {
        Ok(a) => a,
        Err(f) => return report(prog, usage, f),
    };
    match body(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(prog, usage, f),
    }
}

/// Prints one line of data on stdout and flushes it. Status lines and errors go to stderr
/// (`eprintln!`), so that `program | other` carries the data alone.
pub fn say(line: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// The outcome of a failed write to stdout. A closed pipe (`program | head -1`) means the reader
/// has had enough: the program ends quietly with 141 (128 + SIGPIPE), as `yes | head` does,
/// and not with the panic `println!` would make. Rust ignores SIGPIPE, so we say it ourselves.
pub fn stdout_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::Exit(128 + libc::SIGPIPE as u8)
    } else {
        Failure::runtime(format!("writing stdout: {e}"))
    }
}

fn report(prog: &str, usage: &str, f: Failure) -> ExitCode {
    match f {
        Failure::Help => {
            print!("{usage}");
            ExitCode::SUCCESS
        }
        Failure::Usage(msg) => {
            eprintln!("{prog}: {msg}");
            eprintln!("Try '{prog} --help' for more information.");
            ExitCode::from(2)
        }
        Failure::Runtime(msg) => {
            eprintln!("{prog}: {msg}");
            ExitCode::from(1)
        }
        Failure::Exit(code) => ExitCode::from(code),
    }
}

/// One command-line argument.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    /// `-x` or `--name` (a `--name=value` gives its value to the next [`Args::value`]).
    Flag(&'a str),
    /// Anything else, including everything after `--` and a lone `-`.
    Word(String),
}

/// The arguments after the program name, handed out one at a time.
#[derive(Debug)]
pub struct Args {
    items: std::vec::IntoIter<String>,
    /// The flag being looked at, kept so that `Arg::Flag` can borrow it.
    current: String,
    /// The `value` part of `--name=value`, waiting for `value()`.
    attached: Option<String>,
    only_words: bool,
}

impl Args {
    /// The process's own arguments; a non-UTF-8 argument is a usage error.
    pub fn from_env() -> Result<Args, Failure> {
        let mut v = Vec::new();
        for a in std::env::args_os().skip(1) {
            match a.into_string() {
                Ok(s) => v.push(s),
                Err(a) => return Err(Failure::usage(format!("argument {a:?} is not UTF-8"))),
            }
        }
        Ok(Args::new(v))
    }

    pub fn new(v: Vec<String>) -> Args {
        Args {
            items: v.into_iter(),
            current: String::new(),
            attached: None,
            only_words: false,
        }
    }

    /// The next argument. `-h`/`--help` becomes `Err(Failure::Help)`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Arg<'_>>, Failure> {
        if let Some(v) = self.attached.take() {
            return Err(Failure::usage(format!(
                "option '{}' does not take a value (got '{v}')",
                self.current
            )));
        }
        let Some(a) = self.items.next() else {
            return Ok(None);
        };
        if self.only_words || a == "-" || !a.starts_with('-') || is_number(&a) {
            return Ok(Some(Arg::Word(a)));
        }
        if a == "--" {
            self.only_words = true;
            return self.next();
        }
        if a == "-h" || a == "--help" {
            return Err(Failure::Help);
        }
        match a.split_once('=') {
            Some((name, value)) if a.starts_with("--") => {
                self.current = name.to_string();
                self.attached = Some(value.to_string());
            }
            _ => self.current = a,
        }
        Ok(Some(Arg::Flag(&self.current)))
    }

    /// The value of the flag just returned: `--name=value` or the next argument.
    pub fn value(&mut self, flag: &str) -> Result<String, Failure> {
        if let Some(v) = self.attached.take() {
            return Ok(v);
        }
        self.items
            .next()
            .ok_or_else(|| Failure::usage(format!("option '{flag}' needs a value")))
    }

    /// The value of the flag just returned, parsed: `--timeout 5`.
    pub fn parse<T: FromStr>(&mut self, flag: &str) -> Result<T, Failure> {
        let v = self.value(flag)?;
        parse_word(flag, &v)
    }

    /// `--timeout SECS`: whole or decimal seconds, `10` or `0.5`, at most a day.
    pub fn seconds(&mut self, flag: &str) -> Result<Duration, Failure> {
        let word = self.value(flag)?;
        match word.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                Ok(Duration::from_secs_f64(s))
            }
            _ => Err(Failure::usage(format!(
                "{flag}: '{word}' is not a number of seconds (0 to 86400)"
            ))),
        }
    }

    /// `--mode 0640`: permission bits in octal, nothing beyond 0777.
    pub fn mode(&mut self, flag: &str) -> Result<u32, Failure> {
        let word = self.value(flag)?;
        match u32::from_str_radix(&word, 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err(Failure::usage(format!(
                "{flag}: '{word}' is not octal permission bits (0 to 0777)"
            ))),
        }
    }

    /// `--proj-id N`: an `ftok` project id, 1 to 255 (ftok keeps only the low 8 bits, and
    /// ftok(3) leaves 0 undefined).
    pub fn proj_id(&mut self, flag: &str) -> Result<u8, Failure> {
        let word = self.value(flag)?;
        match word.parse::<u8>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Failure::usage(format!(
                "{flag}: '{word}' is not a project id (1 to 255)"
            ))),
        }
    }

    /// Every remaining argument as a word (for `shm_writer hello world`).
    pub fn rest(&mut self) -> Vec<String> {
        self.items.by_ref().collect()
    }
}

/// Parses one word, with a usage error that names the argument: `--size: 'x' is not a number`.
pub fn parse_word<T: FromStr>(what: &str, word: &str) -> Result<T, Failure> {
    word.parse()
        .map_err(|_| Failure::usage(format!("{what}: '{word}' is not a valid number")))
}

/// `-5` is a word (a negative number), not a flag.
fn is_number(a: &str) -> bool {
    a.len() > 1 && a[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn flags_values_and_words() {
        let mut a = args(&["--size=64", "-t", "5", "hello", "--", "--world", "-3"]);
        assert_eq!(a.next().unwrap(), Some(Arg::Flag("--size")));
        assert_eq!(a.parse::<usize>("--size").unwrap(), 64);
        assert_eq!(a.next().unwrap(), Some(Arg::Flag("-t")));
        assert_eq!(a.parse::<u64>("-t").unwrap(), 5);
        assert_eq!(a.next().unwrap(), Some(Arg::Word("hello".into())));
        assert_eq!(a.next().unwrap(), Some(Arg::Word("--world".into())));
        assert_eq!(a.next().unwrap(), Some(Arg::Word("-3".into())));
        assert_eq!(a.next().unwrap(), None);
    }

    #[test]
    fn errors_are_usage_errors() {
        let mut a = args(&["--size"]);
        a.next().unwrap();
        assert!(matches!(a.value("--size"), Err(Failure::Usage(_))));
        let mut a = args(&["--size", "lots"]);
        a.next().unwrap();
        assert!(
            matches!(a.parse::<usize>("--size"), Err(Failure::Usage(m)) if m.contains("'lots'"))
        );
        let mut a = args(&["--stream=yes", "x"]);
        a.next().unwrap();
        assert!(matches!(a.next(), Err(Failure::Usage(_))));
        assert!(matches!(args(&["--help"]).next(), Err(Failure::Help)));
    }

    #[test]
    fn seconds_modes_and_project_ids() {
        let mut a = args(&["0.25", "-1", "nan", "0640", "8", "65", "0"]);
        assert_eq!(a.seconds("-t").unwrap(), Duration::from_millis(250));
        assert!(a.seconds("-t").is_err());
        assert!(a.seconds("-t").is_err());
        assert_eq!(a.mode("-m").unwrap(), 0o640);
        assert!(a.mode("-m").is_err());
        assert_eq!(a.proj_id("-i").unwrap(), 65);
        assert!(
            matches!(a.proj_id("-i"), Err(Failure::Usage(m)) if m == "-i: '0' is not a project id (1 to 255)")
        );
    }

    #[test]
    fn context_prefixes_the_error() {
        let e: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EPIPE));
        let msg = e.context("writing stdout").unwrap_err().to_string();
        assert!(msg.starts_with("writing stdout: Broken pipe"), "{msg}");
    }
}

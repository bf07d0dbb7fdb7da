//! The docs cannot go stale: every shell transcript in the lab demos is run, and its output
//! compared line by line with what the page shows (in the spirit of Rust's doc tests, cram
//! and trycmd).
//!
//! # The format of a transcript block
//!
//! ````text
//! <!-- transcript: skip, because it needs a second terminal -->   (optional, see below)
//! ```text
//! $ dipc 4 1 $PORT 1
//! dipc: serving 4 mailboxes of 1 kB on 127.0.0.1:[PORT], daemon pid [PID]
//! $ echo $?
//! 0
//! ```
//! ````
//!
//! - A fenced `text` block with a line starting with a prompt is a transcript. Each `$ ` line
//!   is a command (a line ending in `\` goes on with the next); the lines after it, up to the
//!   next `$ `, are its output: stdout and stderr together, as a terminal shows them. Text
//!   before the first `$ ` is an error: a transcript shows only what a person types and sees.
//!   Another terminal's prompt (`A$ `, `(terminal 1) $ `) may only appear in a skipped block.
//!   Job-control lines an interactive shell adds (`[1] 4242`, `[2]+ Done`) are not shown;
//!   as in an interactive shell, a job that ended is out of the job table before the next
//!   command, so that job numbers (`kill %2`) are the ones a person at a terminal has.
//! - In the output, runs of spaces match any run of spaces, and these stand for what varies:
//!   `[PID]`, `[ID]` and `[PORT]` (digits), `[N]` (a number such as `-1.25`), `[KEY]` (`0x`
//!   and eight hex digits), `[USER]` and `[PATH]` (a word without spaces), `...` inside a
//!   line (any text), and a line of just `...` (any number of lines, none included).
//! - A command ending in `&` runs in the background; the test waits (up to 10 s) until its
//!   documented output has appeared, as a person waits to see it, before the next command.
//! - `<!-- transcript: skip, because WHY -->` on the last non-blank line before a block skips
//!   it on purpose (a second terminal, Ctrl-C, an interactive prompt); the test prints WHY.
//! - Fenced `sh` blocks are the demo's setup, run in the same shell as they come, except
//!   lines starting with `cargo ` or `export PATH=` (this test run already built the programs
//!   and put them first on `PATH`), and two kinds of lines that get another value:
//!   - `NAMEPORT=...` (a name ending in `PORT`) gets a free port: the uid-derived port of the
//!     demo is the same for every run. The port after it is free too (for `$((PORT + 1))`),
//!     and each such line gets a higher port than the line before, as the demo's own ports
//!     are, so that what is listed by port (a node's peers) comes in the documented order.
//!   - `ROOT=$PWD` (the project directory, remembered before `cd "$(mktemp -d)"`) gets a
//!     directory that stands for the project: its `include` and `lab`, and, as
//!     `target/release/libipclab.a`, the static library of this `cargo test` build (which
//!     builds no `target/release`), so that a demo's `cc ... "$ROOT"/target/release/libipclab.a`
//!     links the library of the programs it runs with.
//!
//! # How a demo runs
//!
//! One `bash` per demo file, fed one command at a time (each through `eval`, stdin from
//! /dev/null), in a fresh scratch directory, with `TMPDIR` inside it (so `mktemp -d` gives
//! every run its own directory, and so its own `ftok` keys), and the binaries of this `cargo
//! test` first on `PATH`. The blocks of one demo share that shell, as they share a student's
//! terminal: a server started in one block answers in the next. Every command has a deadline. At the end, or when anything fails,
//! the guard kills every process of the run (found by an environment variable they all
//! inherit, daemons included) and removes every object created meanwhile under a key of the
//! run: an `ftok` key of a file in the scratch directory, a key derived from one of its ports,
//! or a segment one of its processes created. Objects and processes still there when the demo
//! ends are reported as failures: the demos promise that nothing is left.
//!
//! The demos checked are listed below, one test each; a demo being rewritten is listed in
//! `PENDING` instead: `IPCLAB_TRANSCRIPTS_PENDING=1 cargo test --test transcripts --
//! --nocapture` runs those too and prints what fails in them, without failing.

mod common;

use ipclab::sys::{ftok, ipcs, Key};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Demo files being rewritten: not checked yet. Move one into its own `#[test]` below when it
/// is up to date.
const PENDING: &[&str] = &[];

/// The longest a foreground command may take before the run is stopped as hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// The longest the test waits for a background command's documented output.
const BACKGROUND_LIMIT: Duration = Duration::from_secs(10);
/// Set in every process a run starts, to find them all (daemons too) when it ends.
const RUN_ENV: &str = "IPCLAB_TRANSCRIPT_RUN";
/// The key bases that programs add a port to: dipc's mailboxes, and rshm's queue, change
/// gates and alive set. A run's objects under these keys of its ports are its own.
const PORT_KEY_BASES: [Key; 4] = [0x4450_0000, 0x5253_0000, 0x5247_0000, 0x5241_0000];

#[test]
fn lab01_demo() {
    check("lab/01-shm-writer-reader/demo.md", true);
}

#[test]
fn lab02_demo() {
    check("lab/02-device/demo.md", true);
}

#[test]
fn lab03_demo() {
    check("lab/03-shmem-flock/demo.md", true);
}

#[test]
fn lab04_demo() {
    check("lab/04-dipc/demo.md", true);
}

#[test]
fn lab05_demo() {
    check("lab/05-rshm/demo.md", true);
}

/// The README's examples: its `sh` blocks are the quick start itself (CI runs those), so only
/// its transcripts are run.
#[test]
fn readme() {
    check("README.md", false);
}

/// Every demo is either checked above or pending: a new lab cannot be forgotten.
#[test]
fn every_demo_is_checked_or_pending() {
    let me = std::fs::read_to_string(common::project_dir().join("tests/transcripts.rs"))
        .expect("read tests/transcripts.rs");
    let lab = common::project_dir().join("lab");
    for entry in std::fs::read_dir(&lab).expect("read lab/") {
        let demo = entry.expect("dir entry").path().join("demo.md");
        if demo.is_file() {
            let rel = demo
                .strip_prefix(common::project_dir())
                .unwrap()
                .display()
                .to_string();
            assert!(
                me.contains(&format!("\"{rel}\"")),
                "{rel} is neither checked nor listed in PENDING"
            );
        }
    }
}

/// Runs the pending demos on request and prints what fails in them, without failing.
#[test]
fn pending_demos() {
    if std::env::var_os("IPCLAB_TRANSCRIPTS_PENDING").is_none() {
        eprintln!(
            "transcripts: pending, not run (set IPCLAB_TRANSCRIPTS_PENDING=1 to see them): {}",
            PENDING.join(", ")
        );
        return;
    }
    for doc in PENDING {
        let failures = run_doc(doc, true);
        eprintln!(
            "transcripts: {doc}: {} failure(s) (pending)",
            failures.len()
        );
    }
}

/// Runs one document's transcripts and fails the test with every difference found.
fn check(doc: &str, setup: bool) {
    let failures = run_doc(doc, setup);
    assert!(
        failures.is_empty(),
        "{doc}: {} transcript failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The document: blocks and commands.

/// A fenced block of a document.
enum Block {
    /// A `sh` block: setup lines, run without checking their output.
    Setup { line: usize, lines: Vec<String> },
    /// A `text` block with commands.
    Transcript {
        line: usize,
        skip: Option<String>,
        steps: Result<Vec<Step>, String>,
    },
}

/// One command of a transcript and the output the page shows for it.
struct Step {
    line: usize,
    command: String,
    background: bool,
    expected: Vec<String>,
}

fn parse(text: &str, setup: bool) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i + 1; // 1-based line number of the fence
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push(lines[i]);
            i += 1;
        }
        i += 1;
        let marker = lines[..start - 1]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!-- transcript:"))
            .map(|m| m.trim_end_matches("-->").trim().to_string());
        let skip = marker.map(|m| {
            m.strip_prefix("skip")
                .unwrap_or(&m)
                .trim_start_matches([',', ' '])
                .to_string()
        });
        match info.trim() {
            "sh" if setup && skip.is_none() => blocks.push(Block::Setup {
                line: start,
                lines: body.iter().map(|l| l.to_string()).collect(),
            }),
            "text" if body.iter().any(|l| prompt(l).is_some()) => blocks.push(Block::Transcript {
                line: start,
                skip,
                steps: steps(&body, start),
            }),
            _ => {}
        }
    }
    blocks
}

/// The prompt a line starts with: `""` for `$ `, or another terminal's name (`A$ `,
/// `(terminal 1) $ `), which only a skipped block may use.
fn prompt(line: &str) -> Option<&str> {
    let at = line.find("$ ")?;
    let name = &line[..at];
    let ok = name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ()-_".contains(c));
    ok.then_some(name)
}

fn steps(body: &[&str], fence: usize) -> Result<Vec<Step>, String> {
    let mut steps: Vec<Step> = Vec::new();
    let mut k = 0;
    while k < body.len() {
        let line = body[k];
        if let Some(name) = prompt(line).filter(|n| !n.is_empty()) {
            return Err(format!(
                "line {}: the prompt of another terminal ({name:?}): a block that needs two \
                 terminals must be marked `<!-- transcript: skip, because ... -->`",
                fence + 1 + k
            ));
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            let mut command = cmd.to_string();
            while command.ends_with('\\') && k + 1 < body.len() {
                k += 1;
                command.push('\n');
                command.push_str(body[k]);
            }
            // `cmd &   # a note`: the note does not hide the `&`.
            let code = command.split("  #").next().unwrap_or("").trim_end();
            let background = code.ends_with('&') && !code.ends_with("&&");
            steps.push(Step {
                line: fence + 1 + k,
                command,
                background,
                expected: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        } else {
            return Err(format!(
                "line {}: output before the first command: {line:?}",
                fence + 1 + k
            ));
        }
        k += 1;
    }
    Ok(steps)
}

// ---------------------------------------------------------------------------------------------
// Matching documented output against real output.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Char(char),
    Space,
    Digits,
    Number,
    Key,
    Word,
    Any,
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut rest = pattern.trim();
    'outer: while let Some(c) = rest.chars().next() {
        for (name, tok) in [
            ("[PID]", Tok::Digits),
            ("[ID]", Tok::Digits),
            ("[PORT]", Tok::Digits),
            ("[N]", Tok::Number),
            ("[KEY]", Tok::Key),
            ("[USER]", Tok::Word),
            ("[PATH]", Tok::Word),
            ("...", Tok::Any),
        ] {
            if let Some(r) = rest.strip_prefix(name) {
                toks.push(tok);
                rest = r;
                continue 'outer;
            }
        }
        if c.is_whitespace() {
            toks.push(Tok::Space);
            rest = rest.trim_start();
        } else {
            toks.push(Tok::Char(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    toks
}

/// Whether `text` (one line) matches the token list: a small backtracking matcher.
fn matches(toks: &[Tok], text: &[char]) -> bool {
    let Some(first) = toks.first() else {
        return text.is_empty();
    };
    let rest = &toks[1..];
    // The candidate ends of what `first` matches, longest first.
    let takes = |ok: &dyn Fn(usize) -> bool| -> bool {
        (1..=text.len())
            .rev()
            .filter(|&n| ok(n))
            .any(|n| matches(rest, &text[n..]))
    };
    match first {
        Tok::Char(c) => text.first() == Some(c) && matches(rest, &text[1..]),
        Tok::Space => takes(&|n| text[..n].iter().all(|c| c.is_whitespace())),
        Tok::Digits => takes(&|n| text[..n].iter().all(|c| c.is_ascii_digit())),
        Tok::Number => takes(&|n| is_number(&text[..n])),
        Tok::Key => {
            text.len() >= 10
                && text[0] == '0'
                && text[1] == 'x'
                && text[2..10].iter().all(|c| c.is_ascii_hexdigit())
                && matches(rest, &text[10..])
        }
        Tok::Word => takes(&|n| text[..n].iter().all(|c| !c.is_whitespace())),
        Tok::Any => (0..=text.len()).rev().any(|n| matches(rest, &text[n..])),
    }
}

fn is_number(s: &[char]) -> bool {
    let s: String = s.iter().collect();
    let s = s.strip_prefix('-').unwrap_or(&s);
    let mut parts = s.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}

/// Whether the real output lines match the documented ones (`...` lines match any lines).
fn lines_match(expected: &[String], got: &[String]) -> bool {
    let Some(first) = expected.first() else {
        return got.is_empty();
    };
    if first.trim() == "..." {
        return (0..=got.len()).any(|n| lines_match(&expected[1..], &got[n..]));
    }
    let Some(line) = got.first() else {
        return false;
    };
    let text: Vec<char> = line.trim().chars().collect();
    matches(&tokens(first), &text) && lines_match(&expected[1..], &got[1..])
}

fn output_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = text.split('\n').map(|l| l.trim_end().to_string()).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Running a document.

/// The output of the run's shell, filled by a reader thread.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// Everything a run made; dropping it (also on a panic) kills and removes all of it.
struct Run {
    id: String,
    dir: PathBuf,
    shell: Child,
    stdin: Option<ChildStdin>,
    out: Shared,
    ports: Vec<u16>,
    /// The directory that `ROOT=$PWD` gets, made when a setup line asks for it.
    root: Option<PathBuf>,
    /// Where the next command's output begins in `out`.
    pos: usize,
    before: HashSet<(ipcs::Kind, i32)>,
}

impl Run {
    fn start(doc: &str) -> Run {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let tag: String = doc
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = std::env::temp_dir().join(format!("ipclab-transcript-{tag}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("create scratch dir");
        let before = ipcs::list()
            .expect("read /proc/sysvipc")
            .iter()
            .map(|o| (o.kind, o.id))
            .collect();
        let path = format!(
            "{}:{}",
            common::bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut shell = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(&dir)
            .env("PATH", path)
            .env("TMPDIR", dir.join("tmp"))
            .env("LC_ALL", "C")
            .env(RUN_ENV, &id)
            .env_remove(ipclab::params::TRACE_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that Ctrl-C in the test's terminal is not sent twice,
            // and one kill reaches every foreground and background job.
            .process_group(0)
            .spawn()
            .expect("start bash");
        let stdin = shell.stdin.take();
        let mut stdout = shell.stdout.take().expect("bash stdout");
        let out: Shared = Arc::default();
        let o = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*o;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.closed = true;
                    cv.notify_all();
                    return;
                }
                g.bytes.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        let mut run = Run {
            id,
            dir,
            shell,
            stdin,
            out,
            ports: Vec::new(),
            root: None,
            pos: 0,
            before,
        };
        // Everything a command prints, on stdout or stderr, comes in order on one pipe.
        run.send("exec 2>&1\n");
        run
    }

    fn send(&mut self, text: &str) -> bool {
        match self.stdin.as_mut() {
            Some(s) => s.write_all(text.as_bytes()).and_then(|_| s.flush()).is_ok(),
            None => false,
        }
    }

    /// Runs one command through `eval` and returns what it printed; `Err` if the shell
    /// exited or the command did not finish within `COMMAND_LIMIT` (the run cannot go on).
    /// For a background command, waits until `done` accepts the output, or `BACKGROUND_LIMIT`.
    fn command(
        &mut self,
        n: usize,
        command: &str,
        background: bool,
        done: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, String> {
        let start = self.pos;
        let marker = format!("\x1eipclab-transcript-{n}\x1e\n");
        let quoted = command.replace('\'', r"'\''");
        // `$?` survives the marker, so that `echo $?` in the next command works. `jobs` takes
        // the jobs that ended out of the table, as an interactive shell does before its next
        // prompt: a non-interactive one may keep one as `Done`, and number the next job after it.
        let sent = self.send(&format!(
            "eval '{quoted}' </dev/null\n__rc=$?; jobs >/dev/null; printf '\\036ipclab-transcript-{n}\\036\\n'; (exit $__rc)\n"
        ));
        if !sent {
            return Err("the shell is gone".into());
        }
        let deadline = Instant::now() + COMMAND_LIMIT;
        let out = Arc::clone(&self.out);
        let (lock, cv) = &*out;
        let mut g = lock.lock().unwrap();
        let at = loop {
            if let Some(p) = find(&g.bytes[start..], marker.as_bytes()) {
                break start + p;
            }
            if g.closed {
                return Err(format!(
                    "the shell exited; it printed: {}",
                    String::from_utf8_lossy(&g.bytes[start..])
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "did not finish within {COMMAND_LIMIT:?}; it printed: {}",
                    String::from_utf8_lossy(&g.bytes[start..])
                ));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        };
        let mut got = g.bytes[start..at].to_vec();
        self.pos = at + marker.len();
        if background {
            // Whole lines only (a program may write a line in pieces); what comes after is
            // the next command's, as on a terminal.
            let from = self.pos;
            let deadline = Instant::now() + BACKGROUND_LIMIT;
            loop {
                let now = Instant::now();
                let end = if now >= deadline || g.closed {
                    g.bytes.len()
                } else {
                    from + g.bytes[from..]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1)
                };
                let mut both = got.clone();
                both.extend_from_slice(&g.bytes[from..end]);
                if done(&both) || now >= deadline || g.closed {
                    got = both;
                    self.pos = end;
                    break;
                }
                g = cv
                    .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)))
                    .unwrap()
                    .0;
            }
        }
        Ok(got)
    }

    /// The processes of this run still alive (the shell's children and any daemon).
    fn processes(&self) -> Vec<u32> {
        let needle = format!("{RUN_ENV}={}\0", self.id);
        let mut pids = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == self.shell.id() {
                continue;
            }
            if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
                if find(&env, needle.as_bytes()).is_some() {
                    // A zombie's environ reads empty: only live processes are found.
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Every object created during the run under one of its keys, or created by one of its
    /// processes.
    fn objects(&self, pids: &[u32]) -> Vec<ipcs::Object> {
        let mut keys: HashSet<Key> = HashSet::new();
        let mut files = vec![self.dir.clone()];
        while let Some(f) = files.pop() {
            if let Ok(d) = std::fs::read_dir(&f) {
                files.extend(d.flatten().map(|e| e.path()));
            }
            for proj in 1..=255u8 {
                if let Ok(k) = ftok(&f, proj) {
                    keys.insert(k);
                }
            }
        }
        for &p in &self.ports {
            for base in PORT_KEY_BASES {
                keys.insert(base | Key::from(p));
            }
        }
        ipcs::list()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| !self.before.contains(&(o.kind, o.id)))
            .filter(|o| {
                keys.contains(&o.key)
                    || o.creator_pid
                        .is_some_and(|c| pids.contains(&(c as u32)) || c as u32 == self.shell.id())
            })
            .collect()
    }

    /// Ends the run: what is still running or still there is returned as failures, then
    /// killed and removed.
    fn finish(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        self.stdin = None; // EOF: the shell exits once its foreground command is done
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.shell.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids = self.processes();
        if !pids.is_empty() {
            failures.push(format!(
                "still running when the demo ends: {}",
                pids.iter()
                    .map(|p| format!("{p} ({})", name_of(*p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let left = self.objects(&pids);
        if !left.is_empty() {
            failures.push(format!(
                "left behind when the demo ends: {}",
                left.iter()
                    .map(|o| format!("{} key 0x{:08x} id {}", o.kind.name(), o.key, o.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        self.clean();
        failures
    }

    fn clean(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.shell.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
        // Daemons left the process group: SIGTERM lets them remove their objects first.
        let pids = self.processes();
        signal(&pids, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !self.processes().is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids_after = self.processes();
        signal(&pids_after, "-KILL");
        let mut all = pids;
        all.extend(pids_after);
        for o in self.objects(&all) {
            let _ = ipcs::remove(&o);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(root) = self.root.take() {
            let _ = std::fs::remove_dir_all(root);
        }
    }

    /// The directory that stands for the project (see the header, `ROOT=$PWD`): outside the
    /// scratch directory, whose files give the run's `ftok` keys.
    fn root(&mut self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        let root = self.dir.with_file_name(format!(
            "{}-root",
            self.dir.file_name().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("target/release")).expect("create the project stand-in");
        let project = common::project_dir();
        for (link, target) in [
            ("include", project.join("include")),
            ("lab", project.join("lab")),
            ("target/release/libipclab.a", static_lib()),
        ] {
            std::os::unix::fs::symlink(target, root.join(link)).expect("symlink into ROOT");
        }
        self.root = Some(root.clone());
        root
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.clean();
    }
}

fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(|p| p.to_string()))
        .stderr(Stdio::null())
        .status();
}

fn name_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The static library of this build: `cargo test` leaves it in target/debug/deps with a hash
/// in its name (the newest is this build's); `cargo build` also puts one in target/debug.
fn static_lib() -> PathBuf {
    let bin = common::bin_dir();
    let deps = std::fs::read_dir(bin.join("deps"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("libipclab-") && n.ends_with(".a")
        });
    std::iter::once(bin.join("libipclab.a"))
        .chain(deps)
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("libipclab.a (crate-type staticlib) was not built")
}

/// Whether `port` and the one after it are free, with no object under their keys (a demo may
/// use $((PORT + 1)) for a second server).
fn port_free(port: u16) -> bool {
    port < u16::MAX
        && [port, port + 1].iter().all(|&p| {
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                && PORT_KEY_BASES.iter().all(|b| {
                    ipcs::with_key(b | Key::from(p))
                        .expect("read /proc/sysvipc")
                        .is_empty()
                })
        })
}

/// The setup line as the test runs it: `None` to leave it out.
fn setup_line(line: &str, run: &mut Run) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with("cargo ") || t.starts_with("export PATH=") {
        return None;
    }
    if t == "ROOT=$PWD" {
        return Some(format!("ROOT='{}'", run.root().display()));
    }
    if let Some((name, _)) = t.split_once('=') {
        if name.ends_with("PORT") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // The first at random; each next one above the last (see the header).
            let port = match run.ports.iter().max() {
                None => loop {
                    let p = common::free_port(|p| 0x4450_0000 | Key::from(p));
                    if port_free(p) {
                        break p;
                    }
                },
                Some(&last) => (last + 1..u16::MAX)
                    .find(|&p| port_free(p))
                    .expect("a free port above the last"),
            };
            run.ports.extend([port, port + 1]);
            return Some(format!("{name}={port}"));
        }
    }
    Some(line.to_string())
}

/// Runs every transcript of `doc` and returns the failures, after printing a summary.
fn run_doc(doc: &str, setup: bool) -> Vec<String> {
    let path: PathBuf = common::project_dir().join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {doc}: {e}"));
    let blocks = parse(&text, setup);
    let mut run = Run::start(doc);
    let mut failures = Vec::new();
    let (mut ran, mut commands, mut skipped) = (0, 0, Vec::new());
    let mut n = 0;
    'blocks: for block in &blocks {
        match block {
            Block::Setup { line, lines } => {
                for l in lines {
                    let Some(l) = setup_line(l, &mut run) else {
                        continue;
                    };
                    n += 1;
                    if let Err(e) = run.command(n, &l, false, |_| true) {
                        failures.push(format!("{doc}:{line}: setup `{l}`: {e}"));
                        break 'blocks;
                    }
                }
            }
            Block::Transcript { line, skip, steps } => {
                if let Some(why) = skip {
                    skipped.push(format!("{doc}:{line}: {why}"));
                    continue;
                }
                let steps = match steps {
                    Ok(s) => s,
                    Err(e) => {
                        failures.push(format!("{doc}:{line}: {e}"));
                        continue;
                    }
                };
                ran += 1;
                for step in steps {
                    n += 1;
                    commands += 1;
                    let expected = &step.expected;
                    let got = run.command(n, &step.command, step.background, |b| {
                        lines_match(expected, &output_lines(b))
                    });
                    match got {
                        Ok(got) => {
                            let got = output_lines(&got);
                            if !lines_match(expected, &got) {
                                failures.push(format!(
                                    "{doc}:{}: $ {}\n--- documented\n{}\n--- printed\n{}",
                                    step.line,
                                    step.command,
                                    expected.join("\n"),
                                    got.join("\n")
                                ));
                            }
                        }
                        Err(e) => {
                            failures.push(format!("{doc}:{}: $ {}: {e}", step.line, step.command));
                            break 'blocks;
                        }
                    }
                }
            }
        }
    }
    failures.extend(run.finish().into_iter().map(|f| format!("{doc}: {f}")));
    eprintln!(
        "transcripts: {doc}: {ran} block(s) ran ({commands} commands), {} skipped, {} failure(s)",
        skipped.len(),
        failures.len()
    );
    for s in &skipped {
        eprintln!("transcripts:   skipped {s}");
    }
    for f in &failures {
        eprintln!("transcripts:   FAILED {f}");
    }
    failures
}

#[test]
fn the_matcher_knows_its_placeholders() {
    let m = |pat: &str, text: &str| lines_match(&[pat.to_string()], &[text.to_string()]);
    assert!(m(
        "dipc: pid [PID] on [PORT], key [KEY]",
        "dipc: pid 42 on 5000, key 0x44501388"
    ));
    assert!(m("a   b [N]", "a b -0.25"));
    assert!(!m("a [N]", "a x"));
    assert!(m("at 0x7f...", "at 0x7fc2f6eaa000"));
    assert!(m("[0] alice: hi [USER]", "[0] alice: hi bob"));
    assert!(!m("key [KEY]", "key 0x123"));
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(lines_match(
        &e(&["a", "...", "z"]),
        &e(&["a", "b", "c", "z"])
    ));
    assert!(lines_match(&e(&["a", "...", "z"]), &e(&["a", "z"])));
    assert!(!lines_match(&e(&["a", "z"]), &e(&["a", "b", "z"])));
}

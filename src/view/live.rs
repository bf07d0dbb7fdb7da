//! The live view: a fresh [`gather`] every `--interval`, drawn over the last one with plain ANSI
//! escapes, until `q`, Ctrl-C or SIGTERM; and the terminal given back as it was found.
//!
//! The escapes used, all of them (ECMA-48 and xterm's alternate screen, which every terminal
//! emulator in use understands):
//!
//! | escape                          | meaning                                             |
//! |---------------------------------|-----------------------------------------------------|
//! | `ESC[?1049h`                    | switch to the alternate screen (the shell's is kept) |
//! | `ESC[?25l`                      | hide the cursor                                     |
//! | `ESC[H`                         | cursor to the top left, to draw over the last frame |
//! | `ESC[K`                         | clear to the end of the line (the old one may be longer) |
//! | `ESC[J`                         | clear to the end of the screen (so may the old frame) |
//! | `ESC[1m` `ESC[2m` `ESC[36m`     | bold (titles), dim (gone objects), cyan (changed)   |
//! | `ESC[0m`                        | back to normal                                      |
//! | `ESC[?25h` `ESC[?1049l`         | show the cursor, back to the shell's screen         |
//!
//! Drawing over the old frame instead of clearing the screen first is what keeps it from
//! flickering. Keys come one at a time through [`KeyInput`] (no line buffering, no echo); the
//! guards [`KeyInput`] and [`Screen`] undo their changes when dropped, which happens on every
//! way out, an error included, because termination signals are blocked and taken between
//! frames ([`TermSignals`]) rather than killing the process.
//!
//! A line that differs from every line of the last frame is drawn in cyan for one frame: a
//! semaphore's value or waiter count that moved, a ring cell that filled. An object seen in one
//! frame and missing in the next is shown as `gone` (dim) for [`IPCVIEW_GONE_FOR`], so that a
//! demo can see a writer's segment vanish when it finishes: a decoded section under its title,
//! a raw `ipcs` row under its kind, key and id ([`Departures`]). A raw object that turns into a
//! section (a segment seen before its creator wrote the header) has not gone.

use super::{gather, Filter, Snapshot, RAW_TITLE};
use crate::params::{IPCVIEW_GONE_FOR, IPCVIEW_KEY_SLICE};
use crate::sys::ipcs::Kind;
use crate::sys::poll;
use crate::sys::signal::TermSignals;
use crate::sys::tty::KeyInput;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the live view runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Time between two refreshes.
    pub interval: Duration,
    /// Stop after this many frames (for scripts and tests); `None`: until `q`.
    pub frames: Option<u64>,
}

/// The alternate screen with a hidden cursor, while this guard lives.
pub struct Screen;

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        let mut out = io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        // Nothing to do if stdout is gone; never panic in drop.
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// Runs the live view until `q`, a termination signal, or `opts.frames` frames.
pub fn run(filter: &Filter, opts: &Options, sigs: &TermSignals) -> io::Result<()> {
    let stdin = io::stdin();
    // Declared before the screen, so dropped after it: the terminal's modes come back last.
    let keys = if stdin.is_terminal() {
        Some(KeyInput::enter(stdin.as_fd())?)
    } else {
        None
    };
    let _screen = Screen::enter()?;
    let mut sections: Departures<String> = Departures::default();
    let mut raw: Departures<(Kind, i32)> = Departures::default();
    // Every line of the last frame, so that what changed since can be shown in colour.
    let mut before: HashSet<String> = HashSet::new();
    let mut frames = 0u64;
    loop {
        let snap = gather(filter)?;
        sections.update(
            snap.sections
                .iter()
                .map(|s| (s.title.clone(), s.title.clone())),
            |_| false,
        );
        raw.update(
            snap.raw.iter().map(|r| ((r.kind, r.id), r.name.clone())),
            |k| snap.claimed.contains(k),
        );
        draw(
            &snap,
            &sections.labels(),
            &raw.labels(),
            &before,
            opts.interval,
        )?;
        before = snap
            .sections
            .iter()
            .flat_map(|s| s.lines.iter().cloned())
            .collect();
        frames += 1;
        if opts.frames.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        if pause(opts.interval, keys.is_some(), sigs)? {
            return Ok(());
        }
    }
}

/// What the last frame showed, and what has gone since: each object by a key that stays the
/// same while it lives (a section's title, a raw row's kind and id), with the label to show.
struct Departures<K> {
    shown: HashMap<K, String>,
    /// Label and when it went, for at most [`IPCVIEW_GONE_FOR`].
    gone: Vec<(K, String, Instant)>,
}

impl<K> Default for Departures<K> {
    fn default() -> Self {
        Departures {
            shown: HashMap::new(),
            gone: Vec::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Departures<K> {
    /// Takes this frame's objects. One shown last time and missing now has gone, unless
    /// `elsewhere` says it is still there in another form.
    fn update(&mut self, now: impl Iterator<Item = (K, String)>, elsewhere: impl Fn(&K) -> bool) {
        let now: HashMap<K, String> = now.collect();
        for (k, label) in &self.shown {
            if !now.contains_key(k) && !elsewhere(k) {
                self.gone.push((k.clone(), label.clone(), Instant::now()));
            }
        }
        // One that is back (a server restarted with the same objects' title) is no longer gone.
        self.gone
            .retain(|(k, _, at)| !now.contains_key(k) && at.elapsed() < IPCVIEW_GONE_FOR);
        self.shown = now;
    }

    /// The labels of those gone, oldest first.
    fn labels(&self) -> Vec<&str> {
        self.gone
            .iter()
            .map(|(_, label, _)| label.as_str())
            .collect()
    }
}

/// One frame, drawn over the last; a line that was not in the last frame (`before`) is cyan,
/// unless this is the first frame. Gone sections come after the live ones, gone raw rows after
/// the live raw rows.
fn draw(
    snap: &Snapshot,
    gone: &[&str],
    gone_raw: &[&str],
    before: &HashSet<String>,
    interval: Duration,
) -> io::Result<()> {
    let mut f = String::from("\x1b[H");
    let mut line = |s: &str, style: &str| {
        if style.is_empty() {
            f.push_str(s);
        } else {
            f.push_str(&format!("{style}{s}\x1b[0m"));
        }
        f.push_str("\x1b[K\n");
    };
    line(
        &format!(
            "ipcview: every {} s, q or Ctrl-C quits, {} UTC",
            interval.as_secs_f64(),
            clock()
        ),
        "",
    );
    line("", "");
    for s in &snap.sections {
        line(&s.title, "\x1b[1m");
        for l in &s.lines {
            let changed = !before.is_empty() && !before.contains(l);
            line(l, if changed { "\x1b[36m" } else { "" });
        }
        line("", "");
    }
    for t in gone {
        line(&format!("{t}: gone"), "\x1b[2m");
    }
    if !gone.is_empty() {
        line("", "");
    }
    if snap.sections.is_empty() && snap.raw.is_empty() && gone.is_empty() && gone_raw.is_empty() {
        line("no System V objects to show", "");
    }
    if !snap.raw.is_empty() || !gone_raw.is_empty() {
        line(RAW_TITLE, "\x1b[1m");
        for r in &snap.raw {
            line(&r.line, "");
        }
        for name in gone_raw {
            line(&format!("{name}: gone"), "\x1b[2m");
        }
    }
    f.push_str("\x1b[J");
    let mut out = io::stdout().lock();
    out.write_all(f.as_bytes())?;
    out.flush()
}

/// The time of day, `HH:MM:SS`, in UTC.
fn clock() -> String {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// Waits for the next frame; true means quit (`q`, Ctrl-C, or a termination signal).
fn pause(interval: Duration, keys: bool, sigs: &TermSignals) -> io::Result<bool> {
    let deadline = Instant::now() + interval;
    let stdin = io::stdin();
    loop {
        if sigs.pending().is_some() {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let slice = left.min(IPCVIEW_KEY_SLICE);
        if !keys {
            if sigs.wait_timeout(slice).is_some() {
                return Ok(true);
            }
            continue;
        }
        if poll::readable(stdin.as_fd(), slice)? {
            let mut buf = [0u8; 256];
            let n = stdin.lock().read(&mut buf)?;
            // 0: the terminal hung up. ETX (Ctrl-C) arrives as a byte only if ISIG is off.
            if n == 0 || buf[..n].iter().any(|&b| matches!(b, b'q' | b'Q' | 0x03)) {
                return Ok(true);
            }
        }
    }
}

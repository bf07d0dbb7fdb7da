//! Tracing: one line per IPC step on stderr, switched on by `IPCLAB_TRACE=1`.
//!
//! Every ipclab program follows this convention, so a class can watch any of them work:
//!
//! ```text
//! $ IPCLAB_TRACE=1 shm_writer hello
//! shm_writer: trace: ftok(., 65) = key 0x41010002
//! shm_writer: trace: shmget(key=0x41010002, size=4096, flags=03600) = shmid 7
//! ```
//!
//! The system layer traces each call it makes; programs add lines for their own steps (bytes
//! moved, frames sent) with [`trace!`](crate::trace!). When tracing is off, a trace point costs
//! one relaxed atomic load.

use crate::params::TRACE_ENV;
use std::sync::OnceLock;

/// Whether `IPCLAB_TRACE` is set to something other than empty or `0`: read from the
/// environment once, at the first trace point.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(TRACE_ENV).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// The program name that prefixes every line: the file name of `argv[0]`.
pub fn program() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::args_os()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "ipclab".to_string())
    })
}

/// Writes one trace line; use the [`trace!`](crate::trace!) macro rather than this.
pub fn line(args: std::fmt::Arguments<'_>) {
    // Formatted first, then one write: the lines of concurrent threads and processes sharing
    // the terminal never interleave within a line.
    let text = format!("{}: trace: {}\n", program(), args);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

/// `trace!("semop(...)")`: prints `program: trace: semop(...)` when tracing is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::trace::enabled() {
            $crate::trace::line(format_args!($($arg)*));
        }
    };
}

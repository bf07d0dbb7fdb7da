//! # ipclab: System V inter-process communication, taught by five classic assignments
//!
//! Each assignment is a small library module here plus thin programs in `src/bin/`, a lab
//! chapter in `lab/`, and tests in `tests/` that start the real programs on real kernel objects.
//! Read a program from its `//!` header down; follow the calls into this library, and from here
//! into [`sys`], where every system call is made.
//!
//! # Layout
//! - [`sys`]: the kernel boundary, one of the two places with `unsafe`. Safe, checked wrappers
//!   over ftok, shm*, sem*, msg*, flock and signals, with owning guards. Serves every seed.
//! - [`ffi`]: the C boundary, the other place with `unsafe`: the functions that C programs call
//!   through `include/*.h` and `libipclab.a`, above the features they call.
//! - [`wire`]: every byte layout that crosses a process boundary, with its byte table. Serves
//!   every seed.
//! - [`params`]: every default and limit, one commented constant per line.
//! - [`trace`](mod@trace): `IPCLAB_TRACE=1` prints one line per IPC step, in every program.
//! - [`cli`]: argument parsing, `--help`, and the `program: what: errno text` error convention.
//! - [`xfr`]: seed 002, `shm_writer`/`shm_reader`: a message, then a stream, through a segment.
//! - [`device`]: seed 003, `device`/`device_client`/`detach`: a simulated I/O device.
//! - [`shmem`]: seed 004, the `shmem` library: a segment locked with flock.
//! - [`dipc`]: seed 001, `dipc`/`dipcrm`/`dipc_client`: mailboxes behind a fair RW lock.
//! - [`rshm`]: seed 000, `rshm_server`/`client`: shared memory across nodes; the server is one
//!   file per call of the seed, `src/rshm/server/rshmget.rs` to `rshm_changed.rs`.
//! - [`hmac`]: SHA-256 and HMAC-SHA256, with which RSHM's peers prove they share a secret.
//! - [`view`]: `ipcview`: every lab's kernel objects, read-only, decoded and named, live.

// `unsafe` is refused everywhere but in `sys` and `ffi`, which opt back in; the binaries forbid it.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod device;
pub mod dipc;
#[allow(unsafe_code)]
pub mod ffi;
pub mod hmac;
pub mod params;
pub mod rshm;
pub mod shmem;
#[allow(unsafe_code)]
pub mod sys;
pub mod trace;
pub mod view;
pub mod wire;
pub mod xfr;

#[cfg(test)]
mod testutil;

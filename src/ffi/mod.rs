//! The C boundary: the functions a C program calls through `include/*.h` and `libipclab.a`.
//!
//! This is the second of the two places where ipclab allows `unsafe` (the first is the kernel
//! boundary, [`crate::sys`]). `#[no_mangle]` gives a function the plain C name the linker looks
//! for, and `extern "C"` gives it C's calling convention. The rules every function here keeps:
//!
//! - **It sits above the features, never below.** It calls the safe Rust API of a feature
//!   ([`crate::rshm`]) and turns its `io::Result` into C's convention: `-1` (or `(void *)-1`)
//!   with `errno` set. Nothing in `sys` imports from here or from a feature.
//! - **It never unwinds into C.** A Rust panic crossing `extern "C"` aborts the C program.
//!
//! # Layout
//! - [`rshm`]: `rshmget`, `rshmat`, `rshmdt`, `rshmctl`, `rshmChanged`, `rshm_wait_changed` and
//!   `rshm_error`, declared in `include/rshm.h` (seed 000).

pub mod rshm;

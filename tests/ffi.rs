//! The C ABI as C programs use it: the programs in `tests/c/`, compiled with `cc` against
//! `libipclab.a` and `include/rshm.h`, run against a real `rshm_server`.
//!
//! `cargo test` does not build the static library (it links the tests against the rlib), so
//! [`staticlib`] builds it once per run with `cargo build --lib` into its own target directory
//! (`target/ffi`): no wait on the lock of the build that is running these tests, and after the
//! first time only what changed is rebuilt.
//!
//! Where valgrind is installed each program also runs under it (`--error-exitcode=1`), which
//! checks every call the program makes for invalid reads and writes (the `rshm_error()`
//! pointer read after a later call, a thread's locals used after they are destroyed). Without
//! valgrind, the test says that it skipped that part.

mod common;
mod rshm_cluster;

use common::{finish, have_valgrind, project_dir};
use rshm_cluster::Cluster;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Longer than any program takes, valgrind included.
const LIMIT: Duration = Duration::from_secs(120);

/// `target/ffi/debug/libipclab.a`, freshly built (once per test run).
fn staticlib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = project_dir().join("target/ffi");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = common::run_with_limit(
            Command::new(cargo)
                .args(["build", "--quiet", "--lib", "--target-dir"])
                .arg(&target)
                .current_dir(project_dir()),
            Duration::from_secs(600),
        );
        assert!(
            out.status.success(),
            "cargo build --lib: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug/libipclab.a")
    })
}

/// Compiles `tests/c/<name>.c` into the cluster's scratch directory.
fn compile(c: &Cluster, name: &str) -> PathBuf {
    let exe = c.s.dir().join(name);
    let src = project_dir().join("tests/c").join(format!("{name}.c"));
    let out = common::run_with_limit(
        Command::new("cc")
            .args([
                "-std=c11",
                "-D_DEFAULT_SOURCE",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-g",
                "-I",
            ])
            .arg(project_dir().join("include"))
            .arg(&src)
            .arg(staticlib())
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&exe),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "cc {name}.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs the program against node 0, plainly and then (if installed) under valgrind; asserts
/// both exit 0, and returns the plain run's stdout.
fn run_c(c: &Cluster, exe: &Path, args: &[&str]) -> String {
    let run = |valgrind: bool| -> Output {
        let mut cmd = if valgrind {
            let mut v = Command::new("valgrind");
            v.args(["-q", "--error-exitcode=1", "--trace-children=no"])
                .arg(exe);
            v
        } else {
            Command::new(exe)
        };
        cmd.args(args)
            .env("RSHM_PORT", c.ports[0].to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        finish(cmd.spawn().expect("spawn"), LIMIT)
    };
    let show = |o: &Output| {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let plain = run(false);
    assert!(
        plain.status.success(),
        "{}: {}",
        exe.display(),
        show(&plain)
    );
    if have_valgrind() {
        let v = run(true);
        assert!(
            v.status.success(),
            "valgrind {}: {}",
            exe.display(),
            show(&v)
        );
    } else {
        eprintln!(
            "valgrind is not installed: skipped the valgrind run of {}",
            exe.display()
        );
    }
    String::from_utf8(plain.stdout).unwrap()
}

fn one_node(tag: &str) -> Cluster {
    let mut c = Cluster::new(tag, 1);
    c.start(0);
    c
}

#[test]
fn calls_from_atexit_and_thread_exit_destructors_work() {
    let c = one_node("ffi-exit");
    let exe = compile(&c, "exit_handlers");
    let out = run_c(&c, &exe, &["0x4601"]);
    for line in [
        "destructor: rshmget = ",
        "destructor: rshmat = 1",
        "destructor: rshmdt = 0",
        "destructor: rshmctl(bad cmd) is EINVAL = -1",
        "atexit: rshmat = 1",
        "atexit: rshmChanged = 0",
        "atexit: rshmdt = 0",
        "atexit: rshmdt(main's) = 0",
        "atexit: rshmctl(IPC_RMID) = 0",
        "atexit: 0 failures",
    ] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
    // Every attach was detached (by the atexit handler, after main's locals were gone).
    assert!(
        common::wait_until(rshm_cluster::LIMIT, || c.rows(0).is_empty()),
        "{:?}",
        c.rows(0)
    );
}

#[test]
fn bad_arguments_get_the_documented_errno_and_rshm_error_lives_as_documented() {
    let c = one_node("ffi-bad");
    let exe = compile(&c, "bad_args");
    let out = run_c(&c, &exe, &["0x4602"]);
    assert!(out.ends_with("0 failures\n"), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn a_forked_child_cannot_undo_its_parents_attach_nor_deadlock() {
    let c = one_node("ffi-fork");
    let exe = compile(&c, "fork");
    let out = run_c(&c, &exe, &["0x4603", "20"]);
    assert!(out.ends_with("20 children, 0 failures\n"), "{out}");
    assert!(
        common::wait_until(rshm_cluster::LIMIT, || c.rows(0).is_empty()),
        "{:?}",
        c.rows(0)
    );
}

#[test]
fn a_wait_of_duration_max_waits_for_the_change_and_does_not_panic() {
    // The Rust call under C's rshm_wait_changed: `Instant::now() + Duration::MAX` used to
    // panic (an overflow) before the wait began.
    let c = one_node("ffi-max");
    let node = ipclab::rshm::Node::open(c.ports[0]).unwrap();
    let id = node.rshmget(0x4604, 64).unwrap();
    let att = node.rshmat(id).unwrap();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    // Not a scoped thread: if the wait never ended, the test fails below at its bound
    // instead of waiting for the thread.
    std::thread::spawn(move || {
        // Its own attach: this thread has now seen the segment as it is.
        let mine = node.rshmat(id).unwrap();
        ready_tx.send(()).unwrap();
        let woke = node.rshm_wait_changed(id, Duration::MAX);
        drop(mine);
        let _ = done_tx.send(woke.map_err(|e| e.to_string()));
    });
    ready.recv_timeout(rshm_cluster::LIMIT).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    att.write_string("changed").unwrap();
    node.rshm_changed(id).unwrap();
    assert_eq!(done.recv_timeout(rshm_cluster::LIMIT), Ok(Ok(true)));
    drop(att);
    node.rshmctl(id, libc::IPC_RMID).unwrap();
}

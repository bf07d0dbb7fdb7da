//! Every lab's grader passes ipclab's own build, with full marks in its `score:` line and in
//! the Gradescope file its `--json` writes.
//!
//! Each test is a real run of `lab/grade/NN-*.sh` against the binaries this `cargo test` built,
//! in the machine's IPC namespace. The graders run two at a time (the test threads), as they
//! may on a loaded lab machine: each takes keys and ports of its own (`lab/grade/lib.sh`) and
//! checks that it left nothing, so two never collide. They live together here, rather than one
//! in each lab's test file, because each takes 10 to 20 s of waiting: side by side they cost
//! `cargo test` the time of the longest pair, not the sum.

mod common;

use common::{bin_dir, project_dir, run_with_limit, Scratch};
use std::process::Command;
use std::time::Duration;

/// Runs `lab/grade/<script>` and asserts that all its checks pass, with full marks in its
/// summary and in its JSON. Its HOME is a directory of its own, so a grader never reads or
/// creates the user's files (RSHM's default secret lives under HOME).
fn run_grader(script: &str) {
    let s = Scratch::new("grader");
    let path = project_dir().join("lab/grade").join(script);
    let json = s.dir().join("results.json");
    let out = run_with_limit(
        Command::new("bash")
            .arg(&path)
            .arg(bin_dir())
            .arg("--json")
            .arg(&json)
            .env("HOME", s.dir())
            .env_remove(ipclab::params::TRACE_ENV),
        Duration::from_secs(240),
    );
    let results = std::fs::read_to_string(&json).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stdout
                .lines()
                .last()
                .is_some_and(|l| l.ends_with(" 0 failed")),
        "grader {script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("FAIL "), "{stdout}");
    // Full marks, in the summary and in the Gradescope file.
    let score = stdout
        .lines()
        .find_map(|l| l.strip_prefix("score: "))
        .unwrap_or_else(|| panic!("no 'score: S/T' line:\n{stdout}"));
    let (got, total) = score.split_once('/').expect("score: S/T");
    assert_eq!(got, total, "{stdout}");
    assert!(
        results.starts_with(&format!(
            "{{\"score\": {got}, \"max_score\": {total}, \"tests\": ["
        )),
        "{results}"
    );
}

#[test]
fn grader_01_shm_writer_reader() {
    run_grader("01-shm-writer-reader.sh");
}

#[test]
fn grader_02_device() {
    run_grader("02-device.sh");
}

#[test]
fn grader_03_shmem_flock() {
    run_grader("03-shmem-flock.sh");
}

#[test]
fn grader_04_dipc() {
    run_grader("04-dipc.sh");
}

#[test]
fn grader_05_rshm() {
    run_grader("05-rshm.sh");
}

/// Every planted bug in `lab/grade/mutants/` still applies to this tree, as `mutate.sh` applies
/// it: a change to the code a patch touches must rebase the patch in the same commit, or the
/// graders' own test (`lab/grade/mutate.sh`) silently loses a mutant.
#[test]
fn every_planted_mutant_still_applies_to_the_tree() {
    let dir = project_dir().join("lab/grade/mutants");
    let mut patches: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    patches.sort();
    assert!(patches.len() >= 50, "{} mutants", patches.len());
    let mut broken = Vec::new();
    for p in &patches {
        let out = match Command::new("patch")
            .args(["-p1", "--dry-run", "--quiet", "--forward", "-i"])
            .arg(p)
            .current_dir(project_dir())
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                println!("skipped: cannot run patch(1): {e}");
                return;
            }
        };
        if !out.status.success() {
            broken.push(format!(
                "{}: {}",
                p.file_name().unwrap().to_string_lossy(),
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "patches that no longer apply:\n{}",
        broken.join("\n")
    );
}

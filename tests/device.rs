//! Integration tests for seed 003: `device`, `device_client` and `detach`, as real processes on
//! real segments and semaphore sets, each test with its own key (a `Scratch` key file).
//!
//! What is pinned down: the exact output of set/get/watch, the ramp, every error (bad channel,
//! non-number, usage, no device) with its exit code and stderr prefix, a device that dies or
//! stops while a client waits, a client that dies mid-command, `detach --stat` and `detach`, the
//! clean exit on SIGINT/SIGTERM, and that no reader ever sees a torn channel. No test measures
//! speed; deadlines are generous and only catch hangs.

mod common;

use common::{cmd, run_with_limit, wait_until, Scratch};
use ipclab::device::client::Client;
use ipclab::device::{SEM_CMD, SEM_DONE};
use ipclab::sys::process::{kill, SIGINT, SIGTERM};
use ipclab::sys::shm::{self, Get};
use ipclab::sys::{sem, Key};
use ipclab::wire::device::ChannelStatus;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const PROJ: u8 = 68;

/// A device started for one test.
struct Dev {
    pid: u32,
    key: Key,
    key_file: PathBuf,
    out: PathBuf,
}

impl Dev {
    /// What the device printed on stderr so far: its status lines (and notices), which are
    /// not data, so stdout stays empty.
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// Whether a device's output holds its whole first status line: stderr is unbuffered, and the
/// file may hold half of the line for a moment.
fn started(out: &str) -> bool {
    out.split_once("device: key 0x")
        .is_some_and(|(_, rest)| rest.contains('\n'))
}

/// Starts `device -k <scratch>/key EXTRA...` with its output in files, and waits for its first
/// line (printed once everything is created and initialised).
fn device(s: &Scratch, extra: &[&str]) -> Dev {
    let key_file = s.key_file("key");
    let key = s.key(&key_file, PROJ);
    let out = s.dir().join("device.out");
    let err = s.dir().join("device.err");
    let pid = s.spawn(
        cmd("device")
            .arg("-k")
            .arg(&key_file)
            .args(extra)
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap()),
    );
    let dev = Dev {
        pid,
        key,
        key_file,
        out: err.clone(),
    };
    assert!(
        wait_until(LIMIT, || started(&dev.stdout())),
        "device did not start; stderr: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let all = dev.stdout();
    let first = all.lines().find(|l| l.starts_with("device: key")).unwrap();
    assert!(
        first.starts_with(&format!("device: key 0x{key:08x} shmid ")),
        "{first}"
    );
    dev
}

/// Runs `device_client -k KEYFILE ARGS...` to completion.
fn client(dev: &Dev, args: &[&str]) -> Output {
    run_with_limit(
        cmd("device_client").arg("-k").arg(&dev.key_file).args(args),
        LIMIT,
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts a client in the background with piped output (killed by the Scratch if it hangs).
fn client_bg(s: &Scratch, dev: &Dev, args: &[&str]) -> u32 {
    s.spawn(
        cmd("device_client")
            .arg("-k")
            .arg(&dev.key_file)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// How many processes have the device's segment attached (`shm_nattch`).
fn attached(dev: &Dev) -> u64 {
    shm::shmget(dev.key, 0, Get::Open)
        .and_then(|id| id.stat())
        .map_or(0, |st| st.attaches)
}

/// Waits until `n` processes (the device and n-1 clients) have the segment attached.
fn wait_attached(dev: &Dev, n: u64) {
    assert!(
        wait_until(LIMIT, || attached(dev) == n),
        "expected {n} attachments, have {}",
        attached(dev)
    );
}

/// Waits until a client sleeps waiting for the device's reply (DONE), i.e. has posted its command.
fn wait_for_reply_waiter(dev: &Dev) {
    let sems = sem::semget(dev.key, 0, Get::Open).unwrap();
    assert!(
        wait_until(LIMIT, || sems.waiting(SEM_DONE).unwrap_or(0) >= 1),
        "no client is waiting for a reply"
    );
}

/// Kills the device with SIGKILL (nothing gets removed) and reaps it, so that its pid is gone.
fn kill_device(s: &Scratch, dev: &Dev) {
    let mut child = s.take(dev.pid);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends `sig` to the device and waits for it to exit; its exit status and final stdout.
fn stop_device(s: &Scratch, dev: &Dev, sig: i32) -> (Option<i32>, String) {
    kill(dev.pid as i32, sig).unwrap();
    let out = common::finish(s.take(dev.pid), LIMIT);
    (out.status.code(), dev.stdout())
}

#[test]
fn set_then_get_prints_ok_and_the_channel_line() {
    let s = Scratch::new("dev-setget");
    let dev = device(&s, &["--ramp", "0"]);
    let o = client(&dev, &["set", "1", "2.5"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(0), "ok\n".into()),
        "{}",
        stderr(&o)
    );
    let o = client(&dev, &["get", "1"]);
    assert_eq!(
        stdout(&o),
        "channel=1 setpoint=2.500 readback=2.500 status=ok\n"
    );
    // Negative values are numbers, not options.
    let o = client(&dev, &["set", "3", "-4"]);
    assert_eq!(stdout(&o), "ok\n", "{}", stderr(&o));
    let o = client(&dev, &["get", "3"]);
    assert_eq!(
        stdout(&o),
        "channel=3 setpoint=-4.000 readback=-4.000 status=ok\n"
    );
    let o = client(&dev, &["reset"]);
    assert_eq!(stdout(&o), "ok\n");
    let o = client(&dev, &["get", "1"]);
    assert_eq!(
        stdout(&o),
        "channel=1 setpoint=0.000 readback=0.000 status=ok\n"
    );
    let (code, out) = stop_device(&s, &dev, SIGTERM);
    assert_eq!(code, Some(0));
    assert!(out.contains("\ndevice: signal 15: removed shmid "), "{out}");
    s.assert_no_leftovers();
}

#[test]
fn the_readback_ramps_toward_the_setpoint_and_watch_prints_every_update() {
    let s = Scratch::new("dev-ramp");
    // 20 units/s, an update every 20 ms: set 0 2 settles in about 100 ms, 5 updates.
    let dev = device(&s, &["--ramp", "20", "--period", "20", "--channels", "2"]);
    let watcher = client_bg(&s, &dev, &["watch", "0", "--count", "12"]);
    wait_attached(&dev, 2);
    let o = client(&dev, &["set", "0", "2"]);
    assert_eq!(stdout(&o), "ok\n");
    let o = client(&dev, &["get", "0"]);
    let line = stdout(&o);
    assert!(
        line.starts_with("channel=0 setpoint=2.000 readback=") && line.ends_with("\n"),
        "{line}"
    );
    let out = common::finish(s.take(watcher), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    let mut last_update = 0u64;
    let mut last_readback = -1.0f64;
    for l in &lines {
        // update=N channel=0 setpoint=S readback=R status=X
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 5, "{l}");
        let update: u64 = f[0].strip_prefix("update=").unwrap().parse().unwrap();
        assert!(update > last_update, "updates must increase: {text}");
        assert_eq!(f[1], "channel=0");
        let readback: f64 = f[3].strip_prefix("readback=").unwrap().parse().unwrap();
        assert!(readback >= last_readback, "a ramp never goes back: {text}");
        let status = f[4].strip_prefix("status=").unwrap();
        assert!(status == "ok" || status == "ramping", "{l}");
        last_update = update;
        last_readback = readback;
    }
    // It got there, and was seen ramping on the way.
    assert!(text.contains("status=ramping"), "{text}");
    assert!(
        wait_until(LIMIT, || stdout(&client(&dev, &["get", "0"]))
            == "channel=0 setpoint=2.000 readback=2.000 status=ok\n"),
        "the ramp never settled"
    );
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

#[test]
fn bad_channels_non_numbers_and_usage_errors() {
    let s = Scratch::new("dev-bad");
    let dev = device(&s, &["--ramp", "0"]);
    for args in [&["get", "9"][..], &["set", "4", "1"], &["watch", "7"]] {
        let o = client(&dev, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&o),
            format!(
                "device_client: {}: channel {} out of range: the device has channels 0..3\n",
                args[0], args[1]
            )
        );
    }
    // A word that is not a number is a usage error (exit 2), like any program's bad number;
    // only a channel the device lacks is a runtime one (exit 1, above).
    for (args, said) in [
        (&["set", "0", "abc"][..], "set: 'abc' is not a number"),
        (&["set", "0", "volts"], "set: 'volts' is not a number"),
        (&["set", "0", "nan"], "set: 'nan' is not a number"),
        (&["get", "one"], "get: 'one' is not a channel number"),
        (&["get", "abc"], "get: 'abc' is not a channel number"),
    ] {
        let o = client(&dev, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&o),
            format!("device_client: {said}\nTry 'device_client --help' for more information.\n")
        );
    }
    let o = client(&dev, &["watch", "0", "--count", "1000000001"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("device_client: --count 1000000001: at most 1000000000\n"),
        "{}",
        stderr(&o)
    );
    let o = client(&dev, &["set", "0", "1e12"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("device_client: set: the device refused the value"),
        "{}",
        stderr(&o)
    );
    for args in [
        &[][..],
        &["fly"],
        &["set", "1"],
        &["get"],
        &["get", "0", "--count", "2"],
        &["--bogus", "get", "0"],
    ] {
        let o = client(&dev, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("device_client: "), "{}", stderr(&o));
        assert!(stderr(&o).contains("Try 'device_client --help'"));
    }
    // The device is still serving after all that.
    let o = client(&dev, &["set", "0", "1"]);
    assert_eq!(stdout(&o), "ok\n");
    let o = run_with_limit(cmd("device").args(["--channels", "0"]), LIMIT);
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_limit(cmd("device").args(["--period", "soon"]), LIMIT);
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_limit(cmd("device_client").arg("--help"), LIMIT);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("Usage: device_client"));
    stop_device(&s, &dev, SIGINT);
    s.assert_no_leftovers();
}

#[test]
fn no_device_running_is_a_clear_error() {
    let s = Scratch::new("dev-none");
    let key_file = s.key_file("key");
    let key = s.key(&key_file, PROJ);
    let o = run_with_limit(
        cmd("device_client")
            .arg("-k")
            .arg(&key_file)
            .args(["get", "0"]),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "device_client: no device running at key 0x{key:08x} (start `device` first): "
        )),
        "{}",
        stderr(&o)
    );
    let o = run_with_limit(cmd("detach").arg("-k").arg(&key_file).arg("--stat"), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with(&format!("detach: no device objects at key 0x{key:08x}: ")));
    let o = run_with_limit(cmd("detach").arg("-k").arg(&key_file), LIMIT);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_device_killed_while_clients_wait_does_not_hang_them() {
    let s = Scratch::new("dev-death");
    // No update for 10 s: a watcher just waits.
    let dev = device(&s, &["--period", "10000"]);
    let watcher = client_bg(&s, &dev, &["watch", "0", "--timeout", "60"]);
    wait_attached(&dev, 2);
    // A command waiting for its reply: the device is frozen, then killed.
    kill(dev.pid as i32, libc::SIGSTOP).unwrap();
    let getter = client_bg(&s, &dev, &["get", "0", "--timeout", "60"]);
    wait_for_reply_waiter(&dev);
    let t = Instant::now();
    kill_device(&s, &dev);
    let w = common::finish(s.take(watcher), LIMIT);
    let g = common::finish(s.take(getter), LIMIT);
    // Far sooner than the 60 s timeout: the pid check between two waits saw it die.
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(w.status.code(), Some(1));
    assert_eq!(
        stderr(&w),
        format!("device_client: watch: the device (pid {}) died\n", dev.pid)
    );
    assert_eq!(g.status.code(), Some(1));
    assert_eq!(
        stderr(&g),
        format!("device_client: get: the device (pid {}) died\n", dev.pid)
    );
    // The objects are still there (SIGKILL removes nothing); a new client says so...
    let o = client(&dev, &["get", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("its device (pid {}) is gone", dev.pid)),
        "{}",
        stderr(&o)
    );
    // ... detach --stat still shows them ...
    let o = run_with_limit(
        cmd("detach").arg("-k").arg(&dev.key_file).arg("--stat"),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // ... and a new device recycles them by itself (like shm_writer and dipc), saying so.
    let old_shm = shm::shmget(dev.key, 0, Get::Open).unwrap().0;
    let old_sem = sem::semget(dev.key, 0, Get::Open).unwrap().0;
    let err = s.dir().join("device2.err");
    let pid = s.spawn(
        cmd("device")
            .arg("-k")
            .arg(&dev.key_file)
            .stdout(File::create(s.dir().join("device2.out")).unwrap())
            .stderr(File::create(&err).unwrap()),
    );
    let dev2 = Dev {
        pid,
        key: dev.key,
        key_file: dev.key_file.clone(),
        out: err.clone(),
    };
    assert!(
        wait_until(LIMIT, || started(&dev2.stdout())),
        "{}",
        dev2.stdout()
    );
    assert_starts(
        &std::fs::read_to_string(&err).unwrap(),
        &format!(
            "device: recycling the objects of a device (pid {}) that is gone: removed shmid \
             {old_shm} and semid {old_sem} at key 0x{:08x}\n",
            dev.pid, dev.key
        ),
    );
    assert_eq!(stdout(&client(&dev2, &["set", "0", "1"])), "ok\n");
    let (code, _) = stop_device(&s, &dev2, SIGTERM);
    assert_eq!(code, Some(0));
    s.assert_no_leftovers();
}

#[test]
fn ipcrm_under_a_device_is_reported_as_someone_elses_doing() {
    let s = Scratch::new("dev-ipcrm");
    for flag in ["-s", "-m"] {
        let dev = device(&s, &["--period", "20"]);
        let watcher = client_bg(&s, &dev, &["watch", "0"]);
        wait_attached(&dev, 2);
        let id = if flag == "-s" {
            sem::semget(dev.key, 0, Get::Open).unwrap().0
        } else {
            shm::shmget(dev.key, 0, Get::Open).unwrap().0
        };
        let o = run_with_limit(
            std::process::Command::new("ipcrm").args([flag, &id.to_string()]),
            LIMIT,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let d = common::finish(s.take(dev.pid), LIMIT);
        assert_eq!(d.status.code(), Some(0), "{flag}");
        let last = dev.stdout().lines().last().unwrap().to_string();
        assert!(
            last.ends_with(" was removed by someone else (ipcrm?); stopping"),
            "{flag}: {last}"
        );
        let w = common::finish(s.take(watcher), LIMIT);
        assert_eq!(w.status.code(), Some(1));
        assert!(
            stderr(&w).starts_with(&format!(
                "device_client: watch: the device's (pid {}) objects were removed by someone \
                 else (ipcrm?)",
                dev.pid
            )),
            "{flag}: {}",
            stderr(&w)
        );
        assert!(!stderr(&w).contains("detach"), "{}", stderr(&w));
        s.assert_no_leftovers();
    }
}

#[test]
fn a_stuck_device_times_out_and_a_client_killed_mid_command_leaves_nothing_stuck() {
    let s = Scratch::new("dev-stuck");
    let dev = device(&s, &["--ramp", "0"]);
    kill(dev.pid as i32, libc::SIGSTOP).unwrap();
    let o = client(&dev, &["get", "0", "--timeout", "0.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("device_client: get: timed out after 500ms waiting for the reply"),
        "{}",
        stderr(&o)
    );
    // A client that takes the slot, posts its command and is then killed: SEM_UNDO gives the
    // slot back, and the reply the device writes later for nobody must not fool the next one.
    let victim = client_bg(&s, &dev, &["set", "0", "7", "--timeout", "60"]);
    wait_for_reply_waiter(&dev);
    let mut v = s.take(victim);
    v.kill().unwrap();
    v.wait().unwrap();
    kill(dev.pid as i32, libc::SIGCONT).unwrap();
    // Let the device take the dead client's command before anyone reuses the request block
    // (otherwise the next client's request would simply replace it, which is also fine).
    let sems = sem::semget(dev.key, 0, Get::Open).unwrap();
    assert!(wait_until(LIMIT, || {
        sems.get_val(SEM_CMD).unwrap() == 0 && sems.get_val(SEM_DONE).unwrap() >= 1
    }));
    let o = client(&dev, &["set", "1", "3"]);
    assert_eq!(stdout(&o), "ok\n", "{}", stderr(&o));
    let o = client(&dev, &["get", "1"]);
    assert_eq!(
        stdout(&o),
        "channel=1 setpoint=3.000 readback=3.000 status=ok\n"
    );
    let o = client(&dev, &["get", "0"]);
    assert_eq!(
        stdout(&o),
        "channel=0 setpoint=7.000 readback=7.000 status=ok\n",
        "the dead client's command was still executed"
    );
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

#[test]
fn detach_stat_prints_shmid_ds_and_the_limits() {
    let s = Scratch::new("dev-stat");
    let dev = device(&s, &["--channels", "4"]);
    let o = run_with_limit(
        cmd("detach").arg("-k").arg(&dev.key_file).arg("--stat"),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
            .to_string()
    };
    assert!(text.starts_with(&format!("segment key 0x{:08x} shmid ", dev.key)));
    assert_eq!(line("shm_segsz"), "  shm_segsz   224 bytes");
    assert_eq!(
        line("shm_cpid"),
        format!("  shm_cpid    {} (creator, alive)", dev.pid)
    );
    assert!(line("shm_lpid").starts_with("  shm_lpid    "));
    // Only the device is attached: detach reads the numbers before it attaches to read the header.
    assert_eq!(line("shm_nattch"), "  shm_nattch  1");
    for t in ["shm_atime", "shm_dtime", "shm_ctime"] {
        let l = line(t);
        assert!(l.ends_with(" UTC") || l.ends_with(" never"), "{l}");
    }
    assert!(line("shm_ctime").ends_with(" UTC"));
    assert!(line("device status running").contains(&format!("pid {} (alive)", dev.pid)));
    assert!(line("semaphores semid").ends_with("lock=1 slot=1 cmd=0 done=0 update=1"));
    let limit = |n: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{n}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let cols = |name: &str| -> Vec<String> {
        line(name)
            .split("  ")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(cols("SHMMAX")[1..], [limit("shmmax"), "32768".into()]);
    assert_eq!(cols("SHMMIN")[1..], ["1 (fixed)".to_string(), "1".into()]);
    assert_eq!(cols("SHMMNI")[1..], [limit("shmmni"), "4096".into()]);
    assert_eq!(cols("SHMALL")[1..], [limit("shmall"), "-".into()]);
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

#[test]
fn detach_removes_and_the_device_and_its_clients_notice() {
    let s = Scratch::new("dev-detach");
    let dev = device(&s, &["--period", "50"]);
    let watcher = client_bg(&s, &dev, &["watch", "2"]);
    // Wait until the watcher is attached (device + watcher), as detach --stat also shows.
    wait_attached(&dev, 2);
    let o = run_with_limit(
        cmd("detach").arg("-k").arg(&dev.key_file).arg("--stat"),
        LIMIT,
    );
    assert!(stdout(&o).contains("  shm_nattch  2\n"), "{}", stdout(&o));
    let o = run_with_limit(cmd("detach").arg("-k").arg(&dev.key_file), LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(said.starts_with("detach: marked shmid "), "{said}");
    assert!(
        said.ends_with(" for removal; 2 process(es) still attached will notice\n"),
        "{said}"
    );
    let d = common::finish(s.take(dev.pid), LIMIT);
    assert_eq!(d.status.code(), Some(0));
    assert!(
        dev.stdout()
            .lines()
            .last()
            .unwrap()
            .ends_with(" were removed (by detach); stopping"),
        "{}",
        dev.stdout()
    );
    let w = common::finish(s.take(watcher), LIMIT);
    assert_eq!(w.status.code(), Some(1));
    assert!(
        stderr(&w).starts_with(&format!(
            "device_client: watch: the device (pid {}) was removed by detach",
            dev.pid
        )),
        "{}",
        stderr(&w)
    );
    s.assert_no_leftovers();
}

#[test]
fn sigterm_and_sigint_remove_everything_and_waiting_clients_learn_why() {
    for sig in [SIGTERM, SIGINT] {
        let s = Scratch::new("dev-signal");
        // A long period: the signal must be acted on at once, not at the next tick.
        let dev = device(&s, &["--period", "10000"]);
        let watcher = client_bg(&s, &dev, &["watch", "0"]);
        wait_attached(&dev, 2);
        let t = Instant::now();
        let (code, out) = stop_device(&s, &dev, sig);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(code, Some(0));
        assert!(
            out.lines()
                .last()
                .unwrap()
                .starts_with(&format!("device: signal {sig}: removed shmid ")),
            "{out}"
        );
        let w = common::finish(s.take(watcher), LIMIT);
        assert_eq!(w.status.code(), Some(1));
        assert!(
            stderr(&w).starts_with(&format!(
                "device_client: watch: the device (pid {}) stopped",
                dev.pid
            )),
            "{}",
            stderr(&w)
        );
        s.assert_no_leftovers();
    }
}

#[test]
fn a_second_device_on_the_same_key_is_refused() {
    let s = Scratch::new("dev-twice");
    let dev = device(&s, &[]);
    let o = run_with_limit(cmd("device").arg("-k").arg(&dev.key_file), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "device: a device (pid {}) already runs with key 0x{:08x}: ",
            dev.pid, dev.key
        )),
        "{}",
        stderr(&o)
    );
    // The refused one removed nothing of the first.
    assert_eq!(stdout(&client(&dev, &["set", "0", "0"])), "ok\n");
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

/// Rapid sets from several threads (each with its own connection) while real `watch` processes
/// and in-process readers check every snapshot: with `--ramp 0`, a channel seen whole always has
/// readback = setpoint and status ok; a torn read would pair a new setpoint with an old readback.
#[test]
fn readers_never_see_a_torn_channel() {
    let s = Scratch::new("dev-torn");
    let dev = device(&s, &["--ramp", "0", "--period", "1", "--channels", "4"]);
    let watchers: Vec<u32> = (0..4)
        .map(|ch| client_bg(&s, &dev, &["watch", &ch.to_string(), "--count", "300"]))
        .collect();
    let key = dev.key;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setters: Vec<_> = (0..4u16)
        .map(|ch| {
            std::thread::spawn(move || {
                let mut c = Client::open(key, Duration::from_secs(10)).unwrap();
                for i in 0..1500u32 {
                    // Every value distinct, and different on every channel.
                    let v = f64::from(i) + f64::from(ch) / 10.0;
                    let got = c.set(ch, v).unwrap();
                    // The reply is ours: the command slot serialises the clients.
                    assert_eq!((got.setpoint, got.readback), (v, v));
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = Client::open(key, Duration::from_secs(10)).unwrap();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 2000 {
                    let ch = (n % 4) as u16;
                    let snap = c.snapshot(ch).unwrap();
                    let c0 = snap.channel;
                    assert_eq!(c0.setpoint, c0.readback, "torn channel {ch}: {c0:?}");
                    assert_eq!(c0.status, ChannelStatus::Ok);
                    assert!(c0.update <= snap.update, "{snap:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for t in setters {
        t.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 2000);
    }
    for w in watchers {
        let out = common::finish(s.take(w), LIMIT * 2);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 300);
        for l in text.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let sp = f[2].strip_prefix("setpoint=").unwrap();
            let rb = f[3].strip_prefix("readback=").unwrap();
            assert_eq!(sp, rb, "torn line: {l}");
            assert_eq!(f[4], "status=ok", "{l}");
        }
    }
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

#[test]
fn a_semaphore_set_left_behind_is_recycled_and_a_foreign_segment_is_named() {
    let s = Scratch::new("dev-stale-sem");
    let key_file = s.key_file("key");
    let key = s.key(&key_file, PROJ);
    // What a crashed device leaves between removing its segment and its set: a set, alone.
    let stale = sem::semget(key, 5, Get::Create(0o600)).unwrap();
    let dev = device(&s, &[]);
    let err = std::fs::read_to_string(s.dir().join("device.err")).unwrap();
    assert_starts(
        &err,
        &format!(
            "device: recycling a semaphore set left behind without its segment: removed semid \
             {} at key 0x{key:08x}\n",
            stale.0
        ),
    );
    assert_eq!(stdout(&client(&dev, &["set", "0", "1"])), "ok\n");
    stop_device(&s, &dev, SIGTERM);
    // A segment that is not a device's is never recycled: the device says what is there.
    let foreign = ipclab::sys::Owner::new(shm::shmget(key, 64, Get::Create(0o600)).unwrap());
    let o = run_with_limit(cmd("device").arg("-k").arg(&key_file), LIMIT);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "device: key 0x{key:08x} holds a segment (shmid {}) that is not a device's register \
             file: uid {}, created by pid {} (running); remove it with `ipcrm -m {}` if it is \
             yours, or choose another key (-k, -i): shmget(",
            foreign.get().0,
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()),
            std::process::id(),
            foreign.get().0
        )),
        "{}",
        stderr(&o)
    );
    drop(foreign);
    s.assert_no_leftovers();
}

#[test]
fn ctrl_c_ends_a_watch_quietly() {
    let s = Scratch::new("dev-ctrlc");
    let dev = device(&s, &["--period", "10000"]);
    let watcher = client_bg(&s, &dev, &["watch", "0"]);
    wait_attached(&dev, 2);
    kill(watcher as i32, SIGINT).unwrap();
    let w = common::finish(s.take(watcher), LIMIT);
    // 128 + SIGINT, nothing on stderr, and the device is none the worse.
    assert_eq!(w.status.code(), Some(130));
    assert_eq!(stderr(&w), "");
    assert_eq!(stdout(&client(&dev, &["set", "0", "1"])), "ok\n");
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

/// xorshift64*, seeded from the clock (printed) or `IPCLAB_FUZZ_SEED`, for the scribbler.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn a_device_whose_command_block_is_scribbled_on_keeps_serving() {
    use ipclab::device::SEM_SLOT;
    use ipclab::sys::sem::SemOp;
    use ipclab::sys::shm::Access;
    use ipclab::wire::device::{self as wire, Op, Request};
    let seed = std::env::var("IPCLAB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = Rng(seed | 1);
    let s = Scratch::new("dev-scribble");
    let dev = device(&s, &["--ramp", "0", "--period", "5"]);
    let seg = shm::shmget(dev.key, 0, Get::Open).unwrap();
    let att = seg.attach(Access::ReadWrite).unwrap();
    let sems = sem::semget(dev.key, 0, Get::Open).unwrap();
    let mut legit = Client::open(dev.key, LIMIT).unwrap();
    const ROUNDS: usize = 50_000;
    let mut bad_requests = 0;
    for i in 0..ROUNDS {
        // A hostile program that follows the semaphore protocol but writes any bytes: random
        // ones, or a valid request with a few bytes flipped.
        let mut req = if rng.next().is_multiple_of(2) {
            rng.bytes(wire::REQUEST_LEN)
        } else {
            let op = match rng.next() % 3 {
                0 => Op::Set {
                    channel: rng.next() as u16 % 8,
                    value: f64::from_bits(rng.next()),
                },
                1 => Op::Get {
                    channel: rng.next() as u16,
                },
                _ => Op::Reset,
            };
            Request {
                seq: rng.next() as u32,
                op,
                pid: 1,
            }
            .encode()
        };
        for _ in 0..rng.next() % 3 {
            let at = rng.next() as usize % req.len();
            req[at] = rng.next() as u8;
        }
        sems.op(&[SemOp::wait(SEM_SLOT).undo()]).unwrap();
        att.write_at(wire::REQUEST_OFFSET, &req).unwrap();
        sems.op(&[SemOp::post(SEM_CMD)]).unwrap();
        assert!(
            sems.op_timeout(&[SemOp::wait(SEM_DONE)], LIMIT).unwrap(),
            "no reply to {req:02x?} (seed {seed})"
        );
        let mut reply = [0u8; wire::REPLY_LEN];
        att.read_at(wire::REPLY_OFFSET, &mut reply).unwrap();
        let reply = wire::Reply::decode(&reply).unwrap_or_else(|e| panic!("{e} (seed {seed})"));
        if reply.result == wire::ResultCode::BadRequest {
            bad_requests += 1;
        }
        sems.op(&[SemOp::post(SEM_SLOT).undo()]).unwrap();
        // And scribbles over the reply block and the channel registers, lock or no lock.
        let at =
            wire::REPLY_OFFSET + rng.next() as usize % (wire::REPLY_LEN + 4 * wire::CHANNEL_LEN);
        let n = 1 + rng.next() as usize % 16;
        let junk = rng.bytes(n);
        let end = (at + junk.len()).min(att.len());
        att.write_at(at, &junk[..end - at]).unwrap();
        // The device answers the next honest command correctly, every time.
        if i % 100 == 0 {
            let v = (i % 1000) as f64;
            let ch = (i / 100 % 4) as u16;
            assert_eq!(legit.set(ch, v).unwrap().setpoint, v, "seed {seed}");
            let got = legit.get(ch).unwrap();
            assert_eq!((got.setpoint, got.readback), (v, v), "seed {seed}");
        }
    }
    println!(
        "device scribble: {ROUNDS} hostile commands ({bad_requests} garbled), 0 failures, seed {seed}"
    );
    assert!(bad_requests > ROUNDS / 4, "{bad_requests}");
    drop((att, legit));
    // The real client, too, and the device stops in order.
    let o = client(&dev, &["set", "2", "7"]);
    assert_eq!(stdout(&o), "ok\n", "{}", stderr(&o));
    let o = client(&dev, &["get", "2"]);
    assert_eq!(
        stdout(&o),
        "channel=2 setpoint=7.000 readback=7.000 status=ok\n"
    );
    let (code, _) = stop_device(&s, &dev, SIGTERM);
    assert_eq!(code, Some(0));
    s.assert_no_leftovers();
}

/// `text` begins with `start` (a notice, then the device's status line on the same stderr).
fn assert_starts(text: &str, start: &str) {
    assert!(
        text.starts_with(start),
        "{text:?} does not start with {start:?}"
    );
}

#[test]
fn a_closed_stdout_ends_a_watcher_quietly() {
    use std::io::BufRead;
    let s = Scratch::new("dev-pipe");
    let dev = device(&s, &["--ramp", "0", "--period", "20"]);
    // `device_client watch 0 | head -1`: the reader leaves after one line.
    let pid = s.spawn(
        cmd("device_client")
            .arg("-k")
            .arg(&dev.key_file)
            .args(["watch", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut child = s.take(pid);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("update="), "{line}");
    // The read end is closed now; the next update's line meets a closed pipe.
    let o = common::finish(child, LIMIT);
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no 'Broken pipe' message");
    stop_device(&s, &dev, SIGTERM);
    s.assert_no_leftovers();
}

//! A `msgrcv` that sleeps in the kernel until a message arrives or a deadline passes.
//!
//! System V has no `msgrcv` with a timeout. [`MsgId::recv_deadline`] polls, which costs either
//! CPU (spinning) or latency (sleeping between polls). [`recv_until`] instead blocks in
//! `msgrcv`, so the kernel wakes it the moment the message is queued, and arranges for a signal
//! to interrupt it at the deadline:
//!
//! - a POSIX timer of this thread (`timer_create` with `SIGEV_THREAD_ID`) sends [`wake_signal`]
//!   to this very thread at the deadline;
//! - that signal's handler does nothing and is installed *without* `SA_RESTART`, so the blocked
//!   `msgrcv` returns `EINTR`, and we see that the deadline has passed;
//! - the timer then repeats every 10 ms until it is deleted: a signal that lands in the instant
//!   between "is it late?" and `msgrcv` going to sleep would be lost, the next one is not.
//!
//! The signal is `SIGRTMAX - 1`, a real-time signal that glibc does not use. If the program
//! has its own handler for it, or this thread blocks it, [`recv_until`] falls back to polling
//! with [`MsgId::recv_deadline`]: slower, never wrong.

use super::msg::MsgId;
use super::{cvt, errno};
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The signal that ends a wait: `SIGRTMAX - 1`.
pub fn wake_signal() -> libc::c_int {
    libc::SIGRTMAX() - 1
}

extern "C" fn do_nothing(_: libc::c_int) {}

/// Installs the do-nothing handler once; false if the signal already has another handler.
fn handler_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let sig = wake_signal();
        let ours = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: sigaction is plain data; all-zero is a valid value to be filled in.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null new action only reads the current one into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return false;
        }
        if old.sa_sigaction != libc::SIG_DFL {
            return old.sa_sigaction == ours;
        }
        // SAFETY: as above.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = ours;
        // No SA_RESTART: the point is that a blocked msgrcv returns EINTR.
        sa.sa_flags = 0;
        // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise; `sa` is fully initialised
        // and the handler is async-signal-safe (it does nothing).
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0
        }
    })
}

/// Whether the calling thread blocks `sig` (then no timer could wake it).
fn blocked_here(sig: libc::c_int) -> bool {
    // SAFETY: sigset_t is plain data; pthread_sigmask with a null new set only reads the mask.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) != 0
            || libc::sigismember(&cur, sig) == 1
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

/// A timer that signals this thread at a deadline and every 10 ms after; deleted on drop.
struct Timer(libc::timer_t);

impl Timer {
    fn arm(deadline: Instant) -> io::Result<Timer> {
        // SAFETY: sigevent is plain data; all-zero is valid, and we set the fields we use.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = wake_signal();
        sev.sigev_notify_thread_id = super::process::thread_id();
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `id` are valid for the call; the kernel writes the timer id.
        let ret = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) };
        cvt(ret, || {
            "timer_create(CLOCK_MONOTONIC, SIGEV_THREAD_ID)".to_string()
        })?;
        let timer = Timer(id);
        let left = deadline.saturating_duration_since(Instant::now());
        let spec = libc::itimerspec {
            // A zero it_value would disarm the timer: at least 1 us.
            it_value: timespec(left.max(Duration::from_micros(1))),
            it_interval: timespec(Duration::from_millis(10)),
        };
        // SAFETY: `id` is the timer just created; `spec` is valid; the old value is not wanted.
        let ret = unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
        cvt(ret, || "timer_settime".to_string())?;
        Ok(timer)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by timer_create and is deleted exactly once, here.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Waits for a message of type `mtype` until `deadline`, asleep in the kernel: `Ok(None)` if
/// none came in time. A removed queue fails at once with EIDRM, as in [`MsgId::recv`].
pub fn recv_until(
    q: MsgId,
    mtype: i64,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<(i64, usize)>> {
    if !handler_ready() || blocked_here(wake_signal()) {
        return q.recv_deadline(mtype, buf, deadline);
    }
    // Already there (or already late): no timer needed.
    if let Some(m) = q.try_recv(mtype, buf)? {
        return Ok(Some(m));
    }
    if Instant::now() >= deadline {
        return Ok(None);
    }
    let _timer = Timer::arm(deadline)?;
    loop {
        match q.recv_once(mtype, buf, 0) {
            Ok(m) => return Ok(Some(m)),
            // Our timer (the deadline), or another signal, or our timer a hair early.
            Err(e) if errno(&e) == Some(libc::EINTR) => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::msg::msgget;
    use super::super::shm::Get;
    use super::super::{is_removed, Owner, IPC_PRIVATE};
    use super::*;

    fn private() -> Owner<MsgId> {
        Owner::new(msgget(IPC_PRIVATE, Get::Create(0o600)).unwrap())
    }

    #[test]
    fn gives_up_at_the_deadline_and_not_long_after() {
        let q = private();
        for ms in [1, 30] {
            let t = Instant::now();
            let got = recv_until(q.get(), 1, &mut [0u8; 8], t + Duration::from_millis(ms)).unwrap();
            assert_eq!(got, None);
            assert!(t.elapsed() >= Duration::from_millis(ms));
            assert!(
                t.elapsed() < Duration::from_millis(ms + 500),
                "{:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn wakes_when_the_message_arrives_and_when_the_queue_goes() {
        let q = private();
        let id = q.get();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let got = recv_until(id, 3, &mut buf, Instant::now() + Duration::from_secs(10));
            (got.unwrap(), buf)
        });
        std::thread::sleep(Duration::from_millis(20));
        q.send(3, b"hi", false).unwrap();
        let (got, buf) = h.join().unwrap();
        assert_eq!(got, Some((3, 2)));
        assert_eq!(&buf[..2], b"hi");
        let h = std::thread::spawn(move || {
            recv_until(
                id,
                3,
                &mut [0u8; 8],
                Instant::now() + Duration::from_secs(10),
            )
        });
        std::thread::sleep(Duration::from_millis(20));
        q.remove().unwrap();
        assert!(is_removed(&h.join().unwrap().unwrap_err()));
    }
}

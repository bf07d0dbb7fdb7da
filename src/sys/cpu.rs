//! Which CPUs the calling thread may run on (`sched_setaffinity`), for measurements.
//!
//! A loopback round trip between two threads costs about four times less when the scheduler
//! happens to put both on one CPU: the wake-up of the other side is then a switch, not an
//! interrupt to another CPU. Two nodes on two machines never get that, so a benchmark that uses
//! loopback TCP as the stand-in for a network pins its two ends to two different CPUs
//! ([`Pin::to`]) for the rounds it times, and gives the thread back all its CPUs afterwards.

use super::cvt;
use std::io;

/// The calling thread, pinned to one CPU until dropped; then it may run where it could before.
pub struct Pin {
    before: libc::cpu_set_t,
}

impl Pin {
    /// Pins the calling thread to `cpu` (counted from 0).
    pub fn to(cpu: usize) -> io::Result<Pin> {
        let before = get()?;
        // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is within the set's bits (checked just above).
        unsafe { libc::CPU_SET(cpu, &mut one) };
        set(&one)?;
        Ok(Pin { before })
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = set(&self.before);
    }
}

/// How many CPUs this process may use now.
pub fn available() -> usize {
    // SAFETY: CPU_COUNT only reads the set it is given.
    get().map_or(1, |s| unsafe { libc::CPU_COUNT(&s) } as usize)
}

fn get() -> io::Result<libc::cpu_set_t> {
    // SAFETY: all zeros is a valid (empty) cpu_set_t, and the kernel writes at most its size.
    let mut s: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread; `s` is valid for `size` bytes.
    cvt(unsafe { libc::sched_getaffinity(0, size, &mut s) }, || {
        "sched_getaffinity(0)".into()
    })?;
    Ok(s)
}

fn set(s: &libc::cpu_set_t) -> io::Result<()> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread; the kernel reads `size` bytes of `s`.
    cvt(unsafe { libc::sched_setaffinity(0, size, s) }, || {
        "sched_setaffinity(0)".into()
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_holds_until_dropped() {
        let all = available();
        {
            // A machine (or container) may not give us CPU 0.
            let Ok(_p) = Pin::to(0) else {
                println!("skipped: CPU 0 is not among this process's CPUs");
                return;
            };
            assert_eq!(available(), 1);
        }
        assert_eq!(available(), all);
    }
}

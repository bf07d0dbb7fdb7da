//! From a port to the System V keys: one documented formula, so that anybody can find a server's
//! objects knowing only its port.
//!
//! ```text
//! key = 0x44500000 | port        ("DP" in the top two bytes, the port in the low two)
//! port 5000 = 0x1388   ->   key 0x44501388   (ipcs -m and ipcs -s both show it)
//! ```
//!
//! The segment and the semaphore set use the **same** key: System V keeps one key space per
//! kind of object, so a shm key and a sem key never collide. Why not `ftok`? `ftok` needs a file
//! that both the server and `dipcrm` agree on, and gives a different key on every machine; the
//! port is the one thing every dipc tool is given, and a formula of it is what lets `dipcrm
//! 5000` find a dead server's objects. The price: two programs that pick the same formula
//! collide, which is why the server creates with `IPC_EXCL` and checks the magic before it
//! ever recycles an object.

use crate::params::DIPC_KEY_BASE;
use crate::sys::Key;

/// The key of port `port`'s segment and semaphore set.
pub fn key_for_port(port: u16) -> Key {
    (DIPC_KEY_BASE | u32::from(port)) as Key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_shows_the_port() {
        assert_eq!(key_for_port(5000), 0x4450_1388);
        assert_eq!(key_for_port(65535), 0x4450_ffff);
    }
}

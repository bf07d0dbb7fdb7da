//! Who listens on a TCP port: the kernel's socket table joined with every process's fds.
//!
//! `dipcrm` normally finds its server by the segment's creator pid (`shm_cpid`). That trail is
//! gone once somebody has removed the segment with `ipcrm`, yet the server may still hold the
//! port. The port itself is the other trail, and it cannot be removed from under a process:
//!
//! ```text
//! /proc/net/tcp:   sl local_address rem_address st ... inode
//!                  0: 0100007F:1388 00000000:0000 0A ... 412345     (0A = LISTEN, port 0x1388)
//! /proc/8090/fd/5 -> socket:[412345]                                 so pid 8090 listens on 5000
//! ```
//!
//! Rules: only the caller's own processes (or, for root, everybody's) have readable
//! `/proc/PID/fd`; a listener that belongs to another user is not found, which is right, since
//! that user's server is not ours to stop. The table is read once, so a process that starts
//! listening meanwhile is not seen (callers check again after they act).

use std::collections::HashSet;
use std::io;

/// The TCP state number of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// The inodes of the sockets listening on `port`, IPv4 and IPv6.
fn listening_inodes(port: u16) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{table}: {e}"))),
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[1] = local "ADDR:PORT" in hex, f[3] = state, f[9] = inode.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == TCP_LISTEN && local_port == Some(port) {
                if let Ok(i) = inode.parse() {
                    inodes.insert(i);
                }
            }
        }
    }
    Ok(inodes)
}

/// The pids of the processes (that we may look into) holding a socket listening on `port`.
pub fn listener_pids(port: u16) -> io::Result<Vec<i32>> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Another user's process, or one that just exited: not ours to find.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                let t = target.to_string_lossy();
                t.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| inodes.contains(&n))
            })
        });
        if holds {
            pids.push(pid);
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        assert!(listener_pids(port).unwrap().contains(&me));
        drop(l);
        assert!(!listener_pids(port).unwrap().contains(&me));
    }
}

//! The dialer thread, one per `--peer`: our connection to that peer, which carries *our*
//! requests and brings back their ACKs.
//!
//! # Rules
//! - Connects, retrying with backoff (`RSHM_BACKOFF_MIN` doubling to `RSHM_BACKOFF_MAX`)
//!   while the peer is down; a peer that dialled us meanwhile cuts the backoff short (`kick`).
//! - Authenticates both ways ([`crate::rshm::auth`]), then HELLO ([`super::hello::greet`]),
//!   then reads ACKs only ([`super::peers::on_ack`]); anything else drops the connection.
//! - When the connection ends, whoever waits for its ACKs is failed
//!   ([`super::peers::peer_down`]).

use super::hello;
use super::peers::{on_ack, peer_down, read_frame};
use super::state::{lock, Shared};
use crate::params::{
    RSHM_BACKOFF_MAX, RSHM_BACKOFF_MIN, RSHM_CONNECT_TIMEOUT, RSHM_HELLO_TIMEOUT, RSHM_READ_BUFFER,
    RSHM_WRITE_TIMEOUT,
};
use crate::rshm::auth::{self, AuthError};
use crate::wire::rshm::Frame;
use std::io::{self, BufReader};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(super) fn dial_loop(shared: &Shared, peer: SocketAddrV4) {
    let mut backoff = RSHM_BACKOFF_MIN;
    let mut announced_down = false;
    // A peer that fails authentication is logged once, not at every retry.
    let mut announced_refused = false;
    while !shared.stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&SocketAddr::V4(peer), RSHM_CONNECT_TIMEOUT) {
            Ok(s) => {
                announced_down = false;
                let why = match talk_to(shared, peer, s) {
                    Ok(()) => "closed by the peer".to_string(),
                    Err(Refused(e)) => {
                        if !announced_refused {
                            // Only a wrong MAC or a close after our proof points at the secret;
                            // a reset is a peer dying or restarting.
                            let hint = match &e {
                                AuthError::Io(io) if io.kind() != io::ErrorKind::UnexpectedEof => {
                                    ""
                                }
                                _ => " (same --secret on both nodes?)",
                            };
                            log!("peer {peer}: {e}; not connecting{hint}, retrying with backoff");
                            announced_refused = true;
                        }
                        crate::trace!("peer {peer}: {e}; next try in {} ms", backoff.as_millis());
                        sleep_unless_kicked(shared, peer, backoff);
                        backoff = (backoff * 2).min(RSHM_BACKOFF_MAX);
                        continue;
                    }
                    Err(Broken(e)) => e.to_string(),
                };
                announced_refused = false;
                backoff = RSHM_BACKOFF_MIN;
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                log!("lost peer {peer}: {why}");
                peer_down(shared, peer, &why);
            }
            Err(e) => {
                if !announced_down {
                    log!("peer {peer} is down ({e}); retrying with backoff, serving locally");
                    announced_down = true;
                }
                crate::trace!(
                    "connect {peer}: {e}; next try in {} ms",
                    backoff.as_millis()
                );
                sleep_unless_kicked(shared, peer, backoff);
                backoff = (backoff * 2).min(RSHM_BACKOFF_MAX);
            }
        }
    }
}

/// Waits out a backoff, in short slices, returning early if the peer dialled us meanwhile.
pub(super) fn sleep_unless_kicked(shared: &Shared, peer: SocketAddrV4, pause: Duration) {
    let until = Instant::now() + pause;
    while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10).min(pause));
        let mut st = lock(shared);
        if let Some(p) = st.peers.iter_mut().find(|p| p.addr == peer) {
            if std::mem::take(&mut p.kick) {
                return;
            }
        }
    }
}

/// How a connection we dialled ended: refused in the handshake (the peer does not know our
/// secret, or is not an rshm_server), or broken after it.
pub(super) enum Ended {
    Refused(AuthError),
    Broken(io::Error),
}

use Ended::{Broken, Refused};

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Ended {
        Broken(e)
    }
}

/// One connection's life: authenticate, HELLO, merge the reply, then read ACKs until it breaks.
pub(super) fn talk_to(shared: &Shared, peer: SocketAddrV4, mut s: TcpStream) -> Result<(), Ended> {
    // Updates are small and latency is the point: send each frame at once (no Nagle delay).
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(RSHM_WRITE_TIMEOUT))?;
    s.set_read_timeout(Some(RSHM_HELLO_TIMEOUT))?;
    // First, both ends prove they know the secret; until then we send nothing but a nonce.
    let ends = auth::Ends {
        dialer: shared.me,
        acceptor: peer,
    };
    auth::dial(&mut s, &shared.secret, ends).map_err(Refused)?;
    crate::trace!("tcp -> {peer}: authenticated (both ways)");
    // Buffered: a frame, or several ACKs, usually arrive in one read(2), not two per frame.
    let mut rd = BufReader::with_capacity(RSHM_READ_BUFFER, s.try_clone()?);
    let mut buf = Vec::new();
    hello::greet(shared, peer, &mut s, &mut rd, &mut buf)?;
    s.set_read_timeout(None)?;
    loop {
        let (seq, frame) = read_frame(&mut rd, &mut buf)?;
        crate::trace!("tcp <- {peer} #{seq} {frame}");
        match frame {
            Frame::Ack {
                status,
                text,
                winner,
            } => on_ack(shared, peer, seq, (status, text, winner)),
            other => {
                return Err(Broken(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected {other} on our own connection"),
                )))
            }
        }
    }
}

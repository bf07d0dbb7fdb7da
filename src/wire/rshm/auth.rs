//! RSHM's authentication messages: the challenge-response every peer connection opens with,
//! before any frame ([`crate::rshm::auth`] runs it).
//!
//! # Format
//! The table "Authentication" in [`crate::wire::rshm`]: always `AUTH_LEN` bytes.

use super::{get_addr, invalid, put_addr};
use super::{AUTH_LEN, AUTH_MAGIC, AUTH_NONCE_LEN, AUTH_VERSION};
use crate::wire::{DecodeError, Reader, Writer};
use std::net::SocketAddrV4;

/// Which of the three authentication messages (see "Authentication" above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// Dialer -> acceptor: the dialer's nonce.
    Challenge = 1,
    /// Acceptor -> dialer: the acceptor's nonce and its MAC over both nonces.
    Answer = 2,
    /// Dialer -> acceptor: the dialer's MAC over both nonces.
    Proof = 3,
}

/// One authentication message. Fields a kind does not use are zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    pub kind: AuthKind,
    pub nonce: [u8; AUTH_NONCE_LEN],
    pub mac: [u8; AUTH_NONCE_LEN],
    /// The dialer's name (its listen address), in every message.
    pub dialer: SocketAddrV4,
    /// The name of the node the dialer dialled (its `--peer`), in every message.
    pub acceptor: SocketAddrV4,
}

impl Auth {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(AUTH_LEN);
        w.bytes(AUTH_MAGIC)
            .u16(AUTH_VERSION)
            .u8(self.kind as u8)
            .u8(0)
            .bytes(&self.nonce)
            .bytes(&self.mac)
            .bytes(&Auth::names(self.dialer, self.acceptor));
        w.finish()
    }

    /// The names as both MACs cover them: the message's last 12 bytes, `dialer` then
    /// `acceptor` (see "Authentication" in [`crate::wire::rshm`]).
    pub fn names(dialer: SocketAddrV4, acceptor: SocketAddrV4) -> Vec<u8> {
        let mut w = Writer::with_capacity(12);
        put_addr(&mut w, dialer);
        put_addr(&mut w, acceptor);
        w.finish()
    }

    /// Exactly [`AUTH_LEN`] bytes, or NeedMore / Invalid.
    pub fn decode(bytes: &[u8]) -> Result<Auth, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(AUTH_MAGIC)?;
        let version = r.u16()?;
        if version != AUTH_VERSION {
            return invalid(format!(
                "authentication version {version}, expected {AUTH_VERSION}"
            ));
        }
        let kind = match r.u8()? {
            1 => AuthKind::Challenge,
            2 => AuthKind::Answer,
            3 => AuthKind::Proof,
            k => return invalid(format!("unknown authentication message kind {k}")),
        };
        if r.u8()? != 0 {
            return invalid("nonzero reserved byte in an authentication message");
        }
        let mut nonce = [0u8; AUTH_NONCE_LEN];
        nonce.copy_from_slice(r.bytes(AUTH_NONCE_LEN)?);
        let mut mac = [0u8; AUTH_NONCE_LEN];
        mac.copy_from_slice(r.bytes(AUTH_NONCE_LEN)?);
        let dialer = get_addr(&mut r)?;
        let acceptor = get_addr(&mut r)?;
        if r.remaining() != 0 {
            return invalid(format!(
                "authentication message of {} bytes, expected {AUTH_LEN}",
                bytes.len()
            ));
        }
        Ok(Auth {
            kind,
            nonce,
            mac,
            dialer,
            acceptor,
        })
    }
}

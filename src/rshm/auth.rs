//! Who may join a group: every node holds the same cluster secret, and every TCP connection
//! proves, in both directions, that the other end knows it, before anything else is sent.
//!
//! An address proves nothing on a shared machine: on 127.0.0.1 every local user can connect
//! from the "right" IP and name a configured peer in a HELLO. So, as Erlang's distribution
//! does with its cookie, the nodes of one group share a secret file, and each connection opens
//! with a challenge-response on fresh random nonces (the three messages and their bytes are in
//! [`crate::wire::rshm`], "Authentication"):
//!
//! ```text
//!   dialer:   CHALLENGE(nonce_d)                 -> acceptor
//!   acceptor: ANSWER(nonce_a, mac_a)             -> dialer     checks mac_a, else hangs up
//!   dialer:   PROOF(mac_d)                       -> acceptor   checks mac_d, else hangs up
//! ```
//!
//! Both MACs are HMAC-SHA256 under the secret ([`crate::hmac`]) over both nonces and both
//! names (who dialled, and whom), with a different label per direction. The secret never
//! crosses the wire; a MAC is checked with a constant-time compare. Authentication costs one
//! extra round trip per *connection*, never anything per frame.
//!
//! # Why the names are in the MACs
//! Nonces alone prove only that *someone* at the other end of the exchange knows the secret,
//! not that it is the end we talk to. A stranger can sit in the middle: when a configured peer
//! C is down, the stranger listens on C's port; B dials it, and the stranger dials A and passes
//! every message on, both ways. Both MACs check out (A and B made them), and A would then send
//! its table and contents to the stranger. So the dialer says whom it dialled (`ends`), the
//! acceptor refuses a connection meant for another node before it answers anything, and both
//! MACs cover the names, so a stranger who rewrites them breaks the MACs. The HELLO that
//! follows must name the dialer that authenticated ([`super::server`]'s `hello::answer`).
//!
//! # What this protects, and what not
//! - It decides who may join and write: a process that does not know the secret gets no table,
//!   no contents, and changes nothing. Two users' groups on one machine never merge, whatever
//!   ports they pick, because their secrets differ.
//! - It does not encrypt: the bytes of every segment cross the network in clear, and someone
//!   who can rewrite packets on the path (not just connect) could alter frames after the
//!   handshake. On an untrusted network, run the group over a VPN or an SSH tunnel.
//!
//! # The secret file
//! `--secret FILE`, or by default `~/.config/ipclab/rshm-secret`, created (with its directory)
//! on first use, mode 0600, holding 32 random bytes from `/dev/urandom` written in hex. The
//! secret is the file's bytes without trailing white space. A file that group or others may
//! read or write, or that belongs to another user, is refused: anyone who can read it can
//! join. To run one group across two machines, copy the same file to each (`scp -p`, keeping
//! mode 0600).

use crate::hmac::{ct_eq, hmac_sha256};
use crate::params::{RSHM_SECRET_DEFAULT, RSHM_SECRET_MIN};
use crate::wire::rshm::{Auth, AuthKind, AUTH_LEN, AUTH_NONCE_LEN};
use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The cluster secret, as read from its file. `Debug` does not print it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The label in the acceptor's MAC and in the dialer's: distinct, so that a MAC made by one
/// side can never pass for the other side's.
const ACCEPTOR_LABEL: &[u8] = b"ipclab rshm acceptor";
const DIALER_LABEL: &[u8] = b"ipclab rshm dialer";

impl Secret {
    /// A secret from bytes (tests, and [`Secret::load`]).
    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// The default file: `$HOME/.config/ipclab/rshm-secret`.
    pub fn default_path() -> io::Result<PathBuf> {
        match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(RSHM_SECRET_DEFAULT)),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "HOME is not set: give the cluster secret with --secret FILE",
            )),
        }
    }

    /// Reads the secret from `path`, after checking that only its owner, who must be us, can
    /// read or write it. With `create`, a missing file is made first (see the module header).
    /// Returns the secret and whether it was just created.
    pub fn load(path: &Path, create: bool) -> io::Result<(Secret, bool)> {
        let named = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
        };
        let mut made = false;
        if create && !path.exists() {
            if let Some(dir) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| named(e, "creating the directory of"))?;
            }
            let mut bytes = [0u8; 32];
            random_bytes(&mut bytes)?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            // create_new: if another server made it a moment ago, we use theirs below.
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{hex}\n").as_bytes())
                        .map_err(|e| named(e, "writing"))?;
                    made = true;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(named(e, "creating")),
            }
        }
        let mut f = fs::File::open(path).map_err(|e| named(e, "opening"))?;
        // Checked on the open file, not the path: nobody can swap the file in between.
        let meta = f.metadata().map_err(|e| named(e, "stat"))?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the secret file {} has mode {mode:04o}: group or others may read it, so they could join the group; run: chmod 600 {}",
                    path.display(),
                    path.display()
                ),
            ));
        }
        let me = euid()?;
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the secret file {} belongs to uid {}, not to us (uid {me})",
                    path.display(),
                    meta.uid()
                ),
            ));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut f)
            .take(4096)
            .read_to_end(&mut bytes)
            .map_err(|e| named(e, "reading"))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        if bytes.len() < RSHM_SECRET_MIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the secret file {} holds {} bytes; at least {RSHM_SECRET_MIN} are needed",
                    path.display(),
                    bytes.len()
                ),
            ));
        }
        Ok((Secret(bytes), made))
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8], ends: Ends) -> [u8; AUTH_NONCE_LEN] {
        hmac_sha256(
            &self.0,
            &[
                label,
                first,
                second,
                &Auth::names(ends.dialer, ends.acceptor),
            ],
        )
    }
}

/// Who talks to whom on one connection: the dialer's name (its listen address) and the name
/// of the node it dialled (its `--peer`, the acceptor's listen address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    pub dialer: SocketAddrV4,
    pub acceptor: SocketAddrV4,
}

/// Our effective uid, without a system call of our own: `/proc/self` belongs to it.
pub fn euid() -> io::Result<u32> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| io::Error::new(e.kind(), format!("stat /proc/self: {e}")))
}

/// Fills `buf` from `/dev/urandom`: the kernel's random bytes, unpredictable to other users.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| io::Error::new(e.kind(), format!("reading /dev/urandom: {e}")))
}

/// Why a handshake failed: the other end does not know the secret (or is not an rshm_server
/// at all), or the connection broke.
#[derive(Debug)]
pub enum AuthError {
    /// A well-formed exchange whose MAC was wrong: the other end has another secret.
    WrongSecret,
    /// Bytes that are not an authentication message of the expected kind.
    Garbage(String),
    /// The dialer meant another node, or the names changed on the way: a relay, or a `--peer`
    /// that names another node than this one.
    Misdirected(String),
    /// The socket failed, closed, or timed out.
    Io(io::Error),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::WrongSecret => write!(
                f,
                "authentication failed: it does not know our cluster secret"
            ),
            AuthError::Garbage(why) | AuthError::Misdirected(why) => {
                write!(f, "authentication failed: {why}")
            }
            // read_exact's own text for a close ("failed to fill whole buffer") says nothing
            // to a student: say who did what.
            AuthError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => write!(
                f,
                "authentication did not finish: the other end closed the connection"
            ),
            AuthError::Io(e) => write!(f, "authentication did not finish: {e}"),
        }
    }
}

impl From<AuthError> for io::Error {
    fn from(e: AuthError) -> io::Error {
        match e {
            AuthError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        }
    }
}

fn read_auth(s: &mut impl Read, want: AuthKind) -> Result<Auth, AuthError> {
    let mut buf = [0u8; AUTH_LEN];
    s.read_exact(&mut buf).map_err(AuthError::Io)?;
    let m = Auth::decode(&buf).map_err(|e| AuthError::Garbage(e.to_string()))?;
    if m.kind != want {
        return Err(AuthError::Garbage(format!(
            "expected {want:?}, got {:?}",
            m.kind
        )));
    }
    Ok(m)
}

fn nonce() -> Result<[u8; AUTH_NONCE_LEN], AuthError> {
    let mut n = [0u8; AUTH_NONCE_LEN];
    random_bytes(&mut n).map_err(AuthError::Io)?;
    Ok(n)
}

/// The dialer's side: challenge, check the acceptor's answer, prove ourselves. On `Ok` both
/// ends know the other has the secret, and that the other means this connection.
pub fn dial(s: &mut (impl Read + Write), secret: &Secret, ends: Ends) -> Result<(), AuthError> {
    let mine = nonce()?;
    let message = |kind, nonce, mac| Auth {
        kind,
        nonce,
        mac,
        dialer: ends.dialer,
        acceptor: ends.acceptor,
    };
    let challenge = message(AuthKind::Challenge, mine, [0; AUTH_NONCE_LEN]);
    s.write_all(&challenge.encode()).map_err(AuthError::Io)?;
    let answer = read_auth(s, AuthKind::Answer)?;
    same_ends(&answer, ends)?;
    let expected = secret.mac(ACCEPTOR_LABEL, &mine, &answer.nonce, ends);
    if !ct_eq(&expected, &answer.mac) {
        return Err(AuthError::WrongSecret);
    }
    let mac = secret.mac(DIALER_LABEL, &answer.nonce, &mine, ends);
    let proof = message(AuthKind::Proof, [0; AUTH_NONCE_LEN], mac);
    s.write_all(&proof.encode()).map_err(AuthError::Io)
}

/// The acceptor's side (`me` is our listen address): check that the dialer meant us, answer
/// the challenge, then check the dialer's proof. Nothing but the answer (a nonce and a MAC,
/// useless without the secret) is sent before the proof checks out. Returns the dialer's
/// name, which its HELLO must give.
pub fn accept(
    s: &mut (impl Read + Write),
    secret: &Secret,
    me: SocketAddrV4,
) -> Result<SocketAddrV4, AuthError> {
    let challenge = read_auth(s, AuthKind::Challenge)?;
    let ends = Ends {
        dialer: challenge.dialer,
        acceptor: challenge.acceptor,
    };
    // Before we answer anything: a connection meant for another node is a relay's.
    if ends.acceptor != me {
        return Err(AuthError::Misdirected(format!(
            "it dialled {}, not this node ({me}): a relay, or a --peer naming another node",
            ends.acceptor
        )));
    }
    let mine = nonce()?;
    let answer = Auth {
        kind: AuthKind::Answer,
        nonce: mine,
        mac: secret.mac(ACCEPTOR_LABEL, &challenge.nonce, &mine, ends),
        dialer: ends.dialer,
        acceptor: ends.acceptor,
    };
    s.write_all(&answer.encode()).map_err(AuthError::Io)?;
    let proof = read_auth(s, AuthKind::Proof)?;
    same_ends(&proof, ends)?;
    let expected = secret.mac(DIALER_LABEL, &mine, &challenge.nonce, ends);
    if !ct_eq(&expected, &proof.mac) {
        return Err(AuthError::WrongSecret);
    }
    Ok(ends.dialer)
}

/// The names in a later message must be those of the challenge. (The MACs would catch a change
/// too; this says what happened instead of "wrong secret".)
fn same_ends(m: &Auth, ends: Ends) -> Result<(), AuthError> {
    if m.dialer == ends.dialer && m.acceptor == ends.acceptor {
        return Ok(());
    }
    Err(AuthError::Misdirected(format!(
        "the names changed on the way: {} -> {} in the {:?}, {} -> {} before",
        m.dialer, m.acceptor, m.kind, ends.dialer, ends.acceptor
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    const DIALER: &str = "127.0.0.1:7001";

    /// A dialer with secret `a`, which names its acceptor `dialled`, against an acceptor with
    /// secret `b` (named by its real address).
    fn pair_to(
        a: &Secret,
        b: &Secret,
        dialled: Option<SocketAddrV4>,
    ) -> (Result<(), AuthError>, Result<SocketAddrV4, AuthError>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(me) = l.local_addr().unwrap() else {
            unreachable!()
        };
        let b = b.clone();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            accept(&mut s, &b, me)
        });
        let mut s = TcpStream::connect(me).unwrap();
        let ends = Ends {
            dialer: DIALER.parse().unwrap(),
            acceptor: dialled.unwrap_or(me),
        };
        let d = dial(&mut s, a, ends);
        drop(s);
        (d, t.join().unwrap())
    }

    fn pair(a: &Secret, b: &Secret) -> (Result<(), AuthError>, Result<SocketAddrV4, AuthError>) {
        pair_to(a, b, None)
    }

    #[test]
    fn a_connection_meant_for_another_node_is_refused_before_any_answer() {
        let s = Secret::new(b"0123456789abcdef-one");
        let (d, a) = pair_to(&s, &s, Some("127.0.0.1:9".parse().unwrap()));
        assert!(matches!(a, Err(AuthError::Misdirected(_))), "{a:?}");
        assert!(a
            .unwrap_err()
            .to_string()
            .contains("it dialled 127.0.0.1:9"));
        // The dialer got nothing back: no nonce, no MAC.
        assert!(matches!(d, Err(AuthError::Io(_))), "{d:?}");
    }

    #[test]
    fn each_mac_covers_both_names() {
        let s = Secret::new(b"0123456789abcdef-one");
        let n = [7u8; AUTH_NONCE_LEN];
        let e = Ends {
            dialer: "127.0.0.1:7001".parse().unwrap(),
            acceptor: "127.0.0.1:7002".parse().unwrap(),
        };
        let swapped = Ends {
            dialer: e.acceptor,
            acceptor: e.dialer,
        };
        let mac = |ends| s.mac(DIALER_LABEL, &n, &n, ends);
        assert_ne!(mac(e), mac(swapped));
        assert_ne!(s.mac(ACCEPTOR_LABEL, &n, &n, e), mac(e));
    }

    #[test]
    fn the_same_secret_passes_both_ways_and_another_fails_both_ways() {
        let s1 = Secret::new(b"0123456789abcdef-one");
        let s2 = Secret::new(b"0123456789abcdef-two");
        let (d, a) = pair(&s1, &s1);
        assert!(d.is_ok(), "{d:?}");
        assert_eq!(a.unwrap(), DIALER.parse().unwrap(), "the dialer's name");
        // The dialer finds out first (from the answer's MAC) and hangs up without a proof.
        let (d, a) = pair(&s1, &s2);
        assert!(matches!(d, Err(AuthError::WrongSecret)), "{d:?}");
        assert!(matches!(a, Err(AuthError::Io(_))), "{a:?}");
    }

    #[test]
    fn secret_files_are_made_private_and_others_refused() {
        let dir = crate::testutil::TempDir::new("rshm-secret");
        let path = dir.path().join("sub/dir/secret");
        let (s, made) = Secret::load(&path, true).unwrap();
        assert!(made);
        assert_eq!(s.0.len(), 64, "32 random bytes in hex");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let (again, made) = Secret::load(&path, true).unwrap();
        assert!(!made);
        assert_eq!(again.0, s.0);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = Secret::load(&path, true).unwrap_err().to_string();
        assert!(
            e.contains("has mode 0640") && e.contains("chmod 600"),
            "{e}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "short\n").unwrap();
        let e = Secret::load(&path, false).unwrap_err().to_string();
        assert!(e.contains("at least"), "{e}");
        let missing = dir.path().join("none");
        assert!(Secret::load(&missing, false).is_err());
    }
}

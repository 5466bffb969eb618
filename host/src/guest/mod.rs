//! Reaching a guest vsock port from the host: kernel AF_VSOCK by CID, the
//! hybrid-vsock unix socket (`CONNECT <port>` handshake), or a plain unix
//! socket. Every host-side connection to the guest is opened here, and
//! proves it holds the VM's secret first when one is known, after the guest
//! has proved it (the secret itself never travels).
//!
//! The modules below are the connections built on it: the engine socket
//! (`bridge`; `build` hands its BuildKit connections to skiff-buildkit),
//! published ports (`ports`, `forward`, `udp`), the control port
//! (`control`), and the record that tells other terminals how to connect.

pub mod backoff;
pub mod bridge;
pub mod build;
pub mod control;
pub mod events;
pub mod forward;
pub mod link;
pub mod ports;
pub mod record;
pub mod relay;
pub mod udp;


use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_proto::auth::{self, Secret};
use skiff_proto::hybrid;
use vsock::VsockStream;

pub use link::Link;

/// How long a hybrid-vsock backend may take to answer `CONNECT`: it
/// answers at once when the guest accepts or refuses, so only a wedged
/// backend (or guest) takes this long.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(15);

/// The file beside a hybrid-vsock socket that says the VM is paused, so
/// every skiff process (`skiff shell` and `logs` from another terminal
/// too) holds its connections back, not only `skiff run`.
pub fn pause_marker(hybrid: &Path) -> PathBuf {
    hybrid.with_file_name("paused")
}

/// Where the guest's port is reached.
#[derive(Clone, Debug)]
pub enum Addr {
    /// Kernel AF_VSOCK to a guest context id.
    Cid(u32),
    /// A hybrid-vsock unix socket (`CONNECT <port>` handshake).
    Uds(PathBuf),
    /// A plain unix socket, passed through as is (chaining, and measuring
    /// this copy loop against other relays in `make bench`).
    Unix(PathBuf),
}

/// A guest: where it is, the secret its connections present, and the
/// state they share ([`Link`]; clones of a target share it).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: Addr,
    /// Proved on every connection (`skiff_proto::auth`); `None` for a
    /// guest given no secret.
    pub secret: Option<Secret>,
    pub link: Link,
}

impl Target {
    pub fn new(addr: Addr) -> Target {
        Target::with_secret(addr, None)
    }

    pub fn with_secret(addr: Addr, secret: Option<Secret>) -> Target {
        Target { addr, secret, link: Link::default() }
    }

    /// The VM stopped or resumed (QEMU's STOP and RESUME events). While it
    /// is stopped no connection is opened: the caller is told at once that
    /// the VM is paused, instead of waiting for an answer that comes only
    /// after the resume (the vsock device keeps such a connection until
    /// then). On hybrid vsock, the [`pause_marker`] tells other processes.
    pub fn set_paused(&self, paused: bool) {
        if let Addr::Uds(hybrid) = &self.addr {
            let m = pause_marker(hybrid);
            let done = if paused { crate::state::file::write(&m, b"QEMU has the VM stopped\n") } else { std::fs::remove_file(&m) };
            if let Err(e) = done.or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
                eprintln!("skiff: {}: {e}", m.display());
            }
        }
        self.link.set_paused(paused);
    }

    /// True if this process saw the VM stop, or another left the marker.
    fn is_paused(&self) -> bool {
        self.link.paused() || matches!(&self.addr, Addr::Uds(p) if pause_marker(p).exists())
    }

    /// Where connections go, for messages.
    pub fn describe(&self, port: u32) -> String {
        match &self.addr {
            Addr::Cid(cid) => format!("vsock cid {cid} port {port}"),
            Addr::Uds(path) => format!("hybrid vsock {} port {port}", path.display()),
            Addr::Unix(path) => format!("unix socket {}", path.display()),
        }
    }

    /// Opens a connection to guest `port`: handshakes done (with a secret,
    /// the guest and this host have proved they hold it); nothing else sent
    /// yet. A plain unix socket is
    /// either another relay, which authenticates itself (no secret given),
    /// or a hypervisor's socket for the guest port (vfkit), which needs the
    /// secret like any other way in.
    pub fn connect(&self, port: u32) -> io::Result<Conn> {
        if self.is_paused() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the VM is paused (QEMU stop); it is reached again once it resumes"));
        }
        let mut conn = match &self.addr {
            Addr::Cid(cid) => Conn::Vsock(VsockStream::connect_with_cid_port(*cid, port)?),
            Addr::Uds(path) => Conn::Unix(connect_hybrid(path, port, HANDSHAKE_LIMIT)?),
            Addr::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
        };
        if let Some(secret) = &self.secret {
            authenticate(&mut conn, &self.link.current(secret), HANDSHAKE_LIMIT)?;
        }
        Ok(conn)
    }

    /// True where a host half-close would close the guest socket entirely,
    /// so EOF must travel in-band (see `skiff_proto::framing`).
    pub fn needs_framing(&self) -> bool {
        matches!(self.addr, Addr::Uds(_))
    }
}

/// Proves to the guest that this host holds `secret`, once the guest has
/// proved it first (`skiff_proto::auth`): a peer at the guest's address that
/// does not hold it gets a random nonce and nothing else. A guest that does
/// not answer within `limit` is a timeout.
fn authenticate(conn: &mut Conn, secret: &Secret, limit: Duration) -> io::Result<()> {
    conn.set_read_timeout(Some(limit))?;
    auth::authenticate(conn, secret, &auth::nonce()?).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("the guest did not answer the SKIFF-AUTH/2 handshake within {limit:?}"))
        }
        _ => e,
    })?;
    conn.set_read_timeout(None)
}

/// Connects to a hybrid-vsock socket and does the handshake. A backend
/// that accepted but never answers must not hold the connection (and its
/// caller) forever: after `limit` it is a timeout.
fn connect_hybrid(path: &Path, port: u32, limit: Duration) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e} (is the VM running?)", path.display())))?;
    s.set_read_timeout(Some(limit))?;
    hybrid::handshake(&mut s, port).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: no answer to CONNECT {port} within {limit:?}", path.display()),
        ),
        _ => e,
    })?;
    s.set_read_timeout(None)?;
    Ok(s)
}

/// A bidirectional byte stream to the guest.
pub enum Conn {
    Vsock(VsockStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Vsock(s) => Conn::Vsock(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Vsock(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Vsock(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Vsock(s) => s.shutdown(how),
            Conn::Unix(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Vsock(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A guest stand-in on a plain unix socket: answers the challenge with
    /// `secret`, then keeps what it receives until the host closes.
    fn fake_guest(listener: UnixListener, secret: Secret) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = [0u8; auth::LINE_LEN];
            s.read_exact(&mut line).unwrap();
            let host = auth::parse_challenge(&line).unwrap();
            s.write_all(&auth::answer(&secret, &host, &[5; auth::NONCE_LEN])).unwrap();
            let mut got = line.to_vec();
            let _ = s.read_to_end(&mut got);
            got
        })
    }

    #[test]
    fn a_peer_without_the_secret_gets_no_secret_nor_any_proof_and_the_host_stops() {
        let path = crate::testutil::SocketPath::new("guest-impostor", "guest.sock");
        let secret = Secret::from_bytes([7; auth::SECRET_LEN]);
        let target = Target::with_secret(Addr::Unix(path.to_path_buf()), Some(secret.clone()));
        // One that guesses a secret, and one that answers garbage.
        let impostor = fake_guest(UnixListener::bind(&path).unwrap(), Secret::from_bytes([8; auth::SECRET_LEN]));
        let e = target.connect(2375).err().expect("the host went on with a peer that proved nothing");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let got = impostor.join().unwrap();
        assert_eq!(got.len(), auth::LINE_LEN, "the impostor got more than the challenge: {:?}", String::from_utf8_lossy(&got));
        assert!(auth::parse_challenge(&got).is_ok());
        assert!(!String::from_utf8_lossy(&got).contains(&secret.to_hex()[..16]));
        std::fs::remove_file(&path).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        let garbage = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"SKIFF-AUTH/2 hello\n").unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        });
        assert_eq!(target.connect(2376).err().map(|e| e.kind()), Some(io::ErrorKind::PermissionDenied));
        assert_eq!(garbage.join().unwrap().len(), auth::LINE_LEN, "only the challenge");
    }

    #[test]
    fn a_plain_unix_socket_gets_the_handshake_when_a_secret_is_given() {
        let path = crate::testutil::SocketPath::new("guest-unix-secret", "guest.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let secret = Secret::from_bytes([7; auth::SECRET_LEN]);
        let target = Target::with_secret(Addr::Unix(path.to_path_buf()), Some(secret.clone()));
        let guest = fake_guest(listener.try_clone().unwrap(), secret.clone());
        let mut conn = target.connect(2375).unwrap();
        conn.write_all(b"GET /_ping").unwrap();
        drop(conn);
        let got = guest.join().unwrap();
        let (line, rest) = got.split_at(auth::LINE_LEN);
        let (proof, request) = rest.split_at(auth::PROOF_LEN);
        let host = auth::parse_challenge(line).unwrap();
        assert_eq!(auth::check_proof(proof, &secret, &host, &[5; auth::NONCE_LEN]), Ok(()), "vfkit's socket for the guest port needs the proof");
        assert_eq!(request, b"GET /_ping");
        drop(Target::new(Addr::Unix(path.to_path_buf())).connect(2375).unwrap());
        let mut got = Vec::new();
        listener.accept().unwrap().0.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "another relay gets nothing without a secret");
    }

    #[test]
    fn pausing_one_vm_leaves_another_in_the_same_process_reachable() {
        let path = crate::testutil::SocketPath::new("guest-two-vms", "b.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let a = Target::new(Addr::Unix(path.parent().unwrap().join("a.sock")));
        let b = Target::new(Addr::Unix(path.to_path_buf()));
        a.set_paused(true);
        assert_eq!(a.clone().connect(2375).err().map(|e| e.kind()), Some(io::ErrorKind::NotConnected), "a clone shares the pause");
        assert!(b.connect(2375).is_ok(), "VM b was held back by VM a's pause");
        drop(listener.accept().unwrap());
        a.set_paused(false);
        assert!(!b.link.paused_within(Duration::from_secs(60)), "VM b saw VM a resume");
    }

    #[test]
    fn a_backend_that_never_answers_times_out() {
        let path = crate::testutil::SocketPath::new("guest-silent", "hv.sock");
        // Accepted by the kernel's backlog, never answered.
        let _listener = UnixListener::bind(&path).unwrap();
        let e = connect_hybrid(&path, 2375, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("no answer to CONNECT 2375"), "{e}");
    }

    #[test]
    fn the_handshake_clears_its_timeout() {
        let path = crate::testutil::SocketPath::new("guest-answers", "hv.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let backend = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 13];
            s.read_exact(&mut req).unwrap();
            s.write_all(b"OK 1024\n").unwrap();
            s
        });
        let s = connect_hybrid(&path, 2375, Duration::from_millis(200)).unwrap();
        assert_eq!(s.read_timeout().unwrap(), None);
        drop(backend.join().unwrap());
    }
}

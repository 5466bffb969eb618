//! Reaching a guest vsock port from the host: kernel AF_VSOCK by CID, the
//! hybrid-vsock unix socket (`CONNECT <port>` handshake), or a plain unix
//! socket. Every host-side connection to the guest is opened here, and
//! presents the VM's secret first when one is known.
//!
//! The modules below are the connections built on it: the engine socket
//! (`bridge`; `build` hands its BuildKit connections to skiff-buildkit),
//! published ports (`ports`, `forward`, `udp`), the control port
//! (`control`), and the record that tells other terminals how to connect.

pub mod bridge;
pub mod build;
pub mod control;
pub mod forward;
pub mod ports;
pub mod record;
pub mod relay;
pub mod udp;


use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_proto::auth::Secret;
use skiff_proto::hybrid;
use vsock::VsockStream;

/// How long a hybrid-vsock backend may take to answer `CONNECT`: it
/// answers at once when the guest accepts or refuses, so only a wedged
/// backend (or guest) takes this long.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(15);

/// False while this process holds connections to the guest back.
static OPEN: AtomicBool = AtomicBool::new(true);

/// Refuses connections to the guest until [`release_connections`]: `skiff
/// run` holds them from QEMU's start until the guest's init runs. A
/// connection that reaches vhost-device-vsock (0.3.0) after QEMU gave it
/// the guest's memory but before the queues are ready ends the device's
/// only worker thread ("queue not ready" from its event handler), and no
/// connection is ever served again: the "engine ready but unreachable"
/// boots, about one in fifty here. The guest's kernel has set the device up
/// before it starts init.
pub fn hold_connections() {
    OPEN.store(false, Ordering::SeqCst);
}

/// Lets connections to the guest through again.
pub fn release_connections() {
    OPEN.store(true, Ordering::SeqCst);
}

/// True while QEMU has the VM stopped (QMP `stop`, a debugger); when it
/// last resumed otherwise.
static PAUSED: Mutex<(bool, Option<Instant>)> = Mutex::new((false, None));

/// The VM stopped or resumed (QEMU's STOP and RESUME events). While it is
/// stopped no connection is opened: vhost-device-vsock 0.3.0 loses its
/// worker thread to a connection while the device's queues are stopped, as
/// it does during boot (see [`hold_connections`]), and never serves again.
pub fn set_paused(paused: bool) {
    let mut p = PAUSED.lock().unwrap_or_else(|e| e.into_inner());
    if p.0 && !paused {
        p.1 = Some(Instant::now());
    }
    p.0 = paused;
}

/// True if the VM is stopped, or resumed less than `within` ago: silence
/// from the guest over that time says nothing about the guest.
pub fn paused_within(within: Duration) -> bool {
    let p = PAUSED.lock().unwrap_or_else(|e| e.into_inner());
    p.0 || p.1.is_some_and(|at| at.elapsed() < within)
}

fn is_paused() -> bool {
    PAUSED.lock().unwrap_or_else(|e| e.into_inner()).0
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

/// A guest: where it is, and the secret its connections present.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: Addr,
    /// Sent as the auth line on every connection (`skiff_proto::auth`);
    /// `None` for a guest given no secret.
    pub secret: Option<Secret>,
}

impl Target {
    pub fn new(addr: Addr) -> Target {
        Target { addr, secret: None }
    }

    /// Where connections go, for messages.
    pub fn describe(&self, port: u32) -> String {
        match &self.addr {
            Addr::Cid(cid) => format!("vsock cid {cid} port {port}"),
            Addr::Uds(path) => format!("hybrid vsock {} port {port}", path.display()),
            Addr::Unix(path) => format!("unix socket {}", path.display()),
        }
    }

    /// Opens a connection to guest `port`: handshake done and the auth line
    /// sent (with a secret); nothing else sent yet. A plain unix socket is
    /// either another relay, which authenticates itself (no secret given),
    /// or a hypervisor's socket for the guest port (vfkit), which needs the
    /// secret like any other way in.
    pub fn connect(&self, port: u32) -> io::Result<Conn> {
        if !OPEN.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the VM is still starting; try again in a moment"));
        }
        if is_paused() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "the VM is paused (QEMU stop); it is reached again once it resumes"));
        }
        let mut conn = match &self.addr {
            Addr::Cid(cid) => Conn::Vsock(VsockStream::connect_with_cid_port(*cid, port)?),
            Addr::Uds(path) => Conn::Unix(connect_hybrid(path, port, HANDSHAKE_LIMIT)?),
            Addr::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
        };
        if let Some(secret) = &self.secret {
            conn.write_all(&secret.line())?;
        }
        Ok(conn)
    }

    /// True where a host half-close would close the guest socket entirely,
    /// so EOF must travel in-band (see `skiff_proto::framing`).
    pub fn needs_framing(&self) -> bool {
        matches!(self.addr, Addr::Uds(_))
    }
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

    #[test]
    fn a_plain_unix_socket_gets_the_secret_when_one_is_given() {
        use skiff_proto::auth::{Secret, SECRET_LEN};
        let path = crate::testutil::SocketPath::new("guest-unix-secret", "guest.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let secret = Secret::from_bytes([7; SECRET_LEN]);
        let target = Target { addr: Addr::Unix(path.to_path_buf()), secret: Some(secret.clone()) };
        drop(target.connect(2375).unwrap());
        let mut got = Vec::new();
        listener.accept().unwrap().0.read_to_end(&mut got).unwrap();
        assert_eq!(got, secret.line(), "vfkit's socket for the guest port needs the secret");
        drop(Target::new(Addr::Unix(path.to_path_buf())).connect(2375).unwrap());
        let mut got = Vec::new();
        listener.accept().unwrap().0.read_to_end(&mut got).unwrap();
        assert!(got.is_empty(), "another relay gets nothing without a secret");
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

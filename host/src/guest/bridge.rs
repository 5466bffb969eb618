//! The host side of the engine socket: a local unix socket whose every
//! connection is carried to the guest's vsock port.
//!
//! Kernel AF_VSOCK keeps half-close, so it is plain pass-through. On hybrid
//! vsock (vhost-device-vsock, Firecracker, Cloud Hypervisor) a host-side
//! half-close would close the guest socket entirely, so the client's EOF is
//! sent in-band as a zero-length frame instead (see `skiff_proto::framing`).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use skiff_proto::copy::copy;
use skiff_proto::framing;

use crate::guest::build;
pub use crate::guest::{Addr, Conn, Target};
use crate::threads;

/// While set, failed guest connections are not reported (`skiff run` polls
/// the engine through the bridge while the guest is still booting).
pub static QUIET: AtomicBool = AtomicBool::new(false);

/// The last guest connection error kept back while [`QUIET`], so a start
/// that times out can say why the engine could not be reached.
static QUIET_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Takes the last error kept back while [`QUIET`].
pub fn take_quiet_error() -> Option<String> {
    QUIET_ERROR.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Binds `listen` (replacing a stale socket file), owner-only.
pub fn bind(listen: &Path) -> io::Result<UnixListener> {
    match fs::remove_file(listen) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(listen)?;
    fs::set_permissions(listen, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections forever, one thread pair per connection. With a
/// `builder` socket, BuildKit's upgrades go there (see [`build`]).
pub fn serve(listener: UnixListener, target: Target, port: u32, builder: Option<PathBuf>) -> io::Result<()> {
    for client in listener.incoming() {
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skiff: accept failed: {e}");
                continue;
            }
        };
        let target = target.clone();
        let builder = builder.clone();
        let started = threads::spawn("engine connection", move || {
            if let Err(e) = handle(client, &target, port, builder.as_deref()) {
                // A reset or broken pipe is how either side hangs up early.
                let teardown = matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe);
                let what = format!("{}: {e}", target.describe(port));
                if QUIET.load(Ordering::Relaxed) {
                    *QUIET_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
                } else if !teardown {
                    eprintln!("skiff: {what}");
                }
            }
        });
        // The client's connection closes with the refused thread's closure.
        if let Err(e) = started {
            eprintln!("skiff: {e}");
        }
    }
    Ok(())
}

fn handle(mut client: UnixStream, target: &Target, port: u32, builder: Option<&Path>) -> io::Result<()> {
    let Some(builder) = builder else {
        let guest = target.connect(port)?;
        return relay(client, guest, target.needs_framing());
    };
    let (head, route) = build::peek(&mut client)?;
    if route == build::Route::Builder {
        return build::relay(client, &head, builder).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", build::HELPER)));
    }
    let guest = target.connect(port)?;
    relay_after(client, &head, guest, target.needs_framing())
}

/// A local client connection the relay can split and half-close.
pub trait Client: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Client for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

impl Client for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

/// Relays `client` to an open guest connection both ways, carrying the
/// client's EOF in-band when `framed` (after sending the preamble) or as a
/// half-close otherwise.
pub fn relay<C: Client>(client: C, guest: Conn, framed: bool) -> io::Result<()> {
    relay_after(client, &[], guest, framed)
}

/// [`relay`], sending `head` (bytes already read from the client) first.
pub fn relay_after<C: Client>(client: C, head: &[u8], mut guest: Conn, framed: bool) -> io::Result<()> {
    let guest_rd = guest.try_clone()?;
    if framed {
        guest.write_all(framing::PREAMBLE)?;
        let mut guest = Framed(guest);
        if !head.is_empty() {
            guest.write_all(head)?;
        }
        pump(client, guest_rd, guest, |w| w.0.write_all(&framing::EOF_FRAME))
    } else {
        guest.write_all(head)?;
        pump(client, guest_rd, guest, |w| w.shutdown(Shutdown::Write))
    }
}

/// Copies client → guest (ending with `eof`) and guest → client (ending
/// with a half-close of the client), until both directions are done.
pub(crate) fn pump<C, R, W, F>(client: C, mut guest_rd: R, mut guest_wr: W, eof: F) -> io::Result<()>
where
    C: Client,
    R: Read + Send + 'static,
    W: Write,
    F: FnOnce(&mut W) -> io::Result<()>,
{
    let mut client_wr = client.try_clone()?;
    let back = threads::spawn("relay", move || {
        let r = copy(&mut guest_rd, &mut client_wr);
        let _ = client_wr.shutdown(Shutdown::Write);
        r
    })?;
    let mut client_rd = client;
    let sent = copy(&mut client_rd, &mut guest_wr).and_then(|_| eof(&mut guest_wr));
    let got = back.join().map_err(|_| io::Error::other("copy thread panicked"))?;
    sent.and(got).map(|_| ())
}

/// A writer that wraps each write in a frame.
struct Framed(Conn);

impl Write for Framed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut frame = Vec::with_capacity(data.len() + 8);
        framing::encode(data, &mut frame);
        self.0.write_all(&frame)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Pings the engine through a bridge socket.
pub fn ping(sock: &Path) -> io::Result<bool> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    skiff_proto::http::ping(&mut s)
}

//! Serves the engine API on AF_VSOCK: each connection from the host is
//! forwarded to the engine's unix socket, both ways, with half-close kept.
//!
//! A connection that starts with the framing preamble carries the host's EOF
//! in-band (see `skiff_proto::framing`); any other is plain pass-through.

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use skiff_proto::framing::{self, FrameReader, Sniff};
use vsock::{VsockListener, VsockStream, VMADDR_CID_ANY};

/// Set at shutdown: new connections are refused from then on.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Answer sent while the engine socket cannot be reached.
const UNAVAILABLE_BODY: &str = "skiff: the container engine is not running yet (starting or restarting); try again shortly\n";

/// Stops accepting new connections (shutdown's first step).
pub fn stop_accepting() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Listens on vsock `port` in a background thread, forwarding to `engine`.
pub fn spawn_listener(port: u32, engine: &'static str) {
    serve_port(port, "engine API", move |stream| serve(stream, engine));
}

/// Listens on vsock `port` in a background thread and runs `handle` in a
/// thread per connection. Binding is retried (a transport can appear late);
/// it never blocks boot.
pub fn serve_port(port: u32, what: &'static str, handle: impl Fn(VsockStream) + Send + Sync + Copy + 'static) {
    let spawned = thread::Builder::new().name("vsock".into()).spawn(move || {
        let mut delay = Duration::from_millis(200);
        let listener = loop {
            match VsockListener::bind_with_cid_port(VMADDR_CID_ANY, port) {
                Ok(l) => break l,
                Err(e) => {
                    log::error!("vsock: cannot listen on port {port}: {e} (no vsock device?); retrying in {delay:?}");
                    thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        log::info!("vsock: {what} on vsock port {port}");
        for conn in listener.incoming() {
            match conn {
                Ok(_) if STOPPING.load(Ordering::SeqCst) => {} // dropped: closes it
                Ok(stream) => {
                    if let Err(e) = thread::Builder::new().name("vsock-conn".into()).spawn(move || handle(stream)) {
                        log::error!("vsock: cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    log::warn!("vsock: accept failed: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("vsock: cannot start listener thread for port {port}: {e}");
    }
}

/// A connected byte stream the forwarder can split and half-close:
/// AF_VSOCK in the guest, a unix socket in tests (same half-close
/// semantics), and the engine's or a container's socket on the other side.
pub trait Conn: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Conn for VsockStream {
    fn try_clone(&self) -> io::Result<Self> {
        VsockStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        VsockStream::shutdown(self, how)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        VsockStream::set_read_timeout(self, t)
    }
}

impl Conn for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
}

impl Conn for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
}

fn serve(stream: VsockStream, engine: &str) {
    if let Err(e) = forward(stream, engine, crate::engine::is_ready) {
        log::debug!("vsock: connection ended with error: {e}");
    }
}

/// Reads until the first bytes say whether the connection is framed.
fn sniff_mode<C: Conn>(stream: &mut C) -> io::Result<(Sniff, Vec<u8>)> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut first = Vec::with_capacity(framing::PREAMBLE.len());
    let mut buf = [0u8; 64];
    let mode = loop {
        match framing::sniff(&first) {
            Sniff::NeedMore => {}
            decided => break decided,
        }
        let want = framing::PREAMBLE.len() - first.len();
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            break Sniff::Plain;
        }
        first.extend_from_slice(&buf[..n]);
    };
    stream.set_read_timeout(None)?;
    let leftover = if mode == Sniff::Framed { first.split_off(framing::PREAMBLE.len()) } else { first };
    Ok((mode, leftover))
}

/// Forwards one connection; `ready` says whether the engine has answered
/// /_ping since it last started (if not, the client gets a 503).
pub fn forward<C: Conn>(mut vs: C, engine_path: &str, ready: fn() -> bool) -> io::Result<()> {
    let (mode, leftover) = sniff_mode(&mut vs)?;
    if !ready() {
        log::debug!("vsock: engine not ready");
        return refuse(vs);
    }
    let engine = match UnixStream::connect(engine_path) {
        Ok(e) => e,
        Err(e) => {
            log::debug!("vsock: engine socket unavailable: {e}");
            return refuse(vs);
        }
    };
    relay(vs, leftover, mode == Sniff::Framed, engine)
}

/// Relays a host connection `vs` to `target` until both directions are done.
/// `leftover` is host input already read; `framed` says the host's bytes are
/// frames carrying its EOF in-band.
///
/// Target → host: plain bytes. When the target has closed, the exchange is
/// over: close the vsock connection both ways. A half-close alone would
/// leave this connection open forever if the host never sends its EOF
/// (a client that hung up early), and hybrid vsock does not pass a guest
/// half-close on to the host at all. Host → target: at the host's EOF,
/// half-close the target.
pub fn relay<C: Conn, T: Conn>(vs: C, leftover: Vec<u8>, framed: bool, target: T) -> io::Result<()> {
    let mut target_rd = target.try_clone()?;
    let mut vs_wr = vs.try_clone()?;
    // `io::copy`'s 8 KiB writes, not `skiff_proto::copy`'s 256 KiB: with
    // big guest writes vhost-device-vsock stops granting credit and the
    // transfer hangs (rust-vmm/vhost-device#494); small ones keep flowing.
    let back = thread::Builder::new().name("vsock-back".into()).spawn(move || {
        let r = io::copy(&mut target_rd, &mut vs_wr);
        let _ = vs_wr.shutdown(Shutdown::Both);
        r
    })?;
    let mut target_wr = target;
    let input = Cursor::new(leftover).chain(vs);
    let sent = if framed { io::copy(&mut FrameReader::new(input), &mut target_wr) } else { io::copy(&mut { input }, &mut target_wr) };
    let _ = target_wr.shutdown(Shutdown::Write);
    let got = back.join().map_err(|_| io::Error::other("forwarding thread panicked"))?;
    sent?;
    got.map(|_| ())
}

/// Reads one request line (at most `max` bytes, within 10 s) byte by byte,
/// so nothing after it is consumed.
pub fn read_line<C: Conn>(stream: &mut C, max: usize) -> io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let line = skiff_proto::read_line(stream, max)?;
    stream.set_read_timeout(None)?;
    Ok(line)
}

/// Answers 503 and closes.
fn refuse<C: Conn>(mut vs: C) -> io::Result<()> {
    vs.write_all(unavailable_response().as_bytes())?;
    vs.shutdown(Shutdown::Write)?;
    // Drain the unread request briefly: closing with unread input
    // would turn the answer into a connection reset.
    vs.set_read_timeout(Some(Duration::from_secs(1)))?;
    let _ = io::copy(&mut vs, &mut io::sink());
    Ok(())
}

/// The HTTP answer given while the engine is down, instead of a reset.
pub fn unavailable_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UNAVAILABLE_BODY}",
        UNAVAILABLE_BODY.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    /// A stand-in engine: reads its request to EOF (the half-close), then
    /// answers with the byte count and closes.
    fn fake_engine(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("skiff-fwd-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got)).as_bytes()).unwrap();
        });
        path
    }

    /// Runs the forwarder on one end of a socket pair; returns the other end.
    fn connect(engine: &std::path::Path) -> UnixStream {
        connect_with(engine, || true)
    }

    fn connect_with(engine: &std::path::Path, ready: fn() -> bool) -> UnixStream {
        let (host, guest) = UnixStream::pair().unwrap();
        let engine = engine.to_str().unwrap().to_string();
        thread::spawn(move || forward(guest, &engine, ready));
        host
    }

    #[test]
    fn plain_mode_passes_half_close_through() {
        let engine = fake_engine("plain");
        let mut host = connect(&engine);
        host.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        host.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 19 bytes: GET /x HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn framed_mode_carries_eof_in_band() {
        let engine = fake_engine("framed");
        let mut host = connect(&engine);
        let mut wire = framing::PREAMBLE.to_vec();
        framing::encode(b"POST /attach", &mut wire);
        framing::encode(b" stdin", &mut wire);
        wire.extend_from_slice(&framing::EOF_FRAME);
        host.write_all(&wire).unwrap();
        // No shutdown: the EOF frame alone must end the engine's input.
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 18 bytes: POST /attach stdin");
    }

    #[test]
    fn engine_close_ends_the_connection_without_host_eof() {
        // An engine that answers and closes without waiting for more input,
        // and a host that never half-closes: the connection must still end.
        let path = std::env::temp_dir().join(format!("skiff-fwd-eager-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nOK").unwrap();
        });
        let (mut host, guest) = UnixStream::pair().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let engine = path.to_str().unwrap().to_string();
        thread::spawn(move || done_tx.send(forward(guest, &engine, || true).is_ok()));
        host.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
        host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).expect("EOF from the forwarder, not a timeout");
        assert_eq!(reply, "HTTP/1.0 200 OK\r\n\r\nOK");
        // The host still holds its end open and never sent EOF.
        let finished = done.recv_timeout(Duration::from_secs(10));
        assert!(finished.is_ok(), "forwarder still running: the connection leaked");
        drop(host);
    }

    #[test]
    fn engine_down_gives_503() {
        let mut host = connect(std::path::Path::new("/nonexistent/engine.sock"));
        host.write_all(b"GET /_ping HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }

    #[test]
    fn engine_not_ready_gives_503_even_if_its_socket_accepts() {
        let engine = fake_engine("unready");
        let mut host = connect_with(&engine, || false);
        host.write_all(b"GET /_ping HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }

    #[test]
    fn unavailable_is_well_formed_http() {
        let r = unavailable_response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}

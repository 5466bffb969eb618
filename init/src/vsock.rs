//! Serves the engine API on AF_VSOCK: each connection from the host is
//! forwarded to the engine's unix socket, both ways, with half-close kept.
//!
//! A connection that starts with the framing preamble carries the host's EOF
//! in-band (see `skiff_proto::framing`); any other is plain pass-through.

use std::io::{self, Cursor, Read, Write};
use std::net::Shutdown;
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
/// Binding is retried (a transport can appear late); it never blocks boot.
pub fn spawn_listener(port: u32, engine: &'static str) {
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
        log::info!("vsock: engine API on vsock port {port}");
        for conn in listener.incoming() {
            match conn {
                Ok(_) if STOPPING.load(Ordering::SeqCst) => {} // dropped: closes it
                Ok(stream) => {
                    if let Err(e) = thread::Builder::new().name("vsock-conn".into()).spawn(move || serve(stream, engine)) {
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
        log::error!("vsock: cannot start listener thread: {e}");
    }
}

fn serve(stream: VsockStream, engine: &str) {
    if let Err(e) = forward(stream, engine) {
        log::debug!("vsock: connection ended with error: {e}");
    }
}

/// Reads until the first bytes say whether the connection is framed.
fn sniff_mode(stream: &mut VsockStream) -> io::Result<(Sniff, Vec<u8>)> {
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

fn forward(mut vs: VsockStream, engine_path: &str) -> io::Result<()> {
    let (mode, leftover) = sniff_mode(&mut vs)?;
    let engine = match UnixStream::connect(engine_path) {
        Ok(e) => e,
        Err(e) => {
            log::debug!("vsock: engine socket unavailable: {e}");
            vs.write_all(unavailable_response().as_bytes())?;
            return vs.shutdown(Shutdown::Both);
        }
    };
    // Engine → host: plain bytes; at the engine's EOF, half-close towards the host.
    let mut engine_rd = engine.try_clone()?;
    let mut vs_wr = vs.try_clone()?;
    let back = thread::Builder::new().name("vsock-back".into()).spawn(move || {
        let r = io::copy(&mut engine_rd, &mut vs_wr);
        let _ = vs_wr.shutdown(Shutdown::Write);
        r
    })?;
    // Host → engine: framed or plain; at the host's EOF, half-close the engine side.
    let mut engine_wr = engine;
    let input = Cursor::new(leftover).chain(vs);
    let sent = match mode {
        Sniff::Framed => io::copy(&mut FrameReader::new(input), &mut engine_wr),
        _ => io::copy(&mut { input }, &mut engine_wr),
    };
    let _ = engine_wr.shutdown(Shutdown::Write);
    let got = back.join().map_err(|_| io::Error::other("forwarding thread panicked"))?;
    sent?;
    got.map(|_| ())
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

    #[test]
    fn unavailable_is_well_formed_http() {
        let r = unavailable_response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}

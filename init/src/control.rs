//! The control port (vsock 2376): `skiff logs` and `skiff shell` from the
//! host. Each connection names its service in one request line
//! (`skiff_proto::control`).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use skiff_proto::control::{self, Request, MAX_REQUEST};
use ::vsock::VsockStream;

use crate::{logger, shell, vsock};

/// Serves the control port in the background.
pub fn spawn_listener(port: u32) {
    vsock::serve_port(port, "control (skiff logs, skiff shell)", handle);
}

fn handle(mut stream: VsockStream) {
    let request = read_line(&mut stream).and_then(|line| control::parse(&line).map_err(io::Error::other));
    match request {
        Ok(Request::Logs { follow }) => {
            if let Err(e) = send_logs(stream, follow) {
                log::debug!("control: logs connection ended: {e}");
            }
        }
        Ok(Request::Shell) => shell::serve(stream),
        Err(e) => {
            log::warn!("control: bad request: {e}");
            let _ = stream.write_all(skiff_proto::auth::refusal_line(&format!("bad request: {e}")).as_bytes());
        }
    }
}

/// Time from the auth line for the whole request line.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the request line byte by byte, so nothing after it is consumed,
/// all within [`REQUEST_DEADLINE`] (a slow sender is cut off).
fn read_line(stream: &mut VsockStream) -> io::Result<Vec<u8>> {
    let line = read_line_by(&mut vsock::ReadBy::new(stream, Instant::now() + REQUEST_DEADLINE));
    stream.set_read_timeout(None)?;
    line
}

fn read_line_by(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() <= MAX_REQUEST {
        match r.read(&mut byte)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a request")),
            _ if byte[0] == b'\n' => return Ok(line),
            _ => line.push(byte[0]),
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "request line too long"))
}

/// The ring buffer, then (with `follow`) new lines until the host goes away.
fn send_logs(mut stream: VsockStream, follow: bool) -> io::Result<()> {
    let (lines, mut next) = logger::lines_since(0, Duration::ZERO);
    stream.write_all(lines.concat().as_bytes())?;
    if !follow {
        return stream.shutdown(std::net::Shutdown::Write);
    }
    loop {
        let (lines, n) = logger::lines_since(next, Duration::from_secs(1));
        next = n;
        // An empty write would not notice a closed connection; the host
        // ignores NUL bytes between lines, so one serves as a keep-alive.
        let text = if lines.is_empty() { "\0".to_string() } else { lines.concat() };
        stream.write_all(text.as_bytes())?;
    }
}

//! The control port (vsock 2376): `skiff logs`, `skiff shell` and the
//! published-port table from the host. Each connection names its service in one request line
//! (`skiff_proto::control`).

use std::io::{self, Write};
use std::time::Duration;

use skiff_proto::control::{self, Request, MAX_REQUEST};
use ::vsock::VsockStream;

use crate::boot::logger;
use crate::services::{ports, shell, vsock};

/// Serves the control port in the background.
pub fn spawn_listener(port: u32) {
    vsock::serve_port(port, "control (skiff logs, skiff shell, port table)", handle);
}

/// Why a control connection is refused.
#[derive(Debug)]
enum Error {
    /// No request line arrived (closed, too long, too slow).
    Read(io::Error),
    /// The request line is not one this init serves.
    Parse(control::ParseError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Read(e) => write!(f, "{e}"),
            Error::Parse(e) => write!(f, "{e}"),
        }
    }
}

/// Reads and parses the request line.
fn request(stream: &mut VsockStream) -> Result<Request, Error> {
    let line = vsock::read_line(stream, MAX_REQUEST).map_err(Error::Read)?;
    control::parse(&line).map_err(Error::Parse)
}

fn handle(mut stream: VsockStream) {
    match request(&mut stream) {
        Ok(Request::Logs { follow }) => {
            if let Err(e) = send_logs(stream, follow) {
                log::debug!("control: logs connection ended: {e}");
            }
        }
        Ok(Request::Shell) => shell::serve(stream),
        Ok(Request::Ports) => ports::serve_updates(stream),
        Err(e) => {
            log::warn!("control: bad request: {e}");
            let _ = stream.write_all(skiff_proto::auth::refusal_line(&format!("bad request: {e}")).as_bytes());
        }
    }
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

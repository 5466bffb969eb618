//! The control port (vsock 2376): `skiff logs`, `skiff shell`, the
//! published-port table, `skiff status`, the rekey and host edits (`touch`) from the host. Each connection names its service in one request line
//! (`skiff_proto::control`).

use std::fs;
use std::io::{self, Write};
use std::time::Duration;

use skiff_proto::control::{self, Request, MAX_REQUEST};
use skiff_proto::status::{self, GuestStatus};
use ::vsock::VsockStream;

use crate::boot::{events, logger, medium};
use crate::disk;
use crate::services::{ports, shares, shell, touch, vsock};

/// Serves the control port in the background; `disk` is the data disk
/// `skiff status` reports on, if one is mounted.
pub fn spawn_listener(door: &vsock::Door, port: u32, disk: Option<disk::DataDisk>) {
    let rekey = door.clone();
    vsock::serve_port(door, port, "control (skiff logs, skiff shell, port table, status)", move |stream| handle(stream, &rekey, disk));
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

fn handle(mut stream: VsockStream, door: &vsock::Door, disk: Option<disk::DataDisk>) {
    match request(&mut stream) {
        Ok(Request::Logs { follow }) => {
            if let Err(e) = send_logs(stream, follow) {
                log::debug!("control: logs connection ended: {e}");
            }
        }
        Ok(Request::Shell) => shell::serve(stream),
        Ok(Request::Ports) => ports::serve_updates(stream),
        Ok(Request::Touch) => touch::serve(stream),
        Ok(Request::Events) => {
            if let Err(e) = send_events(&mut stream) {
                log::debug!("control: events connection ended: {e}");
            }
        }
        Ok(Request::Rekey(secret)) => {
            door.rekey(secret);
            if let Err(e) = stream.write_all(b"OK\n") {
                log::warn!("control: rekey: cannot confirm: {e}");
            }
        }
        Ok(Request::Clock(host_ns)) => {
            let offset = crate::boot::clock::set_from_host(host_ns);
            if let Err(e) = stream.write_all(format!("{offset}\n").as_bytes()) {
                log::debug!("control: clock connection ended: {e}");
            }
        }
        Ok(Request::Status) => {
            let text = status::encode(&current_status(disk));
            if let Err(e) = stream.write_all(text.as_bytes()).and_then(|()| stream.shutdown(std::net::Shutdown::Write)) {
                log::debug!("control: status connection ended: {e}");
            }
        }
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

/// The event stream's header, the events so far, then new ones until the host goes away.
fn send_events(stream: &mut VsockStream) -> io::Result<()> {
    // A host that stops reading must not hold this thread forever.
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{}\n", skiff_proto::events::HEADER).as_bytes())?;
    events::follow(Duration::from_secs(5), |text| stream.write_all(text.as_bytes()))
}

/// What `skiff status` shows from inside the guest. A figure that cannot
/// be read is 0 (and the build `-`), never a reason to fail the answer.
fn current_status(disk: Option<disk::DataDisk>) -> GuestStatus {
    let (mem_total_kib, mem_available_kib) = fs::read_to_string("/proc/meminfo").ok().and_then(|t| meminfo(&t)).unwrap_or((0, 0));
    GuestStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        build: fs::read_to_string(medium::OUR_BUILD_ID).map(|b| b.trim().to_string()).unwrap_or_default(),
        uptime_secs: fs::read_to_string("/proc/uptime").ok().and_then(|t| uptime_secs(&t)).unwrap_or(0),
        mem_total_kib,
        mem_available_kib,
        disk: disk.and_then(|d| d.usage()),
        shares: shares::mounted(),
    }
}

/// MemTotal and MemAvailable (KiB) from /proc/meminfo's text.
fn meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// Whole seconds from /proc/uptime's text.
fn uptime_secs(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    first.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_and_uptime() {
        let m = "MemTotal:        1015000 kB\nMemFree:          500000 kB\nMemAvailable:     812000 kB\n";
        assert_eq!(meminfo(m), Some((1_015_000, 812_000)));
        assert_eq!(meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(meminfo("MemTotalX: 5 kB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(uptime_secs("123.45 200.00\n"), Some(123));
        assert_eq!(uptime_secs(""), None);
    }
}

//! The forward port (vsock 2377): one vsock connection per host connection
//! to a published port. The first line names the target
//! (`skiff_proto::ports::Forward`); the guest dials it only if some
//! container publishes it at that moment, answers `OK` or `ERR <reason>`,
//! then relays both ways with half-close kept (as on the engine port).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ::vsock::VsockStream;
use skiff_proto::framing;
use skiff_proto::ports::{self as wire, Forward, Proto, MAX_LINE};

use crate::services::vsock::{self, Conn};

/// How long dialling a container may take (one on the guest's own bridge
/// answers at once; a container just removed never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the forward port in the background.
pub fn spawn_listener(port: u32) {
    vsock::serve_port(port, "published ports", |stream| {
        if let Err(e) = handle(stream) {
            log::debug!("ports: forwarded connection ended: {e}");
        }
    });
}

/// Why a forward request was refused (sent to the host as the reason).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(String),
    Unsupported(Proto),
    NotPublished(Forward),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(e) => write!(f, "bad forward request: {e}"),
            Refusal::Unsupported(p) => write!(f, "{} forwarding is not supported", p.as_str()),
            Refusal::NotPublished(t) => write!(f, "{} {}:{} is not a published port", t.proto.as_str(), t.ip, t.port),
        }
    }
}

/// Decides whether a request line may be dialled, given what is published.
pub fn check(line: &[u8], published: impl Fn(Proto, std::net::IpAddr, u16) -> bool) -> Result<Forward, Refusal> {
    let req = wire::parse_forward(line).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    if req.proto != Proto::Tcp {
        return Err(Refusal::Unsupported(req.proto));
    }
    if !published(req.proto, req.ip, req.port) {
        return Err(Refusal::NotPublished(req));
    }
    Ok(req)
}

fn handle(mut vs: VsockStream) -> io::Result<()> {
    let line = vsock::read_line(&mut vs, MAX_LINE)?;
    serve(vs, &line, super::is_published)
}

/// Answers one request on `vs` and relays it to its target.
fn serve<C: Conn>(mut vs: C, line: &[u8], published: impl Fn(Proto, std::net::IpAddr, u16) -> bool) -> io::Result<()> {
    let req = match check(line, published) {
        Ok(req) => req,
        Err(refusal) => {
            log::warn!("ports: refused a forward request: {refusal}");
            return refuse(vs, &refusal.to_string());
        }
    };
    let target = match TcpStream::connect_timeout(&SocketAddr::new(req.ip, req.port), CONNECT_TIMEOUT) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("ports: cannot reach {}:{}: {e}", req.ip, req.port);
            return refuse(vs, &format!("cannot connect to {}:{}: {e}", req.ip, req.port));
        }
    };
    let _ = target.set_nodelay(true);
    vs.write_all(b"OK\n")?;
    if req.framed {
        // The host sends the framing preamble right after reading OK.
        vs.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut preamble = [0u8; framing::PREAMBLE.len()];
        vs.read_exact(&mut preamble)?;
        vs.set_read_timeout(None)?;
        if preamble != framing::PREAMBLE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "framed forward without the framing preamble"));
        }
    }
    vsock::relay(vs, Vec::new(), req.framed, target)
}

fn refuse<C: Conn>(mut vs: C, reason: &str) -> io::Result<()> {
    vs.write_all(wire::encode_refusal(reason).as_bytes())?;
    vs.shutdown(std::net::Shutdown::Both)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{IpAddr, TcpListener};
    use std::os::unix::net::UnixStream;
    use std::thread;

    #[test]
    fn only_published_tcp_targets_pass() {
        let only = |proto: Proto, ip: IpAddr, port: u16| proto == Proto::Tcp && ip.to_string() == "10.88.0.5" && port == 80;
        assert!(check(b"SKIFF-FORWARD/1 tcp 10.88.0.5 80", only).is_ok());
        assert!(matches!(check(b"SKIFF-FORWARD/1 tcp 10.88.0.5 81", only), Err(Refusal::NotPublished(_))));
        assert!(matches!(check(b"SKIFF-FORWARD/1 tcp 127.0.0.1 2375", only), Err(Refusal::NotPublished(_))));
        assert!(matches!(check(b"SKIFF-FORWARD/1 udp 10.88.0.5 80", only), Err(Refusal::Unsupported(Proto::Udp))));
        assert!(matches!(check(b"CONNECT 2375", only), Err(Refusal::BadRequest(_))));
    }

    /// A published target answering with what it read, after the client's EOF.
    fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(format!("got {}", String::from_utf8_lossy(&got)).as_bytes()).unwrap();
        });
        port
    }

    #[test]
    fn relays_a_published_target_with_framed_eof() {
        let port = echo_server();
        let (mut host, guest) = UnixStream::pair().unwrap();
        let line = format!("SKIFF-FORWARD/1 tcp 127.0.0.1 {port} framed");
        thread::spawn(move || serve(guest, line.as_bytes(), move |_, _, p| p == port));
        let mut wire = framing::PREAMBLE.to_vec();
        framing::encode(b"hello", &mut wire);
        wire.extend_from_slice(&framing::EOF_FRAME);
        host.write_all(&wire).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "OK\ngot hello");
    }

    #[test]
    fn refuses_what_is_not_published() {
        let port = echo_server();
        let (mut host, guest) = UnixStream::pair().unwrap();
        let line = format!("SKIFF-FORWARD/1 tcp 127.0.0.1 {port}");
        thread::spawn(move || serve(guest, line.as_bytes(), |_, _, _| false));
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("ERR ") && reply.contains("not a published port"), "{reply}");
    }
}

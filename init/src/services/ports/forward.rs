//! The forward port (vsock 2377): one vsock connection per host connection
//! to a published port (per client address, for UDP). The first line names
//! the target (`skiff_proto::ports::Forward`); the guest dials it only if
//! some container publishes it at that moment, answers `OK` or `ERR
//! <reason>`, then relays: TCP both ways with half-close kept (as on the
//! engine port), UDP as datagrams framed by `skiff_proto::datagram` until
//! either side closes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ::vsock::VsockStream;
use skiff_proto::{datagram, framing};
use skiff_proto::ports::{self as wire, Forward, Proto, MAX_LINE};

use crate::services::vsock::{self, Conn};

/// How long dialling a container may take (one on the guest's own bridge
/// answers at once; a container just removed never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the UDP relay's receive wakes to see whether its flow ended.
const UDP_POLL: Duration = Duration::from_secs(1);

/// Connections one target (protocol, address, port) may hold at once: half
/// of the forward port's places, so a crowd on one published port (the
/// host bounds each port too) never takes every other port's places.
pub const PER_TARGET: usize = vsock::MAX_CONNECTIONS / 2;

/// One target's connection: protocol, address, port.
type Target = (Proto, IpAddr, u16);

/// The targets of the forwarded connections open now, one entry each.
static HELD: Mutex<Vec<Target>> = Mutex::new(Vec::new());

/// A forwarded connection's place among its target's [`PER_TARGET`].
struct Held<'a>(&'a Mutex<Vec<Target>>, Target);

impl<'a> Held<'a> {
    fn take(held: &'a Mutex<Vec<Target>>, t: Target, max: usize) -> Option<Self> {
        let mut open = held.lock().unwrap_or_else(|e| e.into_inner());
        if open.iter().filter(|&&o| o == t).count() >= max {
            return None;
        }
        open.push(t);
        Some(Held(held, t))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = open.iter().position(|&o| o == self.1) {
            open.swap_remove(i);
        }
    }
}

/// Serves the forward port in the background.
pub fn spawn_listener(door: &vsock::Door, port: u32) {
    vsock::serve_port(door, port, "published ports", |stream| {
        if let Err(e) = handle(stream) {
            log::debug!("ports: forwarded connection ended: {e}");
        }
    });
}

/// Why a forward request was refused (sent to the host as the reason).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(String),
    NotPublished(Forward),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BadRequest(e) => write!(f, "bad forward request: {e}"),
            Refusal::NotPublished(t) => write!(f, "{} {}:{} is not a published port", t.proto.as_str(), t.ip, t.port),
        }
    }
}

/// Decides whether a request line may be dialled, given what is published.
pub fn check(line: &[u8], published: impl Fn(Proto, IpAddr, u16) -> bool) -> Result<Forward, Refusal> {
    let req = wire::parse_forward(line).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    if req.proto == Proto::Udp && req.framed {
        return Err(Refusal::BadRequest("a UDP forward frames datagrams, not the stream's end".into()));
    }
    if !published(req.proto, req.ip, req.port) {
        return Err(Refusal::NotPublished(req));
    }
    Ok(req)
}

fn handle(mut vs: VsockStream) -> io::Result<()> {
    let line = vsock::read_line(&mut vs, MAX_LINE)?;
    serve(vs, &line, super::is_published, &HELD)
}

/// Answers one request on `vs` and relays it to its target, if the target
/// has a place left among those `held` open.
fn serve<C: Conn>(mut vs: C, line: &[u8], published: impl Fn(Proto, IpAddr, u16) -> bool, held: &Mutex<Vec<Target>>) -> io::Result<()> {
    let req = match check(line, published) {
        Ok(req) => req,
        Err(refusal) => {
            log::warn!("ports: refused a forward request: {refusal}");
            return refuse(vs, &refusal.to_string());
        }
    };
    let Some(_held) = Held::take(held, (req.proto, req.ip, req.port), PER_TARGET) else {
        log::debug!("ports: {}:{}: {PER_TARGET} connections open; refusing another", req.ip, req.port);
        return refuse(vs, &format!("too many connections to {}:{} ({PER_TARGET} open)", req.ip, req.port));
    };
    if req.proto == Proto::Udp {
        return serve_udp(vs, SocketAddr::new(req.ip, req.port));
    }
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

/// One UDP flow: datagrams from the host go to `target` from a socket of
/// this flow's own, so the container's replies come back to that socket and
/// go to the host, framed.
fn serve_udp<C: Conn>(mut vs: C, target: SocketAddr) -> io::Result<()> {
    let local: IpAddr = if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let sock = match UdpSocket::bind((local, 0)).and_then(|s| s.connect(target).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return refuse(vs, &format!("cannot open a UDP socket to {target}: {e}")),
    };
    vs.write_all(b"OK\n")?;
    sock.set_read_timeout(Some(UDP_POLL))?;
    let done = Arc::new(AtomicBool::new(false));
    let (replies, mut to_host, flow_done) = (sock.try_clone()?, vs.try_clone()?, Arc::clone(&done));
    let back = thread::Builder::new().name("udp-back".into()).spawn(move || {
        let mut buf = vec![0u8; datagram::MAX];
        while !flow_done.load(Ordering::SeqCst) {
            match replies.recv(&mut buf) {
                Ok(n) => {
                    if datagram::write(&mut to_host, &buf[..n]).is_err() {
                        break;
                    }
                }
                // Nothing yet, or an ICMP "unreachable" for an earlier datagram.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionRefused) => {}
                Err(_) => break,
            }
        }
        // The host hears that this flow is over.
        let _ = to_host.shutdown(std::net::Shutdown::Both);
    })?;
    let mut buf = Vec::new();
    let result = loop {
        match datagram::read(&mut vs, &mut buf) {
            Ok(true) => match sock.send(&buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {} // no one listens yet: UDP drops it
                Err(e) => break Err(e),
            },
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    done.store(true, Ordering::SeqCst);
    let _ = back.join();
    result
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
        assert!(matches!(check(b"SKIFF-FORWARD/1 udp 10.88.0.5 80", only), Err(Refusal::NotPublished(_))), "published for TCP only");
        let udp = |proto: Proto, _: IpAddr, port: u16| proto == Proto::Udp && port == 53;
        assert!(check(b"SKIFF-FORWARD/1 udp 10.88.0.5 53", udp).is_ok());
        assert!(matches!(check(b"SKIFF-FORWARD/1 udp 10.88.0.5 53 framed", udp), Err(Refusal::BadRequest(_))));
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
        thread::spawn(move || serve(guest, line.as_bytes(), move |_, _, p| p == port, &HELD));
        let mut wire = framing::PREAMBLE.to_vec();
        framing::encode(b"hello", &mut wire);
        wire.extend_from_slice(&framing::EOF_FRAME);
        host.write_all(&wire).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "OK\ngot hello");
    }

    #[test]
    fn relays_udp_datagrams_both_ways_until_the_host_closes() {
        // A published UDP target answering each datagram with "got " and it.
        let target = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = target.local_addr().unwrap().port();
        thread::spawn(move || {
            let mut buf = [0u8; 100];
            while let Ok((n, from)) = target.recv_from(&mut buf) {
                let reply = [&b"got "[..], &buf[..n]].concat();
                target.send_to(&reply, from).unwrap();
            }
        });
        let (mut host, guest) = UnixStream::pair().unwrap();
        let line = format!("SKIFF-FORWARD/1 udp 127.0.0.1 {port}");
        let served = thread::spawn(move || serve(guest, line.as_bytes(), move |proto, _, p| proto == Proto::Udp && p == port, &HELD));
        let mut ok = [0u8; 3];
        host.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"OK\n");
        let mut buf = Vec::new();
        for d in [&b"one"[..], b"two"] {
            datagram::write(&mut host, d).unwrap();
            assert!(datagram::read(&mut host, &mut buf).unwrap());
            assert_eq!(buf, [&b"got "[..], d].concat());
        }
        host.shutdown(std::net::Shutdown::Write).unwrap();
        served.join().unwrap().unwrap();
        assert!(!datagram::read(&mut host, &mut buf).unwrap(), "the guest closes its side when the flow ends");
    }

    #[test]
    fn one_target_cannot_take_every_place() {
        static OPEN: Mutex<Vec<Target>> = Mutex::new(Vec::new());
        let (crowded, other) = (echo_server(), echo_server());
        let lo = IpAddr::from([127, 0, 0, 1]);
        let ask = |port: u16| {
            let (mut host, guest) = UnixStream::pair().unwrap();
            let line = format!("SKIFF-FORWARD/1 tcp 127.0.0.1 {port}");
            thread::spawn(move || serve(guest, line.as_bytes(), |_, _, _| true, &OPEN));
            let answer = String::from_utf8(skiff_proto::read_line(&mut host, 200).unwrap()).unwrap();
            if answer != "OK" {
                return answer;
            }
            host.write_all(b"hi").unwrap();
            host.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = String::new();
            host.read_to_string(&mut reply).unwrap();
            format!("OK\n{reply}")
        };
        let crowd: Vec<Held> = (0..PER_TARGET).map(|_| Held::take(&OPEN, (Proto::Tcp, lo, crowded), PER_TARGET).unwrap()).collect();
        let refused = ask(crowded);
        assert!(refused.starts_with("ERR ") && refused.contains("too many connections"), "{refused}");
        assert_eq!(ask(other), "OK\ngot hi", "another published port is still served");
        drop(crowd);
        assert_eq!(ask(crowded), "OK\ngot hi", "places come back when connections end");
        let given_back = (0..100).any(|_| {
            thread::sleep(Duration::from_millis(20));
            OPEN.lock().unwrap().is_empty()
        });
        assert!(given_back, "every place is given back");
    }

    #[test]
    fn refuses_what_is_not_published() {
        let port = echo_server();
        let (mut host, guest) = UnixStream::pair().unwrap();
        let line = format!("SKIFF-FORWARD/1 tcp 127.0.0.1 {port}");
        thread::spawn(move || serve(guest, line.as_bytes(), |_, _, _| false, &HELD));
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("ERR ") && reply.contains("not a published port"), "{reply}");
    }
}

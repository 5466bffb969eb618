//! The host side of the engine socket: a local unix socket whose every
//! connection is carried to the guest's vsock port (`relay`), or to
//! skiff-buildkit when it is a BuildKit upgrade (`build`).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::guest::build;
use crate::guest::relay::{relay, relay_after};
pub use crate::guest::{Addr, Conn, Target};
use crate::threads;

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
/// `builder` socket, BuildKit's upgrades go there (see [`build`]). While
/// the target's VM is starting ([`Link::starting`](crate::guest::Link::starting)),
/// failed guest connections are kept back on its link, not reported.
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
                if target.link.starting() {
                    target.link.hold_back(what);
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
        let guest = connect(&mut client, target, port)?;
        return relay(client, guest, target.needs_framing());
    };
    let (head, route) = build::peek(&mut client)?;
    if route == build::Route::Builder {
        return build::relay(client, &head, builder).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", build::HELPER)));
    }
    let guest = connect(&mut client, target, port)?;
    relay_after(client, &head, guest, target.needs_framing())
}

/// Connects to the guest. A refusal in the handshake (the guest's, or the
/// guest not proving itself) reaches the client as a 403 with the reason,
/// and a guest not to be dialled now (paused) or not answering yet (before
/// `skiff run` has seen the engine answer, `Link::starting`) as a 503, so
/// `docker` shows why.
fn connect(client: &mut UnixStream, target: &Target, port: u32) -> io::Result<Conn> {
    target.connect(port).inspect_err(|e| {
        let body = match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::NotConnected => format!("skiff: {e}\n"),
            _ if target.link.starting() => format!("skiff: the VM is still starting; try again in a moment ({e})\n"),
            _ => return,
        };
        let status = if e.kind() == io::ErrorKind::PermissionDenied { "403 Forbidden" } else { "503 Service Unavailable" };
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = client.write_all(format!("{head}{body}").as_bytes());
        // Unread request bytes at close would turn the answer into a reset.
        let _ = client.shutdown(std::net::Shutdown::Write);
        let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let _ = io::copy(&mut client.take(1 << 20), &mut io::sink());
    })
}

/// Pings the engine through a bridge socket.
pub fn ping(sock: &Path) -> io::Result<bool> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    skiff_proto::http::ping(&mut s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::SocketPath;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// Reads one request head (to the blank line) from a fresh connection.
    fn read_head(listener: &UnixListener) -> (UnixStream, Vec<u8>) {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "the connection ended early: {got:?}");
            got.push(b[0]);
        }
        (s, got)
    }

    #[test]
    fn a_guest_that_does_not_prove_itself_gets_no_request_and_docker_is_told_why() {
        use skiff_proto::auth::{self, Secret, SECRET_LEN};
        let guest_path = SocketPath::new("bridge-impostor", "guest.sock");
        let docker_path = guest_path.parent().unwrap().join("docker.sock");
        let impostor = UnixListener::bind(&*guest_path).unwrap();
        let listener = bind(&docker_path).unwrap();
        let target = Target::with_secret(Addr::Unix(guest_path.to_path_buf()), Some(Secret::from_bytes([1; SECRET_LEN])));
        std::thread::Builder::new().spawn(move || serve(listener, target, 2375, None)).unwrap();
        let mut client = UnixStream::connect(&docker_path).unwrap();
        client.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n").unwrap();
        let (mut s, _) = impostor.accept().unwrap();
        let mut line = [0u8; auth::LINE_LEN];
        s.read_exact(&mut line).unwrap();
        let host = auth::parse_challenge(&line).unwrap();
        s.write_all(&auth::answer(&Secret::from_bytes([2; SECRET_LEN]), &host, &[3; auth::NONCE_LEN])).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n") && answer.contains("did not prove"), "{answer}");
        let mut more = Vec::new();
        s.read_to_end(&mut more).unwrap();
        assert!(more.is_empty(), "the impostor got {:?}", String::from_utf8_lossy(&more));
    }

    #[test]
    fn a_guest_not_answering_while_the_vm_starts_gets_docker_a_503_saying_so() {
        // A vsock device that closes every connection at once, as
        // vhost-device-vsock does before QEMU has given it the guest's memory.
        let device_path = SocketPath::new("bridge-starting", "vsock.sock");
        let docker_path = device_path.parent().unwrap().join("docker.sock");
        let device = UnixListener::bind(&*device_path).unwrap();
        std::thread::spawn(move || device.incoming().flatten().for_each(drop));
        let listener = bind(&docker_path).unwrap();
        let target = Target::new(Addr::Uds(device_path.to_path_buf()));
        let link = target.link.clone();
        link.set_starting(true);
        std::thread::Builder::new().spawn(move || serve(listener, target, 2375, None)).unwrap();
        let mut client = UnixStream::connect(&docker_path).unwrap();
        client.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n").unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && answer.contains("still starting"), "{answer}");
        // The error is kept back on this VM's link, for `skiff run`'s message.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while link.take_held_back().is_none() {
            assert!(std::time::Instant::now() < deadline, "the failed connection was not kept back");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_bridge_sends_upgrades_to_the_builder_and_the_rest_to_the_engine_byte_for_byte() {
        let engine_path = SocketPath::new("build-route", "engine.sock");
        let dir = engine_path.parent().unwrap().to_path_buf();
        let (builder_path, docker_path) = (dir.join("buildkit.sock"), dir.join("docker.sock"));
        let engine = UnixListener::bind(&*engine_path).unwrap();
        let builder = UnixListener::bind(&builder_path).unwrap();
        let listener = bind(&docker_path).unwrap();
        let target = Target::new(Addr::Unix(engine_path.to_path_buf()));
        let b = builder_path.clone();
        std::thread::Builder::new().spawn(move || serve(listener, target, 2375, Some(b))).unwrap();

        // An ordinary request reaches the engine whole, and its answer comes back.
        let ping = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
        let mut client = UnixStream::connect(&docker_path).unwrap();
        client.write_all(ping).unwrap();
        let (mut e, got) = read_head(&engine);
        assert_eq!(got, ping);
        e.write_all(b"OK").unwrap();
        drop(e);
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "OK");

        // BuildKit's upgrades (the line sent in two pieces) reach the builder whole.
        for upgrade in [&b"POST /grpc HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"[..], b"POST /v1.45/session HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"] {
            let mut client = UnixStream::connect(&docker_path).unwrap();
            client.write_all(&upgrade[..7]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            client.write_all(&upgrade[7..]).unwrap();
            let (mut h, got) = read_head(&builder);
            assert_eq!(got, upgrade);
            h.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").unwrap();
            drop(h);
            let mut answer = String::new();
            client.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        }
    }
}

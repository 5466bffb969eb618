//! BuildKit on the engine socket: the connections buildx's `docker` driver
//! opens for BuildKit (`POST /grpc` and `POST /session`, each upgraded to
//! h2c), endpoints Podman lacks, go to `skiff-buildkit` (the Go program in
//! `buildkit/`); every other connection goes to the guest as before.
//!
//! buildx probes `/grpc` to choose its builder: without an answer it falls
//! back to a `docker-container` builder, which needs Docker Hub. With one,
//! `docker build`, `docker buildx build` and `docker compose build` use the
//! engine's own builder through skiff-buildkit.
//!
//! The bridge reads the first request line of each new connection (each
//! hijacked upgrade is a connection of its own) and passes the bytes read
//! on, to whichever side it goes.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::guest::bridge;
use crate::vm::process;

/// The longest first request line looked at; a longer one goes to the
/// engine, which answers it as it would have.
pub const HEAD_LIMIT: usize = 8192;

/// Where a connection goes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Route {
    /// To the guest's engine.
    Engine,
    /// To skiff-buildkit (a BuildKit upgrade).
    Builder,
    /// The first line has not all arrived yet.
    NeedMore,
}

/// Decides from the bytes a connection sent first: `POST /grpc`, `POST
/// /session`, or either under an API version (`/v1.45/grpc`), with or
/// without a query, go to the builder.
pub fn route(head: &[u8]) -> Route {
    let Some(end) = head.iter().position(|&b| b == b'\n') else {
        return if head.len() < HEAD_LIMIT { Route::NeedMore } else { Route::Engine };
    };
    let line = &head[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Route::Engine;
    };
    if method != b"POST" || !version.starts_with(b"HTTP/1.") {
        return Route::Engine;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let path = strip_version(path);
    if path == b"/grpc" || path == b"/session" { Route::Builder } else { Route::Engine }
}

/// `/v1.45/grpc` → `/grpc`; a path without a version is kept.
fn strip_version(path: &[u8]) -> &[u8] {
    let Some(rest) = path.strip_prefix(b"/v") else { return path };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
    let (version, after) = rest.split_at(digits);
    let valid = !version.is_empty() && version.iter().filter(|&&b| b == b'.').count() == 1 && version[0] != b'.';
    if valid && after.starts_with(b"/") { after } else { path }
}

/// Reads from `client` until its first request line is in (or
/// [`HEAD_LIMIT`] bytes, or EOF), and says where it goes. The bytes read
/// are returned to be sent on.
pub fn peek<R: Read>(client: &mut R) -> io::Result<(Vec<u8>, Route)> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok((head, Route::Engine));
        }
        head.extend_from_slice(&buf[..n]);
        match route(&head) {
            Route::NeedMore => continue,
            r => return Ok((head, r)),
        }
    }
}

/// Relays a client connection to skiff-buildkit's socket, `head` first.
pub fn relay(client: UnixStream, head: &[u8], builder: &Path) -> io::Result<()> {
    let mut helper = UnixStream::connect(builder)?;
    helper.write_all(head)?;
    let helper_rd = helper.try_clone()?;
    bridge::pump(client, helper_rd, helper, |w| w.shutdown(Shutdown::Write))
}

/// The program, beside `skiff` (as `make host` builds them) or on PATH.
pub fn find_helper() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(HELPER)));
    beside.filter(|p| p.is_file()).or_else(|| process::find_program(HELPER))
}

/// The Go program's file name.
pub const HELPER: &str = "skiff-buildkit";

/// A running skiff-buildkit, killed and reaped when dropped.
pub struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    /// Starts skiff-buildkit on `socket` (in the private state folder),
    /// building with the engine behind `engine_sock`. `None`, said on
    /// stderr, when the program is not installed: builds then go to the
    /// engine as before (buildx falls back to its own builder).
    pub fn start(socket: &Path, engine_sock: &Path) -> Option<Helper> {
        let Some(program) = find_helper() else {
            eprintln!("skiff: no {HELPER} beside skiff or on PATH: `docker build` with buildx will not find a BuildKit builder (make host builds it)");
            return None;
        };
        match Self::spawn(&program, socket, engine_sock) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("skiff: cannot start {}: {e}; `docker build` with buildx will not find a BuildKit builder", program.display());
                None
            }
        }
    }

    fn spawn(program: &Path, socket: &Path, engine_sock: &Path) -> io::Result<Helper> {
        let _ = std::fs::remove_file(socket);
        let mut child = process::die_with_parent(Command::new(program).arg("--listen").arg(socket).arg("--engine").arg(engine_sock))
            .stdin(Stdio::null())
            .spawn()?;
        if let Err(e) = process::wait_for_path(socket, &mut child, HELPER, Duration::from_secs(10)) {
            process::stop(&mut child);
            return Err(e);
        }
        Ok(Helper { child, socket: socket.to_path_buf() })
    }

    /// Its socket, for [`bridge::serve`].
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        process::stop(&mut self.child);
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Addr, Target};
    use crate::testutil::SocketPath;
    use std::os::unix::net::UnixListener;

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
    fn the_bridge_sends_upgrades_to_the_builder_and_the_rest_to_the_engine_byte_for_byte() {
        let engine_path = SocketPath::new("build-route", "engine.sock");
        let dir = engine_path.parent().unwrap().to_path_buf();
        let (builder_path, docker_path) = (dir.join("buildkit.sock"), dir.join("docker.sock"));
        let engine = UnixListener::bind(&*engine_path).unwrap();
        let builder = UnixListener::bind(&builder_path).unwrap();
        let listener = bridge::bind(&docker_path).unwrap();
        let target = Target::new(Addr::Unix(engine_path.to_path_buf()));
        let b = builder_path.clone();
        std::thread::Builder::new().spawn(move || bridge::serve(listener, target, 2375, Some(b))).unwrap();

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

    #[test]
    fn buildkit_upgrades_go_to_the_builder() {
        for head in [
            &b"POST /grpc HTTP/1.1\r\nHost: docker\r\n"[..],
            b"POST /session HTTP/1.1\r\n",
            b"POST /v1.45/grpc HTTP/1.1\r\n",
            b"POST /v1.41/session?x=1 HTTP/1.1\r\n",
            b"POST /grpc HTTP/1.1\n",
        ] {
            assert_eq!(route(head), Route::Builder, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn everything_else_goes_to_the_engine() {
        for head in [
            &b"GET /_ping HTTP/1.1\r\n"[..],
            b"GET /grpc HTTP/1.1\r\n",
            b"POST /build?t=app HTTP/1.1\r\n",
            b"POST /v1.45/containers/create HTTP/1.1\r\n",
            b"POST /grpcx HTTP/1.1\r\n",
            b"POST /v1.45/images/grpc HTTP/1.1\r\n",
            b"POST /vx/grpc HTTP/1.1\r\n",
            b"POST /v1/grpc HTTP/1.1\r\n",
            b"POST  /grpc HTTP/1.1\r\n",
            b"POST /grpc\r\n",
            b"POST /grpc HTTP/2\r\n",
            b"\x00\x01binary\n",
        ] {
            assert_eq!(route(head), Route::Engine, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_partial_line_waits_for_more_up_to_the_limit() {
        assert_eq!(route(b"POST /gr"), Route::NeedMore);
        assert_eq!(route(b""), Route::NeedMore);
        assert_eq!(route(&vec![b'a'; HEAD_LIMIT]), Route::Engine);
    }

    #[test]
    fn peek_keeps_every_byte_read() {
        // A reader that hands the request over in small pieces.
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = 3.min(buf.len()).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let req = b"POST /v1.45/session HTTP/1.1\r\nUpgrade: h2c\r\n\r\n".to_vec();
        let mut r = Trickle(req.clone(), 0);
        let (head, route) = peek(&mut r).unwrap();
        assert_eq!(route, Route::Builder);
        assert!(req.starts_with(&head) && head.contains(&b'\n'));
        let (head, route) = peek(&mut Trickle(b"GET /_p".to_vec(), 0)).unwrap();
        assert_eq!((head.as_slice(), route), (&b"GET /_p"[..], Route::Engine), "EOF before the line ends");
    }
}

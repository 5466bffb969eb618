//! Published ports: host localhost → container through `skiff run`'s
//! listener (TCP → hybrid vsock → the init's forward port → container), the
//! guest's relay alone compared with socat doing the same relay over the
//! same vsock, and the time from `docker run -d -p` returning to the first
//! answered request.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::socket::{docker_load, Transfer};
use crate::Vm;

/// The guest vsock port the comparison socat listens on.
const SOCAT_PORT: u32 = 2399;

/// How a request reaches the container's httpd.
#[derive(Clone, Debug)]
pub enum Route {
    /// A host TCP address (the published port on 127.0.0.1).
    Tcp(SocketAddr),
    /// The guest's forward port over hybrid vsock, plain mode, naming the
    /// target, after the VM's auth line (as every host connection sends).
    Forward(PathBuf, SocketAddr, Option<skiff_proto::auth::Secret>),
    /// A guest vsock port over hybrid vsock (socat in a container).
    Hybrid(PathBuf, u32),
}

/// A connected byte stream of either kind.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Route {
    pub fn connect(&self) -> io::Result<Stream> {
        let timeout = Some(Duration::from_secs(120));
        match self {
            Route::Tcp(addr) => {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(timeout)?;
                Ok(Stream::Tcp(s))
            }
            Route::Forward(uds, target, secret) => {
                let mut s = UnixStream::connect(uds)?;
                s.set_read_timeout(timeout)?;
                skiff_proto::hybrid::handshake(&mut s, skiff_proto::ports::DEFAULT_FORWARD_PORT)?;
                if let Some(secret) = secret {
                    skiff_proto::auth::authenticate(&mut s, secret, &skiff_proto::auth::nonce()?)?;
                }
                let req = skiff_proto::ports::Forward { proto: skiff_proto::ports::Proto::Tcp, ip: target.ip(), port: target.port(), framed: false };
                s.write_all(skiff_proto::ports::encode_forward(&req).as_bytes())?;
                let reply = skiff_proto::read_line(&mut s, 200)?;
                skiff_proto::ports::parse_forward_reply(&reply).map_err(io::Error::other)?;
                Ok(Stream::Unix(s))
            }
            Route::Hybrid(uds, port) => {
                let mut s = UnixStream::connect(uds)?;
                s.set_read_timeout(timeout)?;
                skiff_proto::hybrid::handshake(&mut s, *port)?;
                Ok(Stream::Unix(s))
            }
        }
    }
}

/// `GET path` (HTTP/1.0: the server closes after answering) on a new
/// connection; the bytes of the answer. Errors unless it is a 200.
pub fn get(route: &Route, path: &str) -> io::Result<u64> {
    let mut s = route.connect()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    if !skiff_proto::http::is_ok_status(&head) {
        return Err(io::Error::other(format!("answer {:?}", String::from_utf8_lossy(&head))));
    }
    Ok(12 + skiff_proto::copy::copy(&mut s, &mut io::sink())?)
}

/// Figures of one route.
pub struct RouteFigures {
    pub key: &'static str,
    pub label: &'static str,
    pub download: Transfer,
    /// Seconds per `GET /` on a new connection.
    pub requests: Vec<f64>,
    pub failures: usize,
}

/// Everything measured here.
pub struct PortFigures {
    /// `docker run -d -p` returned → first 200 on 127.0.0.1, per run.
    pub publish_to_answer: Vec<f64>,
    pub routes: Vec<RouteFigures>,
    pub notes: Vec<String>,
}

/// A host port free on 127.0.0.1 and ::1.
fn free_port() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        if TcpListener::bind(("::1", p)).is_ok() {
            return p;
        }
    }
}

fn httpd_cmd(mib: u64) -> String {
    format!("mkdir -p /www && echo ok > /www/index.html && dd if=/dev/urandom of=/www/big bs=1048576 count={mib} 2>/dev/null && exec httpd -f -p 8080 -h /www")
}

/// Waits for the first 200 on `route`; seconds from now, or None after `limit`.
fn first_answer(route: &Route, limit: Duration) -> Option<f64> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if get(route, "/").is_ok() {
            return Some(t.elapsed().as_secs_f64());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn measure(key: &'static str, label: &'static str, route: &Route, mib: u64, n: usize) -> RouteFigures {
    let t = Instant::now();
    let bytes = get(route, "/big").unwrap_or_else(|e| panic!("download via {label}: {e}"));
    let secs = t.elapsed().as_secs_f64();
    assert!(bytes >= mib << 20, "download via {label}: {bytes} bytes");
    let (mut requests, mut failures) = (Vec::new(), 0);
    for _ in 0..n {
        let t = Instant::now();
        match get(route, "/") {
            Ok(_) => requests.push(t.elapsed().as_secs_f64()),
            Err(e) => {
                failures += 1;
                eprintln!("bench: request via {label} failed: {e}");
            }
        }
    }
    assert!(!requests.is_empty(), "no request via {label} was answered");
    RouteFigures { key, label, download: Transfer { bytes, secs }, requests, failures }
}

/// Runs the port workload on `vm`: `image` is the busybox image tag (loaded),
/// `socat` an image with socat (a `docker load` archive) and its tag.
pub fn run(vm: &Vm, image: &str, socat: (&Path, &str), mib: u64, requests: usize) -> PortFigures {
    let mut publish_to_answer = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let name = format!("skiff-bench-pub{i}");
        vm.docker_ok(&["run", "-d", "--name", &name, "-p", &format!("{port}:8080"), image, "sh", "-c", &httpd_cmd(0)]);
        let took = first_answer(&Route::Tcp(([127, 0, 0, 1], port).into()), Duration::from_secs(60))
            .unwrap_or_else(|| panic!("published port {port} never answered"));
        publish_to_answer.push(took);
        vm.docker_ok(&["rm", "-f", &name]);
    }

    let port = free_port();
    let web = "skiff-bench-web";
    vm.docker_ok(&["run", "-d", "--name", web, "-p", &format!("{port}:8080"), image, "sh", "-c", &httpd_cmd(mib)]);
    let host = Route::Tcp(([127, 0, 0, 1], port).into());
    // The file is written before httpd starts: an answer means it is there.
    assert!(first_answer(&host, Duration::from_secs(300)).is_some(), "the bench web server never answered");
    let ip = vm.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", web]).trim().to_string();
    let target: SocketAddr = format!("{ip}:8080").parse().expect("container address");
    let mut routes = vec![measure("host_listener", "host 127.0.0.1 → skiff listener → vsock 2377 → init → container", &host, mib, requests)];
    let mut notes = vec![
        "socat cannot replace the host listener on the hybrid-vsock path (it cannot send `CONNECT <port>` and strip \
         the `OK` reply), so it is compared on the guest hop only: the same client speaks hybrid vsock to the init's \
         forward port (request line, then plain) and to socat in a privileged container (VSOCK-LISTEN → TCP to the \
         container, `-t 0` so a close is passed on at once)"
            .to_string(),
    ];
    let uds = vm.dir.join("vsock.sock");
    if uds.exists() {
        let (tar, tag) = socat;
        docker_load(vm, tar, tag);
        vm.docker_ok(&[
            "run", "-d", "--name", "skiff-bench-port-socat", "--privileged", tag, "socat", "-t", "0",
            &format!("VSOCK-LISTEN:{SOCAT_PORT},fork,reuseaddr"), &format!("TCP:{ip}:8080"),
        ]);
        let theirs = Route::Hybrid(uds.clone(), SOCAT_PORT);
        assert!(first_answer(&theirs, Duration::from_secs(30)).is_some(), "the guest socat does not answer");
        routes.push(measure("guest_init", "guest hop: init forward port (2377)", &Route::Forward(uds, target, vm.secret()), mib, requests));
        routes.push(measure("guest_socat", "guest hop: socat in a container", &theirs, mib, requests));
        vm.docker_ok(&["rm", "-f", "skiff-bench-port-socat"]);
    } else {
        notes.push("guest hop vs socat: not measured (no hybrid-vsock socket)".to_string());
    }
    vm.docker_ok(&["rm", "-f", web]);
    PortFigures { publish_to_answer, routes, notes }
}

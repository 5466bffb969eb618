//! The socket path: big transfers and ping round trips through the whole
//! path (docker.sock → host bridge → hybrid vsock → guest forwarder →
//! engine), and the same work with socat in place of one of our hops where
//! socat can do that hop's job.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{self, Endpoint, KeepAlive};
use crate::{busybox_root, die_with_parent, image_tar, run_ok, skiff_bin, Vm};

/// Bytes moved in a time.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub secs: f64,
}

impl Transfer {
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.secs
    }
}

/// Figures of one way to reach the engine.
pub struct PathFigures {
    pub key: &'static str,
    pub label: &'static str,
    /// Seconds per `GET /_ping`: a new connection each, and one kept-alive
    /// connection; failed pings are counted, not timed.
    pub pings: Pings,
    /// `GET /containers/ID/archive` of the big file (engine → host).
    pub download: Transfer,
    /// `PUT /containers/ID/archive` of the big image tar (host → engine).
    pub upload: Transfer,
}

/// Writes a `docker load` archive of an image whose one layer is a file of
/// `mib` MiB of random bytes (`/blob`), so nothing on the way can compress it.
pub fn big_image(dir: &Path, tag: &str, mib: u64) -> PathBuf {
    let root = dir.join("big-root");
    fs::create_dir_all(&root).expect("create big-root");
    let mut blob = File::create(root.join("blob")).expect("create blob");
    let mut random = File::open("/dev/urandom").expect("open /dev/urandom");
    io::copy(&mut io::Read::take(&mut random, mib * 1024 * 1024), &mut blob).expect("write blob");
    drop(blob);
    let tar = image_tar(dir, &root, tag, r#""Cmd":["/blob"]"#);
    fs::remove_dir_all(&root).expect("remove big-root");
    tar
}

/// Writes an image holding busybox and the host's socat with the shared
/// libraries it needs (copied from this machine, as `ldd` lists them).
pub fn socat_image(dir: &Path, tag: &str) -> PathBuf {
    let root = dir.join("socat-root");
    busybox_root(&root);
    let socat = Path::new("/usr/bin/socat");
    assert!(socat.is_file(), "no /usr/bin/socat: install Debian's socat (make deps does)");
    let ldd = run_ok(Command::new("ldd").arg(socat));
    let files = std::iter::once(socat.to_path_buf()).chain(ldd.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from));
    for f in files {
        let to = root.join(f.strip_prefix("/").expect("absolute path"));
        fs::create_dir_all(to.parent().expect("parent")).expect("create lib folder");
        fs::copy(&f, &to).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    let tar = image_tar(dir, &root, tag, r#""Env":["PATH=/usr/bin:/bin"]"#);
    fs::remove_dir_all(&root).expect("remove socat-root");
    tar
}

/// `docker load` of `tar`, timed; the bytes are the archive's size.
pub fn docker_load(vm: &Vm, tar: &Path, tag: &str) -> Transfer {
    let t = Instant::now();
    let out = vm.docker_ok(&["load", "-i", tar.to_str().expect("utf-8 path")]);
    let secs = t.elapsed().as_secs_f64();
    assert!(out.contains(tag.split(':').next().unwrap_or(tag)), "docker load did not load {tag}: {out}");
    Transfer { bytes: fs::metadata(tar).expect("image tar").len(), secs }
}

/// `docker save` of `tag` into `to`, timed; the bytes are what arrived.
pub fn docker_save(vm: &Vm, tag: &str, to: &Path) -> Transfer {
    let t = Instant::now();
    vm.docker_ok(&["save", "-o", to.to_str().expect("utf-8 path"), tag]);
    let secs = t.elapsed().as_secs_f64();
    let bytes = fs::metadata(to).expect("saved tar").len();
    fs::remove_file(to).expect("remove saved tar");
    Transfer { bytes, secs }
}

/// Times `n` pings of each kind on every endpoint, taking turns between
/// endpoints so that load from other work on the machine falls on all of
/// them alike. Every ping must be answered by the engine. Returns, per
/// endpoint, (new connection each, one kept-alive connection) seconds.
pub fn pings(eps: &[Endpoint], n: usize) -> Vec<Pings> {
    let mut out: Vec<Pings> = eps.iter().map(|_| Pings::default()).collect();
    for _ in 0..n {
        for (ep, o) in eps.iter().zip(out.iter_mut()) {
            let t = Instant::now();
            let r = http::ping_new(ep);
            o.record(r.map(|()| t.elapsed().as_secs_f64()), ep, "new connection");
        }
    }
    let mut conns: Vec<Option<KeepAlive>> = eps.iter().map(|_| None).collect();
    for _ in 0..n {
        for ((ep, conn), o) in eps.iter().zip(conns.iter_mut()).zip(out.iter_mut()) {
            // A failed kept-alive connection is replaced (and the failure counted).
            if conn.is_none() {
                match KeepAlive::open(ep) {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        o.record_kept(Err(format!("connect: {e}")), ep);
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("opened above");
            let t = Instant::now();
            let r = match c.ping() {
                Ok(true) => Ok(t.elapsed().as_secs_f64()),
                Ok(false) => Err("answer was not 200 OK".to_string()),
                Err(e) => Err(e.to_string()),
            };
            if r.is_err() {
                *conn = None;
            }
            o.record_kept(r, ep);
        }
    }
    for (ep, o) in eps.iter().zip(&out) {
        assert!(!o.new.is_empty() && !o.kept.is_empty(), "no ping was answered via {ep:?}");
    }
    out
}

/// Ping timings of one endpoint, and what went wrong when a ping failed.
#[derive(Default)]
pub struct Pings {
    pub new: Vec<f64>,
    pub kept: Vec<f64>,
    pub new_failures: usize,
    pub kept_failures: usize,
}

impl Pings {
    fn record(&mut self, r: Result<f64, String>, ep: &Endpoint, what: &str) {
        match r {
            Ok(s) => self.new.push(s),
            Err(e) => {
                self.new_failures += 1;
                eprintln!("bench: ping ({what}) via {ep:?} failed: {e}");
            }
        }
    }

    fn record_kept(&mut self, r: Result<f64, String>, ep: &Endpoint) {
        match r {
            Ok(s) => self.kept.push(s),
            Err(e) => {
                self.kept_failures += 1;
                eprintln!("bench: ping (kept-alive) via {ep:?} failed: {e}");
            }
        }
    }
}

/// Counts bytes written to it.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Downloads `/blob` of `container` as a tar; it must hold at least `min` bytes.
fn download(ep: &Endpoint, container: &str, min: u64) -> Transfer {
    let mut sink = Count(0);
    let t = Instant::now();
    let path = format!("/v1.41/containers/{container}/archive?path=/blob");
    let (status, bytes) = http::exchange(ep, "GET", &path, None::<(File, u64)>, &mut sink)
        .unwrap_or_else(|e| panic!("download via {ep:?}: {e}"));
    let secs = t.elapsed().as_secs_f64();
    assert!(status == 200 && bytes >= min, "download via {ep:?}: status {status}, {bytes} bytes");
    Transfer { bytes, secs }
}

/// Uploads `tar` into `container`'s root (the engine unpacks it there).
fn upload(ep: &Endpoint, container: &str, tar: &Path) -> Transfer {
    let len = fs::metadata(tar).expect("upload tar").len();
    let body = File::open(tar).expect("open upload tar");
    let mut reply = Vec::new();
    let t = Instant::now();
    let path = format!("/v1.41/containers/{container}/archive?path=/");
    let (status, _) = http::exchange(ep, "PUT", &path, Some((body, len)), &mut reply)
        .unwrap_or_else(|e| panic!("upload via {ep:?}: {e}"));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(status, 200, "upload via {ep:?}: {}", String::from_utf8_lossy(&reply));
    Transfer { bytes: len, secs }
}

/// Download then upload of the big file through `ep`.
pub fn transfers(ep: &Endpoint, container: &str, tar: &Path) -> (Transfer, Transfer) {
    let min = fs::metadata(tar).expect("tar").len() / 2;
    (download(ep, container, min), upload(ep, container, tar))
}

/// A relay process we started; killed on drop.
pub struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_socket(path: &Path, child: &mut Child) {
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("relay for {} exited ({status})", path.display());
        }
        assert!(Instant::now() < end, "relay socket {} did not appear", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}

/// Our bridge's copy loop as a plain unix relay in front of `to`.
pub fn relay_ours(listen: &Path, to: &Path) -> Relay {
    let mut child = die_with_parent(&mut Command::new(skiff_bin()))
        .arg("bridge").arg("--listen").arg(listen).arg("--unix").arg(to)
        .stdout(Stdio::null())
        .spawn()
        .expect("start skiff bridge --unix");
    wait_socket(listen, &mut child);
    Relay(child)
}

/// socat (default options) as a plain unix relay in front of `to`.
pub fn relay_socat(listen: &Path, to: &Path) -> Relay {
    let mut child = die_with_parent(&mut Command::new("socat"))
        .arg(format!("UNIX-LISTEN:{},fork", listen.display()))
        .arg(format!("UNIX-CONNECT:{}", to.display()))
        .spawn()
        .expect("start socat (install it: make deps)");
    wait_socket(listen, &mut child);
    Relay(child)
}

/// The guest's socat: a privileged container listening on vsock `port` and
/// forwarding each connection to the engine socket, like our forwarder.
pub fn guest_socat(vm: &Vm, image_tar: &Path, tag: &str, name: &str, port: u32, ep: &Endpoint) {
    docker_load(vm, image_tar, tag);
    vm.docker_ok(&[
        "run", "-d", "--name", name, "--privileged", "-v", "/run/skiff:/run/skiff", tag,
        "socat", &format!("VSOCK-LISTEN:{port},fork,reuseaddr"), "UNIX-CONNECT:/run/skiff/engine.sock",
    ]);
    let end = Instant::now() + Duration::from_secs(30);
    while http::ping_new(ep).is_err() {
        assert!(Instant::now() < end, "the guest socat on port {port} does not answer; logs: {}", vm.docker_ok(&["logs", name]));
        thread::sleep(Duration::from_millis(200));
    }
}

//! Helpers for Skiff's end-to-end tests: boot the real ISO with the real
//! `skiff` CLI, and drive the engine with the real `docker` CLI.
//!
//! Nothing here is a mock. When the ISO, QEMU or docker is missing, the
//! helpers panic with a message saying what to build or install.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `tests/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The ISO under test: `SKIFF_ISO` or `out/skiff.iso`.
pub fn iso() -> PathBuf {
    let iso = std::env::var_os("SKIFF_ISO").map(PathBuf::from).unwrap_or_else(|| root().join("out/skiff.iso"));
    assert!(iso.is_file(), "no ISO at {}: run `make iso` (or `make test`, which builds it first)", iso.display());
    iso
}

/// The release `skiff` binary.
pub fn skiff_bin() -> PathBuf {
    let bin = root().join("target/release/skiff");
    assert!(bin.is_file(), "no {}: run `make host` (or `make test`)", bin.display());
    bin
}

/// The docker CLI: `SKIFF_DOCKER`, else Debian's /usr/bin/docker, else PATH.
pub fn docker_bin() -> PathBuf {
    if let Some(d) = std::env::var_os("SKIFF_DOCKER") {
        return d.into();
    }
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.is_file() { debian } else { PathBuf::from("docker") }
}

/// A private scratch folder, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        // Unix socket paths are limited to 108 bytes: stay under /tmp.
        let dir = std::env::temp_dir().join(format!("skiff-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch folder");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A VM booted by `skiff run`.
pub struct Vm {
    pub dir: PathBuf,
    pub docker_host: String,
    run: Child,
    /// Host seconds from `skiff run` start to the DOCKER_HOST line.
    pub ready_after: Duration,
}

impl Vm {
    /// Boots the ISO and waits for `skiff run` to print DOCKER_HOST.
    pub fn boot(dir: &Path) -> Vm {
        Self::boot_with(dir, &[])
    }

    /// Like [`Vm::boot`], with extra `skiff run` arguments.
    pub fn boot_with(dir: &Path, extra: &[&str]) -> Vm {
        let started = Instant::now();
        let mut run = Command::new(skiff_bin())
            .arg("run")
            .arg("--iso").arg(iso())
            .arg("--dir").arg(dir)
            .arg("--timeout").arg("400")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start skiff run");
        let stdout = run.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let docker_host = loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    if let Some(h) = line.strip_prefix("export DOCKER_HOST=") {
                        break h.to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = run.wait().expect("wait skiff run");
                    panic!("skiff run ended ({status}) without DOCKER_HOST; console:\n{}", console_tail(dir));
                }
            }
            if started.elapsed() > Duration::from_secs(450) {
                let _ = run.kill();
                panic!("no DOCKER_HOST after 450s; console:\n{}", console_tail(dir));
            }
        };
        Vm { dir: dir.to_path_buf(), docker_host, run, ready_after: started.elapsed() }
    }

    /// Runs the docker CLI against the VM.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_input(args, None)
    }

    /// Runs the docker CLI with `input` on its standard input.
    pub fn docker_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(docker_bin())
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker CLI");
        if let Some(data) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&data);
            });
        }
        wait_with_timeout(child, Duration::from_secs(180), &format!("docker {}", args.join(" ")))
    }

    /// Like [`Vm::docker`], but panics with the output unless it succeeds.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {} failed ({}):\n{}\n{}", args.join(" "), out.status,
            String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `skiff ARGS --dir DIR` (logs, shell, ...) against the VM, with
    /// `input` on its stdin (none: /dev/null).
    pub fn skiff(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(skiff_bin())
            .args(args)
            .arg("--dir").arg(&self.dir)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skiff");
        if let Some(data) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&data);
            });
        }
        wait_with_timeout(child, Duration::from_secs(120), &format!("skiff {}", args.join(" ")))
    }

    /// `skiff shell -c CMD`; panics with the output unless it exits 0.
    pub fn shell_ok(&self, cmd: &str) -> String {
        let out = self.skiff(&["shell", "-c", cmd], None);
        assert!(out.status.success(), "skiff shell -c {cmd:?} failed ({}):\n{}\n{}", out.status,
            String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// True if the engine answers `GET /_ping` with 200 through the bridge.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let path = self.docker_host.trim_start_matches("unix://");
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = [0u8; 12];
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: skiff\r\n\r\n").is_ok()
            && s.read_exact(&mut head).is_ok()
            && head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
    }

    /// The guest's serial console so far.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Presses the power button (`skiff stop`) and waits for `skiff run` to end.
    /// Returns how long the shutdown took.
    pub fn shutdown(mut self) -> Duration {
        let t = Instant::now();
        let status = Command::new(skiff_bin()).arg("stop").arg("--dir").arg(&self.dir).status().expect("skiff stop");
        assert!(status.success(), "skiff stop failed");
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.run.try_wait().expect("wait skiff run") {
                assert!(status.success(), "skiff run ended with {status}");
                return t.elapsed();
            }
            assert!(Instant::now() < end, "VM did not power off within 90s; console:\n{}", console_tail(&self.dir));
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Reached only when a test failed half-way: make sure QEMU goes too
        // (skiff run's children die with it).
        if let Ok(None) = self.run.try_wait() {
            let _ = self.run.kill();
            let _ = self.run.wait();
        }
    }
}

/// The last 60 lines of a VM's console log.
pub fn console_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Waits for a child, killing it after `limit`.
pub fn wait_with_timeout(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("collect output"),
        Err(_) => {
            // SAFETY: kill(2) on a pid we started; at worst it is already gone.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// Writes a `docker load` archive of a one-layer image holding Debian's
/// static busybox (no registry is reachable here). Returns the tar's path.
pub fn busybox_image(dir: &Path, tag: &str) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.is_file(), "no /bin/busybox: install Debian's busybox-static (make deps does)");
    let rootfs = dir.join("layer-root");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "sleep", "ls", "wget", "nslookup", "true", "false", "env", "hostname"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let image = dir.join("image");
    fs::create_dir_all(image.join("layer")).unwrap();
    let layer = image.join("layer/layer.tar");
    run_ok(Command::new("tar").arg("-C").arg(&rootfs).arg("--owner=0").arg("--group=0").arg("-cf").arg(&layer).arg("."));
    let diff_id = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    let config_path = image.join("config.json");
    fs::write(&config_path, &config).unwrap();
    let config_id = sha256(&config_path);
    fs::rename(&config_path, image.join(format!("{config_id}.json"))).unwrap();
    fs::write(
        image.join("manifest.json"),
        format!(r#"[{{"Config":"{config_id}.json","RepoTags":["{tag}"],"Layers":["layer/layer.tar"]}}]"#),
    )
    .unwrap();
    let tar = dir.join("busybox.tar");
    run_ok(Command::new("tar").arg("-C").arg(&image).arg("-cf").arg(&tar).arg("."));
    tar
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().expect("sha256sum output").to_string()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

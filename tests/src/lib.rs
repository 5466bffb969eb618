//! Helpers for Skiff's end-to-end tests: boot the real ISO with the real
//! `skiff` CLI, and drive the engine with the real `docker` CLI.
//!
//! Nothing here is a mock. When the ISO, QEMU or docker is missing, the
//! helpers panic with a message saying what to build or install.

pub mod bench;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
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

/// The aarch64 ISO under test: `SKIFF_ISO_AARCH64` or `out/skiff-aarch64.iso`.
pub fn iso_aarch64() -> PathBuf {
    let iso = std::env::var_os("SKIFF_ISO_AARCH64").map(PathBuf::from).unwrap_or_else(|| root().join("out/skiff-aarch64.iso"));
    assert!(iso.is_file(), "no ISO at {}: run `make iso ARCH=aarch64` (or `make test`)", iso.display());
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
        // Private, as the CLI wants its state folders (it would tighten it).
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod scratch folder");
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
    /// What `skiff run` reported on stderr: QEMU start to the first answered ping.
    reported_ready: Arc<Mutex<Option<Duration>>>,
}

impl Vm {
    /// Boots the ISO and waits for `skiff run` to print DOCKER_HOST.
    pub fn boot(dir: &Path) -> Vm {
        Self::boot_with(dir, &[])
    }

    /// Like [`Vm::boot`], with extra `skiff run` arguments.
    pub fn boot_with(dir: &Path, extra: &[&str]) -> Vm {
        Self::boot_wrapped(dir, &[], extra)
    }

    /// Like [`Vm::boot_with`], with `skiff run` started through `wrapper`
    /// (a command and its arguments, e.g. `unshare -m ...`; empty for none).
    pub fn boot_wrapped(dir: &Path, wrapper: &[&str], extra: &[&str]) -> Vm {
        Self::boot_iso(dir, &iso(), wrapper, extra)
    }

    /// Like [`Vm::boot_wrapped`], booting the ISO at `iso` (e.g. [`iso_aarch64`]).
    pub fn boot_iso(dir: &Path, iso: &Path, wrapper: &[&str], extra: &[&str]) -> Vm {
        let started = Instant::now();
        let mut cmd = skiff_wrapped(wrapper);
        let mut run = die_with_parent(&mut cmd)
            .arg("run")
            .arg("--iso").arg(iso)
            .arg("--dir").arg(dir)
            .arg("--timeout").arg("400")
            // These tests start from RAM (or the --disk they give); the
            // state folder's persistent disk is tested in lifecycle.rs.
            .arg("--ephemeral")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skiff run");
        let reported_ready = Arc::new(Mutex::new(None));
        let stderr = run.stderr.take().expect("stderr");
        let reported = Arc::clone(&reported_ready);
        thread::spawn(move || {
            // Passed through, and the engine-ready time picked out.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Some(t) = parse_ready_line(&line) {
                    *reported.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                }
            }
        });
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
        let vm = Vm { dir: dir.to_path_buf(), docker_host, run, ready_after: started.elapsed(), reported_ready };
        // The events come over their own connection: the boot's notes are
        // all in once its engine-ready is (a VM whose guest refuses the
        // host hears none; its tests say what they expect instead).
        if !vm.wait_event(Duration::from_secs(60), |e| *e == skiff_proto::events::Event::EngineReady) {
            eprintln!("skiff-tests: no engine-ready event in {} within 60 s of DOCKER_HOST", dir.join("events").display());
        }
        vm
    }

    /// `skiff run`'s own figure: QEMU start to the first `GET /_ping`
    /// answered through the bridge (it prints it just after DOCKER_HOST).
    pub fn qemu_to_ping(&self) -> Option<Duration> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let got = *self.reported_ready.lock().unwrap_or_else(|e| e.into_inner());
            if got.is_some() || Instant::now() > end {
                return got;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bridge's socket path (DOCKER_HOST without `unix://`).
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.docker_host.trim_start_matches("unix://"))
    }

    /// Runs the docker CLI against the VM.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_input(args, None)
    }

    /// Runs the docker CLI with `input` on its standard input.
    pub fn docker_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(docker_bin());
        cmd.args(args).env("DOCKER_HOST", &self.docker_host);
        run_with_input(&mut cmd, input, Duration::from_secs(180), &format!("docker {}", args.join(" ")))
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
        let mut cmd = Command::new(skiff_bin());
        cmd.args(args).arg("--dir").arg(&self.dir);
        run_with_input(&mut cmd, input, Duration::from_secs(120), &format!("skiff {}", args.join(" ")))
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
        let path = self.docker_host.trim_start_matches("unix://");
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        skiff_proto::http::ping(&mut s).unwrap_or(false)
    }

    /// The VM's secret (`skiff run` writes it to DIR/secret).
    pub fn secret(&self) -> Option<skiff_proto::auth::Secret> {
        skiff_proto::auth::Secret::from_hex(&fs::read_to_string(self.dir.join("secret")).ok()?).ok()
    }

    /// A connection to guest `port` over the hybrid-vsock socket, handshake
    /// done and nothing else sent (no secret: the test decides what to send).
    pub fn raw_vsock(&self, port: u32) -> std::io::Result<std::os::unix::net::UnixStream> {
        let mut s = std::os::unix::net::UnixStream::connect(self.dir.join("vsock.sock"))?;
        skiff_proto::hybrid::handshake(&mut s, port)?;
        Ok(s)
    }

    /// A connection to guest `port` that has done the SKIFF-AUTH/2
    /// handshake with the VM's secret, as the host CLI does (plain hybrid
    /// handshake only, if the VM has no secret); nothing else sent.
    pub fn authed_vsock(&self, port: u32) -> std::io::Result<std::os::unix::net::UnixStream> {
        let mut s = self.raw_vsock(port)?;
        if let Some(secret) = self.secret() {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            skiff_proto::auth::authenticate(&mut s, &secret, &skiff_proto::auth::nonce()?)?;
            s.set_read_timeout(None)?;
        }
        Ok(s)
    }

    /// The guest's events so far, as `skiff run` copied them to DIR/events.
    pub fn events(&self) -> Vec<skiff_proto::events::Stamped> {
        events_in(&self.dir)
    }

    /// Waits up to `limit` for the guest to report an event that `matches`.
    pub fn wait_event(&self, limit: Duration, matches: impl Fn(&skiff_proto::events::Event) -> bool) -> bool {
        let end = Instant::now() + limit;
        while !self.events().iter().any(|s| matches(&s.event)) {
            if Instant::now() > end {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// The subjects of the guest's notes of kind `note` so far, in order.
    pub fn noted(&self, note: skiff_proto::events::Note) -> Vec<String> {
        noted_in(&self.dir, note)
    }

    /// Waits up to `limit` for the guest to note `note` about `subject`.
    pub fn wait_noted(&self, limit: Duration, note: skiff_proto::events::Note, subject: &str) -> bool {
        self.wait_event(limit, |e| matches!(e, skiff_proto::events::Event::Noted { note: n, subject: s } if *n == note && s == subject))
    }

    /// The guest's serial console so far.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Presses the power button (`skiff stop`) and waits for `skiff run` to end.
    /// Returns how long the shutdown took.
    pub fn shutdown(self) -> Duration {
        self.shutdown_wrapped(&[])
    }

    /// Like [`Vm::shutdown`], with `skiff stop` started through `wrapper`
    /// (as [`Vm::boot_wrapped`] started `skiff run`: the state folder's owner).
    pub fn shutdown_wrapped(mut self, wrapper: &[&str]) -> Duration {
        let t = Instant::now();
        let mut cmd = skiff_wrapped(wrapper);
        let status = cmd.arg("stop").arg("--dir").arg(&self.dir).status().expect("skiff stop");
        assert!(status.success(), "skiff stop failed");
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.run.try_wait().expect("wait skiff run") {
                assert!(status.success(), "skiff run ended with {status}");
                return t.elapsed();
            }
            assert!(Instant::now() < end, "VM did not power off within 120s; console:\n{}", console_tail(&self.dir));
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Vm {
    /// The pid of the QEMU process that `skiff run` started.
    pub fn qemu_pid(&self) -> Option<i32> {
        let parent = self.run.id().to_string();
        fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?;
            (ppid == parent && head.contains("(qemu-system")).then(|| e.file_name().to_str()?.parse().ok())?
        })
    }

    /// QEMU's resident memory in bytes (the guest RAM it holds, shared or not).
    pub fn qemu_rss(&self) -> u64 {
        let pid = self.qemu_pid().expect("no QEMU child of skiff run");
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("QEMU's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in QEMU's status");
        kib * 1024
    }

    /// Starts container `name` (from `image`, with busybox) that fills `mib`
    /// MiB of a tmpfs of its own and holds it; returns once it is full.
    /// `docker rm -f name` frees it.
    pub fn hold_memory(&self, image: &str, name: &str, mib: u64) {
        let tmpfs = format!("/t:size={}m", mib + 64);
        let fill = format!("dd if=/dev/zero of=/t/fill bs=1M count={mib} 2>/dev/null && echo filled && sleep 3600");
        self.docker_ok(&["run", "-d", "--name", name, "--tmpfs", &tmpfs, image, "sh", "-c", &fill]);
        let began = Instant::now();
        while !self.docker_ok(&["logs", name]).contains("filled") {
            assert!(began.elapsed() < Duration::from_secs(180), "container {name} did not fill {mib} MiB of tmpfs in 180 s");
            thread::sleep(Duration::from_secs(1));
        }
    }

    /// Pulls the plug: `kill -9` of QEMU, as a power loss would. Waits for
    /// `skiff run` to notice and end.
    pub fn kill_hard(mut self) {
        let pid = self.qemu_pid().expect("no QEMU child of skiff run");
        // SAFETY: kill(2) on the QEMU process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
        let end = Instant::now() + Duration::from_secs(30);
        while self.run.try_wait().expect("wait skiff run").is_none() {
            assert!(Instant::now() < end, "skiff run did not end after QEMU was killed");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The smoke story, for any architecture: the engine is Podman 5 on
/// overlay; `image` (a `docker load` archive tagged `skiff-test/busybox`)
/// loads; containers run, return their exit code, read stdin to its EOF
/// (half-close through the bridge), keep slow output, and are listed,
/// logged and removed.
pub fn smoke_story(vm: &Vm, image: &Path) {
    let version = vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.trim().starts_with('5'), "server should be podman 5.x, got {version:?}");
    let info = vm.docker_ok(&["info", "--format", "{{.OperatingSystem}} {{.Driver}}"]);
    eprintln!("smoke: docker info: {}", info.trim());
    assert!(info.contains("overlay"), "storage driver should be overlay: {info}");

    let loaded = vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    assert!(loaded.contains("skiff-test/busybox"), "load output: {loaded}");
    assert!(vm.docker_ok(&["images"]).contains("skiff-test/busybox"));

    // Output of a container started without -i: the CLI half-closes its
    // request side at once and must still receive everything.
    let hello = vm.docker_ok(&["run", "--rm", "skiff-test/busybox", "echo", "hello"]);
    assert_eq!(hello.trim(), "hello");

    // A container's exit code comes back as the CLI's.
    let failed = vm.docker(&["run", "--rm", "skiff-test/busybox", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&failed.stderr));

    // stdin's EOF must reach the container through the bridge (half-close).
    let echoed = vm.docker_with_input(&["run", "--rm", "-i", "skiff-test/busybox", "cat"], Some(b"x\n"));
    assert!(echoed.status.success(), "docker run -i failed: {}", String::from_utf8_lossy(&echoed.stderr));
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "x\n");

    // A slow container's output is not cut off.
    let slow = vm.docker_ok(&["run", "--rm", "skiff-test/busybox", "sh", "-c", "sleep 1; echo late"]);
    assert_eq!(slow.trim(), "late");

    vm.docker_ok(&["run", "--name", "kept", "skiff-test/busybox", "echo", "kept output"]);
    assert!(vm.docker_ok(&["ps", "-a"]).contains("kept"));
    assert_eq!(vm.docker_ok(&["logs", "kept"]).trim(), "kept output");
    vm.docker_ok(&["rm", "kept"]);
    assert!(!vm.docker_ok(&["ps", "-a"]).contains("kept"));
}

/// The end of the smoke story: the guest reported its engine ready, and
/// the power button (`skiff stop`) shuts it down cleanly (it reported
/// powering off, its shutdown done).
pub fn power_button_story(vm: Vm) {
    use skiff_proto::events::Event;
    assert!(vm.events().iter().any(|s| s.event == Event::EngineReady), "no engine-ready event: {:?}", vm.events());
    let dir = vm.dir.clone();
    let took = vm.shutdown();
    eprintln!("smoke: power button to QEMU exit: {:.1}s", took.as_secs_f64());
    assert!(powered_off_cleanly(&dir), "no powering-off event (clean shutdown); console:\n{}", console_tail(&dir));
}

/// The events `skiff run` copied to `dir`/events (complete lines only).
pub fn events_in(dir: &Path) -> Vec<skiff_proto::events::Stamped> {
    let text = fs::read_to_string(dir.join("events")).unwrap_or_default();
    text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')).filter_map(|l| skiff_proto::events::parse(l.as_bytes()).ok().flatten()).collect()
}

/// The subjects of the notes of kind `note` among the events in `dir`, in order.
pub fn noted_in(dir: &Path, note: skiff_proto::events::Note) -> Vec<String> {
    events_in(dir)
        .into_iter()
        .filter_map(|s| match s.event {
            skiff_proto::events::Event::Noted { note: n, subject } if n == note => Some(subject),
            _ => None,
        })
        .collect()
}

/// True if one line of `console` names every item of `data` (a device, a
/// label, a path, a key): the guest told the user about them, whatever
/// its words. The events say what happened; this only checks that people
/// were told, with the facts they need.
pub fn names_all(console: &str, data: &[&str]) -> bool {
    console.lines().any(|l| data.iter().all(|d| l.contains(d)))
}

/// True if the guest of the VM in `dir` reported powering off (its
/// shutdown done, disks unmounted).
pub fn powered_off_cleanly(dir: &Path) -> bool {
    events_in(dir).iter().any(|s| s.event == skiff_proto::events::Event::PoweringOff)
}

/// The device name the guest gives the ISO on each medium of `skiff run
/// --medium`: a CD (IDE or virtio-scsi), a virtio disk, a USB stick (SCSI disk).
pub fn medium_device_prefix(medium: &str) -> &'static str {
    match medium {
        "cd" => "/dev/sr",
        "disk" => "/dev/vd",
        "usb" => "/dev/sd",
        other => panic!("unknown medium {other}"),
    }
}

/// One cell of the boot matrix: boots `iso` from `medium` (cd, disk, usb)
/// with the firmware arguments `firmware` (none: BIOS), and checks that the
/// engine answers `/_ping` over vsock, that the kernel came up under the
/// expected firmware and that the init found /usr on that medium. The VM is
/// then killed (clean shutdown is the smoke tests' business).
pub fn boot_cell(iso: &Path, medium: &str, firmware: &[&str], uefi: bool) {
    let name = format!("boot-{}-{medium}", if uefi { "uefi" } else { "bios" });
    let scratch = Scratch::new(&name);
    // Through the firmware and GRUB, as a real machine boots (not QEMU's
    // direct kernel boot, skiff run's default under BIOS from a CD).
    let mut args = vec!["--medium", medium, "--firmware-boot"];
    args.extend_from_slice(firmware);
    let vm = Vm::boot_iso(&scratch.0, iso, &[], &args);
    eprintln!("{name}: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());
    assert!(vm.ping(), "{name}: no answer to GET /_ping over vsock");
    let console = vm.console();
    assert_eq!(console.contains("efi: EFI v"), uefi, "{name}: the kernel should report (only) an EFI boot");
    assert!(console.contains("BOOT_IMAGE=/boot/vmlinuz"), "{name}: GRUB should have booted the kernel");
    let from = vm.noted(skiff_proto::events::Note::UsrFrom);
    let wanted = medium_device_prefix(medium);
    assert!(from.len() == 1 && from[0].starts_with(wanted), "{name}: /usr should come from the {medium} ({wanted}...): {from:?} in {:?}", vm.events());
}

/// The per-step lines of the guest's shutdown log (`shutdown: ... done in Ns`),
/// to print for people; checks read the events.
pub fn shutdown_steps(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.split_once("shutdown: ").map(|(_, rest)| rest.trim().to_string()))
        .filter(|l| l.contains(" done in ") || l.starts_with("powering off"))
        .collect()
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

/// The `skiff` command, started through `wrapper` (a command and its
/// arguments, e.g. `unshare -m`; empty for none).
fn skiff_wrapped(wrapper: &[&str]) -> Command {
    match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(skiff_bin());
            c
        }
        None => Command::new(skiff_bin()),
    }
}

/// Makes a child die (SIGKILL) when the thread that started it ends, so a
/// test or bench that aborts leaves no VM behind (`skiff run` passes the
/// same on to QEMU).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Makes this test process the reaper of orphans below it
/// (`PR_SET_CHILD_SUBREAPER`): the `skiff run` that `skiff start` leaves
/// detached is then adopted by the test, which [`reap`]s it and sees its
/// exit status, instead of leaving it to the machine's PID 1.
pub fn adopt_orphans() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "cannot become a child subreaper: {}", std::io::Error::last_os_error());
}

/// Waits up to `limit` for process `pid` (a child, or an orphan adopted
/// after [`adopt_orphans`]) to exit, and reaps it. Its exit status, or
/// `None` if it is still running at the limit or is not ours to wait for.
pub fn reap(pid: i32, limit: Duration) -> Option<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let end = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the exit status into `status`, a valid i32.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 if Instant::now() < end => thread::sleep(Duration::from_millis(50)),
            p if p == pid => return Some(std::process::ExitStatus::from_raw(status)),
            _ => return None,
        }
    }
}

/// The seconds in `skiff: engine ready after 12.34s; ...`.
pub fn parse_ready_line(line: &str) -> Option<Duration> {
    let rest = line.strip_prefix("skiff: engine ready after ")?;
    let secs: f64 = rest.split('s').next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The last 60 lines of a VM's console log.
pub fn console_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Runs `cmd` with `input` on its stdin (none: /dev/null), collecting its
/// output; kills it after `limit`.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    wait_with_timeout(child, limit, what)
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

/// Builds a test-only binary of this crate as a static executable (musl,
/// as the Makefile builds the init), to run in a busybox container in the
/// guest. Returns its path.
pub fn static_test_bin(name: &str) -> PathBuf {
    let target = "x86_64-unknown-linux-musl";
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["build", "--release", "--locked", "-p", "skiff-tests", "--bin", name, "--target", target])
        .output()
        .expect("run cargo");
    assert!(out.status.success(), "cargo build --bin {name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    root().join("target").join(target).join("release").join(name)
}

/// Raises this process's open-file limit to its hard limit (children such
/// as `skiff run` and vhost-device-vsock inherit it).
pub fn raise_open_files() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

/// Writes a `docker load` archive of a one-layer image holding Debian's
/// static busybox (no registry is reachable here). Returns the tar's path.
pub fn busybox_image(dir: &Path, tag: &str) -> PathBuf {
    busybox_image_with_payload(dir, tag, 0)
}

/// Like [`busybox_image`], with `payload_mib` MiB of random bytes in
/// `/payload` (a slow image to load).
pub fn busybox_image_with_payload(dir: &Path, tag: &str, payload_mib: usize) -> PathBuf {
    let rootfs = dir.join("layer-root");
    busybox_root(&rootfs);
    if payload_mib > 0 {
        use std::io::Read;
        let mut bytes = vec![0u8; payload_mib << 20];
        fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
        fs::write(rootfs.join("payload"), bytes).unwrap();
    }
    image_tar(dir, &rootfs, tag, r#""Env":["PATH=/bin"],"Cmd":["sh"]"#)
}

/// Fills `rootfs` (made anew) with Debian's static busybox and its usual applet links.
pub fn busybox_root(rootfs: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.is_file(), "no /bin/busybox: install Debian's busybox-static (make deps does)");
    busybox_root_from(rootfs, busybox);
}

/// Like [`busybox_root`], with the static busybox binary at `busybox`
/// (another architecture's, for instance).
pub fn busybox_root_from(rootfs: &Path, busybox: &Path) {
    let _ = fs::remove_dir_all(rootfs);
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "ls", "wget", "nslookup", "true", "false", "env", "hostname", "httpd", "ip", "df", "mkdir", "dd",
        "grep", "sha256sum",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
}

/// Writes a `docker load` archive (docker-archive format) of a one-layer
/// image made of the folder `rootfs`; `config` is the JSON members of the
/// image's run config (e.g. `"Env":[...],"Cmd":[...]`). Returns the tar's path,
/// `DIR/<last part of the tag's name>.tar`; `DIR/image` is its scratch folder.
pub fn image_tar(dir: &Path, rootfs: &Path, tag: &str, config: &str) -> PathBuf {
    image_tar_for("amd64", dir, rootfs, tag, config)
}

/// Like [`image_tar`], for the image architecture `arch` (OCI names: amd64, arm64).
pub fn image_tar_for(arch: &str, dir: &Path, rootfs: &Path, tag: &str, config: &str) -> PathBuf {
    let image = dir.join("image");
    let _ = fs::remove_dir_all(&image);
    fs::create_dir_all(image.join("layer")).unwrap();
    let layer = image.join("layer/layer.tar");
    run_ok(Command::new("tar").arg("-C").arg(rootfs).arg("--owner=0").arg("--group=0").arg("-cf").arg(&layer).arg("."));
    let diff_id = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{{config}}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
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
    let name = tag.rsplit('/').next().unwrap_or(tag).split(':').next().unwrap_or(tag);
    let tar = dir.join(format!("{name}.tar"));
    run_ok(Command::new("tar").arg("-C").arg(&image).arg("-cf").arg(&tar).arg("."));
    fs::remove_dir_all(&image).unwrap();
    tar
}

/// The hex SHA-256 of a file.
pub fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().expect("sha256sum output").to_string()
}

/// A sparse raw disk image of `size` bytes, all zeros: a blank disk.
pub fn blank_disk(path: &Path, size: u64) {
    let f = fs::File::create(path).expect("create disk image");
    f.set_len(size).expect("size disk image");
}

/// The byte offset of the first partition in a raw image's GPT (512-byte
/// sectors), read the way firmware does: header at LBA 1, entries after it.
pub fn gpt_first_partition(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut head = vec![0u8; 34 * 512];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[512..520] != b"EFI PART" {
        return None;
    }
    let entries_lba = u64::from_le_bytes(head[512 + 72..512 + 80].try_into().ok()?) as usize;
    let entry = head.get(entries_lba * 512..entries_lba * 512 + 128)?;
    let first_lba = u64::from_le_bytes(entry[32..40].try_into().ok()?);
    (first_lba > 0).then_some(first_lba * 512)
}

/// Runs a host e2fsprogs tool (`e2fsck -fn`, `debugfs -R ...`) on the ext4
/// filesystem at byte `offset` of a raw image (e2fsprogs' `?offset=` syntax,
/// so no loop device is needed).
pub fn e2fs_tool(tool: &str, args: &[&str], image: &Path, offset: u64) -> Output {
    Command::new(tool)
        .args(args)
        .arg(format!("{}?offset={offset}", image.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (install e2fsprogs): {e}"))
}

/// sha256 of a file, as hex.
/// Bytes a file takes on the host's disk (a sparse image's allocated size).
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).blocks() * 512
}

pub fn sha256_file(path: &Path) -> String {
    sha256(path)
}

/// Runs a command, panicking with its stderr unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_seconds() {
        let line = "skiff: engine ready after 12.34s; Ctrl-C or `skiff stop` shuts the VM down";
        assert_eq!(parse_ready_line(line), Some(Duration::from_millis(12340)));
        assert_eq!(parse_ready_line("skiff: booting out/skiff.iso"), None);
        assert_eq!(parse_ready_line("skiff: engine ready after xs"), None);
    }
}

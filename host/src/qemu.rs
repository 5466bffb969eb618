//! `skiff run`: QEMU with the ISO, a vsock device, and the bridge.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use skiff_proto::DEFAULT_ENGINE_PORT;

use crate::bridge::{self, Target};

/// Options of `skiff run`.
#[derive(Args, Debug)]
pub struct RunOptions {
    /// The Skiff ISO to boot.
    #[arg(long, env = "SKIFF_ISO", default_value = "out/skiff.iso")]
    pub iso: PathBuf,
    /// State folder: docker.sock, console.log and QEMU's sockets go here.
    #[arg(long, env = "SKIFF_DIR", default_value_os_t = default_dir())]
    pub dir: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// QEMU accelerator: tcg (works everywhere) or kvm.
    #[arg(long, env = "SKIFF_ACCEL", default_value = "tcg")]
    pub accel: String,
    /// Guest vsock context id.
    #[arg(long, default_value_t = 3)]
    pub cid: u32,
    /// Guest vsock port of the engine.
    #[arg(long, default_value_t = DEFAULT_ENGINE_PORT)]
    pub port: u32,
    /// Seconds to wait for the engine to answer before giving up.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Boot with UEFI firmware (OVMF) instead of BIOS.
    #[arg(long)]
    pub uefi: bool,
    /// UEFI firmware image used with --uefi.
    #[arg(long, default_value = "/usr/share/ovmf/OVMF.fd")]
    pub ovmf: PathBuf,
    /// Append a kernel parameter (repeat per parameter), e.g. `skiff.debug`.
    /// The ISO's kernel and initramfs are then booted directly by QEMU
    /// (extracted with xorriso), with the ISO still attached.
    #[arg(long = "kernel-arg")]
    pub kernel_args: Vec<String>,
    /// A data disk image (qcow2 or raw) attached as a virtio disk; repeat for
    /// more. A blank one becomes the VM's persistent data disk.
    #[arg(long = "disk")]
    pub disks: Vec<PathBuf>,
    /// The guest's network, as a QEMU `-nic` value: user-mode NAT with
    /// DHCP by default; e.g. `user,model=virtio-net-pci,hostfwd=tcp::8080-:80`,
    /// a `socket,...` or `tap,...` backend, or `none`.
    #[arg(long, default_value = "user,model=virtio-net-pci")]
    pub net: String,
    /// An extra QEMU argument (repeat the flag for each one).
    #[arg(long = "qemu-arg", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
}

/// The kernel command line of the ISO's boot entry (keep in step with image/grub.cfg).
const BASE_CMDLINE: &str = "console=tty0 console=ttyS0,115200 panic=10";

/// Copies the ISO's kernel and initramfs into `dir` (for direct kernel boot).
fn extract_boot_files(iso: &Path, dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initramfs.img");
    let status = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"]).arg(iso)
        .arg("-extract").arg("/boot/vmlinuz").arg(&kernel)
        .arg("-extract").arg("/boot/initramfs.img").arg(&initrd)
        .stdout(Stdio::null()).stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::other(format!("--kernel-arg needs xorriso to read the ISO: {e}")))?;
    if !status.success() || !kernel.is_file() || !initrd.is_file() {
        return Err(io::Error::other(format!("cannot extract the kernel and initramfs from {}", iso.display())));
    }
    Ok((kernel, initrd))
}

/// QEMU's `-drive` value for a data disk. The format is stated, not
/// guessed: QEMU refuses writes to sector 0 of a guessed raw image, which is
/// where the partition table goes.
fn drive_arg(disk: &Path) -> io::Result<String> {
    let mut magic = [0u8; 4];
    fs::File::open(disk)
        .and_then(|mut f| io::Read::read(&mut f, &mut magic))
        .map_err(|e| io::Error::other(format!("cannot read the disk image {}: {e}", disk.display())))?;
    let format = disk_format(&magic);
    let path = fs::canonicalize(disk)?.display().to_string().replace(',', ",,");
    Ok(format!("file={path},if=virtio,format={format},discard=unmap"))
}

/// "qcow2" for a QCOW image (magic `QFI\xfb`), else "raw".
pub fn disk_format(magic: &[u8]) -> &'static str {
    if magic.starts_with(b"QFI\xfb") { "qcow2" } else { "raw" }
}

/// `~/.skiff`, or `./.skiff` without a home.
pub fn default_dir() -> PathBuf {
    env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".skiff")
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Children die with us: a killed `skiff run` must not leave QEMU behind.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Finds a program in PATH or in cargo's bin folder.
fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(cargo) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn wait_for_path(path: &Path, child: &mut Child, limit: Duration) -> io::Result<()> {
    let end = Instant::now() + limit;
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("vhost-device-vsock exited early ({status})")));
        }
        if Instant::now() > end {
            return Err(io::Error::other(format!("{} did not appear", path.display())));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Boots the ISO, bridges the engine socket, prints DOCKER_HOST once the
/// engine answers, and runs until QEMU exits or we are told to stop.
pub fn run(o: &RunOptions) -> io::Result<()> {
    if !o.iso.is_file() {
        return Err(io::Error::other(format!("no ISO at {} (build it with `make iso`)", o.iso.display())));
    }
    fs::create_dir_all(&o.dir)?;
    let dir = fs::canonicalize(&o.dir)?;
    let console = dir.join("console.log");
    let monitor = dir.join("monitor.sock");
    let docker_sock = dir.join("docker.sock");
    catch_signals();

    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", &o.accel, "-m", &o.memory.to_string(), "-smp", &o.cpus.to_string()])
        .args(["-display", "none", "-no-reboot", "-boot", "d"])
        .arg("-cdrom").arg(&o.iso)
        .arg("-serial").arg(format!("file:{}", console.display()))
        .arg("-monitor").arg(format!("unix:{},server,nowait", monitor.display()))
        .args(["-nic", &o.net]);

    let mut helper = None;
    let target = if Path::new("/dev/vhost-vsock").exists() {
        qemu.args(["-machine", "q35", "-device", &format!("vhost-vsock-pci,guest-cid={}", o.cid)]);
        Target::Cid(o.cid)
    } else {
        // No kernel vhost-vsock: run the vsock device in user space.
        let prog = find_program("vhost-device-vsock").ok_or_else(|| {
            io::Error::other("no /dev/vhost-vsock and no vhost-device-vsock (cargo install vhost-device-vsock)")
        })?;
        let vhost = dir.join("vhost.sock");
        let uds = dir.join("vsock.sock");
        for stale in [&vhost, &uds] {
            let _ = fs::remove_file(stale);
        }
        let mut child = die_with_parent(
            Command::new(prog)
                .arg("--vm")
                .arg(format!("guest-cid={},socket={},uds-path={}", o.cid, vhost.display(), uds.display()))
                .stdout(Stdio::null()),
        )
        .spawn()?;
        wait_for_path(&vhost, &mut child, Duration::from_secs(10))?;
        helper = Some(child);
        qemu.args(["-object", &format!("memory-backend-memfd,id=mem,size={}M,share=on", o.memory)])
            .args(["-machine", "q35,memory-backend=mem"])
            .arg("-chardev").arg(format!("socket,id=vsock0,path={}", vhost.display()))
            .args(["-device", "vhost-user-vsock-pci,chardev=vsock0"]);
        Target::Uds(uds)
    };
    if o.uefi {
        qemu.arg("-bios").arg(&o.ovmf);
    }
    if !o.kernel_args.is_empty() {
        let (kernel, initrd) = extract_boot_files(&o.iso, &dir)?;
        qemu.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd)
            .arg("-append").arg(format!("{BASE_CMDLINE} {}", o.kernel_args.join(" ")));
    }
    for disk in &o.disks {
        qemu.arg("-drive").arg(drive_arg(disk)?);
    }
    qemu.args(&o.qemu_args);

    let _ = fs::remove_file(&console);
    eprintln!("skiff: booting {} (serial console: {})", o.iso.display(), console.display());
    let started = Instant::now();
    let mut vm = die_with_parent(&mut qemu).stdin(Stdio::null()).spawn()?;

    let listener = bridge::bind(&docker_sock)?;
    let (t, port) = (target.clone(), o.port);
    thread::spawn(move || bridge::serve(listener, t, port));

    bridge::QUIET.store(true, Ordering::Relaxed);
    let ready = wait_ready(o, &docker_sock, &mut vm, started);
    let ready_after = started.elapsed();
    bridge::QUIET.store(false, Ordering::Relaxed);
    let result = ready.and_then(|()| {
        println!("export DOCKER_HOST=unix://{}", docker_sock.display());
        io::stdout().flush()?;
        eprintln!("skiff: engine ready after {:.2}s; Ctrl-C or `skiff stop` shuts the VM down", ready_after.as_secs_f64());
        wait_exit(&monitor, &mut vm)
    });
    if result.is_err() {
        let _ = vm.kill();
        let _ = vm.wait();
    }
    if let Some(mut h) = helper {
        let _ = h.kill();
        let _ = h.wait();
    }
    let _ = fs::remove_file(&docker_sock);
    result
}

fn wait_ready(o: &RunOptions, sock: &Path, vm: &mut Child, started: Instant) -> io::Result<()> {
    let limit = Duration::from_secs(o.timeout);
    loop {
        if let Some(status) = vm.try_wait()? {
            return Err(io::Error::other(format!("QEMU exited before the engine answered ({status}); see the console log")));
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(io::Error::other("interrupted"));
        }
        if let Ok(true) = bridge::ping(sock) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(io::Error::other(format!("the engine did not answer within {}s; see the console log", o.timeout)));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for QEMU to exit; on a signal, presses the power button first and
/// gives the guest 60 s to shut down cleanly.
fn wait_exit(monitor: &Path, vm: &mut Child) -> io::Result<()> {
    let mut deadline: Option<Instant> = None;
    loop {
        if let Some(status) = vm.try_wait()? {
            eprintln!("skiff: VM exited ({status})");
            return Ok(());
        }
        if deadline.is_none() && STOP.load(Ordering::SeqCst) {
            eprintln!("skiff: shutting the VM down");
            if let Err(e) = powerdown(monitor) {
                eprintln!("skiff: cannot press the power button: {e}");
            }
            deadline = Some(Instant::now() + Duration::from_secs(60));
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            eprintln!("skiff: the VM did not shut down within 60s; killing it");
            vm.kill()?;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `system_powerdown` (ACPI power button) on QEMU's monitor.
fn powerdown(monitor: &Path) -> io::Result<()> {
    let mut s = UnixStream::connect(monitor)?;
    s.write_all(b"system_powerdown\n")?;
    thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// `skiff stop`.
pub fn stop(dir: &Path) -> io::Result<()> {
    powerdown(&dir.join("monitor.sock"))
        .map_err(|e| io::Error::other(format!("no VM running in {} ({e})", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_format_from_magic() {
        assert_eq!(disk_format(b"QFI\xfb"), "qcow2");
        assert_eq!(disk_format(&[0, 0, 0, 0]), "raw");
        assert_eq!(disk_format(b""), "raw");
    }

    #[test]
    fn drive_arg_names_the_format_and_escapes_commas() {
        let dir = std::env::temp_dir().join(format!("skiff-drive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("a,b.img");
        fs::write(&raw, [0u8; 512]).unwrap();
        let arg = drive_arg(&raw).unwrap();
        assert!(arg.ends_with("a,,b.img,if=virtio,format=raw,discard=unmap"), "{arg}");
        let qcow = dir.join("d.qcow2");
        let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&qcow).arg("1G").status().unwrap();
        assert!(made.success());
        assert!(drive_arg(&qcow).unwrap().contains("format=qcow2"));
        assert!(drive_arg(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

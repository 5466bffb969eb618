//! `skiff run` and `skiff stop`: boot the ISO in QEMU with a vsock device,
//! bridge the engine to DIR/docker.sock, forward published ports, print DOCKER_HOST once the engine
//! answers, and shut the VM down cleanly on a signal or `skiff stop`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use skiff_proto::guest_settings::GuestSettings;
use skiff_proto::DEFAULT_ENGINE_PORT;

use crate::vm::accel;
use crate::guest::bridge;
use crate::vm::buildkit;
use crate::vm::datadisk;
use crate::vm::images;
use crate::state::pidfile;
use crate::threads;
use crate::guest::events::Events;
use crate::vm::guestcfg;
use crate::vm::process::{self, die_with_parent};
use crate::guest::ports::Ports;
use crate::vm::qemu::{self, Arch, DirectKernel, Machine, Medium};
use crate::vm::qmp;
use crate::state::run_state::{self, Phase, RunState};
use crate::state::secret;
use crate::vm::shares::{self, ShareOptions, Shares};
use crate::state::{default_dir, StateDir};
use crate::vm::vsockdev::VsockDevice;

/// How long the guest may take to shut down after the power button before
/// QEMU is killed: its own worst case plus a margin for a slow host.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(skiff_proto::GUEST_SHUTDOWN_WORST_CASE_SECS + 23);

/// How long QEMU may take to exit once the guest said it powers off.
const POWERED_OFF_GRACE: Duration = Duration::from_secs(5);

/// Options of `skiff run`.
#[derive(Args, Debug, Clone)]
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
    /// QEMU accelerator: auto (KVM where /dev/kvm runs a stock kernel, else
    /// TCG), kvm or tcg.
    #[arg(long, env = "SKIFF_ACCEL", default_value = "auto")]
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
    /// How the ISO is attached: cd, disk (virtio) or usb (a USB stick).
    #[arg(long, value_enum, default_value = "cd")]
    pub medium: Medium,
    /// The guest's architecture (x86_64 or aarch64); by default the ISO's
    /// (build-iso.sh marks it in the volume id).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Boot with UEFI firmware (OVMF) instead of BIOS (x86_64; aarch64
    /// always boots UEFI).
    #[arg(long)]
    pub uefi: bool,
    /// UEFI firmware image used with --uefi.
    #[arg(long, default_value = "/usr/share/ovmf/OVMF.fd")]
    pub ovmf: PathBuf,
    /// UEFI firmware image for aarch64 guests (edk2, Debian's qemu-efi-aarch64).
    #[arg(long, default_value = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")]
    pub aavmf: PathBuf,
    /// Append a kernel parameter (repeat per parameter), e.g. `skiff.debug`.
    /// The ISO's kernel and initramfs are then booted directly by QEMU
    /// (as they are by default under BIOS from a CD), with the ISO still attached.
    #[arg(long = "kernel-arg")]
    pub kernel_args: Vec<String>,
    /// Boot through the firmware and GRUB from the ISO, as a real machine
    /// does, instead of QEMU loading the ISO's kernel directly (the default
    /// under BIOS from a CD; UEFI and `--medium disk` always use the firmware).
    #[arg(long)]
    pub firmware_boot: bool,
    /// A data disk image (qcow2 or raw) attached as a virtio disk; repeat for
    /// more. A blank one becomes the VM's persistent data disk.
    #[arg(long = "disk")]
    pub disks: Vec<PathBuf>,
    /// Keep images and containers in RAM: no data disk from the state folder
    /// (by default DIR/data.qcow2 is created and attached unless --disk is given).
    #[arg(long)]
    pub ephemeral: bool,
    /// Size of a new data disk (qemu-img syntax: 64G, 500M).
    #[arg(long, default_value = datadisk::DEFAULT_SIZE)]
    pub disk_size: String,
    /// The guest's network, as a QEMU `-nic` value: user-mode NAT with
    /// DHCP by default; e.g. `user,model=virtio-net-pci,hostfwd=tcp::8080-:80`,
    /// a `socket,...` or `tap,...` backend, or `none`.
    #[arg(long, default_value = "user,model=virtio-net-pci")]
    pub net: String,
    /// Bind published ports on every interface (a port published without an
    /// address is then reachable from other machines), not only loopback.
    /// Also set by SKIFF_PORTS_ALL_INTERFACES=1 (e.g. in a shell profile).
    #[arg(long, env = "SKIFF_PORTS_ALL_INTERFACES")]
    pub ports_all_interfaces: bool,
    /// Give the memory the guest frees back to the host within seconds (a
    /// virtio balloon with free page reporting); `off` keeps it in QEMU.
    #[arg(long, value_enum, default_value = "on")]
    pub balloon: OnOff,
    /// Give the disk space the guest frees back to the host (punched out
    /// of the data disk image, so removing images and volumes frees host
    /// disk); `off` keeps the image at its largest.
    #[arg(long, value_enum, default_value = "on")]
    pub discard: OnOff,
    /// Host edits under a share (create, write, rename, delete) raise
    /// IN_MODIFY for file watchers in containers (`vite`, `nodemon`,
    /// `cargo watch`); `off` watches nothing.
    #[arg(long, value_enum, default_value = "on")]
    pub watch: OnOff,
    /// Folders watched at most for --watch (by default 65,536, and at most
    /// half the system's fs.inotify.max_user_watches, so editors keep
    /// theirs); past it, edits in folders not watched are not forwarded (a
    /// message says so). Also SKIFF_WATCH_LIMIT.
    #[arg(long, env = "SKIFF_WATCH_LIMIT")]
    pub watch_limit: Option<usize>,
    #[command(flatten)]
    pub port_limits: crate::guest::ports::LimitOptions,
    /// An extra QEMU argument (repeat the flag for each one).
    #[arg(long = "qemu-arg", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    #[command(flatten)]
    pub shares: ShareOptions,
}

/// A feature that is on by default and can be turned off (and on again:
/// `skiff start` remembers the last choice).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }

    pub fn as_str(self) -> &'static str {
        if self.is_on() { "on" } else { "off" }
    }
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

/// Turns the options into QEMU's machine description.
fn machine(o: &RunOptions, arch: Arch, state: &StateDir, build: &str, vsock: &VsockDevice, shares: &Shares, disks: &[PathBuf]) -> io::Result<Machine> {
    // aarch64 always boots through its UEFI firmware (unless kernel parameters need -append).
    let uefi = o.uefi || arch == Arch::Aarch64;
    let direct_kernel = if qemu::boots_directly(uefi, o.medium, !o.kernel_args.is_empty(), o.firmware_boot) {
        // From the state folder's copy of this build, which the guest mounts /usr from.
        let (bzimage, initrd) = images::boot_files(state, build)?;
        // x86_64: the plain ELF kernel through PVH when the kernel has the entry.
        let kernel = match arch {
            Arch::X86_64 => images::pvh_kernel(state, build, &bzimage).unwrap_or_else(|e| {
                eprintln!("skiff: booting the compressed kernel (no PVH vmlinux: {e})");
                bzimage
            }),
            Arch::Aarch64 => bzimage,
        };
        let cmdline = [arch.base_cmdline().to_string()].into_iter().chain(o.kernel_args.iter().cloned()).collect::<Vec<_>>().join(" ");
        Some(DirectKernel { kernel, initrd, cmdline })
    } else {
        None
    };
    let (accel, why) = accel::choose(&o.accel, accel::Host::probe(), arch == Arch::host());
    eprintln!("skiff: accelerator {accel} ({why})");
    let firmware = match arch {
        Arch::X86_64 => o.uefi.then(|| o.ovmf.clone()),
        Arch::Aarch64 => Some(o.aavmf.clone()),
    };
    if let Some(fw) = firmware.as_ref().filter(|fw| !fw.is_file()) {
        return Err(io::Error::other(format!("no UEFI firmware at {} (Debian: ovmf, qemu-efi-aarch64)", fw.display())));
    }
    Ok(Machine {
        arch,
        accel,
        memory_mib: o.memory,
        cpus: o.cpus,
        shared_memory: vsock.shared_memory || shares.shared_memory(),
        firmware,
        iso: o.iso.clone(),
        medium: o.medium,
        direct_kernel,
        console: state.console(),
        qmp: state.qmp(),
        qmp_events: state.qmp_events(),
        net: o.net.clone(),
        drives: disks.iter().map(|d| qemu::drive_arg(d, o.discard.is_on())).collect::<io::Result<_>>()?,
        balloon: o.balloon.is_on(),
        devices: [
            vsock.qemu_args.clone(),
            shares.qemu_args.clone(),
            vec!["-fw_cfg".into(), guestcfg::write(&guest_settings(shares, &vsock.target), state)?],
            // So a boot without a data disk does not wait for one to appear.
            vec!["-fw_cfg".into(), format!("name={},string={}", skiff_proto::FW_CFG_DATA_DISKS, disks.len())],
        ]
        .concat(),
        extra: o.qemu_args.clone(),
    })
}

/// What the guest is told out of band (see `guestcfg`): its secret (never
/// on the kernel command line or QEMU's argv, which others can read) and
/// the shares.
fn guest_settings(shares: &Shares, target: &crate::guest::Target) -> GuestSettings {
    GuestSettings { secret: target.secret.clone(), shares: shares::for_guest(&shares.shares, shares.via) }
}

/// Boots the ISO, bridges the engine socket, prints DOCKER_HOST once the
/// engine answers, and runs until QEMU exits or we are told to stop.
/// A boot whose engine the host cannot reach though the guest reports it
/// ready, or whose vsock device stopped answering (a transport fault,
/// [`Unreachable`]), is booted once more, with
/// the first console kept as console.log.1.
pub fn run(o: &RunOptions) -> io::Result<()> {
    if !o.iso.is_file() {
        return Err(io::Error::other(format!("no ISO at {} (build it with `make iso`)", o.iso.display())));
    }
    match run_once(o, None) {
        Err(e) if Unreachable::is(&e) && !STOP.load(Ordering::SeqCst) => {
            let state = StateDir::create(&o.dir)?;
            let kept = state.first_console();
            let _ = fs::rename(state.console(), &kept);
            eprintln!("skiff: {e}\nskiff: booting once more (the first console: {})", kept.display());
            run_once(o, Some(e.to_string()))
        }
        other => other,
    }
}

/// One boot; `retrying` says why the one before was given up (the
/// `run-state` record carries it to `skiff start`).
fn run_once(o: &RunOptions, retrying: Option<String>) -> io::Result<()> {
    let state = StateDir::create(&o.dir)?;
    let _claim = pidfile::claim(&state)?;
    if let Err(e) = process::become_subreaper() {
        eprintln!("skiff: cannot become a child subreaper ({e}); orphans of the device daemons go to PID 1");
    }
    let disks = data_disks(o, &state)?;
    // The state folder's copy of the ISO, so rebuilding it never touches a running guest.
    let (iso, build) = images::install(&state, &o.iso)?;
    let o = &RunOptions { iso, ..o.clone() };
    catch_signals();
    let shares = Shares::start(&o.shares, &state)?;
    let mut vsock = VsockDevice::start(&state, o.cid)?;
    // Every connection to this VM (bridge, control, forwarded ports) presents it.
    vsock.target.secret = Some(secret::renew(&state.secret())?);
    let arch = match o.arch {
        Some(a) => a,
        None => Arch::of_iso(&o.iso)?,
    };
    let machine = machine(o, arch, &state, &build, &vsock, &shares, &disks)?;
    let console = state.console();
    let _ = fs::remove_file(&console);
    // The last boot's events must not count as this one's.
    let _ = fs::remove_file(state.events());
    // QEMU creates the console log; the umask keeps it private (0600).
    eprintln!("skiff: booting {} ({arch:?}; serial console: {})", o.iso.display(), console.display());
    let started = Instant::now();
    let mut vm = die_with_parent(Command::new(arch.qemu_binary()).args(machine.args()))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start {}: {e}", arch.qemu_binary())))?;
    pidfile::record_qemu(&state, vm.id())?;
    let mut run_state = RunState {
        phase: Phase::Booting,
        attempt: if retrying.is_some() { 2 } else { 1 },
        retry_reason: retrying,
        iso: o.iso.clone(),
        build: build.clone(),
        memory_mib: o.memory,
        cpus: o.cpus,
        accel: machine.accel.clone(),
    };
    run_state::write(&state, &run_state)?;

    let docker_sock = state.docker_sock();
    let listener = bridge::bind(&docker_sock)?;
    // BuildKit's endpoints (buildx, compose): skiff-buildkit, building with the engine through the bridge.
    let builder = buildkit::Helper::start(&state.build_sock(), &docker_sock);
    let (t, port, b) = (vsock.target.clone(), o.port, builder.as_ref().map(|h| h.socket().to_path_buf()));
    threads::spawn("engine socket", move || bridge::serve(listener, t, port, b))?;

    bridge::QUIET.store(true, Ordering::Relaxed);
    // Other processes (`skiff shell`, `status`) find the VM through the
    // record. Connections may be made from QEMU's start: the vsock device
    // holds one made before the guest's driver is up (vsockdev/patches).
    // What the guest reports (engine ready, powering off) is followed from
    // then until the guest closes the stream.
    let events = Events::default();
    let ready = crate::guest::record::record(&state, &vsock.target)
        .and_then(|()| events.follow(vsock.target.clone(), &state.events()))
        .and_then(|()| wait_ready(o, &docker_sock, &events, &mut vm, started));
    let ready_after = started.elapsed();
    bridge::QUIET.store(false, Ordering::Relaxed);
    let mut ports = None;
    let result = ready.and_then(|()| {
        // The boot secret's fw_cfg copy stays readable in the guest: from now on it admits nobody.
        if let Err(e) = crate::guest::control::rekey(&vsock.target, &state.secret()) {
            eprintln!("skiff: cannot replace the boot secret ({e}); the copy the guest read from fw_cfg still admits");
        }
        // The port table is read from now on: published ports need the engine anyway.
        ports = Some(Ports::spawn(vsock.target.clone(), o.ports_all_interfaces, o.port_limits.limits(), Some(state.ports()))?);
        images::prune(&state);
        if o.watch.is_on() && !shares.shares.is_empty() {
            if let Err(e) = crate::watch::spawn(&shares.shares, state.path(), o.watch_limit.unwrap_or_else(crate::watch::default_limit), vsock.target.clone()) {
                eprintln!("skiff: watch: {e}; host edits do not reach file watchers in containers");
            }
        }
        if let Err(e) = super::resume::spawn(state.qmp_events(), vsock.target.clone()) {
            eprintln!("skiff: {e}; the guest clock is not set after a pause");
        }
        println!("export DOCKER_HOST=unix://{}", docker_sock.display());
        io::stdout().flush()?;
        run_state.phase = Phase::Ready;
        run_state::write(&state, &run_state)?;
        eprintln!("skiff: engine ready after {:.2}s; Ctrl-C or `skiff stop` shuts the VM down", ready_after.as_secs_f64());
        wait_exit(&state.qmp(), &events, &mut vm)
    });
    if result.is_err() {
        // A guest that runs (its engine up but unreachable) gets the power
        // button first, so its data disk is left clean.
        shut_down(&state.qmp(), &events, &mut vm);
    }
    events.close();
    drop(builder);
    drop(vsock);
    drop(shares);
    process::reap_adopted(Duration::from_secs(2));
    if let Some(ports) = ports {
        ports.close();
    }
    // The claim, dropped last, removes the folder's runtime files.
    result
}

/// The disks to attach: the user's, or else the state folder's data disk
/// (created on first start) unless --ephemeral; each refused when another
/// VM holds it.
fn data_disks(o: &RunOptions, state: &StateDir) -> io::Result<Vec<PathBuf>> {
    let disks = if !o.disks.is_empty() || o.ephemeral { o.disks.clone() } else { vec![datadisk::ensure(state, &o.disk_size)?] };
    for d in &disks {
        datadisk::check_free(d)?;
    }
    Ok(disks)
}

/// The start of the [`Unreachable`] message.
const UNREACHABLE: &str = "the host cannot reach the guest's engine";

/// The host cannot reach the guest's engine through a transport fault, on
/// which [`run`] boots once more.
#[derive(Debug)]
struct Unreachable {
    /// How the fault shows ([`transport_fault`]).
    why: &'static str,
    /// What the last attempt ran into.
    last: String,
}

impl Unreachable {
    fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Unreachable>())
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{UNREACHABLE} ({} for {}s; last attempt: {}); see the console log",
            self.why,
            UNREACHABLE_LIMIT.as_secs(),
            self.last
        )
    }
}

impl std::error::Error for Unreachable {}

/// How long the host keeps trying after the guest reports its engine
/// ready, or after its vsock device last answered.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// Whether an engine that does not answer the host is a transport fault,
/// and how it shows: the guest reported it ready `ready_for` ago, or the
/// vsock device (which answers every connection at once, taken or
/// refused, once the guest's kernel runs) has been silent for `silent_for`.
fn transport_fault(ready_for: Option<Duration>, silent_for: Option<Duration>, paused: bool) -> Option<&'static str> {
    if ready_for.is_some_and(|t| t > UNREACHABLE_LIMIT) {
        Some("the guest reports it ready")
    } else if silent_for.is_some_and(|t| t > UNREACHABLE_LIMIT) && !paused {
        Some("the guest's vsock device stopped answering")
    } else {
        None
    }
}

/// Fails once there is nothing left to wait for: QEMU exited, or we were
/// told to stop.
fn still_booting(vm: &mut Child) -> io::Result<()> {
    if let Some(status) = vm.try_wait()? {
        return Err(io::Error::other(format!("QEMU exited before the engine answered ({status}); see the console log")));
    }
    if STOP.load(Ordering::SeqCst) {
        return Err(io::Error::other("interrupted"));
    }
    Ok(())
}

/// Waits until the engine answers through the bridge; gives up when the
/// guest reports its engine ready but the host cannot reach it
/// ([`Unreachable`]), when the guest reports it cannot start its engine,
/// at the time limit, or when QEMU exits.
fn wait_ready(o: &RunOptions, sock: &Path, events: &Events, vm: &mut Child, started: Instant) -> io::Result<()> {
    let limit = Duration::from_secs(o.timeout);
    bridge::take_quiet_error();
    loop {
        still_booting(vm)?;
        // What this attempt ran into, for the message if none succeeds.
        let last = match bridge::ping(sock) {
            Ok(true) => return Ok(()),
            Ok(false) => "the guest answered, but not yet with 200 OK (engine starting)".to_string(),
            Err(e) => format!("the ping failed: {e}"),
        };
        let last = bridge::take_quiet_error().unwrap_or(last);
        let seen = events.seen();
        // (When the guest last said its engine answers, not since restarted.)
        let fault = transport_fault(seen.engine_ready().map(|t| t.elapsed()), seen.silent_for(), crate::guest::paused_within(UNREACHABLE_LIMIT));
        let failure = seen.failure().map(str::to_string);
        drop(seen);
        if failure.as_deref() == Some(skiff_proto::events::FAILED_USR) {
            return Err(io::Error::other("the guest found no /usr on its boot medium, so its engine cannot start; see the console log"));
        }
        // A transport that lost its way (seen rarely with vhost-device-vsock
        // on hybrid vsock) fails fast and clearly instead of at the limit.
        if let Some(why) = fault {
            return Err(io::Error::other(Unreachable { why, last }));
        }
        if started.elapsed() > limit {
            return Err(io::Error::other(format!(
                "the engine did not answer within {}s (last attempt: {last}); see the console log",
                o.timeout
            )));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a VM that is being given up on: the power button if its init
/// reported running (it unmounts the data disk), then a kill once
/// [`Shutdown`] says it is overdue; a guest whose init was never heard
/// from is killed at once (nothing there watches the button, or its
/// events never reached the host: nothing is known to be mounted).
fn shut_down(qmp_sock: &Path, events: &Events, vm: &mut Child) {
    let init_runs = events.seen().init_runs();
    if init_runs && matches!(vm.try_wait(), Ok(None)) && qmp::powerdown(qmp_sock).is_ok() {
        let mut shutdown = Shutdown::new(events);
        while !shutdown.overdue() {
            if !matches!(vm.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("skiff: the VM did not exit after its shutdown; killing it");
    }
    let _ = vm.kill();
    let _ = vm.wait();
}

/// Waits for QEMU to exit; on a signal, presses the power button first and
/// kills QEMU once [`Shutdown`] says it is overdue.
fn wait_exit(qmp_sock: &Path, events: &Events, vm: &mut Child) -> io::Result<()> {
    let mut shutdown: Option<Shutdown> = None;
    loop {
        if let Some(status) = vm.try_wait()? {
            eprintln!("skiff: VM exited ({status})");
            return Ok(());
        }
        if shutdown.is_none() && STOP.load(Ordering::SeqCst) {
            eprintln!("skiff: shutting the VM down");
            if let Err(e) = qmp::powerdown(qmp_sock) {
                eprintln!("skiff: cannot press the power button: {e}");
            }
            shutdown = Some(Shutdown::new(events));
        }
        if shutdown.as_mut().is_some_and(Shutdown::overdue) {
            eprintln!("skiff: the VM did not exit after its shutdown; killing it");
            vm.kill()?;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A shutdown after the power button: QEMU is overdue after
/// [`SHUTDOWN_LIMIT`], or [`POWERED_OFF_GRACE`] after the guest reported
/// it powers off (its disks are unmounted by then; a QEMU still waiting on
/// a stuck device backend has nothing left to save). A guest that dies
/// without the event is QEMU's exit or the limit, as before.
struct Shutdown<'a> {
    events: &'a Events,
    pressed: Instant,
}

impl<'a> Shutdown<'a> {
    fn new(events: &'a Events) -> Self {
        Shutdown { events, pressed: Instant::now() }
    }

    fn overdue(&mut self) -> bool {
        overdue(self.pressed.elapsed(), self.events.seen().powering_off().map(|t| t.elapsed()))
    }
}

/// Whether QEMU is overdue `since_pressed` after the power button, the
/// guest having said it powers off `since_off` ago (if it did).
fn overdue(since_pressed: Duration, since_off: Option<Duration>) -> bool {
    since_pressed > SHUTDOWN_LIMIT || since_off.is_some_and(|t| t > POWERED_OFF_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_fault_shows_as_a_ready_engine_or_a_silent_device() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(transport_fault(None, secs(1), false), None, "booting: the engine is not ready yet");
        assert_eq!(transport_fault(secs(5), secs(1), false), None, "ready a moment ago: the bridge catches up");
        assert!(transport_fault(secs(31), secs(1), false).is_some_and(|w| w.contains("ready")));
        assert!(transport_fault(None, secs(31), false).is_some_and(|w| w.contains("stopped answering")));
        assert_eq!(transport_fault(None, secs(31), true), None, "a paused VM sends nothing");
        assert_eq!(transport_fault(None, None, false), None, "never heard: the hold, or a guest still starting");
    }

    #[test]
    fn the_guests_power_off_event_shortens_the_wait() {
        let secs = Duration::from_secs;
        assert!(!overdue(secs(10), None));
        assert!(!overdue(secs(10), Some(secs(1))));
        assert!(overdue(secs(10), Some(POWERED_OFF_GRACE + secs(1))));
        assert!(overdue(SHUTDOWN_LIMIT + secs(1), None), "a guest that never says so is killed at the limit");
    }

    #[test]
    fn only_an_unreachable_engine_is_booted_again() {
        let e = io::Error::other(Unreachable { why: "the guest reports it ready", last: "no answer".into() });
        assert!(Unreachable::is(&e));
        assert!(e.to_string().contains(UNREACHABLE) && e.to_string().contains("no answer"), "{e}");
        assert!(!Unreachable::is(&io::Error::other(format!("a message that says {UNREACHABLE}"))));
    }
}

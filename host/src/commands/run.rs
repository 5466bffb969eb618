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
use crate::guest::Link;
use crate::vm::guestcfg;
use crate::vm::process::{self, die_with_parent};
use crate::guest::ports::Ports;
use crate::vm::qemu::{self, Arch, DirectKernel, Machine, Medium};
use crate::vm::power::{self, PowerSwitch};
use crate::vm::qmp;
use crate::state::run_state::{self, Phase, RunState};
use crate::commands::start_error::{Fault, StartError};
use crate::state::StateError;
use crate::state::secret;
use crate::vm::shares::{self, ShareOptions, Shares};
use crate::state::{default_dir, StateDir};
use crate::vm::vsockdev::VsockDevice;

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

/// Set by SIGINT, SIGTERM or SIGHUP. A static because a signal handler
/// reaches nothing else; a self-pipe would need a static descriptor all
/// the same, and a signalfd needs the signals blocked in every thread and
/// unblocked again in every child before exec (QEMU and the device daemons
/// inherit the mask), more unsafe code for the same flag.
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
fn machine(o: &RunOptions, arch: Arch, state: &StateDir, build: &str, vsock: &VsockDevice, shares: &Shares, disks: &[PathBuf]) -> Result<Machine, StartError> {
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
        return Err(StartError::NoFirmware(fw.clone()));
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
/// [`StartError::EngineUnreachable`]), is booted once more, with
/// the first console kept as console.log.1. How it ended goes in the
/// `run-state` record, for `skiff start` to decide on.
pub fn run(o: &RunOptions) -> Result<(), StartError> {
    if !o.iso.is_file() {
        return Err(StartError::NoIso(o.iso.clone()));
    }
    let result = match run_once(o, None) {
        Err(e @ StartError::EngineUnreachable { .. }) if !STOP.load(Ordering::SeqCst) => {
            let state = StateDir::create(&o.dir)?;
            let kept = state.first_console();
            let _ = fs::rename(state.console(), &kept);
            eprintln!("skiff: {e}\nskiff: booting once more (the first console: {})", kept.display());
            run_once(o, Some(e.to_string()))
        }
        other => other,
    };
    record_end(o, &result);
    result
}

/// Writes how this run ended into the `run-state` record (kept after the
/// claim on the folder ends), unless the folder is another VM's.
fn record_end(o: &RunOptions, result: &Result<(), StartError>) {
    let phase = match result {
        Ok(()) => Phase::Stopped,
        Err(StartError::State(StateError::Locked { .. } | StateError::NotOurs { .. })) => return,
        Err(e) => Phase::Failed(e.failure()),
    };
    let Ok(state) = StateDir::create(&o.dir) else { return };
    let record = RunState { phase, ..run_state::read(&state).unwrap_or_else(|| RunState::unknown(phase)) };
    if let Err(e) = run_state::write(&state, &record) {
        eprintln!("skiff: cannot record how the run ended: {e}");
    }
}

/// One boot; `retrying` says why the one before was given up (the
/// `run-state` record carries it to `skiff start`).
fn run_once(o: &RunOptions, retrying: Option<String>) -> Result<(), StartError> {
    let state = StateDir::create(&o.dir)?;
    let _claim = pidfile::claim(&state)?;
    // The last run's record (how it ended) must not count as this one's.
    let _ = fs::remove_file(state.run_state());
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
        .map_err(|error| StartError::QemuMissing { binary: arch.qemu_binary().to_string(), error })?;
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

    vsock.target.link.set_starting(true);
    // Other processes (`skiff shell`, `status`) find the VM through the
    // record. Connections may be made from QEMU's start: the vsock device
    // holds one made before the guest's driver is up (vsockdev/patches).
    // What the guest reports (engine ready, powering off) is followed from
    // then until the guest closes the stream.
    let events = Events::default();
    let ready = crate::guest::record::record(&state, &vsock.target)
        .and_then(|()| events.follow(vsock.target.clone(), &state.events()))
        .map_err(StartError::Io)
        .and_then(|()| wait_ready(o, &docker_sock, &vsock.target.link, &events, &mut vm, started, &console));
    let ready_after = started.elapsed();
    vsock.target.link.set_starting(false);
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
        Ok(wait_exit(&state.qmp(), &events, &mut vm)?)
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
fn data_disks(o: &RunOptions, state: &StateDir) -> Result<Vec<PathBuf>, datadisk::Error> {
    let disks = if !o.disks.is_empty() || o.ephemeral { o.disks.clone() } else { vec![datadisk::ensure(state, &o.disk_size)?] };
    for d in &disks {
        datadisk::check_free(d)?;
    }
    Ok(disks)
}

/// How long the host keeps trying after the guest reports its engine
/// ready, or after its vsock device last answered.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);

/// Whether an engine that does not answer the host is a transport fault,
/// and how it shows: the guest reported it ready `ready_for` ago, or the
/// vsock device (which answers every connection at once, taken or
/// refused, once the guest's kernel runs) has been silent for `silent_for`.
fn transport_fault(ready_for: Option<Duration>, silent_for: Option<Duration>, paused: bool) -> Option<Fault> {
    if ready_for.is_some_and(|t| t > UNREACHABLE_LIMIT) {
        Some(Fault::ReadyButUnreachable)
    } else if silent_for.is_some_and(|t| t > UNREACHABLE_LIMIT) && !paused {
        Some(Fault::DeviceSilent)
    } else {
        None
    }
}

/// Fails once there is nothing left to wait for: QEMU exited, or we were
/// told to stop.
fn still_booting(vm: &mut Child, console: &Path) -> Result<(), StartError> {
    if let Some(status) = vm.try_wait()? {
        return Err(StartError::QemuExited { status: status.to_string(), console: console.to_path_buf() });
    }
    if STOP.load(Ordering::SeqCst) {
        return Err(StartError::Interrupted);
    }
    Ok(())
}

/// Waits until the engine answers through the bridge; gives up when the
/// guest reports its engine ready but the host cannot reach it
/// ([`StartError::EngineUnreachable`]), when the guest reports it cannot start its engine,
/// at the time limit, or when QEMU exits.
fn wait_ready(o: &RunOptions, sock: &Path, link: &Link, events: &Events, vm: &mut Child, started: Instant, console: &Path) -> Result<(), StartError> {
    let limit = Duration::from_secs(o.timeout);
    link.take_held_back();
    loop {
        still_booting(vm, console)?;
        // What this attempt ran into, for the message if none succeeds.
        let last = match bridge::ping(sock) {
            Ok(true) => return Ok(()),
            Ok(false) => "the guest answered, but not yet with 200 OK (engine starting)".to_string(),
            Err(e) => format!("the ping failed: {e}"),
        };
        let last = link.take_held_back().unwrap_or(last);
        let seen = events.seen();
        // (When the guest last said its engine answers, not since restarted.)
        let fault = transport_fault(seen.engine_ready().map(|t| t.elapsed()), seen.silent_for(), link.paused_within(UNREACHABLE_LIMIT));
        let failure = seen.failure().map(str::to_string);
        drop(seen);
        if failure.as_deref() == Some(skiff_proto::events::FAILED_USR) {
            return Err(StartError::NoUsr { console: console.to_path_buf() });
        }
        // A transport that lost its way (seen rarely with vhost-device-vsock
        // on hybrid vsock) fails fast and clearly instead of at the limit.
        if let Some(fault) = fault {
            return Err(StartError::EngineUnreachable { fault, limit_secs: UNREACHABLE_LIMIT.as_secs(), last, console: console.to_path_buf() });
        }
        if started.elapsed() > limit {
            return Err(StartError::EngineTimeout { secs: o.timeout, last, console: console.to_path_buf() });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a VM that is being given up on: the power button if its init
/// reported running (it unmounts the data disk); a guest whose init was
/// never heard from is killed at once (nothing there watches the button,
/// or its events never reached the host: nothing is known to be mounted).
fn shut_down(qmp_sock: &Path, events: &Events, vm: &mut Child) {
    let mut qemu = Qemu { qmp: qmp_sock, events, child: vm };
    if events.seen().init_runs() && !qemu.exited() {
        power_off_or_kill(&mut qemu);
    } else {
        qemu.kill();
    }
}

/// Waits for QEMU to exit; on a signal, powers it off.
fn wait_exit(qmp_sock: &Path, events: &Events, vm: &mut Child) -> io::Result<()> {
    loop {
        if let Some(status) = vm.try_wait()? {
            eprintln!("skiff: VM exited ({status})");
            return Ok(());
        }
        if STOP.load(Ordering::SeqCst) {
            eprintln!("skiff: shutting the VM down");
            power_off_or_kill(&mut Qemu { qmp: qmp_sock, events, child: vm });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Powers QEMU off; one whose power button cannot be pressed is killed
/// (nothing else would make it exit).
fn power_off_or_kill(qemu: &mut Qemu) {
    if let Err(e) = power::power_off(qemu) {
        eprintln!("skiff: cannot press the power button ({e}); killing the VM");
        qemu.kill();
    }
}

/// `skiff run`'s QEMU child, for [`power::power_off`].
struct Qemu<'a> {
    qmp: &'a Path,
    events: &'a Events,
    child: &'a mut Child,
}

impl PowerSwitch for Qemu<'_> {
    fn press_power_button(&mut self) -> Result<(), qmp::QmpError> {
        qmp::powerdown(self.qmp)
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn guest_powering_off(&mut self) -> bool {
        self.events.seen().powering_off().is_some()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_fault_shows_as_a_ready_engine_or_a_silent_device() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(transport_fault(None, secs(1), false), None, "booting: the engine is not ready yet");
        assert_eq!(transport_fault(secs(5), secs(1), false), None, "ready a moment ago: the bridge catches up");
        assert_eq!(transport_fault(secs(31), secs(1), false), Some(Fault::ReadyButUnreachable));
        assert_eq!(transport_fault(None, secs(31), false), Some(Fault::DeviceSilent));
        assert_eq!(transport_fault(None, secs(31), true), None, "a paused VM sends nothing");
        assert_eq!(transport_fault(None, None, false), None, "never heard: the hold, or a guest still starting");
    }

    #[test]
    fn how_a_run_ended_is_recorded_but_never_over_another_vms_record() {
        use crate::state::run_state::Failure;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: RunOptions,
        }
        let dir = std::env::temp_dir().join(format!("skiff-run-end-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let o = <Cli as clap::Parser>::parse_from(["skiff", "--dir", dir.to_str().unwrap()]).o;
        let state = StateDir::create(&dir).unwrap();
        let running = RunState { build: "other".into(), ..RunState::unknown(Phase::Ready) };
        run_state::write(&state, &running).unwrap();
        record_end(&o, &Err(StartError::State(StateError::Locked { path: dir.clone(), pid: 1 })));
        assert_eq!(run_state::read(&state), Some(running), "the running VM's record was overwritten");
        record_end(&o, &Err(StartError::QemuExited { status: "exit status: 1".into(), console: state.console() }));
        let ended = run_state::read(&state).unwrap();
        assert_eq!((ended.phase, ended.build.as_str()), (Phase::Failed(Failure::QemuExited), "other"));
        fs::remove_file(state.run_state()).unwrap();
        record_end(&o, &Err(StartError::Interrupted));
        assert_eq!(run_state::read(&state).map(|r| r.phase), Some(Phase::Failed(Failure::Interrupted)), "a run that failed before its record");
        record_end(&o, &Ok(()));
        assert_eq!(run_state::read(&state).map(|r| r.phase), Some(Phase::Stopped));
        fs::remove_dir_all(&dir).unwrap();
    }
}

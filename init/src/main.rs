//! Skiff's PID 1. Reads like the boot sequence: leave the initramfs, mount
//! the API filesystems, bring up the network, mount the data disk, start the
//! engine, serve it over vsock, then reap children and wait for a reason to
//! power off.
//! It never exits and never panics on outside input: a fatal problem is
//! logged and the machine powers off.
//! Threads are started only with `thread::Builder` (a failure is an error
//! to handle, where `thread::spawn` panics: a kernel panic in PID 1);
//! init/clippy.toml makes `std::thread::spawn` a lint error here.

#![deny(clippy::disallowed_methods)]

use skiff_init::boot::{clock, events, logger, medium, mounts, rootfs, safe_file};
use skiff_proto::events::Event;
use skiff_init::services::{control, healthchecks, http, ports, shares, vsock};
use skiff_init::supervise::sys::Kernel;
use skiff_init::supervise::{children, engine, power, reaper, signals};
use skiff_init::config::{self, SecretSetting};
use skiff_init::{disk, net};

use std::time::Duration;

fn main() {
    logger::init(false);
    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        eprintln!("skiff-init: must run as PID 1 (the appliance's init)");
        std::process::exit(1);
    }
    let stage2 = std::env::args().nth(1).as_deref() == Some(rootfs::STAGE2_ARG);
    if !stage2 {
        log::info!("init started (initramfs)");
        events::emit(Event::InitStarted);
        // Only the command line exists yet; its problems are reported once, by the second stage.
        let (cmdline, _) = config::cmdline::parse(&config::cmdline::read());
        let (early, _) = config::resolve([cmdline]);
        let err = rootfs::switch_to_tmpfs(&early.root_size, logger::uptime());
        log::error!("cannot switch to a tmpfs root: {err}; staying on the initramfs (containers will fail to start)");
    } else {
        // The first stage's start, handed over by the re-execution (its memory is gone).
        let at = std::env::args().nth(2).and_then(|us| us.parse().ok()).map(Duration::from_micros);
        events::emit_at(at.unwrap_or_else(logger::uptime), Event::InitStarted);
    }
    boot()
}

fn boot() -> ! {
    log::info!("init running on tmpfs root");
    events::emit(Event::InitRunning);
    mounts::mount_all();
    let (cmdline, warnings) = config::cmdline::parse(&config::cmdline::read());
    // Verbose logging is a command-line setting; the rest waits for the data disk.
    logger::init(config::resolve([cmdline.clone()]).0.debug);
    for w in warnings {
        log::warn!("config: {}", safe_file::escaped(&w.to_string(), config::WARNING_MAX));
    }
    if let Err(e) = signals::block() {
        log::error!("cannot block signals: {e}; powering off");
        power::power_off();
    }
    match medium::mount_usr(Duration::from_secs(30)) {
        Ok(_) => {
            events::emit(Event::UsrMounted);
            medium::prefetch(engine::is_ready)
        }
        Err(e) => {
            log::error!("medium: {e}; the engine cannot start without /usr");
            events::emit(Event::Failed { what: skiff_proto::events::FAILED_USR.into() });
        }
    }
    signals::catch_ctrl_alt_del();
    raise_fd_limit();
    power::watch_power_button();
    let data_disk = disk::setup();
    // Settings come after the data disk (if any) holds /var/lib/skiff.
    let settings = config::load(cmdline);
    let log_dir = "/var/lib/skiff/log";
    if logger::persist(std::path::Path::new(log_dir)) {
        events::note(skiff_proto::events::Note::FileRefused, &format!("{log_dir}/skiff.log"));
    }
    config::apply::apply(&settings);
    shares::mount_all(&settings.shares);
    clock::spawn_sync();
    net::bring_up(&settings.net, settings.hostname.clone());
    let mut engine = engine::Engine::new(Kernel, settings.engine_log.as_str());
    engine.start();
    let door = vsock::Door::new(match settings.secret.clone() {
        SecretSetting::None => vsock::Admission::Everyone,
        SecretSetting::Given(s) => vsock::Admission::Secret(s),
        SecretSetting::Unusable(why) => vsock::Admission::Nobody(why.to_string()),
    });
    vsock::spawn_listener(&door, settings.port, engine::SOCKET);
    control::spawn_listener(&door, skiff_proto::control::DEFAULT_CONTROL_PORT, data_disk);
    ports::discover::spawn();
    healthchecks::spawn();
    ports::forward::spawn_listener(&door, skiff_proto::ports::DEFAULT_FORWARD_PORT);
    supervise(&mut engine, &Live { door, data_disk })
}

/// PID 1 holds two descriptors per forwarded connection, and the engine
/// and containers inherit the limit: raise 1024 to the kernel's maximum, as
/// Docker does for its daemon and containers.
fn raise_fd_limit() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let max = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) }) {
        log::warn!("cannot raise the open-file limit to {max}: {e}");
    }
}

/// The shutdown steps of what the boot sequence started, for [`power::shutdown`].
#[derive(Clone)]
struct Live {
    door: vsock::Door,
    data_disk: Option<disk::DataDisk>,
}

impl power::Services for Live {
    fn stop_accepting(&self) {
        self.door.stop_accepting()
    }

    fn close_engine_streams(&self) {
        http::close_streams()
    }

    fn unmount_shares(&self) {
        shares::unmount_all(&Kernel)
    }

    fn release_leases(&self) {
        net::release_all()
    }

    fn unmount_data_disk(&self) {
        match self.data_disk {
            Some(d) => d.unmount(&Kernel),
            None => log::info!("disk: no data disk to unmount"),
        }
    }
}

/// The main loop: reap children, restart the engine, act on signals.
fn supervise(engine: &mut engine::Engine<Kernel>, live: &Live) -> ! {
    loop {
        let timeout = engine.tick().unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
        match signals::wait(timeout) {
            Some(libc::SIGCHLD) | None => {}
            Some(libc::SIGTERM) => power::shutdown(engine, live, "SIGTERM"),
            Some(libc::SIGINT) => power::shutdown(engine, live, "Ctrl-Alt-Del (SIGINT)"),
            Some(libc::SIGPWR) => power::shutdown(engine, live, "power button or SIGPWR"),
            Some(sig) => log::info!("ignoring signal {sig}"),
        }
        for (pid, status) in reaper::reap_all(&Kernel) {
            let text = reaper::describe(&status);
            if !engine.reaped(pid, &text) && !children::reaped(pid, status) {
                log::debug!("reaped pid {} ({text})", pid.as_raw_nonzero());
            }
        }
    }
}

//! The background lifecycle: `skiff start` (a detached `skiff run` in its
//! own session, output in DIR/skiff.log, progress from the guest's events),
//! `skiff status`, `skiff stop` (power button, then wait for the exit) and
//! `skiff rollback`. One VM per state folder: `skiff run` claims it
//! (`state::pidfile`).

use std::ffi::OsString;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::status::GuestStatus;

use crate::commands::start_error::StartError;
use crate::state::context;
use crate::guest::control;
use crate::vm::datadisk;
use crate::vm::images::{self, Records};
use crate::vm::power::{self, PowerSwitch};
use crate::vm::qmp;
use crate::state::pidfile::{self, clean_leftovers, running, ProcId};
use crate::state::file;
use crate::threads;
use crate::guest::events;
use crate::vm::console;

/// The most read of a console, a run log or the port listing.
const MAX_READ: u64 = 4 << 20;
use crate::state::run_state::{self, Phase};
use crate::state::settings;
use crate::state::StateDir;

/// What `skiff start` passes on to `skiff run`.
pub struct StartPlan {
    /// The arguments after `start`, with --iso removed.
    pub args: Vec<OsString>,
    /// The ISO the user named, or None to boot the state folder's current one.
    pub iso: Option<PathBuf>,
    /// The ISO to fall back to: the default build output.
    pub default_iso: PathBuf,
}

/// Drops `--iso X` / `--iso=X` from an argument list.
pub fn without_iso(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--iso" {
            skip = true;
        } else if !s.starts_with("--iso=") {
            out.push(a.clone());
        }
    }
    out
}

/// `skiff start`: boots the VM in the background and returns once the engine answers.
pub fn start(state: &StateDir, plan: &StartPlan) -> Result<(), StartError> {
    if let Some(id) = running(state) {
        println!("skiff: a VM is already running from {} (pid {}); nothing changed", state.path().display(), id.pid);
        println!("export DOCKER_HOST=unix://{}", state.docker_sock().display());
        return Ok(());
    }
    clean_leftovers(state);
    let before = Records::load(state);
    let iso = match (&plan.iso, &before.current) {
        (Some(iso), _) => iso.clone(),
        (None, Some(id)) if images::path_of(state, id).is_file() => images::path_of(state, id),
        (None, _) => plan.default_iso.clone(),
    };
    match boot(state, &plan.args, &iso) {
        Ok(()) => finish(state),
        // A locked folder, a missing QEMU, a disk in use: the previous ISO would fail alike.
        Err(e) if !e.rolls_back() => Err(e),
        Err(e) => {
            let after = Records::load(state);
            let (Some(old), Some(new)) = (before.current.clone(), after.current.clone()) else { return Err(e) };
            if old == new || !images::path_of(state, &old).is_file() {
                return Err(e);
            }
            eprintln!("skiff: ISO {new} did not become ready ({e}); starting the previous ISO {old} again with the same disk");
            before.save(state)?;
            boot(state, &plan.args, &images::path_of(state, &old))?;
            finish(state)?;
            Err(StartError::RolledBack { new, old, why: Box::new(e) })
        }
    }
}

/// `skiff rollback`: stops the VM if it runs and starts the previous ISO.
pub fn rollback(state: &StateDir, args: &[OsString]) -> Result<(), StartError> {
    let records = Records::load(state);
    let prev = records.previous.filter(|id| images::path_of(state, id).is_file()).ok_or(images::Error::NoPrevious)?;
    if running(state).is_some() {
        stop(state)?;
    }
    eprintln!("skiff: rolling back to ISO {prev}");
    boot(state, args, &images::path_of(state, &prev))?;
    finish(state)
}

fn finish(state: &StateDir) -> Result<(), StartError> {
    let sock = state.docker_sock();
    println!("export DOCKER_HOST=unix://{}", sock.display());
    match context::ensure(&context::config_dir(), &sock) {
        Ok(_) => eprintln!("skiff: docker context `{}` points at the VM: `docker --context {0} ps`, or `docker context use {0}`", context::NAME),
        Err(e) => eprintln!("skiff: cannot write the docker context `{}`: {e}", context::NAME),
    }
    Ok(())
}

/// Starts `skiff run` detached and follows it until the engine answers or
/// it exits; then its `run-state` record says why.
fn boot(state: &StateDir, args: &[OsString], iso: &Path) -> Result<(), StartError> {
    let log = state.run_log();
    // The last boot's events and record must not count as this one's progress.
    let _ = fs::remove_file(state.events());
    let _ = fs::remove_file(state.run_state());
    let out = file::create(&log)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").args(args).arg("--iso").arg(iso);
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // SAFETY: the closure runs between fork and exec and makes one
    // syscall, setsid, which allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let tty = io::stderr().is_terminal();
    let mut shown = 0;
    let mut attempt = 1;
    let started = Instant::now();
    loop {
        let reached = events::progress(&events::read_file(&state.events()));
        if reached.len() > shown {
            if tty {
                eprint!("\rskiff: starting: {} …", reached.join(", "));
            } else {
                for m in &reached[shown..] {
                    eprintln!("skiff: {m}");
                }
            }
            shown = reached.len();
        }
        let run = run_state::read(state);
        // `skiff run` gave up on a boot and boots once more: the user hears why.
        if let Some(r) = run.as_ref().filter(|r| r.attempt > attempt) {
            attempt = r.attempt;
            if tty {
                eprintln!();
            }
            if let Some(why) = &r.retry_reason {
                eprintln!("skiff: {why}");
            }
            eprintln!("skiff: booting once more");
            shown = 0;
        }
        if run.as_ref().is_some_and(|r| r.phase == Phase::Ready) {
            if tty {
                eprintln!();
            }
            eprintln!("skiff: engine ready after {:.1}s (log: {})", started.elapsed().as_secs_f64(), log.display());
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            if tty {
                eprintln!();
            }
            // Shown to the user, not read for a decision.
            let text = console::tail(&log, MAX_READ).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            // Read again: the record is written just before `skiff run` exits.
            let failure = run_state::read(state).and_then(|r| match r.phase {
                Phase::Failed(f) => Some(f),
                _ => None,
            });
            return Err(StartError::DidNotStart { status: status.to_string(), failure, tail: tail.join("\n"), log });
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `skiff stop`: powers the VM off as `skiff run` does after a signal
/// (`power::power_off`): the power button, then the running `skiff run`
/// is killed once overdue.
pub fn stop(state: &StateDir) -> io::Result<()> {
    let Some(id) = running(state) else {
        clean_leftovers(state);
        println!("skiff: no VM is running from {}", state.path().display());
        return Ok(());
    };
    eprintln!("skiff: shutting the VM down");
    if let Err(e) = power::power_off(&mut RunningVm { state, id }) {
        return Err(e.into());
    }
    clean_leftovers(state);
    eprintln!("skiff: stopped");
    Ok(())
}

/// The `skiff run` of a state folder, seen from another process, for
/// [`power::power_off`]: QEMU's QMP socket, its pid file and the copy of
/// the guest's events it keeps.
struct RunningVm<'a> {
    state: &'a StateDir,
    id: ProcId,
}

impl PowerSwitch for RunningVm<'_> {
    fn press_power_button(&mut self) -> Result<(), qmp::QmpError> {
        qmp::powerdown(&self.state.qmp())
    }

    fn exited(&mut self) -> bool {
        !self.id.alive()
    }

    fn guest_powering_off(&mut self) -> bool {
        events::read_file(&self.state.events()).contains(&skiff_proto::events::Event::PoweringOff)
    }

    fn kill(&mut self) {
        // Only the process verified to be our `skiff run`; one that just exited is no error.
        if let Some(pid) = rustix::process::Pid::from_raw(self.id.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while self.id.alive() && Instant::now() < end {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `skiff status`: plain `key: value` lines. Running: the VM's ISO, the
/// guest's own figures (version, build, uptime, memory, the data disk as
/// its `df` sees it, mounted shares: `SKIFF-CONTROL/1 status`), the engine,
/// the forwarded ports (DIR/ports) and what `skiff run` booted (its
/// `run-state` record). Stopped: what
/// the next start boots. Both: the data disk's size on the host and the
/// remembered settings.
pub fn status(state: &StateDir) -> io::Result<()> {
    let records = Records::load(state);
    let disk = state.data_disk();
    let Some(id) = running(state) else {
        println!("state: stopped");
        println!("state folder: {}", state.path().display());
        if let Some(cur) = &records.current {
            println!("iso: {} (build {cur})", images::path_of(state, cur).display());
        }
        print_disk(&disk);
        println!("settings: {}", settings::describe(&crate::commands::remembered::load(&state.settings())));
        return Ok(());
    };
    println!("state: running (pid {})", id.pid);
    println!("state folder: {}", state.path().display());
    let run = run_state::read(state);
    if let Some(r) = &run {
        println!("iso: {} (build {})", r.iso.display(), r.build);
    }
    if let Some(q) = pidfile::qemu(state) {
        println!("uptime: {}", uptime(&q).map(human_duration).unwrap_or_else(|| "?".into()));
    }
    if let Some(r) = &run {
        println!("memory: {} MiB, cpus: {}, accel: {}", r.memory_mib, r.cpus, r.accel);
    }
    match fetch_guest_status(state) {
        Ok(g) => print!("{}", describe_guest(&g)),
        Err(e) => println!("guest: not answering ({e})"),
    }
    match engine_version(&state.docker_sock()) {
        Ok(v) => println!("engine: {v}"),
        Err(e) => println!("engine: not answering ({e})"),
    }
    println!("docker host: unix://{} (docker context {})", state.docker_sock().display(), context::NAME);
    print_disk(&disk);
    print!("{}", describe_ports(&file::read(&state.ports(), MAX_READ).unwrap_or_default()));
    println!("settings: {}", settings::describe(&crate::commands::remembered::load(&state.settings())));
    Ok(())
}

/// How long `status` waits for the guest's figures (the hybrid handshake
/// has no timeout of its own, so the request runs in a thread).
const GUEST_STATUS_LIMIT: Duration = Duration::from_secs(8);

fn fetch_guest_status(state: &StateDir) -> io::Result<GuestStatus> {
    let target = crate::guest::record::recorded(state)?;
    let (tx, rx) = mpsc::channel();
    threads::spawn("guest status", move || {
        let _ = tx.send(control::guest_status(&target));
    })?;
    rx.recv_timeout(GUEST_STATUS_LIMIT).map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
}

/// The guest's figures as status lines.
fn describe_guest(g: &GuestStatus) -> String {
    let kib = |k: u64| human_bytes(k.saturating_mul(1024));
    let mut out = format!("guest: skiff {}, build {}, up {}\n", g.version, g.build, human_duration(Duration::from_secs(g.uptime_secs)));
    out.push_str(&format!(
        "guest memory: {} used of {} ({} available)\n",
        kib(g.mem_total_kib.saturating_sub(g.mem_available_kib)),
        kib(g.mem_total_kib),
        kib(g.mem_available_kib)
    ));
    match g.disk {
        Some(d) => out.push_str(&format!(
            "data disk in the guest: {} used of {} ({} available)\n",
            human_bytes(d.used),
            human_bytes(d.size),
            human_bytes(d.available)
        )),
        None => out.push_str("data disk in the guest: none (images live in RAM)\n"),
    }
    if g.shares.is_empty() {
        out.push_str("shares: none\n");
    }
    for share in &g.shares {
        out.push_str(&format!("share: {} ({})\n", share.path, share.fs));
    }
    out
}

/// The listeners of DIR/ports (`skiff ports`' listing) as status lines.
fn describe_ports(listing: &str) -> String {
    let lines: Vec<&str> = listing.lines().filter(|l| !l.starts_with("guest port table:") && !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "ports: none\n".to_string();
    }
    lines.iter().map(|l| format!("port: {l}\n")).collect()
}

fn print_disk(disk: &Path) {
    match datadisk::usage(disk) {
        Some((used, size)) => println!("data disk: {} ({} used of {})", disk.display(), human_bytes(used), human_bytes(size)),
        None => println!("data disk: none (images live in RAM)"),
    }
}

fn uptime(p: &ProcId) -> Option<Duration> {
    let up: f64 = fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    (hz > 0).then(|| Duration::from_secs_f64((up - p.start as f64 / hz as f64).max(0.0)))
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if b as f64 >= GIB { format!("{:.1} GiB", b as f64 / GIB) } else { format!("{:.1} MiB", b as f64 / MIB) }
}

/// The engine's version from `GET /version` through the engine socket.
pub fn engine_version(sock: &Path) -> io::Result<String> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /version HTTP/1.0\r\nHost: skiff\r\n\r\n")?;
    let mut body = Vec::new();
    s.take(1 << 20).read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body);
    let field = |key: &str| json_string_field(&text, key);
    let version = field("Version").ok_or_else(|| io::Error::other("no version in the answer"))?;
    let api = field("ApiVersion").unwrap_or_default();
    Ok(format!("{version} (API {api})"))
}

/// The value of the last `"key":"value"` in a JSON text (the top-level
/// fields of /version come after its Components list).
fn json_string_field(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let at = text.rfind(&pat)? + pat.len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_figures_and_ports_read_plainly() {
        use skiff_proto::status::{DiskUse, ShareUse};
        let g = GuestStatus {
            version: "0.1.0".into(),
            build: "abc".into(),
            uptime_secs: 125,
            mem_total_kib: 1 << 20,
            mem_available_kib: 768 << 10,
            disk: Some(DiskUse { size: 64 << 30, used: 52 << 20, available: 60 << 30 }),
            shares: vec![ShareUse { fs: "virtiofs".into(), path: "/root".into() }],
        };
        let text = describe_guest(&g);
        assert!(text.contains("guest: skiff 0.1.0, build abc, up 2m05s\n"), "{text}");
        assert!(text.contains("guest memory: 256.0 MiB used of 1.0 GiB (768.0 MiB available)\n"), "{text}");
        assert!(text.contains("data disk in the guest: 52.0 MiB used of 64.0 GiB (60.0 GiB available)\n"), "{text}");
        assert!(text.contains("share: /root (virtiofs)\n"), "{text}");
        let ram = describe_guest(&GuestStatus { disk: None, shares: Vec::new(), ..g });
        assert!(ram.contains("data disk in the guest: none") && ram.contains("shares: none"), "{ram}");
        assert_eq!(describe_ports("guest port table: connected\n"), "ports: none\n");
        assert_eq!(describe_ports("guest port table: connected\ntcp 127.0.0.1:8080 -> 10.88.0.2:80 listening\n"), "port: tcp 127.0.0.1:8080 -> 10.88.0.2:80 listening\n");
    }

    #[test]
    fn iso_flag_is_dropped() {
        let a: Vec<OsString> = ["--memory", "512", "--iso", "x.iso", "--iso=y", "--dir", "d"].iter().map(OsString::from).collect();
        let b: Vec<String> = without_iso(&a).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(b, ["--memory", "512", "--dir", "d"]);
    }

    #[test]
    fn version_fields() {
        let v = r#"{"Components":[{"Name":"Podman Engine","Version":"5.4.2"}],"Version":"5.4.2","ApiVersion":"1.41"}"#;
        assert_eq!(json_string_field(v, "Version").as_deref(), Some("5.4.2"));
        assert_eq!(json_string_field(v, "ApiVersion").as_deref(), Some("1.41"));
    }
}

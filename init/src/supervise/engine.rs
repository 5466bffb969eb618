//! The container engine: Podman's API service (Docker-compatible), started
//! and restarted by PID 1, with readiness meaning "answers GET /_ping".
//! Its stdout/stderr go through the init's log (console, ring, file).
//!
//! Containers outlive the service (each has its own conmon, reparented to
//! PID 1), but nothing restarts a container whose conmon died with it, nor
//! containers on the data disk after a reboot. So each time the engine
//! becomes ready the init runs what podman-restart.service runs under
//! systemd: `podman start --all --filter restart-policy=always`.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::boot::logger;
use crate::supervise::{backoff, children, reaper};

/// True while the current engine process answers /_ping (vsock gives 503 otherwise).
static READY: AtomicBool = AtomicBool::new(false);
/// Bumped at every start, so a stale readiness probe cannot mark a newer run ready.
static RUN: AtomicU64 = AtomicU64::new(0);
/// Longest time `podman start --all` may take before it is killed.
const RESTART_CONTAINERS_LIMIT: Duration = Duration::from_secs(120);

/// True if the engine is running and has answered /_ping.
pub fn is_ready() -> bool {
    READY.load(Ordering::SeqCst)
}

/// The engine's API socket inside the guest.
pub const SOCKET: &str = "/run/skiff/engine.sock";
const PODMAN: &str = "/usr/bin/podman";

/// Supervision state of the engine process.
pub struct Engine {
    log_level: String,
    pid: Option<Pid>,
    started: Instant,
    failures: u32,
    restart_at: Option<Instant>,
}

impl Engine {
    pub fn new(log_level: &str) -> Self {
        Self { log_level: log_level.into(), pid: None, started: Instant::now(), failures: 0, restart_at: None }
    }

    /// Starts the engine; on failure schedules a retry with backoff.
    pub fn start(&mut self) {
        self.restart_at = None;
        if let Some(dir) = Path::new(SOCKET).parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                log::error!("engine: cannot create {}: {e}", dir.display());
            }
        }
        let _ = std::fs::remove_file(SOCKET);
        READY.store(false, Ordering::SeqCst);
        let run = RUN.fetch_add(1, Ordering::SeqCst) + 1;
        let spawned = podman()
            .args([&format!("--log-level={}", self.log_level), "system", "service", "--time=0"])
            .arg(format!("unix://{SOCKET}"))
            .spawn();
        match spawned {
            Ok(mut child) => {
                // PID 1 reaps every child with waitpid(-1); the Child handle is
                // dropped without waiting so the two never race.
                let pid = Pid::from_child(&child);
                log::info!("engine: started podman system service (pid {})", pid.as_raw_nonzero());
                log_output(child.stdout.take(), child.stderr.take());
                self.pid = Some(pid);
                self.started = Instant::now();
                if let Err(e) = thread::Builder::new().name("engine-ready".into()).spawn(move || wait_ready(run)) {
                    // Never ready without its probe: stop it, supervision restarts it.
                    log::error!("engine: cannot start the readiness probe thread: {e}; stopping the engine to retry");
                    terminate(pid);
                }
            }
            Err(e) => {
                log::error!("engine: cannot start {PODMAN}: {e}");
                self.schedule_restart(Duration::ZERO);
            }
        }
    }

    /// Called for every reaped child; returns true if it was the engine.
    pub fn reaped(&mut self, pid: Pid, status: &str) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        READY.store(false, Ordering::SeqCst);
        let ran = self.started.elapsed();
        log::warn!("engine: exited ({status}) after {:.1}s", ran.as_secs_f64());
        self.schedule_restart(ran);
        true
    }

    fn schedule_restart(&mut self, ran: Duration) {
        self.failures = backoff::next_failures(self.failures, ran);
        let delay = backoff::delay(self.failures);
        log::info!("engine: restarting in {:.1}s (failure {})", delay.as_secs_f64(), self.failures);
        self.restart_at = Some(Instant::now() + delay);
    }

    /// Restarts the engine if its backoff delay has passed; returns how long
    /// until the next restart is due, if one is pending.
    pub fn tick(&mut self) -> Option<Duration> {
        let at = self.restart_at?;
        let now = Instant::now();
        if now >= at {
            self.start();
            return None;
        }
        Some(at - now)
    }

    /// The running engine's pid, if any; clears any pending restart.
    pub fn take_for_shutdown(&mut self) -> Option<Pid> {
        self.restart_at = None;
        self.pid.take()
    }
}

/// Sends SIGTERM to the engine, if running.
pub fn terminate(pid: Pid) {
    if let Err(e) = rustix::process::kill_process(pid, Signal::TERM) {
        log::warn!("engine: cannot signal pid {}: {e}", pid.as_raw_nonzero());
    }
}

/// Stops every running container the way `docker stop` does: each gets its
/// stop signal (SIGTERM unless the image says otherwise), `grace` to exit,
/// then SIGKILL. Run before the service is terminated, because the service
/// exiting leaves containers running under conmon. `podman stop` (rather
/// than signalling the processes ourselves) also records exit codes,
/// unmounts each container's root and removes `--rm` containers, so the
/// data disk is left tidy. Skipped when no conmon runs (no containers).
pub fn stop_containers(grace: Duration, limit: Duration) {
    /// More containers than this are stopped in rounds (one grace period each).
    const MAX_STOP_WORKERS: usize = 256;
    let running = count_processes("conmon");
    if running == 0 {
        return log::info!("engine: no running containers");
    }
    log::info!("engine: stopping {running} container(s), {}s grace each", grace.as_secs());
    // All at once: podman's default of 3 workers per CPU would stop them in
    // rounds of one grace period each, past the shutdown's time limit.
    let workers = running.clamp(1, MAX_STOP_WORKERS).to_string();
    let spawned = Command::new(PODMAN)
        .args(["--max-workers", &workers, "stop", "--all", "--time", &grace.as_secs().to_string()])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("TMPDIR", "/var/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return log::warn!("engine: cannot run podman stop: {e}; containers will be signalled directly"),
    };
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => return log::warn!("engine: podman stop ended with {status}"),
            Ok(None) if Instant::now() > end => {
                log::warn!("engine: podman stop still running after {}s; killing it", limit.as_secs());
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return log::warn!("engine: waiting for podman stop: {e}"),
        }
    }
}

/// How many processes have the command name `comm`.
fn count_processes(comm: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == comm))
        .count()
}

/// True if the engine at `path` answers `GET /_ping` with 200.
pub fn ping(path: &str) -> io::Result<bool> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    skiff_proto::http::ping(&mut s)
}

/// A podman command with the engine's environment and piped output.
fn podman() -> Command {
    let mut cmd = Command::new(PODMAN);
    cmd.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("TMPDIR", "/var/tmp")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Longest output line logged as one; longer ones are split.
const MAX_LINE: u64 = 8 * 1024;

/// Copies a child's stdout and stderr into the log, line by line.
fn log_output(stdout: Option<impl Read + Send + 'static>, stderr: Option<impl Read + Send + 'static>) {
    for (name, out) in [("engine-stdout", stdout.map(|r| Box::new(r) as Box<dyn Read + Send>)), ("engine-stderr", stderr.map(|r| Box::new(r) as Box<dyn Read + Send>))] {
        let Some(out) = out else { continue };
        if let Err(e) = thread::Builder::new().name(name.into()).spawn(move || pump_lines(out, MAX_LINE, |line| logger::emit("podman", log::Level::Info, line))) {
            log::error!("engine: cannot start a thread to log its output ({name}): {e}");
        }
    }
}

/// Calls `emit` for each line of `r` (without its end), a line longer than
/// `max` bytes being cut into pieces, so no output can grow a line without bound.
fn pump_lines(r: impl Read, max: u64, mut emit: impl FnMut(&str)) {
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(max).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => emit(String::from_utf8_lossy(&line).trim_end()),
        }
    }
}

/// Marks the engine ready when it first answers, then restarts the
/// containers that should be running.
fn wait_ready(run: u64) {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(300) {
        if RUN.load(Ordering::SeqCst) != run {
            return; // a newer run took over
        }
        if let Ok(true) = ping(SOCKET) {
            READY.store(RUN.load(Ordering::SeqCst) == run, Ordering::SeqCst);
            log::info!("engine: ready (answers /_ping after {:.2}s)", began.elapsed().as_secs_f64());
            return restart_containers();
        }
        thread::sleep(Duration::from_millis(50));
    }
    log::warn!("engine: still not answering /_ping after 300s");
}

/// `podman start` for every container with restart policy always (or
/// unless-stopped, which podman treats the same), bounded in time.
fn restart_containers() {
    let mut cmd = podman();
    cmd.args(["start", "--all", "--filter", "restart-policy=always", "--filter", "restart-policy=unless-stopped"]);
    let began = Instant::now();
    let (pid, status) = match children::spawn(&mut cmd) {
        Ok((mut child, rx)) => {
            log_output(child.stdout.take(), child.stderr.take());
            (Pid::from_child(&child), rx)
        }
        Err(e) => return log::warn!("engine: cannot run podman start --all: {e}"),
    };
    match children::wait(pid, &status, RESTART_CONTAINERS_LIMIT) {
        Some(s) => log::info!(
            "engine: restarted containers with restart policy always ({}, {:.2}s)",
            reaper::describe(&s),
            began.elapsed().as_secs_f64()
        ),
        None => {
            log::warn!("engine: podman start --all did not finish within {}s; killing it", RESTART_CONTAINERS_LIMIT.as_secs());
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_bounded() {
        let text = format!("short\n{}\nlast", "x".repeat(20));
        let mut lines = Vec::new();
        pump_lines(text.as_bytes(), 8, |l| lines.push(l.to_string()));
        assert_eq!(lines, ["short", "xxxxxxxx", "xxxxxxxx", "xxxx", "last"]);
    }
}

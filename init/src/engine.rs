//! The container engine: Podman's API service (Docker-compatible), started
//! and restarted by PID 1, with readiness meaning "answers GET /_ping".

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::backoff;

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
        let spawned = Command::new(PODMAN)
            .args([&format!("--log-level={}", self.log_level), "system", "service", "--time=0"])
            .arg(format!("unix://{SOCKET}"))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("TMPDIR", "/var/tmp")
            .current_dir("/")
            .stdin(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                // PID 1 reaps every child with waitpid(-1); the Child handle is
                // dropped without waiting so the two never race.
                let pid = Pid::from_child(&child);
                log::info!("engine: started podman system service (pid {})", pid.as_raw_nonzero());
                self.pid = Some(pid);
                self.started = Instant::now();
                thread::spawn(wait_ready);
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
pub fn stop_containers(grace: Duration) {
    let running = count_processes("conmon");
    if running == 0 {
        return log::info!("engine: no running containers");
    }
    log::info!("engine: stopping {running} container(s), {}s grace each", grace.as_secs());
    let limit = grace + Duration::from_secs(20);
    let spawned = Command::new(PODMAN)
        .args(["stop", "--all", "--time", &grace.as_secs().to_string()])
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

/// Logs the moment the engine first answers, for boot-time measurements.
fn wait_ready() {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(300) {
        if let Ok(true) = ping(SOCKET) {
            return log::info!("engine: ready (answers /_ping after {:.2}s)", began.elapsed().as_secs_f64());
        }
        thread::sleep(Duration::from_millis(50));
    }
    log::warn!("engine: still not answering /_ping after 300s");
}

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

use crate::boot::{events, logger};
use skiff_proto::events::Event;
use crate::supervise::sys::Sys;
use crate::supervise::{backoff, children, reaper};

/// Whether the engine's current run answers /_ping.
#[derive(Default)]
pub struct Readiness {
    /// True while the current engine process answers /_ping (vsock gives 503 otherwise).
    ready: AtomicBool,
    /// Bumped at every start, so a stale readiness probe cannot mark a newer run ready.
    run: AtomicU64,
}

impl Readiness {
    pub const fn new() -> Self {
        Self { ready: AtomicBool::new(false), run: AtomicU64::new(0) }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The engine's readiness, as vsock reads it.
static READINESS: Readiness = Readiness::new();
/// Longest time `podman start --all` may take before it is killed.
const RESTART_CONTAINERS_LIMIT: Duration = Duration::from_secs(120);

/// True if the engine is running and has answered /_ping.
pub fn is_ready() -> bool {
    READINESS.is_ready()
}

/// The engine's API socket inside the guest.
pub const SOCKET: &str = "/run/skiff/engine.sock";
const PODMAN: &str = "/usr/bin/podman";
/// The Go runtime's settings for the service (not for the short CLI runs):
/// a heap goal of 1.5x the live heap instead of 2x. Measured (bench, TCG,
/// busy host, two runs each): engine anonymous memory after 10 containers
/// 17.2-18.5 -> 13.7-14.4 MiB; idle 13.8-14.9 -> 12.8-14.3 MiB (noise);
/// start-up runs 3 more ~1 ms collections; docker load 3.4/9.2 -> 3.3/8.6
/// MiB/s (within the runs' spread). No GOMEMLIMIT: a cap near the idle
/// size would make a big docker load collect over and over.
const SERVICE_GO_RUNTIME: [(&str, &str); 1] = [("GOGC", "50")];

/// Supervision state of the engine process.
pub struct Engine<S: Sys> {
    sys: S,
    /// The API socket, answering /_ping once ready ([`SOCKET`]).
    socket: &'static str,
    readiness: &'static Readiness,
    /// Run once each time the engine becomes ready.
    on_ready: fn(),
    log_level: String,
    pid: Option<Pid>,
    started: Instant,
    failures: u32,
    restart_at: Option<Instant>,
}

impl<S: Sys> Engine<S> {
    pub fn new(sys: S, log_level: &str) -> Self {
        let started = sys.now();
        Self { sys, socket: SOCKET, readiness: &READINESS, on_ready: restart_containers, log_level: log_level.into(), pid: None, started, failures: 0, restart_at: None }
    }

    /// An engine serving on `socket`, with its own readiness and nothing to run when ready.
    #[cfg(test)]
    pub fn for_tests(sys: S, socket: &'static str, readiness: &'static Readiness) -> Self {
        Self { socket, readiness, on_ready: || {}, ..Self::new(sys, "info") }
    }

    /// Starts the engine; on failure schedules a retry with backoff.
    pub fn start(&mut self) {
        self.restart_at = None;
        if let Some(dir) = Path::new(self.socket).parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                log::error!("engine: cannot create {}: {e}", dir.display());
            }
        }
        let _ = std::fs::remove_file(self.socket);
        let readiness = self.readiness;
        readiness.ready.store(false, Ordering::SeqCst);
        let run = readiness.run.fetch_add(1, Ordering::SeqCst) + 1;
        let mut cmd = podman();
        cmd.envs(SERVICE_GO_RUNTIME)
            .args([&format!("--log-level={}", self.log_level), "system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket));
        // PID 1 reaps every child with waitpid(-1); no Child handle is kept,
        // so the two never race.
        match self.sys.spawn(&mut cmd) {
            Ok(child) => {
                let pid = child.pid;
                log::info!("engine: started podman system service (pid {})", pid.as_raw_nonzero());
                events::emit(Event::EngineStarted { pid: pid.as_raw_nonzero().get() as u32 });
                log_output(child.stdout, child.stderr);
                self.pid = Some(pid);
                self.started = self.sys.now();
                let (socket, on_ready) = (self.socket, self.on_ready);
                if let Err(e) = thread::Builder::new().name("engine-ready".into()).spawn(move || wait_ready(readiness, run, socket, on_ready)) {
                    // Never ready without its probe: stop it, supervision restarts it.
                    log::error!("engine: cannot start the readiness probe thread: {e}; stopping the engine to retry");
                    self.terminate(pid);
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
        self.readiness.ready.store(false, Ordering::SeqCst);
        let ran = self.sys.now().saturating_duration_since(self.started);
        log::warn!("engine: exited ({status}) after {}s", crate::secs::Secs(ran, 1));
        events::emit(Event::EngineRestarting { reason: status.into() });
        self.schedule_restart(ran);
        true
    }

    fn schedule_restart(&mut self, ran: Duration) {
        self.failures = backoff::next_failures(self.failures, ran);
        let delay = backoff::delay(self.failures);
        log::info!("engine: restarting in {}s (failure {})", crate::secs::Secs(delay, 1), self.failures);
        self.restart_at = Some(self.sys.now() + delay);
    }

    /// Restarts the engine if its backoff delay has passed; returns how long
    /// until the next restart is due, if one is pending.
    pub fn tick(&mut self) -> Option<Duration> {
        let at = self.restart_at?;
        let now = self.sys.now();
        if now >= at {
            self.start();
            return None;
        }
        Some(at - now)
    }

    /// The running engine's pid, if any; clears any pending restart.
    pub fn take_for_shutdown(&mut self) -> Option<Pid> {
        self.restart_at = None;
        // Whatever waits for readiness (event followers, a late probe) stops here.
        self.readiness.run.fetch_add(1, Ordering::SeqCst);
        self.readiness.ready.store(false, Ordering::SeqCst);
        self.pid.take()
    }

    /// Sends SIGTERM to the engine.
    pub fn terminate(&self, pid: Pid) {
        if let Err(e) = self.sys.kill(Some(pid), Signal::TERM) {
            log::warn!("engine: cannot signal pid {}: {e}", pid.as_raw_nonzero());
        }
    }
}

/// Stops every running container the way `docker stop` does: each gets its
/// stop signal (SIGTERM unless the image says otherwise), `grace` to exit,
/// then SIGKILL. Run before the service is terminated, because the service
/// exiting leaves containers running under conmon. `podman stop` (rather
/// than signalling the processes ourselves) also records exit codes,
/// unmounts each container's root and removes `--rm` containers, so the
/// data disk is left tidy. Skipped when no conmon runs (no containers).
pub fn stop_containers(sys: &impl Sys, grace: Duration, limit: Duration) {
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
    let mut cmd = Command::new(PODMAN);
    cmd.args(["--max-workers", &workers, "stop", "--all", "--time", &grace.as_secs().to_string()])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("TMPDIR", "/var/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let pid = match sys.spawn(&mut cmd) {
        // Its errors name containers: logged (escaped), never written raw.
        Ok(c) => {
            log_output(None::<std::process::ChildStdout>, c.stderr);
            c.pid
        }
        Err(e) => return log::warn!("engine: cannot run podman stop: {e}; containers will be signalled directly"),
    };
    let end = sys.now() + limit;
    loop {
        match sys.wait_pid(pid) {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => return log::warn!("engine: podman stop ended with {status}"),
            Ok(None) if sys.now() > end => {
                log::warn!("engine: podman stop still running after {}s; killing it", limit.as_secs());
                events::note(skiff_proto::events::Note::ShutdownOverran, "stop containers");
                let _ = sys.kill(Some(pid), Signal::KILL);
                let _ = sys.wait_pid(pid);
                return;
            }
            Ok(None) => sys.sleep(Duration::from_millis(50)),
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
fn wait_ready(readiness: &Readiness, run: u64, socket: &str, on_ready: fn()) {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(300) {
        if readiness.run.load(Ordering::SeqCst) != run {
            return; // a newer run took over
        }
        if let Ok(true) = ping(socket) {
            readiness.ready.store(readiness.run.load(Ordering::SeqCst) == run, Ordering::SeqCst);
            log::info!("engine: ready (answers /_ping after {}s)", crate::secs::Secs(began.elapsed(), 2));
            events::emit(Event::EngineReady);
            return on_ready();
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
            "engine: restarted containers with restart policy always ({}, {}s)",
            reaper::describe(&s),
            crate::secs::Secs(began.elapsed(), 2)
        ),
        None => {
            log::warn!("engine: podman start --all did not finish within {}s; killing it", RESTART_CONTAINERS_LIMIT.as_secs());
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use crate::supervise::fake::{Call, Fake};
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A socket path of its own for each test, never created by the engine.
    fn socket(name: &str) -> &'static str {
        let path = std::env::temp_dir().join(format!("skiff-engine-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
    }

    /// The pid and fake start time of every engine started so far.
    fn starts(fake: &Fake) -> Vec<(i32, Duration)> {
        fake.calls().into_iter().filter_map(|(t, c)| match c {
            Call::Spawn(pid, line) if line.contains("system service") => Some((pid, t)),
            _ => None,
        }).collect()
    }

    /// The main loop's part: reap what exited and tell the engine.
    fn reap(fake: &Fake, engine: &mut Engine<Fake>) {
        for (pid, status) in reaper::reap_all(fake) {
            assert!(engine.reaped(pid, &reaper::describe(&status)));
        }
    }

    #[test]
    fn restarts_happen_at_the_backoff_delays() {
        let fake = Fake::new(&[Signal::TERM]);
        let mut engine = Engine::for_tests(fake.clone(), socket("backoff"), Box::leak(Box::new(Readiness::new())));
        engine.start();
        // How long each run lasts before the engine exits: three quick
        // failures, then a healthy run (which resets the backoff).
        for ran in [1.0, 0.0, 0.0, 61.0] {
            fake.sleep(Duration::from_secs_f64(ran));
            let (pid, _) = *starts(&fake).last().unwrap();
            fake.exit(Pid::from_raw(pid).unwrap(), 1);
            reap(&fake, &mut engine);
            while let Some(wait) = engine.tick() {
                assert!(wait > Duration::ZERO);
                fake.sleep(wait);
            }
        }
        let at: Vec<f64> = starts(&fake).iter().map(|(_, t)| t.as_secs_f64()).collect();
        // 0.5 s after the first failure, then 1 s, 2 s; after a healthy run 0.5 s again.
        assert_eq!(at, [0.0, 1.5, 2.5, 4.5, 66.0]);
    }

    #[test]
    fn no_restart_is_due_before_its_delay() {
        let fake = Fake::new(&[Signal::TERM]);
        let mut engine = Engine::for_tests(fake.clone(), socket("early"), Box::leak(Box::new(Readiness::new())));
        engine.start();
        let (pid, _) = starts(&fake)[0];
        fake.exit(Pid::from_raw(pid).unwrap(), 1);
        reap(&fake, &mut engine);
        fake.sleep(Duration::from_millis(400));
        assert_eq!(engine.tick(), Some(Duration::from_millis(100)));
        assert_eq!(starts(&fake).len(), 1, "restarted before its backoff delay");
        assert_eq!(engine.take_for_shutdown(), None);
        fake.sleep(Duration::from_secs(5));
        assert_eq!(engine.tick(), None);
        assert_eq!(starts(&fake).len(), 1, "a shutdown cancels the pending restart");
    }

    /// A stand-in engine socket answering every /_ping with 200 and anything else with its own reply.
    fn answer_pings(path: &str) {
        let listener = UnixListener::bind(path).unwrap();
        thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).unwrap_or(0);
                let reply = if buf[..n].starts_with(b"GET /_ping") { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK" } else { "HTTP/1.1 404 x\r\n\r\n" };
                let _ = s.write_all(reply.as_bytes());
            }
        });
    }

    static GATE: Readiness = Readiness::new();

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "{what}: not within 10s");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn ready_only_while_the_running_engine_answers() {
        let fake = Fake::new(&[Signal::TERM]);
        let path = socket("ready");
        let mut engine = Engine::for_tests(fake.clone(), path, &GATE);
        engine.start();
        thread::sleep(Duration::from_millis(300));
        // What vsock does with it: services::vsock's engine_not_ready_gives_503 tests.
        assert!(!GATE.is_ready(), "ready before the engine answers /_ping");

        answer_pings(path);
        wait_until("ready once /_ping answers", || GATE.is_ready());

        let (pid, _) = starts(&fake)[0];
        fake.exit(Pid::from_raw(pid).unwrap(), 1);
        reap(&fake, &mut engine);
        assert!(!GATE.is_ready(), "still ready after the engine exited");

        // The restart removes the old socket; the new run is not ready until it answers.
        while let Some(wait) = engine.tick() {
            fake.sleep(wait);
        }
        assert_eq!(starts(&fake).len(), 2);
        thread::sleep(Duration::from_millis(300));
        assert!(!GATE.is_ready(), "a restarted engine counts as ready before it answers");
        answer_pings(path);
        wait_until("ready again", || GATE.is_ready());
    }

    #[test]
    fn output_lines_are_bounded() {
        let text = format!("short\n{}\nlast", "x".repeat(20));
        let mut lines = Vec::new();
        pump_lines(text.as_bytes(), 8, |l| lines.push(l.to_string()));
        assert_eq!(lines, ["short", "xxxxxxxx", "xxxxxxxx", "xxxx", "last"]);
    }
}

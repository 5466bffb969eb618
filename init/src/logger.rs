//! Logging: every line carries the guest uptime, like the kernel's own
//! printk timestamps, and goes to the console, to a ring buffer in memory
//! (served to `skiff logs` over vsock) and, once the state folder is there,
//! to `/var/lib/skiff/log/skiff.log` with size-bounded rotation. The init's
//! own messages and the engine's stdout/stderr share this path.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

/// Bytes of recent log kept in memory.
pub const RING_BYTES: usize = 512 * 1024;
/// Size at which the log file is rotated.
pub const FILE_BYTES: u64 = 1024 * 1024;
/// Rotated files kept beside the current one (skiff.log.1 ... .N).
pub const FILE_KEEP: u32 = 3;

struct Console;

/// The in-memory ring: lines with increasing sequence numbers.
pub struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    /// Sequence number the next line will get.
    next: u64,
    cap: usize,
}

impl Ring {
    pub const fn new(cap: usize) -> Self {
        Self { lines: VecDeque::new(), bytes: 0, next: 0, cap }
    }

    pub fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        self.next += 1;
        while self.bytes > self.cap && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// Lines with sequence numbers from `seq` on (as many as are still
    /// kept), and the sequence number to ask for next time.
    pub fn since(&self, seq: u64) -> (Vec<String>, u64) {
        let first = self.next - self.lines.len() as u64;
        let skip = seq.saturating_sub(first).min(self.lines.len() as u64) as usize;
        (self.lines.iter().skip(skip).cloned().collect(), self.next)
    }
}

/// The current log file, rotated by size.
struct LogFile {
    dir: PathBuf,
    file: File,
    size: u64,
}

static RING: Mutex<Ring> = Mutex::new(Ring::new(RING_BYTES));
static NEW_LINES: Condvar = Condvar::new();
static FILE: Mutex<Option<LogFile>> = Mutex::new(None);

/// Locks, ignoring poisoning: a panicked logger thread must not stop logging.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Time since boot (CLOCK_BOOTTIME, the clock printk also follows).
pub fn uptime() -> Duration {
    let ts = clock_gettime(ClockId::Boottime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Formats one log line; kept apart from the writers so it can be tested.
pub fn format_line(up: Duration, source: &str, level: log::Level, msg: &str) -> String {
    let tag = match level {
        log::Level::Error => "ERROR: ",
        log::Level::Warn => "warning: ",
        _ => "",
    };
    format!("[{:5}.{:06}] {source}: {tag}{msg}\n", up.as_secs(), up.subsec_micros())
}

/// Writes one line from `source` to the console, the ring and the file.
pub fn emit(source: &str, level: log::Level, msg: &str) {
    let line = format_line(uptime(), source, level, msg);
    // One write per line keeps lines whole when threads log at once.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(f) = lock(&FILE).as_mut() {
        f.write(&line);
    }
    lock(&RING).push(line);
    NEW_LINES.notify_all();
}

impl LogFile {
    fn write(&mut self, line: &str) {
        if self.size + line.len() as u64 > FILE_BYTES {
            match rotate(&self.dir, FILE_KEEP).and_then(|()| open(&self.dir)) {
                Ok(file) => {
                    self.file = file;
                    self.size = 0;
                }
                Err(_) => return, // keep the old file; the console still has the line
            }
        }
        if self.file.write_all(line.as_bytes()).is_ok() {
            self.size += line.len() as u64;
        }
    }
}

fn open(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(dir.join("skiff.log"))
}

/// skiff.log → skiff.log.1 → ... → skiff.log.KEEP (the oldest is dropped).
pub fn rotate(dir: &Path, keep: u32) -> std::io::Result<()> {
    let name = |n: u32| if n == 0 { dir.join("skiff.log") } else { dir.join(format!("skiff.log.{n}")) };
    let _ = fs::remove_file(name(keep));
    for n in (0..keep).rev() {
        match fs::rename(name(n), name(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Starts writing the log to `dir` (created if needed), beginning with
/// what the ring holds, so the early boot is in the file too.
pub fn persist(dir: &Path) {
    let opened = fs::create_dir_all(dir).and_then(|()| open(dir));
    let file = match opened {
        Ok(f) => f,
        Err(e) => return log::warn!("log: cannot write {}: {e}; logging to the console and memory only", dir.display()),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut lf = LogFile { dir: dir.to_path_buf(), file, size };
    let (lines, _) = lock(&RING).since(0);
    lf.write("---- boot ----\n");
    for line in lines {
        lf.write(&line);
    }
    *lock(&FILE) = Some(lf);
    log::info!("log: also writing to {}/skiff.log (rotated at {} KiB, {FILE_KEEP} old files kept)", dir.display(), FILE_BYTES / 1024);
}

/// Stops writing the log file and closes it (shutdown, before the data disk
/// that holds it is unmounted); the console and the ring carry on.
pub fn close_file() {
    if let Some(mut lf) = lock(&FILE).take() {
        lf.write("---- shutdown: log file closed ----\n");
        let _ = lf.file.sync_all();
    }
}

/// Lines from `seq` on and the next sequence number; waits up to `wait`
/// for a new line when there is none yet.
pub fn lines_since(seq: u64, wait: Duration) -> (Vec<String>, u64) {
    let ring = lock(&RING);
    if ring.next > seq || wait.is_zero() {
        return ring.since(seq);
    }
    let (ring, _) = NEW_LINES.wait_timeout(ring, wait).unwrap_or_else(|e| e.into_inner());
    ring.since(seq)
}

impl log::Log for Console {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            emit("skiff", record.level(), &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static CONSOLE: Console = Console;

/// Installs the logger; `debug` lowers the level to Debug.
pub fn init(debug: bool) {
    let _ = log::set_logger(&CONSOLE);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_uptime_source_and_level() {
        let line = format_line(Duration::from_micros(1_234_567), "skiff", log::Level::Info, "engine ready");
        assert_eq!(line, "[    1.234567] skiff: engine ready\n");
        let line = format_line(Duration::from_secs(2), "podman", log::Level::Warn, "no disk");
        assert_eq!(line, "[    2.000000] podman: warning: no disk\n");
    }

    #[test]
    fn ring_keeps_the_newest_lines_within_its_size() {
        let mut r = Ring::new(10);
        for l in ["aaaa\n", "bbbb\n", "cccc\n"] {
            r.push(l.into());
        }
        let (lines, next) = r.since(0);
        assert_eq!(lines, ["bbbb\n", "cccc\n"]);
        assert_eq!(next, 3);
        assert_eq!(r.since(2).0, ["cccc\n"]);
        assert!(r.since(3).0.is_empty());
        r.push("a line longer than the cap\n".into());
        assert_eq!(r.since(0).0.len(), 1, "one over-long line is still kept");
    }

    #[test]
    fn rotation_shifts_files_and_drops_the_oldest() {
        let dir = std::env::temp_dir().join(format!("skiff-log-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for round in 0..4 {
            fs::write(dir.join("skiff.log"), format!("round {round}")).unwrap();
            rotate(&dir, 2).unwrap();
        }
        assert!(!dir.join("skiff.log").exists());
        assert_eq!(fs::read_to_string(dir.join("skiff.log.1")).unwrap(), "round 3");
        assert_eq!(fs::read_to_string(dir.join("skiff.log.2")).unwrap(), "round 2");
        assert!(!dir.join("skiff.log.3").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}

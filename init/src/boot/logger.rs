//! Logging: every line carries the guest uptime, like the kernel's own
//! printk timestamps, and goes to the console, to a ring buffer in memory
//! (served to `skiff logs` over vsock) and, once the state folder is there,
//! to `/var/lib/skiff/log/skiff.log` with size-bounded rotation. The init's
//! own messages and the engine's stdout/stderr share this path.
//! The file is written by a thread of its own fed through a bounded queue:
//! a slow or stuck data disk drops file lines (counted, and the count noted
//! in the file) instead of stalling the main loop that logs them.
//! The log folder is on the data disk, which containers can be given: the
//! file is opened relative to the folder's descriptor, never through a
//! symlink, and only if it is a regular file (`boot::safe_file`).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::time::{clock_gettime, ClockId};

use super::safe_file;

/// Bytes of recent log kept in memory.
pub const RING_BYTES: usize = 512 * 1024;
/// Size at which the log file is rotated.
pub const FILE_BYTES: u64 = 1024 * 1024;
/// Rotated files kept beside the current one (skiff.log.1 ... .N).
pub const FILE_KEEP: u32 = 3;
/// Lines queued for the file writer; more are dropped, not waited for.
pub const FILE_QUEUE: usize = 1024;
/// How often at most the console hears that file lines were dropped.
const DROP_WARN_EVERY: Duration = Duration::from_secs(60);

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

    /// The sequence number the next line will get.
    pub fn next(&self) -> u64 {
        self.next
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
    dir: OwnedFd,
    file: File,
    size: u64,
}

/// What the file writer thread is sent.
enum ToFile {
    Line(String),
    /// This many lines were dropped here (the queue was full).
    Dropped(u64),
    /// Sync and close the file, then say so on this channel.
    Close(mpsc::Sender<()>),
}

/// The sending end of the file writer's queue, and its count of dropped lines.
struct FileQueue {
    tx: SyncSender<ToFile>,
    dropped: AtomicU64,
}

impl FileQueue {
    /// Queues a line without ever waiting: when the queue is full (the disk
    /// is slow) the line is dropped and counted. The count goes into the
    /// queue ahead of the next line that fits, so the file notes its gap
    /// where it is. (Callers hold the FILE lock: one offer at a time.)
    fn offer(&self, line: &str) {
        let n = self.dropped.load(Ordering::Relaxed);
        let sent = match n {
            0 => self.tx.try_send(ToFile::Line(line.to_string())),
            n => self.tx.try_send(ToFile::Dropped(n)).map(|()| {
                self.dropped.fetch_sub(n, Ordering::Relaxed);
                let _ = self.tx.try_send(ToFile::Line(line.to_string())).map_err(|_| self.dropped.fetch_add(1, Ordering::Relaxed));
            }),
        };
        if let Err(TrySendError::Full(_)) = sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where the file writer puts lines: the log file, or a fake in tests.
trait LineSink {
    fn write(&mut self, line: &str);
    fn sync(&mut self);
}

static RING: Mutex<Ring> = Mutex::new(Ring::new(RING_BYTES));
static NEW_LINES: Condvar = Condvar::new();
/// Lock order: RING, then FILE.
static FILE: Mutex<Option<FileQueue>> = Mutex::new(None);

/// Locks, ignoring poisoning: a panicked logger thread must not stop logging.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Time since boot (CLOCK_BOOTTIME, the clock printk also follows).
pub fn uptime() -> Duration {
    let ts = clock_gettime(ClockId::Boottime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Formats one log line; kept apart from the writers so it can be tested.
/// A message of several lines gives several lines, each with the prefix,
/// so outside text cannot pass a line of its own off as another source's.
pub fn format_line(up: Duration, source: &str, level: log::Level, msg: &str) -> String {
    let tag = match level {
        log::Level::Error => "ERROR: ",
        log::Level::Warn => "warning: ",
        _ => "",
    };
    let prefix = format!("[{:5}.{:06}] {source}: {tag}", up.as_secs(), up.subsec_micros());
    let mut line = String::with_capacity(prefix.len() + msg.len() + 1);
    for part in msg.trim_end_matches('\n').split('\n') {
        line.push_str(&prefix);
        escape(part, &mut line);
        line.push('\n');
    }
    line
}

/// Appends `text` as the console may show it. Every line goes through
/// here, and much of it comes from outside (the engine's and its helpers'
/// output, names and messages it reports, a shell's command line): ESC
/// becomes `\e` and every other C0 or C1 control (and DEL) `\xNN`, so no
/// terminal sequence or carriage return reaches the console, the log file
/// or `skiff logs`. Tabs and all other text, UTF-8 included, are kept.
pub fn escape(text: &str, out: &mut String) {
    use std::fmt::Write as _;
    for c in text.chars() {
        match c {
            '\x1b' => out.push_str("\\e"),
            '\t' => out.push(c),
            '\0'..='\x1f' | '\x7f'..='\u{9f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ => out.push(c),
        }
    }
}

/// Writes one line from `source` to the console, the ring and the file.
pub fn emit(source: &str, level: log::Level, msg: &str) {
    let line = format_line(uptime(), source, level, msg);
    // One write per line keeps lines whole when threads log at once.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let mut ring = lock(&RING);
    if let Some(q) = lock(&FILE).as_ref() {
        q.offer(&line);
    }
    ring.push(line);
    drop(ring);
    NEW_LINES.notify_all();
}

/// The file writer's loop: writes what it is sent until told to close or
/// until the queue's sender is gone, noting in the file where lines were
/// dropped (and, at most once a minute, on the console).
fn drain(rx: Receiver<ToFile>, sink: &mut impl LineSink) {
    let mut warned: Option<Instant> = None;
    for msg in rx {
        match msg {
            ToFile::Line(line) => sink.write(&line),
            ToFile::Dropped(n) => {
                sink.write(&format!("---- {n} log lines dropped here: the disk was too slow (the console and `skiff logs` have them) ----\n"));
                if warned.is_none_or(|t| t.elapsed() >= DROP_WARN_EVERY) {
                    warned = Some(Instant::now());
                    log::warn!("log: the data disk is slow: {n} lines were not written to skiff.log (the console and `skiff logs` have them)");
                }
            }
            ToFile::Close(done) => {
                sink.write("---- shutdown: log file closed ----\n");
                sink.sync();
                let _ = done.send(());
                return;
            }
        }
    }
}

impl LineSink for LogFile {
    fn write(&mut self, line: &str) {
        LogFile::write(self, line);
    }

    fn sync(&mut self) {
        let _ = self.file.sync_all();
    }
}

impl LogFile {
    fn write(&mut self, line: &str) {
        if self.size + line.len() as u64 > FILE_BYTES {
            match rotate(self.dir.as_fd(), FILE_KEEP).and_then(|()| open(self.dir.as_fd())) {
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

/// skiff.log in `dir`: appended to if it is a regular file, else refused.
fn open(dir: BorrowedFd<'_>) -> std::io::Result<File> {
    safe_file::open_append(dir, "skiff.log").map_err(Into::into)
}

/// skiff.log → skiff.log.1 → ... → skiff.log.KEEP (the oldest is dropped).
/// Renames move a planted symlink or FIFO itself, never what it names.
pub fn rotate(dir: BorrowedFd<'_>, keep: u32) -> std::io::Result<()> {
    use rustix::fs::{renameat, unlinkat, AtFlags};
    let name = |n: u32| if n == 0 { "skiff.log".to_string() } else { format!("skiff.log.{n}") };
    let _ = unlinkat(dir, name(keep).as_str(), AtFlags::empty());
    for n in (0..keep).rev() {
        match renameat(dir, name(n).as_str(), dir, name(n + 1).as_str()) {
            Err(e) if e != rustix::io::Errno::NOENT => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Opens the log folder and its current file. A skiff.log that is not a
/// regular file (a symlink or FIFO planted there) is rotated away, as a
/// full one would be, and a new file started: nothing is written through
/// it and nothing is deleted (and the third value is true).
fn open_folder(dir: &Path) -> Result<(OwnedFd, File, bool), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let fd = safe_file::open_dir(dir).map_err(|e| format!("the folder: {e}"))?;
    let mut refused = false;
    let file = match safe_file::open_append(fd.as_fd(), "skiff.log") {
        Ok(f) => f,
        Err(e @ (safe_file::Error::Symlink | safe_file::Error::NotRegular(_))) => {
            log::warn!("log: {}/skiff.log: {e}; moving it aside as skiff.log.1 and starting a new file", dir.display());
            refused = true;
            rotate(fd.as_fd(), FILE_KEEP).map_err(|e| e.to_string())?;
            open(fd.as_fd()).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    Ok((fd, file, refused))
}

/// Starts writing the log to `dir` (created if needed), beginning with
/// what the ring holds, so the early boot is in the file too. True if a
/// skiff.log that is not a regular file was found there (and moved aside).
pub fn persist(dir: &Path) -> bool {
    let (fd, file, refused) = match open_folder(dir) {
        Ok(opened) => opened,
        Err(e) => {
            log::warn!("log: cannot write {}: {e}; logging to the console and memory only", dir.display());
            return false;
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut lf = LogFile { dir: fd, file, size };
    let (tx, rx) = mpsc::sync_channel(FILE_QUEUE);
    let dropped = AtomicU64::new(0);
    // The ring's lines so far go first; the queue takes every later line
    // (installed while the ring is locked, so none is lost or doubled).
    let ring = lock(&RING);
    let (backlog, _) = ring.since(0);
    let spawned = thread::Builder::new().name("log-file".into()).spawn(move || {
        lf.write("---- boot ----\n");
        for line in backlog {
            lf.write(&line);
        }
        drain(rx, &mut lf);
    });
    let started = spawned.is_ok();
    if started {
        *lock(&FILE) = Some(FileQueue { tx, dropped });
    }
    drop(ring);
    match spawned {
        Ok(_) => log::info!("log: also writing to {}/skiff.log (rotated at {} KiB, {FILE_KEEP} old files kept)", dir.display(), FILE_BYTES / 1024),
        Err(e) => log::warn!("log: cannot start the log file writer: {e}; logging to the console and memory only"),
    }
    refused
}

/// Stops writing the log file and closes it (shutdown, before the data disk
/// that holds it is unmounted), waiting at most `limit` for the writer; the
/// console and the ring carry on. Returns false if the writer did not
/// finish in time (its file then stays open: the unmount falls back).
pub fn close_file(limit: Duration) -> bool {
    let Some(q) = lock(&FILE).take() else { return true };
    let end = Instant::now() + limit;
    let (done, closed) = mpsc::channel();
    let dropped = q.dropped.swap(0, Ordering::Relaxed);
    let last = (dropped > 0).then_some(ToFile::Dropped(dropped)).into_iter().chain([ToFile::Close(done)]);
    for mut msg in last {
        loop {
            match q.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return true, // the writer is gone already
                Err(TrySendError::Full(back)) if Instant::now() < end => {
                    msg = back;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
    }
    closed.recv_timeout(end.saturating_duration_since(Instant::now())).is_ok()
}

/// Lines from `seq` on and the next sequence number; waits up to `wait`
/// for a new line when there is none yet.
pub fn lines_since(seq: u64, wait: Duration) -> (Vec<String>, u64) {
    wait_since(&RING, &NEW_LINES, seq, wait)
}

/// [`Ring::since`] on `ring`, waiting up to `wait` on `new` (notified at
/// each push) when it holds nothing from `seq` on yet.
pub fn wait_since(ring: &Mutex<Ring>, new: &Condvar, seq: u64, wait: Duration) -> (Vec<String>, u64) {
    let ring = lock(ring);
    if ring.next > seq || wait.is_zero() {
        return ring.since(seq);
    }
    let (ring, _) = new.wait_timeout(ring, wait).unwrap_or_else(|e| e.into_inner());
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
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lines_carry_uptime_source_and_level() {
        let line = format_line(Duration::from_micros(1_234_567), "skiff", log::Level::Info, "engine ready");
        assert_eq!(line, "[    1.234567] skiff: engine ready\n");
        let line = format_line(Duration::from_secs(2), "podman", log::Level::Warn, "no disk");
        assert_eq!(line, "[    2.000000] podman: warning: no disk\n");
    }

    #[test]
    fn outside_text_reaches_the_console_escaped() {
        let at = Duration::from_secs(3);
        let line = |msg: &str| format_line(at, "podman", log::Level::Info, msg);
        // A terminal title set (OSC), a screen clear (CSI), a bell, a carriage
        // return hiding what came before, DEL, and an 8-bit CSI (C1, U+009B).
        assert_eq!(line("\x1b]0;owned\x07name"), "[    3.000000] podman: \\e]0;owned\\x07name\n");
        assert_eq!(line("a\x1b[2Jb\rc\x7fd\u{9b}31me"), "[    3.000000] podman: a\\e[2Jb\\x0dc\\x7fd\\x9b31me\n");
        // Ordinary text, tabs and UTF-8 are kept as they are.
        assert_eq!(line("caf\u{e9}\tdone \u{1f433}"), "[    3.000000] podman: caf\u{e9}\tdone \u{1f433}\n");
        // A line break starts a new line with the same prefix: no forged lines.
        assert_eq!(
            line("pull failed\n[    9.000000] skiff: engine ready\n"),
            "[    3.000000] podman: pull failed\n[    3.000000] podman: [    9.000000] skiff: engine ready\n"
        );
        let mut out = String::new();
        escape("\0\x01\x1f \u{80}\u{a0}", &mut out);
        assert_eq!(out, "\\x00\\x01\\x1f \\x80\u{a0}");
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

    /// A sink that waits at a gate (a slow disk) and records what it got.
    struct Slow {
        gate: Arc<Mutex<()>>,
        got: Arc<Mutex<Vec<String>>>,
        /// Writes begun (the writer may then be waiting at the gate).
        entered: Arc<AtomicU64>,
    }

    impl LineSink for Slow {
        fn write(&mut self, line: &str) {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let _open = lock(&self.gate);
            lock(&self.got).push(line.to_string());
        }
        fn sync(&mut self) {}
    }

    #[test]
    fn a_stuck_log_file_never_stalls_the_logger() {
        let gate = Arc::new(Mutex::new(()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::sync_channel(4);
        let q = FileQueue { tx, dropped: AtomicU64::new(0) };
        let stuck = lock(&gate);
        let entered = Arc::new(AtomicU64::new(0));
        let mut sink = Slow { gate: Arc::clone(&gate), got: Arc::clone(&got), entered: Arc::clone(&entered) };
        let writer = thread::spawn(move || drain(rx, &mut sink));
        // The writer takes line 0 and is stuck on the disk with it...
        q.offer("line 0\n");
        let end = Instant::now() + Duration::from_secs(30);
        while entered.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < end, "the writer never took a line");
            thread::sleep(Duration::from_millis(1));
        }
        // ...so of the next 999 lines, 4 fit in the queue and the rest are dropped.
        let t = Instant::now();
        for i in 1..1000 {
            q.offer(&format!("line {i}\n"));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "offering lines waited for the disk: {:?}", t.elapsed());
        let dropped = q.dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 999 - 4, "queue of 4, one line in the writer's hands");
        drop(stuck);
        // The disk moves again: once the queue has drained (waited for, not
        // guessed with a sleep: a loaded machine is slow), the next line
        // carries the count of the gap.
        let end = Instant::now() + Duration::from_secs(30);
        while (lock(&got).len() as u64) < 1000 - dropped {
            assert!(Instant::now() < end, "the writer did not drain the queue");
            thread::sleep(Duration::from_millis(10));
        }
        q.offer("after the gap\n");
        let (done, closed) = mpsc::channel();
        q.tx.send(ToFile::Close(done)).unwrap();
        closed.recv_timeout(Duration::from_secs(5)).expect("the writer closes once the disk moves");
        writer.join().unwrap();
        let got = lock(&got).clone();
        assert_eq!(got.first().map(String::as_str), Some("line 0\n"));
        let note = format!("---- {dropped} log lines dropped here");
        let n = got.len();
        assert!(got[n - 3].starts_with(&note), "no note of the dropped lines where they were: {got:?}");
        assert_eq!(got[n - 2], "after the gap\n");
        assert_eq!(got[n - 1], "---- shutdown: log file closed ----\n");
        assert_eq!(n as u64, 1000 - dropped + 3, "every line not dropped was written: {got:?}");
    }

    #[test]
    fn rotation_shifts_files_and_drops_the_oldest() {
        let dir = std::env::temp_dir().join(format!("skiff-log-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for round in 0..4 {
            fs::write(dir.join("skiff.log"), format!("round {round}")).unwrap();
            rotate(safe_file::open_dir(&dir).unwrap().as_fd(), 2).unwrap();
        }
        assert!(!dir.join("skiff.log").exists());
        assert_eq!(fs::read_to_string(dir.join("skiff.log.1")).unwrap(), "round 3");
        assert_eq!(fs::read_to_string(dir.join("skiff.log.2")).unwrap(), "round 2");
        assert!(!dir.join("skiff.log.3").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// A skiff.log planted as a symlink (by a container given the data
    /// disk) is never written through.
    #[test]
    fn the_log_file_is_never_a_symlink_followed() {
        let dir = std::env::temp_dir().join(format!("skiff-log-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("skiff.log")).unwrap();
        let (_fd, mut f, _) = open_folder(&dir).expect("a new file is started");
        f.write_all(b"log line\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(fs::read_to_string(dir.join("skiff.log")).unwrap(), "log line\n");
        assert!(fs::symlink_metadata(dir.join("skiff.log.1")).unwrap().is_symlink(), "the link is kept, moved aside");
        // A FIFO is moved aside the same way, without waiting for a reader.
        fs::remove_file(dir.join("skiff.log")).unwrap();
        safe_file::mkfifo(&dir.join("skiff.log"));
        let (_fd, _f, refused) = open_folder(&dir).expect("a new file is started");
        assert!(refused, "the FIFO is reported");
        assert!(fs::metadata(dir.join("skiff.log")).unwrap().is_file());
        // A symlinked log folder is not entered.
        let folder = dir.join("linked");
        std::os::unix::fs::symlink(&dir, &folder).unwrap();
        assert!(open_folder(&folder).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

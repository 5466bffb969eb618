//! A recording [`Sys`] for unit tests: a fake clock that `sleep` advances,
//! fake processes that die on the signals they obey, and a log of every
//! call with the fake time it happened at.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use super::sys::{Spawned, Sys};

/// One call, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// kill(pid or -1, signal number).
    Kill(Option<i32>, i32),
    /// A program started: its path and arguments, joined by spaces.
    Spawn(i32, String),
    Unmount(String, bool),
    RemountReadOnly(String),
    Sync,
    CloseLog,
    StopAccepting,
    CloseEngineStreams,
    UnmountShares,
    ReleaseLeases,
    UnmountDataDisk,
}

#[derive(Default)]
struct State {
    elapsed: Duration,
    calls: Vec<(Duration, Call)>,
    /// Live processes and the signals they exit on (SIGKILL always).
    live: BTreeMap<i32, Vec<i32>>,
    zombies: VecDeque<(i32, ExitStatus)>,
    next_pid: i32,
    /// Signals that processes started from now on exit on.
    obeys: Vec<i32>,
    mounts_busy: bool,
}

/// Clones share one state, so a test keeps a handle to what the code under
/// test records.
#[derive(Clone)]
pub struct Fake {
    base: Instant,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Processes started by this fake exit on `obeys` (and on SIGKILL).
    pub fn new(obeys: &[Signal]) -> Self {
        let state = State { next_pid: 100, obeys: obeys.iter().map(|s| s.as_raw()).collect(), ..State::default() };
        Self { base: Instant::now(), state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A child the init inherited (not started through the fake), exiting on `obeys`.
    pub fn adopt(&self, pid: i32, obeys: &[Signal]) {
        self.lock().live.insert(pid, obeys.iter().map(|s| s.as_raw()).collect());
    }

    /// Makes `pid` exit with `code` now.
    pub fn exit(&self, pid: Pid, code: i32) {
        let mut s = self.lock();
        let pid = pid.as_raw_nonzero().get();
        if s.live.remove(&pid).is_some() {
            s.zombies.push_back((pid, ExitStatus::from_raw(code << 8)));
        }
    }

    /// Every unmount fails with EBUSY from now on.
    pub fn mounts_busy(&self) {
        self.lock().mounts_busy = true;
    }

    /// The fake time since the fake was made.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    pub fn calls(&self) -> Vec<(Duration, Call)> {
        self.lock().calls.clone()
    }

    /// The position of the first call matching `want`, and its time.
    pub fn find(&self, want: impl Fn(&Call) -> bool) -> Option<(usize, Duration)> {
        self.lock().calls.iter().enumerate().find(|(_, (_, c))| want(c)).map(|(i, (t, _))| (i, *t))
    }

    fn record(&self, call: Call) {
        let mut s = self.lock();
        let t = s.elapsed;
        s.calls.push((t, call));
    }
}

impl Sys for Fake {
    fn now(&self) -> Instant {
        self.base + self.lock().elapsed
    }

    fn sleep(&self, d: Duration) {
        self.lock().elapsed += d;
    }

    fn kill(&self, pid: Option<Pid>, sig: Signal) -> Result<(), Errno> {
        let raw = sig.as_raw();
        self.record(Call::Kill(pid.map(|p| p.as_raw_nonzero().get()), raw));
        let mut s = self.lock();
        let targets: Vec<i32> = match pid {
            Some(p) if s.live.contains_key(&p.as_raw_nonzero().get()) => vec![p.as_raw_nonzero().get()],
            Some(_) => return Err(Errno::SRCH),
            None => s.live.keys().copied().collect(),
        };
        for pid in targets {
            if raw == libc::SIGKILL || s.live[&pid].contains(&raw) {
                s.live.remove(&pid);
                s.zombies.push_back((pid, ExitStatus::from_raw(raw)));
            }
        }
        Ok(())
    }

    fn wait_any(&self) -> Result<Option<(Pid, ExitStatus)>, Errno> {
        let mut s = self.lock();
        match s.zombies.pop_front() {
            Some((pid, status)) => Ok(Pid::from_raw(pid).map(|p| (p, status))),
            None if s.live.is_empty() => Err(Errno::CHILD),
            None => Ok(None),
        }
    }

    fn wait_pid(&self, pid: Pid) -> Result<Option<ExitStatus>, Errno> {
        let mut s = self.lock();
        let raw = pid.as_raw_nonzero().get();
        if let Some(i) = s.zombies.iter().position(|(p, _)| *p == raw) {
            return Ok(s.zombies.remove(i).map(|(_, status)| status));
        }
        if s.live.contains_key(&raw) { Ok(None) } else { Err(Errno::CHILD) }
    }

    fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let pid = {
            let mut s = self.lock();
            let pid = s.next_pid;
            s.next_pid += 1;
            let obeys = s.obeys.clone();
            s.live.insert(pid, obeys);
            pid
        };
        let line = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        self.record(Call::Spawn(pid, line));
        let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("pid 0"))?;
        Ok(Spawned { pid, stdout: None, stderr: None })
    }

    fn unmount(&self, target: &str, detach: bool) -> Result<(), Errno> {
        self.record(Call::Unmount(target.into(), detach));
        if self.lock().mounts_busy && !detach { Err(Errno::BUSY) } else { Ok(()) }
    }

    fn remount_read_only(&self, target: &str) -> Result<(), Errno> {
        self.record(Call::RemountReadOnly(target.into()));
        Ok(())
    }

    fn sync(&self) {
        self.record(Call::Sync);
    }

    fn close_log(&self, _limit: Duration) -> bool {
        self.record(Call::CloseLog);
        true
    }
}

impl super::power::Services for Fake {
    fn stop_accepting(&self) {
        self.record(Call::StopAccepting);
    }

    fn close_engine_streams(&self) {
        self.record(Call::CloseEngineStreams);
    }

    fn unmount_shares(&self) {
        self.record(Call::UnmountShares);
    }

    fn release_leases(&self) {
        self.record(Call::ReleaseLeases);
    }

    fn unmount_data_disk(&self) {
        self.record(Call::UnmountDataDisk);
    }
}

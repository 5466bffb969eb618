//! Exit statuses for helpers that the init's threads start (debug shells,
//! `podman start`): PID 1's main loop reaps every child with waitpid(-1),
//! so a thread that wants its child's status registers the pid here and the
//! main loop hands the status over.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use std::sync::Mutex;

use rustix::process::Pid;

use super::sys::{Kernel, Sys};

static WAITING: Mutex<Option<HashMap<i32, Sender<ExitStatus>>>> = Mutex::new(None);

/// Spawns `cmd`; its exit status arrives on the returned channel. The
/// table stays locked from spawn to registration, so a child that exits at
/// once cannot be reaped before it is known.
/// Never call `wait` on the returned handle (the main loop reaps); only
/// take its pipes and drop it.
pub fn spawn(cmd: &mut Command) -> io::Result<(Child, Receiver<ExitStatus>)> {
    let mut map = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    let child = super::signals::clean_mask(cmd).spawn()?;
    let pid = Pid::from_child(&child);
    let (tx, rx) = channel();
    map.get_or_insert_with(HashMap::new).insert(pid.as_raw_nonzero().get(), tx);
    Ok((child, rx))
}

/// Called by the main loop for each reaped child; true if someone waited for it.
pub fn reaped(pid: Pid, status: ExitStatus) -> bool {
    let mut map = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    match map.as_mut().and_then(|m| m.remove(&pid.as_raw_nonzero().get())) {
        Some(tx) => {
            let _ = tx.send(status);
            true
        }
        None => false,
    }
}

/// Waits for the child `pid` of the calling thread: its status comes from
/// the main loop, or (should that loop not see it) from waitpid on the pid
/// itself. `None` if `limit` passed first.
pub fn wait(pid: Pid, status: &Receiver<ExitStatus>, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now().checked_add(limit); // None: no limit
    loop {
        match status.recv_timeout(Duration::from_millis(100)) {
            Ok(s) => return Some(s),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(s)) = Kernel.wait_pid(pid) {
            let mut map = WAITING.lock().unwrap_or_else(|e| e.into_inner());
            map.as_mut().map(|m| m.remove(&pid.as_raw_nonzero().get()));
            return Some(s);
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            return None;
        }
    }
}

//! Exit statuses for helpers that the init's threads start (debug shells,
//! `podman start`): PID 1's main loop reaps every child with waitpid(-1),
//! so a thread that wants its child's status registers the pid here and the
//! main loop hands the status over.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use rustix::process::{Pid, WaitStatus};

static WAITING: Mutex<Option<HashMap<i32, Sender<WaitStatus>>>> = Mutex::new(None);

/// Spawns `cmd`; its exit status arrives on the returned channel. The
/// table stays locked from spawn to registration, so a child that exits at
/// once cannot be reaped before it is known.
/// Never call `wait` on the returned handle (the main loop reaps); only
/// take its pipes and drop it.
pub fn spawn(cmd: &mut Command) -> io::Result<(Child, Receiver<WaitStatus>)> {
    let mut map = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    let pid = Pid::from_child(&child);
    let (tx, rx) = channel();
    map.get_or_insert_with(HashMap::new).insert(pid.as_raw_nonzero().get(), tx);
    Ok((child, rx))
}

/// Called by the main loop for each reaped child; true if someone waited for it.
pub fn reaped(pid: Pid, status: WaitStatus) -> bool {
    let mut map = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    match map.as_mut().and_then(|m| m.remove(&pid.as_raw_nonzero().get())) {
        Some(tx) => {
            let _ = tx.send(status);
            true
        }
        None => false,
    }
}

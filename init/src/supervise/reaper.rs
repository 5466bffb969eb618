//! Zombie reaping: PID 1 inherits every orphan and must collect each one.

use rustix::process::{wait, Pid, WaitOptions, WaitStatus};

/// Human text for an exit status: `exit 3` or `signal 9`.
pub fn describe(status: &WaitStatus) -> String {
    if let Some(code) = status.exit_status() {
        format!("exit {code}")
    } else if let Some(sig) = status.terminating_signal() {
        format!("signal {sig}")
    } else {
        format!("status {:#x}", status.as_raw())
    }
}

/// Reaps every exited child without blocking; returns them.
pub fn reap_all() -> Vec<(Pid, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        // wait() is waitpid(-1): every child. rustix's waitpid(None) is
        // waitpid(0), which misses children in other process groups (conmon,
        // containers, shells: they all call setsid).
        match wait(WaitOptions::NOHANG) {
            Ok(Some(done)) => out.push(done),
            Ok(None) | Err(rustix::io::Errno::CHILD) => return out,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::warn!("reaper: waitpid failed: {e}");
                return out;
            }
        }
    }
}

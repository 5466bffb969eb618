//! Zombie reaping: PID 1 inherits every orphan and must collect each one.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::Pid;

use super::sys::Sys;

/// Human text for an exit status: `exit 3` or `signal 9`.
pub fn describe(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit {code}")
    } else if let Some(sig) = status.signal() {
        format!("signal {sig}")
    } else {
        format!("status {:#x}", status.into_raw())
    }
}

/// Reaps every exited child without blocking; returns them.
pub fn reap_all(sys: &impl Sys) -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        // Any child, whatever its process group (see `Sys::wait_any`).
        match sys.wait_any() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::fake::Fake;
    use rustix::process::Signal;

    #[test]
    fn every_exited_child_is_reaped_in_one_pass_and_the_living_are_left() {
        let fake = Fake::new(&[Signal::TERM]);
        for pid in [7, 8, 9] {
            fake.adopt(pid, &[Signal::TERM]);
        }
        fake.adopt(10, &[]);
        fake.kill(None, Signal::TERM).unwrap();
        let reaped: Vec<(i32, String)> = reap_all(&fake).iter().map(|(p, s)| (p.as_raw_nonzero().get(), describe(s))).collect();
        assert_eq!(reaped, [(7, "signal 15".into()), (8, "signal 15".into()), (9, "signal 15".into())]);
        assert!(reap_all(&fake).is_empty(), "pid 10 still runs");
    }

    #[test]
    fn exit_statuses_read_as_codes_or_signals() {
        assert_eq!(describe(&ExitStatus::from_raw(3 << 8)), "exit 3");
        assert_eq!(describe(&ExitStatus::from_raw(9)), "signal 9");
    }
}

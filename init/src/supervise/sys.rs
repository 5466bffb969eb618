//! The system calls that supervision and shutdown make (signal, wait,
//! spawn, unmount, sync, the clock), behind a small trait as youki does:
//! the code that decides *what* happens *when* talks only to [`Sys`], so
//! the order is unit-tested with a recording fake (`fake.rs`), while
//! [`Kernel`] is a thin layer over the real calls.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::mount::{mount_remount, unmount, MountFlags, UnmountFlags};
use rustix::process::{kill_process, Pid, Signal, WaitOptions};

/// A process just started: its pid and the pipes asked for. It is never
/// waited for through a `Child` handle: PID 1 reaps with [`Sys::wait_any`].
pub struct Spawned {
    pub pid: Pid,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// What the supervision and shutdown logic asks of the system.
pub trait Sys: Clone + Send + Sync + 'static {
    /// The monotonic clock.
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
    /// kill(2) to `pid`, or with `None` to every process but PID 1 (pid -1).
    fn kill(&self, pid: Option<Pid>, sig: Signal) -> Result<(), Errno>;
    /// waitpid(-1, WNOHANG): any child, in any process group (conmon,
    /// containers and shells call setsid). `Ok(None)`: none has exited yet;
    /// `Err(CHILD)`: no children at all.
    fn wait_any(&self) -> Result<Option<(Pid, ExitStatus)>, Errno>;
    /// waitpid(pid, WNOHANG), for a child the caller owns.
    fn wait_pid(&self, pid: Pid) -> Result<Option<ExitStatus>, Errno>;
    fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned>;
    /// umount2(2), lazily (`MNT_DETACH`) if `detach`.
    fn unmount(&self, target: &str, detach: bool) -> Result<(), Errno>;
    fn remount_read_only(&self, target: &str) -> Result<(), Errno>;
    fn sync(&self);
    /// Hands the log file its last lines and closes it (it holds the data
    /// disk busy while open); false if that took longer than `limit`.
    fn close_log(&self, limit: Duration) -> bool;
}

/// Unmounts `target`, retrying every 100 ms while it is busy, until
/// `until`. Returns the last result and how many tries it took.
pub fn unmount_retrying(sys: &impl Sys, target: &str, until: Instant) -> (Result<(), Errno>, u32) {
    let mut tries = 0;
    loop {
        tries += 1;
        match sys.unmount(target, false) {
            Err(Errno::BUSY) if sys.now() < until => sys.sleep(Duration::from_millis(100)),
            other => return (other, tries),
        }
    }
}

/// The real system.
#[derive(Clone, Copy, Default)]
pub struct Kernel;

impl Sys for Kernel {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        thread::sleep(d)
    }

    fn kill(&self, pid: Option<Pid>, sig: Signal) -> Result<(), Errno> {
        match pid {
            Some(pid) => kill_process(pid, sig),
            None => {
                // SAFETY: kill(2) with pid -1 takes no pointers; it only sends a signal.
                if unsafe { libc::kill(-1, sig.as_raw()) } == 0 {
                    Ok(())
                } else {
                    Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL))
                }
            }
        }
    }

    fn wait_any(&self) -> Result<Option<(Pid, ExitStatus)>, Errno> {
        // wait() is waitpid(-1); rustix's waitpid(None) is waitpid(0), which
        // misses children in other process groups.
        Ok(rustix::process::wait(WaitOptions::NOHANG)?.map(|(pid, s)| (pid, ExitStatus::from_raw(s.as_raw()))))
    }

    fn wait_pid(&self, pid: Pid) -> Result<Option<ExitStatus>, Errno> {
        Ok(rustix::process::waitpid(Some(pid), WaitOptions::NOHANG)?.map(|(_, s)| ExitStatus::from_raw(s.as_raw())))
    }

    fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let mut child = super::signals::clean_mask(cmd).spawn()?;
        // Dropping the Child neither waits nor kills: the pid is reaped by PID 1.
        Ok(Spawned { pid: Pid::from_child(&child), stdout: child.stdout.take(), stderr: child.stderr.take() })
    }

    fn unmount(&self, target: &str, detach: bool) -> Result<(), Errno> {
        unmount(target, if detach { UnmountFlags::DETACH } else { UnmountFlags::empty() })
    }

    fn remount_read_only(&self, target: &str) -> Result<(), Errno> {
        mount_remount(target, MountFlags::RDONLY, c"")
    }

    fn sync(&self) {
        rustix::fs::sync()
    }

    fn close_log(&self, limit: Duration) -> bool {
        crate::boot::logger::close_file(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::reaper::describe;

    /// Run by `the_real_wait_reaps_children_in_other_process_groups` in a
    /// child test process, so its wait(-1) cannot take another test's child.
    #[test]
    #[ignore = "run in its own process by the test below"]
    fn reap_a_child_in_its_own_process_group() {
        if std::env::var_os("SKIFF_REAP_CHILD").is_none() {
            return;
        }
        use std::os::unix::process::CommandExt;
        let spawned = Kernel.spawn(Command::new("/bin/sh").args(["-c", "exit 7"]).process_group(0)).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((pid, status)) = Kernel.wait_any().unwrap() {
                assert_eq!(pid, spawned.pid);
                assert_eq!(describe(&status), "exit 7");
                return;
            }
            assert!(Instant::now() < end, "the exited child (own process group) was never reaped");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_real_wait_reaps_children_in_other_process_groups() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", "supervise::sys::tests::reap_a_child_in_its_own_process_group", "--ignored", "--nocapture"])
            .env("SKIFF_REAP_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    }
}

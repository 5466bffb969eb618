//! Child processes of `skiff run` (QEMU and its device daemons): found on
//! PATH or in cargo's bin folder, killed with us, and reaped by us.
//!
//! Zombies: `skiff start` leaves `skiff run` detached (its own session)
//! and returns, so `skiff run` is adopted by the nearest child subreaper
//! above it (systemd's user manager on a desktop), else by the machine's
//! PID 1, and its exit status goes there; nothing `skiff` does can change
//! who that is (a double fork would only make the adoption happen
//! earlier). What `skiff run` can own is what runs below it: it makes
//! itself a child subreaper, so a daemon's own children orphaned when the
//! daemon is stopped (virtiofsd's sandboxed worker, which it forks and
//! which dies with it) come to `skiff run` instead of the machine's PID 1,
//! and reaps them before it exits ([`reap_adopted`]). On machines whose PID
//! 1 reaps late they no longer linger as zombies of a VM long gone.

use std::env;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// Children die with us: a killed `skiff run` must not leave QEMU behind.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and makes one
    // syscall, prctl(PR_SET_PDEATHSIG), which allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        })
    }
}

/// Makes this process the reaper of orphans among its descendants
/// (`PR_SET_CHILD_SUBREAPER`); see the module comment.
pub fn become_subreaper() -> io::Result<()> {
    // Any pid given turns the flag on.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// Reaps every child still around, waiting up to `limit` for those still
/// running. Call once our own children (each with its `Child`) have been
/// waited for: what is left are adopted orphans. Returns how many were reaped.
pub fn reap_adopted(limit: Duration) -> usize {
    let end = Instant::now() + limit;
    let mut reaped = 0;
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => reaped += 1,
            // Children left, none exited yet.
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(20)),
            // No children (ECHILD), or out of time: the rest go to our own reaper.
            _ => return reaped,
        }
    }
}

/// Finds a program in PATH or in cargo's bin folder.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(cargo) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(cargo).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Waits until `path` exists (a daemon's socket), or `child` (named `what`)
/// exits, or `limit` passes.
pub fn wait_for_path(path: &Path, child: &mut Child, what: &str, limit: Duration) -> io::Result<()> {
    let end = Instant::now() + limit;
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("{what} exited early ({status})")));
        }
        if Instant::now() > end {
            return Err(io::Error::other(format!("{} did not appear", path.display())));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Kills and reaps a helper daemon (at exit).
pub fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_of_a_child_are_adopted_and_reaped() {
        // In a process of its own: a subreaper reaping with waitpid(-1)
        // would take the children of tests running beside it.
        let out = Command::new(env::current_exe().unwrap())
            .args(["--exact", "vm::process::tests::adopt_and_reap", "--ignored", "--test-threads=1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    #[ignore = "run alone by orphans_of_a_child_are_adopted_and_reaped"]
    fn adopt_and_reap() {
        become_subreaper().unwrap();
        // A child whose own child outlives it: the grandchild is orphaned
        // and, with us a subreaper, becomes ours.
        let out = Command::new("sh").args(["-c", "sleep 0.3 & echo $!"]).output().unwrap();
        let grandchild: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let ppid = || {
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).ok()?;
            stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()
        };
        assert_eq!(ppid(), Some(std::process::id()), "the orphan is adopted by us, not PID 1");
        assert!(reap_adopted(Duration::from_secs(10)) >= 1);
        assert!(!Path::new(&format!("/proc/{grandchild}")).exists(), "reaped: no zombie left");
    }
}

//! Child processes of `skiff run` (QEMU and its device daemons): found on
//! PATH or in cargo's bin folder, and killed with us.

use std::env;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// Children die with us: a killed `skiff run` must not leave QEMU behind.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
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

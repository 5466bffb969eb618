//! One VM per state folder: `skiff run` claims the folder with a pid file,
//! and a pid file whose process is gone or is not our `skiff run` is a
//! crashed VM's leftover, cleaned up, never trusted. QEMU's pid is recorded
//! beside it for `skiff status`.

use std::fs;
use std::io;

use crate::state::{file, StateDir, StateError};

/// A pid record is two numbers on a line.
const MAX_RECORD: u64 = 64;

/// A process as recorded in a pid file: its pid and its start time (clock
/// ticks after boot, /proc/PID/stat field 22), so a reused pid never passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: i32,
    pub start: u64,
}

impl ProcId {
    /// The live process `pid`; `None` if there is none, or only a zombie
    /// (a `skiff run` that has exited but whose parent, e.g. a test
    /// harness waiting for this very `skiff stop`, has not reaped it yet).
    pub fn of(pid: i32) -> Option<ProcId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if has_exited(&stat) {
            return None;
        }
        Some(ProcId { pid, start: stat_start_time(&stat)? })
    }

    pub fn encode(&self) -> String {
        format!("{} {}\n", self.pid, self.start)
    }

    pub fn decode(text: &str) -> Option<ProcId> {
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok().filter(|p: &i32| *p > 0)?;
        let start = it.next()?.parse().ok()?;
        Some(ProcId { pid, start })
    }

    /// Still the same process.
    pub fn alive(&self) -> bool {
        ProcId::of(self.pid) == Some(*self)
    }
}

/// Field 3 of /proc/PID/stat is Z (zombie) or X (dead): it has exited.
pub fn has_exited(stat: &str) -> bool {
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Field 22 of /proc/PID/stat (after the `(comm)` field, which may hold spaces).
pub fn stat_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when a command line (NUL-separated) is `skiff … run …`.
pub fn is_skiff_run(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let Some(argv0) = args.next() else { return false };
    let name = argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0);
    name.starts_with(b"skiff") && args.any(|a| a == b"run")
}

/// The `skiff run` serving this state folder, if one is alive.
pub fn running(state: &StateDir) -> Option<ProcId> {
    let id = ProcId::decode(&file::read(&state.pid_file(), MAX_RECORD).ok()?)?;
    let cmdline = fs::read(format!("/proc/{}/cmdline", id.pid)).ok()?;
    (id.alive() && is_skiff_run(&cmdline)).then_some(id)
}

/// `skiff run`'s hold on the state folder; the pid file goes with it.
pub struct Claim {
    state: StateDir,
}

/// `skiff run`'s exit: its runtime files go (sockets, pid files, ...),
/// through the one function that owns them.
impl Drop for Claim {
    fn drop(&mut self) {
        self.state.clear_runtime();
    }
}

/// Claims the folder for this `skiff run`: refuses when another one runs,
/// cleans up a crashed VM's leftovers.
pub fn claim(state: &StateDir) -> Result<Claim, StateError> {
    if let Some(other) = running(state) {
        return Err(StateError::Locked { path: state.path().to_path_buf(), pid: other.pid });
    }
    clean_leftovers(state);
    let io = |error| StateError::Io { path: state.pid_file(), error };
    let me = ProcId::of(std::process::id() as i32).ok_or_else(|| io(io::Error::other("cannot read our own /proc entry")))?;
    file::write(&state.pid_file(), me.encode().as_bytes()).map_err(io)?;
    Ok(Claim { state: state.clone() })
}

/// Records QEMU's process for `status` (and tests).
pub fn record_qemu(state: &StateDir, pid: u32) -> io::Result<()> {
    match ProcId::of(pid as i32) {
        Some(id) => file::write(&state.qemu_pid_file(), id.encode().as_bytes()),
        None => Ok(()),
    }
}

/// The running VM's QEMU, if it is alive.
pub fn qemu(state: &StateDir) -> Option<ProcId> {
    ProcId::decode(&file::read(&state.qemu_pid_file(), MAX_RECORD).ok()?).filter(ProcId::alive)
}

/// Removes what a VM that did not stop cleanly left behind. Called only
/// when no `skiff run` of this folder is alive; a clean exit removed
/// everything already (its claim), so whatever is found is a leftover.
pub fn clean_leftovers(state: &StateDir) {
    let found = state.clear_runtime();
    if !found.is_empty() {
        eprintln!("skiff: cleaned up after a VM that did not stop cleanly ({})", found.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_has_exited() {
        assert!(has_exited("4242 (skiff run) Z 1 4242 4242 0 -1"));
        assert!(has_exited("4242 (a) b) X 1"));
        assert!(!has_exited("4242 (skiff) S 1 4242 4242 0 -1"));
        assert!(!has_exited("4242 (skiff Z) R 1"));
        assert!(ProcId::of(std::process::id() as i32).is_some(), "this process is alive");
    }

    #[test]
    fn reads_the_start_time_after_a_spaced_comm() {
        let stat = "42 (sk iff) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(stat_start_time(stat), Some(98765));
        assert_eq!(stat_start_time("garbage"), None);
    }

    #[test]
    fn pid_records_round_trip_and_reject_junk() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        assert_eq!(ProcId::decode(&me.encode()), Some(me));
        assert!(!ProcId { start: me.start + 1, ..me }.alive(), "a reused pid is not our process");
        assert_eq!(ProcId::decode("0 5"), None);
        assert_eq!(ProcId::decode("x"), None);
    }

    #[test]
    fn only_skiff_run_counts() {
        assert!(is_skiff_run(b"/usr/bin/skiff\0run\0--dir\0/x\0"));
        assert!(is_skiff_run(b"target/release/skiff\0run\0"));
        assert!(!is_skiff_run(b"/usr/bin/skiff\0status\0"));
        assert!(!is_skiff_run(b"/bin/sleep\0run\0"));
        assert!(!is_skiff_run(b""));
    }

    #[test]
    fn stale_pid_file_is_not_trusted_and_is_cleaned() {
        let dir = std::env::temp_dir().join(format!("skiff-life-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let state = StateDir::create(&dir).unwrap();
        // Our own pid is alive, but this test binary is not `skiff run`.
        let me = ProcId::of(std::process::id() as i32).unwrap();
        fs::write(state.pid_file(), me.encode()).unwrap();
        fs::write(state.docker_sock(), b"").unwrap();
        assert!(running(&state).is_none());
        let claim = claim(&state).unwrap();
        assert!(!state.docker_sock().exists(), "stale socket removed");
        assert!(state.pid_file().exists());
        drop(claim);
        assert!(!state.pid_file().exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_clean_exit_leaves_nothing_to_report() {
        let dir = std::env::temp_dir().join(format!("skiff-life-clean-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let state = StateDir::create(&dir).unwrap();
        let claim = claim(&state).unwrap();
        for f in [state.docker_sock(), state.qmp(), state.ports()] {
            fs::write(f, b"").unwrap();
        }
        drop(claim);
        assert!(state.clear_runtime().is_empty(), "skiff run's exit removed every runtime file; stop would report none");
        fs::remove_dir_all(&dir).unwrap();
    }
}

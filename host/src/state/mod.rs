//! The state folder (`~/.skiff` by default): one VM's sockets, console log
//! and records. It is the boundary between local users, so it is created
//! 0700 under a restrictive umask before anything is made in it, and one
//! owned by another user is refused.
//!
//! The records kept in it or for it: the secret, the remembered settings,
//! the running VM's `run-state`, and the docker context that points at its
//! socket.

pub mod context;
pub mod error;
pub mod file;
pub mod pidfile;
pub mod run_state;
pub mod secret;
pub mod settings;


use std::env;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use error::StateError;

/// `~/.skiff`, or `./.skiff` without a home.
pub fn default_dir() -> PathBuf {
    env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".skiff")
}

/// Makes every file and socket this process creates private (0600/0700),
/// so nothing is ever world-readable between its creation and a chmod.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// A VM's state folder, checked to be private and ours.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates (0700) or opens the folder. Refuses one owned by another user;
    /// tightens one of ours that others could enter.
    pub fn create(path: &Path) -> Result<StateDir, StateError> {
        let failed = |error| StateError::Create { path: path.to_path_buf(), error };
        DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(failed)?;
        let root = fs::canonicalize(path).map_err(failed)?;
        let meta = fs::symlink_metadata(&root).map_err(failed)?;
        check_owner(&root, meta.uid(), euid())?;
        if meta.mode() & 0o077 != 0 {
            eprintln!("skiff: {} was open to other users; making it private (0700)", root.display());
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(failed)?;
        }
        Ok(StateDir { root })
    }

    /// Opens an existing folder for a command that talks to a running VM.
    pub fn existing(path: &Path) -> Result<StateDir, StateError> {
        if !path.is_dir() {
            return Err(StateError::NotFound(path.to_path_buf()));
        }
        let io = |error| StateError::Io { path: path.to_path_buf(), error };
        let root = fs::canonicalize(path).map_err(io)?;
        let meta = fs::metadata(&root).map_err(io)?;
        check_owner(&root, meta.uid(), euid())?;
        Ok(StateDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
    /// The engine socket for DOCKER_HOST.
    pub fn docker_sock(&self) -> PathBuf {
        self.root.join("docker.sock")
    }
    /// skiff-buildkit's socket: the BuildKit endpoints the bridge hands it.
    pub fn build_sock(&self) -> PathBuf {
        self.root.join("buildkit.sock")
    }
    /// The guest's serial console.
    pub fn console(&self) -> PathBuf {
        self.root.join("console.log")
    }
    /// The guest's events of the last boot (`skiff_proto::events` lines),
    /// copied by `skiff run` as they arrive; kept after the VM stops.
    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }
    /// What the running (or last) `skiff run` booted, how far it is, how
    /// it ended (`run_state`).
    pub fn run_state(&self) -> PathBuf {
        self.root.join("run-state")
    }
    /// QEMU's machine protocol socket (power button, status).
    pub fn qmp(&self) -> PathBuf {
        self.root.join("qmp.sock")
    }
    /// A second QMP socket, read only for QEMU's events (pause, resume):
    /// QEMU serves one client per QMP socket, and the power button needs one.
    pub fn qmp_events(&self) -> PathBuf {
        self.root.join("qmp-events.sock")
    }
    /// vhost-device-vsock's vhost-user socket (QEMU side).
    pub fn vhost(&self) -> PathBuf {
        self.root.join("vhost.sock")
    }
    /// The published-port listing `skiff ports` prints.
    pub fn ports(&self) -> PathBuf {
        self.root.join("ports")
    }
    /// vhost-device-vsock's hybrid-vsock socket (host side).
    pub fn hybrid_vsock(&self) -> PathBuf {
        self.root.join("vsock.sock")
    }
    /// The VM's secret (`skiff_proto::auth`), 0600.
    pub fn secret(&self) -> PathBuf {
        self.root.join("secret")
    }
    /// Share `n`'s virtiofsd vhost-user socket.
    pub fn share_socket(&self, n: usize) -> PathBuf {
        self.root.join(format!("fs-{n}.sock"))
    }
    /// The running `skiff run` (pid and start time).
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("skiff.pid")
    }
    /// The running QEMU (pid and start time).
    pub fn qemu_pid_file(&self) -> PathBuf {
        self.root.join("qemu.pid")
    }
    /// The persistent data disk (qcow2) unless `--ephemeral`.
    pub fn data_disk(&self) -> PathBuf {
        self.root.join("data.qcow2")
    }
    /// Copies of the ISOs, named by build id, with `current` and `previous`.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Output of a `skiff run` started by `skiff start`.
    pub fn run_log(&self) -> PathBuf {
        self.root.join("skiff.log")
    }
    /// The console of a boot's first attempt, kept when `skiff run` boots
    /// once more (see `run::run`).
    pub fn first_console(&self) -> PathBuf {
        self.root.join("console.log.1")
    }
    /// Settings remembered from `skiff start`.
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings")
    }
    /// What a running VM keeps in the folder: its sockets (engine, builder, QMP,
    /// vsock device, virtiofsd's and the guest-initiated `vsock.sock_PORT`
    /// ones), pid files, vsock address and port listing. Kept: the data
    /// disk, ISO copies, settings, secret, the logs and the `run-state`
    /// record (how the last run ended, for `skiff start`).
    pub fn runtime_files(&self) -> Vec<PathBuf> {
        let hybrid = self.hybrid_vsock();
        let ports_tmp = self.ports().with_extension("tmp");
        let mut files = vec![
            self.docker_sock(), self.build_sock(), self.qmp(), self.qmp_events(), self.root.join("paused"), self.vhost(), hybrid.clone(), self.target_record(), self.pid_file(),
            self.qemu_pid_file(), self.ports(), ports_tmp,
        ];
        let hybrid_prefix = format!("{}_", hybrid.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let is_share_socket = |name: &str| {
            let rest = name.strip_prefix("fs-").and_then(|r| r.strip_suffix(".sock").or_else(|| r.strip_suffix(".sock.pid")));
            rest.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        if let Ok(entries) = fs::read_dir(&self.root) {
            files.extend(
                entries
                    .flatten()
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.starts_with(&hybrid_prefix) || is_share_socket(&name)
                    })
                    .map(|e| e.path()),
            );
        }
        files
    }

    /// Removes the [runtime files](Self::runtime_files) and returns the
    /// names of those that were there. The one place they are removed:
    /// `skiff run` calls it as it exits (when its claim on the folder
    /// ends), and `start`/`stop` call it when they find no live `skiff
    /// run`, where anything found is a crashed VM's leftover.
    pub fn clear_runtime(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for path in self.runtime_files() {
            if fs::symlink_metadata(&path).is_ok() && fs::remove_file(&path).is_ok() {
                removed.push(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            }
        }
        removed
    }
    /// Where a running VM's vsock is reached, recorded by `skiff run`.
    pub fn target_record(&self) -> PathBuf {
        self.root.join("vsock-target")
    }
}

/// This process's effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Only the user running `skiff` may use a state folder.
fn check_owner(root: &Path, uid: u32, me: u32) -> Result<(), StateError> {
    if uid != me {
        return Err(StateError::NotOurs { path: root.to_path_buf(), owner: uid, me });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("skiff-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_private() {
        let dir = scratch("new").join("nested");
        let s = StateDir::create(&dir).unwrap();
        assert_eq!(fs::metadata(s.path()).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_open_folder_of_ours_is_tightened() {
        let dir = scratch("open");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::create(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_users_folder_is_refused() {
        assert!(matches!(check_owner(Path::new("/x"), 1000, 1001), Err(StateError::NotOurs { owner: 1000, me: 1001, .. })));
        assert!(check_owner(Path::new("/x"), 1000, 1000).is_ok());
    }

    #[test]
    fn a_missing_folder_is_told_apart() {
        let dir = scratch("missing");
        assert!(matches!(StateDir::existing(&dir), Err(StateError::NotFound(p)) if p == dir));
        let file = scratch("a-file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(StateDir::create(&file.join("sub")), Err(StateError::Create { .. })));
        fs::remove_file(&file).unwrap();
    }

    #[test]
    fn runtime_files_are_cleared_and_nothing_else() {
        let dir = scratch("runtime");
        let s = StateDir::create(&dir).unwrap();
        let runtime = ["docker.sock", "qmp.sock", "qmp-events.sock", "paused", "vhost.sock", "vsock.sock", "vsock.sock_1024", "vsock-target", "skiff.pid", "qemu.pid",
            "ports", "ports.tmp", "fs-0.sock", "fs-0.sock.pid", "fs-12.sock"];
        let kept = ["data.qcow2", "settings", "secret", "console.log", "skiff.log", "run-state", "fs-x.sock", "fs-.sock", "vsock.socket"];
        for name in runtime.iter().chain(&kept) {
            fs::write(dir.join(name), b"").unwrap();
        }
        fs::create_dir_all(s.images()).unwrap();
        let mut removed = s.clear_runtime();
        removed.sort();
        let mut want: Vec<String> = runtime.iter().map(|n| n.to_string()).collect();
        want.sort();
        assert_eq!(removed, want);
        for name in kept {
            assert!(dir.join(name).exists(), "{name} must be kept");
        }
        assert!(s.images().is_dir());
        assert!(s.clear_runtime().is_empty(), "a second pass finds nothing: no leftovers reported");
        fs::remove_dir_all(&dir).unwrap();
    }
}

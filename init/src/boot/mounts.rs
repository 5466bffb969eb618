//! The API filesystems every Linux userland (and the container engine) expects.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, DirBuilderExt};

use rustix::mount::{mount, MountFlags};

/// One mount of the boot sequence.
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: &'static str,
}

const NOSUID: MountFlags = MountFlags::NOSUID;
const NODEV: MountFlags = MountFlags::NODEV;
const NOEXEC: MountFlags = MountFlags::NOEXEC;

/// The mounts in order: each target's parent is mounted before it.
pub fn table() -> [Mount; 8] {
    let m = |source, target, fstype, flags, data| Mount { source, target, fstype, flags, data };
    [
        m("proc", "/proc", "proc", NOSUID.union(NODEV).union(NOEXEC), ""),
        m("sysfs", "/sys", "sysfs", NOSUID.union(NODEV).union(NOEXEC), ""),
        m("devtmpfs", "/dev", "devtmpfs", NOSUID, "mode=0755"),
        m("devpts", "/dev/pts", "devpts", NOSUID.union(NOEXEC), "gid=5,mode=620,ptmxmode=666"),
        m("shm", "/dev/shm", "tmpfs", NOSUID.union(NODEV), "mode=1777"),
        m("run", "/run", "tmpfs", NOSUID.union(NODEV), "mode=0755"),
        m("tmp", "/tmp", "tmpfs", NOSUID.union(NODEV), "mode=1777"),
        m("cgroup2", "/sys/fs/cgroup", "cgroup2", NOSUID.union(NODEV).union(NOEXEC), "nsdelegate"),
    ]
}

/// Mounts the table, then the /dev links and cgroup controllers.
/// Failures are logged and the boot goes on: a partial system is more
/// useful (and debuggable) than a powered-off one.
pub fn mount_all() {
    for m in table() {
        if let Err(e) = fs::DirBuilder::new().recursive(true).mode(0o755).create(m.target) {
            log::error!("cannot create {}: {e}", m.target);
        }
        let data = CString::new(m.data).unwrap_or_default();
        match mount(m.source, m.target, m.fstype, m.flags, data.as_c_str()) {
            Ok(()) => log::debug!("mounted {} on {}", m.fstype, m.target),
            Err(e) => log::error!("cannot mount {} on {}: {e}", m.fstype, m.target),
        }
    }
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        let _ = fs::remove_file(link);
        if let Err(e) = symlink(to, link) {
            log::warn!("cannot link {link} -> {to}: {e}");
        }
    }
    enable_cgroup_controllers();
    join_leaf_cgroup();
}

/// The leaf cgroup PID 1 (and so every process it starts) lives in.
const LEAF_CGROUP: &str = "/sys/fs/cgroup/init";

/// Moves PID 1 out of the root cgroup into [`LEAF_CGROUP`]. Podman does the
/// same at its start when it finds itself in the root cgroup (same name), one
/// process at a time and failing on every kernel thread: ~0.1 s of the
/// engine's start under emulation. Doing it first leaves the same tree.
fn join_leaf_cgroup() {
    if let Err(e) = fs::DirBuilder::new().mode(0o755).create(LEAF_CGROUP) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return log::warn!("cannot create cgroup {LEAF_CGROUP}: {e}; the engine will move the processes itself");
        }
    }
    let procs = format!("{LEAF_CGROUP}/cgroup.procs");
    if let Err(e) = fs::write(&procs, "0") {
        log::warn!("cannot move PID 1 into cgroup {LEAF_CGROUP}: {e}; the engine will move the processes itself");
    }
}

/// Delegates every available cgroup v2 controller to child cgroups, so the
/// engine can set memory, CPU and pids limits on containers.
fn enable_cgroup_controllers() {
    let available = match fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        Ok(s) => s,
        Err(e) => return log::error!("cannot read cgroup controllers: {e}"),
    };
    let wanted = controller_list(&available);
    if let Err(e) = fs::write("/sys/fs/cgroup/cgroup.subtree_control", &wanted) {
        log::error!("cannot enable cgroup controllers {wanted:?}: {e}");
    }
}

/// `"cpu io memory"` → `"+cpu +io +memory"`.
pub fn controller_list(available: &str) -> String {
    available.split_whitespace().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_mount_before_children() {
        let t = table();
        for (i, m) in t.iter().enumerate() {
            for later in &t[i + 1..] {
                assert!(!m.target.starts_with(&format!("{}/", later.target)), "{} before {}", m.target, later.target);
            }
        }
    }

    #[test]
    fn controllers_are_prefixed() {
        assert_eq!(controller_list("cpuset cpu io memory pids\n"), "+cpuset +cpu +io +memory +pids");
        assert_eq!(controller_list(""), "");
    }
}

//! The VM's vsock device: the kernel's vhost-vsock where `/dev/vhost-vsock`
//! exists (the host reaches the guest by CID), else vhost-device-vsock in
//! user space (hybrid vsock: the host reaches the guest through a unix
//! socket in the state folder). The user-space device needs the guest's
//! memory shared with it.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::guest::{Addr, Target};
use crate::vm::process::{die_with_parent, find_program, stop, wait_for_path};
use crate::state::StateDir;

/// A started vsock device: how to reach the guest and what QEMU needs.
pub struct VsockDevice {
    /// How the guest is reached (`skiff run` adds the secret).
    pub target: Target,
    /// QEMU arguments adding the device.
    pub qemu_args: Vec<String>,
    /// True if QEMU must put guest memory on a shared backend.
    pub shared_memory: bool,
    daemon: Option<Child>,
}

impl VsockDevice {
    /// Picks the kernel device if there is one, else starts vhost-device-vsock.
    pub fn start(state: &StateDir, cid: u32) -> io::Result<VsockDevice> {
        if Path::new("/dev/vhost-vsock").exists() {
            return Ok(VsockDevice {
                target: Target::new(Addr::Cid(cid)),
                qemu_args: vec!["-device".into(), format!("vhost-vsock-pci,guest-cid={cid}")],
                shared_memory: false,
                daemon: None,
            });
        }
        let prog = find_program("vhost-device-vsock").ok_or_else(|| {
            io::Error::other("no /dev/vhost-vsock and no vhost-device-vsock (`make deps` builds Skiff's patched one: scripts/build-vsockdev.sh)")
        })?;
        let version = Command::new(&prog).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if !version.as_deref().is_ok_and(is_skiffs_build) {
            eprintln!(
                "skiff: warning: {} is not Skiff's patched build (it says {:?}); a connection made before the guest is up \
                 or while it is paused can stop it for good; `make deps` installs the patched one",
                prog.display(),
                version.as_deref().map(str::trim).unwrap_or("nothing")
            );
        }
        // The folder holds no stale sockets: `skiff run`'s claim cleared them.
        let (vhost, uds) = (state.vhost(), state.hybrid_vsock());
        let mut child = die_with_parent(
            Command::new(prog)
                .arg("--vm")
                .arg(format!("guest-cid={cid},socket={},uds-path={}", vhost.display(), uds.display()))
                .stdout(Stdio::null()),
        )
        .spawn()?;
        if let Err(e) = wait_for_path(&vhost, &mut child, "vhost-device-vsock", Duration::from_secs(10)) {
            stop(&mut child);
            return Err(e);
        }
        Ok(VsockDevice {
            target: Target::new(Addr::Uds(uds.clone())),
            qemu_args: vec![
                "-chardev".into(),
                format!("socket,id=vsock0,path={}", vhost.display()),
                "-device".into(),
                "vhost-user-vsock-pci,chardev=vsock0".into(),
            ],
            shared_memory: true,
            daemon: Some(child),
        })
    }
}

/// Stops the daemon; its sockets are runtime files of the state folder,
/// removed with the others (`StateDir::clear_runtime`).
impl Drop for VsockDevice {
    fn drop(&mut self) {
        if let Some(child) = &mut self.daemon {
            stop(child);
        }
    }
}

/// True when `vhost-device-vsock --version` printed the marker of the build
/// `make deps` makes (vsockdev/patches): a stock one loses its worker thread
/// to a connection made while the device's queues are not ready.
fn is_skiffs_build(version: &str) -> bool {
    version.split_whitespace().any(|w| w.ends_with("+skiff"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_patched_build_passes() {
        assert!(is_skiffs_build("vhost-device-vsock 0.3.0+skiff\n"));
        assert!(!is_skiffs_build("vhost-device-vsock 0.3.0\n"));
        assert!(!is_skiffs_build(""));
    }
}

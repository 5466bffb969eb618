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
            io::Error::other("no /dev/vhost-vsock and no vhost-device-vsock (cargo install vhost-device-vsock)")
        })?;
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

//! Settings the host CLI hands to the guest out of band: the
//! `skiff_proto::guest_settings` struct, rendered by the code the guest
//! parses it with, written into the private state folder and given to QEMU
//! as its fw_cfg item. Out of band because containers can read the kernel
//! command line. Another hypervisor's user puts the same keys in
//! config.toml or a cidata volume instead.

use std::fs;
use std::io;
use std::path::PathBuf;

use skiff_proto::guest_settings::{self, GuestSettings, FW_CFG_NAME};

use crate::state::{file, StateDir};

/// Writes the settings into the state folder (private by umask) and
/// returns QEMU's `-fw_cfg` value.
pub fn write(settings: &GuestSettings, state: &StateDir) -> io::Result<String> {
    let path: PathBuf = state.path().join("guest-config.toml");
    // Made anew, so it gets this process's private mode (it holds the secret).
    let _ = fs::remove_file(&path);
    file::write(&path, guest_settings::render(settings).as_bytes())?;
    Ok(format!("name={FW_CFG_NAME},file={}", path.display().to_string().replace(',', ",,")))
}

//! Settings from the host CLI through QEMU's fw_cfg (`-fw_cfg
//! name=opt/skiff/config,file=…`): a config.toml fragment that `skiff run`
//! writes into its private state folder. Unlike the kernel command line,
//! containers cannot read it (podman masks /sys/firmware, and the file is
//! root-only), so it can carry the per-VM secret.

use std::path::Path;

use crate::boot::safe_file;

/// Where the kernel's fw_cfg driver shows the item.
pub const CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/skiff/config/raw";
/// Largest fragment read; anything longer is refused, not truncated.
pub const MAX_LEN: u64 = 64 * 1024;

/// The fragment's bytes, `Ok(None)` when the host gave none.
pub fn read_config() -> Result<Option<Vec<u8>>, safe_file::Error> {
    match safe_file::read(Path::new(CONFIG), MAX_LEN) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

//! Settings from the host CLI through QEMU's fw_cfg (`-fw_cfg
//! name=opt/skiff/config,file=…`): a config.toml fragment that `skiff run`
//! writes into its private state folder. Unlike the kernel command line,
//! containers cannot read it (podman masks /sys/firmware, and the file is
//! root-only), so it can carry the per-VM secret.

use std::fs::File;
use std::io::{self, Read};

/// Where the kernel's fw_cfg driver shows the item.
pub const CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/skiff/config/raw";
/// Largest fragment read; anything longer is refused, not truncated.
pub const MAX_LEN: u64 = 64 * 1024;

/// The fragment's text, `Ok(None)` when the host gave none.
pub fn read_config() -> io::Result<Option<String>> {
    match File::open(CONFIG) {
        Ok(f) => read_bounded(f, MAX_LEN).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads all of `r` as UTF-8 if it is at most `max` bytes long.
pub fn read_bounded(r: impl Read, max: u64) -> io::Result<String> {
    let mut text = String::new();
    r.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {max} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_read_refuses_long_input() {
        assert_eq!(read_bounded(&b"a = 1\n"[..], 6).unwrap(), "a = 1\n");
        assert_eq!(read_bounded(&b"a = 12\n"[..], 6).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(read_bounded(&b"\xff"[..], 6).is_err(), "not UTF-8");
    }
}

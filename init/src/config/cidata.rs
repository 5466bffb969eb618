//! A NoCloud-style config volume labelled `cidata` (an ISO 9660 image or a
//! FAT disk), as cloud-init and LinuxKit read it: a hypervisor user can set
//! the host name (`meta-data` `local-hostname`, `user-data` `hostname`) and
//! give a whole Skiff config (`skiff.toml` or `config.toml`) without a data
//! disk. It is mounted read-only and unmounted again after reading.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use super::file;
use crate::boot::safe_file;

const MOUNT: &str = "/run/skiff/cidata";
/// Config file names looked for on the volume, first found wins.
const CONFIG_NAMES: [&str; 2] = ["skiff.toml", "config.toml"];

/// What a `cidata` volume says.
#[derive(Debug, Default)]
pub struct Seed {
    /// Device it came from, for messages.
    pub device: String,
    pub hostname: Option<String>,
    /// (file name on the volume, its bytes) of a Skiff config, if present.
    pub config: Option<(String, Vec<u8>)>,
}

/// The volume id of an ISO 9660 primary volume descriptor (read at 0x8000).
pub fn iso_volume_id(pvd: &[u8]) -> Option<String> {
    if pvd.len() < 72 || pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    Some(String::from_utf8_lossy(&pvd[40..72]).trim_end_matches([' ', '\0']).to_string())
}

/// The volume label of a FAT boot sector (FAT12/16 at 0x2B, FAT32 at 0x47,
/// each behind the extended boot signature 0x29).
pub fn fat_label(boot: &[u8]) -> Option<String> {
    if boot.len() < 512 || boot[510] != 0x55 || boot[511] != 0xAA {
        return None;
    }
    let fat32 = u16::from_le_bytes([boot[22], boot[23]]) == 0;
    let (sig, label) = if fat32 { (0x42, 0x47) } else { (0x26, 0x2B) };
    (boot[sig] == 0x29).then(|| String::from_utf8_lossy(&boot[label..label + 11]).trim_end().to_string())
}

/// The value of a top-level `key: value` line of a simple YAML document
/// (cloud-init meta-data and #cloud-config user-data), quotes removed.
pub fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k != key {
            return None; // indented or other keys
        }
        let v = v.split(" #").next().unwrap_or("").trim();
        let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The host name a seed asks for: user-data's `hostname` (cloud-config)
/// beats meta-data's `local-hostname`, as in cloud-init.
pub fn seed_hostname(meta_data: &str, user_data: &str) -> Option<String> {
    let cloud_config = user_data.trim_start().starts_with("#cloud-config");
    cloud_config.then(|| yaml_value(user_data, "hostname")).flatten()
        .or_else(|| yaml_value(meta_data, "local-hostname"))
        .or_else(|| yaml_value(meta_data, "hostname"))
}

/// The filesystem type of a `cidata` volume on `dev`, if it is one.
fn probe(dev: &Path) -> Option<&'static str> {
    let f = File::open(dev).ok()?;
    let mut buf = [0u8; 512];
    if f.read_exact_at(&mut buf[..72], 0x8000).is_ok() && iso_volume_id(&buf[..72]).is_some_and(|l| l.eq_ignore_ascii_case("cidata")) {
        return Some("iso9660");
    }
    if f.read_exact_at(&mut buf, 0).is_ok() && fat_label(&buf).is_some_and(|l| l.eq_ignore_ascii_case("cidata")) {
        return Some("vfat");
    }
    None
}

/// Finds the first `cidata` volume among the block devices and reads it.
pub fn read() -> Option<Seed> {
    let mut names: Vec<String> = fs::read_dir("/sys/block").ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    for name in names {
        let dev = format!("/dev/{name}");
        if let Some(fstype) = probe(Path::new(&dev)) {
            return match read_volume(&dev, fstype) {
                Ok(seed) => Some(seed),
                Err(e) => {
                    log::warn!("cidata: cannot read {dev} ({fstype}): {e}");
                    None
                }
            };
        }
    }
    None
}

/// A YAML file's text (its host name is checked before use).
fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

fn read_volume(dev: &str, fstype: &str) -> std::io::Result<Seed> {
    fs::create_dir_all(MOUNT)?;
    let flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC;
    mount(dev, MOUNT, fstype, flags, None)?;
    // The volume is outside data: no symlink or FIFO followed, bounded.
    let read = |name: &str| match safe_file::read(&Path::new(MOUNT).join(name), file::MAX_LEN) {
        Ok(text) => Some(text),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            log::warn!("cidata: cannot read {name} on {dev}: {e}; ignored");
            None
        }
    };
    let seed = Seed {
        device: dev.to_string(),
        hostname: seed_hostname(&text(read("meta-data")), &text(read("user-data"))),
        config: CONFIG_NAMES.iter().find_map(|n| Some((n.to_string(), read(n)?))),
    };
    if let Err(e) = unmount(MOUNT, UnmountFlags::empty()) {
        log::warn!("cidata: cannot unmount {MOUNT}: {e}");
    }
    log::info!("cidata: read {dev} ({fstype}): host name {:?}, config {:?}", seed.hostname, seed.config.as_ref().map(|c| &c.0));
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iso_volume_ids() {
        let mut pvd = vec![0u8; 2048];
        pvd[..6].copy_from_slice(b"\x01CD001");
        pvd[40..72].copy_from_slice(format!("{:<32}", "cidata").as_bytes());
        assert_eq!(iso_volume_id(&pvd).as_deref(), Some("cidata"));
        pvd[0] = 0;
        assert_eq!(iso_volume_id(&pvd), None);
        assert_eq!(iso_volume_id(b"\x01CD001"), None, "too short");
    }

    #[test]
    fn reads_fat_labels() {
        let mut bs = vec![0u8; 512];
        bs[510] = 0x55;
        bs[511] = 0xAA;
        assert_eq!(fat_label(&bs), None, "FAT32 layout without the extended signature");
        bs[22] = 8; // sectors per FAT: FAT12/16 layout
        bs[0x26] = 0x29;
        bs[0x2B..0x36].copy_from_slice(b"CIDATA     ");
        assert_eq!(fat_label(&bs).as_deref(), Some("CIDATA"));
        let mut bs32 = vec![0u8; 512];
        bs32[510..].copy_from_slice(&[0x55, 0xAA]);
        bs32[0x42] = 0x29;
        bs32[0x47..0x52].copy_from_slice(b"cidata     ");
        assert_eq!(fat_label(&bs32).as_deref(), Some("cidata"));
        bs32[511] = 0;
        assert_eq!(fat_label(&bs32), None);
    }

    #[test]
    fn hostname_from_user_data_then_meta_data() {
        let meta = "instance-id: iid-1\nlocal-hostname: 'from-meta' # comment\n";
        assert_eq!(seed_hostname(meta, "").as_deref(), Some("from-meta"));
        let user = "#cloud-config\nusers:\n  hostname: nested\nhostname: \"from-user\"\n";
        assert_eq!(seed_hostname(meta, user).as_deref(), Some("from-user"));
        assert_eq!(seed_hostname(meta, "#!/bin/sh\nhostname: script").as_deref(), Some("from-meta"), "not cloud-config");
        assert_eq!(seed_hostname("local-hostname:\n", ""), None);
    }
}

//! Settings from the host CLI through QEMU's fw_cfg: the item
//! `skiff_proto::guest_settings` defines, which `skiff run` writes into its
//! private state folder. Unlike the kernel command line, containers cannot
//! read it (podman masks /sys/firmware, and the file is root-only), so it
//! can carry the per-VM secret.

use std::path::Path;

use skiff_proto::guest_settings::{self, FW_CFG_SYSFS};

use super::{file, Layer, SecretSetting, Source, Unusable, Warning};
use crate::boot::safe_file;

/// Largest item read; anything longer is refused, not truncated.
pub const MAX_LEN: u64 = 64 * 1024;

/// The item's bytes, `Ok(None)` when the host gave none.
pub fn read_config() -> Result<Option<Vec<u8>>, safe_file::Error> {
    match safe_file::read(Path::new(FW_CFG_SYSFS), MAX_LEN) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The item as one source: `guest_settings::parse`'s struct as a layer.
/// The host always puts the secret there, so an item that is not TOML
/// makes the secret unusable.
pub fn layer(bytes: &[u8], source: Source) -> (Layer, Vec<Warning>) {
    let (mut l, mut warnings, mut bad_secret) = (Layer::default(), Vec::new(), false);
    let parsed = guest_settings::parse(bytes, &mut file::report(&mut warnings, &mut bad_secret, &source));
    match parsed {
        Ok(g) => file::guest(&mut l, g, bad_secret, &source),
        Err(detail) => {
            l.secret = SecretSetting::Unusable(Unusable::NotToml(source.clone()));
            warnings.push(Warning::NotToml { source, detail });
        }
    }
    (l, warnings)
}

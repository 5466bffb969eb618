//! `ID.vmlinux` beside a build's `ID.vmlinuz`: the kernel QEMU boots through
//! its PVH entry, skipping the bzImage's in-guest decompressor (seconds
//! under TCG). Made once per ISO copy; see `skiff_proto::bzimage`.

use std::fs;
use std::path::{Path, PathBuf};

use skiff_proto::bzimage;

/// The vmlinux beside `bzimage` (`X.vmlinuz` → `X.vmlinux`), made once.
pub fn vmlinux(bzimage: &Path) -> Result<PathBuf, String> {
    let out = bzimage.with_extension("vmlinux");
    if out.is_file() {
        return Ok(out);
    }
    let bz = fs::read(bzimage).map_err(|e| format!("cannot read {}: {e}", bzimage.display()))?;
    let elf = bzimage::pvh_vmlinux(&bz).map_err(|e| e.to_string())?;
    let tmp = out.with_extension("vmlinux.tmp");
    fs::write(&tmp, &elf).and_then(|_| fs::rename(&tmp, &out)).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", out.display())
    })?;
    Ok(out)
}


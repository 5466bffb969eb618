//! The ISOs a state folder boots: a copy of each ISO, named by its build id,
//! in DIR/images (so `make iso` never rewrites the medium under a running
//! guest), its kernel and initramfs read out of it for direct kernel boot,
//! and two records, `current` and `previous`, for update and rollback.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use skiff_proto::bzimage;

use crate::state::{file, StateDir};

#[derive(Debug)]
pub enum Error {
    /// xorriso could not be run.
    Tool(io::Error),
    /// The ISO has no readable /skiff/build-id.
    NoBuildId(PathBuf),
    /// The build id has characters a file name should not have.
    BadBuildId(String),
    /// Copying the ISO into the state folder failed.
    Copy(PathBuf, io::Error),
    /// The ISO's kernel and initramfs could not be read out of it.
    BootFiles(PathBuf),
    /// `skiff rollback` without an earlier ISO.
    NoPrevious,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tool(e) => write!(f, "cannot run xorriso to read the ISO's build id: {e}"),
            Error::NoBuildId(p) => write!(f, "{} has no /skiff/build-id; is it a Skiff ISO?", p.display()),
            Error::BadBuildId(id) => write!(f, "the ISO's build id {id:?} is not a plain name"),
            Error::Copy(p, e) => write!(f, "cannot copy the ISO into {}: {e}", p.display()),
            Error::BootFiles(p) => write!(f, "cannot read /boot/vmlinuz and /boot/initramfs.img out of {}", p.display()),
            Error::NoPrevious => write!(f, "no previous ISO to roll back to"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// The `current` and `previous` build ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub current: Option<String>,
    pub previous: Option<String>,
}

impl Records {
    pub fn load(state: &StateDir) -> Records {
        let read = |name: &str| file::read(&state.images().join(name), 256).ok().map(|s| s.trim().to_string()).filter(|s| valid_id(s));
        Records { current: read("current"), previous: read("previous") }
    }

    pub fn save(&self, state: &StateDir) -> io::Result<()> {
        for (name, value) in [("current", &self.current), ("previous", &self.previous)] {
            let path = state.images().join(name);
            match value {
                Some(id) => file::write(&path, format!("{id}\n").as_bytes())?,
                None => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        Ok(())
    }

    /// Booting `id`: a new build becomes current and the old current previous.
    pub fn boot(&self, id: &str) -> Records {
        if self.current.as_deref() == Some(id) {
            return self.clone();
        }
        Records { current: Some(id.to_string()), previous: self.current.clone().or_else(|| self.previous.clone()) }
    }
}

/// Build ids are what image/build-iso.sh makes: letters, digits, `.`, `-`, `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Copies files out of an ISO (`(path inside, destination)` pairs) with
/// xorriso; true if it succeeded.
fn extract(iso: &Path, files: &[(&str, &Path)]) -> Result<bool, Error> {
    let mut cmd = Command::new("xorriso");
    cmd.args(["-osirrox", "on", "-indev"]).arg(iso);
    for (inside, to) in files {
        cmd.arg("-extract").arg(inside).arg(to);
    }
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().map_err(Error::Tool)?;
    Ok(status.success())
}

/// Reads /skiff/build-id from an ISO.
pub fn build_id(iso: &Path, scratch: &Path) -> Result<String, Error> {
    let out = scratch.join(".build-id.tmp");
    let _ = fs::remove_file(&out);
    let ok = extract(iso, &[("/skiff/build-id", &out)])?;
    let text = file::read(&out, 256).map_err(|_| Error::NoBuildId(iso.to_path_buf()));
    let _ = fs::remove_file(&out);
    if !ok {
        return Err(Error::NoBuildId(iso.to_path_buf()));
    }
    let id = text?.trim().to_string();
    if !valid_id(&id) {
        return Err(Error::BadBuildId(id));
    }
    Ok(id)
}

/// The kernel and initramfs of build `id`, read out of its copy once and
/// kept next to it (`ID.vmlinuz`, `ID.initramfs.img`; `ID.vmlinux` is made
/// from the first by [`pvh_kernel`]), so QEMU can boot the kernel directly:
/// no firmware disk reads, no GRUB.
pub fn boot_files(state: &StateDir, id: &str) -> Result<(PathBuf, PathBuf), Error> {
    let dir = state.images();
    let (kernel, initrd) = (dir.join(format!("{id}.vmlinuz")), dir.join(format!("{id}.initramfs.img")));
    if kernel.is_file() && initrd.is_file() {
        return Ok((kernel, initrd));
    }
    let iso = path_of(state, id);
    let (tk, ti) = (dir.join(format!(".{id}.vmlinuz.tmp")), dir.join(format!(".{id}.initramfs.img.tmp")));
    // Whatever stands at those names (a symlink too) goes, not written through.
    let _ = (fs::remove_file(&tk), fs::remove_file(&ti));
    let ok = extract(&iso, &[("/boot/vmlinuz", &tk), ("/boot/initramfs.img", &ti)])?;
    let private = |p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o600)).is_ok();
    let done = ok && tk.is_file() && ti.is_file() && private(&tk) && private(&ti) && fs::rename(&tk, &kernel).is_ok() && fs::rename(&ti, &initrd).is_ok();
    let _ = (fs::remove_file(&tk), fs::remove_file(&ti));
    if !done {
        return Err(Error::BootFiles(iso));
    }
    Ok((kernel, initrd))
}

/// `ID.vmlinux`: build `id`'s kernel as the plain ELF QEMU boots through its
/// PVH entry, skipping the bzImage's in-guest decompressor (seconds under
/// TCG). Made once from `bzimage` (see `skiff_proto::bzimage`); an error
/// means "boot the bzImage".
pub fn pvh_kernel(state: &StateDir, id: &str, bzimage: &Path) -> Result<PathBuf, String> {
    let dir = state.images();
    let out = dir.join(format!("{id}.vmlinux"));
    if out.is_file() {
        return Ok(out);
    }
    let bz = fs::read(bzimage).map_err(|e| format!("cannot read {}: {e}", bzimage.display()))?;
    let elf = bzimage::pvh_vmlinux(&bz).map_err(|e| e.to_string())?;
    file::write(&out, &elf).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(out)
}

/// The build id a file in DIR/images belongs to (its copy or boot files).
fn owner(name: &str) -> Option<&str> {
    [".iso", ".vmlinuz", ".vmlinux", ".initramfs.img"].iter().find_map(|suffix| name.strip_suffix(suffix)).filter(|id| valid_id(id))
}

/// The state folder's copy of build `id`.
pub fn path_of(state: &StateDir, id: &str) -> PathBuf {
    state.images().join(format!("{id}.iso"))
}

/// Copies `iso` into the state folder (once per build id), keeps only the
/// current and previous copies, and returns the copy to boot and its id.
pub fn install(state: &StateDir, iso: &Path) -> Result<(PathBuf, String), Error> {
    let dir = state.images();
    fs::create_dir_all(&dir).map_err(|e| Error::Copy(dir.clone(), e))?;
    let id = build_id(iso, &dir)?;
    let copy = path_of(state, &id);
    if !copy.exists() {
        fs::File::open(iso).and_then(|mut f| file::write_from(&copy, &mut f)).map_err(|e| Error::Copy(copy.clone(), e))?;
        eprintln!("skiff: keeping a copy of {} as {}", iso.display(), copy.display());
    }
    let records = Records::load(state).boot(&id);
    records.save(state).map_err(|e| Error::Copy(dir.clone(), e))?;
    Ok((copy, id))
}

/// Removes copies (and their boot files) that are neither current nor
/// previous; called once a build has become ready (a build on trial must
/// not cost the fallback).
pub fn prune(state: &StateDir) {
    let keep = Records::load(state);
    let Ok(entries) = fs::read_dir(state.images()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = owner(&name) {
            if keep.current.as_deref() != Some(id) && keep.previous.as_deref() != Some(id) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_build_pushes_the_old_one_to_previous() {
        let r = Records::default().boot("a");
        assert_eq!(r, Records { current: Some("a".into()), previous: None });
        let r = r.boot("b");
        assert_eq!(r, Records { current: Some("b".into()), previous: Some("a".into()) });
        assert_eq!(r.boot("b"), r, "booting the current build changes nothing");
        let back = r.boot("a");
        assert_eq!(back, Records { current: Some("a".into()), previous: Some("b".into()) }, "rollback swaps");
    }

    #[test]
    fn boot_files_belong_to_their_build() {
        assert_eq!(owner("abc123.iso"), Some("abc123"));
        assert_eq!(owner("abc123.vmlinuz"), Some("abc123"));
        assert_eq!(owner("abc123.vmlinux"), Some("abc123"));
        assert_eq!(owner("abc123.initramfs.img"), Some("abc123"));
        assert_eq!(owner("current"), None);
        assert_eq!(owner(".abc.iso.tmp"), None);
        assert_eq!(owner(".abc.vmlinuz"), None, "a hidden name is no build id");
    }

    #[test]
    fn build_ids_are_plain_names() {
        assert!(valid_id("20261126T232700-1a2b3c"));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

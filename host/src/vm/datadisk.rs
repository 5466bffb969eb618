//! The VM's persistent data disk: a sparse qcow2 image in the state folder,
//! created on first start, and QEMU's image lock as the guard against two
//! VMs writing one disk.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::state::StateDir;

/// Size of a new data disk unless `--disk-size` says otherwise.
pub const DEFAULT_SIZE: &str = "64G";

#[derive(Debug)]
pub enum Error {
    /// qemu-img could not be run at all.
    Tool(io::Error),
    /// `qemu-img create` failed.
    Create(PathBuf, String),
    /// Another process (a VM) holds QEMU's write lock on the image.
    InUse(PathBuf),
    /// `qemu-img info` failed for another reason.
    Unreadable(PathBuf, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tool(e) => write!(f, "cannot run qemu-img (install qemu-utils): {e}"),
            Error::Create(p, why) => write!(f, "cannot create the data disk {}: {why}", p.display()),
            Error::InUse(p) => write!(f, "the disk {} is in use by another VM (QEMU holds its lock); refusing to attach it twice", p.display()),
            Error::Unreadable(p, why) => write!(f, "cannot read the disk image {}: {why}", p.display()),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// The state folder's data disk, created (sparse) when missing.
pub fn ensure(state: &StateDir, size: &str) -> Result<PathBuf, Error> {
    let path = state.data_disk();
    if !path.exists() {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"]).arg(&path).arg(size)
            .stdin(Stdio::null()).output().map_err(Error::Tool)?;
        if !out.status.success() {
            return Err(Error::Create(path, String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        eprintln!("skiff: created the data disk {} ({size}, sparse)", path.display());
    }
    Ok(path)
}

/// Refuses a disk another VM has open: `qemu-img info` fails to take
/// QEMU's shared lock on an image a running QEMU writes.
pub fn check_free(disk: &Path) -> Result<(), Error> {
    let out = Command::new("qemu-img").arg("info").arg(disk).stdin(Stdio::null()).output().map_err(Error::Tool)?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if is_lock_error(&err) { Err(Error::InUse(disk.to_path_buf())) } else { Err(Error::Unreadable(disk.to_path_buf(), err)) }
}

fn is_lock_error(stderr: &str) -> bool {
    stderr.contains("lock")
}

/// Bytes the image takes on the host and its virtual size (read without
/// the lock, so it works while the VM runs).
pub fn usage(disk: &Path) -> Option<(u64, u64)> {
    let out = Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(disk).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some((json_number(&text, "actual-size")?, json_number(&text, "virtual-size")?))
}

/// The first top-level-looking `"key": number` in a JSON text.
pub fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_from_qemu_img_json() {
        let j = "{\n    \"virtual-size\": 1073741824,\n    \"actual-size\": 200704,\n}";
        assert_eq!(json_number(j, "virtual-size"), Some(1073741824));
        assert_eq!(json_number(j, "actual-size"), Some(200704));
        assert_eq!(json_number(j, "missing"), None);
    }

    #[test]
    fn lock_errors_are_recognised() {
        assert!(is_lock_error("qemu-img: Could not open 'x': Failed to get shared \"write\" lock\nIs another process using the image [x]?"));
        assert!(!is_lock_error("qemu-img: Could not open 'x': No such file or directory"));
    }

    #[test]
    fn creates_a_sparse_disk_once_and_sees_a_held_lock() {
        let dir = std::env::temp_dir().join(format!("skiff-datadisk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::create(&dir).unwrap();
        let disk = ensure(&state, "1G").unwrap();
        let (actual, virt) = usage(&disk).unwrap();
        assert_eq!(virt, 1 << 30);
        assert!(actual < 10 << 20, "sparse: {actual}");
        check_free(&disk).unwrap();
        // A paused QEMU holding the image: the second user is refused.
        let mut q = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-display", "none", "-S", "-nodefaults", "-drive"])
            .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
            .stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut refused = false;
        for _ in 0..50 {
            if matches!(check_free(&disk), Err(Error::InUse(_))) {
                refused = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = q.kill();
        let _ = q.wait();
        assert!(refused, "a disk held by QEMU must be refused");
        check_free(&disk).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

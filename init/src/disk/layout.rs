//! The data disk's layout version and the build that last used it, both in
//! files at the top of the data filesystem. A disk written by a newer Skiff
//! may be laid out differently: an ISO that does not understand its
//! version leaves it untouched (unmounted) rather than guess.

use std::fs;
use std::io;
use std::path::Path;

/// The layout this init writes and understands.
pub const VERSION: u32 = 1;
/// Written at format time; absent on disks formatted before it existed (= 1).
pub const VERSION_FILE: &str = "skiff-layout-version";
/// The build id of the ISO that last mounted the disk.
pub const BUILD_FILE: &str = "skiff-last-build-id";

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The disk's layout is newer than this init knows.
    Newer(u32),
    /// The version file holds no number.
    Unreadable(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Newer(v) => write!(f, "its data layout is version {v}, this ISO understands up to {VERSION} (it was used by a newer Skiff)"),
            Error::Unreadable(t) => write!(f, "its layout version file holds {t:?}, not a number"),
        }
    }
}

/// The verdict on a version file's text (None: no file, a version-1 disk).
pub fn verdict(text: Option<&str>) -> Result<u32, Error> {
    let Some(text) = text else { return Ok(1) };
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(v) if v >= 1 && v <= VERSION => Ok(v),
        Ok(v) if v > VERSION => Err(Error::Newer(v)),
        _ => Err(Error::Unreadable(t.chars().take(32).collect())),
    }
}

/// Reads the layout version of the filesystem mounted at `root`.
pub fn check(root: &Path) -> Result<u32, Error> {
    match fs::read_to_string(root.join(VERSION_FILE)) {
        Ok(text) => verdict(Some(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => verdict(None),
        Err(e) => Err(Error::Unreadable(e.to_string())),
    }
}

/// Records the layout version (on a fresh filesystem) and this build's id.
pub fn record(root: &Path, fresh: bool, build_id: Option<&str>) -> io::Result<()> {
    if fresh {
        fs::write(root.join(VERSION_FILE), format!("{VERSION}\n"))?;
    }
    if let Some(id) = build_id {
        fs::write(root.join(BUILD_FILE), format!("{}\n", id.trim()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_this_init_understands() {
        assert_eq!(verdict(None), Ok(1), "disks from before the file existed are version 1");
        assert_eq!(verdict(Some("1\n")), Ok(1));
        assert_eq!(verdict(Some("2")), Err(Error::Newer(2)));
        assert!(matches!(verdict(Some("x")), Err(Error::Unreadable(_))));
        assert!(matches!(verdict(Some("0")), Err(Error::Unreadable(_))));
        assert!(matches!(verdict(Some("")), Err(Error::Unreadable(_))));
    }

    #[test]
    fn records_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("skiff-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(check(&dir), Ok(1));
        record(&dir, true, Some("abc\n")).unwrap();
        assert_eq!(check(&dir), Ok(VERSION));
        assert_eq!(fs::read_to_string(dir.join(BUILD_FILE)).unwrap(), "abc\n");
        fs::write(dir.join(VERSION_FILE), "9\n").unwrap();
        assert_eq!(check(&dir), Err(Error::Newer(9)));
        fs::remove_dir_all(&dir).unwrap();
    }
}

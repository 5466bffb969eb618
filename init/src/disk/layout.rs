//! The data disk's layout version and the build that last used it, both in
//! files at the top of the data filesystem. A disk written by a newer Skiff
//! may be laid out differently: an ISO that does not understand its
//! version leaves it untouched (unmounted) rather than guess.

use std::io;
use std::path::Path;

use crate::boot::safe_file;

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
    /// The version file cannot be read (it may be a planted FIFO, symlink
    /// or huge file: see `boot::safe_file`).
    CannotRead(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Newer(v) => write!(f, "its data layout is version {v}, this ISO understands up to {VERSION} (it was used by a newer Skiff)"),
            Error::Unreadable(t) => write!(f, "its layout version file holds {t:?}, not a number"),
            Error::CannotRead(e) => write!(f, "its layout version file {VERSION_FILE} cannot be read: {e}"),
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

/// Longest version file read (it holds a number and a newline).
const VERSION_MAX: u64 = 64;

/// Reads the layout version of the filesystem mounted at `root`.
pub fn check(root: &Path) -> Result<u32, Error> {
    match safe_file::read(&root.join(VERSION_FILE), VERSION_MAX) {
        Ok(bytes) => verdict(Some(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.is_not_found() => verdict(None),
        Err(e) => Err(Error::CannotRead(e.to_string())),
    }
}

/// Records the layout version (on a fresh filesystem) and this build's id,
/// each written beside and renamed into place (never through a planted link).
pub fn record(root: &Path, fresh: bool, build_id: Option<&str>) -> io::Result<()> {
    if fresh {
        safe_file::replace(root, VERSION_FILE, format!("{VERSION}\n").as_bytes())?;
    }
    if let Some(id) = build_id {
        safe_file::replace(root, BUILD_FILE, format!("{}\n", id.trim()).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod hostile {
    use super::*;
    use std::fs;
    use std::sync::mpsc;
    use std::time::Duration;

    fn dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-layout-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A FIFO planted as the version file (by a container given the data
    /// disk) must not hang the boot: the disk is refused, promptly.
    #[test]
    fn a_fifo_version_file_is_refused_without_waiting() {
        let d = dir("fifo");
        safe_file::mkfifo(&d.join(VERSION_FILE));
        let (tx, rx) = mpsc::channel();
        let at = d.clone();
        std::thread::Builder::new().spawn(move || tx.send(check(&at))).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(3)).expect("check hung on a FIFO");
        assert!(matches!(got, Err(Error::CannotRead(_))), "{got:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    /// A symlink planted as the build id file is replaced, never written through.
    #[test]
    fn recording_never_writes_through_a_symlink() {
        let d = dir("link");
        let victim = d.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(BUILD_FILE)).unwrap();
        std::os::unix::fs::symlink(&victim, d.join(VERSION_FILE)).unwrap();
        assert!(matches!(check(&d), Err(Error::CannotRead(_))), "a symlinked version file is not followed");
        let _ = record(&d, true, Some("abc"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_dir_all(&d).unwrap();
    }
}

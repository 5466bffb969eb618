//! Files in the state folder, read and written as in a folder another
//! party may write to: no symlink is followed, no FIFO or device is opened,
//! every read is bounded, and a file is written new beside its name and
//! renamed into place (a symlink planted at the name is replaced, never
//! written through). The folder is private and no share shows it (see
//! `vm::hide`); this is the second wall.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{Mode, OFlags};

/// Opens the folder holding `path` (not following a symlink there either)
/// and returns it with the file's name.
fn parent(path: &Path) -> io::Result<(OwnedFd, &std::ffi::OsStr)> {
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    Ok((fd, name))
}

/// Opens `path` for reading if it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let (dir, name) = parent(path)?;
    // O_NONBLOCK: a FIFO must not hold the open; refused below anyway.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => io::Error::new(io::ErrorKind::InvalidData, format!("{} is a symlink", path.display())),
        e => io::Error::from(e),
    })?;
    let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    if kind != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a regular file", path.display())));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(File::from(fd))
}

/// Reads `path` as UTF-8, refusing more than `max` bytes.
pub fn read(path: &Path, max: u64) -> io::Result<String> {
    let mut text = String::new();
    open_regular(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is longer than {max} bytes", path.display())));
    }
    Ok(text)
}

/// Creates a new private (0600) file beside `path`, to be renamed onto it.
fn create_beside(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<(File, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let tmp = format!(".{}.{}.{}.tmp", name.to_string_lossy(), std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600))?;
    Ok((File::from(fd), tmp))
}

/// Writes `bytes` to `path`: a new private file, renamed into place.
pub fn write(path: &Path, mut bytes: &[u8]) -> io::Result<()> {
    write_from(path, &mut bytes)
}

/// Writes all of `from` to `path` (an ISO's copy): a new private file,
/// renamed into place once complete.
pub fn write_from(path: &Path, from: &mut impl Read) -> io::Result<()> {
    let (dir, name) = parent(path)?;
    let (mut f, tmp) = create_beside(&dir, name)?;
    let copied = io::copy(from, &mut f).and_then(|_| f.flush());
    let done = copied.and_then(|()| rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(io::Error::from));
    if done.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    done
}

/// A new, empty private file at `path` for writing (a log), replacing
/// whatever was there.
pub fn create(path: &Path) -> io::Result<File> {
    let (dir, name) = parent(path)?;
    let (f, tmp) = create_beside(&dir, name)?;
    rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use crate::testutil::SocketPath;

    #[test]
    fn a_planted_symlink_is_replaced_never_written_through_nor_read() {
        let at = SocketPath::new("file-link", "victim");
        let dir = at.parent().unwrap();
        fs::write(&*at, "the user's file\n").unwrap();
        for name in ["ports", "skiff.log"] {
            symlink(&*at, dir.join(name)).unwrap();
        }
        assert!(read(&dir.join("ports"), 100).is_err(), "read through a symlink");
        write(&dir.join("ports"), b"ours\n").unwrap();
        drop(create(&dir.join("skiff.log")).unwrap());
        assert_eq!(fs::read_to_string(&*at).unwrap(), "the user's file\n", "written through a symlink");
        assert_eq!(read(&dir.join("ports"), 100).unwrap(), "ours\n");
        for name in ["ports", "skiff.log"] {
            let meta = fs::symlink_metadata(dir.join(name)).unwrap();
            assert!(meta.is_file() && meta.permissions().mode() & 0o777 == 0o600, "{name}: {meta:?}");
        }
        let left: Vec<_> = fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn a_fifo_a_device_or_a_huge_file_is_refused_at_once() {
        let at = SocketPath::new("file-fifo", "fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &*at, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(read(&at, 100).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "the open waited for a writer");
        assert!(read(Path::new("/dev/null"), 100).is_err(), "a device");
        let big = at.parent().unwrap().join("big");
        fs::write(&big, "x".repeat(101)).unwrap();
        assert_eq!(read(&big, 100).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(read(&big, 101).unwrap().len(), 101);
    }
}

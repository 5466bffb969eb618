//! Files another party can write: the data disk (a container given it, or
//! `/var/lib/skiff`, can plant anything there), a cidata volume, the boot
//! medium. Each is opened without following a symlink and without opening
//! a FIFO or a device (an `O_PATH` descriptor is looked at first, then
//! reopened only if it is a regular file), and read up to a bound: a
//! planted FIFO, a symlink to `/dev/console` or a huge sparse file can
//! neither stall PID 1's boot nor run it out of memory.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{fstat, openat, renameat, unlinkat, AtFlags, FileType, Mode, OFlags, CWD};

/// Why a file was not read or written.
#[derive(Debug)]
pub enum Error {
    /// It does not exist, or could not be opened or read.
    Io(io::Error),
    /// It is a symbolic link, which is never followed.
    Symlink,
    /// It is a FIFO, a device, a socket or a directory.
    NotRegular(&'static str),
    /// It holds more than the bound.
    TooLong(u64),
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Symlink => f.write_str("it is a symbolic link (not followed)"),
            Error::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file (not opened)"),
            Error::TooLong(max) => write!(f, "it is longer than {max} bytes"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// What a file type is called in messages; `None` for a regular file.
fn irregular(t: FileType) -> Option<Error> {
    let kind = match t {
        FileType::RegularFile => return None,
        FileType::Symlink => return Some(Error::Symlink),
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        FileType::Directory => "directory",
        FileType::Unknown => "file of unknown type",
    };
    Some(Error::NotRegular(kind))
}

/// Opens `name` (relative to `dir`) for `flags` only if it is a regular
/// file: looked at through an `O_PATH` descriptor (opens nothing, follows
/// no symlink), then reopened through /proc, so a FIFO or device is never
/// opened and the file cannot be swapped in between.
fn open_at(dir: BorrowedFd<'_>, name: &Path, flags: OFlags) -> Result<File, Error> {
    let path = openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    if let Some(e) = irregular(FileType::from_raw_mode(fstat(&path)?.st_mode)) {
        return Err(e);
    }
    reopen(&path, flags)
}

fn reopen(path: &OwnedFd, flags: OFlags) -> Result<File, Error> {
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", path.as_raw_fd());
    // Never "not found" (a missing /proc must not pass for a missing file).
    let fd = openat(CWD, proc.as_str(), flags | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::Io(io::Error::other(format!("cannot reopen it through /proc: {e}"))))?;
    Ok(File::from(fd))
}

/// Opens a regular file for reading (see the module doc).
pub fn open(path: &Path) -> Result<File, Error> {
    open_at(CWD, path, OFlags::RDONLY)
}

/// All of `path` if it is a regular file of at most `max` bytes.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    read_from(open(path)?, max)
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, Error> {
    String::from_utf8(read(path, max)?).map_err(|_| Error::Io(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// Reads all of `r` if it is at most `max` bytes long (longer is refused,
/// not truncated).
pub fn read_from(r: impl Read, max: u64) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    r.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::TooLong(max));
    }
    Ok(bytes)
}

/// Opens the directory `path` without following a symlink, for the
/// `*_at` calls below.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Error> {
    match openat(CWD, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_symlink() => Err(Error::Symlink),
            _ => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Opens `name` in `dir` for appending, creating it (0644) if missing; an
/// existing one must be a regular file (a symlink is not written through).
pub fn open_append(dir: BorrowedFd<'_>, name: &str) -> Result<File, Error> {
    let create = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match openat(dir, name, create, Mode::from(0o644)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::EXIST) => open_at(dir, Path::new(name), OFlags::WRONLY | OFlags::APPEND),
        Err(e) => Err(e.into()),
    }
}

/// Writes `bytes` as `name` in the directory `dir`: into a new file beside
/// it, then renamed into place, so whatever was planted under that name
/// (a symlink, a FIFO) is replaced, never written through or opened.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let dir = open_dir(dir)?;
    let tmp = format!(".{name}.new");
    match unlinkat(&dir, tmp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut f = File::from(openat(&dir, tmp.as_str(), flags, Mode::from(0o644))?);
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(renameat(&dir, tmp.as_str(), &dir, name)?)
}

/// Text from outside, safe to put on the console: control characters (so
/// terminal escapes) shown escaped, the rest as is, at most `max` characters.
pub fn escaped(text: &str, max: usize) -> String {
    let mut s = String::new();
    for c in text.chars().take(max) {
        if c.is_control() {
            s.extend(c.escape_debug());
        } else {
            s.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        s.push('…');
    }
    s
}

/// Makes a FIFO at `path` (tests here and in the modules that use this one).
#[cfg(test)]
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from(0o600), 0).expect("mkfifo");
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;
    use std::sync::mpsc;
    use std::time::Duration;

    fn dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-safe-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `f` in a thread and fails if it takes more than 3 s (a hang).
    fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(3)).expect("hung")
    }

    #[test]
    fn reads_a_regular_file_within_its_bound() {
        let d = dir("plain");
        let p = d.join("f");
        fs::write(&p, "1\n").unwrap();
        assert_eq!(read(&p, 2).unwrap(), b"1\n");
        assert_eq!(read_text(&p, 2).unwrap(), "1\n");
        assert!(matches!(read(&p, 1), Err(Error::TooLong(1))));
        assert!(read(&d.join("missing"), 9).unwrap_err().is_not_found());
        fs::write(&p, b"\xff").unwrap();
        assert!(matches!(read_text(&p, 9), Err(Error::Io(_))), "not UTF-8");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_huge_sparse_file_is_refused_without_reading_it_all() {
        let d = dir("sparse");
        let p = d.join("f");
        fs::File::create(&p).unwrap().set_len(1 << 40).unwrap();
        assert!(matches!(promptly(move || read(&p, 1024)), Err(Error::TooLong(1024))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let d = dir("fifo");
        let p = d.join("f");
        mkfifo(&p);
        let q = p.clone();
        assert!(matches!(promptly(move || read(&q, 9)), Err(Error::NotRegular("FIFO"))));
        let dd = open_dir(&d).unwrap();
        assert!(matches!(promptly(move || open_append(dd.as_fd(), "f").map(drop)), Err(Error::NotRegular("FIFO"))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let d = dir("link");
        fs::write(d.join("target"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("target"), d.join("f")).unwrap();
        std::os::unix::fs::symlink("/dev/console", d.join("console")).unwrap();
        assert!(matches!(read(&d.join("f"), 9), Err(Error::Symlink)));
        assert!(matches!(promptly({ let p = d.join("console"); move || read(&p, 9) }), Err(Error::Symlink)));
        let dd = open_dir(&d).unwrap();
        assert!(matches!(open_append(dd.as_fd(), "f"), Err(Error::Symlink)));
        // replace() swaps the link itself for a new file.
        replace(&d, "f", b"new\n").unwrap();
        assert_eq!(fs::read_to_string(d.join("target")).unwrap(), "x");
        assert_eq!(read(&d.join("f"), 9).unwrap(), b"new\n");
        // A symlinked directory is not entered.
        std::os::unix::fs::symlink(&d, d.join("dirlink")).unwrap();
        assert!(matches!(open_dir(&d.join("dirlink")), Err(Error::Symlink)));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_sockets_and_directories_are_refused() {
        assert!(matches!(read(Path::new("/dev/null"), 9), Err(Error::NotRegular("character device"))));
        assert!(matches!(read(Path::new("/dev/zero"), 9), Err(Error::NotRegular("character device"))));
        let d = dir("kinds");
        assert!(matches!(read(&d, 9), Err(Error::NotRegular("directory"))));
        let _sock = std::os::unix::net::UnixListener::bind(d.join("s")).unwrap();
        assert!(matches!(read(&d.join("s"), 9), Err(Error::NotRegular("socket"))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn appends_to_a_new_or_existing_regular_file() {
        let d = dir("append");
        let dd = open_dir(&d).unwrap();
        open_append(dd.as_fd(), "log").unwrap().write_all(b"a\n").unwrap();
        open_append(dd.as_fd(), "log").unwrap().write_all(b"b\n").unwrap();
        assert_eq!(fs::read_to_string(d.join("log")).unwrap(), "a\nb\n");
        // A planted FIFO under the temporary name does not stop replace().
        mkfifo(&d.join(".v.new"));
        let at = d.clone();
        promptly(move || replace(&at, "v", b"1\n")).unwrap();
        assert_eq!(fs::read_to_string(d.join("v")).unwrap(), "1\n");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn escaping_shows_control_characters() {
        assert_eq!(escaped("abc", 10), "abc");
        assert_eq!(escaped("a\x1b[2Jb\n", 10), "a\\u{1b}[2Jb\\n");
        assert_eq!(escaped("abcdef", 3), "abc…");
        assert_eq!(escaped("key `a` \"b\"\u{9b}2J", 99), "key `a` \"b\"\\u{9b}2J", "quotes kept, C1 controls escaped");
    }
}

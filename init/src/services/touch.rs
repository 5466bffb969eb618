//! Host edits for file watchers in containers (`SKIFF-CONTROL/1 touch`,
//! `skiff_proto::touch`): for each path the host names, sets the file's
//! mtime to the value it already has. That reaches the host as a no-op and
//! raises IN_MODIFY here (an mtime without an atime is a modification to
//! fsnotify) for watchers of the file and of its folder. Never follows a
//! symlink, never leaves the share, never writes file data.

use std::io::{self, Write};

use ::vsock::VsockStream;
use rustix::io::Errno;
use rustix::fs::{openat2, statx, utimensat, AtFlags, Mode, OFlags, ResolveFlags, StatxFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
use skiff_proto::touch::{locate, DONE, MAX_BATCH, MAX_PATH};

use crate::services::shares;

/// Serves batches until the host goes away.
pub fn serve(stream: VsockStream) {
    if let Err(e) = batches(stream) {
        log::debug!("touch: stream ended: {e}");
    }
}

fn batches(mut stream: VsockStream) -> io::Result<()> {
    loop {
        let roots = shares::mounted().into_iter().map(|s| s.path).collect::<Vec<_>>();
        let (mut seen, mut failed) = (0usize, None);
        loop {
            let line = skiff_proto::read_line(&mut stream, MAX_PATH)?;
            if line.is_empty() {
                break;
            }
            if seen == MAX_BATCH {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "batch too long"));
            }
            seen += 1;
            if let Err(e) = touch(std::str::from_utf8(&line).unwrap_or(""), &roots) {
                failed = Some(e);
            }
        }
        // One line a batch at most, and only with skiff.debug.
        if let Some(e) = failed {
            log::debug!("touch: {e} (and maybe other paths of the batch)");
        }
        stream.write_all(DONE)?;
    }
}

/// Raises IN_MODIFY on `path` by setting its mtime to its own value,
/// read fresh from the host (the guest's attribute cache may be behind).
fn touch(path: &str, roots: &[String]) -> io::Result<()> {
    locate(path, roots).ok_or(Errno::PERM)?;
    // `locate` refused `..`; with no symlink followed, the path stays in the share.
    let file = openat2(CWD, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::NO_SYMLINKS)?;
    let now = statx(&file, "", AtFlags::EMPTY_PATH | AtFlags::STATX_FORCE_SYNC, StatxFlags::MTIME)?.stx_mtime;
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: now.tv_sec, tv_nsec: now.tv_nsec.into() },
    };
    Ok(utimensat(&file, "", &times, AtFlags::EMPTY_PATH)?)
}

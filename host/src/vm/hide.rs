//! Keeps the state folder out of every share. A virtiofsd whose shared
//! folder holds the state folder (`~/.skiff` inside the shared home) runs
//! in a mount namespace of its own, in which an empty read-only tmpfs
//! covers the state folder: no container, not even one that mounts the
//! share itself, can read the secret there or plant a file or a symlink
//! for the CLI to follow. virtiofsd still binds its socket in the real
//! folder, through a descriptor opened before the cover
//! (`/proc/self/fd/N/fs-0.sock`).
//!
//! As root a mount namespace is enough; a normal user gets one through a
//! user namespace that maps only the user's own ids (files keep their
//! owners). Where the system forbids that, the share is refused, never
//! served uncovered.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

/// Where a share stands against the state folder.
#[derive(Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Apart: nothing to hide.
    None,
    /// The state folder lies inside the share: cover it.
    Holds(PathBuf),
    /// The share is the state folder or inside it: never shared.
    Within,
}

/// How `share` (canonical) stands against `state` (canonical).
pub fn overlap(share: &Path, state: &Path) -> Overlap {
    if share.starts_with(state) {
        Overlap::Within
    } else if state.starts_with(share) {
        Overlap::Holds(state.to_path_buf())
    } else {
        Overlap::None
    }
}

/// A covered state folder, ready for a child's start.
pub struct Cover {
    /// The real state folder, open before the cover hides it.
    folder: File,
    target: CString,
    /// `Some((uid, gid))` when not root: the ids a user namespace maps.
    ids: Option<(u32, u32)>,
}

impl Cover {
    /// Opens `state` (the state folder, canonical) for covering; `ids` as
    /// for virtiofsd (`None` as root).
    pub fn new(state: &Path, ids: Option<(u32, u32)>) -> io::Result<Cover> {
        let fd = rustix::fs::open(
            state,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let target = CString::new(state.as_os_str().as_bytes()).map_err(io::Error::other)?;
        Ok(Cover {
            folder: File::from(fd),
            target,
            ids,
        })
    }

    /// `name` in the real state folder as the covered child reaches it.
    pub fn path_for_child(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.folder.as_raw_fd()))
    }

    /// Makes `cmd`'s child cover the state folder before it runs; the
    /// child fails to start (and says why) if it cannot.
    pub fn apply(&self, cmd: &mut Command) {
        let fd = self.folder.as_raw_fd();
        let target = self.target.clone();
        // Built before the fork: the child may not allocate.
        let maps = self.ids.map(|(uid, gid)| (format!("{uid} {uid} 1\n"), format!("{gid} {gid} 1\n")));
        let setup = move || -> io::Result<()> {
            keep_open(fd)?;
            let mut flags = UnshareFlags::NEWNS;
            if maps.is_some() {
                flags |= UnshareFlags::NEWUSER;
            }
            // SAFETY: NEWNS and NEWUSER do not unshare the descriptor
            // table, and this single-threaded child has no other thread.
            unsafe { rustix::thread::unshare_unsafe(flags)? };
            if let Some((uid_map, gid_map)) = &maps {
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
            }
            // Nothing of ours goes back to the host's namespace.
            rustix::mount::mount_change(c"/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)?;
            let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            rustix::mount::mount(c"skiff-hidden", target.as_c_str(), c"tmpfs", flags, c"size=4k,mode=0500")?;
            Ok(())
        };
        // SAFETY: `setup` runs between fork and exec and makes only
        // syscalls (fcntl, unshare, open, write, mount) on values prepared
        // above; it allocates nothing and takes no lock.
        unsafe { cmd.pre_exec(setup) };
    }
}

/// Clears close-on-exec on `fd` in the child only.
fn keep_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: fd is the Cover's open descriptor, inherited by this child.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    Ok(())
}

fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    let f = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::io::write(&f, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_folder_inside_a_share_is_covered_and_a_share_inside_it_refused() {
        let p = Path::new;
        assert_eq!(
            overlap(p("/home/u"), p("/home/u/.skiff")),
            Overlap::Holds(PathBuf::from("/home/u/.skiff"))
        );
        assert_eq!(overlap(p("/"), p("/tmp/s")), Overlap::Holds(PathBuf::from("/tmp/s")));
        assert_eq!(overlap(p("/home/u/.skiff"), p("/home/u/.skiff")), Overlap::Within);
        assert_eq!(overlap(p("/home/u/.skiff/images"), p("/home/u/.skiff")), Overlap::Within);
        assert_eq!(overlap(p("/home/u/project"), p("/home/u/.skiff")), Overlap::None);
        assert_eq!(
            overlap(p("/home/u/.skiff2"), p("/home/u/.skiff")),
            Overlap::None,
            "by path components, not text"
        );
    }

    /// As root here: a child sees an empty, read-only folder where the
    /// state folder is, yet reaches the real one through the descriptor.
    #[test]
    fn a_covered_child_sees_nothing_but_reaches_the_real_folder_by_descriptor() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("SKIPPED: needs root for a mount namespace without a user namespace; the QEMU shares suite covers a normal user");
            return;
        }
        let state = crate::testutil::SocketPath::new("hide", "state");
        std::fs::create_dir_all(&*state).unwrap();
        std::fs::write(state.join("secret"), "s3cret").unwrap();
        let cover = Cover::new(&state, None).unwrap();
        let through = cover.path_for_child("made-by-child");
        let script = format!(
            "ls -A '{s}'; cat '{s}/secret' 2>/dev/null && echo LEAK; touch '{s}/planted' 2>/dev/null && echo PLANTED; echo made > '{t}'",
            s = state.display(),
            t = through.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        cover.apply(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "the child saw the state folder");
        assert!(!state.join("planted").exists());
        assert_eq!(std::fs::read_to_string(state.join("made-by-child")).unwrap(), "made\n");
        assert_eq!(
            std::fs::read_to_string(state.join("secret")).unwrap(),
            "s3cret",
            "the host still sees it"
        );
    }
}

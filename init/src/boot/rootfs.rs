//! Leaving the kernel's initramfs for a size-capped tmpfs root.
//!
//! Container runtimes call pivot_root(2), which fails with EINVAL while `/` is
//! the initramfs ("rootfs"). Like LinuxKit, we mount a tmpfs, move every file
//! onto it one by one (unlinking each from the initramfs so RAM is not held
//! twice), move the tmpfs over `/`, chroot into it and re-execute ourselves.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType, Mode, CWD};
use rustix::mount::{mount, mount_move, MountFlags};

/// Where the new root is assembled before it is moved over `/`.
const NEW_ROOT: &str = "/newroot";
/// argv[1] of the re-executed init, so it knows the switch is done.
pub const STAGE2_ARG: &str = "--stage2";

/// Moves the initramfs onto a tmpfs of `size` and re-executes `/init` there
/// (told the uptime `started` of this first stage, argv[2] in µs).
/// Returns only on failure; the caller logs it and carries on in the initramfs.
pub fn switch_to_tmpfs(size: &str, started: std::time::Duration) -> io::Error {
    match try_switch(size, started) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch(size: &str, started: std::time::Duration) -> io::Result<std::convert::Infallible> {
    fs::DirBuilder::new().mode(0o755).create(NEW_ROOT).or_else(ignore_exists)?;
    let data = CString::new(format!("size={size},mode=0755")).map_err(io::Error::other)?;
    mount("tmpfs", NEW_ROOT, "tmpfs", MountFlags::empty(), data.as_c_str())?;
    let root_dev = fs::symlink_metadata("/")?.dev();
    let moved = move_tree(Path::new("/"), Path::new(NEW_ROOT), root_dev)?;
    log::info!("moved {moved} files from initramfs to tmpfs root (size={size})");
    std::env::set_current_dir(NEW_ROOT)?;
    mount_move(".", "/")?;
    rustix::process::chroot(".")?;
    std::env::set_current_dir("/")?;
    let init = CString::new("/init").map_err(io::Error::other)?;
    let arg = CString::new(STAGE2_ARG).map_err(io::Error::other)?;
    let at = CString::new((started.as_micros() as u64).to_string()).map_err(io::Error::other)?;
    let argv = [init.as_ptr(), arg.as_ptr(), at.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NULL-terminated array of pointers to NUL-terminated
    // strings that outlive the call; execv only returns on failure.
    unsafe { libc::execv(init.as_ptr(), argv.as_ptr()) };
    Err(io::Error::last_os_error())
}

fn ignore_exists(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) }
}

/// Moves the contents of `from` into `to`, staying on the device `dev`
/// (mount points such as the new root itself are skipped). Returns the count.
fn move_tree(from: &Path, to: &Path, dev: u64) -> io::Result<usize> {
    let mut moved = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let meta = fs::symlink_metadata(&src)?;
        if meta.dev() != dev || src == Path::new(NEW_ROOT) {
            continue;
        }
        let dst = to.join(entry.file_name());
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::DirBuilder::new().mode(meta.mode() & 0o7777).create(&dst).or_else(ignore_exists)?;
            moved += move_tree(&src, &dst, dev)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            fs::remove_dir(&src)?;
            continue;
        }
        if ft.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = FileType::from_raw_mode(meta.mode());
            rustix::fs::mknodat(CWD, &dst, kind, Mode::from_raw_mode(meta.mode() & 0o7777), meta.rdev())?;
        } else {
            continue; // sockets cannot be moved and are not expected here
        }
        fs::remove_file(&src)?;
        moved += 1;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_files_links_and_dirs() {
        let base = std::env::temp_dir().join(format!("skiff-rootfs-{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        fs::create_dir_all(from.join("usr/bin")).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(from.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(from.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("usr/bin", from.join("bin")).unwrap();
        let dev = fs::symlink_metadata(&from).unwrap().dev();

        assert_eq!(move_tree(&from, &to, dev).unwrap(), 2);

        assert_eq!(fs::read(to.join("usr/bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::metadata(to.join("usr/bin/tool")).unwrap().mode() & 0o777, 0o755);
        assert_eq!(fs::read_link(to.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(fs::read_dir(&from).unwrap().count(), 0, "source emptied as it goes");
        fs::remove_dir_all(&base).unwrap();
    }
}

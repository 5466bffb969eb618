//! The boot medium. The Skiff ISO carries `/usr` (the engine and its
//! libraries, ~75 MB) as a squashfs image beside the kernel, so it is read
//! and decompressed on demand instead of being unpacked into RAM at boot:
//! boot is seconds faster and the page cache can drop what is not in use.
//! The ISO may be attached as a CD or written to a disk or USB stick (it is
//! hybrid). USB storage appears seconds after the kernel starts (controller
//! reset, enumeration, the SCSI scan), so the search waits, bounded.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use linux_raw_sys::loop_device as lo;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// Where the ISO is mounted.
pub const MOUNT: &str = "/run/skiff/medium";
/// The squashfs image inside the ISO, and its build id beside it.
const IMAGE: &str = "skiff/usr.squashfs";
const ISO_BUILD_ID: &str = "skiff/build-id";
/// The build id the initramfs was made with: the ISO must match it.
pub const OUR_BUILD_ID: &str = "/etc/skiff/build-id";

/// True if `buf`, read at byte 0x8000 of a device, starts an ISO 9660
/// primary volume descriptor (type 1, "CD001").
pub fn is_iso9660(buf: &[u8]) -> bool {
    buf.len() >= 6 && buf[0] == 1 && &buf[1..6] == b"CD001"
}

/// Whole-disk block devices that could hold the medium, in name order.
fn candidates() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.retain(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"));
    names.sort();
    names
}

fn probe(dev: &Path) -> bool {
    let mut buf = [0u8; 6];
    File::open(dev).and_then(|f| f.read_exact_at(&mut buf, 0x8000)).is_ok() && is_iso9660(&buf)
}

/// After this long without the medium, the console says the init is still
/// waiting (a USB stick under emulation takes a few seconds to appear).
const SAY_WAITING_AFTER: Duration = Duration::from_secs(3);

/// Finds the ISO whose build id matches ours and mounts its `/usr` image,
/// waiting up to `limit` for the device to appear. Returns the device.
pub fn mount_usr(limit: Duration) -> io::Result<PathBuf> {
    let ours = fs::read_to_string(OUR_BUILD_ID)
        .map_err(|e| io::Error::other(format!("cannot read {OUR_BUILD_ID}: {e}")))?;
    let ours = ours.trim();
    fs::create_dir_all(MOUNT)?;
    let began = Instant::now();
    let mut reported = Vec::new();
    let mut said_waiting = false;
    loop {
        for name in candidates() {
            let dev = PathBuf::from(format!("/dev/{name}"));
            if !probe(&dev) {
                continue;
            }
            match try_device(&dev, ours) {
                Ok(true) => return Ok(dev),
                Ok(false) => {}
                Err(e) if !reported.contains(&name) => {
                    log::warn!("medium: {} has an ISO 9660 filesystem but cannot be used: {e}", dev.display());
                    reported.push(name);
                }
                Err(_) => {}
            }
        }
        if !said_waiting && began.elapsed() >= SAY_WAITING_AFTER {
            log::info!("medium: waiting for the boot medium (up to {}s; USB storage takes seconds to appear)", limit.as_secs());
            said_waiting = true;
        }
        if began.elapsed() >= limit {
            return Err(io::Error::other(format!(
                "no Skiff boot medium (ISO with build {ours}) found within {}s: attach the ISO this kernel came from",
                limit.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Mounts `dev` and, if it is our ISO, the squashfs on /usr. `Ok(false)`
/// means "not ours" (it is unmounted again).
fn try_device(dev: &Path, ours: &str) -> io::Result<bool> {
    mount(dev, MOUNT, "iso9660", MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID, None)?;
    let theirs = fs::read_to_string(Path::new(MOUNT).join(ISO_BUILD_ID)).unwrap_or_default();
    if theirs.trim() != ours {
        log::info!("medium: {} is not this build's ISO (build {:?}); skipping", dev.display(), theirs.trim());
        let _ = unmount(MOUNT, UnmountFlags::empty());
        return Ok(false);
    }
    let image = Path::new(MOUNT).join(IMAGE);
    // The loop device's fd must stay open until the mount holds it: with
    // autoclear, closing the last reference detaches it.
    let result = attach_loop(&image).and_then(|(loopdev, _held)| {
        mount(&loopdev, "/usr", "squashfs", MountFlags::RDONLY | MountFlags::NODEV, None)?;
        Ok(loopdev)
    });
    match result {
        Ok(loopdev) => {
            log::info!("medium: /usr mounted from {} on {} ({})", IMAGE, dev.display(), loopdev.display());
            Ok(true)
        }
        Err(e) => {
            let _ = unmount(MOUNT, UnmountFlags::empty());
            Err(e)
        }
    }
}

/// Files the engine needs first, read in a background thread as soon as
/// /usr is mounted: under emulation, decompressing the squashfs takes
/// seconds, and on a second CPU it overlaps with the engine's own start
/// instead of adding to it (page faults then find the pages cached).
const PREFETCH: [&str; 4] = ["/usr/bin/podman", "/usr/bin/conmon", "/usr/bin/crun", "/usr/lib/podman/netavark"];

/// Starts reading the engine's files into the page cache in the background.
pub fn prefetch() {
    let spawned = thread::Builder::new().name("prefetch".into()).spawn(|| {
        let began = Instant::now();
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        for path in PREFETCH {
            let Ok(mut f) = File::open(path) else { continue };
            while let Ok(n) = io::Read::read(&mut f, &mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
        log::debug!("medium: prefetched {} MiB in {:.2}s", total >> 20, began.elapsed().as_secs_f64());
    });
    if let Err(e) = spawned {
        log::warn!("medium: cannot start the prefetch thread: {e}");
    }
}

/// Attaches `file` read-only to a free loop device (freed again on unmount).
/// Returns the device path and an open fd that keeps it attached.
fn attach_loop(file: &Path) -> io::Result<(PathBuf, File)> {
    let ctl = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), lo::LOOP_CTL_GET_FREE as _) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let path = PathBuf::from(format!("/dev/loop{n}"));
    let backing = File::open(file)?;
    let dev = OpenOptions::new().read(true).open(&path)?;
    // SAFETY: loop_config is plain old data; all-zero is a valid value.
    let mut config: lo::loop_config = unsafe { std::mem::zeroed() };
    config.fd = backing.as_raw_fd() as u32;
    config.info.lo_flags = lo::LO_FLAGS_READ_ONLY as u32 | lo::LO_FLAGS_AUTOCLEAR as u32;
    // SAFETY: LOOP_CONFIGURE reads a loop_config that lives across the call;
    // the kernel takes its own reference to the backing file.
    if unsafe { libc::ioctl(dev.as_raw_fd(), lo::LOOP_CONFIGURE as _, &config) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((path, dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_iso9660_descriptors() {
        assert!(is_iso9660(b"\x01CD001\x01"));
        assert!(!is_iso9660(b"\x00CD001"), "boot record, not primary");
        assert!(!is_iso9660(b"\x01CD00"));
        assert!(!is_iso9660(&[0u8; 6]));
    }
}

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

use skiff_proto::events::{Event, Note};

use super::safe_file;

/// Where the ISO is mounted.
pub const MOUNT: &str = "/run/skiff/medium";
/// The squashfs image inside the ISO, and its build id beside it.
const IMAGE: &str = "skiff/usr.squashfs";
const ISO_BUILD_ID: &str = "skiff/build-id";
/// The build id the initramfs was made with: the ISO must match it.
pub const OUR_BUILD_ID: &str = "/etc/skiff/build-id";
/// Longest build id file read.
pub const BUILD_ID_MAX: u64 = 256;

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
    let ours = safe_file::read_text(Path::new(OUR_BUILD_ID), BUILD_ID_MAX)
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
    // The medium is outside data: no symlink or FIFO followed, bounded, logged escaped.
    let theirs = match safe_file::read_text(&Path::new(MOUNT).join(ISO_BUILD_ID), BUILD_ID_MAX) {
        Ok(text) => text,
        Err(e) => format!("unreadable: {e}"),
    };
    if theirs.trim() != ours {
        log::info!("medium: {} is not this build's ISO (build \"{}\"); skipping", dev.display(), safe_file::escaped(theirs.trim(), 80));
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
            super::events::note(Note::UsrFrom, &dev.display().to_string());
            Ok(true)
        }
        Err(e) => {
            let _ = unmount(MOUNT, UnmountFlags::empty());
            Err(e)
        }
    }
}

/// The engine's binary, read in the background as soon as /usr is mounted:
/// under emulation, decompressing the squashfs (xz) runs at a few MiB/s per
/// CPU, so podman's 45 MB took most of the engine's start when it page-faulted
/// them in. It is read in one share per CPU at once (the kernel decompresses
/// squashfs blocks on every CPU in parallel), while the init waits for the
/// disk and the network.
const PREFETCH_ENGINE: &str = "/usr/bin/podman";
/// Needed by the first container, not by the engine's start: read once it is ready.
const PREFETCH_LATER: [&str; 3] = ["/usr/bin/conmon", "/usr/bin/crun", "/usr/lib/podman/netavark"];
/// At most this many reader threads.
const MAX_READERS: usize = 4;

/// Byte ranges that split `len` into `n` contiguous shares (the last takes the rest).
pub fn shares(len: u64, n: usize) -> Vec<(u64, u64)> {
    let n = n.max(1) as u64;
    let step = len.div_ceil(n).max(1);
    (0..n).map(|i| (i * step, ((i + 1) * step).min(len))).filter(|(a, b)| a < b).collect()
}

/// Reads `len` bytes of `f` from `offset` into nothing; returns how many were read.
fn read_range(f: &File, offset: u64, len: u64) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        match f.read_at(&mut buf[..want], offset + done) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n as u64,
        }
    }
    done
}

/// Reads `path` whole with `readers` threads at once; returns the bytes read.
fn read_parallel(path: &str, readers: usize) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let f = &f;
    thread::scope(|s| {
        let mut total = 0;
        let mut handles = Vec::new();
        for (a, b) in shares(len, readers) {
            match thread::Builder::new().name("prefetch".into()).spawn_scoped(s, move || read_range(f, a, b - a)) {
                Ok(h) => handles.push(h),
                // Read here instead: slower, never lost.
                Err(_) => total += read_range(f, a, b - a),
            }
        }
        total + handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
    })
}

/// Longest wait for the engine's readiness before the container tools are read anyway.
const LATER_WAIT: Duration = Duration::from_secs(60);

/// Starts reading the engine's files into the page cache in the background.
/// The container tools wait until `engine_ready()` (or [`LATER_WAIT`]): read
/// earlier, they took CPU time (decompression) from the engine's own start.
pub fn prefetch(engine_ready: fn() -> bool) {
    let spawned = thread::Builder::new().name("prefetch".into()).spawn(move || {
        let began = Instant::now();
        let readers = thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_READERS);
        let engine = read_parallel(PREFETCH_ENGINE, readers);
        log::info!("medium: read {PREFETCH_ENGINE} ({} MiB) in {}s with {readers} thread(s)", engine >> 20, crate::secs::Secs(began.elapsed(), 2));
        super::events::emit(Event::EngineRead);
        let waited = Instant::now();
        while !engine_ready() && waited.elapsed() < LATER_WAIT {
            thread::sleep(Duration::from_millis(100));
        }
        let later: u64 = PREFETCH_LATER.iter().map(|p| read_parallel(p, 1)).sum();
        log::debug!("medium: read the container tools ({} MiB) by {}s", later >> 20, crate::secs::Secs(began.elapsed(), 2));
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
    let backing = safe_file::open(file)?;
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
    fn shares_cover_the_file_once() {
        assert_eq!(shares(10, 2), vec![(0, 5), (5, 10)]);
        assert_eq!(shares(11, 2), vec![(0, 6), (6, 11)]);
        assert_eq!(shares(3, 4), vec![(0, 1), (1, 2), (2, 3)], "no empty shares");
        assert_eq!(shares(0, 2), vec![]);
        assert_eq!(shares(7, 0), vec![(0, 7)], "at least one reader");
    }

    #[test]
    fn a_parallel_read_reads_every_byte() {
        let path = std::env::temp_dir().join(format!("skiff-prefetch-{}", std::process::id()));
        fs::write(&path, vec![7u8; (3 << 20) + 5]).unwrap();
        assert_eq!(read_parallel(path.to_str().unwrap(), 3), (3 << 20) + 5);
        fs::remove_file(&path).unwrap();
        assert_eq!(read_parallel("/nonexistent/skiff", 2), 0);
    }

    #[test]
    fn recognises_iso9660_descriptors() {
        assert!(is_iso9660(b"\x01CD001\x01"));
        assert!(!is_iso9660(b"\x00CD001"), "boot record, not primary");
        assert!(!is_iso9660(b"\x01CD00"));
        assert!(!is_iso9660(&[0u8; 6]));
    }
}

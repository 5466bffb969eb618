//! The persistent data disk: find it (or a blank disk to make one), check
//! it, mount it, and put the engine's storage and Skiff's state on it;
//! unmount it at shutdown. The decisions are pure (`probe`, `gpt`); this
//! file does the I/O, and every slow step has a time limit.

mod gpt;
pub mod layout;
pub mod mountinfo;
pub mod probe;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::mount::{mount, mount_bind, mount_remount, MountFlags};

use crate::boot::events;
use crate::supervise::sys::{unmount_retrying, Kernel, Sys};
use skiff_proto::events::{Disk as Outcome, Event, Note};

use probe::{Choice, Content, Decision, Disk, Fsck, Partition};

/// Where the data filesystem is mounted.
pub const MOUNT_POINT: &str = "/mnt/skiff-data";
/// Journal commits every 2 s (default 5 s): with the writeback settings,
/// what was written about 10 s before a power loss survives it. Online
/// discard: blocks freed by a removed image or volume are discarded at the
/// next commit, so the host's image file shrinks (QEMU punches them out;
/// `skiff run --discard off` makes it ignore them). A disk that cannot
/// discard is mounted without it (ext4 says so once).
const MOUNT_OPTIONS: &std::ffi::CStr = c"commit=2,discard";
/// Folders of the data filesystem bind-mounted over the tmpfs root's.
const BINDS: [(&str, &str); 2] = [("containers", "/var/lib/containers"), ("skiff", "/var/lib/skiff")];
const MKFS: &str = "/usr/sbin/mke2fs";
const FSCK: &str = "/usr/sbin/e2fsck";
const MKFS_LIMIT: Duration = Duration::from_secs(180);
const FSCK_LIMIT: Duration = Duration::from_secs(300);
const PARTITION_NODE_LIMIT: Duration = Duration::from_secs(10);
/// How long boot waits for a first disk to appear: some controllers (USB,
/// SCSI behind a slow HBA, hot-added disks) show theirs a little after init
/// starts. Waited only while there is none, so it never delays a normal boot.
const DISK_WAIT: Duration = Duration::from_secs(5);
const DISK_POLL: Duration = Duration::from_millis(100);
/// `_IO(0x12, 95)`: re-read the partition table.
const BLKRRPART: libc::Ioctl = 0x125F;

/// Why the data disk could not be prepared or mounted. The caller logs it
/// and goes on without a data disk.
#[derive(Debug)]
pub enum Error {
    /// The disk has no room for a partition table.
    TooSmall(String),
    /// Writing or re-reading the partition table failed.
    Partition(String, io::Error),
    /// The new partition's device node did not appear in time.
    NoPartitionNode(String),
    /// mke2fs or e2fsck could not run, or was stopped at its time limit.
    Helper(&'static str, RunError),
    /// mke2fs exited with this code.
    Format(String, i32),
    /// e2fsck found what it cannot fix: the filesystem is left untouched.
    NeedsRepair(String, Fsck),
    /// The mount point could not be created.
    MountPoint(io::Error),
    /// mount(2) failed.
    Mount(String, rustix::io::Errno),
    /// The remount read-write (after the layout check) failed.
    Remount(rustix::io::Errno),
    /// The disk's layout is not one this init understands.
    Layout(String, layout::Error),
    /// The read-only look at the layout version (no journal recovery) could not mount it.
    Peek(String, rustix::io::Errno),
    /// That look's mount could not be undone.
    PeekUnmount(rustix::io::Errno),
    /// A bind mount onto the tmpfs root failed.
    Bind(String, io::Error),
}

impl Error {
    /// The reason code the host and tests get ([`Outcome::Refused`]).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Layout(_, layout::Error::Newer(_)) => "layout-newer",
            Error::Layout(..) => "layout-unreadable",
            Error::NeedsRepair(..) => "needs-repair",
            _ => "failed",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooSmall(dev) => write!(f, "{dev} is too small for a partition table"),
            Error::Partition(dev, e) => write!(f, "cannot partition {dev}: {e}"),
            Error::NoPartitionNode(dev) => write!(f, "the new partition of {dev} did not appear within {PARTITION_NODE_LIMIT:?}"),
            Error::Helper(what, e) => write!(f, "{what}: {e}"),
            Error::Format(dev, code) => write!(f, "mke2fs {dev} failed (exit {code})"),
            Error::NeedsRepair(dev, why) => write!(f, "{dev} needs repair ({why}); leaving it unmounted and untouched (it will not be formatted)"),
            Error::MountPoint(e) => write!(f, "cannot create {MOUNT_POINT}: {e}"),
            Error::Mount(dev, e) => write!(f, "cannot mount {dev} on {MOUNT_POINT}: {e}"),
            Error::Remount(e) => write!(f, "cannot make {MOUNT_POINT} writable: {e}"),
            Error::Layout(dev, why) => write!(f, "{dev}: {why}; leaving its data untouched (not checked, not mounted)"),
            Error::Peek(dev, e) => write!(f, "cannot mount {dev} read-only to read its layout version: {e}; leaving it untouched"),
            Error::PeekUnmount(e) => write!(f, "cannot detach {MOUNT_POINT} after reading the layout version: {e}"),
            Error::Bind(target, e) => write!(f, "cannot bind {target} from the data disk: {e}; undid the data disk"),
        }
    }
}

/// Why a helper program gave no exit code.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started or waited for.
    Io(io::Error),
    /// It ran past its limit and was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Io(e) => write!(f, "{e}"),
            RunError::TimedOut(limit) => write!(f, "did not finish within {}s; stopped it", limit.as_secs()),
        }
    }
}

/// The mounted data disk, which only [`setup`] makes: the boot sequence
/// hands it to `skiff status` and to the shutdown, which unmounts it.
#[derive(Clone, Copy, Debug)]
pub struct DataDisk(());

/// Finds, prepares and mounts the data disk. Never fails the boot: without
/// a usable disk (`None`) the engine runs on the tmpfs root, and the
/// console says so (and the host, through an event).
pub fn setup() -> Option<DataDisk> {
    let outcome = set_up();
    let mounted = matches!(outcome, Outcome::Mounted).then_some(DataDisk(()));
    events::emit(Event::Disk(outcome));
    mounted
}

fn set_up() -> Outcome {
    let began = Instant::now();
    let limit = match host_data_disks() {
        Some(0) => {
            log::info!("disk: the host attached no data disk; not waiting for one");
            Duration::ZERO
        }
        _ => DISK_WAIT,
    };
    let (names, waited) = wait_for(limit, DISK_POLL, disk_names);
    if waited >= DISK_POLL {
        match names.len() {
            0 => log::info!("disk: no disk appeared within {}s", DISK_WAIT.as_secs()),
            _ => log::info!("disk: {} appeared after {}s", names.join(", "), crate::secs::Secs(waited, 2)),
        }
    }
    let disks = scan(names);
    let decisions: Vec<Decision> = disks.iter().map(probe::decide).collect();
    for (disk, decision) in disks.iter().zip(&decisions) {
        if let Decision::Skip(why) = decision {
            log::warn!("disk: skipping /dev/{} ({}): {why}; it is left untouched", disk.name, human(disk.size));
            events::note(Note::DiskSkipped, &format!("/dev/{}", disk.name));
        }
    }
    let i = match probe::choose(&disks, &decisions) {
        Choice::Use(i) => i,
        Choice::Nothing => {
            log::warn!("disk: no data disk (attach a blank disk or one with an ext4 filesystem labelled {:?}); images, containers and volumes live in RAM and will NOT persist", probe::LABEL);
            return Outcome::None;
        }
        Choice::Ambiguous(devices) => {
            let list: Vec<String> = devices.iter().map(|d| format!("/dev/{d}")).collect();
            log::error!("disk: {} filesystems are labelled {:?} ({}); not guessing which one holds your data, so none is used and nothing is written to any disk. Detach all but one (or relabel the others: e2label DEVICE other-name) and reboot. Images, containers and volumes live in RAM and will NOT persist", devices.len(), probe::LABEL, list.join(" and "));
            return Outcome::Refused("ambiguous".into());
        }
    };
    let disk = &disks[i];
    // The device, and whether it was formatted just now.
    let device = match &decisions[i] {
        Decision::Mount(dev) => Ok((dev.clone(), false)),
        Decision::FormatPartition(part) => {
            log::info!("disk: /dev/{part} is Skiff's partition but was never formatted (setup cut short?); formatting it");
            format(part).map(|()| (part.clone(), true))
        }
        Decision::PartitionAndFormat => {
            log::info!("disk: /dev/{} ({}) is blank; making it Skiff's data disk", disk.name, human(disk.size));
            partition(disk).and_then(|part| format(&part).map(|()| (part, true)))
        }
        Decision::Skip(_) => {
            log::warn!("disk: no data disk mounted; images, containers and volumes live in RAM and will NOT persist");
            return Outcome::None;
        }
    };
    match device.and_then(|(dev, fresh)| check_and_mount(&dev, fresh).map(|()| dev)) {
        Ok(dev) => {
            log::info!("disk: data disk ready in {}s: images, containers and volumes persist on /dev/{dev}", crate::secs::Secs(began.elapsed(), 2));
            Outcome::Mounted
        }
        Err(e) => {
            log::error!("disk: {e}");
            log::warn!("disk: no data disk mounted; images, containers and volumes live in RAM and will NOT persist");
            Outcome::Refused(e.code().into())
        }
    }
}

impl DataDisk {
    /// The data filesystem's size and use as `df` counts them.
    pub fn usage(&self) -> Option<skiff_proto::status::DiskUse> {
        match rustix::fs::statvfs(MOUNT_POINT) {
            Ok(st) => Some(df(st.f_blocks, st.f_bfree, st.f_bavail, st.f_frsize)),
            Err(e) => {
                log::warn!("disk: cannot statvfs {MOUNT_POINT}: {e}");
                None
            }
        }
    }

    /// Unmounts it for the shutdown ([`unmount_all`]).
    pub fn unmount(self, sys: &impl Sys) {
        unmount_all(sys);
        events::note(Note::DiskUnmounted, MOUNT_POINT);
    }
}

/// `df`'s figures from statvfs fields: size, used (size − free), available
/// to unprivileged writers.
fn df(blocks: u64, free: u64, avail: u64, frsize: u64) -> skiff_proto::status::DiskUse {
    skiff_proto::status::DiskUse {
        size: blocks.saturating_mul(frsize),
        used: blocks.saturating_sub(free).saturating_mul(frsize),
        available: avail.saturating_mul(frsize),
    }
}

/// Calls `look` until it finds something or `limit` has passed, every
/// `every`. Returns what it found last and how long that took.
fn wait_for<T>(limit: Duration, every: Duration, mut look: impl FnMut() -> Vec<T>) -> (Vec<T>, Duration) {
    let began = Instant::now();
    loop {
        let found = look();
        if !found.is_empty() || began.elapsed() >= limit {
            return (found, began.elapsed());
        }
        thread::sleep(every);
    }
}

/// How many data disks `skiff run` attached, if it said (fw_cfg; other
/// hypervisors say nothing).
fn host_data_disks() -> Option<usize> {
    let path = format!("/sys/firmware/qemu_fw_cfg/by_name/{}/raw", skiff_proto::FW_CFG_DATA_DISKS);
    parse_count(&fs::read(path).ok()?)
}

/// A small decimal count; anything else is None.
fn parse_count(raw: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    (!text.is_empty() && text.len() <= 4).then(|| text.parse().ok())?
}

/// The candidate disks in /sys/block, sorted by name: not ignored, and
/// with a medium in them.
fn disk_names() -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir("/sys/block") {
        Ok(dir) => dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => {
            log::error!("disk: cannot list /sys/block: {e}");
            return Vec::new();
        }
    };
    names.retain(|n| !probe::ignored_name(n) && read_u64(&Path::new("/sys/block").join(n).join("size")).unwrap_or(0) > 0);
    names.sort();
    names
}

/// The disks named, with their probes.
fn scan(names: Vec<String>) -> Vec<Disk> {
    let mut disks = Vec::new();
    for name in names {
        let sys = Path::new("/sys/block").join(&name);
        let size = read_u64(&sys.join("size")).unwrap_or(0) * 512;
        if size == 0 {
            continue; // the medium went away since
        }
        let read_only = read_u64(&sys.join("ro")).unwrap_or(0) != 0;
        let content = match read_content(&name, size) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("disk: cannot read /dev/{name}: {e}; skipping it");
                events::note(Note::DiskSkipped, &format!("/dev/{name}"));
                continue;
            }
        };
        disks.push(Disk { partitions: partitions(&name), name, size, read_only, content });
    }
    disks
}

/// The partitions of a disk, from /sys/block/NAME/NAMEp (with their GPT names).
fn partitions(disk: &str) -> Vec<Partition> {
    let sys = Path::new("/sys/block").join(disk);
    let mut parts: Vec<String> = fs::read_dir(&sys)
        .map(|d| d.flatten().filter(|e| e.path().join("partition").exists()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    parts.sort();
    parts
        .into_iter()
        .map(|name| {
            let uevent = fs::read_to_string(sys.join(&name).join("uevent")).unwrap_or_default();
            let label = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME=")).map(str::to_string);
            let size = read_u64(&sys.join(&name).join("size")).unwrap_or(0) * 512;
            let content = read_content(&name, size).unwrap_or_else(|e| {
                log::warn!("disk: cannot read /dev/{name}: {e}");
                Content::Unknown
            });
            Partition { name, label, content }
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Probes a device from its first and last MiB (all of it if smaller);
/// when those are zeros, also from windows sampled across the rest, one at
/// a time, stopping at the first that is not.
fn read_content(name: &str, size: u64) -> io::Result<Content> {
    let file = File::open(format!("/dev/{name}"))?;
    let len = size.min(probe::END_BYTES) as usize;
    let mut first = vec![0u8; len];
    file.read_exact_at(&mut first, 0)?;
    let mut last = vec![0u8; len];
    file.read_exact_at(&mut last, size - len as u64)?;
    let mut content = probe::probe(&first, &last);
    if content != Content::Blank {
        return Ok(content);
    }
    let t = Instant::now();
    let offsets = probe::sample_offsets(size, probe::SAMPLES, probe::SAMPLE_BYTES);
    let mut window = vec![0u8; probe::SAMPLE_BYTES as usize];
    for &at in &offsets {
        file.read_exact_at(&mut window, at)?;
        content = probe::sampled(content, &[(at, &window)]);
        if content != Content::Blank {
            return Ok(content);
        }
    }
    log::info!("disk: /dev/{name}: both ends and {} windows across it are zeros (read in {}s)", offsets.len(), crate::secs::Secs(t.elapsed(), 2));
    Ok(content)
}

/// Writes a GPT with one `skiff-data` partition and waits for its device
/// node. Returns the partition's name.
fn partition(disk: &Disk) -> Result<String, Error> {
    let sector = read_u64(&Path::new("/sys/block").join(&disk.name).join("queue/logical_block_size")).unwrap_or(512);
    let mut random = [0u8; 32];
    if let Err(e) = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)) {
        log::warn!("disk: cannot read /dev/urandom ({e}); using a time-based GUID");
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
        random[..16].copy_from_slice(&t.to_le_bytes());
        random[16..].copy_from_slice(&(!t).to_le_bytes());
    }
    let (a, b) = random.split_at(16);
    let dev = format!("/dev/{}", disk.name);
    let mut half = [[0u8; 16]; 2];
    half[0].copy_from_slice(a);
    half[1].copy_from_slice(b);
    let (disk_guid, part_guid) = (gpt::random_guid(half[0]), gpt::random_guid(half[1]));
    let layout = gpt::layout(sector, disk.size / sector, disk_guid, part_guid, probe::LABEL).ok_or_else(|| Error::TooSmall(dev.clone()))?;
    let written = OpenOptions::new().read(true).write(true).open(&dev).and_then(|f| {
        f.write_all_at(&layout.primary, 0)?;
        f.write_all_at(&layout.backup, layout.backup_offset)?;
        f.sync_all()?;
        // SAFETY: BLKRRPART takes no argument; the fd is a block device we opened.
        if unsafe { libc::ioctl(f.as_raw_fd(), BLKRRPART) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    });
    written.map_err(|e| Error::Partition(dev.clone(), e))?;
    log::info!("disk: wrote a GPT on {dev}: one partition, sectors {}..={}", layout.first_lba, layout.last_lba);
    events::note(Note::DiskPartitioned, &dev);
    let end = Instant::now() + PARTITION_NODE_LIMIT;
    loop {
        if let Some(p) = partitions(&disk.name).into_iter().find(|p| p.label.as_deref() == Some(probe::LABEL)) {
            if Path::new("/dev").join(&p.name).exists() {
                return Ok(p.name);
            }
        }
        if Instant::now() > end {
            return Err(Error::NoPartitionNode(dev));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Formats a partition as ext4 labelled `skiff-data`. Never discards:
/// mke2fs would otherwise TRIM the whole device first, and a disk judged
/// blank from samples must not lose what lay between them.
fn format(part: &str) -> Result<(), Error> {
    let dev = format!("/dev/{part}");
    let t = Instant::now();
    let mut cmd = Command::new(MKFS);
    cmd.args(["-q", "-F", "-t", "ext4", "-E", "nodiscard", "-L", probe::LABEL, "-m", "0", &dev]);
    match run_bounded(&mut cmd, MKFS_LIMIT).map_err(|e| Error::Helper("mke2fs", e))? {
        0 => {
            log::info!("disk: formatted {dev} as ext4 ({:?}) in {}s", probe::LABEL, crate::secs::Secs(t.elapsed(), 2));
            events::note(Note::DiskFormatted, &dev);
            Ok(())
        }
        code => Err(Error::Format(dev, code)),
    }
}

/// Mounts the filesystem with the bind mounts once its layout version is
/// one this init understands, after `e2fsck -p`. The version is read first,
/// before anything can write: `e2fsck -p` rewrites the superblock even on a
/// clean filesystem, and replaying the journal writes too, so a disk from a
/// newer Skiff must be judged from a read-only mount without recovery.
fn check_and_mount(part: &str, fresh: bool) -> Result<(), Error> {
    let dev = format!("/dev/{part}");
    if !fresh {
        peek_layout(&dev)?;
    }
    let t = Instant::now();
    let code = run_bounded(Command::new(FSCK).args(["-p", &dev]), FSCK_LIMIT).map_err(|e| Error::Helper("e2fsck", e))?;
    let note = probe::fsck_verdict(code).map_err(|why| Error::NeedsRepair(dev.clone(), why))?;
    log::info!("disk: checked {dev} in {}s: {note}", crate::secs::Secs(t.elapsed(), 2));
    events::note(Note::DiskChecked, &dev);
    fs::create_dir_all(MOUNT_POINT).map_err(Error::MountPoint)?;
    // Read-only until the layout version is known to be ours (again: a
    // replayed journal may have changed what the first look saw).
    mount(dev.as_str(), MOUNT_POINT, "ext4", MountFlags::NOATIME | MountFlags::RDONLY, MOUNT_OPTIONS).map_err(|e| Error::Mount(dev.clone(), e))?;
    if let Err(why) = layout::check(Path::new(MOUNT_POINT)) {
        unmount_all(&Kernel);
        return Err(Error::Layout(dev, why));
    }
    if let Err(e) = mount_remount(MOUNT_POINT, MountFlags::NOATIME, MOUNT_OPTIONS) {
        unmount_all(&Kernel);
        return Err(Error::Remount(e));
    }
    let build = crate::boot::safe_file::read_text(Path::new(crate::boot::medium::OUR_BUILD_ID), crate::boot::medium::BUILD_ID_MAX).ok();
    if let Err(e) = layout::record(Path::new(MOUNT_POINT), fresh, build.as_deref()) {
        log::warn!("disk: cannot record the layout version and build id on {dev}: {e}");
    }
    for (sub, target) in BINDS {
        let source = Path::new(MOUNT_POINT).join(sub);
        // A container given the disk may have planted a symlink here; no
        // container runs yet during boot, so a look now holds until the bind.
        let bound = fs::create_dir_all(&source)
            .and_then(|()| real_folder(&source))
            .and_then(|()| fs::create_dir_all(target))
            .and_then(|()| mount_bind(&source, target).map_err(io::Error::from));
        if let Err(e) = bound {
            unmount_all(&Kernel);
            return Err(Error::Bind(target.to_string(), e));
        }
    }
    // Write dirty data back after 3 s (default 30 s): the engine does not
    // fsync image layers, so this bounds what a power loss can take.
    for (knob, value) in [("dirty_expire_centisecs", "300"), ("dirty_writeback_centisecs", "100")] {
        if let Err(e) = fs::write(format!("/proc/sys/vm/{knob}"), value) {
            log::warn!("disk: cannot set vm.{knob}: {e}");
        }
    }
    log::info!("disk: mounted {dev} on {MOUNT_POINT}; {} and {} live on it", BINDS[0].1, BINDS[1].1);
    events::note(Note::DiskMounted, &dev);
    Ok(())
}

/// Ok if `path` is a folder itself, not a symlink to one (never followed).
fn real_folder(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path)?.file_type() {
        t if t.is_dir() => Ok(()),
        t if t.is_symlink() => Err(io::Error::other(format!("{} is a symbolic link (not followed)", path.display()))),
        _ => Err(io::Error::other(format!("{} is not a folder", path.display()))),
    }
}

/// Why the data filesystem on `dev` must not be used: its layout version,
/// read from a read-only mount that neither replays the journal nor
/// changes a byte (`norecovery`), is not one this init understands, or
/// cannot be read at all.
fn peek_layout(dev: &str) -> Result<u32, Error> {
    fs::create_dir_all(MOUNT_POINT).map_err(Error::MountPoint)?;
    mount(dev, MOUNT_POINT, "ext4", MountFlags::NOATIME | MountFlags::RDONLY, c"norecovery").map_err(|e| Error::Peek(dev.to_string(), e))?;
    let verdict = layout::check(Path::new(MOUNT_POINT)).map_err(|why| Error::Layout(dev.to_string(), why));
    if let Err(e) = Kernel.unmount(MOUNT_POINT, false) {
        log::warn!("disk: cannot unmount {MOUNT_POINT} after reading the layout version: {e}; detaching it");
        Kernel.unmount(MOUNT_POINT, true).map_err(Error::PeekUnmount)?;
    }
    verdict
}

/// Runs a helper with the console as its output, killing it after `limit`.
/// Returns its exit code (-1 when killed by a signal).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<i32, RunError> {
    let mut child = crate::supervise::signals::clean_mask(cmd)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .spawn()
        .map_err(RunError::Io)?;
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            return Ok(status.code().unwrap_or(-1));
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::TimedOut(limit));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts the data disk and everything mounted below its bind targets
/// (the engine's overlay and shm mounts), innermost first. A busy mount is
/// retried for a few seconds; then the data filesystem is remounted
/// read-only (so it is consistent on the disk) and detached.
fn unmount_all(sys: &impl Sys) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_else(|e| {
        log::warn!("disk: cannot read mountinfo: {e}");
        String::new()
    });
    let mut roots = vec![MOUNT_POINT];
    roots.extend(BINDS.iter().map(|(_, target)| *target));
    let mut targets = mountinfo::under(&text, &roots);
    if !targets.iter().any(|t| t == MOUNT_POINT) {
        targets.push(MOUNT_POINT.to_string());
    }
    let end = sys.now() + Duration::from_secs(5);
    for target in &targets {
        let (result, tries) = unmount_retrying(sys, target, end);
        match result {
            Ok(()) => log::debug!("disk: unmounted {target}"),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {} // not a mount point (any more)
            Err(e) => {
                log::warn!("disk: cannot unmount {target} after {tries} tries: {e}");
                if target == MOUNT_POINT {
                    match sys.remount_read_only(MOUNT_POINT) {
                        Ok(()) => log::warn!("disk: remounted {MOUNT_POINT} read-only: its data is safe on the disk"),
                        Err(e) => log::error!("disk: cannot remount {MOUNT_POINT} read-only: {e}; the journal will be replayed at next boot"),
                    }
                }
                if let Err(e) = sys.unmount(target, true) {
                    log::warn!("disk: cannot detach {target}: {e}");
                }
            }
        }
    }
    log::info!("disk: data disk unmounted ({} mounts)", targets.len());
}

/// "8.0 GiB", "512 MiB".
fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", crate::secs::gib(bytes))
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::fake::{Call, Fake};

    /// A bind source a container replaced with a symlink (to `/`, say) is
    /// refused, not followed into the tmpfs root.
    #[test]
    fn bind_sources_must_be_real_folders() {
        let dir = std::env::temp_dir().join(format!("skiff-binds-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("containers")).unwrap();
        std::os::unix::fs::symlink("/", dir.join("skiff")).unwrap();
        fs::write(dir.join("file"), "").unwrap();
        assert!(real_folder(&dir.join("containers")).is_ok());
        assert!(real_folder(&dir.join("skiff")).is_err());
        assert!(real_folder(&dir.join("file")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_busy_data_disk_is_remounted_read_only_then_detached() {
        let fake = Fake::new(&[]);
        fake.mounts_busy();
        DataDisk(()).unmount(&fake);
        let first = fake.find(|c| *c == Call::Unmount(MOUNT_POINT.into(), false)).expect("never unmounted");
        let ro = fake.find(|c| *c == Call::RemountReadOnly(MOUNT_POINT.into())).expect("not remounted read-only");
        let detach = fake.find(|c| *c == Call::Unmount(MOUNT_POINT.into(), true)).expect("not detached");
        assert!(first.0 < ro.0 && ro.0 < detach.0);
        assert!(ro.1 - first.1 >= Duration::from_secs(5), "gave up on the busy disk after {:?}", ro.1 - first.1);
    }

    #[test]
    fn the_hosts_disk_count_is_a_small_number() {
        assert_eq!(parse_count(b"0"), Some(0));
        assert_eq!(parse_count(b"2\n"), Some(2));
        for bad in [&b""[..], b"x", b"-1", b"99999", b"\xff"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn df_figures() {
        let d = df(1000, 300, 250, 4096);
        assert_eq!((d.size, d.used, d.available), (4_096_000, 2_867_200, 1_024_000));
        assert_eq!(df(10, 20, 0, 1).used, 0, "never negative");
    }

    #[test]
    fn helpers_give_their_exit_code_or_a_typed_failure() {
        assert!(matches!(run_bounded(Command::new("/bin/sh").args(["-c", "exit 3"]), Duration::from_secs(10)), Ok(3)));
        let t = Instant::now();
        let slow = run_bounded(Command::new("/bin/sh").args(["-c", "sleep 10"]), Duration::from_millis(100));
        assert!(matches!(slow, Err(RunError::TimedOut(_))), "{slow:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(run_bounded(&mut Command::new("/nonexistent/mke2fs"), Duration::from_secs(1)), Err(RunError::Io(_))));
    }

    #[test]
    fn waits_for_a_late_disk_but_not_forever() {
        let mut calls = 0;
        let (found, took) = wait_for(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            if calls < 4 { Vec::new() } else { vec!["vda"] }
        });
        assert_eq!((found, calls), (vec!["vda"], 4));
        assert!(took < Duration::from_secs(5));

        let t = Instant::now();
        let (found, took) = wait_for(Duration::from_millis(50), Duration::from_millis(5), Vec::<String>::new);
        assert!(found.is_empty());
        assert!(took >= Duration::from_millis(50) && t.elapsed() < Duration::from_secs(2), "gave up after {took:?}");

        let mut calls = 0;
        let (_, took) = wait_for(Duration::from_secs(5), Duration::from_secs(1), || {
            calls += 1;
            vec![1]
        });
        assert_eq!(calls, 1, "a disk present at once: no waiting");
        assert!(took < Duration::from_millis(500));
    }
}

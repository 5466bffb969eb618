//! What is on a disk, from its first and last MiB and windows sampled across
//! the rest, and what Skiff may do with it. Pure: byte buffers in, verdicts
//! out. The rule is conservative: only a filesystem labelled `skiff-data` is
//! used (and only when there is exactly one), only a disk that is zeros
//! everywhere sampled is formatted, anything else is left alone with a reason.

/// The label of Skiff's data filesystem (and the name of its GPT partition).
pub const LABEL: &str = "skiff-data";
/// Smaller disks are not worth formatting (images alone need more).
pub const MIN_SIZE: u64 = 64 << 20;
/// Bytes read at each end of a device for its signatures.
pub const END_BYTES: u64 = 1 << 20;
/// Windows sampled between the ends before a disk counts as blank: a wiped
/// partition table leaves the ends zero but the data behind it in place.
pub const SAMPLES: u64 = 128;
/// Bytes per sampled window: enough for the superblocks `probe` knows when a
/// window starts where a filesystem does (windows start on MiB boundaries).
pub const SAMPLE_BYTES: u64 = 128 << 10;

/// The content of a disk or partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// All zeros in the first and last MiB and in every sampled window.
    Blank,
    /// An ext2/3/4 filesystem: its kind and label.
    Ext { kind: &'static str, label: String },
    /// Something else that is recognised: what it is, in words.
    Known(&'static str),
    /// Non-zero bytes with no known signature.
    Unknown,
    /// Zeros at both ends, but something at byte `offset` (what the window
    /// there looked like): data behind a wiped partition table.
    Inside { offset: u64, what: String },
}

impl Content {
    /// True for an ext filesystem labelled [`LABEL`].
    pub fn is_skiff_data(&self) -> bool {
        matches!(self, Content::Ext { label, .. } if label == LABEL)
    }

    /// Words for the console: "an ext4 filesystem labelled \"other\"".
    pub fn describe(&self) -> String {
        match self {
            Content::Blank => "nothing (all zeros)".into(),
            Content::Ext { kind, label } if label.is_empty() => format!("an unlabelled {kind} filesystem"),
            Content::Ext { kind, label } => format!("an {kind} filesystem labelled {label:?}"),
            Content::Known(what) => (*what).into(),
            Content::Unknown => "data of an unknown kind (not all zeros)".into(),
            Content::Inside { offset, what } => {
                format!("zeros at both ends but {what} at byte {offset} ({} MiB in; a wiped partition table?)", offset >> 20)
            }
        }
    }
}

fn has(buf: &[u8], at: usize, magic: &[u8]) -> bool {
    buf.get(at..at + magic.len()) == Some(magic)
}

/// Identifies the content from the first MiB (`first`) and the last MiB
/// (`last`) of a device. Filesystems are checked before partition tables,
/// since several (FAT, NTFS, hybrid ISOs) also carry an MBR signature.
pub fn probe(first: &[u8], last: &[u8]) -> Content {
    if has(first, 0x8001, b"CD001") {
        return Content::Known("an ISO 9660 filesystem (a boot medium?)");
    }
    if let Some(ext) = ext(first) {
        return ext;
    }
    let known: &[(usize, &[u8], &str)] = &[
        (0, b"XFSB", "an XFS filesystem"),
        (0x10040, b"_BHRfS_M", "a Btrfs filesystem"),
        (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
        (3, b"NTFS    ", "an NTFS filesystem"),
        (3, b"EXFAT   ", "an exFAT filesystem"),
        (0x52, b"FAT32   ", "a FAT32 filesystem"),
        (0x36, b"FAT16   ", "a FAT16 filesystem"),
        (0x36, b"FAT12   ", "a FAT12 filesystem"),
        (0x400, b"\x10\x20\xf5\xf2", "an F2FS filesystem"),
        (0x1000, b"bcache", "a bcache device"),
    ];
    if let Some((_, _, what)) = known.iter().find(|(at, magic, _)| has(first, *at, magic)) {
        return Content::Known(what);
    }
    // LVM2's label may sit in any of the first four sectors.
    if (0..4).any(|s| has(first, s * 512, b"LABELONE") && has(first, s * 512 + 24, b"LVM2 001")) {
        return Content::Known("an LVM2 physical volume");
    }
    if [4096, 8192, 16384, 65536].iter().any(|page| has(first, page - 10, b"SWAPSPACE2") || has(first, page - 10, b"SWAP-SPACE")) {
        return Content::Known("a swap area");
    }
    if [512, 4096].iter().any(|&at| has(first, at, b"EFI PART")) {
        return Content::Known("a GPT partition table");
    }
    if has(first, 510, &[0x55, 0xAA]) {
        return Content::Known("an MBR partition table or boot sector");
    }
    let last_zero = last.iter().all(|&b| b == 0);
    if first.iter().all(|&b| b == 0) {
        if last_zero {
            return Content::Blank;
        }
        if [512, 4096].iter().any(|&s| last.len() >= s && has(last, last.len() - s, b"EFI PART")) {
            return Content::Known("a backup GPT header (the primary one is gone)");
        }
        return Content::Known("data at the end of the disk only (RAID metadata?)");
    }
    Content::Unknown
}

/// Where to sample a device of `size` bytes between its first and last
/// [`END_BYTES`]: `count` windows of `window` bytes spread evenly, each
/// starting on a MiB boundary (where partitions, so filesystems, start).
/// Windows that would overlap the ends or each other are left out, so a
/// small device yields fewer (and none when the ends cover it).
pub fn sample_offsets(size: u64, count: u64, window: u64) -> Vec<u64> {
    let (lo, hi) = (END_BYTES, size.saturating_sub(END_BYTES));
    if count == 0 || hi < lo + window {
        return Vec::new();
    }
    let span = hi - window - lo;
    let mut offsets: Vec<u64> = Vec::new();
    for i in 0..count {
        let spread = if count == 1 { 0 } else { (u128::from(span) * u128::from(i) / u128::from(count - 1)) as u64 };
        let at = (lo + spread) / END_BYTES * END_BYTES;
        if at >= lo && at + window <= hi && offsets.last().is_none_or(|&prev| at >= prev + window) {
            offsets.push(at);
        }
    }
    offsets
}

/// The content of a device from its ends (`probe`'s verdict) and the
/// windows sampled between them (offset, bytes): blank only if every window
/// is zeros too. The first window with anything in it is named, with a
/// signature if it starts one (a filesystem whose partition table is gone).
pub fn sampled(ends: Content, windows: &[(u64, &[u8])]) -> Content {
    if ends != Content::Blank {
        return ends;
    }
    let Some((offset, bytes)) = windows.iter().find(|(_, b)| b.iter().any(|&x| x != 0)) else {
        return Content::Blank;
    };
    let what = match probe(bytes, &[]) {
        Content::Unknown | Content::Blank | Content::Inside { .. } => "data".to_string(),
        found => found.describe(),
    };
    Content::Inside { offset: *offset, what }
}

/// An ext2/3/4 superblock at byte 1024: magic 0xEF53 at 0x438, label at 0x478.
fn ext(first: &[u8]) -> Option<Content> {
    let sb = first.get(1024..1024 + 256)?;
    if sb[0x38..0x3A] != [0x53, 0xEF] || sb[0x18] > 6 {
        return None; // wrong magic, or a nonsense block size (2^(10+n))
    }
    let compat = u32::from_le_bytes(sb[0x5C..0x60].try_into().ok()?);
    let incompat = u32::from_le_bytes(sb[0x60..0x64].try_into().ok()?);
    const HAS_JOURNAL: u32 = 0x4;
    const EXTENTS: u32 = 0x40;
    const FLEX_BG: u32 = 0x200;
    let kind = if incompat & (EXTENTS | FLEX_BG) != 0 {
        "ext4"
    } else if compat & HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    let raw = &sb[0x78..0x88];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(Content::Ext { kind, label: String::from_utf8_lossy(&raw[..end]).into_owned() })
}

/// A whole disk as found in /sys/block, with what its probes said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size: u64,
    pub read_only: bool,
    pub content: Content,
    pub partitions: Vec<Partition>,
}

/// One partition of a disk: kernel name, GPT name (`PARTNAME`), content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub label: Option<String>,
    pub content: Content,
}

/// What to do with one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Check and mount this device (the disk or one of its partitions).
    Mount(String),
    /// Write a GPT with one partition, then format that partition.
    PartitionAndFormat,
    /// Format this existing, still blank partition: a partitioning by Skiff
    /// that was cut short (power lost before mkfs).
    FormatPartition(String),
    /// Leave the disk alone, for this reason.
    Skip(String),
}

/// Decides for one disk. A `skiff-data` filesystem is used wherever it is;
/// only a disk that is blank everywhere (no partitions) is formatted.
pub fn decide(disk: &Disk) -> Decision {
    if let Some(p) = disk.partitions.iter().find(|p| p.content.is_skiff_data()) {
        return Decision::Mount(p.name.clone());
    }
    if disk.content.is_skiff_data() {
        return Decision::Mount(disk.name.clone());
    }
    if let [only] = disk.partitions.as_slice() {
        if only.label.as_deref() == Some(LABEL) && only.content == Content::Blank && !disk.read_only {
            return Decision::FormatPartition(only.name.clone());
        }
    }
    if disk.content != Content::Blank || !disk.partitions.is_empty() {
        let parts = match disk.partitions.len() {
            0 => String::new(),
            1 => " and 1 partition".into(),
            n => format!(" and {n} partitions"),
        };
        return Decision::Skip(format!("it holds {}{parts}", disk.content.describe()));
    }
    if disk.read_only {
        return Decision::Skip("it is blank but read-only".into());
    }
    if disk.size < MIN_SIZE {
        return Decision::Skip(format!("it is blank but too small ({} MiB; at least {} MiB)", disk.size >> 20, MIN_SIZE >> 20));
    }
    Decision::PartitionAndFormat
}

/// Which disk setup uses, from every disk's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The disk at this index.
    Use(usize),
    /// More than one `skiff-data` filesystem (these devices): none is
    /// guessed, none is written to, the engine runs in RAM.
    Ambiguous(Vec<String>),
    /// No usable disk.
    Nothing,
}

/// Every device holding a `skiff-data` filesystem: the disk itself or its partitions.
pub fn data_filesystems(disk: &Disk) -> Vec<String> {
    let whole = disk.content.is_skiff_data().then(|| disk.name.clone());
    whole.into_iter().chain(disk.partitions.iter().filter(|p| p.content.is_skiff_data()).map(|p| p.name.clone())).collect()
}

/// Picks the disk to use: the one existing `skiff-data` filesystem (on any
/// disk), else the first disk that may be formatted. Two or more such
/// filesystems are ambiguous: which one holds the user's data is not ours
/// to guess, and formatting a third disk would hide the problem.
pub fn choose(disks: &[Disk], decisions: &[Decision]) -> Choice {
    let found: Vec<String> = disks.iter().flat_map(data_filesystems).collect();
    if found.len() > 1 {
        return Choice::Ambiguous(found);
    }
    decisions
        .iter()
        .position(|d| matches!(d, Decision::Mount(_)))
        .or_else(|| decisions.iter().position(|d| matches!(d, Decision::FormatPartition(_))))
        .or_else(|| decisions.iter().position(|d| *d == Decision::PartitionAndFormat))
        .map_or(Choice::Nothing, Choice::Use)
}

/// Disk names never considered: loop devices, RAM disks, CD/DVD drives
/// (where the ISO usually sits), zram, floppies, device-mapper and md arrays.
pub fn ignored_name(name: &str) -> bool {
    ["loop", "ram", "sr", "zram", "fd", "dm-", "md", "nbd"].iter().any(|p| name.starts_with(p))
}

/// An e2fsck exit code that keeps the filesystem from being mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsck {
    /// Errors left uncorrected (bit 4): run e2fsck by hand.
    Uncorrected(i32),
    /// e2fsck could not do its job (bit 8).
    Operational(i32),
    /// The check was cancelled (bit 32).
    Cancelled(i32),
    /// Any other code (-1: killed at its time limit).
    Other(i32),
}

impl std::fmt::Display for Fsck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fsck::Uncorrected(c) => write!(f, "e2fsck exit {c}: errors left uncorrected; run e2fsck by hand"),
            Fsck::Operational(c) => write!(f, "e2fsck exit {c}: operational error"),
            Fsck::Cancelled(c) => write!(f, "e2fsck exit {c}: check cancelled"),
            Fsck::Other(c) => write!(f, "e2fsck exit {c}"),
        }
    }
}

/// What e2fsck's exit code means for the mount: `Ok(note)` to mount,
/// `Err(why)` to leave the filesystem alone. Codes are bit flags.
pub fn fsck_verdict(code: i32) -> Result<&'static str, Fsck> {
    match code {
        0 => Ok("clean"),
        1 => Ok("errors corrected"),
        2 | 3 => Ok("errors corrected (e2fsck asks for a reboot, not needed: it was not mounted)"),
        c if c < 0 => Err(Fsck::Other(c)),
        c if c & 4 != 0 => Err(Fsck::Uncorrected(c)),
        c if c & 8 != 0 => Err(Fsck::Operational(c)),
        c if c & 32 != 0 => Err(Fsck::Cancelled(c)),
        c => Err(Fsck::Other(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn zeros() -> Vec<u8> {
        vec![0; MIB]
    }

    /// A minimal ext4 superblock: magic, extents feature, label.
    fn ext4(label: &str) -> Vec<u8> {
        let mut b = zeros();
        b[0x438..0x43A].copy_from_slice(&[0x53, 0xEF]);
        b[0x460] = 0x40; // incompat: extents
        b[0x478..0x478 + label.len()].copy_from_slice(label.as_bytes());
        b
    }

    fn with(at: usize, magic: &[u8]) -> Vec<u8> {
        let mut b = zeros();
        b[at..at + magic.len()].copy_from_slice(magic);
        b
    }

    fn disk(content: Content, partitions: Vec<Partition>) -> Disk {
        Disk { name: "vdb".into(), size: 8 << 30, read_only: false, content, partitions }
    }

    fn part(name: &str, label: Option<&str>, content: Content) -> Partition {
        Partition { name: name.into(), label: label.map(Into::into), content }
    }

    #[test]
    fn blank_needs_both_ends_zero() {
        assert_eq!(probe(&zeros(), &zeros()), Content::Blank);
        let mut last = zeros();
        last[MIB - 1] = 1;
        assert_ne!(probe(&zeros(), &last), Content::Blank);
        let mut first = zeros();
        first[700_000] = 1;
        assert_eq!(probe(&first, &zeros()), Content::Unknown);
    }

    #[test]
    fn ext_label_and_kind() {
        assert_eq!(probe(&ext4(LABEL), &zeros()), Content::Ext { kind: "ext4", label: LABEL.into() });
        assert!(probe(&ext4(LABEL), &zeros()).is_skiff_data());
        assert!(!probe(&ext4("other"), &zeros()).is_skiff_data());
        assert!(!probe(&ext4("skiff-data2"), &zeros()).is_skiff_data());
        let mut ext3 = ext4("");
        ext3[0x460] = 0;
        ext3[0x45C] = 0x4;
        assert_eq!(probe(&ext3, &zeros()).describe(), "an unlabelled ext3 filesystem");
        let mut bad = ext4(LABEL);
        bad[0x418] = 40; // block size 2^50: not a superblock
        assert_eq!(probe(&bad, &zeros()), Content::Unknown);
    }

    #[test]
    fn recognises_foreign_signatures() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (with(510, &[0x55, 0xAA]), "MBR"),
            (with(512, b"EFI PART"), "GPT"),
            ({ let mut b = with(512, b"LABELONE"); b[536..544].copy_from_slice(b"LVM2 001"); b }, "LVM2"),
            (with(4086, b"SWAPSPACE2"), "swap"),
            (with(0x8001, b"CD001"), "ISO 9660"),
            (with(0, b"XFSB"), "XFS"),
            (with(0x10040, b"_BHRfS_M"), "Btrfs"),
            (with(0x52, b"FAT32   "), "FAT32"),
            (with(3, b"NTFS    "), "NTFS"),
        ];
        for (buf, word) in cases {
            let c = probe(&buf, &zeros());
            assert!(c.describe().contains(word), "{word}: got {c:?}");
        }
        let mut backup_only = zeros();
        backup_only[MIB - 512..MIB - 504].copy_from_slice(b"EFI PART");
        assert!(probe(&zeros(), &backup_only).describe().contains("backup GPT"));
    }

    #[test]
    fn hybrid_iso_is_an_iso_not_a_partition_table() {
        let mut iso = with(0x8001, b"CD001");
        iso[510..512].copy_from_slice(&[0x55, 0xAA]);
        iso[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(probe(&iso, &zeros()), Content::Known("an ISO 9660 filesystem (a boot medium?)"));
        assert!(matches!(decide(&disk(probe(&iso, &zeros()), vec![])), Decision::Skip(_)));
    }

    #[test]
    fn decisions_for_each_kind_of_disk() {
        assert_eq!(decide(&disk(Content::Blank, vec![])), Decision::PartitionAndFormat);
        assert_eq!(decide(&disk(probe(&ext4(LABEL), &zeros()), vec![])), Decision::Mount("vdb".into()));
        let ours = part("vdb1", Some(LABEL), probe(&ext4(LABEL), &zeros()));
        assert_eq!(decide(&disk(Content::Known("a GPT partition table"), vec![ours])), Decision::Mount("vdb1".into()));

        let foreign = decide(&disk(probe(&ext4("other"), &zeros()), vec![]));
        assert_eq!(foreign, Decision::Skip("it holds an ext4 filesystem labelled \"other\"".into()));
        let gpt = disk(Content::Known("a GPT partition table"), vec![part("vdb1", Some("home"), Content::Blank)]);
        assert_eq!(decide(&gpt), Decision::Skip("it holds a GPT partition table and 1 partition".into()));
        for buf in [with(512, b"LABELONE"), with(4086, b"SWAPSPACE2"), with(0x8001, b"CD001")] {
            let mut b = buf;
            b[536..544].copy_from_slice(b"LVM2 001");
            assert!(matches!(decide(&disk(probe(&b, &zeros()), vec![])), Decision::Skip(_)));
        }
    }

    #[test]
    fn interrupted_setup_is_resumed_only_for_our_blank_partition() {
        let gpt = Content::Known("a GPT partition table");
        let ours = disk(gpt.clone(), vec![part("vdb1", Some(LABEL), Content::Blank)]);
        assert_eq!(decide(&ours), Decision::FormatPartition("vdb1".into()));
        let used = disk(gpt.clone(), vec![part("vdb1", Some(LABEL), Content::Unknown)]);
        assert!(matches!(decide(&used), Decision::Skip(_)), "data in it: leave it");
        let two = disk(gpt, vec![part("vdb1", Some(LABEL), Content::Blank), part("vdb2", None, Content::Blank)]);
        assert!(matches!(decide(&two), Decision::Skip(_)));
    }

    #[test]
    fn blank_but_small_or_read_only_is_skipped() {
        let mut small = disk(Content::Blank, vec![]);
        small.size = 32 << 20;
        assert!(matches!(decide(&small), Decision::Skip(why) if why.contains("too small")));
        let mut ro = disk(Content::Blank, vec![]);
        ro.read_only = true;
        assert!(matches!(decide(&ro), Decision::Skip(why) if why.contains("read-only")));
    }

    #[test]
    fn existing_data_disk_wins_over_formatting_another() {
        let blank = disk(Content::Blank, vec![]);
        let foreign = disk(Content::Unknown, vec![]);
        let ours = Disk { name: "vdc".into(), ..disk(Content::Known("a GPT partition table"), vec![part("vdc1", Some(LABEL), probe(&ext4(LABEL), &zeros()))]) };
        let disks = [blank.clone(), foreign.clone(), ours];
        let decisions: Vec<Decision> = disks.iter().map(decide).collect();
        assert_eq!(choose(&disks, &decisions), Choice::Use(2));
        let disks = [foreign.clone(), blank.clone(), blank];
        let decisions: Vec<Decision> = disks.iter().map(decide).collect();
        assert_eq!(choose(&disks, &decisions), Choice::Use(1));
        assert_eq!(choose(std::slice::from_ref(&foreign), &[decide(&foreign)]), Choice::Nothing);
        assert_eq!(choose(&[], &[]), Choice::Nothing);
    }

    #[test]
    fn two_data_filesystems_are_never_guessed() {
        let whole = Disk { name: "vda".into(), ..disk(probe(&ext4(LABEL), &zeros()), vec![]) };
        let parted = Disk {
            name: "vdb".into(),
            ..disk(Content::Known("a GPT partition table"), vec![part("vdb1", Some(LABEL), probe(&ext4(LABEL), &zeros()))])
        };
        let blank = Disk { name: "vdc".into(), ..disk(Content::Blank, vec![]) };
        let disks = [whole, parted, blank];
        let decisions: Vec<Decision> = disks.iter().map(decide).collect();
        assert_eq!(choose(&disks, &decisions), Choice::Ambiguous(vec!["vda".into(), "vdb1".into()]));
        // Two on one disk count too.
        let both = disk(
            Content::Known("a GPT partition table"),
            vec![part("vdb1", Some(LABEL), probe(&ext4(LABEL), &zeros())), part("vdb2", None, probe(&ext4(LABEL), &zeros()))],
        );
        assert_eq!(choose(std::slice::from_ref(&both), &[decide(&both)]), Choice::Ambiguous(vec!["vdb1".into(), "vdb2".into()]));
    }

    #[test]
    fn sample_windows_span_the_disk_between_its_ends() {
        let size = 8u64 << 30;
        let at = sample_offsets(size, SAMPLES, SAMPLE_BYTES);
        assert_eq!(at.len() as u64, SAMPLES);
        assert_eq!(at[0], END_BYTES, "the first window is where a first partition starts");
        let last = *at.last().unwrap();
        assert!(last + SAMPLE_BYTES <= size - END_BYTES && last > size - size / SAMPLES - END_BYTES, "reaches the end: {last}");
        assert!(at.iter().all(|o| o % END_BYTES == 0));
        assert!(at.windows(2).all(|w| w[1] >= w[0] + SAMPLE_BYTES), "ordered, no overlap");
        let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let (min, max) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(max - min <= END_BYTES, "evenly spread: gaps {min}..{max}");
        // Small devices: fewer windows, never overlapping the ends.
        let small = sample_offsets(10 << 20, SAMPLES, SAMPLE_BYTES);
        assert_eq!(small, (1..9).map(|m| m << 20).collect::<Vec<u64>>());
        assert!(sample_offsets(2 << 20, SAMPLES, SAMPLE_BYTES).is_empty());
        assert!(sample_offsets(0, SAMPLES, SAMPLE_BYTES).is_empty());
        assert!(sample_offsets(u64::MAX, SAMPLES, SAMPLE_BYTES).len() as u64 == SAMPLES, "no overflow");
    }

    #[test]
    fn blank_only_if_every_sampled_window_is_zeros() {
        let z = vec![0u8; SAMPLE_BYTES as usize];
        let mut data = z.clone();
        data[70_000] = 7;
        let fs = ext4("home")[..SAMPLE_BYTES as usize].to_vec();
        assert_eq!(sampled(Content::Blank, &[(1 << 20, &z), (2 << 20, &z)]), Content::Blank);
        assert_eq!(sampled(Content::Blank, &[]), Content::Blank);
        let found = sampled(Content::Blank, &[(1 << 20, &z), (512 << 20, &data), (1 << 30, &fs)]);
        assert_eq!(found, Content::Inside { offset: 512 << 20, what: "data".into() });
        assert!(found.describe().contains("512 MiB in"), "{}", found.describe());
        let found = sampled(Content::Blank, &[(1 << 20, &fs)]);
        assert!(found.describe().contains("an ext4 filesystem labelled \"home\" at byte 1048576"), "{}", found.describe());
        // Not blank at the ends: the windows do not matter (and are not needed).
        assert_eq!(sampled(Content::Unknown, &[(1 << 20, &z)]), Content::Unknown);
        // Something inside is never formatted.
        assert!(matches!(decide(&disk(found, vec![])), Decision::Skip(_)));
        let part_inside = disk(Content::Known("a GPT partition table"), vec![part("vdb1", Some(LABEL), Content::Inside { offset: 9, what: "data".into() })]);
        assert!(matches!(decide(&part_inside), Decision::Skip(_)), "our partition with data inside is not resumed");
    }

    #[test]
    fn ignores_virtual_and_optical_devices() {
        for n in ["loop0", "ram0", "sr0", "zram0", "dm-0", "md127"] {
            assert!(ignored_name(n), "{n}");
        }
        for n in ["vda", "sda", "nvme0n1", "xvda", "hda"] {
            assert!(!ignored_name(n), "{n}");
        }
    }

    #[test]
    fn fsck_codes() {
        assert!(fsck_verdict(0).is_ok());
        assert!(fsck_verdict(1).is_ok());
        assert!(fsck_verdict(2).is_ok());
        assert_eq!(fsck_verdict(4), Err(Fsck::Uncorrected(4)));
        assert_eq!(fsck_verdict(5), Err(Fsck::Uncorrected(5)));
        assert_eq!(fsck_verdict(8), Err(Fsck::Operational(8)));
        assert_eq!(fsck_verdict(12), Err(Fsck::Uncorrected(12)));
        assert_eq!(fsck_verdict(32), Err(Fsck::Cancelled(32)));
        assert_eq!(fsck_verdict(16), Err(Fsck::Other(16)));
        assert_eq!(fsck_verdict(-1), Err(Fsck::Other(-1)), "killed by the timeout");
    }
}

//! What is on a disk, from its first and last MiB, and what Skiff may do
//! with it. Pure: byte buffers in, verdicts out. The rule is conservative:
//! only a filesystem labelled `skiff-data` is used, only an all-zero disk is
//! formatted, anything else is left alone with a reason.

/// The label of Skiff's data filesystem (and the name of its GPT partition).
pub const LABEL: &str = "skiff-data";
/// Smaller disks are not worth formatting (images alone need more).
pub const MIN_SIZE: u64 = 64 << 20;

/// The content of a disk or partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// All zeros in the first and last MiB.
    Blank,
    /// An ext2/3/4 filesystem: its kind and label.
    Ext { kind: &'static str, label: String },
    /// Something else that is recognised: what it is, in words.
    Known(&'static str),
    /// Non-zero bytes with no known signature.
    Unknown,
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

/// Picks the disk to use: an existing `skiff-data` filesystem first (on any
/// disk), else the first disk that may be formatted. Returns its index.
pub fn choose(decisions: &[Decision]) -> Option<usize> {
    decisions
        .iter()
        .position(|d| matches!(d, Decision::Mount(_)))
        .or_else(|| decisions.iter().position(|d| matches!(d, Decision::FormatPartition(_))))
        .or_else(|| decisions.iter().position(|d| *d == Decision::PartitionAndFormat))
}

/// Disk names never considered: loop devices, RAM disks, CD/DVD drives
/// (where the ISO usually sits), zram, floppies, device-mapper and md arrays.
pub fn ignored_name(name: &str) -> bool {
    ["loop", "ram", "sr", "zram", "fd", "dm-", "md", "nbd"].iter().any(|p| name.starts_with(p))
}

/// What e2fsck's exit code means for the mount: `Ok(note)` to mount,
/// `Err(why)` to leave the filesystem alone. Codes are bit flags.
pub fn fsck_verdict(code: i32) -> Result<&'static str, String> {
    match code {
        0 => Ok("clean"),
        1 => Ok("errors corrected"),
        2 | 3 => Ok("errors corrected (e2fsck asks for a reboot, not needed: it was not mounted)"),
        c if c & 4 != 0 => Err(format!("e2fsck exit {c}: errors left uncorrected; run e2fsck by hand")),
        c if c & 8 != 0 => Err(format!("e2fsck exit {c}: operational error")),
        c if c & 32 != 0 => Err(format!("e2fsck exit {c}: check cancelled")),
        c => Err(format!("e2fsck exit {c}")),
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
        let skip = Decision::Skip("x".into());
        let mount = Decision::Mount("vdc1".into());
        assert_eq!(choose(&[Decision::PartitionAndFormat, skip.clone(), mount]), Some(2));
        assert_eq!(choose(&[skip.clone(), Decision::PartitionAndFormat, Decision::PartitionAndFormat]), Some(1));
        assert_eq!(choose(&[skip]), None);
        assert_eq!(choose(&[]), None);
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
        assert!(fsck_verdict(4).is_err());
        assert!(fsck_verdict(5).is_err());
        assert!(fsck_verdict(8).is_err());
        assert!(fsck_verdict(12).is_err());
        assert!(fsck_verdict(-1).is_err(), "killed by the timeout");
    }
}

//! A GPT writer for one partition spanning the disk: protective MBR, primary
//! header and entry array at the start, their backup copies at the end.
//! Pure: takes the geometry and the GUIDs, returns the bytes to write.

/// "Linux filesystem data", as GPT stores it (first three fields little-endian).
pub const LINUX_FS_TYPE: [u8; 16] = guid_bytes(0x0FC6_3DAF, 0x8483, 0x4772, [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
const HEADER_SIZE: usize = 92;
/// Partitions start and end on MiB boundaries (what every tool does).
const ALIGN: u64 = 1 << 20;

/// The on-disk byte order of a GUID given in its textual fields.
pub const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let (a, b, c) = (a.to_le_bytes(), b.to_le_bytes(), c.to_le_bytes());
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// Turns 16 random bytes into a version 4 (random) GUID.
pub fn random_guid(mut bytes: [u8; 16]) -> [u8; 16] {
    bytes[7] = (bytes[7] & 0x0F) | 0x40; // version, in the little-endian third field
    bytes[8] = (bytes[8] & 0x3F) | 0x80; // variant
    bytes
}

/// What to write, and where the partition lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Written at byte 0: protective MBR, primary header, entry array.
    pub primary: Vec<u8>,
    /// Written at `backup_offset`: backup entry array, then backup header (the last sector).
    pub backup: Vec<u8>,
    pub backup_offset: u64,
    /// The partition's first and last sector (inclusive).
    pub first_lba: u64,
    pub last_lba: u64,
}

/// CRC-32 (IEEE 802.3, reflected, as GPT and zlib use), bitwise: the
/// tables it would save are not worth it for a few KiB written once.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Lays out a GPT with one partition named `name` on a disk of `sectors`
/// sectors of `sector_size` bytes. `None` if the disk is too small to hold
/// the tables and a MiB-aligned partition of at least one MiB.
pub fn layout(sector_size: u64, sectors: u64, disk_guid: [u8; 16], part_guid: [u8; 16], name: &str) -> Option<Layout> {
    if !(512..=65536).contains(&sector_size) || !sector_size.is_power_of_two() {
        return None;
    }
    let ss = sector_size as usize;
    let entry_sectors = (ENTRIES * ENTRY_SIZE).div_ceil(ss) as u64;
    let last = sectors.checked_sub(1)?;
    let first_usable = 2 + entry_sectors;
    let last_usable = last.checked_sub(1 + entry_sectors)?;
    let per_align = (ALIGN / sector_size).max(1);
    let first_lba = first_usable.div_ceil(per_align) * per_align;
    let last_lba = ((last_usable + 1) / per_align * per_align).checked_sub(1)?;
    if last_lba < first_lba + per_align - 1 {
        return None;
    }

    let mut entries = vec![0u8; ENTRIES * ENTRY_SIZE];
    entries[0..16].copy_from_slice(&LINUX_FS_TYPE);
    entries[16..32].copy_from_slice(&part_guid);
    entries[32..40].copy_from_slice(&first_lba.to_le_bytes());
    entries[40..48].copy_from_slice(&last_lba.to_le_bytes());
    for (i, unit) in name.encode_utf16().take(36).enumerate() {
        entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let entries_crc = crc32(&entries);
    let header = |my_lba: u64, alt_lba: u64, entries_lba: u64| {
        let mut h = vec![0u8; ss];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alt_lba.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let entries_padded = {
        let mut e = entries;
        e.resize(entry_sectors as usize * ss, 0);
        e
    };

    let mut primary = protective_mbr(sectors, ss);
    primary.extend_from_slice(&header(1, last, 2));
    primary.extend_from_slice(&entries_padded);
    let backup_entries_lba = last - entry_sectors;
    let mut backup = entries_padded;
    backup.extend_from_slice(&header(last, 1, backup_entries_lba));
    Some(Layout { primary, backup, backup_offset: backup_entries_lba * sector_size, first_lba, last_lba })
}

/// Sector 0: one partition of type 0xEE covering the disk, so MBR-only
/// tools see the disk as in use.
fn protective_mbr(sectors: u64, ss: usize) -> Vec<u8> {
    let mut mbr = vec![0u8; ss];
    let e = &mut mbr[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Checks a header's own CRC and its entries' CRC, as firmware does.
    fn check_header(h: &[u8], entries: &[u8]) {
        assert_eq!(&h[0..8], b"EFI PART");
        let mut copy = h[..HEADER_SIZE].to_vec();
        copy[16..20].fill(0);
        assert_eq!(crc32(&copy), u32_at(h, 16), "header CRC");
        assert_eq!(crc32(&entries[..ENTRIES * ENTRY_SIZE]), u32_at(h, 88), "entries CRC");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn linux_type_guid_is_encoded_mixed_endian() {
        assert_eq!(&LINUX_FS_TYPE[..4], &[0xAF, 0x3D, 0xC6, 0x0F]);
        assert_eq!(&LINUX_FS_TYPE[8..], &[0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);
    }

    #[test]
    fn one_aligned_partition_on_a_512_byte_sector_disk() {
        let sectors = 2 * 1024 * 1024 * 2; // 2 GiB
        let l = layout(512, sectors, [1; 16], random_guid([2; 16]), "skiff-data").unwrap();
        assert_eq!(l.primary.len(), 34 * 512);
        assert_eq!(l.backup.len(), 33 * 512);
        assert_eq!(l.backup_offset + l.backup.len() as u64, sectors * 512, "backup ends at the disk's end");
        assert_eq!(l.first_lba, 2048, "starts at 1 MiB");
        assert_eq!((l.last_lba + 1) % 2048, 0, "ends on a MiB boundary");
        assert!(l.last_lba <= sectors - 34, "inside the usable range");

        let mbr = &l.primary[..512];
        assert_eq!(mbr[446 + 4], 0xEE);
        assert_eq!(&mbr[510..], &[0x55, 0xAA]);
        assert_eq!(u32_at(mbr, 446 + 12) as u64, sectors - 1);

        let (hdr, entries) = (&l.primary[512..1024], &l.primary[1024..]);
        check_header(hdr, entries);
        assert_eq!(u64_at(hdr, 24), 1);
        assert_eq!(u64_at(hdr, 32), sectors - 1);
        assert_eq!(u64_at(hdr, 72), 2);
        assert_eq!(&entries[0..16], &LINUX_FS_TYPE);
        assert_eq!(u64_at(entries, 32), l.first_lba);
        assert_eq!(u64_at(entries, 40), l.last_lba);
        let name: Vec<u16> = entries[56..76].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(String::from_utf16(&name).unwrap(), "skiff-data");
        assert!(entries[128..].iter().all(|&b| b == 0), "only one entry");

        let (bentries, bhdr) = l.backup.split_at(32 * 512);
        check_header(bhdr, bentries);
        assert_eq!(bentries, entries, "backup entries mirror the primary ones");
        assert_eq!(u64_at(bhdr, 24), sectors - 1);
        assert_eq!(u64_at(bhdr, 32), 1);
        assert_eq!(u64_at(bhdr, 72), sectors - 33);
        assert_eq!(&hdr[56..72], &bhdr[56..72], "same disk GUID");
    }

    #[test]
    fn four_k_sectors_use_fewer_entry_sectors() {
        let sectors = 1024 * 256; // 1 GiB of 4 KiB sectors
        let l = layout(4096, sectors, [1; 16], [2; 16], "x").unwrap();
        assert_eq!(l.primary.len(), 6 * 4096, "MBR, header, 4 entry sectors");
        assert_eq!(l.first_lba, 256);
        assert_eq!(l.backup_offset, (sectors - 5) * 4096);
        check_header(&l.primary[4096..8192], &l.primary[8192..]);
    }

    #[test]
    fn refuses_tiny_disks_and_odd_sector_sizes() {
        assert!(layout(512, 2048, [0; 16], [0; 16], "x").is_none(), "1 MiB disk");
        assert!(layout(512, 0, [0; 16], [0; 16], "x").is_none());
        assert!(layout(520, 1 << 22, [0; 16], [0; 16], "x").is_none());
        assert!(layout(512, 3 * 2048 + 34, [0; 16], [0; 16], "x").is_some(), "3 MiB is enough");
    }

    #[test]
    fn random_guid_sets_version_and_variant() {
        let g = random_guid([0xFF; 16]);
        assert_eq!(g[7] >> 4, 4);
        assert_eq!(g[8] >> 6, 0b10);
    }

    /// util-linux's own GPT reader (which checks both CRCs) accepts the table.
    #[test]
    fn partx_reads_the_table() {
        let path = std::env::temp_dir().join(format!("skiff-gpt-{}.img", std::process::id()));
        let sectors = 64 * 2048;
        let l = layout(512, sectors, [1; 16], random_guid([2; 16]), "skiff-data").unwrap();
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(sectors * 512).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&l.primary, 0).unwrap();
        f.write_all_at(&l.backup, l.backup_offset).unwrap();
        let out = std::process::Command::new("partx")
            .args(["--raw", "--noheadings", "--output", "START,END,NAME,TYPE"])
            .arg(&path)
            .output()
            .expect("partx (util-linux) is needed for this test");
        std::fs::remove_file(&path).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "partx failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.trim(), format!("{} {} skiff-data 0fc63daf-8483-4772-8e79-3d69d8477de4", l.first_lba, l.last_lba));
    }
}

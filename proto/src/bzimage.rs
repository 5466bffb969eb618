//! The plain ELF kernel inside the ISO's bzImage, for QEMU's PVH entry.
//!
//! The ISO carries an xz-compressed bzImage (small), whose decompressor runs
//! inside the guest before the kernel starts: seconds under TCG. A kernel
//! built with `CONFIG_PVH` has an ELF note QEMU understands, so QEMU can load
//! the plain `vmlinux` and jump to it. The host CLI (once per ISO copy) and
//! the bench's floor boot take it out with [`pvh_vmlinux`]; a kernel without
//! the note (an older ISO) boots as a bzImage.

use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

/// Why a bzImage's payload could not be found.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// No "HdrS" boot-protocol header.
    NotBzImage,
    /// Boot protocol older than 2.08 (no payload fields).
    OldProtocol(u16),
    /// The payload fields point outside the file.
    PayloadOutside,
    /// The payload is not an xz stream (another `CONFIG_KERNEL_*`).
    NotXz,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NotBzImage => write!(f, "not a bzImage (no HdrS header)"),
            Invalid::OldProtocol(v) => write!(f, "boot protocol {}.{:02} has no payload fields", v >> 8, v & 0xff),
            Invalid::PayloadOutside => write!(f, "the payload fields point outside the file"),
            Invalid::NotXz => write!(f, "the payload is not xz-compressed"),
        }
    }
}

/// The first bytes of an xz stream.
pub const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The compressed kernel inside a bzImage (Linux boot protocol ≥ 2.08:
/// `payload_offset`/`payload_length`, counted from the protected-mode code
/// that follows the setup sectors).
pub fn payload(bz: &[u8]) -> Result<&[u8], Invalid> {
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err(Invalid::NotBzImage);
    }
    let version = u16_at(bz, 0x206).ok_or(Invalid::NotBzImage)?;
    if version < 0x208 {
        return Err(Invalid::OldProtocol(version));
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let (offset, length) = (u32_at(bz, 0x248), u32_at(bz, 0x24c));
    let (Some(offset), Some(length)) = (offset, length) else { return Err(Invalid::PayloadOutside) };
    let start = (setup_sects + 1) * 512 + offset as usize;
    let data = bz.get(start..start.checked_add(length as usize).ok_or(Invalid::PayloadOutside)?).ok_or(Invalid::PayloadOutside)?;
    if !data.starts_with(&XZ_MAGIC) {
        return Err(Invalid::NotXz);
    }
    Ok(data)
}

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note QEMU looks for to boot an ELF kernel
/// through PVH.
const PHYS32_ENTRY: u32 = 18;

/// True if `elf` (a 64-bit little-endian ELF) has the PVH entry note in a
/// PT_NOTE segment. Anything malformed is simply "no".
pub fn has_pvh_note(elf: &[u8]) -> bool {
    const PT_NOTE: u32 = 4;
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(elf, 0x20), u16_at(elf, 0x36), u16_at(elf, 0x38)) else { return false };
    (0..usize::from(phnum)).any(|i| {
        let Some(ph) = (phoff as usize).checked_add(i * usize::from(phentsize)) else { return false };
        let (Some(kind), Some(off), Some(size)) = (u32_at(elf, ph), ph.checked_add(8).and_then(|a| u64_at(elf, a)), ph.checked_add(0x20).and_then(|a| u64_at(elf, a))) else { return false };
        let notes = usize::try_from(off).ok().zip(usize::try_from(size).ok()).and_then(|(o, s)| elf.get(o..o.checked_add(s)?));
        kind == PT_NOTE && notes.is_some_and(|n| has_note(n, b"Xen\0", PHYS32_ENTRY))
    })
}

/// Walks an ELF note area (namesz, descsz, type, name, desc; 4-aligned).
fn has_note(mut notes: &[u8], name: &[u8], kind: u32) -> bool {
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    while let (Some(namesz), Some(descsz), Some(t)) = (u32_at(notes, 0), u32_at(notes, 4), u32_at(notes, 8)) {
        let end = align(namesz as usize).zip(align(descsz as usize)).and_then(|(n, d)| 12usize.checked_add(n)?.checked_add(d));
        let Some(rest) = end.and_then(|end| notes.get(end..)) else { return false };
        if t == kind && notes.get(12..12 + namesz as usize) == Some(name) {
            return true;
        }
        notes = rest;
    }
    false
}

/// Why there is no vmlinux to boot (the caller boots the bzImage instead).
#[derive(Debug)]
pub enum NoVmlinux {
    Payload(Invalid),
    /// `xz` is missing or failed.
    Xz(String),
    /// The kernel was built without `CONFIG_PVH`.
    NoNote,
}

impl fmt::Display for NoVmlinux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoVmlinux::Payload(e) => write!(f, "{e}"),
            NoVmlinux::Xz(e) => write!(f, "xz: {e}"),
            NoVmlinux::NoNote => write!(f, "the kernel has no PVH entry (built without CONFIG_PVH)"),
        }
    }
}

/// The PVH-bootable ELF kernel of bzImage `bz`: its payload, decompressed
/// (by the `xz` tool, which every desktop Linux has), if it has the PVH note.
pub fn pvh_vmlinux(bz: &[u8]) -> Result<Vec<u8>, NoVmlinux> {
    let elf = decompress(payload(bz).map_err(NoVmlinux::Payload)?)?;
    if !has_pvh_note(&elf) {
        return Err(NoVmlinux::NoNote);
    }
    Ok(elf)
}

/// `xz -dc --single-stream`: the kernel's payload is one xz stream (with the
/// x86 BCJ filter) followed by its 4-byte uncompressed size, which
/// `--single-stream` ignores.
fn decompress(xz: &[u8]) -> Result<Vec<u8>, NoVmlinux> {
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NoVmlinux::Xz(format!("cannot run it: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| NoVmlinux::Xz("no stdin".into()))?;
    // Fed from a second thread: xz's output would fill the pipe while we write.
    let (fed, out) = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || stdin.write_all(xz));
        // Read xz's output before joining the feeder, or both would wait.
        let out = child.wait_with_output();
        (feeder.join(), out)
    });
    let out = out.map_err(|e| NoVmlinux::Xz(e.to_string()))?;
    let fed = fed.map_err(|_| NoVmlinux::Xz("feeding thread failed".into()))?;
    if !out.status.success() {
        return Err(NoVmlinux::Xz(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    fed.map_err(|e| NoVmlinux::Xz(format!("writing its input: {e}")))?;
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped buffer: `setup_sects`, protocol `version`, and a
    /// payload at `offset` past the setup code.
    fn bz(setup_sects: u8, version: u16, offset: u32, payload: &[u8]) -> Vec<u8> {
        let code = (usize::from(if setup_sects == 0 { 4 } else { setup_sects }) + 1) * 512;
        let mut b = vec![0u8; code + offset as usize + payload.len()];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[code + offset as usize..].copy_from_slice(payload);
        b
    }

    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3];

    #[test]
    fn payload_is_found_past_the_setup_sectors() {
        assert_eq!(payload(&bz(27, 0x20f, 0x3a0, XZ)).unwrap(), XZ);
        // setup_sects 0 means 4.
        assert_eq!(payload(&bz(0, 0x208, 16, XZ)).unwrap(), XZ);
    }

    #[test]
    fn bad_images_are_named() {
        assert_eq!(payload(b"MZ not a kernel"), Err(Invalid::NotBzImage));
        assert_eq!(payload(&bz(4, 0x206, 0, XZ)), Err(Invalid::OldProtocol(0x206)));
        assert_eq!(payload(&bz(4, 0x20f, 0, b"\x28\xb5\x2f\xfd")), Err(Invalid::NotXz));
        let mut cut = bz(4, 0x20f, 0, XZ);
        cut.truncate(cut.len() - 1);
        assert_eq!(payload(&cut), Err(Invalid::PayloadOutside));
        let mut huge = bz(4, 0x20f, 0, XZ);
        huge[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(payload(&huge), Err(Invalid::PayloadOutside));
    }

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`.
    fn elf(notes: &[u8]) -> Vec<u8> {
        let (phoff, phentsize) = (64usize, 56usize);
        let off = phoff + phentsize;
        let mut e = vec![0u8; off];
        e[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        e[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        e[0x36..0x38].copy_from_slice(&(phentsize as u16).to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[phoff..phoff + 4].copy_from_slice(&4u32.to_le_bytes());
        e[phoff + 8..phoff + 16].copy_from_slice(&(off as u64).to_le_bytes());
        e[phoff + 0x20..phoff + 0x28].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        e.extend_from_slice(notes);
        e
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn the_pvh_note_is_found_among_others() {
        let notes = [note(b"GNU\0", 3, &[1; 20]), note(b"Xen\0", PHYS32_ENTRY, &[0; 4])].concat();
        assert!(has_pvh_note(&elf(&notes)));
        assert!(!has_pvh_note(&elf(&note(b"Xen\0", 17, &[0; 4]))));
        assert!(!has_pvh_note(&elf(&note(b"GNU\0", PHYS32_ENTRY, &[0; 4]))));
    }

    #[test]
    fn malformed_elves_are_no() {
        assert!(!has_pvh_note(b""));
        assert!(!has_pvh_note(b"\x7fELF\x01\x01"));
        let mut e = elf(&note(b"Xen\0", PHYS32_ENTRY, &[0; 4]));
        // A note whose size runs past the segment.
        let n = e.len() - 20;
        e[n + 4..n + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!has_pvh_note(&e));
        let mut far = elf(&[]);
        far[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!has_pvh_note(&far));
    }

    /// The whole path through the real `xz` tool, with a kernel bigger than
    /// a pipe's buffer (feeding and reading must overlap) and the 4-byte
    /// size the kernel's build appends after the stream.
    #[test]
    fn pvh_vmlinux_decompresses_a_real_xz_payload() {
        let mut kernel = elf(&note(b"Xen\0", PHYS32_ENTRY, &[0; 4]));
        kernel.extend((0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
        let mut xz = Command::new("xz")
            .args(["-c", "--check=crc32", "-0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the xz tool (scripts/install-deps.sh installs xz-utils)");
        let mut stdin = xz.stdin.take().unwrap();
        let input = kernel.clone();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let mut payload = xz.wait_with_output().unwrap().stdout;
        feeder.join().unwrap().unwrap();
        payload.extend_from_slice(&(kernel.len() as u32).to_le_bytes());
        assert_eq!(pvh_vmlinux(&bz(27, 0x20f, 0x3a0, &payload)).unwrap(), kernel);
        assert!(matches!(pvh_vmlinux(&bz(27, 0x20f, 0, &payload[..payload.len() / 2])), Err(NoVmlinux::Xz(_))));
    }
}

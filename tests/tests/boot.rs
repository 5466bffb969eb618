//! The x86_64 boot matrix: the hybrid ISO under BIOS and UEFI, attached as
//! a CD, a virtio disk and a USB stick, reaches the engine over vsock in
//! every cell. Under UEFI as a disk, GRUB once stopped at its prompt
//! (`Unknown command '#'`); a USB stick needs the kernel's xHCI and
//! usb-storage drivers and the init's wait for the device.

use skiff_tests::{boot_cell, iso};

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

fn uefi() -> [&'static str; 3] {
    assert!(std::path::Path::new(OVMF).is_file(), "no {OVMF}: install Debian's ovmf (make deps does)");
    ["--uefi", "--ovmf", OVMF]
}

#[test]
fn bios_cd() {
    boot_cell(&iso(), "cd", &[], false);
}

#[test]
fn bios_virtio_disk() {
    boot_cell(&iso(), "disk", &[], false);
}

#[test]
fn bios_usb_stick() {
    boot_cell(&iso(), "usb", &[], false);
}

#[test]
fn uefi_cd() {
    boot_cell(&iso(), "cd", &uefi(), true);
}

#[test]
fn uefi_virtio_disk() {
    boot_cell(&iso(), "disk", &uefi(), true);
}

#[test]
fn uefi_usb_stick() {
    boot_cell(&iso(), "usb", &uefi(), true);
}

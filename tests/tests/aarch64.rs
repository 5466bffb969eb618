//! The aarch64 ISO under `qemu-system-aarch64` (TCG, edk2 firmware): the
//! smoke story with an arm64 busybox image the test builds itself, and the
//! UEFI boot cells (CD, virtio disk, USB stick). Slow: every instruction is
//! emulated.

use std::path::PathBuf;

use skiff_tests::{boot_cell, busybox_root_from, image_tar_for, iso_aarch64, power_button_story, root, smoke_story, Scratch, Vm};

/// Debian's arm64 busybox-static (the ISO's own busybox is linked
/// dynamically against the guest's glibc, which an image lacks).
fn arm64_busybox() -> PathBuf {
    let busybox = root().join("out/aarch64/busybox-static");
    assert!(busybox.is_file(), "no {}: run `make out/aarch64/busybox-static` (make test does)", busybox.display());
    busybox
}

#[test]
fn docker_cli_drives_the_aarch64_appliance() {
    let scratch = Scratch::new("a64-smoke");
    let rootfs = scratch.0.join("layer-root");
    busybox_root_from(&rootfs, &arm64_busybox());
    let image = image_tar_for("arm64", &scratch.0, &rootfs, "skiff-test/busybox:latest", r#""Env":["PATH=/bin"],"Cmd":["sh"]"#);
    let vm = Vm::boot_iso(&scratch.0, &iso_aarch64(), &[], &[]);
    eprintln!("aarch64 smoke: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());
    let arch = vm.docker_ok(&["info", "--format", "{{.Architecture}}"]);
    // Podman reports Go's name (arm64), Docker the kernel's (aarch64).
    assert!(["arm64", "aarch64"].contains(&arch.trim()), "the engine should run on arm64, got {arch:?}");
    smoke_story(&vm, &image);
    power_button_story(vm);
}

#[test]
fn uefi_cd() {
    boot_cell(&iso_aarch64(), "cd", &[], true);
}

#[test]
fn uefi_virtio_disk() {
    boot_cell(&iso_aarch64(), "disk", &[], true);
}

#[test]
fn uefi_usb_stick() {
    boot_cell(&iso_aarch64(), "usb", &[], true);
}

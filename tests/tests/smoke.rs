//! The acceptance story: boot the ISO with `skiff run`, point the stock
//! docker CLI at the socket it prints, and use containers through the real
//! vsock path (vhost-device-vsock here, kernel vhost-vsock where present).

use skiff_tests::{busybox_image, Scratch, Vm};

#[test]
fn docker_cli_drives_the_appliance_over_vsock() {
    let scratch = Scratch::new("smoke");
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot(&scratch.0);
    eprintln!("smoke: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());

    let version = vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.trim().starts_with('5'), "server should be podman 5.x, got {version:?}");
    let info = vm.docker_ok(&["info", "--format", "{{.OperatingSystem}} {{.Driver}}"]);
    eprintln!("smoke: docker info: {}", info.trim());
    assert!(info.contains("overlay"), "storage driver should be overlay: {info}");

    let loaded = vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    assert!(loaded.contains("skiff-test/busybox"), "load output: {loaded}");
    assert!(vm.docker_ok(&["images"]).contains("skiff-test/busybox"));

    // Output of a container started without -i: the CLI half-closes its
    // request side at once and must still receive everything.
    let hello = vm.docker_ok(&["run", "--rm", "skiff-test/busybox", "echo", "hello"]);
    assert_eq!(hello.trim(), "hello");

    // A container's exit code comes back as the CLI's.
    let failed = vm.docker(&["run", "--rm", "skiff-test/busybox", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&failed.stderr));

    // stdin's EOF must reach the container through the bridge (half-close).
    let echoed = vm.docker_with_input(&["run", "--rm", "-i", "skiff-test/busybox", "cat"], Some(b"x\n"));
    assert!(echoed.status.success(), "docker run -i failed: {}", String::from_utf8_lossy(&echoed.stderr));
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "x\n");

    // A slow container's output is not cut off.
    let slow = vm.docker_ok(&["run", "--rm", "skiff-test/busybox", "sh", "-c", "sleep 1; echo late"]);
    assert_eq!(slow.trim(), "late");

    vm.docker_ok(&["run", "--name", "kept", "skiff-test/busybox", "true"]);
    assert!(vm.docker_ok(&["ps", "-a"]).contains("kept"));
    vm.docker_ok(&["rm", "kept"]);
    assert!(!vm.docker_ok(&["ps", "-a"]).contains("kept"));

    let console = vm.console();
    assert!(console.contains("skiff: engine: ready"), "console lacks the readiness line");
    let took = vm.shutdown();
    eprintln!("smoke: power button to QEMU exit: {:.1}s", took.as_secs_f64());
    let console = std::fs::read_to_string(scratch.0.join("console.log")).unwrap();
    assert!(console.contains("shutdown: powering off"), "no clean shutdown in the console log");
    // GRUB puts BOOT_IMAGE= on the kernel command line; QEMU's direct kernel boot (the default under BIOS) does not.
    assert!(!console.contains("BOOT_IMAGE="), "skiff run should boot the ISO's kernel directly under BIOS");
}

/// Under BIOS, `--firmware-boot` goes the way a real machine does: SeaBIOS
/// boots GRUB from the CD, and GRUB the kernel with image/cmdline.
#[test]
fn boots_through_bios_and_grub_from_the_cd() {
    let scratch = Scratch::new("bios-grub");
    let vm = Vm::boot_with(&scratch.0, &["--firmware-boot"]);
    eprintln!("bios-grub: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());
    let console = vm.console();
    assert!(console.contains("BOOT_IMAGE=/boot/vmlinuz"), "GRUB should have booted the kernel");
    assert!(console.contains(skiff_proto::KERNEL_CMDLINE), "GRUB's command line is image/cmdline");
    vm.shutdown();
}

/// The same ISO boots under UEFI firmware (OVMF), not only BIOS.
#[test]
fn boots_under_uefi() {
    let ovmf = "/usr/share/ovmf/OVMF.fd";
    assert!(std::path::Path::new(ovmf).is_file(), "no {ovmf}: install Debian's ovmf (make deps does)");
    let scratch = Scratch::new("uefi");
    let vm = Vm::boot_with(&scratch.0, &["--uefi", "--ovmf", ovmf]);
    eprintln!("uefi: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());
    let version = vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.trim().starts_with('5'), "server version {version:?}");
    assert!(vm.console().contains("efi: EFI v"), "the kernel should report booting from EFI firmware");
    vm.shutdown();
}

/// The hybrid ISO boots under UEFI when attached as a disk too (as Apple's
/// Virtualization.framework presents it). GRUB once stopped at its prompt
/// here (`Unknown command '#'`). (A USB stick reaches the kernel, which has
/// no USB storage driver yet.)
#[test]
fn boots_under_uefi_from_a_virtio_disk() {
    let ovmf = "/usr/share/ovmf/OVMF.fd";
    assert!(std::path::Path::new(ovmf).is_file(), "no {ovmf}: install Debian's ovmf (make deps does)");
    let medium = "disk";
    let scratch = Scratch::new(&format!("uefi-{medium}"));
    let vm = Vm::boot_with(&scratch.0, &["--uefi", "--ovmf", ovmf, "--medium", medium]);
    eprintln!("uefi {medium}: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());
    let version = vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.trim().starts_with('5'), "server version {version:?}");
    let console = vm.console();
    assert!(console.contains("efi: EFI v"), "the kernel should report booting from EFI firmware");
    assert!(console.contains("medium: /usr mounted"), "the init should find /usr on the ISO attached as a {medium}");
    vm.shutdown();
}

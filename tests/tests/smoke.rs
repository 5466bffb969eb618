//! The acceptance story: boot the ISO with `skiff run`, point the stock
//! docker CLI at the socket it prints, and use containers through the real
//! vsock path (vhost-device-vsock here, kernel vhost-vsock where present).

use skiff_tests::{busybox_image, power_button_story, smoke_story, Scratch, Vm};

#[test]
fn docker_cli_drives_the_appliance_over_vsock() {
    let scratch = Scratch::new("smoke");
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot(&scratch.0);
    eprintln!("smoke: engine answered {:.1}s after skiff run started", vm.ready_after.as_secs_f64());

    smoke_story(&vm, &image);

    // GRUB puts BOOT_IMAGE= on the kernel command line; QEMU's direct kernel boot (the default under BIOS) does not.
    assert!(!vm.console().contains("BOOT_IMAGE="), "skiff run should boot the ISO's kernel directly under BIOS");
    power_button_story(vm);
}

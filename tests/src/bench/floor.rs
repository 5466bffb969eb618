//! The floor: the ISO's own kernel booted with a PID 1 that prints one line
//! and powers off at once, on the same QEMU machine as `skiff run` (q35,
//! vCPUs, memory, virtio-net, virtio-rng, the ISO as a CD-ROM). What a boot costs beyond
//! this is Skiff's own work. Booted directly (-kernel) as `skiff run` does:
//! the plain vmlinux through PVH when the kernel has that entry, else the
//! bzImage; so no firmware or GRUB time is in the guest figure; the wall time
//! includes SeaBIOS (and, for a bzImage, its decompressor).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::console;
use super::cpio::{self, Entry};
use crate::{die_with_parent, root};

/// One floor boot.
pub struct FloorBoot {
    /// Guest uptime at the kernel's "Run /init" line, if printed.
    pub kernel_run_init: Option<f64>,
    /// Guest uptime when the trivial init printed its line.
    pub init_start: f64,
    /// Host seconds from QEMU start to QEMU exit.
    pub wall_to_exit: f64,
}

/// Builds the static floor init and packs it as an uncompressed initramfs.
pub fn build(dir: &Path) -> PathBuf {
    let target = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "--locked", "-p", "skiff-tests", "--bin", "floor_init", "--target", target])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .expect("run cargo build for floor_init");
    assert!(status.success(), "cannot build floor_init");
    let bin = fs::read(root().join("target").join(target).join("release/floor_init")).expect("read floor_init");
    let archive = cpio::archive(&[Entry::Dir("dev"), Entry::CharDev("dev/console", 5, 1), Entry::Exec("init", &bin)]);
    let path = dir.join("floor.cpio");
    fs::write(&path, archive).expect("write floor.cpio");
    path
}

/// The kernel `skiff run` would boot for bzImage `kernel`: its PVH vmlinux
/// (written into `dir`) when it has one.
pub fn kernel_as_booted(dir: &Path, kernel: &Path) -> PathBuf {
    let bz = fs::read(kernel).expect("read the ISO's kernel");
    match skiff_proto::bzimage::pvh_vmlinux(&bz) {
        Ok(elf) => {
            let path = dir.join("floor-vmlinux");
            fs::write(&path, elf).expect("write floor-vmlinux");
            path
        }
        Err(e) => {
            eprintln!("bench: floor boots the bzImage ({e})");
            kernel.to_path_buf()
        }
    }
}

/// Boots the floor once with the same machine options as `skiff run`.
pub fn boot(dir: &Path, kernel: &Path, initrd: &Path, iso: &Path, memory_mib: u32, cpus: u32) -> FloorBoot {
    let log = dir.join("floor-console.log");
    let _ = fs::remove_file(&log);
    let started = Instant::now();
    let mut qemu = die_with_parent(&mut Command::new("qemu-system-x86_64"))
        .args(["-accel", "tcg", "-m", &memory_mib.to_string(), "-smp", &cpus.to_string()])
        .args(["-display", "none", "-no-reboot"])
        .args(["-object", &format!("memory-backend-memfd,id=mem,size={memory_mib}M,share=on")])
        .args(["-machine", "q35,memory-backend=mem"])
        .args(["-nic", "user,model=virtio-net-pci", "-device", "virtio-rng-pci"])
        .arg("-cdrom").arg(iso)
        .arg("-kernel").arg(kernel)
        .arg("-initrd").arg(initrd)
        // The ISO's command line (image/cmdline, as GRUB and `skiff run` use it).
        .args(["-append", skiff_proto::KERNEL_CMDLINE])
        .arg("-serial").arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64");
    let status = loop {
        if let Some(status) = qemu.try_wait().expect("wait for QEMU") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!("floor boot did not power off within 120s; console:\n{}", fs::read_to_string(&log).unwrap_or_default());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let wall_to_exit = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "floor QEMU exited with {status}; console:\n{text}");
    let init_start = console::first(&text, |l| l.contains("floor: init started"))
        .unwrap_or_else(|| panic!("the floor init did not run; console:\n{text}"));
    let kernel_run_init = console::first(&text, |l| l.contains("Run /init as init process"));
    FloorBoot { kernel_run_init, init_start, wall_to_exit }
}

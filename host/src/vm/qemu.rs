//! The QEMU command line for a Skiff VM, as a plain value: what `skiff run`
//! decides (machine, memory, boot medium, console, QMP, network, disks,
//! devices) turned into arguments, testable without starting QEMU.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The guest's architecture: which QEMU, machine, firmware and kernel
/// console go with an ISO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
}

/// The volume id build-iso.sh gives each architecture's ISO (ISO 9660
/// d-characters only); older x86_64 ISOs say just `SKIFF`.
pub const VOLUME_ID_AARCH64: &str = "SKIFF_AARCH64";

impl Arch {
    /// The architecture of the machine running `skiff`.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") { Arch::Aarch64 } else { Arch::X86_64 }
    }

    /// The QEMU system emulator for this guest.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The kernel command line of the ISO's boot entry (image/cmdline and
    /// image/cmdline.aarch64, which build-iso.sh puts in grub.cfg).
    pub fn base_cmdline(self) -> &'static str {
        match self {
            Arch::X86_64 => skiff_proto::KERNEL_CMDLINE,
            Arch::Aarch64 => skiff_proto::KERNEL_CMDLINE_AARCH64,
        }
    }

    /// The architecture an ISO was built for, from the volume id in its
    /// primary volume descriptor (`pvd`: the 2048 bytes at 0x8000).
    pub fn from_volume_descriptor(pvd: &[u8]) -> Option<Arch> {
        if pvd.len() < 72 || pvd[0] != 1 || &pvd[1..6] != b"CD001" {
            return None;
        }
        let id = String::from_utf8_lossy(&pvd[40..72]);
        Some(if id.trim_end() == VOLUME_ID_AARCH64 { Arch::Aarch64 } else { Arch::X86_64 })
    }

    /// The architecture of the ISO file at `iso`.
    pub fn of_iso(iso: &Path) -> io::Result<Arch> {
        let mut pvd = [0u8; 72];
        fs::File::open(iso)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut pvd, 0x8000))
            .map_err(|e| io::Error::other(format!("cannot read {}: {e}", iso.display())))?;
        Arch::from_volume_descriptor(&pvd)
            .ok_or_else(|| io::Error::other(format!("{} is not an ISO 9660 image", iso.display())))
    }
}

/// Booting the ISO's kernel directly (QEMU `-kernel`), with extra parameters.
#[derive(Debug, Clone)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// How the ISO is attached: as a CD, as a disk (as Apple's
/// Virtualization.framework presents it), or as a USB stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Medium {
    Cd,
    /// A virtio disk.
    Disk,
    /// A USB mass-storage device on an xHCI controller.
    Usb,
}

/// Everything QEMU is told.
#[derive(Debug, Clone)]
pub struct Machine {
    pub arch: Arch,
    pub accel: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Guest memory on a shared memfd backend (vhost-user devices need it).
    pub shared_memory: bool,
    /// UEFI firmware image; BIOS when `None`.
    pub firmware: Option<PathBuf>,
    pub iso: PathBuf,
    pub medium: Medium,
    pub direct_kernel: Option<DirectKernel>,
    pub console: PathBuf,
    pub qmp: PathBuf,
    /// The QMP socket `skiff run` reads QEMU's events from.
    pub qmp_events: PathBuf,
    /// A QEMU `-nic` value.
    pub net: String,
    /// `-drive` values.
    pub drives: Vec<String>,
    /// A virtio balloon with free page reporting: memory the guest frees
    /// goes back to the host within seconds (QEMU's RSS otherwise only grows).
    pub balloon: bool,
    /// Device arguments (vsock, shares), passed as they are.
    pub devices: Vec<String>,
    /// The user's own extra arguments, last.
    pub extra: Vec<String>,
}

impl Machine {
    /// QEMU's arguments, in order.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&["-accel", &self.accel, "-m", &self.memory_mib.to_string(), "-smp", &self.cpus.to_string()]);
        push(&["-display", "none", "-no-reboot"]);
        let machine = match self.arch {
            Arch::X86_64 => {
                push(&["-boot", if self.medium == Medium::Cd { "d" } else { "c" }]);
                "q35"
            }
            // UEFI only; TCG emulates the newest CPU it knows.
            Arch::Aarch64 => {
                push(&["-cpu", if self.accel == "tcg" { "max" } else { "host" }]);
                "virt"
            }
        };
        if self.shared_memory {
            push(&["-object", &format!("memory-backend-memfd,id=mem,size={}M,share=on", self.memory_mib)]);
            push(&["-machine", &format!("{machine},memory-backend=mem")]);
        } else {
            push(&["-machine", machine]);
        }
        let iso = self.iso.display().to_string().replace(',', ",,");
        match (self.medium, self.arch) {
            (Medium::Cd, Arch::X86_64) => a.extend(["-cdrom".into(), self.iso.clone().into()]),
            // The virt machine has no IDE: a CD on virtio-scsi.
            (Medium::Cd, Arch::Aarch64) => push(&[
                "-device", "virtio-scsi-pci,id=scsi",
                "-drive", &format!("file={iso},if=none,id=medium,media=cdrom,format=raw,readonly=on"),
                "-device", "scsi-cd,bus=scsi.0,drive=medium,bootindex=1",
            ]),
            (Medium::Disk, _) => push(&["-drive", &format!("file={iso},if=virtio,format=raw,readonly=on")]),
            // bootindex: the firmware tries the medium before a blank data disk.
            (Medium::Usb, _) => push(&[
                "-device", "qemu-xhci,id=xhci",
                "-drive", &format!("file={iso},if=none,id=medium,format=raw,readonly=on"),
                "-device", "usb-storage,bus=xhci.0,drive=medium,bootindex=1",
            ]),
        }
        a.push("-serial".into());
        a.push(prefixed("file:", &self.console));
        a.push("-qmp".into());
        let mut qmp = prefixed("unix:", &self.qmp);
        qmp.push(",server=on,wait=off");
        a.push(qmp);
        a.push("-qmp".into());
        let mut events = prefixed("unix:", &self.qmp_events);
        events.push(",server=on,wait=off");
        a.push(events);
        a.extend(["-nic".into(), OsString::from(&self.net)]);
        // An entropy source: without one the guest kernel's random pool took
        // ~10 s of a TCG boot to fill, and the DHCP client and the engine waited for it.
        a.extend(RNG_DEVICE.iter().map(OsString::from));
        if self.balloon {
            a.extend(BALLOON_DEVICE.iter().map(OsString::from));
        }
        if let Some(fw) = &self.firmware {
            a.extend(["-bios".into(), fw.clone().into()]);
        }
        if let Some(k) = &self.direct_kernel {
            a.extend(["-kernel".into(), k.kernel.clone().into(), "-initrd".into(), k.initrd.clone().into()]);
            a.extend(["-append".into(), OsString::from(&k.cmdline)]);
        }
        for d in &self.drives {
            a.extend(["-drive".into(), OsString::from(d)]);
        }
        a.extend(self.devices.iter().map(OsString::from));
        a.extend(self.extra.iter().map(OsString::from));
        a
    }
}

/// The virtio entropy device (fed from the host's getrandom).
pub const RNG_DEVICE: [&str; 2] = ["-device", "virtio-rng-pci"];
/// The balloon never inflates (no target is ever set); it only carries the
/// guest's free page reports, which QEMU turns into discarded host memory.
pub const BALLOON_DEVICE: [&str; 2] = ["-device", "virtio-balloon-pci,free-page-reporting=on"];

fn prefixed(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path);
    s
}

/// Whether QEMU loads the ISO's kernel and initramfs itself (`-kernel`)
/// rather than the firmware booting GRUB from the ISO: the default under
/// BIOS from a CD (it skips the firmware's slow disk reads and GRUB), and
/// always with extra kernel parameters. UEFI and the ISO as a disk boot
/// through the firmware, as other hypervisors and real machines do, unless
/// kernel parameters are given.
pub fn boots_directly(uefi: bool, medium: Medium, kernel_args: bool, firmware_boot: bool) -> bool {
    kernel_args || (!uefi && medium == Medium::Cd && !firmware_boot)
}

/// QEMU's `-drive` value for a data disk. The format is stated, not
/// guessed: QEMU refuses writes to sector 0 of a guessed raw image, which is
/// where the partition table goes. With `discard`, what the guest frees
/// (it mounts the data disk with online discard) is punched out of the
/// image file, so removing images frees host disk; without, it is ignored.
pub fn drive_arg(disk: &Path, discard: bool) -> io::Result<String> {
    let mut magic = [0u8; 4];
    fs::File::open(disk)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| io::Error::other(format!("cannot read the disk image {}: {e}", disk.display())))?;
    let format = disk_format(&magic);
    let path = fs::canonicalize(disk)?.display().to_string().replace(',', ",,");
    let discard = if discard { "unmap" } else { "ignore" };
    Ok(format!("file={path},if=virtio,format={format},discard={discard}"))
}

/// "qcow2" for a QCOW image (magic `QFI\xfb`), else "raw".
pub fn disk_format(magic: &[u8]) -> &'static str {
    if magic.starts_with(b"QFI\xfb") { "qcow2" } else { "raw" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn machine() -> Machine {
        Machine {
            arch: Arch::X86_64,
            accel: "tcg".into(),
            memory_mib: 1024,
            cpus: 2,
            shared_memory: false,
            firmware: None,
            iso: "/i/skiff.iso".into(),
            medium: Medium::Cd,
            direct_kernel: None,
            console: "/s/console.log".into(),
            qmp: "/s/qmp.sock".into(),
            qmp_events: "/s/qmp-events.sock".into(),
            net: "user,model=virtio-net-pci".into(),
            drives: vec![],
            balloon: true,
            devices: vec!["-device".into(), "vhost-vsock-pci,guest-cid=3".into()],
            extra: vec!["-foo".into()],
        }
    }

    fn joined(m: &Machine) -> String {
        m.args().iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn qmp_not_the_human_monitor() {
        let line = joined(&machine());
        assert!(line.contains("-qmp unix:/s/qmp.sock,server=on,wait=off"), "{line}");
        assert!(line.contains("-qmp unix:/s/qmp-events.sock,server=on,wait=off"), "{line}");
        assert!(!line.contains("-monitor"), "{line}");
        assert!(line.contains("-serial file:/s/console.log"), "{line}");
        assert!(line.contains("-device virtio-rng-pci"), "the guest needs an entropy source: {line}");
    }

    #[test]
    fn a_reporting_balloon_unless_turned_off() {
        assert!(joined(&machine()).contains("-device virtio-balloon-pci,free-page-reporting=on"));
        let kept = Machine { balloon: false, ..machine() };
        assert!(!joined(&kept).contains("balloon"), "--no-balloon");
    }

    #[test]
    fn shared_memory_backend_matches_memory_size() {
        let mut m = machine();
        assert!(joined(&m).contains("-machine q35 "));
        m.shared_memory = true;
        let line = joined(&m);
        assert!(line.contains("-object memory-backend-memfd,id=mem,size=1024M,share=on -machine q35,memory-backend=mem"), "{line}");
    }

    #[test]
    fn user_arguments_come_last() {
        let mut m = machine();
        m.firmware = Some("/fw/OVMF.fd".into());
        m.drives.push("file=/d,if=virtio,format=raw".into());
        m.direct_kernel = Some(DirectKernel { kernel: "/k".into(), initrd: "/r".into(), cmdline: "a b".into() });
        let line = joined(&m);
        assert!(line.contains("-bios /fw/OVMF.fd"));
        assert!(line.contains("-kernel /k -initrd /r -append a b"));
        assert!(line.contains("-drive file=/d,if=virtio,format=raw"));
        assert!(line.ends_with("-device vhost-vsock-pci,guest-cid=3 -foo"), "{line}");
    }

    #[test]
    fn the_iso_as_cd_or_disk() {
        let mut m = machine();
        assert!(joined(&m).contains("-cdrom /i/skiff.iso"));
        m.medium = Medium::Disk;
        assert!(joined(&m).contains("-drive file=/i/skiff.iso,if=virtio,format=raw,readonly=on"));
        assert!(!joined(&m).contains("-cdrom"));
    }

    #[test]
    fn direct_kernel_boot_only_for_bios_cd_or_kernel_parameters() {
        assert!(boots_directly(false, Medium::Cd, false, false), "the default");
        assert!(!boots_directly(false, Medium::Cd, false, true), "--firmware-boot");
        assert!(!boots_directly(true, Medium::Cd, false, false), "UEFI goes through the firmware");
        assert!(!boots_directly(false, Medium::Disk, false, false), "so does the ISO as a disk");
        assert!(boots_directly(true, Medium::Disk, true, true), "kernel parameters need -append");
    }

    #[test]
    fn the_iso_as_a_usb_stick() {
        let mut m = machine();
        m.medium = Medium::Usb;
        let line = joined(&m);
        assert!(line.contains("-boot c"), "{line}");
        assert!(line.contains("-device qemu-xhci,id=xhci -drive file=/i/skiff.iso,if=none,id=medium,format=raw,readonly=on -device usb-storage,bus=xhci.0,drive=medium,bootindex=1"), "{line}");
        assert!(!line.contains("-cdrom"), "{line}");
    }

    #[test]
    fn aarch64_uses_the_virt_machine_and_a_scsi_cd() {
        let mut m = machine();
        m.arch = Arch::Aarch64;
        m.shared_memory = true;
        let line = joined(&m);
        assert!(line.contains("-cpu max"), "{line}");
        assert!(line.contains("-machine virt,memory-backend=mem"), "{line}");
        assert!(line.contains("-device virtio-scsi-pci,id=scsi"), "{line}");
        assert!(line.contains("-device scsi-cd,bus=scsi.0,drive=medium,bootindex=1"), "{line}");
        assert!(!line.contains("-cdrom") && !line.contains("q35") && !line.contains("-boot"), "{line}");
        m.accel = "kvm".into();
        assert!(joined(&m).contains("-cpu host"));
    }

    #[test]
    fn arch_from_the_volume_id() {
        let pvd = |id: &str| {
            let mut b = vec![0u8; 2048];
            b[0] = 1;
            b[1..6].copy_from_slice(b"CD001");
            b[40..72].fill(b' ');
            b[40..40 + id.len()].copy_from_slice(id.as_bytes());
            b
        };
        assert_eq!(Arch::from_volume_descriptor(&pvd("SKIFF")), Some(Arch::X86_64));
        assert_eq!(Arch::from_volume_descriptor(&pvd(VOLUME_ID_AARCH64)), Some(Arch::Aarch64));
        assert_eq!(Arch::from_volume_descriptor(&pvd("SKIFF_AARCH64X")), Some(Arch::X86_64));
        assert_eq!(Arch::from_volume_descriptor(&[0u8; 2048]), None);
        assert_eq!(Arch::from_volume_descriptor(b"\x01CD001"), None, "too short");
    }

    #[test]
    fn disk_format_from_magic() {
        assert_eq!(disk_format(b"QFI\xfb"), "qcow2");
        assert_eq!(disk_format(&[0, 0, 0, 0]), "raw");
        assert_eq!(disk_format(b""), "raw");
    }

    #[test]
    fn drive_arg_names_the_format_and_escapes_commas() {
        let dir = std::env::temp_dir().join(format!("skiff-drive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("a,b.img");
        fs::write(&raw, [0u8; 512]).unwrap();
        let arg = drive_arg(&raw, true).unwrap();
        assert!(arg.ends_with("a,,b.img,if=virtio,format=raw,discard=unmap"), "{arg}");
        assert!(drive_arg(&raw, false).unwrap().ends_with("discard=ignore"), "--no-discard keeps freed space in the image");
        let qcow = dir.join("d.qcow2");
        let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&qcow).arg("1G").status().unwrap();
        assert!(made.success());
        assert!(drive_arg(&qcow, true).unwrap().contains("format=qcow2"));
        assert!(drive_arg(&dir.join("missing"), true).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

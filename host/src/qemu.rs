//! The QEMU command line for a Skiff VM, as a plain value: what `skiff run`
//! decides (machine, memory, boot medium, console, QMP, network, disks,
//! devices) turned into arguments, testable without starting QEMU.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Booting the ISO's kernel directly (QEMU `-kernel`), with extra parameters.
#[derive(Debug, Clone)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// How the ISO is attached: as a CD, or as a disk (as Apple's
/// Virtualization.framework presents it). A USB stick is not offered: the
/// kernel has no USB host or storage drivers yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Medium {
    Cd,
    /// A virtio disk.
    Disk,
}

/// Everything QEMU is told.
#[derive(Debug, Clone)]
pub struct Machine {
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
    /// A QEMU `-nic` value.
    pub net: String,
    /// `-drive` values.
    pub drives: Vec<String>,
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
        let boot = if self.medium == Medium::Cd { "d" } else { "c" };
        push(&["-display", "none", "-no-reboot", "-boot", boot]);
        if self.shared_memory {
            push(&["-object", &format!("memory-backend-memfd,id=mem,size={}M,share=on", self.memory_mib)]);
            push(&["-machine", "q35,memory-backend=mem"]);
        } else {
            push(&["-machine", "q35"]);
        }
        let iso = self.iso.display().to_string().replace(',', ",,");
        match self.medium {
            Medium::Cd => a.extend(["-cdrom".into(), self.iso.clone().into()]),
            Medium::Disk => push(&["-drive", &format!("file={iso},if=virtio,format=raw,readonly=on")]),
        }
        a.push("-serial".into());
        a.push(prefixed("file:", &self.console));
        a.push("-qmp".into());
        let mut qmp = prefixed("unix:", &self.qmp);
        qmp.push(",server=on,wait=off");
        a.push(qmp);
        a.extend(["-nic".into(), OsString::from(&self.net)]);
        // An entropy source: without one the guest kernel's random pool took
        // ~10 s of a TCG boot to fill, and the DHCP client and the engine waited for it.
        a.extend(RNG_DEVICE.iter().map(OsString::from));
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
/// where the partition table goes.
pub fn drive_arg(disk: &Path) -> io::Result<String> {
    let mut magic = [0u8; 4];
    fs::File::open(disk)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| io::Error::other(format!("cannot read the disk image {}: {e}", disk.display())))?;
    let format = disk_format(&magic);
    let path = fs::canonicalize(disk)?.display().to_string().replace(',', ",,");
    Ok(format!("file={path},if=virtio,format={format},discard=unmap"))
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
            net: "user,model=virtio-net-pci".into(),
            drives: vec![],
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
        assert!(!line.contains("-monitor"), "{line}");
        assert!(line.contains("-serial file:/s/console.log"), "{line}");
        assert!(line.contains("-device virtio-rng-pci"), "the guest needs an entropy source: {line}");
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
        let arg = drive_arg(&raw).unwrap();
        assert!(arg.ends_with("a,,b.img,if=virtio,format=raw,discard=unmap"), "{arg}");
        let qcow = dir.join("d.qcow2");
        let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&qcow).arg("1G").status().unwrap();
        assert!(made.success());
        assert!(drive_arg(&qcow).unwrap().contains("format=qcow2"));
        assert!(drive_arg(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

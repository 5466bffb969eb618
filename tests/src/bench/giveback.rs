//! Memory and disk given back to the host: QEMU's RSS and the data disk
//! image's allocated size, each measured with the feature on (the default)
//! and off (`--balloon off --discard off`), one boot each, in one run.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::boot;
use crate::allocated_bytes as allocated;

/// One boot's figures, bytes and seconds.
pub struct Side {
    pub engine_ready: Option<f64>,
    pub rss_idle: u64,
    /// While a container holds `touch_mib` of tmpfs.
    pub rss_peak: u64,
    /// [`SETTLE`] after it was removed.
    pub rss_after: u64,
    /// A container writing `touch_mib` to tmpfs once that memory was given
    /// back (the host faults it in again): MiB/s, inside the guest.
    pub write_mib_s: Option<f64>,
    /// The image with a `disk_mib` volume written.
    pub image_full: u64,
    /// Up to [`DISK_LIMIT`] after the volume was removed.
    pub image_after: u64,
    /// When the image first shrank by half the volume, if it did.
    pub image_shrunk_after: Option<f64>,
}

pub struct GiveBack {
    pub touch_mib: u64,
    pub disk_mib: u64,
    pub on: Side,
    pub off: Side,
}

/// How long after the container ends QEMU's RSS is read again.
pub const SETTLE: Duration = Duration::from_secs(30);
/// How long the image may take to shrink.
pub const DISK_LIMIT: Duration = Duration::from_secs(60);

fn side(dir: &Path, mem: &str, busybox: &Path, tag: &str, touch_mib: u64, disk_mib: u64, on: bool) -> Side {
    let disk = dir.join("data.qcow2");
    let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("8G").status().expect("qemu-img");
    assert!(made.success(), "qemu-img create failed");
    let switch = if on { "on" } else { "off" };
    let (vm, b) = boot::boot(dir, &["--memory", mem, "--disk", disk.to_str().unwrap(), "--balloon", switch, "--discard", switch]);
    vm.docker_ok(&["load", "-i", busybox.to_str().unwrap()]);
    thread::sleep(Duration::from_secs(5));
    let rss_idle = vm.qemu_rss();
    vm.hold_memory(tag, "fill", touch_mib);
    let rss_peak = vm.qemu_rss();
    vm.docker_ok(&["rm", "-f", "fill"]);
    thread::sleep(SETTLE);
    let rss_after = vm.qemu_rss();
    let write_mib_s = write_speed(&vm, tag, touch_mib);

    vm.docker_ok(&["run", "--rm", "-v", "big:/d", tag, "sh", "-c", &format!("dd if=/dev/zero of=/d/fill bs=1M count={disk_mib} && sync")]);
    thread::sleep(Duration::from_secs(5));
    let image_full = allocated(&disk);
    vm.docker_ok(&["volume", "rm", "big"]);
    let began = Instant::now();
    let half = (disk_mib << 20) / 2;
    let mut image_shrunk_after = None;
    while began.elapsed() < DISK_LIMIT {
        if image_full.saturating_sub(allocated(&disk)) > half {
            image_shrunk_after = Some(began.elapsed().as_secs_f64());
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let image_after = allocated(&disk);
    vm.shutdown();
    Side { engine_ready: b.milestone("engine_ready"), rss_idle, rss_peak, rss_after, write_mib_s, image_full, image_after, image_shrunk_after }
}

/// The memory benchmark inside a container: `mib` written to a tmpfs, timed
/// by the guest's uptime clock around `dd` (container start left out).
fn write_speed(vm: &crate::Vm, tag: &str, mib: u64) -> Option<f64> {
    let script = format!(
        "read a _ < /proc/uptime; dd if=/dev/zero of=/t/w bs=1M count={mib} 2>/dev/null; read b _ < /proc/uptime; echo $a $b"
    );
    let out = vm.docker_ok(&["run", "--rm", "--tmpfs", &format!("/t:size={}m", mib + 64), tag, "sh", "-c", &script]);
    let t: Vec<f64> = out.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    match t[..] {
        [a, b] if b > a => Some(mib as f64 / (b - a)),
        _ => {
            eprintln!("bench: give-back: no timing from the write benchmark: {out:?}");
            None
        }
    }
}

/// Two boots: the features on, then off.
pub fn measure(dir: &Path, mem: &str, busybox: &Path, tag: &str, touch_mib: u64, disk_mib: u64) -> GiveBack {
    let run = |on: bool| {
        let switch = if on { "on" } else { "off" };
        let d = dir.join(format!("giveback-{switch}"));
        std::fs::create_dir_all(&d).expect("create VM folder");
        eprintln!("bench: give-back, balloon and discard {switch}");
        side(&d, mem, busybox, tag, touch_mib, disk_mib, on)
    };
    let on = run(true);
    let off = run(false);
    GiveBack { touch_mib, disk_mib, on, off }
}

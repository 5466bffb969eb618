//! A good neighbour on the desktop: memory the guest frees goes back to the
//! host (a virtio balloon with free page reporting), and so does disk space
//! the guest frees (online discard on the data disk, punched out of the
//! qcow2 image). Both are on by default; `--balloon off` and `--discard off`
//! turn them off (the QEMU arguments are unit-tested in the host crate).

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::{allocated_bytes as allocated, busybox_image, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";
const MIB: u64 = 1 << 20;

/// Polls `measure` every second for up to `limit` until `done` holds;
/// returns the last value and how long it took.
fn wait_for(limit: Duration, mut measure: impl FnMut() -> u64, done: impl Fn(u64) -> bool) -> (u64, Duration) {
    let began = Instant::now();
    loop {
        let now = measure();
        if done(now) || began.elapsed() > limit {
            return (now, began.elapsed());
        }
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn memory_a_container_used_goes_back_to_the_host() {
    let scratch = Scratch::new("giveback-memory");
    let image = busybox_image(&scratch.0, IMAGE);
    // Room the guest has never touched, so the container's pages are new
    // to QEMU (in a smaller guest they would partly reuse page cache).
    let vm = Vm::boot_with(&scratch.0, &["--memory", "2048"]);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let idle = vm.qemu_rss();
    // 600 MiB written into a tmpfs the container owns: guest pages that are
    // freed when the container ends. Read while it holds them: once freed,
    // they may be reported before `docker rm` returns.
    vm.hold_memory(IMAGE, "fill", 600);
    let peak = vm.qemu_rss();
    eprintln!("giveback: QEMU RSS idle {} MiB, with a container holding 600 MiB {} MiB", idle / MIB, peak / MIB);
    assert!(peak > idle + 400 * MIB, "the container's memory never reached QEMU (idle {idle}, peak {peak}): the test proves nothing");
    vm.docker_ok(&["rm", "-f", "fill"]);
    let (after, took) = wait_for(Duration::from_secs(30), || vm.qemu_rss(), |rss| rss < peak - 400 * MIB);
    eprintln!("giveback: QEMU RSS {} MiB {:.0} s after the container ended", after / MIB, took.as_secs_f64());
    assert!(after < peak - 400 * MIB, "freed guest memory was not given back within 30 s: peak {} MiB, now {} MiB", peak / MIB, after / MIB);
    vm.shutdown();
}

#[test]
fn a_removed_volume_frees_disk_on_the_host() {
    let scratch = Scratch::new("giveback-disk");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.qcow2");
    let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("4G").status().expect("qemu-img");
    assert!(made.success());
    let vm = Vm::boot_with(&scratch.0, &["--disk", disk.to_str().unwrap()]);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&["run", "--rm", "-v", "big:/d", IMAGE, "sh", "-c", "dd if=/dev/zero of=/d/fill bs=1M count=400 && sync"]);
    // The journal commits every 2 s; the blocks are in the image by then.
    thread::sleep(Duration::from_secs(5));
    let full = allocated(&disk);
    eprintln!("giveback: data disk image {} MiB with a 400 MiB volume", full / MIB);
    assert!(full > 400 * MIB, "the volume never reached the image ({full} bytes): the test proves nothing");
    vm.docker_ok(&["volume", "rm", "big"]);
    let (after, took) = wait_for(Duration::from_secs(60), || allocated(&disk), |now| now < full - 300 * MIB);
    eprintln!("giveback: data disk image {} MiB {:.0} s after the volume was removed", after / MIB, took.as_secs_f64());
    assert!(after < full - 300 * MIB, "the removed volume's space stayed in the image: {} MiB then, {} MiB now", full / MIB, after / MIB);
    vm.shutdown();
}

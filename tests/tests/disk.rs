//! The persistent data disk: a blank disk becomes Skiff's data disk and
//! keeps images, containers and volumes across a clean shutdown and a power
//! loss; a disk holding anything else is never touched, nor is any disk when
//! two claim to be the data disk; a shutdown with many containers running
//! leaves the filesystem clean.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::{Disk, Event, Note};
use skiff_tests::{
    blank_disk, busybox_image, busybox_image_with_payload, docker_bin, e2fs_tool, gpt_first_partition, iso, names_all,
    noted_in, sha256_file, shutdown_steps, Scratch, Vm,
};

const IMAGE: &str = "skiff-test/busybox:latest";

/// How the guest's data disk step ended (its `disk` event). Waits for the
/// engine-ready event first: `skiff run` is ready once the engine answers a
/// ping and copies the events as they come, so the boot's notes may still
/// be on their way when it says so.
fn disk_outcome(vm: &Vm) -> Option<Disk> {
    assert!(vm.wait_event(Duration::from_secs(60), |e| *e == Event::EngineReady), "no engine-ready event: {:?}", vm.events());
    vm.events().into_iter().find_map(|s| match s.event {
        Event::Disk(d) => Some(d),
        _ => None,
    })
}

/// The tag the init's logger puts on its warnings (`format_line` in
/// init/src/boot/logger.rs): the log's format, not its wording.
const WARNING: &str = "] skiff: warning: ";

/// True if a line the init logged (the logger's `] skiff: ` source tag)
/// names `datum` and a whole number that `wanted` accepts: the console
/// gave the user that figure, whatever its words. Decimals (timestamps,
/// seconds) are not whole numbers here.
fn names_number(console: &str, datum: &str, wanted: impl Fn(u64) -> bool) -> bool {
    let numbers = |m: &str| m.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|t| t.parse::<u64>().ok()).collect::<Vec<_>>();
    console.lines().filter_map(|l| l.split_once("] skiff: ").map(|(_, msg)| msg)).filter(|m| m.contains(datum)).any(|m| numbers(m).into_iter().any(&wanted))
}

fn boot_with_disk(dir: &Path, disk: &Path) -> Vm {
    Vm::boot_with(dir, &["--disk", disk.to_str().unwrap()])
}

/// Presses the power button, prints how long the shutdown took and what
/// it was made of (from the guest's log).
fn shutdown_and_report(vm: Vm, what: &str) {
    let dir = vm.dir.clone();
    let took = vm.shutdown();
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    eprintln!("{what}: power button to QEMU exit: {:.1}s; guest steps:", took.as_secs_f64());
    for step in shutdown_steps(&console) {
        eprintln!("{what}:   {step}");
    }
    assert!(skiff_tests::powered_off_cleanly(&dir), "no powering-off event (clean shutdown)");
    let unmounted = noted_in(&dir, Note::DiskUnmounted);
    assert_eq!(unmounted, ["/mnt/skiff-data"], "data disk not unmounted at shutdown");
}

/// e2fsck -fn on the host: the data filesystem is clean after shutdown.
fn assert_clean(disk: &Path) -> u64 {
    let offset = gpt_first_partition(disk).expect("the data disk should have a GPT with one partition");
    let out = e2fs_tool("e2fsck", &["-fn"], disk, offset);
    assert!(out.status.success(), "e2fsck -fn reports problems ({}):\n{}{}", out.status,
        String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    offset
}

#[test]
fn blank_disk_keeps_images_volumes_and_containers_across_reboots() {
    let scratch = Scratch::new("disk-blank");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.img");
    blank_disk(&disk, 2 << 30);

    let vm = boot_with_disk(&scratch.0, &disk);
    assert_eq!(disk_outcome(&vm), Some(Disk::Mounted), "{:?}", vm.events());
    assert_eq!(vm.noted(Note::DiskFormatted), ["/dev/vda1"], "blank disk not formatted: {:?}", vm.events());
    assert_eq!(vm.noted(Note::DiskMounted), ["/dev/vda1"], "not mounted: {:?}", vm.events());
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&["run", "--rm", "-v", "vol:/data", IMAGE, "sh", "-c", "echo persisted > /data/f"]);
    vm.docker_ok(&["create", "--name", "keeper", IMAGE, "true"]);
    // A running container that exits 0 on SIGTERM: shutdown must give it
    // the signal and time to exit, not SIGKILL (exit 137).
    vm.docker_ok(&["run", "-d", "--name", "sleeper", IMAGE, "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
    shutdown_and_report(vm, "disk");
    let offset = assert_clean(&disk);
    eprintln!("disk: data partition at byte {offset}; e2fsck -fn clean after shutdown");

    let vm = boot_with_disk(&scratch.0, &disk);
    assert_eq!(disk_outcome(&vm), Some(Disk::Mounted), "{:?}", vm.events());
    assert!(vm.noted(Note::DiskFormatted).is_empty(), "an existing data disk must not be formatted again");
    assert!(vm.noted(Note::DiskPartitioned).is_empty(), "an existing data disk must not be partitioned again");
    assert_eq!(vm.noted(Note::DiskChecked), ["/dev/vda1"], "no check before mounting: {:?}", vm.events());
    assert!(vm.docker_ok(&["images"]).contains("skiff-test/busybox"), "image lost");
    let data = vm.docker_ok(&["run", "--rm", "-v", "vol:/data", IMAGE, "cat", "/data/f"]);
    assert_eq!(data.trim(), "persisted", "volume data lost");
    let all = vm.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(all.contains("keeper") && all.contains("sleeper"), "containers lost: {all}");
    let code = vm.docker_ok(&["inspect", "sleeper", "--format", "{{.State.ExitCode}}"]);
    assert_eq!(code.trim(), "0", "the running container was killed, not stopped with SIGTERM");
    shutdown_and_report(vm, "disk (second boot)");
    assert_clean(&disk);
}

/// A 256 MiB raw disk holding an ext4 filesystem labelled `label`, made
/// from the files in `content`.
fn ext4_disk(disk: &Path, label: &str, content: &Path) {
    blank_disk(disk, 256 << 20);
    let made = Command::new("mkfs.ext4").args(["-q", "-F", "-L", label, "-d"]).arg(content).arg(disk).status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(made.success());
}

#[test]
fn foreign_disks_are_left_untouched() {
    let scratch = Scratch::new("disk-foreign");
    let content = scratch.0.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("hello.txt"), "foreign data\n").unwrap();
    let disk = scratch.0.join("other.img");
    ext4_disk(&disk, "other", &content);
    let before = sha256_file(&disk);

    // The hybrid ISO attached as a disk too: recognised and skipped.
    let iso_drive = format!("file={},if=virtio,format=raw,readonly=on", iso().display());
    let vm = Vm::boot_with(&scratch.0, &["--disk", disk.to_str().unwrap(), "--qemu-arg=-drive", &format!("--qemu-arg={iso_drive}")]);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:")) {
        eprintln!("foreign: {line}");
    }
    // Nothing persists: the host hears so (and `skiff run` says it).
    assert_eq!(disk_outcome(&vm), Some(Disk::None), "{:?}", vm.events());
    assert_eq!(vm.noted(Note::DiskSkipped), ["/dev/vda", "/dev/vdb"], "{:?}", vm.events());
    // People are told which disk holds what.
    assert!(names_all(&console, &["/dev/vda", "other"]), "the console should name /dev/vda and its label:\n{console}");
    assert!(names_all(&console, &["/dev/vdb", "ISO 9660"]), "the console should name /dev/vdb and what it holds:\n{console}");
    // The engine runs anyway, on the tmpfs root.
    assert!(vm.docker_ok(&["info", "--format", "{{.Driver}}"]).contains("overlay"));
    shutdown_and_report_no_disk(vm);

    assert_eq!(sha256_file(&disk), before, "the foreign disk was modified");
    let out = e2fs_tool("debugfs", &["-R", "cat /hello.txt"], &disk, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "foreign data\n");
}

fn shutdown_and_report_no_disk(vm: Vm) {
    let dir = vm.dir.clone();
    let took = vm.shutdown();
    eprintln!("foreign: power button to QEMU exit: {:.1}s", took.as_secs_f64());
    assert!(skiff_tests::powered_off_cleanly(&dir), "no powering-off event (clean shutdown)");
    assert!(noted_in(&dir, Note::DiskUnmounted).is_empty(), "a data disk was unmounted, but none was mounted");
}

#[test]
fn power_loss_during_a_load_keeps_what_was_committed() {
    let scratch = Scratch::new("disk-kill");
    let image = busybox_image(&scratch.0, IMAGE);
    let big_dir = scratch.0.join("big");
    let big = busybox_image_with_payload(&big_dir, "skiff-test/big:latest", 160);
    let disk = scratch.0.join("data.qcow2");
    let made = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("4G").status().expect("qemu-img");
    assert!(made.success());

    let vm = boot_with_disk(&scratch.0, &disk);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&["create", "--name", "before", IMAGE, "echo", "still here"]);
    // "Committed" means on the disk. The engine does not fsync layers; the
    // guest writes dirty data back after 3 s and commits its journal every
    // 2 s, so about 10 s later it is durable (the kill comes 12 + 3 s later).
    thread::sleep(Duration::from_secs(12));

    let mut load = Command::new(docker_bin())
        .args(["load", "-i", big.to_str().unwrap()])
        .env("DOCKER_HOST", &vm.docker_host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker load");
    let started = Instant::now();
    thread::sleep(Duration::from_secs(3));
    assert!(load.try_wait().unwrap().is_none(), "the big load finished before the kill; the test needs a bigger image");
    vm.kill_hard();
    eprintln!("kill: QEMU killed {:.1}s into loading a 160 MiB image", started.elapsed().as_secs_f64());
    let _ = load.kill();
    let _ = load.wait();

    let vm = boot_with_disk(&scratch.0, &disk);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:") || l.contains("recovering journal") || l.contains("skiff-data:")) {
        eprintln!("kill: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::Mounted), "data disk not mounted after power loss:\n{console}");
    assert_eq!(vm.noted(Note::DiskMounted), ["/dev/vda1"], "{:?}", vm.events());
    let images = vm.docker_ok(&["images", "--format", "{{.Repository}}"]);
    eprintln!("kill: images after the power loss: {}", images.split_whitespace().collect::<Vec<_>>().join(", "));
    assert!(images.contains("skiff-test/busybox"), "image loaded before the kill is gone: {images}");
    let out = vm.docker_ok(&["start", "-a", "before"]);
    assert_eq!(out.trim(), "still here");
    shutdown_and_report(vm, "kill (after power loss)");
}

/// Writes `bytes` into a disk image at `offset`.
fn write_at(disk: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(disk).expect("open disk image");
    f.write_all_at(bytes, offset).expect("write disk image");
}

/// Random bytes (the contents of a file, as far as a disk can tell).
fn random_bytes(len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    bytes
}

#[test]
fn disks_with_data_behind_a_wiped_partition_table_are_not_formatted() {
    let scratch = Scratch::new("disk-wiped");
    // Data in the middle only: a disk whose partition table and the ends of
    // its last partition were wiped (what `wipefs` or a careless `dd` leaves).
    let middle = scratch.0.join("middle.img");
    blank_disk(&middle, 1 << 30);
    write_at(&middle, 600 << 20, &random_bytes(16 << 20));
    // An ext4 filesystem where a first partition starts (1 MiB in), its
    // GPT zeroed: the superblock sits just past the disk's first MiB.
    let content = scratch.0.join("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("photo.jpg"), random_bytes(8 << 20)).unwrap();
    let lost = scratch.0.join("lost-gpt.img");
    blank_disk(&lost, 512 << 20);
    let made = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "home", "-E", "offset=1048576", "-d"]).arg(&content).arg(&lost)
        .arg(format!("{}k", (510u64 << 20) / 1024)).status().expect("mkfs.ext4 (e2fsprogs)");
    assert!(made.success());
    assert!(std::fs::read(&lost).unwrap()[..1 << 20].iter().all(|&b| b == 0), "the first MiB must be zeros for this test");
    let before = (sha256_file(&middle), sha256_file(&lost));

    let vm = Vm::boot_with(&scratch.0, &["--disk", middle.to_str().unwrap(), "--disk", lost.to_str().unwrap()]);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:")) {
        eprintln!("wiped: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::None), "{:?}", vm.events());
    let (formatted, partitioned) = (vm.noted(Note::DiskFormatted), vm.noted(Note::DiskPartitioned));
    assert!(formatted.is_empty() && partitioned.is_empty(), "a disk with data was formatted: {formatted:?} {partitioned:?}");
    assert_eq!(vm.noted(Note::DiskSkipped), ["/dev/vda", "/dev/vdb"], "{:?}", vm.events());
    // People are told where the data was found: in the 16 MiB written at 600 MiB,
    // and the filesystem's label and offset.
    let written = (600u64 << 20)..(616u64 << 20);
    assert!(names_number(&console, "/dev/vda", |n| written.contains(&n)), "the console should name /dev/vda and where its data is:\n{console}");
    assert!(names_all(&console, &["/dev/vdb", "home", "1048576"]), "the console should name /dev/vdb, its label and offset:\n{console}");
    assert!(vm.docker_ok(&["info", "--format", "{{.Driver}}"]).contains("overlay"), "the engine should run in RAM");
    shutdown_and_report_no_disk(vm);
    assert_eq!((sha256_file(&middle), sha256_file(&lost)), before, "a disk was modified");
}

#[test]
fn two_data_disks_are_never_guessed() {
    let scratch = Scratch::new("disk-two");
    let image = busybox_image(&scratch.0, IMAGE);
    let mut disks = Vec::new();
    for name in ["first.img", "second.img"] {
        let disk = scratch.0.join(name);
        blank_disk(&disk, 256 << 20);
        let made = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "skiff-data"]).arg(&disk).status().expect("mkfs.ext4 (e2fsprogs)");
        assert!(made.success());
        disks.push(disk);
    }
    let before: Vec<String> = disks.iter().map(|d| sha256_file(d)).collect();

    let vm = Vm::boot_with(&scratch.0, &["--disk", disks[0].to_str().unwrap(), "--disk", disks[1].to_str().unwrap()]);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:")) {
        eprintln!("two: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::Refused("ambiguous".into())), "{:?}", vm.events());
    assert!(names_all(&console, &["/dev/vda", "/dev/vdb", "skiff-data"]), "no clear message:\n{console}");
    let (checked, mounted) = (vm.noted(Note::DiskChecked), vm.noted(Note::DiskMounted));
    assert!(checked.is_empty() && mounted.is_empty(), "a data disk was guessed: checked {checked:?}, mounted {mounted:?}");
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    assert_eq!(vm.docker_ok(&["run", "--rm", "--network", "none", IMAGE, "echo", "in RAM"]).trim(), "in RAM");
    shutdown_and_report_no_disk(vm);
    let after: Vec<String> = disks.iter().map(|d| sha256_file(d)).collect();
    assert_eq!(after, before, "a data disk was written to");
}

#[test]
fn shutdown_with_twenty_running_containers_is_clean() {
    let scratch = Scratch::new("disk-twenty");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.img");
    blank_disk(&disk, 2 << 30);
    let vm = boot_with_disk(&scratch.0, &disk);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    // Started side by side (one at a time takes minutes under TCG): half
    // sleep, half write output (their logs go to the data disk); as PID 1
    // of their container neither has a SIGTERM handler, so each needs the
    // full grace period and a SIGKILL.
    let t = Instant::now();
    thread::scope(|s| {
        for i in 0..20 {
            let vm = &vm;
            s.spawn(move || {
                let name = format!("busy{i}");
                let cmd: &[&str] = if i % 2 == 0 { &["sleep", "1000"] } else { &["busybox", "top", "-b", "-d", "1"] };
                let mut args = vec!["run", "-d", "--network", "none", "--name", &name, IMAGE];
                args.extend_from_slice(cmd);
                vm.docker_ok(&args);
            });
        }
    });
    let running = vm.docker_ok(&["ps", "-q"]).lines().count();
    eprintln!("twenty: {running} containers running after {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(running, 20);
    shutdown_and_report(vm, "twenty");
    let console = std::fs::read_to_string(scratch.0.join("console.log")).unwrap_or_default();
    // People see how long the shutdown may take: the init names the bound.
    let bound = skiff_proto::GUEST_SHUTDOWN_WORST_CASE_SECS;
    assert!(names_number(&console, "", |n| n == bound), "the bound ({bound}s) is not logged:\n{console}");
    let overran = noted_in(&scratch.0, Note::ShutdownOverran);
    for step in ["stop containers", "unmount shares", "sync", "unmount", "close log file"] {
        assert!(!overran.iter().any(|s| s == step), "shutdown step {step:?} hit its time limit: {overran:?}");
    }
    assert_clean(&disk);
}

/// A data disk from a newer Skiff (layout version 2): the guest says so on
/// the console, leaves it unmounted and byte-for-byte unchanged, and the
/// engine runs in RAM; `skiff status` says so too.
#[test]
fn a_disk_with_a_newer_layout_is_refused_untouched() {
    let scratch = Scratch::new("disk-layout");
    let content = scratch.0.join("content");
    std::fs::create_dir_all(content.join("containers")).unwrap();
    std::fs::write(content.join("skiff-layout-version"), "2\n").unwrap();
    std::fs::write(content.join("containers/newer-format"), "data a newer Skiff wrote\n").unwrap();
    let disk = scratch.0.join("newer.img");
    ext4_disk(&disk, "skiff-data", &content);
    let before = sha256_file(&disk);

    let vm = boot_with_disk(&scratch.0, &disk);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:")) {
        eprintln!("layout: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::Refused("layout-newer".into())), "{:?}", vm.events());
    assert!(names_number(&console, "/dev/vda", |n| n == 2), "the console should name the disk and its layout version:\n{console}");
    assert!(vm.noted(Note::DiskChecked).is_empty() && vm.noted(Note::DiskMounted).is_empty(), "{:?}", vm.events());
    // The engine runs anyway, in RAM.
    assert!(vm.docker_ok(&["info", "--format", "{{.Driver}}"]).contains("overlay"));
    let status = vm.skiff(&["status"], None);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("data disk in the guest: none (images live in RAM)"), "{status}");
    shutdown_and_report_no_disk(vm);

    assert_eq!(sha256_file(&disk), before, "a disk with a newer layout was modified");
}

/// A container given the data disk (or `/var/lib/skiff`) plants a FIFO as
/// `config.toml` and symlinks as the log file and the build id record, all
/// pointing at a file of the user's: the next boot still comes up (before,
/// it hung at the config file, before any listener or the power button),
/// says what it refused, and neither writes through a link nor deletes
/// what was planted.
#[test]
fn files_planted_on_the_data_disk_never_stall_the_boot() {
    let scratch = Scratch::new("disk-planted");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.img");
    blank_disk(&disk, 1 << 30);

    let vm = boot_with_disk(&scratch.0, &disk);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let plant = "echo precious > /s/victim \
        && busybox rm -f /s/config.toml && busybox mkfifo /s/config.toml \
        && busybox rm -f /s/log/skiff.log && busybox ln -s /var/lib/skiff/victim /s/log/skiff.log \
        && busybox rm -f /d/skiff-last-build-id && busybox ln -s /var/lib/skiff/victim /d/skiff-last-build-id";
    vm.docker_ok(&["run", "--rm", "-v", "/var/lib/skiff:/s", "-v", "/mnt/skiff-data:/d", IMAGE, "sh", "-c", plant]);
    shutdown_and_report(vm, "planted");

    let vm = boot_with_disk(&scratch.0, &disk);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("config:") || l.contains("log:") || l.contains("disk:")) {
        eprintln!("planted: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::Mounted), "{:?}", vm.events());
    let refused = vm.noted(Note::FileRefused);
    assert!(refused.iter().any(|p| p == "/var/lib/skiff/config.toml"), "the FIFO config file was not refused: {refused:?}");
    assert!(refused.iter().any(|p| p == "/var/lib/skiff/log/skiff.log"), "the symlinked log file was not refused: {refused:?}");
    // Both paths are named on every boot (reading the config, opening the
    // log): a warning of the init's (the logger's level tag) names each.
    for path in ["/var/lib/skiff/config.toml", "/var/lib/skiff/log/skiff.log"] {
        assert!(names_all(&console, &[WARNING, path]), "no warning names {path}:\n{console}");
    }
    assert_eq!(vm.noted(Note::DiskMounted), ["/dev/vda1"], "{:?}", vm.events());
    let check = "cat /s/victim; [ -p /s/config.toml ] && echo fifo-kept; [ -L /s/log/skiff.log.1 ] && echo link-kept; \
        [ -f /s/log/skiff.log ] && [ ! -L /s/log/skiff.log ] && echo new-log; [ -f /d/skiff-last-build-id ] && echo build-id-file";
    let got = vm.docker_ok(&["run", "--rm", "-v", "/var/lib/skiff:/s", "-v", "/mnt/skiff-data:/d", IMAGE, "sh", "-c", check]);
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), ["precious", "fifo-kept", "link-kept", "new-log", "build-id-file"], "{got}");
    shutdown_and_report(vm, "planted (second boot)");
}

/// A data disk whose layout version file is a FIFO (planted by a container
/// given the disk's mount): the guest does not wait on it (before, every
/// boot hung there), says why, leaves the disk unmounted and unchanged,
/// and the engine runs in RAM.
#[test]
fn a_fifo_as_the_layout_version_file_is_refused_untouched() {
    let scratch = Scratch::new("disk-layout-fifo");
    let content = scratch.0.join("content");
    std::fs::create_dir_all(content.join("containers")).unwrap();
    let made = Command::new("mkfifo").arg(content.join("skiff-layout-version")).status().expect("mkfifo");
    assert!(made.success());
    let disk = scratch.0.join("fifo.img");
    ext4_disk(&disk, "skiff-data", &content);
    let before = sha256_file(&disk);

    let vm = boot_with_disk(&scratch.0, &disk);
    let console = vm.console();
    for line in console.lines().filter(|l| l.contains("disk:")) {
        eprintln!("layout-fifo: {line}");
    }
    assert_eq!(disk_outcome(&vm), Some(Disk::Refused("layout-unreadable".into())), "{:?}", vm.events());
    assert!(names_all(&console, &["/dev/vda", "skiff-layout-version"]), "the console should name the disk and the file:\n{console}");
    assert!(vm.noted(Note::DiskChecked).is_empty() && vm.noted(Note::DiskMounted).is_empty(), "{:?}", vm.events());
    assert!(vm.docker_ok(&["info", "--format", "{{.Driver}}"]).contains("overlay"));
    shutdown_and_report_no_disk(vm);
    assert_eq!(sha256_file(&disk), before, "the disk was modified");
}

/// Connects to guest `port` of the VM in `dir` and proves `secret`.
fn authenticate_on(dir: &Path, port: u32, secret: &skiff_proto::auth::Secret) -> std::io::Result<()> {
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("vsock.sock"))?;
    skiff_proto::hybrid::handshake(&mut s, port)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    skiff_proto::auth::authenticate(&mut s, secret, &skiff_proto::auth::nonce()?)
}

/// A broken `secret` in config.toml (here written by a container given
/// /var/lib/skiff) fails closed: the next boot says why and every port
/// refuses every connection, even one with the host's right secret (before,
/// it warned and went on with the host's secret, or, given none, served
/// everyone).
#[test]
fn a_broken_secret_setting_serves_no_connection() {
    let scratch = Scratch::new("disk-bad-secret");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.img");
    blank_disk(&disk, 1 << 30);
    let vm = boot_with_disk(&scratch.0, &disk);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&["run", "--rm", "-v", "/var/lib/skiff:/s", IMAGE, "sh", "-c", "echo 'secret = \"not-64-hex-digits\"' > /s/config.toml"]);
    shutdown_and_report(vm, "bad secret");

    // `skiff run` cannot reach the engine now (it keeps trying): started by hand.
    let mut run = skiff_tests::die_with_parent(&mut Command::new(skiff_tests::skiff_bin()))
        .arg("run").arg("--iso").arg(iso()).arg("--dir").arg(&scratch.0)
        .args(["--timeout", "300", "--ephemeral", "--disk"]).arg(&disk)
        .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
        .spawn().expect("start skiff run");
    // The guest's events come over the control port, which refuses this
    // host too: each port is tried until it answers (a listener not up yet
    // turns the connection away before the secret is asked for).
    let end = Instant::now() + Duration::from_secs(240);
    let mut secret = None;
    for port in [2375, 2376, 2377] {
        let refused = loop {
            secret = secret.or_else(|| skiff_proto::auth::Secret::from_hex(&std::fs::read_to_string(scratch.0.join("secret")).ok()?).ok());
            let tried = secret.as_ref().map(|secret| authenticate_on(&scratch.0, port, secret));
            let answered = matches!(tried, Some(Ok(()))) || matches!(tried, Some(Err(ref e)) if e.kind() == std::io::ErrorKind::PermissionDenied);
            if answered || Instant::now() > end {
                break tried;
            }
            thread::sleep(Duration::from_millis(500));
        };
        eprintln!("bad secret: port {port}, the right secret: {refused:?}");
        let e = refused.expect("no secret file from skiff run").expect_err("served with a broken secret setting");
        assert!(e.to_string().contains("the guest refused: the VM's secret setting cannot be used"), "port {port}: {e}");
    }
    let console = std::fs::read_to_string(scratch.0.join("console.log")).unwrap_or_default();
    for line in console.lines().filter(|l| l.contains("secret") || l.contains("vsock:")) {
        eprintln!("bad secret: {line}");
    }
    // People are told which setting of which file is refused, never its value.
    assert!(names_all(&console, &["/var/lib/skiff/config.toml", "secret"]), "the console should name the file and the key:\n{console}");
    assert!(!console.contains("not-64-hex-digits"), "the value reached the console");
    let stop = Command::new(skiff_tests::skiff_bin()).arg("stop").arg("--dir").arg(&scratch.0).output().expect("skiff stop");
    eprintln!("bad secret: skiff stop: {}", String::from_utf8_lossy(&stop.stderr).trim());
    let end = Instant::now() + Duration::from_secs(90);
    while run.try_wait().ok().flatten().is_none() && Instant::now() < end {
        thread::sleep(Duration::from_millis(200));
    }
    let ended = run.try_wait().ok().flatten().is_some();
    let _ = run.kill();
    let _ = run.wait();
    assert!(ended, "skiff run did not end after skiff stop");
}

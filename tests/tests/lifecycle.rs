//! The background lifecycle, as a user lives it: `skiff start` keeps images
//! on the state folder's data disk across stop and start, a second start
//! changes nothing, a killed VM's leftovers are cleaned up, `status` tells
//! the truth, and the docker context `skiff` reaches the engine.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use skiff_tests::{busybox_image, console_tail, docker_bin, iso, run_ok, run_with_input, skiff_bin, Scratch};

fn skiff(dir: &Path, docker_config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(skiff_bin());
    cmd.args(args).arg("--dir").arg(dir).env("DOCKER_CONFIG", docker_config).env_remove("SKIFF_ISO");
    run_with_input(&mut cmd, None, Duration::from_secs(500), &format!("skiff {}", args.join(" ")))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(dir: &Path, docker_config: &Path, args: &[&str]) -> String {
    let out = skiff(dir, docker_config, args);
    assert!(out.status.success(), "skiff {} failed:\n{}\nconsole:\n{}", args.join(" "), text(&out), console_tail(dir));
    text(&out)
}

fn docker(docker_config: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(docker_bin());
    cmd.arg("--context").arg("skiff").args(args).env("DOCKER_CONFIG", docker_config).env_remove("DOCKER_HOST");
    let out = run_with_input(&mut cmd, None, Duration::from_secs(300), &format!("docker {}", args.join(" ")));
    assert!(out.status.success(), "docker {} failed:\n{}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills what a failed test left running: `skiff start`'s VM is detached,
/// so nothing else would.
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for file in ["skiff.pid", "qemu.pid"] {
            if let Some(p) = fs::read_to_string(self.0.join(file)).ok().and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok()) {
                // SAFETY: kill(2) on a process this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

fn pid(path: &Path) -> i32 {
    fs::read_to_string(path).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// True once process `pid` has exited: gone, or a zombie its parent (here
/// whatever reaps orphans, which may be slow) has not collected yet.
fn exited(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()), Some("Z" | "X")),
    }
}

#[test]
fn images_survive_stop_start_and_a_crash() {
    let scratch = Scratch::new("life");
    let dir = scratch.0.join("vm");
    let _guard = KillOnDrop(dir.clone());
    let config = scratch.0.join("docker-config");
    let iso = iso();
    let iso_arg = iso.to_str().unwrap();

    // First start: creates the data disk, keeps its own copy of the ISO,
    // remembers the memory it was given, writes the context.
    let first = ok(&dir, &config, &["start", "--iso", iso_arg, "--memory", "1000", "--timeout", "400"]);
    assert!(first.contains("export DOCKER_HOST=unix://"), "{first}");
    assert!(first.contains("docker context `skiff`"), "{first}");
    assert!(dir.join("data.qcow2").is_file(), "no data disk created");
    assert!(fs::read_to_string(dir.join("settings")).unwrap().contains("memory=1000"));
    let status = ok(&dir, &config, &["status"]);
    eprintln!("status while running:\n{status}");
    assert!(status.contains("state: running"), "{status}");
    let images = fs::canonicalize(&dir).unwrap().join("images");
    assert!(status.contains(&format!("iso: {}", images.display())), "the VM must boot its own copy of the ISO:\n{status}");
    assert!(status.contains("memory: 1000 MiB"), "{status}");
    assert!(status.contains("engine: 5.") || status.contains("engine: 4."), "{status}");
    assert!(status.contains("data disk:"), "{status}");

    // The context reaches the engine without DOCKER_HOST.
    let version = docker(&config, &["version", "--format", "{{.Server.Version}}"]);
    assert!(!version.trim().is_empty());

    let archive = busybox_image(&scratch.0, "acc/busybox:latest");
    let loaded = docker(&config, &["load", "-i", archive.to_str().unwrap()]);
    eprintln!("load: {loaded}names: {}", docker(&config, &["images", "--format", "{{.Repository}}"]));

    // A second start changes nothing.
    let run_pid = pid(&dir.join("skiff.pid"));
    let again = ok(&dir, &config, &["start", "--memory", "2000"]);
    assert!(again.contains("already running"), "{again}");
    assert_eq!(pid(&dir.join("skiff.pid")), run_pid);
    assert!(fs::read_to_string(dir.join("settings")).unwrap().contains("memory=1000"), "a refused start must not change the settings");

    // Stop waits for the VM to exit.
    ok(&dir, &config, &["stop"]);
    assert!(exited(run_pid), "skiff run still running after stop");
    let status = ok(&dir, &config, &["status"]);
    eprintln!("status after stop:\n{status}");
    assert!(status.contains("state: stopped"), "{status}");
    assert!(!dir.join("docker.sock").exists());

    // Start again with no flags: same ISO copy, remembered memory, same disk.
    ok(&dir, &config, &["start", "--timeout", "400"]);
    let status = ok(&dir, &config, &["status"]);
    assert!(status.contains("memory: 1000 MiB"), "{status}");
    let listed = docker(&config, &["images", "--format", "{{.Repository}}"]);
    assert!(listed.contains("acc/busybox"), "image lost across stop/start: {listed}");

    // A crash: kill -9 of `skiff run` and QEMU leaves a pid file and sockets.
    let run_pid = pid(&dir.join("skiff.pid"));
    let qemu_pid = pid(&dir.join("qemu.pid"));
    for p in [run_pid, qemu_pid] {
        // SAFETY: kill(2) on processes this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for _ in 0..100 {
        if exited(qemu_pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir.join("skiff.pid").exists() && dir.join("docker.sock").exists(), "the crash should leave leftovers");
    let status = ok(&dir, &config, &["status"]);
    assert!(status.contains("state: stopped"), "a dead pid must not count as running:\n{status}");
    let after_crash = ok(&dir, &config, &["start", "--timeout", "400"]);
    assert!(after_crash.contains("cleaned up"), "{after_crash}");
    let listed = docker(&config, &["images", "--format", "{{.Repository}}"]);
    assert!(listed.contains("acc/busybox"), "image lost after a crash: {listed}");
    ok(&dir, &config, &["stop"]);
}

/// Rebuilds `iso` with another build id (the ISO's /skiff/build-id and, when
/// `initramfs_too`, the initramfs's /etc/skiff/build-id the init checks it
/// against; without it the init finds no medium and the engine never starts).
fn rebuilt_iso(iso: &Path, work: &Path, id: &str, initramfs_too: bool) -> std::path::PathBuf {
    let tree = work.join(format!("tree-{id}"));
    let _ = fs::remove_dir_all(&tree);
    run_ok(Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(iso).arg("-extract").arg("/").arg(&tree));
    run_ok(Command::new("chmod").arg("-R").arg("u+w").arg(&tree));
    fs::write(tree.join("skiff/build-id"), format!("{id}\n")).unwrap();
    if initramfs_too {
        let root = work.join(format!("initramfs-{id}"));
        fs::create_dir_all(&root).unwrap();
        let img = tree.join("boot/initramfs.img");
        run_ok(Command::new("sh").arg("-c").arg(format!("xz -dc '{}' | (cd '{}' && cpio -idm --quiet)", img.display(), root.display())));
        fs::write(root.join("etc/skiff/build-id"), format!("{id}\n")).unwrap();
        // The kernel's xz decoder needs CRC32 checks.
        run_ok(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | xz -q --check=crc32 -T1 > '{}'",
            root.display(), img.display())));
    }
    let out = work.join(format!("{id}.iso"));
    run_ok(Command::new("xorriso").args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", "SKIFF", "-no-pad", "-o"]).arg(&out)
        .args(["-b", "boot/grub/eltorito.img", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info",
            "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img",
            "--efi-boot", "efi.img", "-efi-boot-part", "--efi-boot-image", "--protective-msdos-label"])
        .arg(&tree));
    out
}

fn build_of(status: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix("iso: ")).and_then(|l| l.rsplit_once("(build ")).map(|(_, b)| b.trim_end_matches(')').to_string()).unwrap_or_default()
}

fn wait_running(config: &Path, name: &str) {
    for _ in 0..120 {
        let ps = docker(config, &["ps", "--filter", &format!("name={name}"), "--format", "{{.Names}} {{.Status}}"]);
        if ps.contains(name) && ps.contains("Up") {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("container {name} did not come back");
}

#[test]
fn update_falls_back_from_a_broken_iso_and_rolls_back() {
    let scratch = Scratch::new("update");
    let dir = scratch.0.join("vm");
    let _guard = KillOnDrop(dir.clone());
    let config = scratch.0.join("docker-config");
    let iso_a = iso();
    let a_id = fs::read_to_string(extract_build_id(&iso_a, &scratch.0)).unwrap().trim().to_string();
    let b_id = format!("{a_id}-b");
    let iso_b = rebuilt_iso(&iso_a, &scratch.0, &b_id, true);
    let broken = rebuilt_iso(&iso_a, &scratch.0, &format!("{a_id}-broken"), false);

    ok(&dir, &config, &["start", "--iso", iso_a.to_str().unwrap(), "--timeout", "400"]);
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), a_id);
    let archive = busybox_image(&scratch.0, "acc/busybox:latest");
    docker(&config, &["load", "-i", archive.to_str().unwrap()]);
    docker(&config, &["run", "-d", "--restart=always", "--network", "none", "--name", "keeper", "acc/busybox", "sleep", "100000"]);
    ok(&dir, &config, &["stop"]);

    // The update: same data disk, the container comes back.
    ok(&dir, &config, &["start", "--iso", iso_b.to_str().unwrap(), "--timeout", "400"]);
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), b_id);
    wait_running(&config, "keeper");
    let recorded = ok(&dir, &config, &["shell", "-c", "cat /mnt/skiff-data/skiff-last-build-id"]);
    assert!(recorded.contains(&b_id), "the data disk records the build that used it: {recorded}");
    ok(&dir, &config, &["stop"]);

    // A broken ISO: reported, and ISO B runs again with the same disk.
    let out = skiff(&dir, &config, &["start", "--iso", broken.to_str().unwrap(), "--timeout", "45"]);
    let said = text(&out);
    eprintln!("start with the broken ISO:\n{said}");
    assert!(!out.status.success(), "a broken ISO must be reported as a failure:\n{said}");
    assert!(said.contains("did not become ready") && said.contains(&format!("starting the previous ISO {b_id}")), "{said}");
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), b_id);
    wait_running(&config, "keeper");

    // Rollback by hand: ISO A with the same disk.
    ok(&dir, &config, &["rollback"]);
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), a_id);
    wait_running(&config, "keeper");
    ok(&dir, &config, &["stop"]);
}

/// Extracts an ISO's /skiff/build-id into `work` and returns its path.
fn extract_build_id(iso: &Path, work: &Path) -> std::path::PathBuf {
    let out = work.join("a-build-id");
    run_ok(Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(iso).arg("-extract").arg("/skiff/build-id").arg(&out));
    out
}

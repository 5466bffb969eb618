//! The background lifecycle, as a user lives it: `skiff start` keeps images
//! on the state folder's data disk across stop and start, a second start
//! changes nothing, a killed VM's leftovers are cleaned up, `status` tells
//! the truth (the guest's own figures, shares, ports, settings), settings
//! and shares are remembered, the docker context `skiff` reaches the
//! engine, and rewriting the ISO the CLI was given does not disturb a
//! running VM. The test process adopts the detached `skiff run` and reaps
//! it: a clean stop must end it with status 0 and leave no zombie.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use skiff_tests::{adopt_orphans, busybox_image, console_tail, docker_bin, iso, reap, run_ok, run_with_input, skiff_bin, Scratch};

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

/// A test's own scratch folder, with a VM state folder (`vm`, whose VM is
/// killed if the test fails) and a docker config folder in it; orphans are
/// adopted so the detached `skiff run` can be reaped.
struct Lab {
    scratch: Scratch,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    _guard: KillOnDrop,
}

impl Lab {
    fn new(name: &str) -> Lab {
        adopt_orphans();
        let scratch = Scratch::new(name);
        let dir = scratch.0.join("vm");
        let config = scratch.0.join("docker-config");
        Lab { _guard: KillOnDrop(dir.clone()), scratch, dir, config }
    }
}

fn pid(path: &Path) -> i32 {
    fs::read_to_string(path).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// True once process `pid` has exited: gone, or a zombie not reaped yet.
fn exited(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()), Some("Z" | "X")),
    }
}

/// `skiff stop`, then the detached `skiff run` (adopted by this test, see
/// `adopt_orphans`) must have exited cleanly: reaped here with status 0,
/// no zombie left.
fn stop(dir: &Path, config: &Path) {
    let run_pid = pid(&dir.join("skiff.pid"));
    ok(dir, config, &["stop"]);
    let status = reap(run_pid, Duration::from_secs(10)).expect("skiff run must have exited, and be ours to reap");
    assert!(status.success(), "skiff run exited with {status} after a clean stop; its log:\n{}", fs::read_to_string(dir.join("skiff.log")).unwrap_or_default());
    assert!(!Path::new(&format!("/proc/{run_pid}")).exists(), "skiff run left a zombie");
}

/// Lines of `status` that start with `key: `.
fn field<'a>(status: &'a str, key: &str) -> Vec<&'a str> {
    status.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix(": ")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn images_survive_stop_start_and_a_crash() {
    let lab = Lab::new("life");
    let (scratch, dir, config) = (&lab.scratch, lab.dir.clone(), lab.config.clone());
    let shared = scratch.0.join("shared");
    fs::create_dir_all(&shared).unwrap();
    let shared = fs::canonicalize(&shared).unwrap();
    let shared_arg = shared.to_str().unwrap();
    let iso = iso();
    let iso_arg = iso.to_str().unwrap();

    // First start: creates the data disk, keeps its own copy of the ISO,
    // remembers the memory and the share it was given, writes the context.
    let first = ok(&dir, &config, &["start", "--iso", iso_arg, "--memory", "1000", "--share", shared_arg, "--timeout", "400"]);
    assert!(first.contains("export DOCKER_HOST=unix://"), "{first}");
    assert!(first.contains("docker context `skiff`"), "{first}");
    assert!(!first.contains("cleaned up"), "a first start has nothing to clean: {first}");
    assert!(dir.join("data.qcow2").is_file(), "no data disk created");
    let settings = fs::read_to_string(dir.join("settings")).unwrap();
    assert!(settings.contains("memory=1000") && settings.contains(&format!("share={shared_arg}\n")), "{settings}");

    // A published port, for status to list.
    let archive = busybox_image(&scratch.0, "acc/busybox:latest");
    let loaded = docker(&config, &["load", "-i", archive.to_str().unwrap()]);
    eprintln!("load: {loaded}names: {}", docker(&config, &["images", "--format", "{{.Repository}}"]));
    let port = free_port();
    docker(&config, &["run", "-d", "--name", "web", "-p", &format!("127.0.0.1:{port}:8080"), "acc/busybox", "httpd", "-f", "-p", "8080"]);
    let want_port = format!("tcp 127.0.0.1:{port} -> ");
    let mut status = String::new();
    for _ in 0..60 {
        status = ok(&dir, &config, &["status"]);
        if field(&status, "port").iter().any(|p| p.starts_with(&want_port) && p.ends_with("listening")) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("status while running:\n{status}");
    assert!(status.contains("state: running"), "{status}");
    let images = fs::canonicalize(&dir).unwrap().join("images");
    assert!(status.contains(&format!("iso: {}", images.display())), "the VM must boot its own copy of the ISO:\n{status}");
    assert!(status.contains("memory: 1000 MiB"), "{status}");
    assert!(status.contains("engine: 5.") || status.contains("engine: 4."), "{status}");
    assert!(status.contains("data disk:"), "{status}");
    // The guest's own figures: its build is the ISO's, its memory is about
    // what QEMU gave it, the data disk is mounted, the share is mounted.
    let guest = field(&status, "guest");
    assert!(guest.len() == 1 && guest[0].starts_with("skiff ") && guest[0].contains(&format!(", build {}, up ", build_of(&status))), "{status}");
    let memory = field(&status, "guest memory");
    assert!(memory.len() == 1 && memory[0].contains(" used of ") && memory[0].ends_with(" available)"), "{status}");
    let of = memory[0].split(" used of ").nth(1).and_then(|r| r.split(" MiB").next()).and_then(|m| m.parse::<f64>().ok());
    assert!(of.is_some_and(|m| m > 700.0 && m <= 1000.0), "guest memory total should be a little under 1000 MiB: {status}");
    let disk = field(&status, "data disk in the guest");
    assert!(disk.len() == 1 && disk[0].contains(" used of ") && !disk[0].starts_with("none"), "{status}");
    assert_eq!(field(&status, "share").iter().filter(|s| **s == format!("{shared_arg} (virtiofs)")).count(), 1, "{status}");
    assert!(field(&status, "port").iter().any(|p| p.starts_with(&want_port) && p.ends_with("listening")), "{status}");
    assert!(field(&status, "settings").first().is_some_and(|s| s.contains("memory=1000") && s.contains(&format!("share={shared_arg}"))), "{status}");

    // The context reaches the engine without DOCKER_HOST.
    let version = docker(&config, &["version", "--format", "{{.Server.Version}}"]);
    assert!(!version.trim().is_empty());

    // A second start changes nothing.
    let run_pid = pid(&dir.join("skiff.pid"));
    let again = ok(&dir, &config, &["start", "--memory", "2000"]);
    assert!(again.contains("already running"), "{again}");
    assert_eq!(pid(&dir.join("skiff.pid")), run_pid);
    assert!(fs::read_to_string(dir.join("settings")).unwrap().contains("memory=1000"), "a refused start must not change the settings");

    // Stop waits for the VM to exit; its own exit removed the runtime files,
    // so there is nothing to report as a crashed VM's leftover.
    let stopped = ok(&dir, &config, &["stop"]);
    assert!(!stopped.contains("cleaned up"), "a clean stop is not a crash: {stopped}");
    let status_code = reap(run_pid, Duration::from_secs(10)).expect("skiff run exited and was ours to reap");
    assert!(status_code.success(), "skiff run exited with {status_code}");
    let status = ok(&dir, &config, &["status"]);
    eprintln!("status after stop:\n{status}");
    assert!(status.contains("state: stopped"), "{status}");
    assert!(status.contains("data disk:") && field(&status, "iso").len() == 1, "{status}");
    assert!(field(&status, "settings").first().is_some_and(|s| s.contains(&format!("share={shared_arg}"))), "{status}");
    for gone in ["docker.sock", "qmp.sock", "vsock.sock", "vhost.sock", "skiff.pid", "qemu.pid", "ports", "vsock-target", "fs-1.sock"] {
        assert!(!dir.join(gone).exists(), "{gone} left after a clean stop");
    }

    // Start again with no flags: same ISO copy, remembered memory and share, same disk.
    ok(&dir, &config, &["start", "--timeout", "400"]);
    let status = ok(&dir, &config, &["status"]);
    assert!(status.contains("memory: 1000 MiB"), "{status}");
    assert!(field(&status, "share").contains(&format!("{shared_arg} (virtiofs)").as_str()), "the remembered share is mounted again:\n{status}");
    let listed = docker(&config, &["images", "--format", "{{.Repository}}"]);
    assert!(listed.contains("acc/busybox"), "image lost across stop/start: {listed}");

    // A crash: kill -9 of `skiff run` and QEMU leaves a pid file and sockets.
    let run_pid = pid(&dir.join("skiff.pid"));
    let qemu_pid = pid(&dir.join("qemu.pid"));
    for p in [run_pid, qemu_pid] {
        // SAFETY: kill(2) on processes this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for p in [run_pid, qemu_pid] {
        assert!(reap(p, Duration::from_secs(10)).is_some(), "killed process {p} not reaped");
    }
    assert!(exited(qemu_pid));
    assert!(dir.join("skiff.pid").exists() && dir.join("docker.sock").exists(), "the crash should leave leftovers");
    let status = ok(&dir, &config, &["status"]);
    assert!(status.contains("state: stopped"), "a dead pid must not count as running:\n{status}");
    // Changed by this start: no shares any more, and that is remembered.
    let after_crash = ok(&dir, &config, &["start", "--no-shares", "--timeout", "400"]);
    assert!(after_crash.contains("cleaned up"), "{after_crash}");
    let status = ok(&dir, &config, &["status"]);
    assert_eq!(field(&status, "shares"), ["none"], "--no-shares replaces the remembered share:\n{status}");
    let settings = fs::read_to_string(dir.join("settings")).unwrap();
    assert!(settings.contains("no_shares=true") && !settings.contains("share=/"), "{settings}");
    let listed = docker(&config, &["images", "--format", "{{.Repository}}"]);
    assert!(listed.contains("acc/busybox"), "image lost after a crash: {listed}");
    stop(&dir, &config);
}

/// Overwrites a file in place (same inode, same size), as a rebuild
/// writing over the ISO the CLI was given would.
fn scribble_over(path: &Path) {
    use std::io::Write;
    let len = fs::metadata(path).unwrap().len() as usize;
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(&vec![0x5a; len]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn rewriting_the_iso_does_not_disturb_a_running_vm() {
    let lab = Lab::new("life-iso");
    let (scratch, dir, config) = (&lab.scratch, lab.dir.clone(), lab.config.clone());
    // The ISO the CLI is given: a file of the test's own, as out/skiff.iso is `make iso`'s.
    let given = scratch.0.join("given.iso");
    fs::copy(iso(), &given).unwrap();
    ok(&dir, &config, &["start", "--iso", given.to_str().unwrap(), "--ephemeral", "--no-shares", "--timeout", "400"]);
    let archive = busybox_image(&scratch.0, "acc/busybox:latest");
    docker(&config, &["load", "-i", archive.to_str().unwrap()]);

    scribble_over(&given);
    // The guest reads /usr from the ISO's squashfs on demand: with its page
    // cache dropped, reading files goes to the medium again (mke2fs and
    // e2fsck never ran in this VM: it has no disk, so none of them is mapped).
    let read = ok(&dir, &config, &["shell", "-c",
        "sync; echo 3 > /proc/sys/vm/drop_caches; for f in /usr/bin/podman /usr/sbin/mke2fs /usr/sbin/e2fsck; do echo \"$(wc -c < $f) $(stat -c %s $f)\"; done"]);
    let pairs: Vec<(&str, &str)> = read.lines().filter_map(|l| l.trim().split_once(' ')).collect();
    assert!(pairs.len() == 3 && pairs.iter().all(|(read, size)| read == size && size.parse::<u64>().is_ok_and(|n| n > 0)),
        "reading /usr after the ISO was overwritten: {read}");
    let hello = docker(&config, &["run", "--rm", "--network", "none", "acc/busybox", "echo", "still here"]);
    assert_eq!(hello.trim(), "still here");
    let console = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    assert!(!console.contains("SQUASHFS error") && !console.contains("I/O error"), "medium errors on the console:\n{}", console_tail(&dir));
    stop(&dir, &config);
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
    let lab = Lab::new("update");
    let (scratch, dir, config) = (&lab.scratch, lab.dir.clone(), lab.config.clone());
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
    stop(&dir, &config);

    // The update: same data disk, the container comes back.
    ok(&dir, &config, &["start", "--iso", iso_b.to_str().unwrap(), "--timeout", "400"]);
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), b_id);
    wait_running(&config, "keeper");
    let recorded = ok(&dir, &config, &["shell", "-c", "cat /mnt/skiff-data/skiff-last-build-id"]);
    assert!(recorded.contains(&b_id), "the data disk records the build that used it: {recorded}");
    stop(&dir, &config);

    // A broken ISO: reported, and ISO B runs again with the same disk.
    let out = skiff(&dir, &config, &["start", "--iso", broken.to_str().unwrap(), "--timeout", "45"]);
    let said = text(&out);
    eprintln!("start with the broken ISO:\n{said}");
    assert!(!out.status.success(), "a broken ISO must be reported as a failure:\n{said}");
    assert!(said.contains("did not become ready") && said.contains(&format!("starting the previous ISO {b_id}")), "{said}");
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), b_id);
    wait_running(&config, "keeper");

    // Rollback by hand: ISO A with the same disk.
    let b_run = pid(&dir.join("skiff.pid"));
    ok(&dir, &config, &["rollback"]);
    assert!(reap(b_run, Duration::from_secs(10)).is_some_and(|s| s.success()), "rollback stops the running VM cleanly");
    assert_eq!(build_of(&ok(&dir, &config, &["status"])), a_id);
    wait_running(&config, "keeper");
    stop(&dir, &config);
}

/// Extracts an ISO's /skiff/build-id into `work` and returns its path.
fn extract_build_id(iso: &Path, work: &Path) -> std::path::PathBuf {
    let out = work.join("a-build-id");
    run_ok(Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(iso).arg("-extract").arg("/skiff/build-id").arg(&out));
    out
}

/// The pid of the vhost-device-vsock serving the VM of state folder `dir`,
/// if it runs one (hybrid vsock: no /dev/vhost-vsock).
fn vsock_daemon_of(dir: &Path) -> Option<i32> {
    let socket = format!("socket={}", dir.join("vhost.sock").display());
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let daemon = args.first().is_some_and(|a| a.ends_with("vhost-device-vsock"));
        (daemon && args.iter().any(|a| a.contains(&socket))).then_some(pid)
    })
}

/// A transport that stops carrying connections once the guest's engine is up
/// (the vsock device frozen with SIGSTOP, as a wedged device would behave) is
/// reported as such, and `skiff run` (under `skiff start`) boots once more
/// instead of waiting out its time limit; the first console is kept.
#[test]
fn a_start_whose_vsock_device_wedges_boots_once_more() {
    if Path::new("/dev/vhost-vsock").exists() {
        eprintln!("SKIPPED: the kernel's vhost-vsock is used here; this test freezes the user-space vsock device");
        return;
    }
    let lab = Lab::new("life-wedge");
    let (dir, config) = (lab.dir.clone(), lab.config.clone());
    let iso = iso();
    let (dir2, config2) = (dir.clone(), config.clone());
    let start = std::thread::spawn(move || {
        skiff(&dir2, &config2, &["start", "--iso", iso.to_str().unwrap(), "--ephemeral", "--no-shares", "--timeout", "400"])
    });
    // Freeze the device once the guest reports its engine started: the
    // guest's own readiness check does not use vsock, so it still becomes
    // ready, but neither its event nor a keep-alive reaches the host now.
    let mut frozen = None;
    // What the first boot's console held then, to find it again afterwards.
    let mut first_boot = Vec::new();
    for _ in 0..3000 {
        if skiff_tests::events_in(&dir).iter().any(|s| matches!(s.event, skiff_proto::events::Event::EngineStarted { .. })) {
            first_boot = fs::read(dir.join("console.log")).unwrap_or_default();
            if let Some(pid) = vsock_daemon_of(&dir) {
                // SAFETY: kill(2) on the vsock device of this test's VM.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
                frozen = Some(pid);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = start.join().unwrap();
    let said = text(&out);
    eprintln!("start with a frozen vsock device:\n{said}");
    assert!(frozen.is_some(), "the guest never started its engine, or no vsock device was found:\n{said}\n{}", console_tail(&dir));
    assert!(out.status.success(), "the second boot must succeed:\n{said}\n{}", console_tail(&dir));
    assert!(said.contains("the host cannot reach the guest's engine"), "{said}");
    assert!(said.contains("booting once more"), "{said}");
    assert!(!Path::new(&format!("/proc/{}", frozen.unwrap())).exists(), "the frozen vsock device was left behind");
    // The first boot's console is kept as console.log.1: what it held when
    // the device froze (a whole boot: the kernel ran /init), and more.
    let first = fs::read(dir.join("console.log.1")).unwrap_or_default();
    let ran_init = String::from_utf8_lossy(&first_boot).contains("Run /init as init process");
    assert!(ran_init && first.starts_with(&first_boot), "the first boot's console ({} bytes when frozen) is not kept as console.log.1 ({} bytes)",
        first_boot.len(), first.len());
    let hello = docker(&config, &["version", "--format", "{{.Server.Version}}"]);
    assert!(!hello.trim().is_empty());
    stop(&dir, &config);
}

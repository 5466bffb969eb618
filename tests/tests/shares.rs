//! Host folders at the same path: `skiff run` shares the home folder (and
//! any `--share`) and containers bind-mount host paths as if the engine ran
//! on the host. One boot over virtio-fs checks most of it, one over 9p a
//! subset; a system folder is refused before any VM starts.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::Note;
use skiff_tests::{busybox_image, iso, noted_in, skiff_bin, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox";

/// A scratch folder inside the home folder (shared by default), removed on drop.
struct HomeScratch(PathBuf);

impl HomeScratch {
    fn new(name: &str) -> Self {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
        let dir = home.join(format!(".skiff-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for HomeScratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `docker run --rm -v HOST:TARGET IMAGE sh -c CMD` (more options in `opts`).
fn run_sh(vm: &Vm, opts: &[&str], volume: &str, cmd: &str) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", "-v", volume];
    args.extend(opts);
    args.extend([IMAGE, "sh", "-c", cmd]);
    vm.docker_ok(&args)
}

/// virtiofsd processes serving sockets in `dir`.
fn virtiofsd_for(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("virtiofsd") && cmd.contains(s(dir)) {
            found.push(cmd);
        }
    }
    found
}

/// Waits up to `limit` for `path` to exist on the host.
fn appears(path: &Path, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if path.exists() {
            return Some(t.elapsed());
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

/// A running container polls a shared file; the host edits it and the
/// container answers by writing a marker file. Returns the host-side time
/// from the edit to the marker.
fn host_edit_seen(vm: &Vm, host_dir: &Path, guest_dir: &str, name: &str) -> Duration {
    let live = host_dir.join("live.txt");
    let (ready, seen) = (host_dir.join("watch-ready"), host_dir.join("watch-seen"));
    fs::write(&live, "v1\n").unwrap();
    let script = format!(
        "cd {guest_dir}; while ! grep -q v1 live.txt; do sleep 0.05; done; echo > watch-ready; \
         while ! grep -q v2 live.txt; do sleep 0.05; done; echo > watch-seen"
    );
    vm.docker_ok(&["run", "-d", "--name", name, "--network", "none", "-v", &format!("{}:{guest_dir}", s(host_dir)), IMAGE, "sh", "-c", &script]);
    assert!(appears(&ready, Duration::from_secs(60)).is_some(), "the watching container never read v1");
    thread::sleep(Duration::from_millis(300));
    // Rewritten in place, as an editor that keeps the inode does.
    fs::write(&live, "v2\n").unwrap();
    let took = appears(&seen, Duration::from_secs(10)).expect("the container never saw the host's edit");
    vm.docker_ok(&["rm", "-f", name]);
    took
}

#[test]
fn virtiofs_shares_home_and_folders_at_the_same_path() {
    let scratch = Scratch::new("shares-vfs");
    let home = HomeScratch::new("vfs");
    let extra = scratch.0.join("extra");
    fs::create_dir_all(&extra).unwrap();
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let state = scratch.0.join("state");
    let vm = Vm::boot_with(&state, &["--share", s(&extra)]);
    vm.docker_ok(&["load", "-i", s(&image)]);

    // The home folder is shared by default, --share adds one, both over virtio-fs.
    let mounts = vm.shell_ok("grep -E ' (virtiofs|9p) ' /proc/mounts");
    let home_dir = std::env::var("HOME").unwrap();
    assert!(mounts.contains(&format!(" {home_dir} virtiofs ")), "home not mounted:\n{mounts}");
    assert!(mounts.contains(&format!(" {} virtiofs ", s(&extra))), "--share not mounted:\n{mounts}");

    // Host → container, at the same path and at /src.
    let d = s(&home.0);
    fs::write(home.0.join("hello.txt"), "from the host\n").unwrap();
    assert_eq!(run_sh(&vm, &[], &format!("{d}:{d}"), &format!("cat {d}/hello.txt")), "from the host\n");
    assert_eq!(run_sh(&vm, &[], &format!("{d}:/src"), "cat /src/hello.txt"), "from the host\n");
    fs::write(extra.join("x.txt"), "extra\n").unwrap();
    assert_eq!(run_sh(&vm, &[], &format!("{}:/src", s(&extra)), "cat /src/x.txt"), "extra\n");

    // Container → host; run as root, the container's uids pass through.
    run_sh(&vm, &[], &format!("{d}:/src"), "echo from the container > /src/out.txt");
    assert_eq!(fs::read_to_string(home.0.join("out.txt")).unwrap(), "from the container\n");
    assert_eq!(fs::metadata(home.0.join("out.txt")).unwrap().uid(), 0);
    let u1000 = home.0.join("u1000");
    fs::create_dir(&u1000).unwrap();
    std::os::unix::fs::chown(&u1000, Some(1000), Some(1000)).unwrap();
    run_sh(&vm, &["-u", "1000"], &format!("{d}:/src"), "echo user > /src/u1000/f; id -u > /src/u1000/id || true");
    let meta = fs::metadata(u1000.join("f")).unwrap();
    assert_eq!((meta.uid(), fs::read_to_string(u1000.join("f")).unwrap().as_str()), (1000, "user\n"));

    // Symlinks both ways.
    symlink("hello.txt", home.0.join("host-link")).unwrap();
    assert_eq!(run_sh(&vm, &[], &format!("{d}:/src"), "cat /src/host-link"), "from the host\n");
    run_sh(&vm, &[], &format!("{d}:/src"), "busybox ln -s out.txt /src/guest-link");
    assert_eq!(fs::read_link(home.0.join("guest-link")).unwrap(), Path::new("out.txt"));
    assert_eq!(fs::read_to_string(home.0.join("guest-link")).unwrap(), "from the container\n");

    // Open, unlink, then read: the open file outlives its name.
    fs::write(home.0.join("doomed.txt"), "still readable\n").unwrap();
    let read = run_sh(&vm, &[], &format!("{d}:/src"), "exec 3< /src/doomed.txt; busybox rm /src/doomed.txt; cat <&3; [ ! -e /src/doomed.txt ] && echo gone");
    assert_eq!(read, "still readable\ngone\n");
    assert!(!home.0.join("doomed.txt").exists());

    // A host edit reaches a running container within a second.
    let took = host_edit_seen(&vm, &home.0, "/src", "watch-vfs");
    eprintln!("shares: virtiofs: host edit seen by a running container after {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(took < Duration::from_secs(1), "host edit seen only after {took:?}");

    // Clean shutdown: the guest unmounts the shares, no virtiofsd and no
    // socket (or its pid file) stay.
    assert!(!virtiofsd_for(&state).is_empty(), "no virtiofsd while the VM runs?");
    vm.shutdown();
    let unmounted = noted_in(&state, Note::ShareUnmounted);
    for share in [home_dir.as_str(), s(&extra)] {
        assert!(unmounted.iter().any(|u| u == share), "{share} not unmounted at shutdown: {unmounted:?}");
    }
    assert_eq!(virtiofsd_for(&state), Vec::<String>::new(), "virtiofsd left running");
    let sockets: Vec<_> = fs::read_dir(&state).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fs-")).collect();
    assert!(sockets.is_empty(), "sockets left in the state folder: {sockets:?}");
}

#[test]
fn ninep_fallback_shares_a_folder() {
    let scratch = Scratch::new("shares-9p");
    let shared = scratch.0.join("shared");
    fs::create_dir_all(&shared).unwrap();
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot_with(&scratch.0.join("state"), &["--share-via", "9p", "--share", s(&shared)]);
    vm.docker_ok(&["load", "-i", s(&image)]);
    let d = s(&shared);
    let mounts = vm.shell_ok("grep -E ' (virtiofs|9p) ' /proc/mounts");
    assert!(mounts.contains(&format!(" {d} 9p ")), "not mounted over 9p:\n{mounts}");

    fs::write(shared.join("hello.txt"), "over 9p\n").unwrap();
    assert_eq!(run_sh(&vm, &[], &format!("{d}:{d}"), &format!("cat {d}/hello.txt")), "over 9p\n");
    assert_eq!(run_sh(&vm, &[], &format!("{d}:/src"), "cat /src/hello.txt"), "over 9p\n");
    run_sh(&vm, &[], &format!("{d}:/src"), "echo back > /src/out.txt; busybox ln -s out.txt /src/guest-link");
    assert_eq!(fs::read_to_string(shared.join("guest-link")).unwrap(), "back\n");
    assert_eq!(fs::metadata(shared.join("out.txt")).unwrap().uid(), 0);
    let took = host_edit_seen(&vm, &shared, "/src", "watch-9p");
    eprintln!("shares: 9p: host edit seen by a running container after {:.0} ms", took.as_secs_f64() * 1000.0);
    assert!(took < Duration::from_secs(1), "host edit seen only after {took:?}");
    vm.shutdown();
}

#[test]
fn a_system_folder_is_refused_before_any_vm_starts() {
    let scratch = Scratch::new("shares-refused");
    let state = scratch.0.join("state");
    let link = scratch.0.join("looks-harmless");
    symlink("/usr", &link).unwrap();
    for bad in ["/etc", s(&link)] {
        let started = Instant::now();
        let out = Command::new(skiff_bin())
            .args(["run", "--iso", s(&iso()), "--dir", s(&state), "--share", bad])
            .output()
            .expect("run skiff");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "skiff run accepted --share {bad}");
        assert!(err.contains(&format!("refusing to share {bad}")) && err.contains("system folder"), "unclear message: {err}");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: did a VM start?", started.elapsed());
        assert!(!state.join("console.log").exists(), "a VM was started");
    }
}

/// A uid with no account here: `skiff run` as a normal user.
const USER: u32 = 4242;

/// Run as a normal user (no root, no /dev/kvm), whatever uid a container
/// writes with, the file is the user's on the host; the user's files are
/// uid 1000's in the guest, so `-u 1000` can write to them.
#[test]
fn as_a_normal_user_container_files_belong_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("shares-user");
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    // The user's own world: a home, and copies of the device daemons
    // (root's cargo folder is closed to others).
    let home = scratch.0.join("home");
    let bin = scratch.0.join("bin");
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&bin).unwrap();
    for tool in ["virtiofsd", "vhost-device-vsock"] {
        let from = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo/bin")])
            .map(|d| d.join(tool)).find(|p| p.is_file()).unwrap_or_else(|| panic!("no {tool} (make deps installs it)"));
        fs::copy(&from, bin.join(tool)).unwrap();
    }
    for dir in [&scratch.0, &bin] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(&home, Some(USER), Some(USER)).unwrap();
    let project = home.join("project");
    fs::create_dir(&project).unwrap();
    std::os::unix::fs::chown(&project, Some(USER), Some(USER)).unwrap();
    let open = project.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(project.join("mine.txt"), "the user's\n").unwrap();
    std::os::unix::fs::chown(project.join("mine.txt"), Some(USER), Some(USER)).unwrap();

    let ids = format!("--reuid={USER}");
    let gids = format!("--regid={USER}");
    let env_home = format!("HOME={}", s(&home));
    let env_path = format!("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", s(&bin));
    let as_user = ["setpriv", &ids, &gids, "--clear-groups", "env", &env_home, &env_path];
    let state = home.join(".skiff");
    let vm = Vm::boot_wrapped(&state, &as_user, &[]);
    vm.docker_ok(&["load", "-i", s(&image)]);
    let vol = format!("{}:/src", s(&project));

    // The user's files are uid 1000's in the guest.
    let listed = run_sh(&vm, &[], &vol, "ls -ln /src/mine.txt");
    assert!(listed.split_whitespace().nth(2) == Some("1000"), "{listed}");
    // Container root, -u 1000 and another uid (in a world-writable folder) write.
    run_sh(&vm, &[], &vol, "echo root > /src/by-root; echo root > /src/open/by-root");
    run_sh(&vm, &["-u", "1000"], &vol, "echo 1000 > /src/by-1000");
    run_sh(&vm, &["-u", "33:33"], &vol, "echo 33 > /src/open/by-33");
    for f in ["by-root", "open/by-root", "by-1000", "open/by-33"] {
        let meta = fs::metadata(project.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!((meta.uid(), meta.gid()), (USER, USER), "{f} is not the user's on the host");
    }
    // chown in the container does not hand files to other host users.
    run_sh(&vm, &[], &vol, "busybox chown 123:123 /src/by-root");
    assert_eq!(fs::metadata(project.join("by-root")).unwrap().uid(), USER);

    // The state folder lies in the shared home: a container given the home
    // sees it empty and cannot plant anything in it.
    let (h, st) = (s(&home), s(&state));
    let seen = run_sh(&vm, &[], &format!("{h}:{h}"), &format!("cat {h}/project/mine.txt; ls -A {st}; cat {st}/secret 2>/dev/null && echo LEAK; touch {st}/x 2>/dev/null && echo PLANTED; echo ok"));
    assert_eq!(seen, "the user's\nok\n", "the state folder shows through the shared home");
    assert!(state.join("secret").is_file() && !state.join("x").exists());

    vm.shutdown_wrapped(&as_user[..4]);
    assert_eq!(virtiofsd_for(&state), Vec::<String>::new(), "virtiofsd left running");
}

/// A container given a folder that holds the VM's state folder (`~/.skiff`
/// in the shared home, or any `--dir` in a `--share`) sees the state
/// folder empty and read-only: not the secret, not the records the CLI
/// trusts; nor does the guest. Over 9p, which cannot hide it, such a share
/// is refused.
#[test]
fn the_state_folder_never_shows_through_a_share() {
    let scratch = Scratch::new("shares-hidden");
    let shared = scratch.0.join("shared");
    let state = shared.join(".skiff");
    fs::create_dir_all(&state).unwrap();
    let (d, st) = (s(&shared), s(&state));
    for (via, share, why) in [("9p", d, "holds the state folder"), ("virtiofs", st, "lies in the VM's state folder")] {
        let out = Command::new(skiff_bin())
            .args(["run", "--iso", s(&iso()), "--dir", st, "--share-via", via, "--share", share, "--ephemeral"])
            .output()
            .expect("run skiff");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "--share-via {via} --share {share}: {err}");
        assert!(!state.join("console.log").exists(), "a VM was started");
    }

    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot_with(&state, &["--share", d]);
    vm.docker_ok(&["load", "-i", s(&image)]);
    assert!(state.join("secret").is_file(), "the host keeps its secret");
    // The rest of the share is there (the marker), the state folder is empty.
    fs::write(shared.join("marker"), "shared\n").unwrap();
    let probe = format!("cat {d}/marker; ls -A {st}; cat {st}/secret 2>/dev/null && echo LEAK; ln -s /etc/passwd {st}/ports.tmp 2>/dev/null && echo PLANTED; echo ok");
    assert_eq!(run_sh(&vm, &[], &format!("{d}:{d}"), &probe), "shared\nok\n", "a container sees the state folder");
    assert_eq!(vm.shell_ok(&probe), "shared\nok\n", "the guest sees the state folder");
    assert!(!state.join("ports.tmp").is_symlink());
    vm.shutdown();
}

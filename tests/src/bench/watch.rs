//! Host edits for file watchers in containers: a write on the host → the
//! event a container's inotify watcher prints, read through `docker logs
//! -f` (so an upper bound), median and p99; and the CPU `skiff run` and
//! QEMU spend over an idle stretch. With `--watch on` and `off`, one boot
//! each (off, the container never sees a host write: a few are tried).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::boot;
use crate::{docker_bin, static_test_bin, Vm};

pub struct Side {
    /// Seconds from each host write to the container's event line.
    pub seen: Vec<f64>,
    /// Writes the container did not see within [`SEEN_LIMIT`].
    pub missed: usize,
    /// CPU seconds over [`IDLE`]: `skiff run`, and QEMU (the guest's).
    pub idle_cpu_skiff: f64,
    pub idle_cpu_qemu: f64,
    /// A burst of [`BURST`] files written on the host (a `git checkout`),
    /// then one more: when the container saw that last one, if it did
    /// within [`BURST_LIMIT`], and how many event lines it got meanwhile.
    pub burst_last_seen: Option<f64>,
    pub burst_events: usize,
}

pub struct Watch {
    pub on: Side,
    pub off: Side,
}

/// The idle stretch whose CPU is measured.
pub const IDLE: Duration = Duration::from_secs(30);
const SEEN_LIMIT: Duration = Duration::from_secs(5);
/// Files in the burst, and how long its last write may take to be seen.
pub const BURST: usize = 10_000;
const BURST_LIMIT: Duration = Duration::from_secs(60);
const IMAGE: &str = "skiff-bench/watch:latest";

/// utime + stime of `pid`, seconds.
fn cpu(pid: i32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The parent of `pid` (QEMU's is `skiff run`).
fn parent(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// Event lines of container `w` as they come, with their arrival time.
fn follow(vm: &Vm) -> mpsc::Receiver<(Instant, String)> {
    let mut child = Command::new(docker_bin()).env("DOCKER_HOST", &vm.docker_host).args(["logs", "-f", "w"]).stdout(Stdio::piped()).spawn().expect("docker logs -f");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    });
    rx
}

/// Writes `name` in `shared` and waits for the container's line naming it.
fn write_seen(shared: &Path, name: &str, events: &mpsc::Receiver<(Instant, String)>, limit: Duration) -> Option<f64> {
    while events.try_recv().is_ok() {}
    let t0 = Instant::now();
    fs::write(shared.join(name), "x").expect("write");
    while let Some(left) = limit.checked_sub(t0.elapsed()) {
        match events.recv_timeout(left) {
            Ok((at, line)) if line.ends_with(&format!("\t{name}")) => return Some(at.duration_since(t0).as_secs_f64()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Writes [`BURST`] files in a new folder, then one more beside it; the
/// time from the first write to the container's line naming the last, and
/// the event lines received until then (or until [`BURST_LIMIT`]).
fn burst(shared: &Path, events: &mpsc::Receiver<(Instant, String)>) -> (Option<f64>, usize) {
    while events.try_recv().is_ok() {}
    let folder = shared.join("burst");
    fs::create_dir_all(&folder).expect("create burst folder");
    let t0 = Instant::now();
    for i in 0..BURST {
        fs::write(folder.join(format!("b{i}")), "x").expect("write");
    }
    fs::write(shared.join("burst-last"), "x").expect("write");
    let mut lines = 0;
    while let Some(left) = BURST_LIMIT.checked_sub(t0.elapsed()) {
        match events.recv_timeout(left) {
            Ok((at, line)) => {
                lines += 1;
                if line.ends_with("\tburst-last") {
                    return (Some(at.duration_since(t0).as_secs_f64()), lines);
                }
            }
            Err(_) => break,
        }
    }
    (None, lines)
}

fn side(dir: &Path, mem: &str, image: &Path, on: bool, writes: usize) -> Side {
    let shared = dir.join("shared");
    fs::create_dir_all(&shared).expect("create shared folder");
    let switch = if on { "on" } else { "off" };
    let (vm, _) = boot::boot(&dir.join("vm"), &["--memory", mem, "--share", shared.to_str().unwrap(), "--watch", switch]);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let volume = format!("{0}:{0}", shared.display());
    vm.docker_ok(&["run", "-d", "--name", "w", "--network", "none", "-v", &volume, IMAGE, "inotify_watch", shared.to_str().unwrap()]);
    let events = follow(&vm);
    assert!(events.recv_timeout(Duration::from_secs(60)).is_ok_and(|(_, l)| l == "ready"), "the watcher did not start");
    // The first write waits for the host's first walk of the shares.
    let warm = write_seen(&shared, "warm-up", &events, Duration::from_secs(if on { 60 } else { 5 }));
    assert_eq!(warm.is_some(), on, "--watch {switch}: warm-up write seen: {warm:?}");
    let qemu = vm.qemu_pid().expect("QEMU pid");
    let skiff = parent(qemu);
    let (s0, q0) = (cpu(skiff), cpu(qemu));
    thread::sleep(IDLE);
    let (idle_cpu_skiff, idle_cpu_qemu) = (cpu(skiff) - s0, cpu(qemu) - q0);
    let (mut seen, mut missed) = (Vec::new(), 0);
    for i in 0..writes {
        match write_seen(&shared, &format!("f{i}"), &events, SEEN_LIMIT) {
            Some(t) => seen.push(t),
            None => missed += 1,
        }
        thread::sleep(Duration::from_millis(200));
    }
    let (burst_last_seen, burst_events) = burst(&shared, &events);
    vm.shutdown();
    Side { seen, missed, idle_cpu_skiff, idle_cpu_qemu, burst_last_seen, burst_events }
}

/// Two boots: watch on (`writes` writes), then off (3 writes).
pub fn measure(dir: &Path, mem: &str, busybox_root: impl Fn(&Path), writes: usize) -> Watch {
    let root = dir.join("watch-root");
    busybox_root(&root);
    fs::copy(static_test_bin("inotify_watch"), root.join("bin/inotify_watch")).expect("copy inotify_watch");
    let image = crate::image_tar(dir, &root, IMAGE, r#""Env":["PATH=/bin"],"Cmd":["sh"]"#);
    let run = |on: bool, n: usize| {
        let switch = if on { "on" } else { "off" };
        let d = dir.join(format!("watch-{switch}"));
        fs::create_dir_all(&d).expect("create VM folder");
        eprintln!("bench: host edits to file watchers, --watch {switch}");
        side(&d, mem, &image, on, n)
    };
    let on = run(true, writes);
    let off = run(false, 3);
    Watch { on, off }
}

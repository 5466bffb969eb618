//! Host folder shares, virtio-fs against 9p: `find` over a tree of small
//! files the host made, and a big file written and read back, timed in the
//! guest (`skiff shell`, guest uptime before and after, 10 ms resolution).

use std::fs;
use std::path::Path;

use crate::Vm;

/// Files in the `find` tree (100 folders of 100).
pub const TREE_FILES: usize = 10_000;

/// One transport's figures, in seconds.
#[derive(Debug, Clone)]
pub struct ShareFigures {
    pub via: &'static str,
    /// `find | wc -l` over the tree: the first (cold) run, then two warm ones.
    pub find_cold: f64,
    pub find_warm: Vec<f64>,
    pub big_mib: u64,
    /// `dd` of the big file to the share, with fsync.
    pub write: f64,
    /// `dd` of it back, after dropping the guest's caches.
    pub read: f64,
}

impl ShareFigures {
    pub fn write_mib_s(&self) -> f64 {
        self.big_mib as f64 / self.write
    }
    pub fn read_mib_s(&self) -> f64 {
        self.big_mib as f64 / self.read
    }
}

/// Makes the tree on the host (once, shared by every transport's run).
pub fn make_tree(dir: &Path) {
    for d in 0..TREE_FILES / 100 {
        let sub = dir.join(format!("d{d:03}"));
        fs::create_dir_all(&sub).expect("create tree folder");
        for f in 0..100 {
            fs::write(sub.join(format!("f{f:03}")), b"x\n").expect("create tree file");
        }
    }
}

/// Runs `cmd` in the guest and returns its stdout and the seconds it took.
fn timed(vm: &Vm, cmd: &str) -> (String, f64) {
    let script = format!("read a _ < /proc/uptime; {cmd}; read b _ < /proc/uptime; echo \"took $a $b\"");
    let out = vm.shell_ok(&script);
    let (body, last) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim_end()));
    let mut f = last.strip_prefix("took ").expect("timing line").split(' ').map(|v| v.parse::<f64>().expect("uptime"));
    let (a, b) = (f.next().expect("start"), f.next().expect("end"));
    (body.to_string(), b - a)
}

/// Measures one transport on `dir` (shared with the VM at the same path;
/// it holds the tree made by [`make_tree`]).
pub fn measure(vm: &Vm, via: &'static str, tree: &Path, dir: &Path, big_mib: u64) -> ShareFigures {
    let t = tree.display();
    let mounts = vm.shell_ok("cat /proc/mounts");
    assert!(mounts.lines().any(|l| l.split(' ').nth(2) == Some(via)), "no {via} mount in the guest:\n{mounts}");
    let mut finds = Vec::new();
    for _ in 0..3 {
        let (out, secs) = timed(vm, &format!("find {t} -type f | wc -l"));
        assert_eq!(out.trim().parse::<usize>().ok(), Some(TREE_FILES), "find saw {out:?}");
        finds.push(secs);
    }
    let big = dir.join(format!("big-{via}"));
    let b = big.display();
    let (_, write) = timed(vm, &format!("dd if=/dev/zero of={b} bs=1M count={big_mib} conv=fsync 2>/dev/null"));
    assert_eq!(fs::metadata(&big).expect("big file on the host").len(), big_mib << 20, "the host did not get the whole file");
    vm.shell_ok("sync; echo 3 > /proc/sys/vm/drop_caches");
    let (out, read) = timed(vm, &format!("dd if={b} of=/dev/null bs=1M 2>&1 | head -1"));
    assert!(out.contains(&format!("{big_mib}+0 records in")), "dd read back {out:?}");
    let _ = fs::remove_file(&big);
    ShareFigures { via, find_cold: finds[0], find_warm: finds[1..].to_vec(), big_mib, write, read }
}

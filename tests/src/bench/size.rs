//! Size figures: what a user downloads (the ISO) and what it is made of.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sizes in bytes.
pub struct Sizes {
    pub iso: u64,
    /// out/skiff-aarch64.iso, when it has been built (`make iso ARCH=aarch64`).
    pub iso_aarch64: Option<u64>,
    pub kernel: u64,
    pub initramfs_compressed: u64,
    /// The cpio archive the kernel unpacks (what the compressed one holds).
    pub initramfs_uncompressed: u64,
    /// The /usr squashfs image on the ISO, and the files it holds.
    pub usr_squashfs: u64,
    pub usr_uncompressed: u64,
    pub init_binary: u64,
    /// Largest regular files of the root filesystem, path relative to it.
    pub top_files: Vec<(String, u64)>,
}

fn size_of(path: &Path) -> u64 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e} (run `make iso` first)", path.display())).len()
}

/// Every regular file under `dir` (symlinks not followed) with its size.
pub fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = fs::symlink_metadata(e.path()) else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out
}

/// The `n` largest of `files`, largest first (ties by name, for stable output).
pub fn largest(mut files: Vec<(String, u64)>, n: usize) -> Vec<(String, u64)> {
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    files.truncate(n);
    files
}

/// Size of the newc cpio of `rootfs` without `/usr` (which goes into the
/// squashfs image), packed as image/build-iso.sh packs it.
fn cpio_size(rootfs: &Path) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -mindepth 1 -not -path './usr/*' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | wc -c")
        .current_dir(rootfs)
        .output()
        .expect("run cpio");
    assert!(out.status.success(), "cpio of {} failed", rootfs.display());
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("wc -c output")
}

/// Measures the build outputs under `root` (the workspace).
pub fn measure(root: &Path) -> Sizes {
    let boot = root.join("out/iso-root/boot");
    let rootfs = root.join("out/rootfs");
    let all = files(&rootfs)
        .into_iter()
        .map(|(p, s)| (format!("/{}", p.strip_prefix(&rootfs).unwrap_or(&p).display()), s))
        .collect();
    Sizes {
        iso: size_of(&root.join("out/skiff.iso")),
        iso_aarch64: fs::metadata(root.join("out/skiff-aarch64.iso")).ok().map(|m| m.len()),
        kernel: size_of(&boot.join("vmlinuz")),
        initramfs_compressed: size_of(&boot.join("initramfs.img")),
        initramfs_uncompressed: cpio_size(&rootfs),
        usr_squashfs: size_of(&root.join("out/iso-root/skiff/usr.squashfs")),
        usr_uncompressed: files(&rootfs.join("usr")).iter().map(|(_, n)| n).sum(),
        init_binary: size_of(&root.join("target/x86_64-unknown-linux-musl/release/skiff-init")),
        top_files: largest(all, 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_sorts_by_size_then_name() {
        let files = vec![("/a".into(), 5), ("/b".into(), 9), ("/c".into(), 5), ("/d".into(), 1)];
        assert_eq!(largest(files, 3), vec![("/b".into(), 9), ("/a".into(), 5), ("/c".into(), 5)]);
    }

    #[test]
    fn files_skips_symlinks_and_walks_folders() {
        let dir = std::env::temp_dir().join(format!("skiff-size-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), b"12345").unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
        let got = files(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got, vec![(dir.join("sub/f"), 5)]);
    }
}

//! Size figures: what a user downloads (the ISO) and what it is made of.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sizes in bytes.
pub struct Sizes {
    pub iso: u64,
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
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
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

/// The tool that undoes the initramfs's compression, from its magic bytes
/// (None: an uncompressed cpio).
pub fn decompressor(magic: &[u8]) -> Option<&'static str> {
    if magic.starts_with(&skiff_proto::bzimage::XZ_MAGIC) {
        Some("xz")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else {
        None
    }
}

/// Regular files and their sizes from `unsquashfs -lln` output, with the
/// listing's root (`squashfs-root`) replaced by `mount_point`.
pub fn squashfs_files(listing: &str, mount_point: &str) -> Vec<(String, u64)> {
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let size = f.nth(2)?.parse().ok()?;
            let path = f.nth(2)?;
            let rel = path.strip_prefix("squashfs-root")?;
            Some((format!("{mount_point}{rel}"), size))
        })
        .collect()
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Measures the ISO itself (issue 13: not the build's intermediates): its
/// kernel, initramfs and /usr squashfs are read out of it into `scratch`.
pub fn measure(iso: &Path, scratch: &Path) -> Sizes {
    let dir = scratch.join("iso-parts");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create iso-parts");
    let (kernel, initramfs, usr) = (dir.join("vmlinuz"), dir.join("initramfs.img"), dir.join("usr.squashfs"));
    run(Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(iso)
        .arg("-extract").arg("/boot/vmlinuz").arg(&kernel)
        .arg("-extract").arg("/boot/initramfs.img").arg(&initramfs)
        .arg("-extract").arg("/skiff/usr.squashfs").arg(&usr));
    let compressed = fs::read(&initramfs).expect("read the initramfs");
    let cpio = match decompressor(&compressed) {
        Some(tool) => {
            let out = Command::new(tool).arg("-dc").arg(&initramfs).output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
            assert!(out.status.success(), "{tool} -dc of the initramfs failed");
            out.stdout
        }
        None => compressed.clone(),
    };
    let root = dir.join("root");
    fs::create_dir_all(&root).expect("create root");
    let mut unpack = Command::new("cpio")
        .args(["-id", "--quiet", "--no-absolute-filenames"])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run cpio");
    std::io::Write::write_all(&mut unpack.stdin.take().expect("cpio stdin"), &cpio).expect("feed cpio");
    assert!(unpack.wait().expect("wait for cpio").success(), "cpio could not unpack the initramfs");
    let listing = String::from_utf8_lossy(&run(Command::new("unsquashfs").arg("-lln").arg(&usr))).into_owned();
    let usr_files = squashfs_files(&listing, "/usr");
    let mut all: Vec<(String, u64)> = files(&root)
        .into_iter()
        .map(|(p, s)| (format!("/{}", p.strip_prefix(&root).unwrap_or(&p).display()), s))
        .collect();
    let init_binary = all.iter().find(|(p, _)| p == "/init").map(|(_, n)| *n).expect("the initramfs has no /init");
    let usr_uncompressed = usr_files.iter().map(|(_, n)| n).sum();
    all.extend(usr_files);
    let sizes = Sizes {
        iso: size_of(iso),
        kernel: size_of(&kernel),
        initramfs_compressed: compressed.len() as u64,
        initramfs_uncompressed: cpio.len() as u64,
        usr_squashfs: size_of(&usr),
        usr_uncompressed,
        init_binary,
        top_files: largest(all, 10),
    };
    let _ = fs::remove_dir_all(&root);
    let _ = fs::remove_file(&usr);
    sizes
}

/// The ISO's kernel and initramfs, extracted by [`measure`] into `scratch`
/// (the floor boots this kernel).
pub fn kernel_in(scratch: &Path) -> PathBuf {
    scratch.join("iso-parts/vmlinuz")
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

    #[test]
    fn compression_is_told_by_magic() {
        assert_eq!(decompressor(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1]), Some("xz"));
        assert_eq!(decompressor(&[0x28, 0xb5, 0x2f, 0xfd, 9]), Some("zstd"));
        assert_eq!(decompressor(b"070701"), None);
    }

    #[test]
    fn squashfs_listing_gives_regular_files_under_the_mount_point() {
        let listing = "\
drwxr-xr-x 0/0                    52 2026-11-26 23:00 squashfs-root
drwxr-xr-x 0/0                    40 2026-11-26 23:00 squashfs-root/bin
-rwxr-xr-x 0/0              47290368 2026-11-26 23:00 squashfs-root/bin/podman
lrwxrwxrwx 0/0                     6 2026-11-26 23:00 squashfs-root/bin/docker -> podman
-rw-r--r-- 0/0                  1234 2026-11-26 23:00 squashfs-root/lib/x.so
";
        assert_eq!(squashfs_files(listing, "/usr"), vec![("/usr/bin/podman".to_string(), 47290368), ("/usr/lib/x.so".to_string(), 1234)]);
    }
}

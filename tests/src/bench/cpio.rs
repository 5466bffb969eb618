//! A minimal writer for the kernel's initramfs format (cpio "newc"), so the
//! floor initramfs can be made without root (no mknod for /dev/console).

/// One archive member.
pub enum Entry<'a> {
    Dir(&'a str),
    /// A character device node: name, major, minor.
    CharDev(&'a str, u32, u32),
    /// An executable file.
    Exec(&'a str, &'a [u8]),
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The archive of `entries`, with the trailer.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(name) => member(&mut out, ino, name, 0o040755, (0, 0), &[]),
            Entry::CharDev(name, major, minor) => member(&mut out, ino, name, 0o020600, (*major, *minor), &[]),
            Entry::Exec(name, data) => member(&mut out, ino, name, 0o100755, (0, 0), data),
        }
    }
    member(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_aligned_and_terminated() {
        let a = archive(&[Entry::Dir("dev"), Entry::CharDev("dev/console", 5, 1), Entry::Exec("init", b"abcde")]);
        assert!(a.starts_with(b"070701"));
        // Header (110) + "dev\0" (4) = 114, padded to 116.
        assert_eq!(&a[116..122], b"070701");
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("abcde"));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn header_fields_carry_mode_size_and_device() {
        let a = archive(&[Entry::CharDev("c", 5, 1)]);
        let field = |i: usize| std::str::from_utf8(&a[6 + i * 8..14 + i * 8]).unwrap().to_string();
        assert_eq!(field(1), format!("{:08X}", 0o020600)); // mode
        assert_eq!(field(6), "00000000"); // file size
        assert_eq!(field(9), "00000005"); // rdev major
        assert_eq!(field(10), "00000001"); // rdev minor
        assert_eq!(field(11), "00000002"); // name length with NUL
    }
}

//! Reading /proc/self/mountinfo: which mount points lie under some folders.

/// Mount points equal to or below any of `roots`, innermost first: in the
/// reverse of mount order, which puts a mount after the one it sits on.
pub fn under(mountinfo: &str, roots: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| roots.iter().any(|root| point == root || point.starts_with(&format!("{root}/"))))
        .collect();
    found.reverse();
    found.dedup();
    found
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:20 / / rw - tmpfs tmpfs rw
30 22 254:17 / /mnt/skiff-data rw,noatime - ext4 /dev/vdb1 rw
31 22 254:17 /containers /var/lib/containers rw,noatime - ext4 /dev/vdb1 rw
32 22 254:17 /skiff /var/lib/skiff rw,noatime - ext4 /dev/vdb1 rw
33 31 254:17 /containers/storage/overlay /var/lib/containers/storage/overlay rw - ext4 /dev/vdb1 rw
34 33 0:40 / /var/lib/containers/storage/overlay/abc/merged rw - overlay overlay rw
35 22 0:41 / /var/lib/containers2 rw - tmpfs tmpfs rw
36 22 0:42 / /mnt/skiff-data\\040x rw - tmpfs tmpfs rw
";

    #[test]
    fn innermost_first_and_only_under_the_roots() {
        let got = under(SAMPLE, &["/mnt/skiff-data", "/var/lib/containers", "/var/lib/skiff"]);
        assert_eq!(
            got,
            [
                "/var/lib/containers/storage/overlay/abc/merged",
                "/var/lib/containers/storage/overlay",
                "/var/lib/skiff",
                "/var/lib/containers",
                "/mnt/skiff-data",
            ]
        );
    }

    #[test]
    fn escaped_spaces_are_decoded() {
        assert_eq!(under(SAMPLE, &["/mnt/skiff-data x"]), ["/mnt/skiff-data x"]);
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("trailing\\"), "trailing\\");
    }
}

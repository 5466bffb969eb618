//! Host edits for file watchers in the guest (`SKIFF-CONTROL/1 touch`):
//! over virtio-fs and 9p the guest's inotify never hears of changes made
//! on the host, so the host names the changed paths and the guest raises
//! an event on each through its own VFS. The host sends batches: one guest
//! path a line, a batch ended by an empty line; the guest answers `ok\n`
//! once it has gone through a batch. A path must be plain (see
//! [`crate::shares::check_path`]'s rules) and lie inside a share: a path
//! from the host never lets the guest act outside one.

/// Longest path line (without its `\n`): Linux's PATH_MAX.
pub const MAX_PATH: usize = 4095;
/// Most paths in one batch.
pub const MAX_BATCH: usize = 512;
/// The guest's answer to a batch.
pub const DONE: &[u8] = b"ok\n";

/// A batch on the wire: `paths`, one a line, then the empty line.
pub fn encode(paths: &[String]) -> String {
    let mut out: String = paths.iter().flat_map(|p| [p.as_str(), "\n"]).collect();
    out.push('\n');
    out
}

/// True if the line can carry `path`: plain, absolute, no control byte.
pub fn sendable(path: &str) -> bool {
    path.len() <= MAX_PATH && crate::shares::plain(path)
}

/// The share of `shares` that holds `path` and the path inside it
/// (`""` for the share itself); `None` for a path that is not plain or
/// lies in no share.
pub fn locate<'a, 's>(path: &'a str, shares: &'s [String]) -> Option<(&'s str, &'a str)> {
    if !sendable(path) {
        return None;
    }
    shares.iter().find_map(|s| match path.strip_prefix(s.as_str())? {
        "" => Some((s.as_str(), "")),
        rest => Some((s.as_str(), rest.strip_prefix('/')?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_a_share() {
        let shares = ["/home/u".to_string(), "/srv/www".to_string()];
        assert_eq!(locate("/home/u/app/x.js", &shares), Some(("/home/u", "app/x.js")));
        assert_eq!(locate("/home/u", &shares), Some(("/home/u", "")));
        assert_eq!(locate("/srv/www/i", &shares), Some(("/srv/www", "i")));
        for bad in ["/home/user/x", "/home", "/etc/passwd", "/home/u/../../etc/passwd", "/home/u/./x", "/home/u//x", "/home/u/", "home/u/x", "/home/u/a\nb", ""] {
            assert_eq!(locate(bad, &shares), None, "{bad:?}");
        }
        assert_eq!(locate(&format!("/home/u/{}", "a".repeat(MAX_PATH)), &shares), None, "too long");
    }

    #[test]
    fn batches_end_with_an_empty_line() {
        assert_eq!(encode(&["/a/b".into(), "/a/c".into()]), "/a/b\n/a/c\n\n");
        assert_eq!(encode(&[]), "\n");
    }
}

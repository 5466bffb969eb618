//! Host folders shared into the guest at the same path: which paths may be
//! shared and which tags name them. The host refuses a bad share before
//! booting and the guest refuses it again before mounting (its config can
//! come from elsewhere), with the same rules.

use std::fmt;

/// Folders that are the guest's own system: a share there would hide the
/// guest's files (or the host's system would be handed to containers).
/// A share may not be one of these, lie inside one, or contain one.
pub const SYSTEM_TREES: [&str; 16] = [
    "/usr", "/etc", "/proc", "/sys", "/dev", "/run", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/var/lib/containers", "/var/lib/skiff", "/mnt/skiff-data",
];

/// Folders that may not be shared themselves but whose subfolders may:
/// `/` and `/var` (they contain system trees anyway) and `/tmp`, the
/// guest's own tmpfs (a share below it is mounted on that tmpfs).
pub const SYSTEM_FOLDERS: [&str; 3] = ["/", "/var", "/tmp"];

/// Longest tag: virtio-fs limits it to 36 bytes.
pub const MAX_TAG_LEN: usize = 36;

/// Why a path cannot be a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Not absolute.
    Relative,
    /// Has `.`, `..`, an empty component, a trailing `/`, a NUL or a newline.
    NotNormal,
    /// Is, lies in, or contains a system folder (named).
    System(&'static str),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Relative => write!(f, "not an absolute path"),
            PathError::NotNormal => write!(f, "not a plain absolute path (no `.`, `..`, `//`, trailing `/` or control characters)"),
            PathError::System(dir) => write!(f, "{dir} is a system folder: sharing it (or a folder that holds it or lies in it) would hide the guest's own files"),
        }
    }
}

impl std::error::Error for PathError {}

/// Checks a share's path (as the guest will mount it): absolute, plain,
/// and clear of system folders.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err(PathError::Relative);
    }
    if !plain(path) {
        return Err(PathError::NotNormal);
    }
    if let Some(dir) = SYSTEM_FOLDERS.iter().find(|d| **d == path) {
        return Err(PathError::System(dir));
    }
    let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
    match SYSTEM_TREES.iter().find(|t| inside(t, path) || inside(path, t)) {
        Some(tree) => Err(PathError::System(tree)),
        None => Ok(()),
    }
}

/// Absolute, with no `.`, `..` or empty component, no trailing `/` and no
/// control byte.
pub fn plain(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && !path.bytes().any(|b| b < 0x20 || b == 0x7f))
}

/// A tag: 1 to 36 ASCII letters, digits, `-`, `_` or `.`.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_TAG_LEN && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// How a share reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// virtio-fs (a vhost-user virtiofsd on the host).
    Virtiofs,
    /// 9p over virtio (QEMU's built-in server).
    NineP,
}

impl Transport {
    /// The name used on command lines and in config: `virtiofs` or `9p`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Virtiofs => "virtiofs",
            Transport::NineP => "9p",
        }
    }

    pub fn parse(name: &str) -> Option<Transport> {
        match name {
            "virtiofs" => Some(Transport::Virtiofs),
            "9p" => Some(Transport::NineP),
            _ => None,
        }
    }
}

/// One share as the guest mounts it: the device's tag, the path (the
/// host's), and the transport (`None`: try virtiofs, then 9p).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The device's tag (virtio-fs tag or 9p mount_tag).
    pub tag: String,
    /// Where it is mounted: the host's path.
    pub path: String,
    /// virtiofs or 9p; `None` tries virtiofs, then 9p.
    pub fs: Option<Transport>,
}

/// Why a share entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not a table (holds the TOML type found).
    NotTable(&'static str),
    /// A key whose value is not a string (and the type found).
    NotString(&'static str, &'static str),
    /// `tag` or `path` is missing.
    Missing(&'static str),
    /// A key other than tag, path and fs.
    UnknownKey(String),
    /// Not 1 to 36 letters, digits, '-', '_' or '.'.
    Tag(String),
    /// A path that cannot be shared.
    Path(String, PathError),
    /// An `fs` other than virtiofs or 9p.
    Fs(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NotTable(found) => write!(f, "expected a table such as {{ tag = \"home\", path = \"/home/u\" }}, not {found}"),
            Invalid::NotString(key, found) => write!(f, "`{key}` must be a string, not {found}"),
            Invalid::Missing(key) => write!(f, "no `{key}`"),
            Invalid::UnknownKey(k) => write!(f, "unknown key `{k}` (known: tag, path, fs)"),
            Invalid::Tag(tag) => write!(f, "tag {tag:?} is not 1 to 36 letters, digits, '-', '_' or '.'"),
            Invalid::Path(path, e) => write!(f, "path {path:?}: {e}"),
            Invalid::Fs(name) => write!(f, "fs {name:?} is not virtiofs or 9p"),
        }
    }
}

impl Share {
    /// Checks a share's tag, path and transport name.
    pub fn new(tag: String, path: String, fs: Option<&str>) -> Result<Share, Invalid> {
        if !valid_tag(&tag) {
            return Err(Invalid::Tag(tag));
        }
        check_path(&path).map_err(|e| Invalid::Path(path.clone(), e))?;
        let fs = match fs {
            None => None,
            Some(name) => Some(Transport::parse(name).ok_or_else(|| Invalid::Fs(name.into()))?),
        };
        Ok(Share { tag, path, fs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_and_projects_are_allowed() {
        for p in ["/root", "/home/u", "/home/u/src/app", "/srv/www", "/var/www", "/tmp/skiff-x", "/Users/me", "/opt/x", "/mnt/data"] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn system_folders_and_their_parents_and_insides_are_refused() {
        for (p, why) in [
            ("/", "/"),
            ("/usr", "/usr"),
            ("/usr/local/src", "/usr"),
            ("/etc", "/etc"),
            ("/etc/containers", "/etc"),
            ("/var", "/var"),
            ("/var/lib", "/var/lib/containers"),
            ("/var/lib/containers/storage", "/var/lib/containers"),
            ("/proc", "/proc"),
            ("/sys", "/sys"),
            ("/dev", "/dev"),
            ("/run", "/run"),
            ("/run/user/1000", "/run"),
            ("/tmp", "/tmp"),
            ("/mnt", "/mnt/skiff-data"),
            ("/lib64", "/lib64"),
        ] {
            assert_eq!(check_path(p), Err(PathError::System(why)), "{p}");
        }
    }

    #[test]
    fn only_plain_absolute_paths() {
        assert_eq!(check_path("home/u"), Err(PathError::Relative));
        assert_eq!(check_path(""), Err(PathError::Relative));
        for p in ["/home/u/", "/home//u", "/home/./u", "/home/../etc", "/home/a\nb", "/home/a\0b"] {
            assert_eq!(check_path(p), Err(PathError::NotNormal), "{p:?}");
        }
        assert_eq!(check_path("/usrx"), Ok(()), "a prefix of a name is not the folder");
    }

    #[test]
    fn tags() {
        assert!(valid_tag("skiff0"));
        assert!(valid_tag(&"a".repeat(36)));
        assert!(!valid_tag(&"a".repeat(37)));
        assert!(!valid_tag(""));
        assert!(!valid_tag("a b"));
        assert!(!valid_tag("a,b"));
        assert_eq!(Transport::parse("9p"), Some(Transport::NineP));
        assert_eq!(Transport::parse(Transport::Virtiofs.name()), Some(Transport::Virtiofs));
        assert_eq!(Transport::parse("nfs"), None);
    }
}

//! Host folders in the guest at the same path, so `docker run -v
//! "$PWD":"$PWD"` (or `:/src`) works anywhere under them. The home folder
//! is shared by default. virtio-fs by default: one virtiofsd per share,
//! each with its vhost-user socket in the private state folder, and guest
//! memory on the shared backend; 9p (QEMU's own server, no daemon) as the
//! fallback. The guest is told tag, path and transport through the fw_cfg
//! config fragment and mounts each share before the engine starts.

use std::env;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Args;
use skiff_proto::shares::{check_path, PathError, Transport};

use rustix::process::{getegid, geteuid};

use crate::vm::hide::{self, Cover, Overlap};
use crate::vm::process::{die_with_parent, find_program, stop, wait_for_path};
use crate::state::StateDir;

/// Options of `skiff run` about shares.
#[derive(Args, Debug, Clone)]
pub struct ShareOptions {
    /// Also share this host folder with the guest at the same path (repeat
    /// for more); the home folder is shared unless --no-shares.
    #[arg(long = "share", value_name = "PATH")]
    pub shares: Vec<PathBuf>,
    /// Share no folder at all, not even the home folder.
    #[arg(long, conflicts_with = "shares")]
    pub no_shares: bool,
    /// How folders reach the guest: virtiofs (a virtiofsd per share) or 9p
    /// (QEMU's built-in server: no daemon, slower, weaker POSIX semantics).
    #[arg(long, default_value = "virtiofs", value_parser = ["virtiofs", "9p"])]
    pub share_via: String,
}

/// The guest uid (and gid) the user's files belong to when `skiff run` is
/// not root: the first user of most images and desktops.
pub const GUEST_USER_ID: u32 = 1000;
/// What other host users' files appear as in the guest (nobody).
const GUEST_NOBODY: u32 = 65534;

/// Why a share was refused.
#[derive(Debug)]
pub enum ShareError {
    /// The folder does not exist or is not a folder.
    Missing(PathBuf, io::Error),
    /// The path (or where its symlinks lead) cannot be shared.
    Refused { path: PathBuf, resolved: Option<PathBuf>, why: PathError },
    /// A 9p share would show the state folder to containers.
    HoldsState { path: PathBuf, state: PathBuf },
    /// The folder is the state folder or lies in it.
    InState { path: PathBuf, state: PathBuf },
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareError::Missing(p, e) => write!(f, "cannot share {}: {e}", p.display()),
            ShareError::Refused { path, resolved: None, why } => write!(f, "refusing to share {}: {why}", path.display()),
            ShareError::Refused { path, resolved: Some(r), why } => {
                write!(f, "refusing to share {} (it resolves to {}): {why}", path.display(), r.display())
            }
            ShareError::HoldsState { path, state } => write!(
                f,
                "refusing to share {} over 9p: it holds the state folder {}, which 9p cannot keep from containers; \
                 use --share-via virtiofs, or a --dir outside the shared folders",
                path.display(),
                state.display()
            ),
            ShareError::InState { path, state } => {
                write!(f, "refusing to share {}: it is or lies in the VM's state folder {}", path.display(), state.display())
            }
        }
    }
}

impl std::error::Error for ShareError {}

impl From<ShareError> for io::Error {
    fn from(e: ShareError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// One folder to share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Where the guest mounts it: the path as the user names it.
    pub path: PathBuf,
    /// What the host serves (symlinks resolved).
    pub source: PathBuf,
    /// The device's tag, `skiffN`.
    pub tag: String,
}

/// `path` made absolute against `cwd` and cleaned of `.` and `..` without
/// following symlinks (the guest mounts the path the user sees).
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in cwd.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Checks one path, as given and with its symlinks resolved.
fn check(path: &Path, resolved: &Path) -> Result<(), ShareError> {
    let as_str = |p: &Path| p.to_str().map(str::to_owned);
    for (p, r) in [(path, None), (resolved, Some(resolved.to_path_buf()))] {
        let result = match as_str(p) {
            Some(s) => check_path(&s),
            None => Err(PathError::NotNormal),
        };
        if let Err(why) = result {
            let resolved = r.filter(|r| r != path);
            return Err(ShareError::Refused { path: path.to_path_buf(), resolved, why });
        }
    }
    Ok(())
}

/// One wanted folder: absolute, existing, and allowed.
fn resolve(given: &Path, cwd: &Path) -> Result<(PathBuf, PathBuf), ShareError> {
    let path = absolute(given, cwd);
    let source = fs::canonicalize(&path).map_err(|e| ShareError::Missing(path.clone(), e))?;
    if !source.is_dir() {
        return Err(ShareError::Missing(path, io::Error::other("not a folder")));
    }
    check(&path, &source)?;
    Ok((path, source))
}

/// Decides the shares: the home folder (unless `--no-shares`) and each
/// `--share`. An explicit share that is refused (a system folder, also
/// through symlinks) is an error; a home folder that cannot be shared
/// (HOME=/, or missing) is skipped with a note. A share inside another is
/// dropped (it is visible there already).
pub fn plan(o: &ShareOptions, home: Option<&Path>, cwd: &Path) -> Result<Vec<Share>, ShareError> {
    if o.no_shares {
        return Ok(Vec::new());
    }
    let mut checked: Vec<(PathBuf, PathBuf)> = Vec::new();
    match home.map(|h| resolve(h, cwd)) {
        Some(Ok(home)) => checked.push(home),
        Some(Err(e)) => eprintln!("skiff: not sharing the home folder: {e}"),
        None => eprintln!("skiff: HOME is not set: not sharing a home folder"),
    }
    for given in &o.shares {
        checked.push(resolve(given, cwd)?);
    }
    checked.sort_by_key(|(p, _)| p.components().count());
    let mut shares: Vec<Share> = Vec::new();
    for (path, source) in checked {
        if let Some(outer) = shares.iter().find(|s| path.starts_with(&s.path)) {
            eprintln!("skiff: {} is already shared as part of {}", path.display(), outer.path.display());
            continue;
        }
        let tag = format!("skiff{}", shares.len());
        shares.push(Share { path, source, tag });
    }
    Ok(shares)
}

/// virtiofsd's `--translate-uid` (or `-gid`) values for a `skiff run` that
/// is not root: every guest id becomes the user's host id (`host_id`), so
/// whatever a container writes belongs to the user; the user's files show
/// as [`GUEST_USER_ID`] in the guest and other users' as nobody.
pub fn id_translation(host_id: u32) -> Vec<String> {
    let g = GUEST_USER_ID;
    // Ids below and above one id, up to (not including) u32::MAX, the invalid id.
    let around = |id: u32| [(0, id), (id.saturating_add(1), u32::MAX.saturating_sub(id).saturating_sub(1))];
    let mut rules = vec![format!("map:{g}:{host_id}:1")];
    for (from, count) in around(g).into_iter().filter(|(_, n)| *n > 0) {
        rules.push(format!("squash-guest:{from}:{host_id}:{count}"));
    }
    for (from, count) in around(host_id).into_iter().filter(|(_, n)| *n > 0) {
        rules.push(format!("squash-host:{from}:{GUEST_NOBODY}:{count}"));
    }
    rules
}

/// virtiofsd's arguments for one share. `ids`: the user's host uid and
/// gid when not root (ids are translated), `None` as root (they pass through).
pub fn virtiofsd_args(share: &Share, socket: &Path, ids: Option<(u32, u32)>, max_files: Option<u64>) -> Vec<String> {
    // No `--tag`: the tag is QEMU's device property, and QEMU 7.1 to 8.0
    // crash when virtiofsd offers it (virtiofsd --help).
    let mut a = vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", share.source.display()),
        // Attributes and names are cached for 1 s and file data is dropped
        // at each open: host edits show in the guest within about a second.
        "--cache=auto".into(),
        "--log-level=warn".into(),
    ];
    if let Some(n) = max_files {
        // Its default (a million) is often above the hard limit; it warns then.
        a.push(format!("--rlimit-nofile={n}"));
    }
    if let Some((uid, gid)) = ids {
        // virtiofsd's namespace sandbox needs root; unprivileged, it can
        // reach only what the user can, and the uid translation bounds it.
        a.push("--sandbox=none".into());
        // File handles need CAP_DAC_READ_SEARCH; say so rather than have it warn.
        a.push("--inode-file-handles=never".into());
        a.extend(id_translation(uid).into_iter().map(|r| format!("--translate-uid={r}")));
        a.extend(id_translation(gid).into_iter().map(|r| format!("--translate-gid={r}")));
    }
    a
}

/// Our hard limit of open files (children cannot go above it), if finite.
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum
}

/// QEMU's value for a path inside an option list (commas doubled).
fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// QEMU's arguments for the shares; `sockets[i]` is share i's virtiofsd
/// socket (virtiofs only). 9p: passthrough as root (uids pass through),
/// else mapped-xattr (ownership kept in xattrs, files the user's own).
pub fn qemu_args(shares: &[Share], via: Transport, sockets: &[PathBuf], root: bool) -> Vec<String> {
    let mut a = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        match via {
            Transport::Virtiofs => {
                a.push("-chardev".into());
                a.push(format!("socket,id=fs{i},path={}", qemu_path(&sockets[i])));
                a.push("-device".into());
                a.push(format!("vhost-user-fs-pci,chardev=fs{i},tag={}", s.tag));
            }
            Transport::NineP => {
                let model = if root { "passthrough" } else { "mapped-xattr" };
                a.push("-virtfs".into());
                a.push(format!("local,path={},mount_tag={},security_model={model},id=fs{i}", qemu_path(&s.source), s.tag));
            }
        }
    }
    a
}

/// What the guest mounts where (its `shares` setting); none leaves the
/// guest's own config to decide. Paths are UTF-8 (`check` refuses others).
pub fn for_guest(shares: &[Share], via: Transport) -> Option<Vec<skiff_proto::shares::Share>> {
    let list = shares.iter().map(|s| skiff_proto::shares::Share { tag: s.tag.clone(), path: s.path.to_string_lossy().into_owned(), fs: Some(via) });
    (!shares.is_empty()).then(|| list.collect())
}

/// For each share, the state folder to cover in its server (see `hide`):
/// a share inside the state folder is refused, and so is a 9p share that
/// holds it (QEMU serves 9p itself and needs the folder in view).
fn state_covers(shares: &[Share], state: &Path, via: Transport) -> Result<Vec<Option<PathBuf>>, ShareError> {
    let state = fs::canonicalize(state).map_err(|e| ShareError::Missing(state.to_path_buf(), e))?;
    shares
        .iter()
        .map(|s| match hide::overlap(&s.source, &state) {
            Overlap::None => Ok(None),
            Overlap::Holds(folder) if via == Transport::Virtiofs => Ok(Some(folder)),
            Overlap::Holds(_) => Err(ShareError::HoldsState { path: s.path.clone(), state: state.clone() }),
            Overlap::Within => Err(ShareError::InState { path: s.path.clone(), state: state.clone() }),
        })
        .collect()
}

/// The started shares: what QEMU and the guest need; the daemons stop when
/// this is dropped (their sockets and pid files are runtime files of the
/// state folder, removed with the others by `StateDir::clear_runtime`).
pub struct Shares {
    pub shares: Vec<Share>,
    pub via: Transport,
    pub qemu_args: Vec<String>,
    daemons: Vec<Child>,
    sockets: Vec<PathBuf>,
}

impl Shares {
    /// Plans the shares and starts a virtiofsd for each (virtiofs).
    pub fn start(o: &ShareOptions, state: &StateDir) -> io::Result<Shares> {
        let via = Transport::parse(&o.share_via).unwrap_or(Transport::Virtiofs);
        let home = env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let shares = plan(o, home.as_deref(), &env::current_dir()?)?;
        let covers = state_covers(&shares, state.path(), via)?;
        let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
        let mut started = Shares { shares, via, qemu_args: Vec::new(), daemons: Vec::new(), sockets: Vec::new() };
        if via == Transport::Virtiofs && !started.shares.is_empty() {
            let prog = find_program("virtiofsd").ok_or_else(|| {
                io::Error::other("folder sharing needs virtiofsd (cargo install virtiofsd), or use --share-via 9p or --no-shares")
            })?;
            let ids = (uid != 0).then_some((uid, gid));
            let max_files = open_file_limit();
            for (i, share) in started.shares.clone().iter().enumerate() {
                // No stale socket: `skiff run`'s claim cleared the folder.
                let socket = state.share_socket(i);
                started.sockets.push(socket.clone());
                let mut cmd = Command::new(&prog);
                let cover = match &covers[i] {
                    Some(folder) => Some(Cover::new(folder, ids)?),
                    None => None,
                };
                let bind_at = cover.as_ref().map_or(socket.clone(), |c| c.path_for_child(&format!("fs-{i}.sock")));
                cmd.args(virtiofsd_args(share, &bind_at, ids, max_files)).stdout(Stdio::null());
                if let Some(c) = &cover {
                    c.apply(&mut cmd);
                }
                let mut child = die_with_parent(&mut cmd).spawn().map_err(|e| match &cover {
                    Some(_) => io::Error::other(format!(
                        "cannot start virtiofsd for {} with the state folder {} hidden from it ({e}); \
                         use a --dir outside the shared folders, or --no-shares",
                        share.path.display(),
                        state.path().display()
                    )),
                    None => io::Error::other(format!("cannot start virtiofsd: {e}")),
                })?;
                let up = wait_for_path(&socket, &mut child, "virtiofsd", Duration::from_secs(10));
                started.daemons.push(child);
                up?;
            }
        }
        started.qemu_args = qemu_args(&started.shares, via, &started.sockets, uid == 0);
        for s in &started.shares {
            eprintln!("skiff: sharing {} ({}, tag {})", s.path.display(), via.name(), s.tag);
        }
        Ok(started)
    }

    /// True if guest memory must be shared with the daemons.
    pub fn shared_memory(&self) -> bool {
        self.via == Transport::Virtiofs && !self.shares.is_empty()
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            stop(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(shares: &[&str], no_shares: bool) -> ShareOptions {
        ShareOptions { shares: shares.iter().map(PathBuf::from).collect(), no_shares, share_via: "virtiofs".into() }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("skiff-shares-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn absolute_paths_are_cleaned_without_following_links() {
        assert_eq!(absolute(Path::new("."), Path::new("/home/u/p")), PathBuf::from("/home/u/p"));
        assert_eq!(absolute(Path::new("../q/./r"), Path::new("/home/u/p")), PathBuf::from("/home/u/q/r"));
        assert_eq!(absolute(Path::new("/a//b/"), Path::new("/x")), PathBuf::from("/a/b"));
        assert_eq!(absolute(Path::new("../../.."), Path::new("/a")), PathBuf::from("/"));
    }

    #[test]
    fn home_by_default_more_with_share_none_with_no_shares() {
        let dir = scratch("plan");
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::create_dir_all(a.join("inner")).unwrap();
        fs::create_dir_all(&b).unwrap();
        let home = plan(&opts(&[], false), Some(&a), Path::new("/")).unwrap();
        assert_eq!(home, [Share { path: a.clone(), source: a.clone(), tag: "skiff0".into() }]);
        let two = plan(&opts(&[b.to_str().unwrap(), a.join("inner").to_str().unwrap()], false), Some(&a), Path::new("/")).unwrap();
        assert_eq!(two.iter().map(|s| (s.path.clone(), s.tag.as_str())).collect::<Vec<_>>(), [(a.clone(), "skiff0"), (b.clone(), "skiff1")],
            "the home and --share; a folder inside another share is not shared twice");
        let rel = plan(&opts(&["b"], false), None, &dir).unwrap();
        assert_eq!(rel[0].path, b);
        assert!(plan(&opts(&[], true), Some(&a), Path::new("/")).unwrap().is_empty());
        assert!(plan(&opts(&[], false), Some(Path::new("/")), Path::new("/")).unwrap().is_empty(), "HOME=/ is skipped, not fatal");
        assert!(matches!(plan(&opts(&[dir.join("missing").to_str().unwrap()], false), None, Path::new("/")), Err(ShareError::Missing(..))));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn system_folders_are_refused_also_through_symlinks() {
        for p in ["/", "/usr", "/etc", "/var", "/proc", "/sys", "/dev", "/run", "/tmp"] {
            let err = plan(&opts(&[p], false), None, Path::new("/")).unwrap_err();
            assert!(matches!(err, ShareError::Refused { .. }), "{p}: {err}");
            assert!(err.to_string().contains("system folder"), "{err}");
        }
        let dir = scratch("link");
        let link = dir.join("etc-link");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let err = plan(&opts(&[link.to_str().unwrap()], false), None, Path::new("/")).unwrap_err();
        assert!(matches!(&err, ShareError::Refused { resolved: Some(r), .. } if r == Path::new("/etc")), "{err}");
        assert!(err.to_string().contains("resolves to /etc"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_are_translated_only_without_root() {
        let share = Share { path: "/home/u".into(), source: "/data/u".into(), tag: "skiff0".into() };
        let root = virtiofsd_args(&share, Path::new("/s/fs-0.sock"), None, None);
        assert!(root.contains(&"--shared-dir=/data/u".to_string()) && !root.iter().any(|a| a.starts_with("--tag")), "{root:?}");
        assert!(!root.iter().any(|a| a.starts_with("--translate") || a.starts_with("--sandbox")), "{root:?}");
        let user = virtiofsd_args(&share, Path::new("/s/fs-0.sock"), Some((1001, 1002)), Some(4096));
        assert!(user.contains(&"--rlimit-nofile=4096".to_string()));
        assert!(user.contains(&"--sandbox=none".to_string()));
        assert!(user.contains(&"--translate-uid=map:1000:1001:1".to_string()), "{user:?}");
        assert!(user.contains(&"--translate-gid=map:1000:1002:1".to_string()), "{user:?}");
    }

    /// The rules cover each id space without overlaps (virtiofsd refuses
    /// overlapping rules) and send every guest id to the user.
    #[test]
    fn id_translation_covers_every_guest_id_once() {
        for host in [0u32, 1, 999, 1000, 1001, 65534, 200000, u32::MAX - 1] {
            let mut guest: Vec<(u64, u64)> = Vec::new();
            let mut hosts: Vec<(u64, u64)> = Vec::new();
            for rule in id_translation(host) {
                let f: Vec<&str> = rule.split(':').collect();
                let (a, b, n): (u64, u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
                assert!(a + n <= u32::MAX as u64, "{rule}: range overflows");
                match f[0] {
                    "map" => {
                        guest.push((a, a + n));
                        hosts.push((b, b + n));
                        assert_eq!(b, host as u64);
                    }
                    "squash-guest" => {
                        guest.push((a, a + n));
                        assert_eq!(b, host as u64, "{rule}");
                    }
                    "squash-host" => hosts.push((a, a + n)),
                    other => panic!("{other}"),
                }
            }
            for ranges in [&mut guest, &mut hosts] {
                ranges.retain(|(a, b)| a < b);
                ranges.sort();
                assert_eq!(ranges[0].0, 0);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].1, w[1].0, "gap or overlap for host id {host}: {ranges:?}");
                }
                assert_eq!(ranges.last().unwrap().1, u32::MAX as u64);
            }
        }
    }

    #[test]
    fn qemu_devices_and_guest_config() {
        let shares = vec![Share { path: "/home/a,b".into(), source: "/home/a,b".into(), tag: "skiff0".into() }];
        let vfs = qemu_args(&shares, Transport::Virtiofs, &["/s/fs-0.sock".into()], true).join(" ");
        assert_eq!(vfs, "-chardev socket,id=fs0,path=/s/fs-0.sock -device vhost-user-fs-pci,chardev=fs0,tag=skiff0");
        let p9 = qemu_args(&shares, Transport::NineP, &[], true).join(" ");
        assert_eq!(p9, "-virtfs local,path=/home/a,,b,mount_tag=skiff0,security_model=passthrough,id=fs0");
        assert!(qemu_args(&shares, Transport::NineP, &[], false)[1].contains("security_model=mapped-xattr"));
        let told = for_guest(&shares, Transport::NineP).unwrap();
        assert_eq!(told, [skiff_proto::shares::Share { tag: "skiff0".into(), path: "/home/a,b".into(), fs: Some(Transport::NineP) }]);
        assert_eq!(for_guest(&[], Transport::NineP), None);
    }

    #[test]
    fn a_share_holding_the_state_folder_covers_it_and_9p_or_a_share_inside_it_is_refused() {
        let dir = scratch("covers");
        let state = dir.join("home/.skiff");
        fs::create_dir_all(state.join("images")).unwrap();
        let share = |p: PathBuf| Share { source: fs::canonicalize(&p).unwrap(), path: p, tag: "skiff0".into() };
        let canon = fs::canonicalize(&state).unwrap();
        let home = share(dir.join("home"));
        assert_eq!(state_covers(std::slice::from_ref(&home), &state, Transport::Virtiofs).unwrap(), vec![Some(canon)]);
        assert!(matches!(state_covers(&[home], &state, Transport::NineP), Err(ShareError::HoldsState { .. })));
        let inside = share(state.join("images"));
        assert!(matches!(state_covers(&[inside], &state, Transport::Virtiofs), Err(ShareError::InState { .. })));
        let apart = share(dir.clone());
        let other = scratch("covers-other");
        assert_eq!(state_covers(&[apart], &other, Transport::NineP).unwrap(), vec![None]);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }
}

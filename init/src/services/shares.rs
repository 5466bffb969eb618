//! Host folders at the same path: the config's `[[shares]]` (from `skiff
//! run`'s fw_cfg fragment, config.toml, cidata, or `skiff.share=TAG:PATH`)
//! are mounted before the engine starts, so a container's `-v
//! /home/u/app:/src` finds the host's folder. A share that cannot be
//! mounted is logged and the boot goes on; shares are unmounted at shutdown.

use std::ffi::CString;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Mutex;
use std::time::Duration;

use rustix::mount::{mount, MountFlags};
use skiff_proto::shares::Transport;
pub use skiff_proto::shares::{Invalid, Share};

use crate::supervise::sys::{unmount_retrying, Sys};

/// 9p mount options: Linux's 9p2000.L client over virtio, large messages,
/// and page-cache use only for mmap (so host edits are seen at once).
const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap";

/// Shares mounted by [`mount_all`], in mount order (for the shutdown and
/// `skiff status`): path and transport.
static MOUNTED: Mutex<Vec<(String, Transport)>> = Mutex::new(Vec::new());

/// The mounted shares, for `skiff status`.
pub fn mounted() -> Vec<skiff_proto::status::ShareUse> {
    let m = MOUNTED.lock().map(|m| m.clone()).unwrap_or_default();
    m.into_iter().map(|(path, t)| skiff_proto::status::ShareUse { fs: t.name().to_string(), path }).collect()
}

/// `skiff.share=TAG:PATH`, checked like a `[[shares]]` entry.
pub fn from_cmdline(value: &str) -> Result<Share, Invalid> {
    let (tag, path) = value.split_once(':').unwrap_or((value, ""));
    Share::new(tag.into(), path.into(), None)
}

/// The transports to try for a share, in order.
fn attempts(fs: Option<Transport>) -> Vec<Transport> {
    match fs {
        Some(t) => vec![t],
        None => vec![Transport::Virtiofs, Transport::NineP],
    }
}

/// Mounts every share; a failure is logged and the others go on.
pub fn mount_all(shares: &[Share]) {
    for s in shares {
        if MOUNTED.lock().map(|m| m.iter().any(|(p, _)| *p == s.path)).unwrap_or(false) {
            log::warn!("shares: {} is listed twice; mounting it once", s.path);
            continue;
        }
        match mount_one(s) {
            Ok(t) => {
                log::info!("shares: mounted host folder {} ({}, tag {})", s.path, t.name(), s.tag);
                if let Ok(mut m) = MOUNTED.lock() {
                    m.push((s.path.clone(), t));
                }
            }
            Err(e) => log::error!("shares: cannot mount host folder {} (tag {}): {e}; containers will see an empty folder there", s.path, s.tag),
        }
    }
}

fn mount_one(s: &Share) -> Result<Transport, String> {
    DirBuilder::new().recursive(true).mode(0o755).create(&s.path).map_err(|e| format!("cannot create the mount point: {e}"))?;
    let mut errors = Vec::new();
    for t in attempts(s.fs) {
        let (fstype, data) = match t {
            Transport::Virtiofs => ("virtiofs", ""),
            Transport::NineP => ("9p", NINEP_OPTIONS),
        };
        let data = CString::new(data).unwrap_or_default();
        match mount(s.tag.as_str(), s.path.as_str(), fstype, MountFlags::NOSUID | MountFlags::NODEV, data.as_c_str()) {
            Ok(()) => return Ok(t),
            // What each driver says when no device has the tag.
            Err(rustix::io::Errno::INVAL) if t == Transport::Virtiofs => errors.push(format!("{fstype}: no device with this tag")),
            Err(rustix::io::Errno::NOENT) if t == Transport::NineP => errors.push(format!("{fstype}: no device with this tag")),
            Err(e) => errors.push(format!("{fstype}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Unmounts the shares, innermost first; one still busy after a few
/// seconds is detached. Runs after every process is gone.
pub fn unmount_all(sys: &impl Sys) {
    let paths: Vec<String> = MOUNTED.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default().into_iter().map(|(p, _)| p).collect();
    let end = sys.now() + Duration::from_secs(3);
    for path in paths.iter().rev() {
        match unmount_retrying(sys, path, end).0 {
            Ok(()) => {
                log::info!("shares: unmounted {path}");
                crate::boot::events::note(skiff_proto::events::Note::ShareUnmounted, &path);
            }
            Err(e) => {
                log::warn!("shares: cannot unmount {path}: {e}; detaching it");
                if let Err(e) = sys.unmount(path, true) {
                    log::warn!("shares: cannot detach {path}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::fake::{Call, Fake};

    /// The only test that touches the mounted list.
    #[test]
    fn mounted_shares_are_unmounted_innermost_first_and_a_busy_one_detached() {
        for path in ["/home/u", "/home/u/src"] {
            MOUNTED.lock().unwrap_or_else(|e| e.into_inner()).push((path.into(), Transport::Virtiofs));
        }
        assert_eq!(mounted().len(), 2);
        let fake = Fake::new(&[]);
        fake.mounts_busy();
        unmount_all(&fake);
        let inner = fake.find(|c| *c == Call::Unmount("/home/u/src".into(), false)).expect("inner share not unmounted");
        let outer = fake.find(|c| *c == Call::Unmount("/home/u".into(), false)).expect("outer share not unmounted");
        assert!(inner.0 < outer.0, "innermost first: {:#?}", fake.calls());
        assert!(fake.find(|c| *c == Call::Unmount("/home/u".into(), true)).is_some(), "a busy share is detached");
        assert!(mounted().is_empty(), "status still lists unmounted shares");
    }

    use skiff_proto::shares::PathError;

    #[test]
    fn transports_to_try() {
        assert_eq!(attempts(None), [Transport::Virtiofs, Transport::NineP]);
        assert_eq!(attempts(Some(Transport::NineP)), [Transport::NineP]);
    }

    #[test]
    fn kernel_option_becomes_an_entry() {
        assert_eq!(from_cmdline("home:/home/u").unwrap(), Share { tag: "home".into(), path: "/home/u".into(), fs: None });
        assert_eq!(from_cmdline("x:/a:b").unwrap().path, "/a:b");
        assert!(matches!(from_cmdline("nopath"), Err(Invalid::Path(_, PathError::Relative))));
        assert_eq!(from_cmdline("a b:/home/u"), Err(Invalid::Tag("a b".into())));
    }
}

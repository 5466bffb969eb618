//! Host edits for file watchers in containers: over virtio-fs (and 9p)
//! the guest's inotify never hears of changes made on the host, so `skiff
//! run` watches each share here (inotify, one watch a folder, added for new
//! folders, at most `--watch-limit` of them) and hands the changed paths,
//! coalesced, to `send`, which names them to the guest. The guest
//! raises IN_MODIFY on each (`SKIFF-CONTROL/1 touch`).
//!
//! A created, written or moved-in file is named itself; a deleted or
//! moved-away one by its folder. IN_ATTRIB is not watched (no edit), and a
//! folder's own IN_MODIFY is ignored: it is the guest's touch of a folder
//! coming back through the file server; a file's IN_MODIFY whose mtime and
//! size are those last sent is its touch coming back (`coalesce::Sent`).

pub mod coalesce;
mod send;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use skiff_proto::touch::sendable;

use crate::guest::Target;
use crate::threads;
use crate::vm::shares::Share;
use coalesce::{stamp, Pending, Sent};

/// Folders watched at most per VM by default (each costs the host kernel
/// about 1 KiB, and counts against the user's fs.inotify.max_user_watches).
pub const DEFAULT_LIMIT: usize = 65_536;

/// [`DEFAULT_LIMIT`], or half the user's fs.inotify.max_user_watches if
/// that is less: an editor's own watcher must not run out because of us.
pub fn default_limit() -> usize {
    let max = fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").ok().and_then(|t| t.trim().parse::<usize>().ok());
    max.map_or(DEFAULT_LIMIT, |m| DEFAULT_LIMIT.min(m / 2))
}
/// Distinct paths handed over at once; past it, their folders.
pub const BATCH_CAP: usize = 256;
/// Files whose stamps are kept for echo detection.
const SENT_CAP: usize = 4096;

const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);

/// The changes waiting for the guest, shared by the watcher and the sender.
pub struct Changes {
    state: Mutex<(Pending, Sent)>,
    /// Signalled when a change is added.
    pub wake: Condvar,
}

impl Changes {
    pub fn lock(&self) -> MutexGuard<'_, (Pending, Sent)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, guest: String, host: PathBuf) {
        self.lock().0.add(guest, host);
        self.wake.notify_one();
    }
}

/// What one inotify event asks for.
#[derive(Debug, PartialEq, Eq)]
enum What {
    /// Name the path (created, written, moved in).
    Path,
    /// Name the path unless it is the guest's touch coming back.
    Modified,
    /// Name the folder (a name went away).
    Folder,
    /// Name the new folder and watch it.
    NewFolder,
    /// The watch is gone.
    Forget,
    /// The kernel dropped events: name every share, and look for new folders.
    Overflow,
    Nothing,
}

fn what(ev: ReadFlags) -> What {
    let dir = ev.contains(ReadFlags::ISDIR);
    if ev.contains(ReadFlags::QUEUE_OVERFLOW) {
        What::Overflow
    } else if ev.contains(ReadFlags::IGNORED) {
        What::Forget
    } else if dir && ev.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
        What::NewFolder
    } else if ev.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
        What::Folder
    } else if ev.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::CLOSE_WRITE) {
        What::Path
    } else if ev.contains(ReadFlags::MODIFY) && !dir {
        What::Modified
    } else {
        // A folder's own mtime (the guest's touch of it coming back); a
        // watched folder deleted (its parent hears of it).
        What::Nothing
    }
}

/// A watched folder: its host path, and its guest path, or when a name on
/// the way cannot travel (not UTF-8, a control character) the nearest
/// folder above that can, which stands for everything below it.
#[derive(Clone)]
struct Dir {
    host: PathBuf,
    guest: Result<String, (String, PathBuf)>,
}

impl Dir {
    /// The guest and host paths that name `name` in this folder.
    fn child(&self, name: &[u8]) -> Result<(String, PathBuf), (String, PathBuf)> {
        let host = self.host.join(OsStr::from_bytes(name));
        match (&self.guest, std::str::from_utf8(name)) {
            (Ok(g), Ok(n)) if sendable(&format!("{g}/{n}")) => Ok((format!("{g}/{n}"), host)),
            (Ok(g), _) => Err((g.clone(), self.host.clone())),
            (Err(above), _) => Err(above.clone()),
        }
    }

    fn itself(&self) -> (String, PathBuf) {
        match &self.guest {
            Ok(g) => (g.clone(), self.host.clone()),
            Err(above) => above.clone(),
        }
    }
}

struct Watcher {
    fd: OwnedFd,
    dirs: HashMap<i32, Dir>,
    queue: VecDeque<Dir>,
    roots: Vec<Dir>,
    /// The state folder (canonical): hidden from the guest, and busy.
    skip: PathBuf,
    limit: usize,
    changes: Arc<Changes>,
    told_full: bool,
    told_overflow: bool,
}

/// Starts watching `shares` (the state folder `state` left out) and
/// naming what changes to the guest `target`.
pub fn spawn(shares: &[Share], state: &Path, limit: usize, target: Target) -> std::io::Result<()> {
    let mut roots = Vec::new();
    for s in shares {
        match s.path.to_str().filter(|p| sendable(p)) {
            Some(g) => roots.push(Dir { host: s.source.clone(), guest: Ok(g.to_string()) }),
            None => eprintln!("skiff: watch: {} cannot be named to the guest; host edits there are not forwarded", s.path.display()),
        }
    }
    let guest_roots = roots.iter().map(|d| d.itself().0).collect();
    let changes = Arc::new(Changes { state: Mutex::new((Pending::new(guest_roots, BATCH_CAP), Sent::new(SENT_CAP))), wake: Condvar::new() });
    let fd = inotify::init(CreateFlags::CLOEXEC)?;
    let skip = fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let w = Watcher { fd, dirs: HashMap::new(), queue: VecDeque::new(), roots, skip, limit, changes: Arc::clone(&changes), told_full: false, told_overflow: false };
    threads::spawn("watch shares", move || w.run())?;
    send::spawn(changes, target)
}

impl Watcher {
    fn run(mut self) {
        self.queue.extend(self.roots.clone());
        let watched = self.walk();
        eprintln!("skiff: watch: {watched} folders watched; host edits reach file watchers in containers (--watch off to stop)");
        let fd = match self.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => return eprintln!("skiff: watch: {e}; host edits do not reach file watchers in containers"),
        };
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut events = inotify::Reader::new(&fd, &mut buf);
        loop {
            let (wd, flags, name) = match events.next() {
                Ok(ev) => (ev.wd(), ev.events(), ev.file_name().map(|n| n.to_bytes().to_vec()).filter(|n| !n.is_empty())),
                Err(Errno::INTR) => continue,
                Err(e) => return eprintln!("skiff: watch: {e}; host edits no longer reach file watchers in containers"),
            };
            self.event(wd, flags, name.as_deref());
        }
    }

    fn event(&mut self, wd: i32, flags: ReadFlags, name: Option<&[u8]>) {
        let what = what(flags);
        if what == What::Overflow {
            if !std::mem::replace(&mut self.told_overflow, true) {
                eprintln!("skiff: watch: too many host edits at once (the kernel's queue overflowed); naming whole shares to the guest");
            }
            for r in self.roots.clone() {
                let (g, h) = r.itself();
                self.changes.add(g, h);
                self.queue.push_back(r);
            }
            self.walk();
            return;
        }
        let Some(dir) = self.dirs.get(&wd).cloned() else { return };
        let child = name.map(|n| dir.child(n));
        match (what, child) {
            (What::Forget, _) => {
                self.dirs.remove(&wd);
            }
            (What::Folder, Some(_)) => {
                let (g, h) = dir.itself();
                self.changes.add(g, h);
            }
            (What::NewFolder, Some(child)) => {
                let (g, h) = child.clone().unwrap_or_else(|above| above);
                self.changes.add(g, h);
                let host = dir.host.join(OsStr::from_bytes(name.unwrap_or_default()));
                self.queue.push_back(Dir { host, guest: child.map(|(g, _)| g) });
                self.walk();
            }
            (What::Path, Some(child)) => {
                let (g, h) = child.unwrap_or_else(|above| above);
                self.changes.add(g, h);
            }
            (What::Modified, Some(child)) => {
                let (g, h) = child.unwrap_or_else(|above| above);
                let echo = fs::symlink_metadata(&h).is_ok_and(|m| self.changes.lock().1.is_echo(&h, stamp(&m)));
                if !echo {
                    self.changes.add(g, h);
                }
            }
            _ => {}
        }
    }

    /// Watches the queued folders and every folder below them,
    /// breadth-first (shallow folders first when the limit is near);
    /// returns how many folders are watched.
    fn walk(&mut self) -> usize {
        let mut failed: Option<(usize, String)> = None;
        while let Some(dir) = self.queue.pop_front() {
            if dir.host == self.skip {
                continue;
            }
            if self.dirs.len() >= self.limit {
                self.full(&format!("{} folders (--watch-limit; by default at most half of sysctl fs.inotify.max_user_watches)", self.limit));
                break;
            }
            match inotify::add_watch(&self.fd, &dir.host, MASK) {
                Ok(wd) => self.dirs.insert(wd, dir.clone()),
                Err(Errno::NOSPC) => {
                    self.full("the system's limit (sysctl fs.inotify.max_user_watches)");
                    break;
                }
                // Gone already: its parent's event names it.
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                Err(e) => {
                    let f = failed.get_or_insert((0, format!("{}: {e}", dir.host.display())));
                    f.0 += 1;
                    continue;
                }
            };
            let Ok(entries) = fs::read_dir(&dir.host) else { continue };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let guest = dir.child(e.file_name().as_bytes()).map(|(g, _)| g);
                    self.queue.push_back(Dir { host: e.path(), guest });
                }
            }
        }
        self.queue.clear();
        if let Some((n, first)) = failed {
            eprintln!("skiff: watch: cannot watch {n} folders (first: {first}); host edits there are not forwarded");
        }
        self.dirs.len()
    }

    fn full(&mut self, why: &str) {
        if !std::mem::replace(&mut self.told_full, true) {
            eprintln!("skiff: watch: stopped adding folders at {why}; host edits in folders not watched are not forwarded to file watchers in containers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::guest::Addr;

    /// A guest stand-in: takes the touch stream, touches each path as the
    /// init does (its mtime set to its own value, which raises IN_MODIFY
    /// here as the file server's would) and reports each batch.
    fn fake_guest(listener: UnixListener) -> mpsc::Receiver<Vec<String>> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut out = s.try_clone().unwrap();
            let mut lines = BufReader::new(s).lines();
            assert_eq!(lines.next().unwrap().unwrap(), "SKIFF-CONTROL/1 touch");
            let mut batch = Vec::new();
            for line in lines.map_while(Result::ok) {
                if !line.is_empty() {
                    batch.push(line);
                    continue;
                }
                for p in &batch {
                    if let Ok(m) = fs::symlink_metadata(p) {
                        let mtime = m.modified().unwrap();
                        fs::File::open(p).and_then(|f| f.set_modified(mtime)).ok();
                    }
                }
                out.write_all(b"ok\n").unwrap();
                if tx.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Every batch within `quiet` of the last one (at most 10: a loop
    /// would never be quiet).
    fn batches(rx: &mpsc::Receiver<Vec<String>>, quiet: Duration) -> Vec<Vec<String>> {
        std::iter::from_fn(|| rx.recv_timeout(quiet).ok()).take(10).collect()
    }

    #[test]
    fn host_edits_are_named_once_and_the_guests_touch_is_not_sent_back() {
        let sock = crate::testutil::SocketPath::new("watch-story", "guest.sock");
        let root = sock.parent().unwrap().join("share");
        fs::create_dir_all(root.join("sub")).unwrap();
        let rx = fake_guest(UnixListener::bind(&sock).unwrap());
        let share = Share { path: root.clone(), source: root.clone(), tag: "skiff0".into() };
        let state = root.join("state");
        spawn(&[share], &state, 100, Target::new(Addr::Unix(sock.to_path_buf()))).unwrap();
        std::thread::sleep(Duration::from_millis(300)); // the first walk
        let name = |p: &str| format!("{}/{p}", root.display());
        let quiet = Duration::from_secs(1);

        fs::write(root.join("sub/a.js"), "1").unwrap();
        assert_eq!(batches(&rx, quiet), [vec![name("sub/a.js")]], "one write, one batch, no echo after it");
        fs::rename(root.join("sub/a.js"), root.join("sub/b.js")).unwrap();
        let seen = batches(&rx, quiet).concat();
        assert!(seen.contains(&name("sub")) && seen.contains(&name("sub/b.js")), "{seen:?}");
        fs::remove_file(root.join("sub/b.js")).unwrap();
        assert_eq!(batches(&rx, quiet), [vec![name("sub")]]);
        fs::create_dir(root.join("new")).unwrap();
        assert_eq!(batches(&rx, quiet), [vec![name("new")]]);
        fs::write(root.join("new/c"), "1").unwrap();
        assert_eq!(batches(&rx, quiet), [vec![name("new/c")]], "a new folder is watched");
        fs::create_dir_all(&state).unwrap();
        fs::write(state.join("console.log"), "x").unwrap();
        assert_eq!(batches(&rx, quiet), [vec![name("state")]], "the state folder is named, never what is in it");
        fs::write(state.join("console.log"), "y").unwrap();
        assert!(batches(&rx, quiet).is_empty(), "its files are never watched");
    }

    #[test]
    fn each_event_asks_for_one_thing() {
        use ReadFlags as F;
        assert_eq!(what(F::CREATE), What::Path);
        assert_eq!(what(F::CLOSE_WRITE), What::Path);
        assert_eq!(what(F::MOVED_TO), What::Path);
        assert_eq!(what(F::MODIFY), What::Modified);
        assert_eq!(what(F::DELETE), What::Folder);
        assert_eq!(what(F::MOVED_FROM), What::Folder);
        assert_eq!(what(F::DELETE | F::ISDIR), What::Folder);
        assert_eq!(what(F::CREATE | F::ISDIR), What::NewFolder);
        assert_eq!(what(F::MOVED_TO | F::ISDIR), What::NewFolder);
        assert_eq!(what(F::MODIFY | F::ISDIR), What::Nothing, "the guest's touch of a folder coming back");
        assert_eq!(what(F::DELETE_SELF), What::Nothing);
        assert_eq!(what(F::IGNORED), What::Forget);
        assert_eq!(what(F::QUEUE_OVERFLOW), What::Overflow);
    }

    #[test]
    fn names_that_cannot_travel_are_named_by_their_folder() {
        let d = Dir { host: "/h/src".into(), guest: Ok("/g/src".into()) };
        assert_eq!(d.child(b"a.js"), Ok(("/g/src/a.js".into(), "/h/src/a.js".into())));
        assert_eq!(d.child(b"a\nb"), Err(("/g/src".into(), "/h/src".into())));
        assert_eq!(d.child(b"\xff"), Err(("/g/src".into(), "/h/src".into())));
        let below = Dir { host: "/h/src/\u{1}/x".into(), guest: Err(("/g/src".into(), "/h/src".into())) };
        assert_eq!(below.child(b"ok"), Err(("/g/src".into(), "/h/src".into())));
        assert_eq!(below.itself(), ("/g/src".into(), "/h/src".into()));
    }
}

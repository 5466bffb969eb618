//! What the watcher hands the guest: distinct paths, at most a cap at a
//! time (a `git checkout` of 10,000 files becomes their folders, never
//! nothing), and the stamps of what was sent, so the guest's own touch
//! coming back through the file server is not sent again.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Changed paths waiting for the guest: guest path → host path.
#[derive(Debug, Default)]
pub struct Pending {
    paths: BTreeMap<String, PathBuf>,
    /// The shares' guest paths: never widened past.
    roots: Vec<String>,
    cap: usize,
    /// Set when paths were replaced by their folders since the last take.
    widened: bool,
}

impl Pending {
    pub fn new(roots: Vec<String>, cap: usize) -> Pending {
        Pending { paths: BTreeMap::new(), roots, cap: cap.max(1), widened: false }
    }

    /// Adds a changed path; past the cap, the deepest paths become their
    /// folders (a level at a time) until the set fits again.
    pub fn add(&mut self, guest: String, host: PathBuf) {
        self.paths.insert(guest, host);
        while self.paths.len() > self.cap {
            let depth = |g: &str| g.matches('/').count();
            let Some(deepest) = self.paths.keys().filter(|g| !self.roots.contains(g)).map(|g| depth(g)).max() else {
                break; // only share roots left
            };
            let (paths, mut moved) = (std::mem::take(&mut self.paths), false);
            for (g, h) in paths {
                let (pg, ph) = if depth(&g) == deepest { self.parent(g.clone(), h) } else { (g.clone(), h) };
                moved |= pg != g;
                self.paths.insert(pg, ph);
            }
            self.widened = true;
            if !moved {
                break; // nothing above to merge into (paths outside every share)
            }
        }
    }

    /// The folder of a path, or the path itself for a share root.
    pub fn parent(&self, guest: String, host: PathBuf) -> (String, PathBuf) {
        if self.roots.contains(&guest) {
            return (guest, host);
        }
        match (guest.rsplit_once('/'), host.parent()) {
            (Some((g, _)), Some(h)) if !g.is_empty() => (g.to_string(), h.to_path_buf()),
            _ => (guest, host),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Everything pending (at most the cap), and whether it was widened.
    pub fn take(&mut self) -> (Vec<(String, PathBuf)>, bool) {
        let widened = std::mem::take(&mut self.widened);
        (std::mem::take(&mut self.paths).into_iter().collect(), widened)
    }
}

/// What identifies a file's content for echo detection: mtime and size.
pub type Stamp = (i64, i64, u64);

pub fn stamp(m: &Metadata) -> Stamp {
    (m.mtime(), m.mtime_nsec(), m.size())
}

/// The stamp of each file last sent to the guest, at most `cap` of them
/// (when full it starts over: an echo then costs one more round, once).
#[derive(Debug, Default)]
pub struct Sent {
    stamps: HashMap<PathBuf, Stamp>,
    cap: usize,
}

impl Sent {
    pub fn new(cap: usize) -> Sent {
        Sent { stamps: HashMap::new(), cap }
    }

    pub fn record(&mut self, host: PathBuf, s: Stamp) {
        if self.stamps.len() >= self.cap && !self.stamps.contains_key(&host) {
            self.stamps.clear();
        }
        self.stamps.insert(host, s);
    }

    /// True if a modification of `host` showing `s` is the guest's own
    /// touch coming back: a real edit changes the mtime.
    pub fn is_echo(&self, host: &Path, s: Stamp) -> bool {
        self.stamps.get(host) == Some(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(p: &mut Pending, guest: &str) {
        p.add(guest.to_string(), PathBuf::from(format!("/src{guest}")));
    }

    #[test]
    fn a_burst_becomes_its_folders_and_keeps_the_last_change() {
        let mut p = Pending::new(vec!["/home/u".into()], 100);
        for i in 0..10_000 {
            add(&mut p, &format!("/home/u/app/src/f{i}.js"));
        }
        add(&mut p, "/home/u/app/last/final.js");
        let (batch, widened) = p.take();
        assert!(widened && batch.len() <= 100, "{}", batch.len());
        let names: Vec<&str> = batch.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(names, ["/home/u/app/last", "/home/u/app/src"], "the last change is kept, as its folder");
        assert_eq!(batch[1].1, PathBuf::from("/src/home/u/app/src"), "the host path follows");
        assert!(p.is_empty() && !p.take().1);
        add(&mut p, "/home/u/app/last/final.js");
        assert_eq!(p.take().0[0].0, "/home/u/app/last/final.js", "by name once it fits");
    }

    #[test]
    fn distinct_paths_under_the_cap_are_kept_as_they_are() {
        let mut p = Pending::new(vec!["/home/u".into()], 3);
        for g in ["/home/u/a", "/home/u/b", "/home/u/a", "/home/u/b", "/home/u/a"] {
            add(&mut p, g);
        }
        assert_eq!(p.take(), (vec![("/home/u/a".into(), "/src/home/u/a".into()), ("/home/u/b".into(), "/src/home/u/b".into())], false));
    }

    #[test]
    fn widening_stops_at_the_share_roots() {
        let mut p = Pending::new(vec!["/home/u".into(), "/srv/www".into()], 1);
        add(&mut p, "/home/u/a/b/c");
        add(&mut p, "/srv/www/x");
        let (batch, _) = p.take();
        let names: Vec<&str> = batch.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(names, ["/home/u", "/srv/www"], "two shares never merge into /");
        assert_eq!(p.parent("/home/u".into(), "/h".into()), ("/home/u".into(), "/h".into()));
        let mut stray = Pending::new(vec![], 1);
        add(&mut stray, "/a");
        add(&mut stray, "/b");
        assert_eq!(stray.take().0.len(), 2, "never stuck on paths with nothing above");
    }

    #[test]
    fn only_the_same_stamp_is_an_echo() {
        let mut s = Sent::new(2);
        let f = PathBuf::from("/src/a");
        s.record(f.clone(), (100, 5, 10));
        assert!(s.is_echo(&f, (100, 5, 10)));
        assert!(!s.is_echo(&f, (100, 6, 10)), "a new mtime is a real edit");
        assert!(!s.is_echo(&f, (100, 5, 11)), "so is a new size");
        assert!(!s.is_echo(Path::new("/src/b"), (100, 5, 10)));
        s.record("/src/b".into(), (1, 1, 1));
        s.record("/src/c".into(), (1, 1, 1));
        assert!(!s.is_echo(&f, (100, 5, 10)), "bounded: a full map starts over");
        assert!(s.is_echo(Path::new("/src/c"), (1, 1, 1)));
    }
}

//! Settings given at first start (memory, CPUs, disk size, shares),
//! remembered in DIR/settings as `key=value` lines so the next `skiff
//! start` without flags boots the same VM; a setting given again replaces
//! the stored one. Shares are one setting: `--share PATH` (repeatable) or
//! `--no-shares` given again replaces every stored `share` line.

use std::collections::BTreeMap;

use crate::state::file;
use std::io;
use std::path::Path;

/// How a remembered key becomes `skiff run` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag VALUE`, one value.
    Value,
    /// `--flag VALUE` per value (a repeatable flag).
    List,
    /// `--flag` alone, stored as `true`.
    Switch,
}

/// A remembered key: its name in the file, the `skiff run` flag, its kind,
/// and its group (keys of one group are replaced together).
pub struct Key {
    pub name: &'static str,
    pub flag: &'static str,
    pub kind: Kind,
    pub group: &'static str,
}

pub const KEYS: [Key; 9] = [
    Key { name: "memory", flag: "--memory", kind: Kind::Value, group: "memory" },
    Key { name: "cpus", flag: "--cpus", kind: Kind::Value, group: "cpus" },
    Key { name: "disk_size", flag: "--disk-size", kind: Kind::Value, group: "disk_size" },
    Key { name: "share", flag: "--share", kind: Kind::List, group: "shares" },
    Key { name: "no_shares", flag: "--no-shares", kind: Kind::Switch, group: "shares" },
    Key { name: "share_via", flag: "--share-via", kind: Kind::Value, group: "share_via" },
    Key { name: "balloon", flag: "--balloon", kind: Kind::Value, group: "balloon" },
    Key { name: "discard", flag: "--discard", kind: Kind::Value, group: "discard" },
    Key { name: "watch", flag: "--watch", kind: Kind::Value, group: "watch" },
];

/// Key → its values (one for `Value` and `Switch` keys), in file order.
pub type Settings = BTreeMap<String, Vec<String>>;

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Parses `key=value` lines; blank lines, `#` comments and unknown keys
/// are skipped; a single-valued key given twice keeps its last line.
pub fn parse(text: &str) -> Settings {
    let mut out = Settings::new();
    for (k, v) in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        let Some(known) = key(k).filter(|_| !v.is_empty()) else { continue };
        let values = out.entry(k.to_string()).or_default();
        if known.kind != Kind::List {
            values.clear();
        }
        values.push(v.to_string());
    }
    out
}

pub fn render(map: &Settings) -> String {
    let mut s = String::from("# skiff start settings; a flag given to `skiff start` replaces its lines\n");
    for (k, values) in map {
        for v in values {
            s.push_str(&format!("{k}={v}\n"));
        }
    }
    s
}

pub fn load(path: &Path) -> Settings {
    file::read(path, 64 * 1024).map(|t| parse(&t)).unwrap_or_default()
}

pub fn save(path: &Path, map: &Settings) -> io::Result<()> {
    file::write(path, render(map).as_bytes())
}

/// One line for `skiff status`: `memory=1000, share=/src, ...`.
pub fn describe(map: &Settings) -> String {
    let items: Vec<String> = map.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}"))).collect();
    if items.is_empty() { "none (the defaults)".to_string() } else { items.join(", ") }
}

/// Merges this start's flags into the stored settings: `given(key)` is the
/// key's values from the command line if the user gave that flag. A group
/// with any key given is replaced as a whole; the others are kept and
/// become flags. Returns the new settings and the flags to add.
pub fn merge(stored: &Settings, given: impl Fn(&str) -> Option<Vec<String>>) -> (Settings, Vec<String>) {
    let mut out = stored.clone();
    let mut flags = Vec::new();
    let mut groups: Vec<&str> = KEYS.iter().map(|k| k.group).collect();
    groups.dedup();
    for group in groups {
        let keys: Vec<&Key> = KEYS.iter().filter(|k| k.group == group).collect();
        let now: Vec<(&Key, Option<Vec<String>>)> = keys.iter().map(|k| (*k, given(k.name).filter(|v| !v.is_empty()))).collect();
        if now.iter().any(|(_, v)| v.is_some()) {
            for (k, v) in now {
                match v {
                    Some(v) => out.insert(k.name.to_string(), v),
                    None => out.remove(k.name),
                };
            }
            continue;
        }
        for k in keys {
            for v in stored.get(k.name).into_iter().flatten() {
                match k.kind {
                    Kind::Value | Kind::List => flags.extend([k.flag.to_string(), v.clone()]),
                    Kind::Switch if v == "true" => flags.push(k.flag.to_string()),
                    Kind::Switch => {}
                }
            }
        }
    }
    (out, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given<'a>(pairs: &'a [(&'a str, &'a [&'a str])]) -> impl Fn(&str) -> Option<Vec<String>> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn first_start_remembers_and_later_flags_replace() {
        let none = Settings::new();
        let (first, flags) = merge(&none, given(&[("memory", &["2048"])]));
        assert!(flags.is_empty());
        assert_eq!(first["memory"], ["2048"]);
        let back = parse(&render(&first));
        assert_eq!(back, first);
        let (second, flags) = merge(&back, given(&[]));
        assert_eq!(flags, ["--memory", "2048"]);
        assert_eq!(second, first);
        let (third, flags) = merge(&back, given(&[("memory", &["512"])]));
        assert!(flags.is_empty());
        assert_eq!(third["memory"], ["512"]);
    }

    #[test]
    fn shares_are_remembered_and_replaced_as_one() {
        let (first, _) = merge(&Settings::new(), given(&[("share", &["/src/a", "/src/b c"]), ("cpus", &["4"])]));
        let stored = parse(&render(&first));
        assert_eq!(stored["share"], ["/src/a", "/src/b c"]);
        let (_, flags) = merge(&stored, given(&[]));
        assert_eq!(flags, ["--cpus", "4", "--share", "/src/a", "--share", "/src/b c"]);
        // --share again replaces the list.
        let (changed, flags) = merge(&stored, given(&[("share", &["/x"])]));
        assert_eq!(changed["share"], ["/x"]);
        assert_eq!(flags, ["--cpus", "4"]);
        // --no-shares replaces it too, and is remembered.
        let (off, _) = merge(&stored, given(&[("no_shares", &["true"])]));
        assert!(!off.contains_key("share"));
        let (_, flags) = merge(&parse(&render(&off)), given(&[]));
        assert_eq!(flags, ["--cpus", "4", "--no-shares"]);
        // ...until a --share turns sharing back on.
        let (on, _) = merge(&off, given(&[("share", &["/y"])]));
        assert!(!on.contains_key("no_shares"));
        assert_eq!(describe(&on), "cpus=4, share=/y");
    }

    #[test]
    fn switches_are_remembered() {
        let (first, _) = merge(&Settings::new(), given(&[("watch", &["off"]), ("balloon", &["off"])]));
        let (_, flags) = merge(&parse(&render(&first)), given(&[]));
        assert_eq!(flags, ["--balloon", "off", "--watch", "off"]);
    }

    #[test]
    fn junk_is_ignored() {
        let m = parse("# c\nmemory = 1024\nbogus=1\ncpus=\nnoequals\nmemory=2048\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m["memory"], ["2048"], "the last line of a single-valued key wins");
        assert_eq!(describe(&Settings::new()), "none (the defaults)");
    }
}

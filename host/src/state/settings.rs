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
    /// `--flag=VALUE`, one value.
    Value,
    /// `--flag=VALUE` per value (a repeatable flag).
    List,
    /// `--flag` alone, stored as `true`.
    Switch,
}

/// A remembered key, one row of the table (`commands::remembered::KEYS`)
/// that decides the flag, the stored line and the child's argument: its
/// name in the file, the clap argument id, the `skiff run` flag, its kind,
/// its group (keys of one group are replaced together), and how to read
/// its values from parsed options `O` (a switch: `true` when on).
pub struct Key<O: 'static> {
    pub name: &'static str,
    pub arg: &'static str,
    pub flag: &'static str,
    pub kind: Kind,
    pub group: &'static str,
    pub get: fn(&O) -> Vec<String>,
}

/// Key → its values (one for `Value` and `Switch` keys), in file order.
pub type Settings = BTreeMap<String, Vec<String>>;

/// Parses `key=value` lines; blank lines, `#` comments and keys not in
/// `keys` are skipped; a single-valued key given twice keeps its last line.
pub fn parse<O>(keys: &[Key<O>], text: &str) -> Settings {
    let mut out = Settings::new();
    for (k, v) in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split_once('=')) {
        let (k, v) = (k.trim(), v.trim());
        let Some(known) = keys.iter().find(|key| key.name == k).filter(|_| !v.is_empty()) else { continue };
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

pub fn load<O>(keys: &[Key<O>], path: &Path) -> Settings {
    file::read(path, 64 * 1024).map(|t| parse(keys, &t)).unwrap_or_default()
}

pub fn save(path: &Path, map: &Settings) -> io::Result<()> {
    file::write(path, render(map).as_bytes())
}

/// One line for `skiff status`: `memory=1000, share=/src, ...`.
pub fn describe(map: &Settings) -> String {
    let items: Vec<String> = map.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}"))).collect();
    if items.is_empty() { "none (the defaults)".to_string() } else { items.join(", ") }
}

/// The settings parsed options carry: the values of each key whose
/// argument `given(arg)` says the user gave.
pub fn read<O>(keys: &[Key<O>], opts: &O, given: impl Fn(&str) -> bool) -> Settings {
    keys.iter().filter(|k| given(k.arg)).map(|k| (k.name.to_string(), (k.get)(opts))).filter(|(_, v)| !v.is_empty()).collect()
}

/// `skiff run`'s arguments for `map`, always `--flag=VALUE`: a value that
/// starts with `-` is never taken for a flag. A switch is `--flag` when
/// stored as `true`.
pub fn args<O>(keys: &[Key<O>], map: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for k in keys {
        for v in map.get(k.name).into_iter().flatten() {
            match k.kind {
                Kind::Value | Kind::List => out.push(format!("{}={v}", k.flag)),
                Kind::Switch if v == "true" => out.push(k.flag.to_string()),
                Kind::Switch => {}
            }
        }
    }
    out
}

/// Merges this start's settings (`given`, from [`read`]) into the stored
/// ones: a group with any key given is replaced as a whole; the others are
/// kept and become arguments. Returns the new settings and the arguments
/// to add.
pub fn merge<O>(keys: &[Key<O>], stored: &Settings, given: &Settings) -> (Settings, Vec<String>) {
    let mut out = stored.clone();
    let mut kept = Settings::new();
    for k in keys {
        let group_given = keys.iter().any(|g| g.group == k.group && given.contains_key(g.name));
        match (group_given, given.get(k.name), stored.get(k.name)) {
            (true, Some(v), _) => drop(out.insert(k.name.to_string(), v.clone())),
            (true, None, _) => drop(out.remove(k.name)),
            (false, _, Some(v)) => drop(kept.insert(k.name.to_string(), v.clone())),
            (false, _, None) => {}
        }
    }
    (out, args(keys, &kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options of a toy command, and a table over them as `commands::remembered` has.
    #[derive(Default)]
    struct Opts {
        memory: String,
        share: Vec<String>,
        no_shares: bool,
        watch: String,
    }

    const KEYS: [Key<Opts>; 4] = [
        Key { name: "memory", arg: "memory", flag: "--memory", kind: Kind::Value, group: "memory", get: |o| vec![o.memory.clone()] },
        Key { name: "share", arg: "shares", flag: "--share", kind: Kind::List, group: "shares", get: |o| o.share.clone() },
        Key { name: "no_shares", arg: "no_shares", flag: "--no-shares", kind: Kind::Switch, group: "shares", get: |o| o.no_shares.then(|| "true".into()).into_iter().collect() },
        Key { name: "watch", arg: "watch", flag: "--watch", kind: Kind::Value, group: "watch", get: |o| vec![o.watch.clone()] },
    ];

    /// This start's settings from the given pairs, through `read` as `skiff start` does.
    fn given(pairs: &[(&str, &[&str])]) -> Settings {
        let mut o = Opts::default();
        for (k, v) in pairs {
            match *k {
                "memory" => o.memory = v[0].into(),
                "share" => o.share = v.iter().map(|s| s.to_string()).collect(),
                "no_shares" => o.no_shares = true,
                _ => o.watch = v[0].into(),
            }
        }
        let arg = |k: &str| KEYS.iter().find(|key| key.name == k).map(|key| key.arg).unwrap();
        read(&KEYS, &o, |a| pairs.iter().any(|(k, _)| arg(k) == a))
    }

    #[test]
    fn first_start_remembers_and_later_flags_replace() {
        let none = Settings::new();
        let (first, flags) = merge(&KEYS, &none, &given(&[("memory", &["2048"])]));
        assert!(flags.is_empty());
        assert_eq!(first["memory"], ["2048"]);
        let back = parse(&KEYS, &render(&first));
        assert_eq!(back, first);
        let (second, flags) = merge(&KEYS, &back, &given(&[]));
        assert_eq!(flags, ["--memory=2048"]);
        assert_eq!(second, first);
        let (third, flags) = merge(&KEYS, &back, &given(&[("memory", &["512"])]));
        assert!(flags.is_empty());
        assert_eq!(third["memory"], ["512"]);
    }

    #[test]
    fn shares_are_remembered_and_replaced_as_one() {
        let (first, _) = merge(&KEYS, &Settings::new(), &given(&[("share", &["/src/a", "/src/b c"]), ("memory", &["4"])]));
        let stored = parse(&KEYS, &render(&first));
        assert_eq!(stored["share"], ["/src/a", "/src/b c"]);
        let (_, flags) = merge(&KEYS, &stored, &given(&[]));
        assert_eq!(flags, ["--memory=4", "--share=/src/a", "--share=/src/b c"]);
        // --share again replaces the list.
        let (changed, flags) = merge(&KEYS, &stored, &given(&[("share", &["/x"])]));
        assert_eq!(changed["share"], ["/x"]);
        assert_eq!(flags, ["--memory=4"]);
        // --no-shares replaces it too, and is remembered.
        let (off, _) = merge(&KEYS, &stored, &given(&[("no_shares", &[])]));
        assert!(!off.contains_key("share"));
        let (_, flags) = merge(&KEYS, &parse(&KEYS, &render(&off)), &given(&[]));
        assert_eq!(flags, ["--memory=4", "--no-shares"]);
        // ...until a --share turns sharing back on.
        let (on, _) = merge(&KEYS, &off, &given(&[("share", &["/y"])]));
        assert!(!on.contains_key("no_shares"));
        assert_eq!(describe(&on), "memory=4, share=/y");
    }

    #[test]
    fn switches_are_remembered() {
        let (first, _) = merge(&KEYS, &Settings::new(), &given(&[("watch", &["off"])]));
        let (_, flags) = merge(&KEYS, &parse(&KEYS, &render(&first)), &given(&[]));
        assert_eq!(flags, ["--watch=off"]);
    }

    #[test]
    fn junk_is_ignored() {
        let m = parse(&KEYS, "# c\nmemory = 1024\nbogus=1\nwatch=\nnoequals\nmemory=2048\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m["memory"], ["2048"], "the last line of a single-valued key wins");
        assert_eq!(describe(&Settings::new()), "none (the defaults)");
    }
}

//! Settings given at first start (memory, CPUs, disk size), remembered in
//! DIR/settings as `key=value` lines so the next `skiff start` without
//! flags boots the same VM; a flag given again replaces the stored value.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

/// The remembered keys and the `skiff run` flag each one becomes.
pub const KEYS: [(&str, &str); 3] = [("memory", "--memory"), ("cpus", "--cpus"), ("disk_size", "--disk-size")];

/// Parses `key=value` lines; blank lines, `#` comments and unknown keys are skipped.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, v)| KEYS.iter().any(|(key, _)| key == k) && !v.is_empty())
        .collect()
}

pub fn render(map: &BTreeMap<String, String>) -> String {
    let mut s = String::from("# skiff start settings; a flag given to `skiff start` replaces its line\n");
    for (k, v) in map {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

pub fn load(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path).map(|t| parse(&t)).unwrap_or_default()
}

pub fn save(path: &Path, map: &BTreeMap<String, String>) -> io::Result<()> {
    fs::write(path, render(map))
}

/// Merges this start's flags into the stored settings: `given(key)` is the
/// value from the command line, if the user gave it. Returns the new
/// settings and the flags to add for keys the user did not give.
pub fn merge(stored: &BTreeMap<String, String>, given: impl Fn(&str) -> Option<String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = stored.clone();
    let mut flags = Vec::new();
    for (key, flag) in KEYS {
        match given(key) {
            Some(v) => {
                out.insert(key.to_string(), v);
            }
            None => {
                if let Some(v) = stored.get(key) {
                    flags.extend([flag.to_string(), v.clone()]);
                }
            }
        }
    }
    (out, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_remembers_and_later_flags_replace() {
        let none = BTreeMap::new();
        let (first, flags) = merge(&none, |k| (k == "memory").then(|| "2048".to_string()));
        assert!(flags.is_empty());
        assert_eq!(first.get("memory").map(String::as_str), Some("2048"));
        let back = parse(&render(&first));
        assert_eq!(back, first);
        let (second, flags) = merge(&back, |_| None);
        assert_eq!(flags, ["--memory", "2048"]);
        assert_eq!(second, first);
        let (third, flags) = merge(&back, |k| (k == "memory").then(|| "512".to_string()));
        assert!(flags.is_empty());
        assert_eq!(third.get("memory").map(String::as_str), Some("512"));
    }

    #[test]
    fn junk_is_ignored() {
        let m = parse("# c\nmemory = 1024\nbogus=1\ncpus=\nnoequals\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m["memory"], "1024");
    }
}

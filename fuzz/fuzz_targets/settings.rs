//! The host's `settings` file in the state folder (hostile: see
//! `state::file`): parsing keeps only known keys with values, what it
//! keeps renders to a file that parses back the same, merging flags into
//! it never invents keys, and the arguments it gives `skiff run` are all
//! `--flag` or `--flag=VALUE` (no value can pass for a flag).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff::commands::remembered::KEYS;
use skiff::state::settings;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (stored, flags) = text.split_once('\0').unwrap_or((&text, ""));
    let map = settings::parse(&KEYS, stored);
    for (k, values) in &map {
        assert!(KEYS.iter().any(|key| key.name == k), "{k:?}");
        assert!(!values.is_empty() && values.iter().all(|v| !v.is_empty() && !v.contains('\n') && v.trim() == v), "{values:?}");
    }
    assert_eq!(settings::parse(&KEYS, &settings::render(&map)), map);
    let _ = settings::describe(&map);

    // Flags given on this start: `key=value` lines of the second half.
    let given = settings::parse(&KEYS, flags);
    let (merged, args) = settings::merge(&KEYS, &map, &given);
    for k in merged.keys() {
        assert!(map.contains_key(k) || given.contains_key(k), "{k:?} came from nowhere");
    }
    for (k, v) in &given {
        assert_eq!(merged.get(k), Some(v), "a given flag replaces what was stored");
    }
    for a in &args {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        assert!(!a.contains('\n') && KEYS.iter().any(|k| k.flag == flag), "{a:?}");
    }
});

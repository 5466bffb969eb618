//! The settings `skiff start` remembers (DIR/settings): one table row per
//! key decides its `skiff run` flag, its stored line, the argument the
//! detached `skiff run` is given, and how its value is read back from the
//! parsed options. Adding a key is a row here plus the code that uses it.

use std::path::Path;

use crate::commands::run::RunOptions;
use crate::state::settings::{self, Key, Kind, Settings};

/// Every remembered key; keys of one group are replaced together.
pub const KEYS: [Key<RunOptions>; 9] = [
    Key { name: "memory", arg: "memory", flag: "--memory", kind: Kind::Value, group: "memory", get: |o| vec![o.memory.to_string()] },
    Key { name: "cpus", arg: "cpus", flag: "--cpus", kind: Kind::Value, group: "cpus", get: |o| vec![o.cpus.to_string()] },
    Key { name: "disk_size", arg: "disk_size", flag: "--disk-size", kind: Kind::Value, group: "disk_size", get: |o| vec![o.disk_size.clone()] },
    Key {
        name: "share",
        arg: "shares",
        flag: "--share",
        kind: Kind::List,
        group: "shares",
        get: |o| o.shares.shares.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
    },
    Key {
        name: "no_shares",
        arg: "no_shares",
        flag: "--no-shares",
        kind: Kind::Switch,
        group: "shares",
        get: |o| o.shares.no_shares.then(|| "true".to_string()).into_iter().collect(),
    },
    Key { name: "share_via", arg: "share_via", flag: "--share-via", kind: Kind::Value, group: "share_via", get: |o| vec![o.shares.share_via.clone()] },
    Key { name: "balloon", arg: "balloon", flag: "--balloon", kind: Kind::Value, group: "balloon", get: |o| vec![o.balloon.as_str().to_string()] },
    Key { name: "discard", arg: "discard", flag: "--discard", kind: Kind::Value, group: "discard", get: |o| vec![o.discard.as_str().to_string()] },
    Key { name: "watch", arg: "watch", flag: "--watch", kind: Kind::Value, group: "watch", get: |o| vec![o.watch.as_str().to_string()] },
];

/// The stored settings.
pub fn load(path: &Path) -> Settings {
    settings::load(&KEYS, path)
}

/// This start's options merged into the stored settings: `given(arg)`
/// says whether the user gave that argument; share paths must already be
/// absolute (the next start may run elsewhere). Returns the new settings
/// and the arguments that carry the kept ones to `skiff run`.
pub fn merge(stored: &Settings, opts: &RunOptions, given: impl Fn(&str) -> bool) -> (Settings, Vec<String>) {
    settings::merge(&KEYS, stored, &settings::read(&KEYS, opts, given))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches, Parser};

    /// `skiff run`'s parser, as the child parses its arguments.
    #[derive(Parser)]
    struct Child {
        #[command(flatten)]
        run: RunOptions,
    }

    /// What a child given `args` reads back through the table.
    fn child_reads(args: &[String]) -> Result<Settings, clap::Error> {
        let m = Child::command().try_get_matches_from(std::iter::once("skiff-run".to_string()).chain(args.iter().cloned()))?;
        let o = Child::from_arg_matches(&m)?;
        Ok(settings::read(&KEYS, &o.run, |arg| m.value_source(arg) == Some(ValueSource::CommandLine)))
    }

    fn stored(pairs: &[(&str, &[&str])]) -> Settings {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn the_childs_arguments_parse_back_to_the_settings() {
        let every = stored(&[
            ("memory", &["2048"]),
            ("cpus", &["4"]),
            ("disk_size", &["64G"]),
            ("share", &["/src/a b", "/home/u/x=y", "/srv/ü"]),
            ("share_via", &["9p"]),
            ("balloon", &["off"]),
            ("discard", &["off"]),
            ("watch", &["off"]),
        ]);
        let no_shares = stored(&[("no_shares", &["true"]), ("watch", &["on"])]);
        for map in [every.clone(), no_shares.clone()] {
            let args = settings::args(&KEYS, &map);
            assert_eq!(child_reads(&args).unwrap(), map, "{args:?}");
        }
        // Every row is in one of the cases, so a new key is round-tripped too.
        for k in &KEYS {
            assert!(every.contains_key(k.name) || no_shares.contains_key(k.name), "{} is not tested", k.name);
        }
        // Kept settings become the same arguments through `merge`.
        let (_, kept) = settings::merge(&KEYS, &every, &Settings::new());
        assert_eq!(child_reads(&kept).unwrap(), every);
    }

    #[test]
    fn a_value_starting_with_a_dash_is_not_taken_for_a_flag() {
        let odd = stored(&[("share", &["--no-shares", "-v", "--memory=1"]), ("disk_size", &["-1G"])]);
        let args = settings::args(&KEYS, &odd);
        assert_eq!(child_reads(&args).unwrap(), odd, "{args:?}");
        // A value that is no number is refused as a value of its flag, not read as another flag.
        let err = child_reads(&settings::args(&KEYS, &stored(&[("memory", &["--cpus=9"])]))).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
    }

    #[test]
    fn every_row_names_a_real_flag_and_argument() {
        let cmd = Child::command();
        for k in &KEYS {
            let arg = cmd.get_arguments().find(|a| a.get_id() == k.arg).unwrap_or_else(|| panic!("no argument {}", k.arg));
            assert_eq!(arg.get_long().map(|l| format!("--{l}")).as_deref(), Some(k.flag), "{}", k.name);
        }
    }
}

//! Skiff's options from the kernel command line. Dotted parameters such as
//! `skiff.port=2375` never reach init's argv or environment, so init reads
//! `/proc/cmdline` itself. Bad values are reported and replaced by defaults.

use skiff_proto::DEFAULT_ENGINE_PORT;

/// Settings taken from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// vsock port where the engine API is served (`skiff.port=N`).
    pub port: u32,
    /// Verbose logging (`skiff.debug`).
    pub debug: bool,
    /// Size cap of the tmpfs root, as tmpfs `size=` text (`skiff.rootsize=75%`).
    pub root_size: String,
    /// Engine log level passed to podman (`skiff.engine_log=warn`).
    pub engine_log: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: DEFAULT_ENGINE_PORT,
            debug: false,
            root_size: "75%".into(),
            engine_log: "warn".into(),
        }
    }
}

/// Parses the command line; returns the options and one warning per bad or
/// unknown `skiff.*` parameter (the default is kept for that key).
pub fn parse(cmdline: &str) -> (Options, Vec<String>) {
    let mut opts = Options::default();
    let mut warnings = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("skiff.") else { continue };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (rest, None),
        };
        let mut bad = |why: &str| warnings.push(format!("ignoring kernel parameter {word:?}: {why}"));
        match (key, value) {
            ("port", Some(v)) => match v.parse::<u32>() {
                Ok(p) if p > 0 && p != u32::MAX => opts.port = p,
                _ => bad("expected a port number from 1 to 4294967294"),
            },
            ("debug", None) | ("debug", Some("1")) => opts.debug = true,
            ("debug", Some("0")) => opts.debug = false,
            ("rootsize", Some(v)) if valid_size(v) => opts.root_size = v.to_string(),
            ("rootsize", _) => bad("expected a size such as 75% or 2G"),
            ("engine_log", Some(v)) if ["debug", "info", "warn", "error"].contains(&v) => {
                opts.engine_log = v.to_string()
            }
            ("engine_log", _) => bad("expected debug, info, warn or error"),
            (k, _) if is_config_override(k) => {} // see config_overrides
            _ => bad("unknown option"),
        }
    }
    (opts, warnings)
}

/// A tmpfs size: digits followed by an optional `%`, `k`, `m` or `g`.
fn valid_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['%', 'k', 'K', 'm', 'M', 'g', 'G']);
    !digits.is_empty() && digits.len() + 1 >= v.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

// --- Overrides of config-file settings (checked by `config::from_cmdline`) ---

/// Kernel options that override keys of the config file:
/// `skiff.tz=ZONE`, `skiff.mirror=URL[,URL]`, `skiff.insecure=HOST[:PORT][,...]`
/// (both repeatable) and `skiff.sysctl.NAME=VALUE`.
pub fn is_config_override(key: &str) -> bool {
    matches!(key, "tz" | "mirror" | "insecure") || key.strip_prefix("sysctl.").is_some_and(|n| !n.is_empty())
}

/// The config-override options, in order, as (key without `skiff.`, value).
/// Options without a value are ignored here (the same key with a value is
/// what `config` checks and reports on).
pub fn config_overrides(cmdline: &str) -> Vec<(String, String)> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("skiff.")?.split_once('='))
        .filter(|(k, _)| is_config_override(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// True if `skiff.KEY` appears on the command line (so it beats the config file).
pub fn given(cmdline: &str, key: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("skiff."))
        .any(|w| w == key || w.split_once('=').is_some_and(|(k, _)| k == key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_skiff_options() {
        let (o, w) = parse("console=ttyS0 quiet root=/dev/ram0\n");
        assert_eq!(o, Options::default());
        assert!(w.is_empty());
    }

    #[test]
    fn reads_known_options() {
        let (o, w) = parse("skiff.port=1234 skiff.debug skiff.rootsize=2G skiff.engine_log=info");
        assert_eq!(o.port, 1234);
        assert!(o.debug);
        assert_eq!(o.root_size, "2G");
        assert_eq!(o.engine_log, "info");
        assert!(w.is_empty());
    }

    #[test]
    fn bad_values_warn_and_keep_defaults() {
        let (o, w) = parse("skiff.port=http skiff.port=0 skiff.rootsize=lots skiff.rootsize=5%% skiff.bogus=1 skiff.engine_log=loud");
        assert_eq!(o, Options::default());
        assert_eq!(w.len(), 6, "{w:?}");
        assert!(w[0].contains("skiff.port=http"));
        assert!(w[4].contains("unknown option"));
    }

    #[test]
    fn config_overrides_are_collected_not_warned() {
        let line = "quiet skiff.tz=Europe/Paris skiff.mirror=https://m skiff.sysctl.vm.swappiness=5 skiff.sysctl.=1 skiff.port=9 skiff.insecure";
        let (_, w) = parse(line);
        assert_eq!(w.len(), 1, "only the empty sysctl name is unknown: {w:?}");
        let pairs = config_overrides(line);
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["tz", "mirror", "sysctl.vm.swappiness"]);
        assert_eq!(pairs[0].1, "Europe/Paris");
    }

    #[test]
    fn knows_which_options_were_given() {
        let line = "skiff.port=2400 skiff.debug skiff.engine_logx=1";
        assert!(given(line, "port"));
        assert!(given(line, "debug"));
        assert!(!given(line, "engine_log"));
    }
}

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
}

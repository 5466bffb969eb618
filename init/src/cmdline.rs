//! Skiff's options from the kernel command line. Dotted parameters such as
//! `skiff.port=2375` never reach init's argv or environment, so init reads
//! `/proc/cmdline` itself. Bad values are reported and replaced by defaults.

use std::net::Ipv4Addr;

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
    /// Network settings (`skiff.net`, `skiff.ip`, `skiff.gw`, `skiff.dns`, `skiff.hostname`).
    pub net: NetOptions,
}

/// Network settings from the command line; DHCP fills in what is not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// `skiff.net=off`: leave every link but `lo` down.
    pub off: bool,
    /// `skiff.ip=ADDR/PREFIX`: static address of the first Ethernet link (no DHCP there).
    pub ip: Option<(Ipv4Addr, u8)>,
    /// `skiff.gw=ADDR`: default gateway, with `skiff.ip` only.
    pub gateway: Option<Ipv4Addr>,
    /// `skiff.dns=ADDR[,ADDR...]`: DNS servers, used instead of DHCP's.
    pub dns: Vec<Ipv4Addr>,
    /// `skiff.hostname=NAME`: used instead of DHCP's name and the default `skiff`.
    pub hostname: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: DEFAULT_ENGINE_PORT,
            debug: false,
            root_size: "75%".into(),
            engine_log: "warn".into(),
            net: NetOptions::default(),
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
            ("net", Some("off")) => opts.net.off = true,
            ("net", Some("on" | "dhcp")) => opts.net.off = false,
            ("net", _) => bad("expected off, on or dhcp"),
            ("ip", Some(v)) => match parse_cidr(v) {
                Some(cidr) => opts.net.ip = Some(cidr),
                None => bad("expected an IPv4 address with a prefix length such as 10.0.2.15/24; using DHCP"),
            },
            ("gw", Some(v)) => match v.parse::<Ipv4Addr>() {
                Ok(gw) if is_host_address(gw) => opts.net.gateway = Some(gw),
                _ => bad("expected an IPv4 address such as 10.0.2.2"),
            },
            ("dns", Some(v)) => match v.split(',').map(str::parse::<Ipv4Addr>).collect::<Result<Vec<_>, _>>() {
                Ok(list) if list.iter().all(|a| is_host_address(*a)) => opts.net.dns = list,
                _ => bad("expected IPv4 addresses separated by commas such as 1.1.1.1,8.8.8.8"),
            },
            ("hostname", Some(v)) if valid_hostname(v) => opts.net.hostname = Some(v.to_string()),
            ("hostname", _) => bad("expected a host name of letters, digits, '-' and '.' (at most 64 characters)"),
            // Containers can read the command line; the value is not echoed.
            ("secret", _) => warnings.push("ignoring skiff.secret: containers can read the kernel command line; \
                give `secret` in config.toml, a cidata volume or the host's fw_cfg fragment".into()),
            (k, _) if is_config_override(k) => {} // see config_overrides
            _ => bad("unknown option"),
        }
    }
    if let (Some(gw), Some((ip, _))) = (opts.net.gateway, opts.net.ip) {
        if gw == ip {
            warnings.push(format!("ignoring skiff.gw={gw}: it is the address given by skiff.ip"));
            opts.net.gateway = None;
        }
    }
    if opts.net.gateway.is_some() && opts.net.ip.is_none() {
        warnings.push("ignoring skiff.gw: it needs skiff.ip (DHCP provides the gateway otherwise)".into());
        opts.net.gateway = None;
    }
    (opts, warnings)
}

/// `ADDR/PREFIX` with a unicast host address and a prefix from 1 to 32.
pub fn parse_cidr(v: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = v.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    ((1..=32).contains(&prefix) && is_host_address(addr)).then_some((addr, prefix))
}

/// Not 0.0.0.0, broadcast, multicast or loopback.
fn is_host_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// A host name sethostname(2) and resolvers accept: dot-separated labels of
/// ASCII letters, digits and inner hyphens, 64 bytes at most.
pub fn valid_hostname(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
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
    fn reads_static_network_settings() {
        let (o, w) = parse("skiff.ip=192.168.7.10/24 skiff.gw=192.168.7.1 skiff.dns=1.1.1.1,8.8.8.8 skiff.hostname=box.lan");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.net.ip, Some((Ipv4Addr::new(192, 168, 7, 10), 24)));
        assert_eq!(o.net.gateway, Some(Ipv4Addr::new(192, 168, 7, 1)));
        assert_eq!(o.net.dns, vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]);
        assert_eq!(o.net.hostname.as_deref(), Some("box.lan"));
        assert!(!o.net.off);
        assert!(parse("skiff.net=off").0.net.off);
    }

    #[test]
    fn bad_network_values_warn_and_fall_back_to_dhcp() {
        let bad = [
            "skiff.ip=10.0.2.15", "skiff.ip=10.0.2.15/33", "skiff.ip=10.0.2.15/0", "skiff.ip=300.1.1.1/24",
            "skiff.ip=0.0.0.0/8", "skiff.ip=224.0.0.1/24", "skiff.ip", "skiff.dns=1.1.1.1,,2.2.2.2", "skiff.dns=",
            "skiff.dns=255.255.255.255", "skiff.hostname=-bad", "skiff.hostname=a_b", "skiff.hostname=",
            "skiff.net=maybe", "skiff.gw=x",
        ];
        for word in bad {
            let (o, w) = parse(word);
            assert_eq!(o.net, NetOptions::default(), "{word}");
            assert_eq!(w.len(), 1, "{word}: {w:?}");
            assert!(w[0].contains(word), "{w:?}");
        }
        let long = format!("skiff.hostname={}", "a".repeat(65));
        assert_eq!(parse(&long).1.len(), 1);
    }

    #[test]
    fn a_gateway_needs_a_static_address() {
        let (o, w) = parse("skiff.gw=10.0.2.2");
        assert_eq!(o.net.gateway, None);
        assert!(w[0].contains("needs skiff.ip"), "{w:?}");
        let (o, w) = parse("skiff.gw=10.0.2.2 skiff.ip=10.0.2.9/24");
        assert_eq!(o.net.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)), "order does not matter: {w:?}");
        let (o, w) = parse("skiff.ip=10.0.2.9/24 skiff.gw=10.0.2.9");
        assert_eq!(o.net.gateway, None);
        assert_eq!(w.len(), 1);
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

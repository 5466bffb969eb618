//! The appliance's settings, decided in one place. Each source (the config
//! file on the data disk, a `cidata` volume, the kernel command line) is
//! parsed into a [`Layer`] whose fields are all optional; [`resolve`] lays
//! the layers over each other, fills in the defaults and returns the
//! [`Effective`] settings that everything downstream receives.
//!
//! Precedence, lowest first: defaults, `/var/lib/skiff/config.toml`, the
//! config file on a cidata volume, cidata's meta-data/user-data host name,
//! the host CLI's fragment (QEMU fw_cfg), the kernel command line. A later source replaces a field an earlier one
//! set; sysctls merge per name.
//!
//! Adding a setting: a field in [`Layer`], a line in [`Layer::overlay`], a
//! field in [`Effective`] with its default in [`resolve`], then its key in
//! the parsers that know it (`file`, `cmdline`) and a check in `validate`.
//! A setting the host CLI gives is a field of `skiff_proto::guest_settings`
//! (read by `fwcfg` from the host's item and by `file` from config files).

pub mod apply;
pub mod cidata;
pub mod cmdline;
pub mod file;
pub mod fwcfg;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use skiff_proto::events::Note;
use skiff_proto::auth::Secret;
use skiff_proto::DEFAULT_ENGINE_PORT;

pub use validate::{Invalid, LogLevel};

/// Size cap of the tmpfs root when `skiff.rootsize` is not given.
pub const DEFAULT_ROOT_SIZE: &str = "75%";

/// The settings one source gives; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// `hostname`, `skiff.hostname`, cidata's `local-hostname`.
    pub hostname: Option<String>,
    /// `vsock_port`, `skiff.port`.
    pub port: Option<u32>,
    /// `engine_log_level`, `skiff.engine_log`.
    pub engine_log: Option<LogLevel>,
    /// `timezone`, `skiff.tz`.
    pub timezone: Option<String>,
    /// `registry_mirrors`, `skiff.mirror`: Docker Hub mirrors as given
    /// (`https://host[:port][/path]` or `host[:port]`).
    pub registry_mirrors: Option<Vec<String>>,
    /// `insecure_registries`, `skiff.insecure`: plain HTTP or unverified TLS.
    pub insecure_registries: Option<Vec<String>>,
    /// `ca_certificates`: extra trusted CA certificates (PEM).
    pub ca_certificates: Option<Vec<String>>,
    /// `[sysctl]`, `skiff.sysctl.NAME`: `net.ipv4.ip_forward` → "1".
    pub sysctl: BTreeMap<String, String>,
    /// `skiff.debug`.
    pub debug: Option<bool>,
    /// `skiff.rootsize`, as tmpfs `size=` text.
    pub root_size: Option<String>,
    /// `skiff.net=off` (true) or `on`/`dhcp` (false).
    pub net_off: Option<bool>,
    /// `skiff.ip`.
    pub ip: Option<(Ipv4Addr, u8)>,
    /// `skiff.gw`.
    pub gateway: Option<Ipv4Addr>,
    /// `skiff.dns`.
    pub dns: Option<Vec<Ipv4Addr>>,
    /// `secret` (files and the host's fragment only, never the command
    /// line); `Debug` does not show it. `SecretSetting::None`: not set here.
    pub secret: SecretSetting,
    /// `[[shares]]`, `skiff.share=TAG:PATH`: host folders to mount.
    pub shares: Option<Vec<crate::services::shares::Share>>,
}

impl Layer {
    /// Lays `over` on top of `self`: fields set there win; sysctls merge.
    pub fn overlay(&mut self, over: Layer) {
        fn take<T>(to: &mut Option<T>, from: Option<T>) {
            if from.is_some() {
                *to = from;
            }
        }
        take(&mut self.hostname, over.hostname);
        take(&mut self.port, over.port);
        take(&mut self.engine_log, over.engine_log);
        take(&mut self.timezone, over.timezone);
        take(&mut self.registry_mirrors, over.registry_mirrors);
        take(&mut self.insecure_registries, over.insecure_registries);
        take(&mut self.ca_certificates, over.ca_certificates);
        self.sysctl.extend(over.sysctl);
        take(&mut self.debug, over.debug);
        take(&mut self.root_size, over.root_size);
        take(&mut self.net_off, over.net_off);
        take(&mut self.ip, over.ip);
        take(&mut self.gateway, over.gateway);
        take(&mut self.dns, over.dns);
        // An unusable secret setting wins over every other layer's (fail closed).
        self.secret = match (std::mem::take(&mut self.secret), over.secret) {
            (kept @ SecretSetting::Unusable(_), _) | (kept, SecretSetting::None) => kept,
            (_, over) => over,
        };
        take(&mut self.shares, over.shares);
    }
}

/// The settings in force, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The host name given by a source; `None`: DHCP's, else `skiff`
    /// (decided by the network's name files, as leases come and go).
    pub hostname: Option<String>,
    /// vsock port of the engine API.
    pub port: u32,
    /// podman's `--log-level`.
    pub engine_log: LogLevel,
    /// `None`: UTC.
    pub timezone: Option<String>,
    /// Docker Hub mirrors for registries.conf.
    pub registry_mirrors: Vec<String>,
    /// Registries reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
    /// PEM certificates added to the CA bundle.
    pub ca_certificates: Vec<String>,
    /// Written to /proc/sys (`net.ipv4.ip_forward` → net/ipv4/ip_forward).
    pub sysctl: BTreeMap<String, String>,
    /// Verbose init logging.
    pub debug: bool,
    /// Size cap of the tmpfs root (tmpfs `size=` text).
    pub root_size: String,
    pub net: Network,
    /// The VM's secret every vsock connection must present, none, or an
    /// unusable setting (then no connection is served).
    pub secret: SecretSetting,
    /// Host folders to mount at the same path before the engine starts.
    pub shares: Vec<crate::services::shares::Share>,
}

/// The VM's secret as the sources give it, decided once in [`resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SecretSetting {
    /// No source sets one: every connection from the host is served (other
    /// hypervisors without config).
    #[default]
    None,
    /// Every connection must open with this secret.
    Given(Secret),
    /// A source mentions a secret that cannot be read or parsed: no
    /// connection is served (fail closed). Wins over every other source.
    Unusable(Unusable),
}

/// Why a secret setting cannot be used (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// `secret` is not 64 hex digits in a string.
    BadValue(Source),
    /// The document is not valid TOML and mentions `secret` (or is the
    /// host's fragment, which always carries it).
    NotToml(Source),
    /// The host's fw_cfg item is there but cannot be read.
    Unreadable(Source),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::BadValue(source) => write!(f, "{source}: `secret` is not 64 hex digits"),
            Unusable::NotToml(source) => write!(f, "{source} is not valid TOML and may hold the secret"),
            Unusable::Unreadable(source) => write!(f, "{source} cannot be read"),
        }
    }
}

/// How the links come up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Leave every link but `lo` down.
    pub off: bool,
    /// Static address of the first Ethernet link (no DHCP there).
    pub ip: Option<(Ipv4Addr, u8)>,
    /// Default gateway, with `ip` only.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers used instead of DHCP's.
    pub dns: Vec<Ipv4Addr>,
}

/// Decides every setting from `layers`, lowest precedence first. Pure: the
/// same layers give the same settings and warnings.
pub fn resolve(layers: impl IntoIterator<Item = Layer>) -> (Effective, Vec<Warning>) {
    let mut l = Layer::default();
    for layer in layers {
        l.overlay(layer);
    }
    let mut warnings = Vec::new();
    let gateway = match (l.gateway, l.ip) {
        (Some(gw), Some((ip, _))) if gw == ip => {
            warnings.push(Warning::GatewayIsAddress { gateway: gw });
            None
        }
        (Some(gw), None) => {
            warnings.push(Warning::GatewayNeedsAddress { gateway: gw });
            None
        }
        (gw, _) => gw,
    };
    let effective = Effective {
        hostname: l.hostname,
        port: l.port.unwrap_or(DEFAULT_ENGINE_PORT),
        engine_log: l.engine_log.unwrap_or(LogLevel::Warn),
        timezone: l.timezone,
        registry_mirrors: l.registry_mirrors.unwrap_or_default(),
        insecure_registries: l.insecure_registries.unwrap_or_default(),
        ca_certificates: l.ca_certificates.unwrap_or_default(),
        sysctl: l.sysctl,
        debug: l.debug.unwrap_or(false),
        root_size: l.root_size.unwrap_or_else(|| DEFAULT_ROOT_SIZE.into()),
        net: Network { off: l.net_off.unwrap_or(false), ip: l.ip, gateway, dns: l.dns.unwrap_or_default() },
        secret: l.secret,
        shares: l.shares.unwrap_or_default(),
    };
    (effective, warnings)
}

/// Reads the config file and a cidata volume (once the data disk holds
/// /var/lib/skiff), lays the command line's layer on top, logs every
/// warning naming its key and source, and returns the settings in force.
pub fn load(cmdline: Layer) -> Effective {
    // On the data disk, which containers can be given: a FIFO, symlink or
    // huge file there is refused (defaults), never waited on or followed.
    let file = match crate::boot::safe_file::read(std::path::Path::new(file::PATH), file::MAX_LEN) {
        Ok(text) => {
            log::info!("config: reading {}", file::PATH);
            Some(text)
        }
        Err(e) if e.is_not_found() => {
            log::info!("config: no {} (defaults)", file::PATH);
            None
        }
        Err(e) => {
            log::warn!("config: cannot read {}: {e}; using defaults (the file is left as it is)", file::PATH);
            crate::boot::events::note(Note::FileRefused, file::PATH);
            None
        }
    };
    let seed = cidata::read();
    let host = match fwcfg::read_config() {
        Ok(Some(text)) => {
            log::info!("config: reading the host's settings (QEMU fw_cfg)");
            Some(Ok(text))
        }
        Ok(None) => None,
        Err(e) => {
            log::error!("config: cannot read the host's fw_cfg item: {e}; it carries the VM's secret, so no connection will be served");
            Some(Err(()))
        }
    };
    let host = host.as_ref().map(|r| r.as_deref().map_err(|_| ()));
    let (effective, warnings) = from_sources(file.as_deref(), seed.as_ref(), host, cmdline);
    // Keys and parser messages come from the files: no terminal escapes.
    for w in warnings {
        log::warn!("config: {}", crate::boot::safe_file::escaped(&w.to_string(), WARNING_MAX));
        if let Some((note, key)) = w.note() {
            crate::boot::events::note(note, &key);
        }
    }
    effective
}

/// Longest config warning shown on the console, in characters.
pub const WARNING_MAX: usize = 512;

/// Parses what the sources hold and resolves them in precedence order: the
/// config file, cidata's config file, cidata's host name, the host's
/// fragment, the command line.
/// The host's fragment is `Err` when it is there but cannot be read.
fn from_sources(file: Option<&[u8]>, seed: Option<&cidata::Seed>, host: Option<Result<&[u8], ()>>, cmdline: Layer) -> (Effective, Vec<Warning>) {
    let mut parsed = Vec::new();
    if let Some(text) = file {
        parsed.push(file::parse_bytes(text, Source::File(file::PATH.into())));
    }
    if let Some(seed) = seed {
        if let Some((name, text)) = &seed.config {
            parsed.push(file::parse_bytes(text, Source::File(format!("{}:{name}", seed.device))));
        }
        parsed.push(file::seed(seed.hostname.as_deref(), &seed.device));
    }
    let host_source = || Source::File(HOST_SOURCE.into());
    match host {
        None => {}
        Some(Ok(bytes)) => parsed.push(fwcfg::layer(bytes, host_source())),
        Some(Err(())) => parsed.push((Layer { secret: SecretSetting::Unusable(Unusable::Unreadable(host_source())), ..Layer::default() }, vec![])),
    }
    let (mut layers, mut warnings) = (Vec::new(), Vec::new());
    for (layer, w) in parsed {
        layers.push(layer);
        warnings.extend(w);
    }
    layers.push(cmdline);
    let (effective, resolved) = resolve(layers);
    warnings.extend(resolved);
    (effective, warnings)
}

/// How messages name the host CLI's fragment.
const HOST_SOURCE: &str = "host (QEMU fw_cfg item)";

/// Where a config-file setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML file: its path, or `device:name` on a cidata volume.
    File(String),
    /// The host name in a cidata volume's meta-data/user-data (the device).
    Seed(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(name) => f.write_str(name),
            Source::Seed(device) => write!(f, "{device} meta-data/user-data"),
        }
    }
}

impl Warning {
    /// The note for the host, naming the key or parameter (never a value).
    pub fn note(&self) -> Option<(Note, String)> {
        let name = |word: &str| word.split('=').next().unwrap_or_default().to_string();
        match self {
            Warning::BadValue { key, .. } => Some((Note::SettingRefused, key.clone())),
            Warning::UnknownKey { key, .. } => Some((Note::UnknownKey, key.clone())),
            Warning::BadParameter { word, .. } => Some((Note::SettingRefused, name(word))),
            Warning::UnknownParameter { word } => Some((Note::UnknownKey, name(word))),
            Warning::SecretOnCommandLine => Some((Note::SettingRefused, "skiff.secret".into())),
            Warning::NotToml { .. } | Warning::GatewayNeedsAddress { .. } | Warning::GatewayIsAddress { .. } => None,
        }
    }
}

/// A problem with the settings; what it names is ignored (the default or a
/// lower source's value applies) and everything else still applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A key of a file with a bad value, or one bad element (from 1) of a list.
    BadValue { source: Source, key: String, item: Option<usize>, why: Invalid },
    /// A key no setting has.
    UnknownKey { source: Source, key: String },
    /// A file TOML cannot read; nothing in it applies.
    NotToml { source: Source, detail: String },
    /// A `skiff.*` kernel parameter (the whole word) with a bad value, or one
    /// bad element (from 1) of its comma-separated list.
    BadParameter { word: String, item: Option<usize>, why: Invalid },
    /// A `skiff.*` kernel parameter no setting has.
    UnknownParameter { word: String },
    /// `skiff.gw` without `skiff.ip` (DHCP provides the gateway then).
    GatewayNeedsAddress { gateway: Ipv4Addr },
    /// `skiff.gw` equal to the address `skiff.ip` gives.
    GatewayIsAddress { gateway: Ipv4Addr },
    /// `skiff.secret`: not taken from where containers can read it (the
    /// value is not repeated).
    SecretOnCommandLine,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::BadValue { source, key, item: None, why: why @ Invalid::Secret } => {
                write!(f, "{source}: key `{key}`: {why}; the secret setting is unusable: no connection will be served")
            }
            Warning::BadValue { source, key, item: None, why } => write!(f, "{source}: key `{key}`: {why}; ignored"),
            Warning::BadValue { source, key, item: Some(i), why } => {
                write!(f, "{source}: key `{key}` item {i}: {why}; ignored")
            }
            Warning::UnknownKey { source, key } => {
                write!(f, "{source}: key `{key}`: unknown key (known keys: {}); ignored", file::KEYS.join(", "))
            }
            Warning::NotToml { source, detail } => write!(f, "{source}: not valid TOML, file ignored: {detail}"),
            Warning::BadParameter { word, item: None, why } => write!(f, "ignoring kernel parameter {word:?}: {why}"),
            Warning::BadParameter { word, item: Some(i), why } => {
                write!(f, "kernel parameter {word:?} item {i}: {why}; ignored")
            }
            Warning::UnknownParameter { word } => write!(f, "ignoring kernel parameter {word:?}: unknown option"),
            Warning::GatewayNeedsAddress { gateway } => {
                write!(f, "ignoring skiff.gw={gateway}: it needs skiff.ip (DHCP provides the gateway otherwise)")
            }
            Warning::GatewayIsAddress { gateway } => {
                write!(f, "ignoring skiff.gw={gateway}: it is the address given by skiff.ip")
            }
            Warning::SecretOnCommandLine => write!(
                f,
                "ignoring skiff.secret: containers can read the kernel command line; give `secret` in config.toml, \
                 a cidata volume or the host's fw_cfg fragment"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::guest_settings::{self, GuestSettings};
    use skiff_proto::shares::{Share, Transport};

    fn seed(config: Option<&str>, hostname: Option<&str>) -> cidata::Seed {
        cidata::Seed {
            device: "/dev/sr1".into(),
            hostname: hostname.map(str::to_string),
            config: config.map(|t| ("skiff.toml".to_string(), t.as_bytes().to_vec())),
        }
    }

    /// Resolves the sources as `load` does, the command line given as text;
    /// returns every warning (the command line's first).
    fn settle_all(file: Option<&str>, seed: Option<&cidata::Seed>, host: Option<&str>, cmdline: &str) -> (Effective, Vec<Warning>) {
        let (layer, mut warnings) = cmdline::parse(cmdline);
        let (effective, more) = from_sources(file.map(str::as_bytes), seed, host.map(|h| Ok(h.as_bytes())), layer);
        warnings.extend(more);
        (effective, warnings)
    }

    /// [`settle_all`] without the host's fragment.
    fn settle(file: Option<&str>, seed: Option<&cidata::Seed>, cmdline: &str) -> (Effective, Vec<Warning>) {
        settle_all(file, seed, None, cmdline)
    }

    #[test]
    fn defaults_without_any_source() {
        let (e, w) = settle(None, None, "");
        assert!(w.is_empty());
        assert_eq!(e.hostname, None, "DHCP's name, else skiff");
        assert_eq!(e.port, DEFAULT_ENGINE_PORT);
        assert_eq!(e.engine_log, LogLevel::Warn);
        assert_eq!((e.timezone, e.debug, e.root_size.as_str()), (None, false, "75%"));
        assert!(e.registry_mirrors.is_empty() && e.insecure_registries.is_empty() && e.ca_certificates.is_empty());
        assert!(e.sysctl.is_empty());
        assert_eq!(e.net, Network::default());
    }

    const PEM: [&str; 2] = [
        "-----BEGIN CERTIFICATE-----\nDISK\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nCIDATA\n-----END CERTIFICATE-----\n",
    ];

    /// Each setting the file knows, set by every source in turn: a later
    /// source wins, and one that does not set it leaves the lower one's.
    /// The host's fragment gives none of these (see `host_settings_are_one_source`).
    #[test]
    fn precedence_table() {
        type Get = fn(&Effective) -> String;
        // (setting, [value from the disk's file, cidata's file, the command
        // line], default, read back)
        let table: [(&str, [&str; 3], &str, Get); 7] = [
            ("hostname", ["disk", "cidata", "cmdline"], "None", |e| e.hostname.clone().unwrap_or("None".into())),
            ("port", ["2401", "2402", "2404"], "2375", |e| e.port.to_string()),
            ("engine_log", ["error", "info", "trace"], "warn", |e| e.engine_log.as_str().into()),
            ("timezone", ["Europe/Berlin", "Asia/Tokyo", "UTC"], "None", |e| e.timezone.clone().unwrap_or("None".into())),
            ("mirrors", ["disk.example", "cidata.example", "cmdline.example"], "", |e| e.registry_mirrors.join(",")),
            ("insecure", ["disk:1", "cidata:2", "cmdline:4"], "", |e| e.insecure_registries.join(",")),
            ("sysctl", ["1", "2", "4"], "None", |e| e.sysctl.get("vm.swappiness").cloned().unwrap_or("None".into())),
        ];
        // The host's fragment, with a secret: it leaves every one of these as it was.
        let host_text = guest_settings::render(&GuestSettings { secret: Some(Secret::from_bytes([7; 32])), shares: None });
        for (setting, values, default, get) in table {
            let [in_disk, in_cidata, in_cmdline] = values;
            let (key, param) = match setting {
                "hostname" => ("hostname", "hostname"),
                "port" => ("vsock_port", "port"),
                "engine_log" => ("engine_log_level", "engine_log"),
                "timezone" => ("timezone", "tz"),
                "mirrors" => ("registry_mirrors", "mirror"),
                "insecure" => ("insecure_registries", "insecure"),
                _ => ("sysctl", "sysctl.vm.swappiness"),
            };
            let toml = |v: &str| match setting {
                "port" => format!("{key} = {v}"),
                "mirrors" | "insecure" => format!("{key} = [\"{v}\"]"),
                "sysctl" => format!("sysctl = {{ \"vm.swappiness\" = {v} }}"),
                _ => format!("{key} = \"{v}\""),
            };
            let file_text = toml(in_disk);
            let cidata_seed = seed(Some(&toml(in_cidata)), None);
            let (file, cidata, host) = (Some(file_text.as_str()), Some(&cidata_seed), Some(host_text.as_str()));
            let cmdline = format!("skiff.{param}={in_cmdline}");
            let cases = [
                (None, None, None, "", default),
                (file, None, None, "", in_disk),
                (file, cidata, None, "", in_cidata),
                (None, cidata, None, "", in_cidata),
                (file, cidata, host, "", in_cidata),
                (None, None, host, "", default),
                (file, cidata, host, cmdline.as_str(), in_cmdline),
                (file, None, None, &cmdline, in_cmdline),
                (None, None, None, &cmdline, in_cmdline),
            ];
            for (i, (file, cidata, host, cmdline, want)) in cases.into_iter().enumerate() {
                let (e, w) = settle_all(file, cidata, host, cmdline);
                assert!(w.is_empty(), "{setting} case {i}: {w:?}");
                assert_eq!(get(&e), want, "{setting} case {i}");
            }
        }
    }

    /// The host's fw_cfg item is `guest_settings::render`'s text; the init
    /// reads it with `guest_settings::parse` into one layer, between cidata
    /// and the command line.
    #[test]
    fn host_settings_are_one_source() {
        let share = |tag: &str, path: &str, fs| Share { tag: tag.into(), path: path.into(), fs };
        let host_shares = vec![share("skiff0", "/home/u \"q\"\\x", Some(Transport::NineP)), share("skiff1", "/srv/ü", None)];
        let host = GuestSettings { secret: Some(Secret::from_bytes([9; 32])), shares: Some(host_shares.clone()) };
        let host_text = guest_settings::render(&host);
        let disk = format!("secret = \"{}\"\n[[shares]]\ntag = \"d\"\npath = \"/srv/d\"\n", "01".repeat(32));
        let (e, w) = settle_all(Some(&disk), None, Some(&host_text), "");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e.secret, SecretSetting::Given(Secret::from_bytes([9; 32])));
        assert_eq!(e.shares, host_shares);
        // Without shares from the host, the file's apply; the command line beats the host's.
        let no_shares = guest_settings::render(&GuestSettings { shares: None, ..host.clone() });
        let (e, _) = settle_all(Some(&disk), None, Some(&no_shares), "");
        assert_eq!(e.shares, [share("d", "/srv/d", None)]);
        let (e, _) = settle_all(Some(&disk), None, Some(&host_text), "skiff.share=c:/srv/c");
        assert_eq!(e.shares, [share("c", "/srv/c", None)]);
        // What the host never writes, and a bad entry, are named; the rest applies.
        let odd = format!("{host_text}[[shares]]\ntag = \"x\"\npath = \"/etc\"\n").replace("secret", "hostname = \"h\"\nsecret");
        let (e, w) = settle_all(None, None, Some(&odd), "");
        assert_eq!((e.hostname, e.shares, e.secret), (None, host_shares, host.secret.clone().map(SecretSetting::Given).unwrap()));
        let host_src = Source::File(HOST_SOURCE.into());
        assert_eq!(w, [
            Warning::UnknownKey { source: host_src.clone(), key: "hostname".into() },
            Warning::BadValue { source: host_src, key: "shares".into(), item: Some(3), why: Invalid::Share(skiff_proto::shares::Invalid::Path("/etc".into(), skiff_proto::shares::PathError::System("/etc"))) },
        ]);
    }

    #[test]
    fn ca_certificates_and_the_seed_host_name_take_their_place() {
        let disk = format!("ca_certificates = [\"{}\"]\nhostname = \"disk\"", PEM[0].replace('\n', "\\n"));
        let cidata = format!("ca_certificates = [\"{}\"]\nhostname = \"cidata-file\"", PEM[1].replace('\n', "\\n"));
        let (e, w) = settle(Some(&disk), None, "");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e.ca_certificates, [PEM[0]]);
        // cidata's meta-data name beats the config file on the same volume.
        let (e, _) = settle(Some(&disk), Some(&seed(Some(&cidata), Some("meta"))), "");
        assert_eq!(e.ca_certificates, [PEM[1]]);
        assert_eq!(e.hostname.as_deref(), Some("meta"));
        let (e, _) = settle(Some(&disk), Some(&seed(Some(&cidata), None)), "");
        assert_eq!(e.hostname.as_deref(), Some("cidata-file"));
        let (e, _) = settle(Some(&disk), Some(&seed(None, Some("meta"))), "skiff.hostname=cmd");
        assert_eq!(e.hostname.as_deref(), Some("cmd"));
    }

    #[test]
    fn command_line_only_settings() {
        let (e, w) = settle(None, None, "skiff.debug skiff.rootsize=2G skiff.net=off skiff.ip=10.0.2.9/24 skiff.gw=10.0.2.2 skiff.dns=1.1.1.1");
        assert!(w.is_empty(), "{w:?}");
        assert!(e.debug);
        assert_eq!(e.root_size, "2G");
        let net = Network { off: true, ip: Some(([10, 0, 2, 9].into(), 24)), gateway: Some([10, 0, 2, 2].into()), dns: vec![[1, 1, 1, 1].into()] };
        assert_eq!(e.net, net);
    }

    #[test]
    fn sysctls_merge_per_name() {
        let disk = "[sysctl]\na = 1\nb = 2\n";
        let cidata = seed(Some("[sysctl]\nb = 3\nc = 4\n"), None);
        let (e, w) = settle(Some(disk), Some(&cidata), "skiff.sysctl.c=5 skiff.sysctl.d=6");
        assert!(w.is_empty(), "{w:?}");
        let got: Vec<(&str, &str)> = e.sysctl.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("a", "1"), ("b", "3"), ("c", "5"), ("d", "6")]);
    }

    /// The bug: `skiff.hostname=a` with `hostname = "b"` set "b", then "a".
    #[test]
    fn the_command_line_host_name_beats_the_file_everywhere() {
        let cidata = seed(Some("hostname = \"c\""), Some("d"));
        let (e, w) = settle_all(Some("hostname = \"b\""), Some(&cidata), None, "skiff.hostname=a");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e.hostname.as_deref(), Some("a"));
        let (e, _) = settle(Some("hostname = \"b\""), None, "");
        assert_eq!(e.hostname.as_deref(), Some("b"));
    }

    /// Every source accepts and refuses the same host names (labels of at
    /// most 63 characters, 64 in all).
    #[test]
    fn host_name_rule_is_the_same_for_every_source() {
        let long_label = "a".repeat(64);
        let names = [("x", true), (&"a".repeat(63), true), (&long_label, false), (&format!("{}.b", "a".repeat(62)), true), (&format!("{}.b", "a".repeat(63)), false), ("a_b", false)];
        for (name, ok) in names {
            let want = if ok { Some(name.to_string()) } else { None };
            let results = [
                settle(None, None, &format!("skiff.hostname={name}")),
                settle(Some(&format!("hostname = \"{name}\"")), None, ""),
                settle(None, Some(&seed(Some(&format!("hostname = \"{name}\"")), None)), ""),
                settle(None, Some(&seed(None, Some(name))), ""),
            ];
            for (i, (e, w)) in results.into_iter().enumerate() {
                assert_eq!(e.hostname, want, "{name} from source {i}");
                let refused = w.iter().filter(|w| matches!(w,
                    Warning::BadParameter { why: Invalid::HostName(n), .. } | Warning::BadValue { why: Invalid::HostName(n), .. } if n == name
                ));
                assert_eq!(refused.count(), usize::from(!ok), "{name} from source {i}: {w:?}");
            }
        }
    }

    /// Every source accepts the same engine log levels.
    #[test]
    fn log_levels_are_the_same_for_every_source() {
        for level in validate::LOG_LEVELS.into_iter().chain(["loud", "warning", ""]) {
            let from_cmdline = settle(None, None, &format!("skiff.engine_log={level}"));
            let from_file = settle(Some(&format!("engine_log_level = \"{level}\"")), None, "");
            let known = validate::LOG_LEVELS.contains(&level);
            for (e, w) in [from_cmdline, from_file] {
                assert_eq!(e.engine_log.as_str(), if known { level } else { "warn" });
                assert_eq!(w.len(), usize::from(!known), "{level}: {w:?}");
            }
        }
    }

    #[test]
    fn bad_values_fall_back_with_a_warning() {
        let (e, w) = settle(Some("vsock_port = 0\nengine_log_level = \"loud\""), None, "skiff.hostname=-x skiff.rootsize=lots");
        assert_eq!((e.port, e.engine_log, e.hostname, e.root_size.as_str()), (DEFAULT_ENGINE_PORT, LogLevel::Warn, None, "75%"));
        assert!(matches!(&w[..], [
            Warning::BadParameter { why: Invalid::HostName(_), .. },
            Warning::BadParameter { why: Invalid::Size(_), .. },
            Warning::BadValue { why: Invalid::LogLevel(_), .. },
            Warning::BadValue { why: Invalid::Port, .. },
        ]), "{w:?}");
        // A bad value in a later source leaves the earlier source's good one.
        let (e, w) = settle(Some("vsock_port = 2400"), None, "skiff.port=http");
        assert_eq!(e.port, 2400);
        assert_eq!(w, [Warning::BadParameter { word: "skiff.port=http".into(), item: None, why: Invalid::Port }]);
    }

    /// A source that mentions a secret it cannot give fails closed, whatever
    /// the other sources say; no secret anywhere still serves everyone.
    #[test]
    fn a_broken_secret_setting_is_unusable_and_wins() {
        let good = |b: u8| format!("secret = \"{}\"\n", format!("{b:02x}").repeat(32));
        let (one, two) = (good(1), good(2));
        let bad = "secret = \"nothex\"\n";
        let broken = format!("{one}hostname = oops\n");
        let given = |b: u8| SecretSetting::Given(Secret::from_bytes([b; 32]));
        type Want = fn(&SecretSetting) -> bool;
        // (config.toml, cidata's config, the host's fragment (Err: unreadable), wanted)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<Result<&'a str, ()>>, Want);
        let cases: [Case; 11] = [
            (None, None, None, |s| *s == SecretSetting::None),
            (Some("hostname = oops\n"), None, None, |s| *s == SecretSetting::None),
            (Some(&one), None, Some(Ok(&two)), |s| matches!(s, SecretSetting::Given(_))),
            (Some(bad), None, None, |s| matches!(s, SecretSetting::Unusable(Unusable::BadValue(Source::File(p))) if p == file::PATH)),
            (Some(bad), None, Some(Ok(&two)), |s| matches!(s, SecretSetting::Unusable(Unusable::BadValue(_)))),
            (Some(&broken), None, Some(Ok(&two)), |s| matches!(s, SecretSetting::Unusable(Unusable::NotToml(_)))),
            (Some(&one), Some("secret = 7\n"), None, |s| matches!(s, SecretSetting::Unusable(Unusable::BadValue(_)))),
            (Some(&one), None, Some(Ok(bad)), |s| matches!(s, SecretSetting::Unusable(Unusable::BadValue(_)))),
            // The host's fragment always carries the secret: unparsable or unreadable is unusable.
            (Some(&one), None, Some(Ok("hostname = [\n")), |s| matches!(s, SecretSetting::Unusable(Unusable::NotToml(_)))),
            (Some(&one), None, Some(Err(())), |s| matches!(s, SecretSetting::Unusable(Unusable::Unreadable(_)))),
            (None, None, Some(Ok("hostname = \"h\"\n")), |s| *s == SecretSetting::None),
        ];
        for (i, (file, cidata, host, want)) in cases.into_iter().enumerate() {
            let seed = cidata.map(|c| seed(Some(c), None));
            let host = host.map(|h| h.map(str::as_bytes));
            let (e, _) = from_sources(file.map(str::as_bytes), seed.as_ref(), host, Layer::default());
            assert!(want(&e.secret), "case {i}: {:?}", e.secret);
        }
        let (e, _) = settle_all(Some(&one), None, Some(&two), "");
        assert_eq!(e.secret, given(2), "a later good secret still replaces an earlier one");
        let (e, _) = settle_all(Some(&two), None, None, "skiff.secret=00");
        assert_eq!(e.secret, given(2), "the command line's is ignored, not unusable");
        // The reason never repeats the value.
        let (e, _) = settle_all(Some("secret = \"abcdefabcdef\"\n"), None, None, "");
        assert!(!format!("{:?}", e.secret).contains("abcdef"));
        let SecretSetting::Unusable(why) = e.secret else { panic!("{:?}", e.secret) };
        assert!(!why.to_string().contains("abcdef"), "{why}");
    }

    #[test]
    fn a_gateway_needs_a_static_address() {
        let (e, w) = settle(None, None, "skiff.gw=10.0.2.2");
        assert_eq!(e.net.gateway, None);
        assert_eq!(w, [Warning::GatewayNeedsAddress { gateway: [10, 0, 2, 2].into() }]);
        let (e, w) = settle(None, None, "skiff.gw=10.0.2.2 skiff.ip=10.0.2.9/24");
        assert_eq!(e.net.gateway, Some([10, 0, 2, 2].into()), "order does not matter: {w:?}");
        let (e, w) = settle(None, None, "skiff.ip=10.0.2.9/24 skiff.gw=10.0.2.9");
        assert_eq!(e.net.gateway, None);
        assert_eq!(w, [Warning::GatewayIsAddress { gateway: [10, 0, 2, 9].into() }]);
    }
}

//! The appliance's settings: `/var/lib/skiff/config.toml` (on the data disk,
//! or absent), then a `cidata` config ISO, then the host CLI's fragment
//! (QEMU fw_cfg), then `skiff.*` kernel options.
//! A later source replaces a key an earlier one set (sysctls merge per key).
//!
//! Each key is checked on its own (typed with serde), so one unknown key or
//! bad value is reported by name and everything else still applies.

use std::collections::BTreeMap;

use skiff_proto::auth::Secret;
use toml::{Table, Value};

/// The documented config file.
pub const PATH: &str = "/var/lib/skiff/config.toml";
/// Largest config file read (from the disk or cidata); longer is refused.
pub const MAX_FILE: u64 = 1024 * 1024;

/// Typed settings from one source; `None`/empty means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub hostname: Option<String>,
    pub vsock_port: Option<u32>,
    pub engine_log_level: Option<String>,
    pub timezone: Option<String>,
    /// Docker Hub mirrors, as given (`https://host[:port][/path]` or `host[:port]`).
    pub registry_mirrors: Option<Vec<String>>,
    /// Registries reached over plain HTTP or with unverified TLS (`host[:port]`).
    pub insecure_registries: Option<Vec<String>>,
    /// Extra trusted CA certificates (PEM).
    pub ca_certificates: Option<Vec<String>>,
    /// Kernel parameters, `net.ipv4.ip_forward = 1` → /proc/sys/net/ipv4/ip_forward.
    pub sysctl: BTreeMap<String, String>,
    /// The VM's secret (`skiff_proto::auth`); never printed.
    pub secret: Option<Secret>,
}

/// Every key the file knows, for the "unknown key" message.
pub const KEYS: [&str; 9] = [
    "hostname", "vsock_port", "engine_log_level", "timezone",
    "registry_mirrors", "insecure_registries", "ca_certificates", "sysctl", "secret",
];

/// Engine log levels podman accepts that Skiff passes on.
pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Parses a TOML document; `source` names it in warnings. A syntax error
/// loses the whole file (TOML cannot be read past it); anything else only
/// loses the offending key or list element.
pub fn parse(text: &str, source: &str) -> (Settings, Vec<String>) {
    match text.parse::<Table>() {
        Ok(table) => from_table(table, source),
        Err(e) => {
            // The message only, not the quoted source line: it may hold the secret.
            let line = e.span().map_or(0, |r| text[..r.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            (Settings::default(), vec![format!("{source}: not valid TOML, file ignored: line {line}: {msg}")])
        }
    }
}

/// Checks each key of a parsed table into typed settings.
pub fn from_table(table: Table, source: &str) -> (Settings, Vec<String>) {
    let mut s = Settings::default();
    let mut warnings = Vec::new();
    for (key, value) in table {
        let mut bad = |why: String| warnings.push(format!("{source}: key `{key}`: {why}; ignored"));
        match key.as_str() {
            "hostname" => match typed::<String>(value).and_then(check_hostname) {
                Ok(v) => s.hostname = Some(v),
                Err(e) => bad(e),
            },
            "vsock_port" => match typed::<u32>(value) {
                Ok(p) if p > 0 && p != u32::MAX => s.vsock_port = Some(p),
                Ok(_) | Err(_) => bad("expected a port number from 1 to 4294967294".into()),
            },
            "engine_log_level" => match typed::<String>(value) {
                Ok(v) if LOG_LEVELS.contains(&v.as_str()) => s.engine_log_level = Some(v),
                _ => bad(format!("expected one of {}", LOG_LEVELS.join(", "))),
            },
            "timezone" => match typed::<String>(value).and_then(check_timezone) {
                Ok(v) => s.timezone = Some(v),
                Err(e) => bad(e),
            },
            "registry_mirrors" => s.registry_mirrors = list(value, &key, source, check_mirror, &mut warnings),
            "insecure_registries" => s.insecure_registries = list(value, &key, source, check_registry, &mut warnings),
            "ca_certificates" => s.ca_certificates = list(value, &key, source, check_pem, &mut warnings),
            // The value is never echoed in a message.
            "secret" => match typed::<String>(value).ok().and_then(|v| Secret::from_hex(&v).ok()) {
                Some(v) => s.secret = Some(v),
                None => bad("expected a string of 64 hex digits (e.g. from `openssl rand -hex 32`)".into()),
            },
            "sysctl" => match value {
                Value::Table(t) => {
                    for (name, v) in t {
                        match sysctl_entry(&name, v) {
                            Ok(v) => drop(s.sysctl.insert(name, v)),
                            Err(e) => warnings.push(format!("{source}: key `sysctl.{name}`: {e}; ignored")),
                        }
                    }
                }
                _ => bad("expected a table such as [sysctl] \"vm.swappiness\" = 10".into()),
            },
            _ => bad(format!("unknown key (known keys: {})", KEYS.join(", "))),
        }
    }
    (s, warnings)
}

impl Settings {
    /// Lays `over` on top of `self`: keys set there win; sysctls merge.
    pub fn merge(&mut self, over: Settings) {
        fn take<T>(to: &mut Option<T>, from: Option<T>) {
            if from.is_some() {
                *to = from;
            }
        }
        take(&mut self.hostname, over.hostname);
        take(&mut self.vsock_port, over.vsock_port);
        take(&mut self.engine_log_level, over.engine_log_level);
        take(&mut self.timezone, over.timezone);
        take(&mut self.registry_mirrors, over.registry_mirrors);
        take(&mut self.insecure_registries, over.insecure_registries);
        take(&mut self.ca_certificates, over.ca_certificates);
        take(&mut self.secret, over.secret);
        self.sysctl.extend(over.sysctl);
    }
}

/// Settings from `skiff.*` kernel options (see `cmdline::config_overrides`):
/// the same checks and messages as the file.
pub fn from_cmdline(pairs: &[(String, String)]) -> (Settings, Vec<String>) {
    let mut table = Table::new();
    let mut push = |key: &str, v: &str| {
        let list = table.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = list {
            a.extend(v.split(',').filter(|s| !s.is_empty()).map(|s| Value::String(s.into())));
        }
    };
    let mut sysctl = Table::new();
    let mut timezone = None;
    for (k, v) in pairs {
        match k.as_str() {
            "tz" => timezone = Some(v.clone()),
            "mirror" => push("registry_mirrors", v),
            "insecure" => push("insecure_registries", v),
            _ => {
                if let Some(name) = k.strip_prefix("sysctl.") {
                    sysctl.insert(name.into(), Value::String(v.clone()));
                }
            }
        }
    }
    if let Some(tz) = timezone {
        table.insert("timezone".into(), Value::String(tz));
    }
    if !sysctl.is_empty() {
        table.insert("sysctl".into(), Value::Table(sysctl));
    }
    from_table(table, "kernel command line")
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    let kind = v.type_str();
    v.try_into::<T>().map_err(|_| format!("wrong type ({kind})"))
}

/// A list of strings, each checked; bad elements are dropped with a warning.
fn list(
    value: Value,
    key: &str,
    source: &str,
    check: fn(String) -> Result<String, String>,
    warnings: &mut Vec<String>,
) -> Option<Vec<String>> {
    let items = match typed::<Vec<String>>(value) {
        Ok(items) => items,
        Err(e) => {
            warnings.push(format!("{source}: key `{key}`: expected a list of strings, {e}; ignored"));
            return None;
        }
    };
    let mut good = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match check(item) {
            Ok(v) => good.push(v),
            Err(e) => warnings.push(format!("{source}: key `{key}` item {}: {e}; ignored", i + 1)),
        }
    }
    Some(good)
}

/// RFC 1123 host name, at most 64 bytes (the kernel's limit).
fn check_hostname(v: String) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.split('.').all(|l| {
            !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok { Ok(v) } else { Err(format!("{v:?} is not a valid host name")) }
}

/// A zone name such as `Europe/Berlin` or `UTC` (no paths outside zoneinfo).
fn check_timezone(v: String) -> Result<String, String> {
    let ok = !v.is_empty()
        && !v.starts_with('/')
        && !v.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    if ok { Ok(v) } else { Err(format!("{v:?} is not a time zone name such as Europe/Berlin")) }
}

/// `host[:port][/path]`: letters, digits, `.-_:/` and nothing else.
fn check_registry(v: String) -> Result<String, String> {
    let host = v.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && !host.starts_with(['.', '-', ':'])
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:/[]".contains(&b))
        && !v.ends_with('/');
    if ok { Ok(v) } else { Err(format!("{v:?} is not a registry such as registry.example.com:5000")) }
}

fn check_mirror(v: String) -> Result<String, String> {
    let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://")).unwrap_or(&v);
    match check_registry(rest.trim_end_matches('/').to_string()) {
        Ok(_) => Ok(v),
        Err(_) => Err(format!("{v:?} is not a mirror such as https://mirror.example.com")),
    }
}

fn check_pem(v: String) -> Result<String, String> {
    let begin = v.find("-----BEGIN CERTIFICATE-----");
    let end = v.find("-----END CERTIFICATE-----");
    match (begin, end) {
        (Some(b), Some(e)) if b < e => Ok(v.trim().to_string() + "\n"),
        _ => Err("not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)".into()),
    }
}

fn sysctl_entry(name: &str, v: Value) -> Result<String, String> {
    let name_ok = !name.is_empty()
        && !name.starts_with('.')
        && !name.split(['.', '/']).any(|p| p.is_empty() || p == "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if !name_ok {
        return Err("not a sysctl name such as net.ipv4.ip_forward".into());
    }
    match v {
        Value::String(s) if !s.contains('\n') => Ok(s),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Boolean(b) => Ok(u8::from(b).to_string()),
        other => Err(format!("expected a string or an integer, not {}", other.type_str())),
    }
}

/// One `[[registry]]` entry of registries.conf.
#[derive(Debug, Default, PartialEq, Eq)]
struct Registry {
    location: String,
    insecure: bool,
    /// (location, insecure)
    mirrors: Vec<(String, bool)>,
}

/// A mirror URL as registries.conf wants it: no scheme; `http://` means insecure.
fn mirror_location(url: &str) -> (String, bool) {
    let (rest, insecure) = match url.strip_prefix("http://") {
        Some(r) => (r, true),
        None => (url.strip_prefix("https://").unwrap_or(url), false),
    };
    (rest.trim_end_matches('/').to_string(), insecure)
}

fn quoted(s: &str) -> String {
    // Values were checked to hold no quotes, backslashes or control bytes.
    format!("\"{s}\"")
}

/// The containers-registries.conf(5) v2 file for these settings: Docker Hub
/// mirrors (like Docker's `registry-mirrors`) and insecure registries.
pub fn registries_conf(mirrors: &[String], insecure: &[String]) -> String {
    let mut regs: Vec<Registry> = Vec::new();
    if !mirrors.is_empty() {
        regs.push(Registry { location: "docker.io".into(), insecure: false, mirrors: mirrors.iter().map(|m| mirror_location(m)).collect() });
    }
    for loc in insecure {
        match regs.iter_mut().find(|r| &r.location == loc) {
            Some(r) => r.insecure = true,
            None => regs.push(Registry { location: loc.clone(), insecure: true, mirrors: Vec::new() }),
        }
    }
    let mut out = String::from(
        "# Written by skiff-init from the appliance's settings (registry_mirrors,\n\
         # insecure_registries); edit /var/lib/skiff/config.toml instead.\n\
         unqualified-search-registries = [\"docker.io\"]\n\
         short-name-mode = \"permissive\"\n",
    );
    for r in &regs {
        out += &format!("\n[[registry]]\nlocation = {}\n", quoted(&r.location));
        if r.insecure {
            out += "insecure = true\n";
        }
        for (m, insecure) in &r.mirrors {
            out += &format!("\n[[registry.mirror]]\nlocation = {}\n", quoted(m));
            if *insecure {
                out += "insecure = true\n";
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
hostname = "builder-1"
vsock_port = 2400
engine_log_level = "info"
timezone = "Europe/Berlin"
registry_mirrors = ["https://mirror.gcr.io", "http://10.0.2.2:5000/"]
insecure_registries = ["registry.lan:5000"]
ca_certificates = ["""
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ
-----END CERTIFICATE-----
"""]

[sysctl]
"vm.swappiness" = 10
"net.ipv4.ip_forward" = "1"
"#;

    #[test]
    fn reads_every_key() {
        let (s, w) = parse(GOOD, "config.toml");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.hostname.as_deref(), Some("builder-1"));
        assert_eq!(s.vsock_port, Some(2400));
        assert_eq!(s.engine_log_level.as_deref(), Some("info"));
        assert_eq!(s.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(s.registry_mirrors.as_ref().unwrap().len(), 2);
        assert_eq!(s.insecure_registries, Some(vec!["registry.lan:5000".to_string()]));
        let ca = &s.ca_certificates.as_ref().unwrap()[0];
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n") && ca.ends_with("-----END CERTIFICATE-----\n"));
        assert_eq!(s.sysctl.get("vm.swappiness").map(String::as_str), Some("10"));
        assert_eq!(s.sysctl.get("net.ipv4.ip_forward").map(String::as_str), Some("1"));
    }

    #[test]
    fn unknown_keys_are_named_and_the_rest_applies() {
        let (s, w) = parse("hostname = \"a\"\nregistry_mirror = [\"x\"]\n[engine]\nlog = 1\n", "f");
        assert_eq!(s.hostname.as_deref(), Some("a"));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|m| m.contains("`registry_mirror`") && m.contains("unknown key")));
        assert!(w.iter().any(|m| m.contains("`engine`")));
    }

    #[test]
    fn bad_values_are_named_and_the_rest_applies() {
        let text = r#"
hostname = "-bad-"
vsock_port = "2375"
engine_log_level = "loud"
timezone = "../../etc/shadow"
registry_mirrors = ["https://ok.example", "ftp://no", 7]
insecure_registries = ["good:5000", "bad host"]
ca_certificates = ["not a cert"]
sysctl = { "vm.swappiness" = 10, "../x" = 1, "kernel.x" = [1] }
"#;
        let (s, w) = parse(text, "f");
        for key in ["hostname", "vsock_port", "engine_log_level", "timezone", "registry_mirrors", "insecure_registries", "ca_certificates", "sysctl.../x", "sysctl.kernel.x"] {
            assert!(w.iter().any(|m| m.contains(&format!("`{key}`"))), "no warning naming {key}: {w:?}");
        }
        assert_eq!(s.hostname, None);
        assert_eq!(s.vsock_port, None);
        assert_eq!(s.registry_mirrors, None, "a list with a non-string is not a list of strings");
        assert_eq!(s.insecure_registries, Some(vec!["good:5000".to_string()]));
        assert_eq!(s.ca_certificates, Some(vec![]));
        assert_eq!(s.sysctl.len(), 1);
    }

    #[test]
    fn secret_is_read_and_never_echoed() {
        let hex = "0123456789abcdef".repeat(4);
        let (s, w) = parse(&format!("secret = \"{hex}\"\n"), "f");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.secret.as_ref().map(Secret::to_hex), Some(hex.clone()));
        assert!(!format!("{s:?}").contains(&hex), "Debug shows the secret");
        let short = &hex[..40];
        for text in [format!("secret = \"{short}\"\n"), format!("secret = {}\n", 7), format!("secret = \"{hex}\nx = \n")] {
            let (s, w) = parse(&text, "f");
            assert_eq!(s.secret, None);
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(!w[0].contains(short), "warning echoes the secret: {}", w[0]);
        }
    }

    #[test]
    fn syntax_errors_lose_the_file_with_a_message() {
        let (s, w) = parse("hostname = \"unterminated\n", "/var/lib/skiff/config.toml");
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("/var/lib/skiff/config.toml: not valid TOML"), "{w:?}");
    }

    #[test]
    fn later_sources_win_and_sysctls_merge() {
        let (mut a, _) = parse("hostname = \"disk\"\ntimezone = \"UTC\"\nsysctl = { a = 1, b = 2 }", "a");
        let (b, _) = parse("hostname = \"cidata\"\nsysctl = { b = 3 }", "b");
        a.merge(b);
        assert_eq!(a.hostname.as_deref(), Some("cidata"));
        assert_eq!(a.timezone.as_deref(), Some("UTC"));
        assert_eq!(a.sysctl.get("a").map(String::as_str), Some("1"));
        assert_eq!(a.sysctl.get("b").map(String::as_str), Some("3"));
    }

    #[test]
    fn kernel_options_are_checked_like_the_file() {
        let pairs: Vec<(String, String)> = [("tz", "Asia/Tokyo"), ("mirror", "https://m1,https://m2"), ("mirror", "https://m3"),
            ("insecure", "bad host"), ("sysctl.vm.swappiness", "5")]
            .iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (s, w) = from_cmdline(&pairs);
        assert_eq!(s.timezone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(s.registry_mirrors.unwrap(), ["https://m1", "https://m2", "https://m3"]);
        assert_eq!(s.insecure_registries, Some(vec![]));
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("kernel command line: key `insecure_registries`"), "{w:?}");
        assert_eq!(s.sysctl.get("vm.swappiness").map(String::as_str), Some("5"));
    }

    #[test]
    fn registries_conf_has_mirrors_and_insecure_registries() {
        let conf = registries_conf(
            &["https://mirror.gcr.io/".into(), "http://10.0.2.2:5000".into()],
            &["registry.lan:5000".into(), "docker.io".into()],
        );
        let table: Table = conf.parse().expect("valid TOML");
        let regs = table["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0]["location"].as_str(), Some("docker.io"));
        assert_eq!(regs[0]["insecure"].as_bool(), Some(true));
        let mirrors = regs[0]["mirror"].as_array().unwrap();
        assert_eq!(mirrors[0]["location"].as_str(), Some("mirror.gcr.io"));
        assert_eq!(mirrors[0].get("insecure"), None);
        assert_eq!(mirrors[1]["location"].as_str(), Some("10.0.2.2:5000"));
        assert_eq!(mirrors[1]["insecure"].as_bool(), Some(true));
        assert_eq!(regs[1]["location"].as_str(), Some("registry.lan:5000"));
        assert_eq!(table["unqualified-search-registries"].as_array().unwrap()[0].as_str(), Some("docker.io"));
        assert!(!registries_conf(&[], &[]).contains("[[registry]]"));
    }
}

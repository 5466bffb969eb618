//! Settings from a TOML config file (`/var/lib/skiff/config.toml`, or
//! `skiff.toml`/`config.toml` on a cidata volume) and from a cidata seed's
//! host name. Each key is checked on its own, so one unknown key or bad
//! value is reported by name and everything else still applies.
//! The document is read with the `toml` crate's own parser into its plain
//! tree (`DeTable`), without its serde layer: the same strict TOML, about
//! 50 KB less code in PID 1.

use skiff_proto::guest_settings::{self, GuestSettings, Problem};
use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::validate::{self, Invalid};
use super::{Layer, SecretSetting, Source, Unusable, Warning};

/// The documented config file.
pub const PATH: &str = "/var/lib/skiff/config.toml";
/// Largest config file read (from the disk or cidata); longer is refused.
pub const MAX_LEN: u64 = 1024 * 1024;

/// Every key the file knows, for the "unknown key" message.
pub const KEYS: [&str; 10] = [
    "hostname", "vsock_port", "engine_log_level", "timezone",
    "registry_mirrors", "insecure_registries", "ca_certificates", "sysctl", "secret", "shares",
];

/// Parses a TOML document (text that is not UTF-8 is not TOML). A syntax
/// error loses the whole file (TOML cannot be read past it); anything else
/// only loses the offending key or element.
pub fn parse_bytes(bytes: &[u8], source: Source) -> (Layer, Vec<Warning>) {
    match guest_settings::read_toml(bytes) {
        // TOML integers are 64-bit: a longer one makes the document invalid, as in the crate's serde reader.
        Ok(table) => match out_of_range(&table) {
            Some(at) => {
                let text = std::str::from_utf8(bytes).unwrap_or_default();
                not_toml(bytes, source, guest_settings::not_toml(text, Some(at.start), "integer out of the 64-bit range"))
            }
            None => from_table(table, source),
        },
        Err(detail) => not_toml(bytes, source, detail),
    }
}

/// [`parse_bytes`] of text.
pub fn parse(text: &str, source: Source) -> (Layer, Vec<Warning>) {
    parse_bytes(text.as_bytes(), source)
}

/// A document TOML cannot read: nothing in it applies, and if it mentions
/// `secret` the secret setting is unusable (fail closed, not "no secret").
fn not_toml(text: &[u8], source: Source, detail: String) -> (Layer, Vec<Warning>) {
    let mut layer = Layer::default();
    if text.windows(6).any(|w| w == b"secret") {
        layer.secret = SecretSetting::Unusable(Unusable::NotToml(source.clone()));
    }
    (layer, vec![Warning::NotToml { source, detail }])
}

/// The host's settings (`secret`, `shares`: the struct `guest_settings`
/// reads from the host's fw_cfg item or from a file) laid into `l`. A bad
/// secret is unusable (fail closed), not absent.
pub fn guest(l: &mut Layer, g: GuestSettings, bad_secret: bool, source: &Source) {
    if let Some(s) = g.secret {
        l.secret = SecretSetting::Given(s);
    }
    if bad_secret {
        l.secret = SecretSetting::Unusable(Unusable::BadValue(source.clone()));
    }
    if g.shares.is_some() {
        l.shares = g.shares;
    }
}

/// Where `guest_settings` reports problems: each becomes a warning, and a
/// bad secret sets `bad_secret`.
pub fn report<'a>(warnings: &'a mut Vec<Warning>, bad_secret: &'a mut bool, source: &'a Source) -> impl FnMut(Problem) + 'a {
    move |p| {
        *bad_secret |= matches!(p, Problem::Secret);
        warnings.push(match p {
            Problem::Secret => bad(source, "secret", None, Invalid::Secret),
            Problem::SharesType(found) => bad(source, "shares", None, Invalid::WrongType { expected: "[[shares]] tables with tag and path", found }),
            Problem::Share(i, why) => bad(source, "shares", Some(i), Invalid::Share(why)),
            Problem::UnknownKey(key) => Warning::UnknownKey { source: source.clone(), key },
        });
    }
}

/// A TOML integer's value, if it fits the 64 bits TOML allows.
fn integer(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// Where the first integer beyond 64 bits is, if any.
fn out_of_range(table: &DeTable<'_>) -> Option<std::ops::Range<usize>> {
    fn walk(v: &Spanned<DeValue<'_>>) -> Option<std::ops::Range<usize>> {
        match v.get_ref() {
            DeValue::Integer(i) if integer(i).is_none() => Some(v.span()),
            DeValue::Array(items) => items.iter().find_map(walk),
            DeValue::Table(t) => out_of_range(t),
            _ => None,
        }
    }
    table.values().find_map(walk)
}

/// Checks each key of a parsed table into a layer.
fn from_table(table: DeTable<'_>, source: Source) -> (Layer, Vec<Warning>) {
    let mut l = Layer::default();
    let mut warnings = Vec::new();
    for (key, value) in table {
        let key = key.into_inner().into_owned();
        let value = value.into_inner();
        let checked: Result<(), Invalid> = match key.as_str() {
            "hostname" => string(value).and_then(|v| validate::hostname(&v)).map(|h| l.hostname = Some(h)),
            "vsock_port" => match value {
                DeValue::Integer(p) => integer(&p).ok_or(Invalid::Port).and_then(validate::port).map(|p| l.port = Some(p)),
                _ => Err(Invalid::Port),
            },
            "engine_log_level" => string(value).and_then(|v| validate::log_level(&v)).map(|x| l.engine_log = Some(x)),
            "timezone" => string(value).and_then(|v| validate::timezone(&v)).map(|t| l.timezone = Some(t)),
            "registry_mirrors" => list(value, validate::mirror, &source, &key, &mut warnings).map(|v| l.registry_mirrors = Some(v)),
            "insecure_registries" => {
                list(value, validate::registry, &source, &key, &mut warnings).map(|v| l.insecure_registries = Some(v))
            }
            "ca_certificates" => list(value, validate::pem, &source, &key, &mut warnings).map(|v| l.ca_certificates = Some(v)),
            "sysctl" => match value {
                DeValue::Table(t) => {
                    for (name, v) in t {
                        let name = name.into_inner();
                        match sysctl_entry(&name, v.into_inner()) {
                            Ok((name, v)) => drop(l.sysctl.insert(name, v)),
                            Err(why) => warnings.push(bad(&source, &format!("sysctl.{name}"), None, why)),
                        }
                    }
                    Ok(())
                }
                other => Err(wrong_type(r#"a table such as [sysctl] "vm.swappiness" = 10"#, &other)),
            },
            "secret" | "shares" => {
                let (mut g, mut bad_secret) = (GuestSettings::default(), false);
                guest_settings::read_key(&mut g, &key, value, &mut report(&mut warnings, &mut bad_secret, &source));
                guest(&mut l, g, bad_secret, &source);
                continue;
            }
            _ => {
                warnings.push(Warning::UnknownKey { source: source.clone(), key });
                continue;
            }
        };
        if let Err(why) = checked {
            warnings.push(bad(&source, &key, None, why));
        }
    }
    (l, warnings)
}

/// The host name a cidata volume's meta-data or user-data gives, checked
/// like the file's `hostname`.
pub fn seed(hostname: Option<&str>, device: &str) -> (Layer, Vec<Warning>) {
    match hostname.map(validate::hostname) {
        None => (Layer::default(), Vec::new()),
        Some(Ok(h)) => (Layer { hostname: Some(h), ..Layer::default() }, Vec::new()),
        Some(Err(why)) => (Layer::default(), vec![bad(&Source::Seed(device.into()), "hostname", None, why)]),
    }
}

fn bad(source: &Source, key: &str, item: Option<usize>, why: Invalid) -> Warning {
    Warning::BadValue { source: source.clone(), key: key.into(), item, why }
}

fn wrong_type(expected: &'static str, found: &DeValue<'_>) -> Invalid {
    Invalid::WrongType { expected, found: found.type_str() }
}

fn string(v: DeValue<'_>) -> Result<String, Invalid> {
    match v {
        DeValue::String(s) => Ok(s.into_owned()),
        other => Err(wrong_type("a string", &other)),
    }
}

/// A list of strings, each checked; bad elements are dropped with a warning.
fn list(
    value: DeValue<'_>,
    check: fn(&str) -> Result<String, Invalid>,
    source: &Source,
    key: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<String>, Invalid> {
    let items = match value {
        DeValue::Array(items) if items.iter().all(|v| v.get_ref().is_str()) => items,
        DeValue::Array(_) => return Err(Invalid::WrongType { expected: "a list of strings", found: "a list with other values" }),
        other => return Err(wrong_type("a list of strings", &other)),
    };
    let mut good = Vec::new();
    for (i, item) in items.iter().filter_map(|v| v.get_ref().as_str()).enumerate() {
        match check(item) {
            Ok(v) => good.push(v),
            Err(why) => warnings.push(bad(source, key, Some(i + 1), why)),
        }
    }
    Ok(good)
}

/// A `[sysctl]` entry: a string, an integer or a boolean (as 0/1).
fn sysctl_entry(name: &str, v: DeValue<'_>) -> Result<(String, String), Invalid> {
    let name = validate::sysctl_name(name)?;
    let value = match v {
        DeValue::String(s) => validate::sysctl_value(&s)?,
        // In range: `parse` refused the document otherwise.
        DeValue::Integer(i) => integer(&i).map_or_else(|| i.to_string(), |i| i.to_string()),
        DeValue::Boolean(b) => u8::from(b).to_string(),
        other => return Err(wrong_type("a string or an integer", &other)),
    };
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogLevel;

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
"kernel.sysrq" = true
"#;

    fn file() -> Source {
        Source::File("f".into())
    }

    /// (key, item, why) of each warning, which must all be bad values.
    fn bad_values(w: &[Warning]) -> Vec<(&str, Option<usize>, &Invalid)> {
        w.iter()
            .map(|w| match w {
                Warning::BadValue { key, item, why, .. } => (key.as_str(), *item, why),
                other => panic!("not a bad value: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn reads_every_key() {
        let (l, w) = parse(GOOD, file());
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.hostname.as_deref(), Some("builder-1"));
        assert_eq!(l.port, Some(2400));
        assert_eq!(l.engine_log, Some(LogLevel::Info));
        assert_eq!(l.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(l.registry_mirrors.as_ref().unwrap().len(), 2);
        assert_eq!(l.insecure_registries, Some(vec!["registry.lan:5000".to_string()]));
        let ca = &l.ca_certificates.as_ref().unwrap()[0];
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n") && ca.ends_with("-----END CERTIFICATE-----\n"));
        assert_eq!(l.sysctl.get("vm.swappiness").map(String::as_str), Some("10"));
        assert_eq!(l.sysctl.get("net.ipv4.ip_forward").map(String::as_str), Some("1"));
        assert_eq!(l.sysctl.get("kernel.sysrq").map(String::as_str), Some("1"));
    }

    #[test]
    fn shares_are_checked_one_by_one() {
        let text = "[[shares]]\ntag = \"skiff0\"\npath = \"/root\"\nfs = \"virtiofs\"\n[[shares]]\ntag = \"x\"\npath = \"/etc\"\n";
        let (l, w) = parse(text, file());
        assert_eq!(l.shares.as_ref().map(|s| s.iter().map(|s| s.path.as_str()).collect::<Vec<_>>()), Some(vec!["/root"]));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].to_string().starts_with("f: key `shares` item 2: path \"/etc\""), "{}", w[0]);
        let (l, w) = parse("shares = \"/root\"", file());
        assert_eq!(l.shares, None);
        assert!(w[0].to_string().contains("`shares`"), "{w:?}");
    }

    #[test]
    fn unknown_keys_are_named_and_the_rest_applies() {
        let (l, w) = parse("hostname = \"a\"\nregistry_mirror = [\"x\"]\n[engine]\nlog = 1\n", file());
        assert_eq!(l.hostname.as_deref(), Some("a"));
        assert_eq!(w, [
            Warning::UnknownKey { source: file(), key: "engine".into() },
            Warning::UnknownKey { source: file(), key: "registry_mirror".into() },
        ]);
        assert!(w[1].to_string().contains("f: key `registry_mirror`: unknown key"), "{}", w[1]);
    }

    #[test]
    fn bad_values_are_named_and_the_rest_applies() {
        let text = r#"
hostname = "-bad-"
vsock_port = "2375"
engine_log_level = "loud"
timezone = "../../etc/shadow"
registry_mirrors = ["https://ok.example", "https://bad host"]
insecure_registries = ["good:5000", 7]
ca_certificates = ["not a cert"]
sysctl = { "vm.swappiness" = 10, "../x" = 1, "kernel.x" = [1] }
"#;
        let (l, w) = parse(text, file());
        let got = bad_values(&w);
        let expect: [(&str, Option<usize>, Invalid); 9] = [
            ("ca_certificates", Some(1), Invalid::Pem),
            ("engine_log_level", None, Invalid::LogLevel("loud".into())),
            ("hostname", None, Invalid::HostName("-bad-".into())),
            ("insecure_registries", None, Invalid::WrongType { expected: "a list of strings", found: "a list with other values" }),
            ("registry_mirrors", Some(2), Invalid::Mirror("https://bad host".into())),
            ("sysctl.../x", None, Invalid::SysctlName("../x".into())),
            ("sysctl.kernel.x", None, Invalid::WrongType { expected: "a string or an integer", found: "array" }),
            ("timezone", None, Invalid::TimeZone("../../etc/shadow".into())),
            ("vsock_port", None, Invalid::Port),
        ];
        assert_eq!(got, expect.iter().map(|(k, i, why)| (*k, *i, why)).collect::<Vec<_>>());
        assert_eq!(l.hostname, None);
        assert_eq!(l.port, None);
        assert_eq!(l.registry_mirrors, Some(vec!["https://ok.example".to_string()]));
        assert_eq!(l.insecure_registries, None, "a list with a non-string is not a list of strings");
        assert_eq!(l.ca_certificates, Some(vec![]));
        assert_eq!(l.sysctl.len(), 1);
        assert_eq!(w[2].to_string(), format!("f: key `hostname`: {}; ignored", Invalid::HostName("-bad-".into())));
    }

    #[test]
    fn secret_is_read_and_never_echoed() {
        let hex = "0123456789abcdef".repeat(4);
        let (l, w) = parse(&format!("secret = \"{hex}\"\n"), file());
        assert!(w.is_empty(), "{w:?}");
        assert!(matches!(&l.secret, SecretSetting::Given(s) if s.to_hex() == hex));
        assert!(!format!("{l:?}").contains(&hex), "Debug shows the secret");
        let short = &hex[..40];
        for text in [format!("secret = \"{short}\"\n"), "secret = 7\n".to_string(), format!("secret = \"{hex}\nx = \n")] {
            let (l, w) = parse(&text, file());
            assert!(matches!(l.secret, SecretSetting::Unusable(_)), "a broken secret fails closed: {text}");
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(!w[0].to_string().contains(short), "warning echoes the secret: {}", w[0]);
        }
    }

    #[test]
    fn a_broken_document_that_mentions_a_secret_makes_it_unusable() {
        let f = || Source::File("f".into());
        type Case = (&'static [u8], fn(&SecretSetting) -> bool);
        let cases: [Case; 5] = [
            (b"secret = \"ab\"\nhostname = oops\n", |s| matches!(s, SecretSetting::Unusable(Unusable::NotToml(_)))),
            (b"hostname = \"a\"\nsecret = [\n", |s| matches!(s, SecretSetting::Unusable(Unusable::NotToml(_)))),
            (b"secret = \"\xff\"\n", |s| matches!(s, SecretSetting::Unusable(Unusable::NotToml(_)))),
            (b"hostname = oops\n", |s| matches!(s, SecretSetting::None)),
            (b"\xff", |s| matches!(s, SecretSetting::None)),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let (l, w) = parse_bytes(text, f());
            assert!(want(&l.secret), "case {i}: {:?}", l.secret);
            assert!(matches!(&w[..], [Warning::NotToml { .. }]), "case {i}: {w:?}");
        }
    }

    #[test]
    fn syntax_errors_lose_the_file_with_a_message() {
        let (l, w) = parse("hostname = \"unterminated\n", Source::File(PATH.into()));
        assert_eq!(l, Layer::default());
        assert!(matches!(&w[..], [Warning::NotToml { source: Source::File(p), .. }] if p == PATH), "{w:?}");
        assert!(w[0].to_string().starts_with("/var/lib/skiff/config.toml: not valid TOML"), "{}", w[0]);
    }

    #[test]
    fn integers_are_64_bit_in_any_base() {
        let (l, w) = parse("vsock_port = 0x960\n[sysctl]\n\"vm.swappiness\" = 0o12\n\"kernel.x\" = -1_000\n", file());
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.port, Some(2400));
        assert_eq!(l.sysctl.get("vm.swappiness").map(String::as_str), Some("10"));
        assert_eq!(l.sysctl.get("kernel.x").map(String::as_str), Some("-1000"));
        // TOML's integers are 64-bit: a longer one anywhere makes the document invalid.
        for text in ["hostname = \"a\"\nx = [{ y = 9223372036854775808 }]\n", "vsock_port = 0xffffffffffffffff\n"] {
            let (l, w) = parse(text, file());
            assert_eq!(l, Layer::default(), "{text}");
            assert!(matches!(&w[..], [Warning::NotToml { detail, .. }] if detail.contains("64-bit")), "{w:?}");
        }
        let (_, w) = parse("a = 1\nb = [1, 2,\n  -9223372036854775809]\n", file());
        assert!(w[0].to_string().contains("line 3:"), "{}", w[0]);
    }

    #[test]
    fn strict_toml_is_required() {
        // Redefined keys and tables, bad escapes, bad dates, bare words: each loses the file.
        for text in [
            "hostname = \"a\"\nhostname = \"b\"\n",
            "[sysctl]\n\"a.b\" = 1\n[sysctl]\n\"c.d\" = 2\n",
            "hostname = \"a\\q\"\n",
            "timezone = 2026-13-40\n",
            "hostname = builder\n",
            "[[shares]]\ntag = \"a\"\n[shares]\n",
        ] {
            let (l, w) = parse(text, file());
            assert_eq!(l, Layer::default(), "{text}");
            assert!(matches!(&w[..], [Warning::NotToml { .. }]), "{text}: {w:?}");
        }
        // A date or float where a string belongs is a bad value, not a syntax error.
        let (_, w) = parse("hostname = 1979-05-27\ntimezone = 1.5\n", file());
        assert_eq!(bad_values(&w), [
            ("hostname", None, &Invalid::WrongType { expected: "a string", found: "datetime" }),
            ("timezone", None, &Invalid::WrongType { expected: "a string", found: "float" }),
        ]);
    }

    #[test]
    fn seed_host_names_are_checked() {
        assert_eq!(seed(None, "/dev/sr1"), (Layer::default(), vec![]));
        assert_eq!(seed(Some("box"), "/dev/sr1").0.hostname.as_deref(), Some("box"));
        let (l, w) = seed(Some("bad_name"), "/dev/sr1");
        assert_eq!(l, Layer::default());
        assert_eq!(bad_values(&w), [("hostname", None, &Invalid::HostName("bad_name".into()))]);
        assert!(w[0].to_string().starts_with("/dev/sr1 meta-data/user-data: key `hostname`"), "{}", w[0]);
    }
}

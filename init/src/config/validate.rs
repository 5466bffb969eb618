//! One check per setting, shared by every source (command line, config
//! file, cidata, DHCP's names), so a value accepted in one place is accepted
//! in all of them. Each returns the value to use or says what is wrong.

use std::fmt;
use std::net::Ipv4Addr;

/// What is wrong with a value; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not a vsock port (0 and u32::MAX are reserved).
    Port,
    /// Not a host name sethostname(2) and resolvers accept.
    HostName(String),
    /// Not an engine log level Skiff passes to podman.
    LogLevel(String),
    /// Not a tmpfs size.
    Size(String),
    /// Not a time zone name inside the zoneinfo folder.
    TimeZone(String),
    /// Not a registry `host[:port][/path]`.
    Registry(String),
    /// Not a mirror URL.
    Mirror(String),
    /// Not a PEM certificate.
    Pem,
    /// Not a sysctl name.
    SysctlName(String),
    /// A sysctl value holding a newline.
    SysctlValue,
    /// Not `ADDR/PREFIX` with a host address.
    Cidr,
    /// Not a host IPv4 address.
    Address,
    /// Not a comma-separated list of host IPv4 addresses.
    AddressList,
    /// `skiff.net=` is neither off, on nor dhcp.
    NetMode,
    /// A switch such as `skiff.debug` with a value other than 0 or 1.
    Switch,
    /// A kernel parameter that needs a value was given without one.
    NoValue,
    /// Not a share (`skiff_proto::shares::Invalid` says why).
    Share(skiff_proto::shares::Invalid),
    /// A TOML value of the wrong type; `expected` says which.
    WrongType { expected: &'static str, found: &'static str },
    /// Not 64 hex digits (the value is never repeated: it is a secret).
    Secret,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Port => write!(f, "expected a port number from 1 to 4294967294"),
            Invalid::Secret => write!(f, "expected a string of 64 hex digits (e.g. from `openssl rand -hex 32`)"),
            Invalid::HostName(v) => write!(
                f,
                "{v:?} is not a host name (dot-separated labels of letters, digits and inner '-', \
                 each at most 63 characters, 64 in all)"
            ),
            Invalid::LogLevel(v) => write!(f, "{v:?} is not a log level (expected one of {})", LOG_LEVELS.join(", ")),
            Invalid::Size(v) => write!(f, "{v:?} is not a size such as 75% or 2G"),
            Invalid::TimeZone(v) => write!(f, "{v:?} is not a time zone name such as Europe/Berlin"),
            Invalid::Registry(v) => write!(f, "{v:?} is not a registry such as registry.example.com:5000"),
            Invalid::Mirror(v) => write!(f, "{v:?} is not a mirror such as https://mirror.example.com"),
            Invalid::Pem => write!(f, "not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"),
            Invalid::SysctlName(v) => write!(f, "{v:?} is not a sysctl name such as net.ipv4.ip_forward"),
            Invalid::SysctlValue => write!(f, "a sysctl value cannot hold a line break"),
            Invalid::Cidr => write!(f, "expected an IPv4 address with a prefix length such as 10.0.2.15/24"),
            Invalid::Address => write!(f, "expected an IPv4 address such as 10.0.2.2"),
            Invalid::AddressList => write!(f, "expected IPv4 addresses separated by commas such as 1.1.1.1,8.8.8.8"),
            Invalid::NetMode => write!(f, "expected off, on or dhcp"),
            Invalid::Switch => write!(f, "expected no value, 1 or 0"),
            Invalid::NoValue => write!(f, "expected a value after '='"),
            Invalid::Share(why) => write!(f, "{why}"),
            Invalid::WrongType { expected, found } => write!(f, "expected {expected}, not {found}"),
        }
    }
}

/// Engine log levels podman accepts that Skiff passes on, quietest last.
pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The engine's log level (podman's `--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

pub fn log_level(v: &str) -> Result<LogLevel, Invalid> {
    match v {
        "trace" => Ok(LogLevel::Trace),
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        _ => Err(Invalid::LogLevel(v.to_string())),
    }
}

/// A vsock port: 0 and u32::MAX (VMADDR_PORT_ANY) are not usable.
pub fn port(p: i64) -> Result<u32, Invalid> {
    u32::try_from(p).ok().filter(|p| *p > 0 && *p != u32::MAX).ok_or(Invalid::Port)
}

/// [`port`] from text.
pub fn port_text(v: &str) -> Result<u32, Invalid> {
    v.parse::<i64>().map_err(|_| Invalid::Port).and_then(port)
}

/// A host name sethostname(2) and resolvers accept (RFC 1123): dot-separated
/// labels of ASCII letters, digits and inner hyphens, each at most 63 bytes,
/// 64 bytes in all (the kernel's limit).
pub fn hostname(v: &str) -> Result<String, Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok { Ok(v.to_string()) } else { Err(Invalid::HostName(v.to_string())) }
}

/// A tmpfs `size=`: digits followed by an optional `%`, `k`, `m` or `g`.
pub fn size(v: &str) -> Result<String, Invalid> {
    let digits = v.trim_end_matches(['%', 'k', 'K', 'm', 'M', 'g', 'G']);
    let ok = !digits.is_empty() && digits.len() + 1 >= v.len() && digits.bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(v.to_string()) } else { Err(Invalid::Size(v.to_string())) }
}

/// A zone name such as `Europe/Berlin` or `UTC` (no paths outside zoneinfo).
pub fn timezone(v: &str) -> Result<String, Invalid> {
    let ok = !v.is_empty()
        && !v.starts_with('/')
        && !v.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    if ok { Ok(v.to_string()) } else { Err(Invalid::TimeZone(v.to_string())) }
}

/// `host[:port][/path]`: letters, digits, `.-_:/[]` and nothing else (so it
/// can be quoted into registries.conf as is).
pub fn registry(v: &str) -> Result<String, Invalid> {
    let host = v.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && !host.starts_with(['.', '-', ':'])
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:/[]".contains(&b))
        && !v.ends_with('/');
    if ok { Ok(v.to_string()) } else { Err(Invalid::Registry(v.to_string())) }
}

/// A Docker Hub mirror: a registry, optionally behind `https://` or `http://`.
pub fn mirror(v: &str) -> Result<String, Invalid> {
    let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://")).unwrap_or(v);
    match registry(rest.trim_end_matches('/')) {
        Ok(_) => Ok(v.to_string()),
        Err(_) => Err(Invalid::Mirror(v.to_string())),
    }
}

/// A PEM certificate, trimmed and ending in one newline.
pub fn pem(v: &str) -> Result<String, Invalid> {
    let begin = v.find("-----BEGIN CERTIFICATE-----");
    let end = v.find("-----END CERTIFICATE-----");
    match (begin, end) {
        (Some(b), Some(e)) if b < e => Ok(v.trim().to_string() + "\n"),
        _ => Err(Invalid::Pem),
    }
}

/// A sysctl name (`net.ipv4.ip_forward` or `net/ipv4/ip_forward`) that
/// stays inside /proc/sys.
pub fn sysctl_name(name: &str) -> Result<String, Invalid> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && !name.split(['.', '/']).any(|p| p.is_empty() || p == "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if ok { Ok(name.to_string()) } else { Err(Invalid::SysctlName(name.to_string())) }
}

/// A sysctl value: one line of text.
pub fn sysctl_value(v: &str) -> Result<String, Invalid> {
    if v.contains('\n') { Err(Invalid::SysctlValue) } else { Ok(v.to_string()) }
}

/// Not 0.0.0.0, broadcast, multicast or loopback.
fn is_host_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// A host IPv4 address (gateway).
pub fn address(v: &str) -> Result<Ipv4Addr, Invalid> {
    v.parse::<Ipv4Addr>().ok().filter(|a| is_host_address(*a)).ok_or(Invalid::Address)
}

/// `ADDR/PREFIX` with a host address and a prefix from 1 to 32.
pub fn cidr(v: &str) -> Result<(Ipv4Addr, u8), Invalid> {
    let parsed = v.split_once('/').and_then(|(addr, prefix)| Some((addr.parse::<Ipv4Addr>().ok()?, prefix.parse::<u8>().ok()?)));
    match parsed {
        Some((addr, prefix)) if (1..=32).contains(&prefix) && is_host_address(addr) => Ok((addr, prefix)),
        _ => Err(Invalid::Cidr),
    }
}

/// `ADDR[,ADDR...]`, each a host address.
pub fn address_list(v: &str) -> Result<Vec<Ipv4Addr>, Invalid> {
    v.split(',').map(|a| address(a).map_err(|_| Invalid::AddressList)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in ["skiff", "box.lan", "a-b.c1", &"a".repeat(63), &format!("{}.{}", "a".repeat(31), "b".repeat(32))] {
            assert_eq!(hostname(good), Ok(good.to_string()), "{good}");
        }
        let long_label = format!("{}.b", "a".repeat(63));
        for bad in ["", "-bad", "bad-", "a_b", "a..b", ".a", "a b", &"a".repeat(64), &"a.".repeat(33), &long_label] {
            assert_eq!(hostname(bad), Err(Invalid::HostName(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn log_levels_are_all_five() {
        for name in LOG_LEVELS {
            assert_eq!(log_level(name).map(LogLevel::as_str), Ok(name));
        }
        assert_eq!(log_level("loud"), Err(Invalid::LogLevel("loud".into())));
        assert_eq!(log_level("WARN"), Err(Invalid::LogLevel("WARN".into())));
    }

    #[test]
    fn ports_sizes_and_addresses() {
        assert_eq!(port_text("2375"), Ok(2375));
        for bad in ["0", "4294967295", "-1", "http", "", "99999999999"] {
            assert_eq!(port_text(bad), Err(Invalid::Port), "{bad}");
        }
        assert_eq!(port(0), Err(Invalid::Port));
        for good in ["75%", "2G", "512m", "100"] {
            assert!(size(good).is_ok(), "{good}");
        }
        for bad in ["lots", "5%%", "%", "", "2GB"] {
            assert_eq!(size(bad), Err(Invalid::Size(bad.into())), "{bad}");
        }
        assert_eq!(cidr("10.0.2.15/24"), Ok((Ipv4Addr::new(10, 0, 2, 15), 24)));
        for bad in ["10.0.2.15", "10.0.2.15/33", "10.0.2.15/0", "0.0.0.0/8", "224.0.0.1/24", "127.0.0.1/8"] {
            assert_eq!(cidr(bad), Err(Invalid::Cidr), "{bad}");
        }
        assert_eq!(address("255.255.255.255"), Err(Invalid::Address));
        assert_eq!(address_list("1.1.1.1,8.8.8.8").map(|l| l.len()), Ok(2));
        assert_eq!(address_list("1.1.1.1,,8.8.8.8"), Err(Invalid::AddressList));
    }

    #[test]
    fn names_that_become_paths_stay_inside() {
        assert!(timezone("Europe/Berlin").is_ok() && timezone("UTC").is_ok());
        for bad in ["../../etc/shadow", "/etc/passwd", "Europe//Berlin", "a b"] {
            assert_eq!(timezone(bad), Err(Invalid::TimeZone(bad.into())), "{bad}");
        }
        assert!(sysctl_name("net.ipv4.ip_forward").is_ok() && sysctl_name("net/ipv4/ip_forward").is_ok());
        for bad in ["", "../x", ".x", "a..b", "a b"] {
            assert_eq!(sysctl_name(bad), Err(Invalid::SysctlName(bad.into())), "{bad}");
        }
        assert_eq!(sysctl_value("1\n2"), Err(Invalid::SysctlValue));
    }

    #[test]
    fn registries_mirrors_and_certificates() {
        assert!(registry("registry.lan:5000").is_ok() && registry("[::1]:5000").is_ok());
        for bad in ["bad host", ".x", "x/", "a\"b"] {
            assert_eq!(registry(bad), Err(Invalid::Registry(bad.into())), "{bad}");
        }
        assert!(mirror("https://mirror.gcr.io/").is_ok() && mirror("10.0.2.2:5000").is_ok());
        assert_eq!(mirror("https://bad host"), Err(Invalid::Mirror("https://bad host".into())));
        let cert = pem("  -----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----  ").unwrap();
        assert!(cert.starts_with("-----BEGIN") && cert.ends_with("CERTIFICATE-----\n"));
        assert_eq!(pem("-----END CERTIFICATE----- -----BEGIN CERTIFICATE-----"), Err(Invalid::Pem));
    }
}

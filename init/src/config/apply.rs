//! Applies the settings to the running system before the engine starts:
//! time zone, sysctls, registries.conf and the CA bundle. Every failure is
//! logged naming the key; the boot goes on.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::Effective;

/// The CA bundle Go (podman, and so image pulls) reads first.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Applies what the init itself does not consume: time zone, sysctls,
/// registries.conf and the CA bundle. (The host name is the network
/// module's: DHCP may supply it.)
pub fn apply(s: &Effective) {
    if let Some(tz) = &s.timezone {
        set_timezone(tz);
    }
    for (name, value) in &s.sysctl {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        match fs::write(&path, value) {
            Ok(()) => log::info!("config: sysctl {name} = {value}"),
            Err(e) => log::warn!("config: key `sysctl.{name}`: cannot write {}: {e}", path.display()),
        }
    }
    let (mirrors, insecure) = (&s.registry_mirrors, &s.insecure_registries);
    if !mirrors.is_empty() || !insecure.is_empty() {
        match fs::write(REGISTRIES_CONF, registries_conf(mirrors, insecure)) {
            Ok(()) => log::info!("config: registries.conf: mirrors {mirrors:?}, insecure {insecure:?}"),
            Err(e) => log::warn!("config: cannot write {REGISTRIES_CONF}: {e}"),
        }
    }
    if !s.ca_certificates.is_empty() {
        add_ca_certificates(&s.ca_certificates);
    }
}

fn set_timezone(tz: &str) {
    let zone = Path::new(ZONEINFO).join(tz);
    if !zone.is_file() {
        return log::warn!("config: key `timezone`: no zone {tz:?} in {ZONEINFO}; keeping UTC");
    }
    let _ = fs::remove_file("/etc/localtime");
    let linked = std::os::unix::fs::symlink(&zone, "/etc/localtime").and_then(|()| fs::write("/etc/timezone", format!("{tz}\n")));
    match linked {
        Ok(()) => log::info!("config: time zone {tz}"),
        Err(e) => log::warn!("config: cannot set time zone {tz}: {e}"),
    }
}

/// Appends the extra CAs to the bundle every TLS client in the image reads.
fn add_ca_certificates(certs: &[String]) {
    let mut text = String::new();
    for (i, pem) in certs.iter().enumerate() {
        text += &format!("\n# Skiff config: ca_certificates item {}\n{pem}", i + 1);
    }
    let appended = OpenOptions::new().append(true).open(CA_BUNDLE).and_then(|mut f| f.write_all(text.as_bytes()));
    match appended {
        Ok(()) => log::info!("config: added {} CA certificate(s) to {CA_BUNDLE}", certs.len()),
        Err(e) => log::warn!("config: key `ca_certificates`: cannot add to {CA_BUNDLE}: {e}"),
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
    use toml::de::{DeTable, DeValue};

    use super::*;

    /// `t[key]`, as a value.
    fn at<'a>(t: &'a DeValue<'a>, key: &str) -> &'a DeValue<'a> {
        t.get(key).map(|v| v.get_ref()).unwrap_or_else(|| panic!("no {key}"))
    }

    /// `v[i]` of an array.
    fn item<'a>(v: &'a DeValue<'a>, i: usize) -> &'a DeValue<'a> {
        v.as_array().unwrap()[i].get_ref()
    }

    #[test]
    fn registries_conf_has_mirrors_and_insecure_registries() {
        let conf = registries_conf(
            &["https://mirror.gcr.io/".into(), "http://10.0.2.2:5000".into()],
            &["registry.lan:5000".into(), "docker.io".into()],
        );
        let table = DeValue::Table(DeTable::parse(&conf).expect("valid TOML").into_inner());
        let regs = at(&table, "registry");
        assert_eq!(regs.as_array().unwrap().len(), 2);
        assert_eq!(at(item(regs, 0), "location").as_str(), Some("docker.io"));
        assert_eq!(at(item(regs, 0), "insecure").as_bool(), Some(true));
        let mirrors = at(item(regs, 0), "mirror");
        assert_eq!(at(item(mirrors, 0), "location").as_str(), Some("mirror.gcr.io"));
        assert!(item(mirrors, 0).get("insecure").is_none());
        assert_eq!(at(item(mirrors, 1), "location").as_str(), Some("10.0.2.2:5000"));
        assert_eq!(at(item(mirrors, 1), "insecure").as_bool(), Some(true));
        assert_eq!(at(item(regs, 1), "location").as_str(), Some("registry.lan:5000"));
        assert_eq!(item(at(&table, "unqualified-search-registries"), 0).as_str(), Some("docker.io"));
        assert!(!registries_conf(&[], &[]).contains("[[registry]]"));
    }
}

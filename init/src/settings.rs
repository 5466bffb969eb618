//! Gathers the settings (config file, `cidata` volume, the host's fw_cfg
//! fragment, kernel options) and
//! applies them to the running system before the engine starts: host name,
//! time zone, sysctls, registries.conf and the CA bundle.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::config::{self, Settings};
use crate::{cidata, cmdline, fwcfg};

/// The CA bundle Go (podman, and so image pulls) reads first.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
const ZONEINFO: &str = "/usr/share/zoneinfo";
const DEFAULT_HOSTNAME: &str = "skiff";

/// Reads every source in order of precedence, reporting problems by key.
pub fn load(cmdline_text: &str) -> Settings {
    let mut s = Settings::default();
    let mut report = |(settings, warnings): (Settings, Vec<String>)| {
        for w in warnings {
            log::warn!("config: {w}");
        }
        s.merge(settings);
    };
    match fs::File::open(config::PATH).and_then(|f| fwcfg::read_bounded(f, config::MAX_FILE)) {
        Ok(text) => {
            log::info!("config: reading {}", config::PATH);
            report(config::parse(&text, config::PATH));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => log::info!("config: no {} (defaults)", config::PATH),
        Err(e) => log::warn!("config: cannot read {}: {e}; using defaults", config::PATH),
    }
    if let Some(seed) = cidata::read() {
        if let Some((name, text)) = seed.config {
            report(config::parse(&text, &format!("{}:{name}", seed.device)));
        }
        if let Some(h) = seed.hostname {
            let mut t = toml::Table::new();
            t.insert("hostname".into(), toml::Value::String(h));
            report(config::from_table(t, &format!("{} meta-data/user-data", seed.device)));
        }
    }
    match fwcfg::read_config() {
        Ok(Some(text)) => {
            log::info!("config: reading the host's settings (QEMU fw_cfg opt/skiff/config)");
            report(config::parse(&text, "host (QEMU fw_cfg opt/skiff/config)"));
        }
        Ok(None) => {}
        Err(e) => log::warn!("config: cannot read {}: {e}; ignored", fwcfg::CONFIG),
    }
    report(config::from_cmdline(&cmdline::config_overrides(cmdline_text)));
    s
}

/// The vsock port: `skiff.port=` beats the config file.
pub fn port(s: &Settings, opts: &cmdline::Options, cmdline_text: &str) -> u32 {
    if cmdline::given(cmdline_text, "port") { opts.port } else { s.vsock_port.unwrap_or(opts.port) }
}

/// The engine log level: `skiff.engine_log=` beats the config file.
pub fn engine_log(s: &Settings, opts: &cmdline::Options, cmdline_text: &str) -> String {
    match &s.engine_log_level {
        Some(level) if !cmdline::given(cmdline_text, "engine_log") => level.clone(),
        _ => opts.engine_log.clone(),
    }
}

/// Applies everything that is not an engine or vsock setting.
pub fn apply(s: &Settings) {
    set_hostname(s.hostname.as_deref().unwrap_or(DEFAULT_HOSTNAME));
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
    let mirrors = s.registry_mirrors.as_deref().unwrap_or_default();
    let insecure = s.insecure_registries.as_deref().unwrap_or_default();
    if !mirrors.is_empty() || !insecure.is_empty() {
        match fs::write(REGISTRIES_CONF, config::registries_conf(mirrors, insecure)) {
            Ok(()) => log::info!("config: registries.conf: mirrors {mirrors:?}, insecure {insecure:?}"),
            Err(e) => log::warn!("config: cannot write {REGISTRIES_CONF}: {e}"),
        }
    }
    if let Some(certs) = s.ca_certificates.as_ref().filter(|c| !c.is_empty()) {
        add_ca_certificates(certs);
    }
}

fn set_hostname(name: &str) {
    if let Err(e) = rustix::system::sethostname(name.as_bytes()) {
        log::warn!("config: cannot set host name {name:?}: {e}");
        return;
    }
    let hosts = format!("127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost ip6-localhost ip6-loopback\n");
    for (path, text) in [("/etc/hostname", format!("{name}\n")), ("/etc/hosts", hosts)] {
        if let Err(e) = fs::write(path, text) {
            log::warn!("config: cannot write {path}: {e}");
        }
    }
    log::info!("config: host name {name}");
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

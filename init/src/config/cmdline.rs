//! Settings from the kernel command line. Dotted parameters such as
//! `skiff.port=2375` never reach init's argv or environment, so init reads
//! `/proc/cmdline` itself, here and nowhere else. Each value goes through the
//! same check as the config file's; a bad one is reported and left unset.

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use super::validate::{self, Invalid};
use super::{Layer, Warning};

/// The command line's text, mounting /proc briefly if it is not there yet
/// (the first stage runs before the API filesystems are mounted).
pub fn read() -> String {
    let mounted_here = !std::path::Path::new("/proc/self").exists()
        && std::fs::create_dir_all("/proc").is_ok()
        && mount("proc", "/proc", "proc", MountFlags::empty(), None).is_ok();
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| {
        log::error!("cannot read /proc/cmdline: {e}; using defaults");
        String::new()
    });
    if mounted_here {
        let _ = unmount("/proc", UnmountFlags::empty());
    }
    text
}

/// Parameters that take a value (all but `skiff.debug`).
const VALUED: [&str; 12] = ["port", "rootsize", "engine_log", "net", "ip", "gw", "dns", "hostname", "tz", "mirror", "insecure", "share"];

/// Parses `skiff.*` parameters into a layer, with one warning per bad or
/// unknown parameter. A repeated parameter's last value wins, except
/// `skiff.mirror` and `skiff.insecure`, whose lists add up.
pub fn parse(cmdline: &str) -> (Layer, Vec<Warning>) {
    let mut l = Layer::default();
    let mut warnings = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("skiff.") else { continue };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (rest, None),
        };
        let sysctl = key.strip_prefix("sysctl.");
        let checked: Result<(), Invalid> = match (key, value) {
            ("secret", _) => {
                warnings.push(Warning::SecretOnCommandLine);
                continue;
            }
            ("debug", None | Some("1")) => set(&mut l.debug, true),
            ("debug", Some("0")) => set(&mut l.debug, false),
            ("debug", Some(_)) => Err(Invalid::Switch),
            (k, None) if VALUED.contains(&k) || sysctl.is_some() => Err(Invalid::NoValue),
            (_, None) => {
                warnings.push(Warning::UnknownParameter { word: word.into() });
                continue;
            }
            (_, Some(v)) => match key {
                "port" => validate::port_text(v).map(|p| l.port = Some(p)),
                "rootsize" => validate::size(v).map(|s| l.root_size = Some(s)),
                "engine_log" => validate::log_level(v).map(|x| l.engine_log = Some(x)),
                "net" => match v {
                    "off" => set(&mut l.net_off, true),
                    "on" | "dhcp" => set(&mut l.net_off, false),
                    _ => Err(Invalid::NetMode),
                },
                "ip" => validate::cidr(v).map(|c| l.ip = Some(c)),
                "gw" => validate::address(v).map(|a| l.gateway = Some(a)),
                "dns" => validate::address_list(v).map(|d| l.dns = Some(d)),
                "hostname" => validate::hostname(v).map(|h| l.hostname = Some(h)),
                "tz" => validate::timezone(v).map(|t| l.timezone = Some(t)),
                "mirror" => add_list(&mut l.registry_mirrors, v, validate::mirror, word, &mut warnings),
                "insecure" => add_list(&mut l.insecure_registries, v, validate::registry, word, &mut warnings),
                "share" => crate::services::shares::from_cmdline(v)
                    .map(|s| l.shares.get_or_insert_with(Vec::new).push(s))
                    .map_err(Invalid::Share),
                _ => match sysctl {
                    Some(name) => validate::sysctl_name(name)
                        .and_then(|n| Ok((n, validate::sysctl_value(v)?)))
                        .map(|(n, v)| drop(l.sysctl.insert(n, v))),
                    None => {
                        warnings.push(Warning::UnknownParameter { word: word.into() });
                        continue;
                    }
                },
            },
        };
        if let Err(why) = checked {
            warnings.push(Warning::BadParameter { word: word.into(), item: None, why });
        }
    }
    (l, warnings)
}

fn set<T>(field: &mut Option<T>, value: T) -> Result<(), Invalid> {
    *field = Some(value);
    Ok(())
}

/// Adds the good elements of a comma-separated list (empty ones are
/// skipped; a bad one is reported on its own); `skiff.mirror=` alone sets
/// an empty list.
fn add_list(
    list: &mut Option<Vec<String>>,
    value: &str,
    check: fn(&str) -> Result<String, Invalid>,
    word: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), Invalid> {
    let list = list.get_or_insert_with(Vec::new);
    for (i, item) in value.split(',').enumerate().filter(|(_, s)| !s.is_empty()) {
        match check(item) {
            Ok(v) => list.push(v),
            Err(why) => warnings.push(Warning::BadParameter { word: word.into(), item: Some(i + 1), why }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::LogLevel;

    fn invalid(w: &[Warning]) -> Vec<(&str, &Invalid)> {
        w.iter()
            .map(|w| match w {
                Warning::BadParameter { word, why, .. } => (word.as_str(), why),
                other => panic!("not a bad parameter: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn nothing_set_without_skiff_options() {
        let (l, w) = parse("console=ttyS0 quiet root=/dev/ram0 skiff\n");
        assert_eq!(l, Layer::default());
        assert!(w.is_empty());
    }

    #[test]
    fn reads_known_options() {
        let (l, w) = parse("skiff.port=1234 skiff.debug skiff.rootsize=2G skiff.engine_log=trace skiff.tz=Asia/Tokyo");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.port, Some(1234));
        assert_eq!(l.debug, Some(true));
        assert_eq!(l.root_size.as_deref(), Some("2G"));
        assert_eq!(l.engine_log, Some(LogLevel::Trace));
        assert_eq!(l.timezone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(parse("skiff.debug skiff.debug=0").0.debug, Some(false), "the last one wins");
    }

    #[test]
    fn bad_values_are_named_and_left_unset() {
        let (l, w) = parse(
            "skiff.port=http skiff.port=0 skiff.rootsize=lots skiff.rootsize=5%% skiff.engine_log=loud skiff.debug=2 skiff.port skiff.tz=../x",
        );
        assert_eq!(l, Layer::default());
        let got = invalid(&w);
        assert_eq!(got[0], ("skiff.port=http", &Invalid::Port));
        assert_eq!(got[1], ("skiff.port=0", &Invalid::Port));
        assert_eq!(got[2], ("skiff.rootsize=lots", &Invalid::Size("lots".into())));
        assert_eq!(got[3], ("skiff.rootsize=5%%", &Invalid::Size("5%%".into())));
        assert_eq!(got[4], ("skiff.engine_log=loud", &Invalid::LogLevel("loud".into())));
        assert_eq!(got[5], ("skiff.debug=2", &Invalid::Switch));
        assert_eq!(got[6], ("skiff.port", &Invalid::NoValue));
        assert_eq!(got[7], ("skiff.tz=../x", &Invalid::TimeZone("../x".into())));
        assert_eq!(got.len(), 8);
        assert!(w[0].to_string().contains("skiff.port=http"), "the message names the parameter");
    }

    #[test]
    fn unknown_options_are_named() {
        let (l, w) = parse("skiff.bogus=1 skiff.bogus skiff.sysctl.=1 skiff.engine_logx=1");
        assert_eq!(l, Layer::default());
        assert_eq!(w[0], Warning::UnknownParameter { word: "skiff.bogus=1".into() });
        assert_eq!(w[1], Warning::UnknownParameter { word: "skiff.bogus".into() });
        assert_eq!(invalid(&w[2..3])[0].1, &Invalid::SysctlName(String::new()));
        assert_eq!(w[3], Warning::UnknownParameter { word: "skiff.engine_logx=1".into() });
    }

    #[test]
    fn a_secret_is_never_taken_from_the_command_line_nor_repeated() {
        let hex = "ab".repeat(32);
        let (l, w) = parse(&format!("skiff.secret={hex}"));
        assert_eq!(l, Layer::default());
        assert_eq!(w, [Warning::SecretOnCommandLine]);
        assert!(!w[0].to_string().contains(&hex));
    }

    #[test]
    fn reads_static_network_settings() {
        let (l, w) = parse("skiff.ip=192.168.7.10/24 skiff.gw=192.168.7.1 skiff.dns=1.1.1.1,8.8.8.8 skiff.hostname=box.lan skiff.net=off");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.ip, Some((Ipv4Addr::new(192, 168, 7, 10), 24)));
        assert_eq!(l.gateway, Some(Ipv4Addr::new(192, 168, 7, 1)));
        assert_eq!(l.dns, Some(vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]));
        assert_eq!(l.hostname.as_deref(), Some("box.lan"));
        assert_eq!(l.net_off, Some(true));
        assert_eq!(parse("skiff.net=dhcp").0.net_off, Some(false));
    }

    #[test]
    fn bad_network_values_are_named_and_left_unset() {
        let bad = [
            ("skiff.ip=10.0.2.15", Invalid::Cidr),
            ("skiff.ip=10.0.2.15/33", Invalid::Cidr),
            ("skiff.ip=300.1.1.1/24", Invalid::Cidr),
            ("skiff.ip", Invalid::NoValue),
            ("skiff.dns=1.1.1.1,,2.2.2.2", Invalid::AddressList),
            ("skiff.dns=", Invalid::AddressList),
            ("skiff.dns=255.255.255.255", Invalid::AddressList),
            ("skiff.hostname=-bad", Invalid::HostName("-bad".into())),
            ("skiff.hostname=a_b", Invalid::HostName("a_b".into())),
            ("skiff.hostname=", Invalid::HostName(String::new())),
            ("skiff.net=maybe", Invalid::NetMode),
            ("skiff.gw=x", Invalid::Address),
        ];
        for (word, why) in bad {
            let (l, w) = parse(word);
            assert_eq!(l, Layer::default(), "{word}");
            assert_eq!(invalid(&w), [(word, &why)], "{word}");
        }
    }

    #[test]
    fn shares_add_up_and_bad_ones_are_named() {
        let (l, w) = parse("skiff.share=a:/home/a skiff.share=b:/srv/b skiff.share=c:/etc");
        let paths: Vec<String> = l.shares.unwrap().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/home/a", "/srv/b"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(matches!(&w[0], Warning::BadParameter { word, why: Invalid::Share(_), .. } if word == "skiff.share=c:/etc"), "{w:?}");
    }

    #[test]
    fn lists_add_up_and_bad_elements_are_named() {
        let (l, w) = parse("skiff.mirror=https://m1,https://m2 skiff.mirror=https://m3 skiff.insecure=ok:5000,,bad! skiff.sysctl.vm.swappiness=5");
        assert_eq!(l.registry_mirrors.unwrap(), ["https://m1", "https://m2", "https://m3"]);
        assert_eq!(l.insecure_registries.unwrap(), ["ok:5000"]);
        assert_eq!(
            w,
            [Warning::BadParameter { word: "skiff.insecure=ok:5000,,bad!".into(), item: Some(3), why: Invalid::Registry("bad!".into()) }]
        );
        assert_eq!(l.sysctl.get("vm.swappiness").map(String::as_str), Some("5"));
        assert_eq!(parse("skiff.mirror=").0.registry_mirrors, Some(vec![]), "an empty list clears the config's");
    }
}

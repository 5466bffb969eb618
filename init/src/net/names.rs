//! Name settings: /etc/resolv.conf, /etc/hosts, /etc/hostname and the host
//! name, chosen from the settings first (command line, cidata, config file),
//! then DHCP (links in order), then defaults. This is the one place that sets
//! the host name. Several DHCP clients report here; files are rewritten only
//! on change.

use std::fs;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::config::validate;

pub const DEFAULT_HOSTNAME: &str = "skiff";
/// glibc reads at most three nameservers.
const MAX_SERVERS: usize = 3;

/// What DHCP told one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkNames {
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
}

/// A name resolvers accept (the host-name check every source shares).
fn valid_hostname(name: &str) -> bool {
    validate::hostname(name).is_ok()
}

/// Every input to the name files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// `skiff.dns`.
    pub static_dns: Vec<Ipv4Addr>,
    /// The host name the settings give.
    pub static_hostname: Option<String>,
    /// Per link, in link order: (order, name, settings).
    pub links: Vec<(usize, String, LinkNames)>,
}

/// The chosen settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub servers: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub hostname: String,
    pub domain: Option<String>,
}

/// Settings over DHCP over defaults; DNS servers of all links merged in
/// link order without duplicates.
pub fn choose(i: &Inputs) -> Chosen {
    let mut links: Vec<&(usize, String, LinkNames)> = i.links.iter().collect();
    links.sort_by_key(|(order, _, _)| *order);
    let mut servers = i.static_dns.clone();
    if servers.is_empty() {
        for (_, _, l) in &links {
            for s in &l.dns {
                if !servers.contains(s) {
                    servers.push(*s);
                }
            }
        }
    }
    servers.truncate(MAX_SERVERS);
    let mut search: Vec<String> = Vec::new();
    for (_, _, l) in &links {
        let names = if l.search.is_empty() { l.domain.iter().cloned().collect() } else { l.search.clone() };
        for n in names.into_iter().filter(|n| valid_hostname(n)) {
            if !search.contains(&n) && search.len() < 6 {
                search.push(n);
            }
        }
    }
    let dhcp_name = links.iter().find_map(|(_, _, l)| l.hostname.clone().filter(|h| valid_hostname(h)));
    let hostname = i.static_hostname.clone().or(dhcp_name).unwrap_or_else(|| DEFAULT_HOSTNAME.into());
    let domain = links.iter().find_map(|(_, _, l)| l.domain.clone().filter(|d| valid_hostname(d)));
    Chosen { servers, search, hostname, domain }
}

/// The text of /etc/resolv.conf.
pub fn resolv_conf(c: &Chosen) -> String {
    let mut s = String::from("# Written by skiff-init (DHCP or skiff.dns).\n");
    for server in &c.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !c.search.is_empty() {
        s.push_str(&format!("search {}\n", c.search.join(" ")));
    }
    s
}

/// The text of /etc/hosts: the host name on 127.0.1.1, as Debian does.
pub fn hosts(c: &Chosen) -> String {
    let short = c.hostname.split('.').next().unwrap_or(&c.hostname);
    let names = match &c.domain {
        Some(d) if !c.hostname.contains('.') => format!("{}.{d} {short}", c.hostname),
        _ if c.hostname != short => format!("{} {short}", c.hostname),
        _ => short.to_string(),
    };
    format!("127.0.0.1 localhost\n127.0.1.1 {names}\n::1 localhost ip6-localhost ip6-loopback\n")
}

struct State {
    inputs: Inputs,
    written: Option<Chosen>,
}

static STATE: Mutex<State> = Mutex::new(State {
    inputs: Inputs { static_dns: Vec::new(), static_hostname: None, links: Vec::new() },
    written: None,
});

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// Records the settings' DNS servers and host name and writes the files once.
pub fn init(static_dns: Vec<Ipv4Addr>, static_hostname: Option<String>) {
    with_state(|s| {
        s.inputs.static_dns = static_dns;
        s.inputs.static_hostname = static_hostname;
        apply(s);
    });
}

/// Records what DHCP on `link` says (`None`: it has no lease now) and
/// rewrites whatever changed.
pub fn update(order: usize, link: &str, names: Option<LinkNames>) {
    with_state(|s| {
        s.inputs.links.retain(|(_, n, _)| n != link);
        if let Some(mut l) = names {
            if let Some(h) = l.hostname.take() {
                if valid_hostname(&h) {
                    l.hostname = Some(h);
                } else {
                    log::warn!("network: {link}: ignoring the host name {h:?} from DHCP (not a valid host name)");
                }
            }
            s.inputs.links.push((order, link.to_string(), l));
        }
        apply(s);
    });
}

fn apply(s: &mut State) {
    let chosen = choose(&s.inputs);
    let old = s.written.as_ref();
    if old.is_none_or(|o| o.servers != chosen.servers || o.search != chosen.search) {
        match fs::write("/etc/resolv.conf", resolv_conf(&chosen)) {
            Ok(()) if chosen.servers.is_empty() => log::info!("network: no DNS servers yet"),
            Ok(()) => {
                let list: Vec<String> = chosen.servers.iter().map(|a| a.to_string()).collect();
                let search = if chosen.search.is_empty() { String::new() } else { format!(", search {}", chosen.search.join(" ")) };
                log::info!("network: DNS servers {}{search}", list.join(", "));
            }
            Err(e) => log::error!("network: cannot write /etc/resolv.conf: {e}"),
        }
    }
    if old.is_none_or(|o| o.hostname != chosen.hostname || o.domain != chosen.domain) {
        if let Err(e) = fs::write("/etc/hosts", hosts(&chosen)) {
            log::error!("network: cannot write /etc/hosts: {e}");
        }
        let _ = fs::write("/etc/hostname", format!("{}\n", chosen.hostname));
        match rustix::system::sethostname(chosen.hostname.as_bytes()) {
            Ok(()) => {
                log::info!("network: host name {}", chosen.hostname);
                crate::boot::events::note(skiff_proto::events::Note::HostName, &chosen.hostname);
            }
            Err(e) => log::warn!("network: cannot set the host name {:?}: {e}", chosen.hostname),
        }
    }
    s.written = Some(chosen);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(dns: &[[u8; 4]], domain: Option<&str>, hostname: Option<&str>) -> LinkNames {
        LinkNames {
            dns: dns.iter().map(|a| Ipv4Addr::from(*a)).collect(),
            search: Vec::new(),
            domain: domain.map(str::to_string),
            hostname: hostname.map(str::to_string),
        }
    }

    #[test]
    fn defaults_without_anything() {
        let c = choose(&Inputs::default());
        assert_eq!(c.hostname, "skiff");
        assert!(c.servers.is_empty());
        assert_eq!(resolv_conf(&c).lines().filter(|l| !l.starts_with('#')).count(), 0);
        assert!(hosts(&c).contains("127.0.1.1 skiff\n"));
    }

    #[test]
    fn dhcp_settings_merge_in_link_order() {
        let i = Inputs {
            links: vec![
                (1, "eth1".into(), link(&[[10, 0, 3, 3], [10, 0, 2, 3]], None, Some("second"))),
                (0, "eth0".into(), link(&[[10, 0, 2, 3]], Some("lab.test"), Some("guest"))),
            ],
            ..Inputs::default()
        };
        let c = choose(&i);
        assert_eq!(c.servers, vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 3, 3)]);
        assert_eq!(c.hostname, "guest");
        assert_eq!(c.search, vec!["lab.test".to_string()]);
        assert_eq!(resolv_conf(&c), "# Written by skiff-init (DHCP or skiff.dns).\nnameserver 10.0.2.3\nnameserver 10.0.3.3\nsearch lab.test\n");
        assert!(hosts(&c).contains("127.0.1.1 guest.lab.test guest\n"));
    }

    #[test]
    fn the_command_line_wins() {
        let i = Inputs {
            static_dns: vec![Ipv4Addr::new(1, 1, 1, 1)],
            static_hostname: Some("box".into()),
            links: vec![(0, "eth0".into(), link(&[[10, 0, 2, 3]], None, Some("guest")))],
        };
        let c = choose(&i);
        assert_eq!(c.servers, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(c.hostname, "box");
    }

    #[test]
    fn at_most_three_servers_and_no_invalid_names() {
        let many = link(&[[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [4, 4, 4, 4]], Some("bad domain"), Some("bad name"));
        let c = choose(&Inputs { links: vec![(0, "eth0".into(), many)], ..Inputs::default() });
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.hostname, "skiff");
        assert_eq!(c.domain, None);
        assert!(c.search.is_empty());
    }

    #[test]
    fn dhcp_names_follow_the_settings_host_name_rule() {
        let long_label = "a".repeat(64);
        let c = choose(&Inputs { links: vec![(0, "eth0".into(), link(&[], None, Some(&long_label)))], ..Inputs::default() });
        assert_eq!(c.hostname, "skiff", "a 64-character label is refused, as from every other source");
        let ok = "a".repeat(63);
        let c = choose(&Inputs { links: vec![(0, "eth0".into(), link(&[], None, Some(&ok)))], ..Inputs::default() });
        assert_eq!(c.hostname, ok);
    }

    #[test]
    fn a_fully_qualified_name_is_kept_whole() {
        let c = Chosen { servers: vec![], search: vec![], hostname: "node.example.com".into(), domain: None };
        assert!(hosts(&c).contains("127.0.1.1 node.example.com node\n"));
    }
}

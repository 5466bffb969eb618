//! The console report: each link's state and addresses, once DHCP and
//! SLAAC had a chance (or [`IPV6_WAIT`] passed).

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::{netlink, Link, Rtnl};

/// How long the console report waits for SLAAC addresses.
const IPV6_WAIT: Duration = Duration::from_secs(20);

/// Logs each link's state and addresses once configuration had a chance:
/// every link has an IPv4 address and a routable IPv6 one, or IPV6_WAIT
/// passed (DHCP logs its own lease whenever it comes).
pub(super) fn report(links: Vec<Link>) {
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return log::warn!("network: cannot open rtnetlink for the report: {e}"),
    };
    let began = Instant::now();
    let mut addrs = Vec::new();
    while began.elapsed() < IPV6_WAIT {
        thread::sleep(Duration::from_millis(500));
        addrs = rtnl.addresses().unwrap_or_default();
        if links.iter().all(|l| has_global_v6(&addrs, l.index) && has_v4(&addrs, l.index)) {
            break;
        }
    }
    for (link, line) in summarize(&links, &addrs) {
        let state = fs::read_to_string(format!("/sys/class/net/{link}/operstate")).unwrap_or_default();
        log::info!("network: {link} {}: {line}", state.trim());
    }
}

fn has_v4(addrs: &[netlink::Address], index: u32) -> bool {
    addrs.iter().any(|a| a.index == index && a.addr.is_ipv4())
}

/// True once router advertisements gave the link a routable IPv6 address.
fn has_global_v6(addrs: &[netlink::Address], index: u32) -> bool {
    addrs.iter().any(|a| a.index == index && a.scope != netlink::RT_SCOPE_LINK && a.addr.is_ipv6())
}

/// One "addr/prefix ..." line per link, IPv4 first.
fn summarize(links: &[Link], addrs: &[netlink::Address]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in links {
        let mut mine: Vec<&netlink::Address> = addrs.iter().filter(|a| a.index == l.index).collect();
        mine.sort_by_key(|a| (a.addr.is_ipv6(), a.scope));
        let text: Vec<String> = mine
            .iter()
            .map(|a| {
                let kind = match (a.addr, a.scope) {
                    (IpAddr::V4(_), _) => "",
                    (IpAddr::V6(_), netlink::RT_SCOPE_LINK) => " (IPv6 link-local)",
                    (IpAddr::V6(_), netlink::RT_SCOPE_SITE) => " (IPv6 site-local)",
                    (IpAddr::V6(_), _) => " (IPv6 global)",
                };
                format!("{}/{}{kind}", a.addr, a.prefix)
            })
            .collect();
        let line = if text.is_empty() { "no addresses".to_string() } else { text.join(", ") };
        out.insert(l.name.clone(), line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_ipv4_then_ipv6() {
        let links = vec![Link { name: "eth0".into(), index: 2, mac: [0; 6], order: 0 }];
        let a = |addr: &str, prefix, scope| netlink::Address { index: 2, addr: addr.parse().unwrap(), prefix, scope };
        let addrs = vec![a("fe80::1", 64, 253), a("2001:db8::1", 64, 0), a("10.0.2.15", 24, 0), a("fec0::1", 64, 200)];
        let s = summarize(&links, &addrs);
        assert_eq!(s["eth0"], "10.0.2.15/24, 2001:db8::1/64 (IPv6 global), fec0::1/64 (IPv6 site-local), fe80::1/64 (IPv6 link-local)");
        assert!(has_global_v6(&addrs, 2));
        assert!(has_global_v6(&addrs[3..], 2), "site-local counts as autoconfigured");
        assert!(!has_global_v6(&addrs[..1], 2));
        assert!(!has_global_v6(&addrs[..2], 3), "other link");
        assert!(has_v4(&addrs, 2) && !has_v4(&addrs[..2], 2));
        assert_eq!(summarize(&links, &[])["eth0"], "no addresses");
    }
}

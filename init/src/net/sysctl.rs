//! Kernel network settings. Containers on a bridge need forwarding; with
//! forwarding on, IPv6 router advertisements (and so SLAAC) are ignored
//! unless accept_ra is 2, so every uplink gets that before it comes up.

use std::fs;

/// Settings for the whole machine, as (path under /proc/sys, value).
/// Forwarding first: changing it resets per-link router behaviour.
pub fn global() -> Vec<(String, &'static str)> {
    [
        // Bridged container networks (netavark also expects these).
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv6/conf/all/forwarding", "1"),
        // Links created later (bridges, veths) inherit these.
        ("net/ipv6/conf/default/accept_ra", "2"),
        ("net/ipv6/conf/default/autoconf", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Settings for an uplink: link-local address and SLAAC from router adverts.
pub fn uplink(name: &str) -> Vec<(String, &'static str)> {
    [("disable_ipv6", "0"), ("accept_ra", "2"), ("autoconf", "1")]
        .into_iter()
        .map(|(k, v)| (format!("net/ipv6/conf/{name}/{k}"), v))
        .collect()
}

/// Writes settings, logging (not failing on) each one the kernel refuses.
pub fn apply(settings: &[(String, &str)]) {
    for (key, value) in settings {
        if let Err(e) = fs::write(format!("/proc/sys/{key}"), value) {
            log::warn!("network: cannot set {} = {value}: {e}", key.replace('/', "."));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_comes_before_router_advert_settings() {
        let g = global();
        let fwd = g.iter().position(|(k, _)| k == "net/ipv6/conf/all/forwarding").unwrap();
        let ra = g.iter().position(|(k, _)| k.ends_with("accept_ra")).unwrap();
        assert!(fwd < ra);
        assert!(g.contains(&("net/ipv4/ip_forward".into(), "1")));
        assert!(uplink("eth0").contains(&("net/ipv6/conf/eth0/accept_ra".into(), "2")));
    }
}

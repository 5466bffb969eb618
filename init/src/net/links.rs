//! Link discovery: the Ethernet-like links backed by a device, from sysfs.

use std::fs;
use std::io;

/// A link to configure.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// Position among the uplinks: 0 is the primary one.
    pub order: usize,
}

/// Index of the interface `name`, read from sysfs.
pub(super) fn ifindex(name: &str) -> io::Result<u32> {
    let text = fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?;
    text.trim().parse().map_err(|_| io::Error::other(format!("bad ifindex for {name}: {text:?}")))
}

/// `52:54:00:12:34:56` as bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Ethernet-like links backed by a device (ARPHRD_ETHER = 1, with a
/// `device` link in sysfs: virtual links such as dummy0 or podman's
/// bridges have none), sorted by name.
pub(super) fn ethernet_links() -> Vec<Link> {
    let Ok(dir) = fs::read_dir("/sys/class/net") else { return Vec::new() };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| fs::read_to_string(format!("/sys/class/net/{n}/type")).is_ok_and(|t| t.trim() == "1"))
        .filter(|n| fs::symlink_metadata(format!("/sys/class/net/{n}/device")).is_ok())
        .collect();
    names.sort();
    let mut links = Vec::new();
    for name in names {
        let mac = fs::read_to_string(format!("/sys/class/net/{name}/address")).ok().as_deref().and_then(parse_mac);
        match (ifindex(&name), mac) {
            (Ok(index), Some(mac)) => links.push(Link { order: links.len(), name, index, mac }),
            (Err(e), _) => log::error!("network: skipping {name}: {e}"),
            (_, None) => log::error!("network: skipping {name}: no readable hardware address"),
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses() {
        assert_eq!(parse_mac("52:54:00:12:34:56\n"), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:5g"), None);
        assert_eq!(parse_mac(""), None);
    }
}

//! Network bring-up over rtnetlink: `lo` and every Ethernet-like link,
//! configured by DHCPv4 (in the background, so boot never waits for it) or
//! statically from the command line; IPv6 by the kernel's SLAAC.

mod client;
pub mod dhcp;
pub mod dhcp_packet;
mod names;
pub mod netlink;
mod sysctl;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::thread;
use std::time::{Duration, Instant};

use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

use crate::config::Network;
use netlink::Ack;

/// Xorshift64: cheap pseudo-random numbers for DHCP ids and jitter, and for
/// the parsers' fuzz tests. `state` must not be zero.
pub fn xorshift64(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub use client::release_all;

/// Metric of the first link's default route; later links get higher ones.
const BASE_METRIC: u32 = 100;
/// How long the console report waits for SLAAC addresses.
const IPV6_WAIT: Duration = Duration::from_secs(20);

/// A request/acknowledge rtnetlink socket.
pub(crate) struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    pub(crate) fn open() -> io::Result<Self> {
        // Protocol `None` is NETLINK_ROUTE.
        let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(2)))?;
        Ok(Self { fd, seq: 0 })
    }

    /// Sends one request built by `build(seq)` and waits for its ack.
    pub(crate) fn call(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        self.seq += 1;
        let msg = build(self.seq);
        send(&self.fd, &msg, SendFlags::empty())?;
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = recv(&self.fd, &mut buf, RecvFlags::empty())?;
            match netlink::parse_ack(&buf[..n], self.seq) {
                Ack::Ok => return Ok(()),
                Ack::Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
                Ack::Missing => continue,
            }
        }
    }

    /// Every address of every link.
    pub(crate) fn addresses(&mut self) -> io::Result<Vec<netlink::Address>> {
        self.seq += 1;
        let seq = self.seq;
        send(&self.fd, &netlink::dump_addresses(seq), SendFlags::empty())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (n, _) = recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            for (kind, msg_seq, payload) in netlink::messages(&buf[..n]) {
                match kind {
                    _ if msg_seq != seq => {}
                    netlink::NLMSG_DONE => return Ok(out),
                    netlink::NLMSG_ERROR => return Err(io::Error::other("address dump refused")),
                    netlink::RTM_NEWADDR => out.extend(netlink::parse_address(payload)),
                    _ => {}
                }
            }
        }
    }
}

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
fn ifindex(name: &str) -> io::Result<u32> {
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
fn ethernet_links() -> Vec<Link> {
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

/// Brings up `lo` and every Ethernet link. Never blocks on the network and
/// never fails the boot: problems are logged and the engine still starts
/// (it is served over vsock, which needs no IP network). `hostname` is the
/// one the settings give (else DHCP's, else `skiff`).
pub fn bring_up(opts: &Network, hostname: Option<String>) {
    names::init(opts.dns.clone(), hostname);
    sysctl::apply(&sysctl::global());
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return log::error!("network: cannot open rtnetlink: {e}"),
    };
    match ifindex("lo").and_then(|i| rtnl.call(|s| netlink::link_up(s, i, None))) {
        Ok(()) => log::debug!("network: lo up"),
        Err(e) => log::error!("network: cannot bring up lo: {e}"),
    }
    if opts.off {
        return log::info!("network: skiff.net=off: only lo is up");
    }
    let links = ethernet_links();
    if links.is_empty() {
        return log::warn!("network: no Ethernet link found; containers will have no outside network");
    }
    let mut dhcp = Vec::new();
    for link in &links {
        sysctl::apply(&sysctl::uplink(&link.name));
        if let Err(e) = rtnl.call(|s| netlink::link_up(s, link.index, None)) {
            log::error!("network: cannot bring up {}: {e}", link.name);
            continue;
        }
        match opts.ip {
            Some((addr, prefix)) if link.order == 0 => configure_static(&mut rtnl, link, addr, prefix, opts.gateway),
            _ => {
                client::spawn(link.clone());
                dhcp.push(link.name.as_str());
            }
        }
    }
    if !dhcp.is_empty() {
        log::info!("network: DHCP running in the background on {}; the engine starts meanwhile", dhcp.join(", "));
    }
    let spawned = thread::Builder::new().name("net-report".into()).spawn(move || report(links));
    if let Err(e) = spawned {
        log::warn!("network: cannot start the address report: {e}");
    }
}

/// The default route (and, for a gateway outside the subnet, a route to it).
fn add_gateway(rtnl: &mut Rtnl, link: &Link, addr: Ipv4Addr, prefix: u8, gw: Ipv4Addr, protocol: u8) -> io::Result<()> {
    let metric = BASE_METRIC + link.order as u32;
    let base = netlink::Route { index: link.index, dst: gw, dst_len: 32, gateway: None, metric, protocol };
    if !netlink::same_subnet(addr, prefix, gw) {
        rtnl.call(|s| netlink::add_route(s, &base))?;
    }
    let default = netlink::Route { dst: Ipv4Addr::UNSPECIFIED, dst_len: 0, gateway: Some(gw), ..base };
    rtnl.call(|s| netlink::add_route(s, &default))
}

fn configure_static(rtnl: &mut Rtnl, link: &Link, addr: Ipv4Addr, prefix: u8, gw: Option<Ipv4Addr>) {
    if let Err(e) = rtnl.call(|s| netlink::add_address(s, link.index, addr, prefix, None)) {
        return log::error!("network: {}: cannot add the static address {addr}/{prefix}: {e}", link.name);
    }
    let gw_text = match gw {
        None => "no gateway".to_string(),
        Some(gw) => match add_gateway(rtnl, link, addr, prefix, gw, netlink::RTPROT_STATIC) {
            Ok(()) => format!("gateway {gw}"),
            Err(e) => format!("gateway {gw} NOT set ({e})"),
        },
    };
    log::info!("network: {} static address {addr}/{prefix}, {gw_text} (skiff.ip; no DHCP)", link.name);
}

/// Logs each link's state and addresses once configuration had a chance:
/// every link has an IPv4 address and a routable IPv6 one, or IPV6_WAIT
/// passed (DHCP logs its own lease whenever it comes).
fn report(links: Vec<Link>) {
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

/// RT_SCOPE_LINK: fe80::/10, valid on one link only.
const SCOPE_LINK: u8 = 253;
/// RT_SCOPE_SITE: the deprecated fec0::/10 (QEMU user-net still advertises it).
const SCOPE_SITE: u8 = 200;

fn has_v4(addrs: &[netlink::Address], index: u32) -> bool {
    addrs.iter().any(|a| a.index == index && a.addr.is_ipv4())
}

/// True once router advertisements gave the link a routable IPv6 address.
fn has_global_v6(addrs: &[netlink::Address], index: u32) -> bool {
    addrs.iter().any(|a| a.index == index && a.scope != SCOPE_LINK && a.addr.is_ipv6())
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
                    (IpAddr::V6(_), SCOPE_LINK) => " (IPv6 link-local)",
                    (IpAddr::V6(_), SCOPE_SITE) => " (IPv6 site-local)",
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
    fn mac_addresses() {
        assert_eq!(parse_mac("52:54:00:12:34:56\n"), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:5g"), None);
        assert_eq!(parse_mac(""), None);
    }

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

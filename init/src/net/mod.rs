//! Network bring-up over rtnetlink: `lo` and every Ethernet-like link,
//! configured by DHCPv4 (in the background, so boot never waits for it) or
//! statically from the command line; IPv6 by the kernel's SLAAC.
//! This file brings the links up; `links` finds them, `rtnl` does the
//! socket I/O for the messages `netlink` builds and parses, `client` and
//! `dhcp*` run DHCP, `names` writes the resolver and host-name files, and
//! `report` logs each link's addresses.

mod client;
pub mod dhcp;
pub mod dhcp_packet;
mod links;
mod names;
pub mod netlink;
mod report;
mod rtnl;
mod sysctl;

use std::io;
use std::net::Ipv4Addr;
use std::thread;

use crate::config::Network;
pub(crate) use links::Link;
use links::{ethernet_links, ifindex};
pub(crate) use rtnl::Rtnl;

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
    let spawned = thread::Builder::new().name("net-report".into()).spawn(move || report::report(links));
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
    let link = link.name.clone();
    crate::boot::events::emit(skiff_proto::events::Event::Network { link, addr: addr.into(), prefix });
}


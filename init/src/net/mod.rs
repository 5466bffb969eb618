//! Network bring-up: loopback and the first Ethernet link, over rtnetlink.
//!
//! This skeleton configures QEMU user-net's well-known addresses; a DHCPv4
//! client replaces that (see the networking issue).

pub mod netlink;

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

use netlink::Ack;

/// QEMU user-net: guest address, gateway and DNS server.
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> io::Result<Self> {
        // Protocol `None` is NETLINK_ROUTE.
        let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(2)))?;
        Ok(Self { fd, seq: 0 })
    }

    /// Sends one request built by `build(seq)` and waits for its ack.
    fn call(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
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
}

/// Index of the interface `name`, read from sysfs.
fn ifindex(name: &str) -> io::Result<u32> {
    let text = fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?;
    text.trim().parse().map_err(|_| io::Error::other(format!("bad ifindex for {name}: {text:?}")))
}

/// The first Ethernet-like link backed by a device (ARPHRD_ETHER = 1, with a
/// `device` link in sysfs: virtual links such as dummy0 have none), by name.
fn first_ethernet() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net").ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| fs::read_to_string(format!("/sys/class/net/{n}/type")).is_ok_and(|t| t.trim() == "1"))
        .filter(|n| fs::symlink_metadata(format!("/sys/class/net/{n}/device")).is_ok())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Brings up `lo` and the first Ethernet link. Never fails the boot: every
/// problem is logged and the engine still starts (it serves over vsock).
pub fn bring_up() {
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return log::error!("network: cannot open rtnetlink: {e}"),
    };
    match ifindex("lo").and_then(|i| rtnl.call(|s| netlink::link_up(s, i, None))) {
        Ok(()) => log::debug!("network: lo up"),
        Err(e) => log::error!("network: cannot bring up lo: {e}"),
    }
    let Some(eth) = first_ethernet() else {
        return log::warn!("network: no Ethernet link found; containers will have no outside network");
    };
    let result = ifindex(&eth).and_then(|i| {
        rtnl.call(|s| netlink::link_up(s, i, None))?;
        rtnl.call(|s| netlink::add_address(s, i, GUEST, 24))?;
        rtnl.call(|s| netlink::add_default_route(s, i, GATEWAY))
    });
    match result {
        Ok(()) => log::info!("network: {eth} up, address {GUEST}/24, gateway {GATEWAY} (QEMU user-net defaults)"),
        Err(e) => log::error!("network: cannot configure {eth}: {e}"),
    }
    if let Err(e) = fs::write("/etc/resolv.conf", format!("nameserver {DNS}\n")) {
        log::error!("network: cannot write /etc/resolv.conf: {e}");
    }
}

//! The DHCP client's I/O: one thread per link runs the state machine of
//! `dhcp.rs` over a UDP socket bound to the link (SO_BINDTODEVICE, with
//! SO_BROADCAST; replies are asked to be broadcast while unconfigured), and
//! applies leases over rtnetlink. Shutdown releases the leases.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::sockopt::{self, Timeout};
use rustix::net::{bind, ipproto, recv, sendto, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

use super::dhcp::{Action, Client, Dest, Lease, State};
use super::dhcp_packet::{CLIENT_PORT, SERVER_PORT};
use super::names::{self, LinkNames};
use super::{netlink, Link, Rtnl};
use crate::supervise::backoff;
use skiff_proto::events::{Event, Note};

/// A running client, reachable from the shutdown path.
struct Registered {
    link: String,
    client: Arc<Mutex<Client>>,
    sock: Arc<OwnedFd>,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the DHCP client thread of `link`.
pub fn spawn(link: Link) {
    let name = link.name.clone();
    if let Err(e) = thread::Builder::new().name(format!("dhcp-{name}")).spawn(move || run(link)) {
        log::error!("network: {name}: cannot start the DHCP client: {e}");
    }
}

/// A UDP socket on port 68 of `link` only, allowed to broadcast.
fn open_socket(link: &str) -> std::io::Result<OwnedFd> {
    let fd = socket(AddressFamily::INET, SocketType::DGRAM, Some(ipproto::UDP))?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_broadcast(&fd, true)?;
    let name = link.as_bytes();
    // SAFETY: setsockopt reads `name.len()` bytes from a live slice; the fd is open.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), name.len() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))?;
    Ok(fd)
}

/// Seed for transaction ids and jitter: the kernel's randomness, mixed with
/// the hardware address so two links never share it.
fn seed(mac: [u8; 6]) -> u64 {
    let mut bytes = [0u8; 8];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        log::debug!("network: no /dev/urandom ({e}); seeding DHCP from the clock");
        bytes = crate::boot::logger::uptime().as_nanos().to_le_bytes()[..8].try_into().unwrap_or_default();
    }
    let mut m = [0u8; 8];
    m[..6].copy_from_slice(&mac);
    u64::from_le_bytes(bytes) ^ u64::from_le_bytes(m).rotate_left(17)
}

fn run(link: Link) {
    let mut failures = 0;
    let sock = loop {
        match open_socket(&link.name) {
            Ok(s) => break Arc::new(s),
            Err(e) => {
                failures += 1;
                let wait = backoff::delay(failures);
                log::error!("network: {}: cannot open the DHCP socket: {e}; retrying in {}s", link.name, crate::secs::Secs(wait, 1));
                thread::sleep(wait);
            }
        }
    };
    let client = Arc::new(Mutex::new(Client::new(link.mac, seed(link.mac))));
    lock(&REGISTRY).push(Registered { link: link.name.clone(), client: client.clone(), sock: sock.clone() });
    let mut io = Io { link, sock, rtnl: None, applied: None, started: Instant::now(), discovers: 0 };
    let mut buf = vec![0u8; 1500];
    loop {
        // Never hold the client's lock while doing I/O: shutdown needs it.
        let (actions, state) = step(&client, |c| c.on_timer(io.now()));
        io.perform(actions, state);
        let (deadline, state) = {
            let c = lock(&client);
            (c.deadline(), c.state())
        };
        if state == State::Stopped {
            return;
        }
        let wait = deadline
            .map_or(Duration::from_secs(3600), |d| d.saturating_sub(io.now()))
            .clamp(Duration::from_millis(10), Duration::from_secs(3600));
        if let Err(e) = sockopt::set_socket_timeout(&*io.sock, Timeout::Recv, Some(wait)) {
            log::warn!("network: {}: cannot set the DHCP socket timeout: {e}", io.link.name);
            thread::sleep(wait);
            continue;
        }
        match recv(&*io.sock, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _)) => {
                let (actions, state) = step(&client, |c| c.on_packet(io.now(), &buf[..n]));
                io.perform(actions, state);
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(e) => {
                log::warn!("network: {}: DHCP receive failed: {e}", io.link.name);
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Runs `f` on the client and returns its actions with the state after it.
fn step(client: &Mutex<Client>, f: impl FnOnce(&mut Client) -> Vec<Action>) -> (Vec<Action>, State) {
    let mut c = lock(client);
    let actions = f(&mut c);
    (actions, c.state())
}

/// The side effects of one link's client.
struct Io {
    link: Link,
    sock: Arc<OwnedFd>,
    rtnl: Option<Rtnl>,
    /// The lease currently on the link.
    applied: Option<Lease>,
    started: Instant,
    discovers: u32,
}

impl Io {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn perform(&mut self, actions: Vec<Action>, state: State) {
        for action in actions {
            match action {
                Action::Send(packet, dest) => {
                    if state == State::Selecting {
                        self.discovers += 1;
                        if self.discovers == 3 || self.discovers.is_multiple_of(10) {
                            log::info!("network: {}: no DHCP offer yet ({} tries); still trying in the background", self.link.name, self.discovers);
                            crate::boot::events::note(Note::DhcpWaiting, &self.link.name);
                        }
                    }
                    self.send(&packet, dest);
                }
                Action::Configure(lease) => {
                    self.discovers = 0;
                    self.configure(lease);
                }
                Action::Deconfigure(lease) => self.deconfigure(&lease),
            }
        }
    }

    fn send(&self, packet: &[u8], dest: Dest) {
        let to = match dest {
            Dest::Broadcast => Ipv4Addr::BROADCAST,
            Dest::Server(a) => a,
        };
        if let Err(e) = sendto(&*self.sock, packet, SendFlags::empty(), &SocketAddrV4::new(to, SERVER_PORT)) {
            log::warn!("network: {}: cannot send a DHCP message to {to}: {e}", self.link.name);
        }
    }

    /// Runs one rtnetlink request, opening the socket on first use.
    fn rtnl(&mut self, what: &str, build: impl FnOnce(u32) -> Vec<u8>) -> bool {
        if self.rtnl.is_none() {
            match Rtnl::open() {
                Ok(r) => self.rtnl = Some(r),
                Err(e) => {
                    log::error!("network: {}: cannot open rtnetlink: {e}", self.link.name);
                    return false;
                }
            }
        }
        match self.rtnl.as_mut().map(|r| r.call(build)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                log::error!("network: {}: cannot {what}: {e}", self.link.name);
                false
            }
            None => false,
        }
    }

    fn configure(&mut self, lease: Lease) {
        let (index, name) = (self.link.index, self.link.name.clone());
        let renewal = self.applied.as_ref().is_some_and(|a| a.address == lease.address && a.prefix == lease.prefix);
        if let Some(mtu) = lease.mtu.filter(|m| self.applied.as_ref().is_none_or(|a| a.mtu != Some(*m))) {
            self.rtnl(&format!("set MTU {mtu}"), |s| netlink::link_up(s, index, Some(mtu.into())));
        }
        let (addr, prefix) = (lease.address, lease.prefix);
        if !self.rtnl(&format!("add {addr}/{prefix}"), |s| netlink::add_address(s, index, addr, prefix, lease.length)) {
            return;
        }
        let mut gateway = "no gateway".to_string();
        if let Some(gw) = lease.router {
            let link = self.link.clone();
            let result = match self.rtnl.as_mut() {
                Some(r) => super::add_gateway(r, &link, addr, prefix, gw, netlink::RTPROT_DHCP),
                None => Err(std::io::Error::other("no rtnetlink socket")),
            };
            gateway = match result {
                Ok(()) => format!("gateway {gw}"),
                Err(e) => format!("gateway {gw} NOT set ({e})"),
            };
        }
        names::update(self.link.order, &name, Some(LinkNames {
            dns: lease.dns.clone(),
            search: lease.search.clone(),
            domain: lease.domain.clone(),
            hostname: lease.hostname.clone(),
        }));
        let length = lease.length.map_or("infinite".to_string(), |l| format!("{}s", l.as_secs()));
        if renewal {
            log::info!("network: {name} renewed its lease on {addr} ({length})");
        } else {
            let dns: Vec<String> = lease.dns.iter().map(|d| d.to_string()).collect();
            let mtu = lease.mtu.map_or(String::new(), |m| format!(", MTU {m}"));
            crate::boot::events::emit(Event::Network { link: name.clone(), addr: addr.into(), prefix });
            log::info!(
                "network: {name} address {addr}/{prefix} from DHCP server {} after {}s: {gateway}, DNS [{}], lease {length}{mtu}",
                lease.server, crate::secs::Secs(self.now(), 2), dns.join(" ")
            );
        }
        self.applied = Some(lease);
    }

    fn deconfigure(&mut self, lease: &Lease) {
        let (index, addr, prefix) = (self.link.index, lease.address, lease.prefix);
        log::warn!("network: {}: lease on {addr} ended or was refused; removing it and asking again", self.link.name);
        // The kernel may have dropped it already (the address carries the lease's lifetime).
        if let Some(r) = self.rtnl.as_mut() {
            let _ = r.call(|s| netlink::del_address(s, index, addr, prefix));
        }
        names::update(self.link.order, &self.link.name, None);
        self.applied = None;
    }
}

/// Gives every lease back to its server (a shutdown step). Only sends one
/// datagram per link, so it cannot hold the shutdown up.
pub fn release_all() {
    let registry = lock(&REGISTRY);
    for r in registry.iter() {
        let released = lock(&r.client).release();
        let Some((packet, server, lease)) = released else {
            log::info!("network: {}: no DHCP lease to release", r.link);
            continue;
        };
        match sendto(&*r.sock, &packet, SendFlags::DONTWAIT, &SocketAddrV4::new(server, SERVER_PORT)) {
            Ok(_) => {
                log::info!("network: {} released its lease on {} to {server}", r.link, lease.address);
                crate::boot::events::note(Note::LeaseReleased, &r.link);
            }
            Err(e) => log::warn!("network: {}: cannot release the lease on {}: {e}", r.link, lease.address),
        }
    }
}

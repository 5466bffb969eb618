//! Published ports on the host: follows the guest's port table (control
//! port, `SKIFF-CONTROL/1 ports`) and keeps one listener per published
//! port, protocol and host address. Each accepted TCP connection becomes
//! one vsock connection to the guest's forward port (2377), relayed by the
//! bridge's pump; UDP datagrams travel per client address (`udp`). A
//! published port with no host address is bound on 127.0.0.1 and
//! ::1 (so `localhost` works whichever the client resolves); other
//! interfaces only with `--ports-all-interfaces`. A port that cannot be
//! bound is reported, retried, and never stops the others. The state of
//! every listener is written to the state folder for `skiff ports`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use skiff_proto::control::{self, Request, DEFAULT_CONTROL_PORT};
use skiff_proto::ports::{self as wire, Proto, Published, Update, MAX_LINE};

use crate::guest::backoff::Backoff;
use crate::guest::relay;
use crate::guest::Target;
use crate::guest::forward::{open_forward, Dest, Place};
use crate::guest::udp;
use crate::threads;
use crate::state::file as state_file;

/// The most `skiff ports` reads of the listing.
const MAX_LISTING: u64 = 1 << 20;

/// How often a listener that could not be bound is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// The guest sends `alive` every 5 s: silence this long means it is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(20);
/// Reconnection backoff to the control port.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A listener's place: its protocol and host address (TCP and UDP may
/// share a port number).
pub type Key = (Proto, SocketAddr);

/// Connections (TCP) or client flows (UDP) a published port serves at once
/// by default, over all its host addresses. Any local user can connect to
/// a published port; each connection holds one of the guest forward port's
/// 512 places (and the guest holds one target to half of them), so one
/// port's crowd must stop short of the others'.
pub const DEFAULT_CONNECTIONS: u32 = 128;

/// How long a forwarded TCP connection may pass with no byte either way by
/// default: an hour. Docker's own userland proxy has no such limit;
/// Docker Desktop's vpnkit closed flows idle for 300 s, and its users met
/// that as broken database pools, debugger sessions and X11 connections
/// until it was made a setting (docker/for-mac#2197, #5886,
/// moby/vpnkit#414). An hour outlasts the idle times pools keep (HikariCP:
/// 10 min idle, 30 min lifetime) while an idle crowd still goes. (UDP flows
/// end after 90 s idle, as with Docker's proxy: `udp`.)
pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

/// What each published port allows: the settings `--port-connections` and
/// `--port-idle-timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections or UDP flows at once per port and protocol; more are
    /// closed at once (UDP: their datagrams dropped).
    pub connections: usize,
    /// A TCP connection with no traffic either way for this long is closed;
    /// `None`: never.
    pub idle: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { connections: DEFAULT_CONNECTIONS as usize, idle: Some(DEFAULT_IDLE) }
    }
}

/// The port settings of `skiff run` and `skiff bridge`.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitOptions {
    /// Connections each published port serves at once (UDP: client
    /// addresses), over all its host addresses; more are closed at once.
    /// Also SKIFF_PORT_CONNECTIONS.
    #[arg(long, env = "SKIFF_PORT_CONNECTIONS", default_value_t = DEFAULT_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub port_connections: u32,
    /// Seconds a connection to a published TCP port may pass with no byte
    /// either way before it is closed; 0: never. Also SKIFF_PORT_IDLE_TIMEOUT.
    #[arg(long, env = "SKIFF_PORT_IDLE_TIMEOUT", default_value_t = DEFAULT_IDLE.as_secs())]
    pub port_idle_timeout: u64,
}

impl LimitOptions {
    pub fn limits(&self) -> Limits {
        let idle = (self.port_idle_timeout > 0).then(|| Duration::from_secs(self.port_idle_timeout));
        Limits { connections: self.port_connections as usize, idle }
    }
}

/// Why a published port gets no listener on some address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A host address that is not loopback, without the opt-in flag.
    NotLoopback(IpAddr),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotLoopback(ip) => write!(f, "{ip} is not a loopback address (pass --ports-all-interfaces to bind it)"),
        }
    }
}

/// The host addresses a published port is bound on.
pub fn bind_addrs(p: &Published, all_interfaces: bool) -> Result<Vec<SocketAddr>, Skip> {
    let ips = match p.host_ip {
        // [::] is dual-stack on Linux: one socket for every interface.
        None if all_interfaces => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
        None => vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
        Some(ip) if ip.is_loopback() || all_interfaces => vec![ip],
        Some(ip) => return Err(Skip::NotLoopback(ip)),
    };
    Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, p.host_port)).collect())
}

/// What should be bound: protocol and address → destination, or why an
/// entry is skipped. Two entries wanting one place: the first (in table
/// order) wins.
pub fn plan(table: &BTreeSet<Published>, all_interfaces: bool) -> (BTreeMap<Key, Dest>, Vec<(Published, Skip)>) {
    let mut binds = BTreeMap::new();
    let mut skipped = Vec::new();
    for p in table {
        match bind_addrs(p, all_interfaces) {
            Ok(addrs) => {
                for a in addrs {
                    binds.entry((p.proto, a)).or_insert((p.target_ip, p.target_port));
                }
            }
            Err(skip) => skipped.push((p.clone(), skip)),
        }
    }
    (binds, skipped)
}

/// One host address's listener.
enum Slot {
    Listening { dest: Arc<Mutex<Dest>>, listener: Listener },
    Failed { dest: Arc<Mutex<Dest>>, reason: String },
}

/// A bound socket; the serving thread has its own copy.
enum Listener {
    Tcp(TcpListener),
    /// The receiving thread holds the socket; this flag tells it the port
    /// was unpublished.
    Udp(Arc<AtomicBool>),
}

impl Slot {
    fn dest(&self) -> &Arc<Mutex<Dest>> {
        match self {
            Slot::Listening { dest, .. } | Slot::Failed { dest, .. } => dest,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            // Wakes the accept thread (accept fails with EINVAL), which then
            // drops its copy: the port closes at once.
            Slot::Listening { listener: Listener::Tcp(l), .. } => {
                let _ = rustix::net::shutdown(l, rustix::net::Shutdown::Both);
            }
            // The receiving thread sees the flag within `udp::POLL` and
            // drops its copy. (A shut-down UDP socket's receive returns no
            // sender address, which std's recv_from does not accept.)
            Slot::Listening { listener: Listener::Udp(closed), .. } => closed.store(true, Ordering::SeqCst),
            Slot::Failed { .. } => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's listeners for one guest.
pub struct Ports {
    guest: Target,
    all_interfaces: bool,
    limits: Limits,
    status_file: Option<PathBuf>,
    /// Set by [`Ports::close`]: the status file is no longer written.
    closed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    table: BTreeSet<Published>,
    slots: BTreeMap<Key, Slot>,
    skipped: Vec<(Published, Skip)>,
    guest_link: String,
    /// Places taken per protocol and host port, shared by its addresses.
    open: BTreeMap<(Proto, u16), Arc<AtomicUsize>>,
}

impl State {
    /// The places counter of `key`'s port.
    fn open(&mut self, (proto, addr): Key) -> Arc<AtomicUsize> {
        Arc::clone(self.open.entry((proto, addr.port())).or_default())
    }
}

impl Ports {
    /// Starts following the guest's port table in the background.
    pub fn spawn(guest: Target, all_interfaces: bool, limits: Limits, status_file: Option<PathBuf>) -> io::Result<Arc<Ports>> {
        let ports = Arc::new(Ports { guest, all_interfaces, limits, status_file, closed: AtomicBool::new(false), state: Mutex::new(State::default()) });
        ports.write_status(&lock(&ports.state));
        let follower = Arc::clone(&ports);
        threads::spawn("port table", move || follower.follow())?;
        let retrier = Arc::clone(&ports);
        threads::spawn("port retries", move || loop {
            thread::sleep(RETRY_EVERY);
            retrier.retry_failed();
        })?;
        Ok(ports)
    }

    /// Stops writing the status file (the VM is gone; the state folder's
    /// cleanup removes it): no later change can bring it back.
    pub fn close(&self) {
        let _st = lock(&self.state);
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Keeps reading the port table, reconnecting with backoff.
    fn follow(self: &Arc<Self>) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let mut connected = false;
            let result = self.read_table(&mut connected);
            let why = match &result {
                Ok(()) => "the guest closed the port table stream".to_string(),
                Err(e) => e.to_string(),
            };
            if connected {
                eprintln!("skiff: ports: lost the guest's port table ({why}); reconnecting");
                backoff.reset();
            }
            self.set_link(format!("not connected ({why})"));
            backoff.wait();
        }
    }

    fn read_table(self: &Arc<Self>, connected: &mut bool) -> io::Result<()> {
        let mut conn = self.guest.connect(DEFAULT_CONTROL_PORT)?;
        conn.set_read_timeout(Some(SILENCE_LIMIT))?;
        conn.write_all(control::encode(&Request::Ports).as_bytes())?;
        let mut lines = BufReader::new(conn);
        // Between `reset` and `synced`: the snapshot being received.
        let mut pending: Option<BTreeSet<Published>> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = match lines.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
                // A stopped VM sends nothing, and reconnecting now would
                // break the vsock device (see `Target::set_paused`).
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) && self.guest.link.paused_within(SILENCE_LIMIT) => continue,
                other => other?,
            };
            if n == 0 {
                return Ok(());
            }
            let text = line.strip_suffix(b"\n").ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "over-long line"))?;
            let update = wire::parse(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if !*connected {
                *connected = true;
                self.set_link("connected".into());
            }
            match (update, pending.as_mut()) {
                (Update::Reset, _) => pending = Some(BTreeSet::new()),
                (Update::Add(p), Some(snapshot)) => {
                    snapshot.insert(p);
                }
                (Update::Del(p), Some(snapshot)) => {
                    snapshot.remove(&p);
                }
                (Update::Synced, _) => {
                    let table = pending.take().unwrap_or_default();
                    self.apply(table);
                }
                (Update::Add(p), None) => self.change(|t| {
                    t.insert(p);
                }),
                (Update::Del(p), None) => self.change(|t| {
                    t.remove(&p);
                }),
                (Update::Alive, _) => {}
            }
        }
    }

    fn change(self: &Arc<Self>, f: impl FnOnce(&mut BTreeSet<Published>)) {
        let mut table = lock(&self.state).table.clone();
        f(&mut table);
        self.apply(table);
    }

    fn set_link(&self, link: String) {
        let mut st = lock(&self.state);
        if st.guest_link != link {
            st.guest_link = link;
            self.write_status(&st);
        }
    }

    /// Makes the listeners match `table`.
    fn apply(self: &Arc<Self>, table: BTreeSet<Published>) {
        let mut st = lock(&self.state);
        let (binds, skipped) = plan(&table, self.all_interfaces);
        for (p, why) in &skipped {
            if !st.skipped.iter().any(|(q, _)| q == p) {
                eprintln!("skiff: ports: not forwarding {}: {why}", p.describe());
            }
        }
        st.slots.retain(|key, _| binds.contains_key(key));
        st.open.retain(|&(proto, port), _| binds.keys().any(|&(p, a)| p == proto && a.port() == port));
        for (key, dest) in binds {
            match st.slots.get(&key) {
                // Same address, maybe a new container address (a restart).
                Some(slot) => *lock(slot.dest()) = dest,
                None => {
                    let open = st.open(key);
                    let slot = self.open(key, Arc::new(Mutex::new(dest)), open);
                    report(key, None, &slot);
                    st.slots.insert(key, slot);
                }
            }
        }
        st.table = table;
        st.skipped = skipped;
        self.write_status(&st);
    }

    /// Tries again every listener that could not be bound.
    fn retry_failed(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        let failed: Vec<(Key, Arc<Mutex<Dest>>, String)> = st
            .slots
            .iter()
            .filter_map(|(a, s)| match s {
                Slot::Failed { dest, reason } => Some((*a, Arc::clone(dest), reason.clone())),
                Slot::Listening { .. } => None,
            })
            .collect();
        if failed.is_empty() {
            return;
        }
        for (addr, dest, before) in failed {
            let open = st.open(addr);
            let slot = self.open(addr, dest, open);
            report(addr, Some(&before), &slot);
            st.slots.insert(addr, slot);
        }
        self.write_status(&st);
    }

    /// Binds `addr` and starts serving it, at most the port's limit at once
    /// among `open`, or records why it cannot.
    fn open(self: &Arc<Self>, (proto, addr): Key, dest: Arc<Mutex<Dest>>, open: Arc<AtomicUsize>) -> Slot {
        let (to, guest, limits) = (Arc::clone(&dest), self.guest.clone(), self.limits);
        let bound = match proto {
            Proto::Tcp => TcpListener::bind(addr).and_then(|l| {
                let theirs = l.try_clone()?;
                threads::spawn("tcp port", move || accept(theirs, to, guest, open, limits))?;
                Ok(Listener::Tcp(l))
            }),
            Proto::Udp => UdpSocket::bind(addr).and_then(|u| {
                let closed = Arc::new(AtomicBool::new(false));
                let unpublished = Arc::clone(&closed);
                threads::spawn("udp port", move || udp::serve(u, to, guest, unpublished, open, limits.connections))?;
                Ok(Listener::Udp(closed))
            }),
        };
        match bound {
            Ok(listener) => Slot::Listening { dest, listener },
            Err(e) => Slot::Failed { dest, reason: e.to_string() },
        }
    }

    /// Writes the listing `skiff ports` prints (atomically, private).
    /// Called with the state locked (`st`), like [`Ports::close`].
    fn write_status(&self, st: &State) {
        let Some(file) = &self.status_file else { return };
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut text = format!("guest port table: {}\n", if st.guest_link.is_empty() { "connecting" } else { &st.guest_link });
        for ((proto, addr), slot) in &st.slots {
            let (ip, port) = *lock(slot.dest());
            let state = match slot {
                Slot::Listening { .. } => "listening".to_string(),
                Slot::Failed { reason, .. } => format!("failed: {reason} (retrying every {}s)", RETRY_EVERY.as_secs()),
            };
            text.push_str(&format!("{} {addr} -> {} {state}\n", proto.as_str(), SocketAddr::new(ip, port)));
        }
        for (p, why) in &st.skipped {
            text.push_str(&format!("{} skipped: {why}\n", p.describe()));
        }
        if let Err(e) = state_file::write(file, text.as_bytes()) {
            eprintln!("skiff: ports: cannot write {}: {e}", file.display());
        }
    }
}

/// Says on stderr when a listener fails, or listens after failing; a
/// retry that fails the same way again is not repeated.
fn report((proto, addr): Key, failed_before: Option<&str>, slot: &Slot) {
    let proto = proto.as_str();
    match (slot, failed_before) {
        (Slot::Failed { reason, .. }, before) if before != Some(reason.as_str()) => {
            eprintln!("skiff: ports: cannot listen on {proto} {addr}: {reason}; retrying every {}s", RETRY_EVERY.as_secs());
        }
        (Slot::Listening { .. }, Some(_)) => eprintln!("skiff: ports: now listening on {proto} {addr}"),
        _ => {}
    }
}

/// Accepts until the listener is shut down; one relay thread per
/// connection, while the port has a place among `open`. A connection past
/// the limit is closed at once, never waited on: the loop keeps accepting.
fn accept(listener: TcpListener, dest: Arc<Mutex<Dest>>, guest: Target, open: Arc<AtomicUsize>, limits: Limits) {
    let mut told_full = false;
    for client in listener.incoming() {
        let client = match client {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => return, // shut down: unpublished
            Err(e) => {
                eprintln!("skiff: ports: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(place) = Place::take(&open, limits.connections) else {
            if !told_full {
                let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                eprintln!("skiff: ports: tcp {at}: {} connections open; closing new ones until some end (--port-connections)", limits.connections);
                told_full = true;
            }
            drop(client);
            continue;
        };
        told_full = false;
        let (ip, port) = *lock(&dest);
        let guest = guest.clone();
        let started = threads::spawn("port connection", move || {
            let _place = place;
            if let Err(e) = forward(client, &guest, ip, port, limits.idle) {
                // An idle connection's end (TimedOut) is the limit at work, not a fault.
                if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut) {
                    eprintln!("skiff: ports: {}: {e}", SocketAddr::new(ip, port));
                }
            }
        });
        if let Err(e) = started {
            eprintln!("skiff: ports: {}: {e}", SocketAddr::new(ip, port));
        }
    }
}

fn forward(client: TcpStream, guest: &Target, ip: IpAddr, port: u16, idle: Option<Duration>) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let conn = open_forward(guest, Proto::Tcp, ip, port)?;
    match idle {
        Some(limit) => relay::relay_idle(client, conn, guest.needs_framing(), limit),
        None => relay::relay(client, conn, guest.needs_framing()),
    }
}

/// `skiff ports`: prints the listing a running `skiff run` keeps.
pub fn list(status_file: &std::path::Path) -> io::Result<()> {
    let text = state_file::read(status_file, MAX_LISTING)
        .map_err(|e| io::Error::other(format!("no port listing at {} ({e}); is a VM running?", status_file.display())))?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn entry(host_ip: Option<&str>, host_port: u16, target: &str) -> Published {
        Published {
            proto: Proto::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port,
            target_ip: target.parse().unwrap(),
            target_port: 80,
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn loopback_by_default() {
        assert_eq!(bind_addrs(&entry(None, 8080, "10.88.0.5"), false), Ok(addrs(&["127.0.0.1:8080", "[::1]:8080"])));
        assert_eq!(bind_addrs(&entry(Some("127.0.0.2"), 81, "10.88.0.5"), false), Ok(addrs(&["127.0.0.2:81"])));
        assert_eq!(bind_addrs(&entry(Some("::1"), 82, "10.88.0.5"), false), Ok(addrs(&["[::1]:82"])));
        let lan = entry(Some("192.168.1.5"), 83, "10.88.0.5");
        assert_eq!(bind_addrs(&lan, false), Err(Skip::NotLoopback("192.168.1.5".parse().unwrap())));
        let udp = Published { proto: Proto::Udp, ..entry(None, 53, "10.88.0.5") };
        assert_eq!(bind_addrs(&udp, false), Ok(addrs(&["127.0.0.1:53", "[::1]:53"])));
    }

    #[test]
    fn all_interfaces_only_when_asked() {
        assert_eq!(bind_addrs(&entry(None, 8080, "10.88.0.5"), true), Ok(addrs(&["[::]:8080"])));
        assert_eq!(bind_addrs(&entry(Some("192.168.1.5"), 83, "10.88.0.5"), true), Ok(addrs(&["192.168.1.5:83"])));
    }

    #[test]
    fn plan_keeps_the_first_of_clashing_entries() {
        let table: BTreeSet<_> =
            [entry(None, 8080, "10.88.0.5"), entry(None, 8080, "10.88.0.6"), entry(Some("10.0.0.1"), 9, "10.88.0.7")].into();
        let (binds, skipped) = plan(&table, false);
        assert_eq!(binds.len(), 2);
        assert!(binds.values().all(|d| d.0.to_string() == "10.88.0.5"));
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn tcp_and_udp_share_a_port_number() {
        let udp = Published { proto: Proto::Udp, target_port: 53, ..entry(None, 8080, "10.88.0.6") };
        let table: BTreeSet<_> = [entry(None, 8080, "10.88.0.5"), udp].into();
        let (binds, skipped) = plan(&table, false);
        assert!(skipped.is_empty());
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(binds[&(Proto::Tcp, v4)], ("10.88.0.5".parse().unwrap(), 80));
        assert_eq!(binds[&(Proto::Udp, v4)], ("10.88.0.6".parse().unwrap(), 53));
    }

    #[test]
    fn listeners_follow_the_table_and_report_failures() {
        // A port held by someone else, and a free one.
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("skiff-ports-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let status = dir.join("ports");
        let ports = Arc::new(Ports {
            guest: Target::new(crate::guest::Addr::Unix(dir.join("nowhere.sock"))),
            all_interfaces: false,
            limits: Limits::default(),
            status_file: Some(status.clone()),
            closed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let table: BTreeSet<_> =
            [entry(Some("127.0.0.1"), busy, "10.88.0.5"), entry(Some("127.0.0.1"), free, "10.88.0.6")].into();
        ports.apply(table);
        let listing = fs::read_to_string(&status).unwrap();
        assert!(listing.contains(&format!("tcp 127.0.0.1:{busy} -> 10.88.0.5:80 failed: ")), "{listing}");
        assert!(listing.contains(&format!("tcp 127.0.0.1:{free} -> 10.88.0.6:80 listening")), "{listing}");
        assert!(TcpStream::connect(("127.0.0.1", free)).is_ok());
        // Freed and retried: now it listens.
        drop(held);
        let listening = format!("tcp 127.0.0.1:{busy} -> 10.88.0.5:80 listening");
        let rebound = (0..40).any(|_| {
            ports.retry_failed();
            thread::sleep(Duration::from_millis(50));
            fs::read_to_string(&status).unwrap().contains(&listening)
        });
        assert!(rebound, "{}", fs::read_to_string(&status).unwrap());
        // A UDP port beside them: bound, listed, and freed when unpublished.
        let udp_port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let udp = Published { proto: Proto::Udp, ..entry(Some("127.0.0.1"), udp_port, "10.88.0.7") };
        ports.apply([entry(Some("127.0.0.1"), busy, "10.88.0.5"), entry(Some("127.0.0.1"), free, "10.88.0.6"), udp].into());
        let listing = fs::read_to_string(&status).unwrap();
        assert!(listing.contains(&format!("udp 127.0.0.1:{udp_port} -> 10.88.0.7:80 listening")), "{listing}");
        assert!(UdpSocket::bind(("127.0.0.1", udp_port)).is_err(), "the UDP port is held");
        // Unpublished: the ports close.
        ports.apply(BTreeSet::new());
        thread::sleep(Duration::from_millis(100));
        assert!(TcpStream::connect(("127.0.0.1", free)).is_err());
        assert!(TcpStream::connect(("127.0.0.1", busy)).is_err());
        let freed = (0..40).any(|_| {
            thread::sleep(Duration::from_millis(50));
            UdpSocket::bind(("127.0.0.1", udp_port)).is_ok()
        });
        assert!(freed, "the UDP port is freed once unpublished");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The DHCPv4 client as a state machine without I/O (RFC 2131 §4.4): it is
//! told the time and the packets that arrived, and answers with packets to
//! send and leases to apply or drop. `client.rs` does the socket work.
//! Time is a `Duration` on a monotonic clock chosen by the caller.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::dhcp_packet::{self as packet, Kind, Reply, Request};

/// An address lease and the settings that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub server: Ipv4Addr,
    /// Lease length; `None` is an infinite lease.
    pub length: Option<Duration>,
    pub t1: Duration,
    pub t2: Duration,
    /// When the request that got this lease was sent (timers start there).
    pub acquired: Duration,
}

impl Lease {
    /// When the lease ends, if it does.
    pub fn expiry(&self) -> Option<Duration> {
        self.length.map(|l| self.acquired + l)
    }
}

/// Shortest lease accepted, so a hostile server cannot make us spin.
const MIN_LEASE: Duration = Duration::from_secs(10);
/// Lease length assumed when an ACK lacks option 51.
const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// Requests sent for one offer before starting over.
const REQUEST_TRIES: u32 = 4;

/// Builds a lease from an ACK; `None` if it lacks an address or server.
pub fn lease_from(r: &Reply, acquired: Duration) -> Option<Lease> {
    let address = r.yiaddr;
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback() {
        return None;
    }
    let server = r.server?;
    let prefix = r.subnet.and_then(packet::prefix_len).filter(|p| (1..=32).contains(p)).unwrap_or(classful(address));
    let length = match r.lease_secs {
        Some(u32::MAX) => None,
        Some(s) => Some(Duration::from_secs(s.into()).max(MIN_LEASE)),
        None => Some(DEFAULT_LEASE),
    };
    let (t1, t2) = match length {
        None => (Duration::MAX, Duration::MAX),
        Some(l) => {
            let (d1, d2) = (l / 2, l * 7 / 8);
            let t1 = r.t1_secs.map(|s| Duration::from_secs(s.into()));
            let t2 = r.t2_secs.map(|s| Duration::from_secs(s.into()));
            match (t1, t2) {
                (Some(a), Some(b)) if a < b && b < l => (a, b),
                (Some(a), None) if a < d2 => (a, d2),
                (None, Some(b)) if d1 < b && b < l => (d1, b),
                _ => (d1, d2),
            }
        }
    };
    let router = r.routers.iter().copied().find(|g| !g.is_unspecified() && !g.is_broadcast() && *g != address);
    Some(Lease {
        address,
        prefix,
        router,
        dns: r.dns.iter().copied().filter(|a| !a.is_unspecified() && !a.is_broadcast()).take(3).collect(),
        domain: r.domain.clone(),
        search: r.search.clone(),
        hostname: r.hostname.clone(),
        mtu: r.mtu.filter(|m| *m >= 576),
        server,
        length,
        t1,
        t2,
        acquired,
    })
}

/// Prefix of the address's historical class, for servers that send no mask.
fn classful(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Broadcast,
    Server(Ipv4Addr),
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Vec<u8>, Dest),
    /// Apply a new or renewed lease.
    Configure(Lease),
    /// Stop using this lease's address (expired, refused or replaced).
    Deconfigure(Lease),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Selecting,
    Requesting { address: Ipv4Addr, server: Ipv4Addr },
    Bound,
    Renewing,
    Rebinding,
    /// Released at shutdown: nothing more happens.
    Stopped,
}

pub struct Client {
    mac: [u8; 6],
    rng: u64,
    state: State,
    xid: u32,
    attempt: u32,
    /// When the current exchange began (the `secs` field counts from it).
    began: Duration,
    /// When the last request was sent (a lease's timers start there).
    requested_at: Duration,
    deadline: Option<Duration>,
    lease: Option<Lease>,
}

impl Client {
    /// A client for the link with hardware address `mac`; `seed` feeds the
    /// transaction ids and retransmission jitter.
    pub fn new(mac: [u8; 6], seed: u64) -> Self {
        Self {
            mac,
            rng: seed | 1,
            state: State::Init,
            xid: 0,
            attempt: 0,
            began: Duration::ZERO,
            requested_at: Duration::ZERO,
            deadline: Some(Duration::ZERO),
            lease: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When `on_timer` wants to run next; `None` means never.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    #[cfg(test)]
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    fn random(&mut self) -> u64 {
        super::xorshift64(&mut self.rng)
    }

    /// Delay before retransmission number `attempt` (1 = after the first
    /// send): 2 s doubling to 64 s, plus up to 1 s of jitter (RFC 2131 §4.1).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = Duration::from_secs(2u64 << attempt.saturating_sub(1).min(5));
        base + Duration::from_millis(self.random() % 1000)
    }

    fn request(&self, now: Duration) -> Request {
        let secs = now.saturating_sub(self.began).as_secs().min(u16::MAX.into()) as u16;
        Request { xid: self.xid, mac: self.mac, secs, ..Request::default() }
    }

    fn new_exchange(&mut self, now: Duration) {
        self.xid = self.random() as u32;
        self.attempt = 0;
        self.began = now;
    }

    fn discover(&mut self, now: Duration) -> Vec<Action> {
        if self.state != State::Selecting {
            self.state = State::Selecting;
            self.new_exchange(now);
        }
        self.attempt += 1;
        self.deadline = Some(now + self.backoff(self.attempt));
        vec![Action::Send(packet::encode(Kind::Discover, &self.request(now)), Dest::Broadcast)]
    }

    fn send_request(&mut self, now: Duration) -> Vec<Action> {
        self.attempt += 1;
        self.requested_at = now;
        let mut req = self.request(now);
        let (dest, lease_end) = match (self.state, &self.lease) {
            (State::Requesting { address, server }, _) => {
                req.requested = Some(address);
                req.server = Some(server);
                self.deadline = Some(now + self.backoff(self.attempt));
                (Dest::Broadcast, None)
            }
            (State::Renewing, Some(l)) => {
                req.ciaddr = Some(l.address);
                (Dest::Server(l.server), Some(l.acquired + l.t2))
            }
            (_, Some(l)) => {
                req.ciaddr = Some(l.address);
                (Dest::Broadcast, l.expiry())
            }
            _ => return self.restart(now),
        };
        if let Some(end) = lease_end {
            // RFC 2131 §4.4.5: wait half the time left, at least 60 s.
            let wait = (end.saturating_sub(now) / 2).max(Duration::from_secs(60));
            self.deadline = Some((now + wait).min(end));
        }
        vec![Action::Send(packet::encode(Kind::Request, &req), dest)]
    }

    /// Back to INIT: drop any lease and discover again at once.
    fn restart(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(old) = self.lease.take() {
            out.push(Action::Deconfigure(old));
        }
        self.state = State::Init;
        out.extend(self.discover(now));
        out
    }

    /// Runs the timers; call when `deadline()` has passed.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return Vec::new(),
        }
        let (t2, expiry) = match &self.lease {
            Some(l) => (Some(l.acquired + l.t2), l.expiry()),
            None => (None, None),
        };
        match self.state {
            State::Init | State::Selecting => self.discover(now),
            State::Requesting { .. } if self.attempt >= REQUEST_TRIES => {
                self.state = State::Init;
                self.discover(now)
            }
            State::Requesting { .. } => self.send_request(now),
            _ if expiry.is_some_and(|e| now >= e) => self.restart(now),
            State::Bound => {
                self.state = State::Renewing;
                self.new_exchange(now);
                self.send_request(now)
            }
            State::Renewing if t2.is_some_and(|t| now >= t) => {
                self.state = State::Rebinding;
                self.new_exchange(now);
                self.send_request(now)
            }
            State::Renewing | State::Rebinding => self.send_request(now),
            State::Stopped => {
                self.deadline = None;
                Vec::new()
            }
        }
    }

    /// Handles a datagram that arrived on the DHCP client port.
    pub fn on_packet(&mut self, now: Duration, bytes: &[u8]) -> Vec<Action> {
        let Some(reply) = packet::decode(bytes) else { return Vec::new() };
        if reply.xid != self.xid || reply.mac != self.mac {
            return Vec::new();
        }
        match (self.state, reply.kind) {
            (State::Selecting, Some(Kind::Offer)) => {
                let Some(server) = reply.server else { return Vec::new() };
                if lease_from(&reply, now).is_none() {
                    return Vec::new();
                }
                self.state = State::Requesting { address: reply.yiaddr, server };
                self.attempt = 0;
                self.send_request(now)
            }
            (State::Requesting { address, .. }, Some(Kind::Ack)) if reply.yiaddr == address => self.bind(&reply),
            (State::Renewing | State::Rebinding, Some(Kind::Ack)) => self.bind(&reply),
            (State::Requesting { .. } | State::Renewing | State::Rebinding, Some(Kind::Nak)) => self.restart(now),
            _ => Vec::new(),
        }
    }

    fn bind(&mut self, reply: &Reply) -> Vec<Action> {
        let Some(lease) = lease_from(reply, self.requested_at) else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(old) = self.lease.take() {
            if old.address != lease.address || old.prefix != lease.prefix {
                out.push(Action::Deconfigure(old));
            }
        }
        self.state = State::Bound;
        self.deadline = lease.length.map(|_| lease.acquired + lease.t1);
        self.lease = Some(lease.clone());
        out.push(Action::Configure(lease));
        out
    }

    /// Gives the lease back (shutdown): the RELEASE packet and its server.
    /// The client stops for good.
    pub fn release(&mut self) -> Option<(Vec<u8>, Ipv4Addr, Lease)> {
        self.state = State::Stopped;
        self.deadline = None;
        let lease = self.lease.take()?;
        self.xid = self.random() as u32;
        let req = Request {
            xid: self.xid,
            mac: self.mac,
            ciaddr: Some(lease.address),
            server: Some(lease.server),
            ..Request::default()
        };
        Some((packet::encode(Kind::Release, &req), lease.server, lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp_packet::tests::{options_of, reply, MAC};

    const SECS: fn(u64) -> Duration = Duration::from_secs;
    const SERVER: [u8; 4] = [10, 0, 2, 2];
    const ADDR: [u8; 4] = [10, 0, 2, 15];

    fn sent(actions: &[Action]) -> (&Vec<u8>, Dest) {
        match actions.last() {
            Some(Action::Send(p, d)) => (p, *d),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn xid_of(p: &[u8]) -> u32 {
        u32::from_be_bytes(p[4..8].try_into().unwrap())
    }

    fn kind_of(p: &[u8]) -> u8 {
        options_of(p).iter().find(|(c, _)| *c == 53).unwrap().1[0]
    }

    fn ack(xid: u32, lease: u32) -> Vec<u8> {
        let lease = lease.to_be_bytes();
        reply(5, xid, ADDR, &[(54, &SERVER), (1, &[255, 255, 255, 0]), (3, &SERVER), (6, &[10, 0, 2, 3]), (51, &lease)])
    }

    /// Runs DISCOVER/OFFER/REQUEST/ACK at t=0 and returns the client.
    fn bound(lease_secs: u32) -> Client {
        let mut c = Client::new(MAC, 42);
        let a = c.on_timer(Duration::ZERO);
        let (p, d) = sent(&a);
        assert_eq!((kind_of(p), d), (1, Dest::Broadcast));
        let xid = xid_of(p);
        let offer = reply(2, xid, ADDR, &[(54, &SERVER), (51, &lease_secs.to_be_bytes())]);
        let a = c.on_packet(Duration::ZERO, &offer);
        let (p, d) = sent(&a);
        assert_eq!((kind_of(p), d, xid_of(p)), (3, Dest::Broadcast, xid));
        assert!(options_of(p).contains(&(50, ADDR.to_vec())));
        let a = c.on_packet(Duration::ZERO, &ack(xid, lease_secs));
        assert!(matches!(&a[..], [Action::Configure(l)] if l.address == Ipv4Addr::from(ADDR)), "{a:?}");
        assert_eq!(c.state(), State::Bound);
        c
    }

    #[test]
    fn full_exchange_yields_a_lease() {
        let c = bound(86400);
        let l = c.lease().unwrap();
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::from(SERVER)));
        assert_eq!(l.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!((l.t1, l.t2), (SECS(43200), SECS(75600)));
        assert_eq!(c.deadline(), Some(SECS(43200)));
    }

    #[test]
    fn discover_backs_off_up_to_a_cap() {
        let mut c = Client::new(MAC, 7);
        let mut now = Duration::ZERO;
        let mut gaps = Vec::new();
        for _ in 0..9 {
            assert_eq!(kind_of(sent(&c.on_timer(now)).0), 1);
            let next = c.deadline().unwrap();
            gaps.push((next - now).as_secs());
            assert!(c.on_timer(next - Duration::from_millis(1)).is_empty(), "nothing before the deadline");
            now = next;
        }
        assert_eq!(gaps, vec![2, 4, 8, 16, 32, 64, 64, 64, 64]);
    }

    #[test]
    fn replies_for_others_are_ignored() {
        let mut c = Client::new(MAC, 1);
        let xid = xid_of(sent(&c.on_timer(Duration::ZERO)).0);
        assert!(c.on_packet(Duration::ZERO, &reply(2, xid ^ 1, ADDR, &[(54, &SERVER)])).is_empty());
        assert!(c.on_packet(Duration::ZERO, &reply(5, xid, ADDR, &[(54, &SERVER)])).is_empty(), "ACK without request");
        assert!(c.on_packet(Duration::ZERO, &reply(2, xid, ADDR, &[])).is_empty(), "offer without server id");
        assert!(c.on_packet(Duration::ZERO, &[0; 10]).is_empty());
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn unanswered_requests_start_over() {
        let mut c = Client::new(MAC, 3);
        let xid = xid_of(sent(&c.on_timer(Duration::ZERO)).0);
        c.on_packet(Duration::ZERO, &reply(2, xid, ADDR, &[(54, &SERVER)]));
        for _ in 1..REQUEST_TRIES {
            let at = c.deadline().unwrap();
            assert_eq!(kind_of(sent(&c.on_timer(at)).0), 3);
        }
        let at = c.deadline().unwrap();
        assert_eq!(kind_of(sent(&c.on_timer(at)).0), 1, "back to DISCOVER");
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn renews_at_t1_rebinds_at_t2_and_drops_at_expiry() {
        let mut c = bound(1000);
        // T1 = 500 s: unicast REQUEST with our address, no requested-IP option.
        let a = c.on_timer(SECS(500));
        let (p, d) = sent(&a);
        assert_eq!((kind_of(p), d), (3, Dest::Server(Ipv4Addr::from(SERVER))));
        assert_eq!(&p[12..16], &ADDR);
        assert_eq!(c.state(), State::Renewing);
        // Retransmit after half the time to T2 (875 s), at least 60 s.
        assert_eq!(c.deadline(), Some(SECS(500) + (SECS(875) - SECS(500)) / 2));
        let mut now = c.deadline().unwrap();
        while c.state() == State::Renewing {
            c.on_timer(now);
            now = c.deadline().unwrap();
        }
        assert_eq!(c.state(), State::Rebinding);
        assert!(now <= SECS(1000));
        loop {
            let a = c.on_timer(now);
            if let Some(Action::Deconfigure(l)) = a.first() {
                assert_eq!(l.address, Ipv4Addr::from(ADDR));
                assert_eq!(now, SECS(1000), "dropped exactly at expiry");
                assert_eq!(kind_of(sent(&a).0), 1, "and discovering again");
                break;
            }
            assert_eq!(sent(&a).1, Dest::Broadcast, "rebinding broadcasts");
            now = c.deadline().unwrap();
            assert!(now <= SECS(1000));
        }
        assert!(c.lease().is_none());
    }

    #[test]
    fn a_renewal_ack_extends_the_lease() {
        let mut c = bound(1000);
        let xid = xid_of(sent(&c.on_timer(SECS(500))).0);
        let a = c.on_packet(SECS(501), &ack(xid, 2000));
        assert!(matches!(&a[..], [Action::Configure(l)] if l.length == Some(SECS(2000)) && l.acquired == SECS(500)));
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.deadline(), Some(SECS(1500)));
    }

    #[test]
    fn a_nak_while_renewing_drops_the_address() {
        let mut c = bound(1000);
        let xid = xid_of(sent(&c.on_timer(SECS(500))).0);
        let a = c.on_packet(SECS(501), &reply(6, xid, [0; 4], &[(54, &SERVER)]));
        assert!(matches!(a.first(), Some(Action::Deconfigure(_))), "{a:?}");
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn release_gives_the_lease_back_and_stops() {
        let mut c = bound(1000);
        let (p, server, lease) = c.release().unwrap();
        assert_eq!(kind_of(&p), 7);
        assert_eq!(&p[12..16], &ADDR);
        assert_eq!(server, Ipv4Addr::from(SERVER));
        assert_eq!(lease.address, Ipv4Addr::from(ADDR));
        assert_eq!(c.deadline(), None);
        assert!(c.release().is_none());
        assert!(Client::new(MAC, 1).release().is_none(), "nothing to release without a lease");
    }

    #[test]
    fn lease_values_are_sanitised() {
        let base = |opts: &[(u8, &[u8])]| {
            let mut all: Vec<(u8, &[u8])> = vec![(54, &SERVER)];
            all.extend_from_slice(opts);
            lease_from(&packet::decode(&reply(5, 1, ADDR, &all)).unwrap(), Duration::ZERO).unwrap()
        };
        let l = base(&[(51, &0u32.to_be_bytes())]);
        assert_eq!(l.length, Some(MIN_LEASE));
        let l = base(&[(51, &u32::MAX.to_be_bytes())]);
        assert_eq!((l.length, l.expiry()), (None, None));
        let l = base(&[(51, &100u32.to_be_bytes()), (58, &90u32.to_be_bytes()), (59, &80u32.to_be_bytes())]);
        assert_eq!((l.t1, l.t2), (SECS(50), SECS(87) + Duration::from_millis(500)), "T1 > T2 gets defaults");
        let l = base(&[(1, &[255, 0, 255, 0]), (26, &[0, 100])]);
        assert_eq!((l.prefix, l.mtu), (8, None), "bad mask: classful; tiny MTU ignored");
        assert_eq!(l.length, Some(DEFAULT_LEASE));
        let none = packet::decode(&reply(5, 1, [0, 0, 0, 0], &[(54, &SERVER)])).unwrap();
        assert!(lease_from(&none, Duration::ZERO).is_none());
    }
}

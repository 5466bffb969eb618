//! DHCPv4 messages (RFC 2131/2132): encode the client's requests, decode the
//! server's replies. Pure code: bytes in, values out. Replies come from the
//! network, so decoding checks every length and never panics.

use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header up to and including the magic cookie.
const HEADER: usize = 240;
/// Some servers drop requests shorter than a BOOTP message (300 bytes).
const MIN_SIZE: usize = 300;
/// Ask the server to broadcast replies: before it has an address the
/// kernel drops unicast IP sent to it.
const FLAG_BROADCAST: u16 = 0x8000;

// Option codes.
const OPT_PAD: u8 = 0;
const OPT_SUBNET: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_MAX_SIZE: u8 = 57;
const OPT_T1: u8 = 58;
const OPT_T2: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_SEARCH: u8 = 119;
const OPT_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::Discover,
            2 => Kind::Offer,
            3 => Kind::Request,
            4 => Kind::Decline,
            5 => Kind::Ack,
            6 => Kind::Nak,
            7 => Kind::Release,
            _ => return None,
        })
    }
}

/// What a client message carries besides its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub xid: u32,
    pub mac: [u8; 6],
    /// Seconds since the client began trying (the `secs` field).
    pub secs: u16,
    /// Our current address (renewing, rebinding, release), else 0.0.0.0.
    pub ciaddr: Option<Ipv4Addr>,
    /// Option 50: the address we ask for (selecting an offer).
    pub requested: Option<Ipv4Addr>,
    /// Option 54: the server whose offer we take (selecting, release).
    pub server: Option<Ipv4Addr>,
}

/// Encodes a client message of `kind` (Discover, Request or Release).
pub fn encode(kind: Kind, r: &Request) -> Vec<u8> {
    let mut b = vec![0u8; HEADER];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // htype Ethernet
    b[2] = 6; // hlen
    b[4..8].copy_from_slice(&r.xid.to_be_bytes());
    b[8..10].copy_from_slice(&r.secs.to_be_bytes());
    // A client that has an address can take unicast replies.
    let flags = if r.ciaddr.is_some() { 0 } else { FLAG_BROADCAST };
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b[12..16].copy_from_slice(&r.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
    b[28..34].copy_from_slice(&r.mac);
    b[236..240].copy_from_slice(&MAGIC);
    let mut opt = |code: u8, data: &[u8]| {
        b.push(code);
        b.push(data.len() as u8);
        b.extend_from_slice(data);
    };
    opt(OPT_MESSAGE_TYPE, &[kind as u8]);
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&r.mac);
    opt(OPT_CLIENT_ID, &client_id);
    if let Some(a) = r.requested {
        opt(OPT_REQUESTED_IP, &a.octets());
    }
    if let Some(a) = r.server {
        opt(OPT_SERVER_ID, &a.octets());
    }
    if kind != Kind::Release {
        opt(OPT_MAX_SIZE, &1500u16.to_be_bytes());
        opt(OPT_PARAMS, &[
            OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_MTU, OPT_LEASE_TIME, OPT_T1, OPT_T2,
            OPT_SEARCH,
        ]);
    }
    b.push(OPT_END);
    if b.len() < MIN_SIZE {
        b.resize(MIN_SIZE, OPT_PAD);
    }
    b
}

/// A server reply, with the options a client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: Option<Kind>,
    pub xid: u32,
    pub mac: [u8; 6],
    /// The address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub subnet: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub mtu: Option<u16>,
    pub lease_secs: Option<u32>,
    pub t1_secs: Option<u32>,
    pub t2_secs: Option<u32>,
}

/// Decodes a reply; `None` for anything that is not a well-formed BOOTREPLY
/// for Ethernet. Unknown or malformed options are skipped.
pub fn decode(b: &[u8]) -> Option<Reply> {
    if b.len() < HEADER || b[0] != 2 || b[1] != 1 || b[2] != 6 || b[236..240] != MAGIC {
        return None;
    }
    let mut raw = RawOptions::default();
    let overload = raw.read(&b[HEADER..]);
    // Option 52 moves more options into the `file` and `sname` fields.
    if overload & 1 != 0 {
        raw.read(&b[108..236]);
    }
    if overload & 2 != 0 {
        raw.read(&b[44..108]);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[28..34]);
    let secs = |code| raw.get(code).and_then(|d: &[u8]| Some(u32::from_be_bytes(d.try_into().ok()?)));
    Some(Reply {
        kind: raw.get(OPT_MESSAGE_TYPE).and_then(|d| Kind::from_u8(*d.first()?)),
        xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        mac,
        yiaddr: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        server: raw.get(OPT_SERVER_ID).and_then(one_addr),
        subnet: raw.get(OPT_SUBNET).and_then(one_addr),
        routers: raw.get(OPT_ROUTER).map(addrs).unwrap_or_default(),
        dns: raw.get(OPT_DNS).map(addrs).unwrap_or_default(),
        hostname: raw.get(OPT_HOSTNAME).and_then(text),
        domain: raw.get(OPT_DOMAIN).and_then(text),
        search: raw.get(OPT_SEARCH).map(domain_list).unwrap_or_default(),
        mtu: raw.get(OPT_MTU).and_then(|d| Some(u16::from_be_bytes(d.try_into().ok()?))),
        lease_secs: secs(OPT_LEASE_TIME),
        t1_secs: secs(OPT_T1),
        t2_secs: secs(OPT_T2),
    })
}

/// Options gathered from one or more areas; a code seen twice has its data
/// concatenated (RFC 3396).
#[derive(Default)]
struct RawOptions {
    items: Vec<(u8, Vec<u8>)>,
}

impl RawOptions {
    /// Reads one option area; returns the overload flags (option 52) found.
    fn read(&mut self, mut area: &[u8]) -> u8 {
        let mut overload = 0;
        while let Some((&code, rest)) = area.split_first() {
            match code {
                OPT_PAD => area = rest,
                OPT_END => break,
                _ => {
                    let Some((&len, rest)) = rest.split_first() else { break };
                    let Some(data) = rest.get(..len as usize) else { break };
                    if code == OPT_OVERLOAD && len == 1 {
                        overload = data[0];
                    }
                    match self.items.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, d)) => d.extend_from_slice(data),
                        None => self.items.push((code, data.to_vec())),
                    }
                    area = &rest[len as usize..];
                }
            }
        }
        overload
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        self.items.iter().find(|(c, _)| *c == code).map(|(_, d)| d.as_slice())
    }
}

fn one_addr(d: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = d.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn addrs(d: &[u8]) -> Vec<Ipv4Addr> {
    d.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect()
}

/// A printable ASCII string option, trailing NULs dropped (some servers add one).
fn text(d: &[u8]) -> Option<String> {
    let d = &d[..d.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1)];
    (!d.is_empty() && d.iter().all(|c| c.is_ascii_graphic())).then(|| String::from_utf8_lossy(d).into_owned())
}

/// Option 119: DNS names in wire format, with compression pointers into the
/// option data itself (RFC 3397). Stops at the first malformed name.
fn domain_list(d: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 0;
    while pos < d.len() && names.len() < 16 {
        match read_name(d, pos) {
            Some((name, next)) => {
                if !name.is_empty() {
                    names.push(name);
                }
                pos = next;
            }
            None => break,
        }
    }
    names
}

/// One name at `pos`; returns it and the position after it in the stream.
fn read_name(d: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut resume = None;
    // A pointer must lead before the start of the segment being read, so
    // segments start ever earlier and every name ends.
    let mut segment = pos;
    loop {
        let len = *d.get(pos)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xC0 == 0xC0 {
            let target = ((len & 0x3F) << 8) | *d.get(pos + 1)? as usize;
            if target >= segment {
                return None;
            }
            resume.get_or_insert(pos + 2);
            pos = target;
            segment = target;
            continue;
        }
        if len > 63 {
            return None;
        }
        let label = d.get(pos + 1..pos + 1 + len)?;
        if !label.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).into_owned());
        if labels.iter().map(|l| l.len() + 1).sum::<usize>() > 255 {
            return None;
        }
        pos += 1 + len;
    }
    Some((labels.join("."), resume.unwrap_or(pos)))
}

/// Prefix length of a netmask; `None` if its ones are not contiguous.
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// A server reply built by hand, the way a DHCP server lays it out.
    pub fn reply(kind: u8, xid: u32, yiaddr: [u8; 4], options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b[16..20].copy_from_slice(&yiaddr);
        b[28..34].copy_from_slice(&MAC);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind]);
        for (code, data) in options {
            b.push(*code);
            b.push(data.len() as u8);
            b.extend_from_slice(data);
        }
        b.push(OPT_END);
        b
    }

    /// Options of a client message, as (code, data) pairs.
    pub fn options_of(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut raw = RawOptions::default();
        raw.read(&b[HEADER..]);
        raw.items
    }

    #[test]
    fn discover_layout() {
        let req = Request { xid: 0xdeadbeef, mac: MAC, secs: 3, ..Request::default() };
        let b = encode(Kind::Discover, &req);
        assert_eq!(b.len(), MIN_SIZE);
        assert_eq!(&b[..4], &[1, 1, 6, 0]);
        assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[8..10], &[0, 3]);
        assert_eq!(&b[10..12], &[0x80, 0], "broadcast flag while unconfigured");
        assert_eq!(&b[28..34], &MAC);
        assert_eq!(&b[236..240], &MAGIC);
        let opts = options_of(&b);
        assert_eq!(opts[0], (OPT_MESSAGE_TYPE, vec![1]));
        assert_eq!(opts[1], (OPT_CLIENT_ID, vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        let params = &opts.iter().find(|(c, _)| *c == OPT_PARAMS).unwrap().1;
        for code in [OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME, OPT_MTU, OPT_SEARCH] {
            assert!(params.contains(&code), "asks for option {code}");
        }
    }

    #[test]
    fn request_and_release_carry_addresses() {
        let a = Ipv4Addr::new(10, 0, 2, 15);
        let s = Ipv4Addr::new(10, 0, 2, 2);
        let sel = encode(Kind::Request, &Request { xid: 1, mac: MAC, requested: Some(a), server: Some(s), ..Request::default() });
        let opts = options_of(&sel);
        assert!(opts.contains(&(OPT_REQUESTED_IP, a.octets().to_vec())));
        assert!(opts.contains(&(OPT_SERVER_ID, s.octets().to_vec())));
        let renew = encode(Kind::Request, &Request { xid: 2, mac: MAC, ciaddr: Some(a), ..Request::default() });
        assert_eq!(&renew[12..16], &a.octets());
        assert_eq!(&renew[10..12], &[0, 0], "no broadcast flag with an address");
        assert!(!options_of(&renew).iter().any(|(c, _)| *c == OPT_REQUESTED_IP));
        let rel = encode(Kind::Release, &Request { xid: 3, mac: MAC, ciaddr: Some(a), server: Some(s), ..Request::default() });
        assert_eq!(options_of(&rel)[0], (OPT_MESSAGE_TYPE, vec![7]));
        assert!(!options_of(&rel).iter().any(|(c, _)| *c == OPT_PARAMS));
    }

    #[test]
    fn decodes_an_ack_with_every_option() {
        // "example.com" then "lab.example.com" with a pointer to offset 0.
        let search = b"\x07example\x03com\x00\x03lab\xc0\x00";
        let b = reply(5, 42, [10, 0, 2, 15], &[
            (OPT_SERVER_ID, &[10, 0, 2, 2]),
            (OPT_SUBNET, &[255, 255, 255, 0]),
            (OPT_ROUTER, &[10, 0, 2, 2]),
            (OPT_DNS, &[10, 0, 2, 3, 1, 1, 1, 1]),
            (OPT_HOSTNAME, b"guest\0"),
            (OPT_DOMAIN, b"example.com"),
            (OPT_SEARCH, search),
            (OPT_MTU, &[5, 0xdc]),
            (OPT_LEASE_TIME, &86400u32.to_be_bytes()),
            (OPT_T1, &100u32.to_be_bytes()),
            (OPT_T2, &200u32.to_be_bytes()),
        ]);
        let r = decode(&b).unwrap();
        assert_eq!(r.kind, Some(Kind::Ack));
        assert_eq!(r.xid, 42);
        assert_eq!(r.mac, MAC);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.subnet, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(r.dns, vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(r.hostname.as_deref(), Some("guest"));
        assert_eq!(r.domain.as_deref(), Some("example.com"));
        assert_eq!(r.search, vec!["example.com".to_string(), "lab.example.com".to_string()]);
        assert_eq!(r.mtu, Some(1500));
        assert_eq!((r.lease_secs, r.t1_secs, r.t2_secs), (Some(86400), Some(100), Some(200)));
    }

    #[test]
    fn long_options_are_joined_and_overload_is_read() {
        let mut b = reply(2, 1, [10, 0, 0, 5], &[(OPT_DNS, &[8, 8, 8, 8]), (OPT_DNS, &[9, 9, 9, 9]), (OPT_OVERLOAD, &[1])]);
        // Put the router option in the `file` field.
        b[108..114].copy_from_slice(&[OPT_ROUTER, 4, 10, 0, 0, 1]);
        b[114] = OPT_END;
        let r = decode(&b).unwrap();
        assert_eq!(r.dns, vec![Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(9, 9, 9, 9)]);
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    }

    #[test]
    fn rejects_what_is_not_a_reply() {
        let good = reply(5, 1, [1, 2, 3, 4], &[]);
        assert!(decode(&good).is_some());
        assert!(decode(&good[..239]).is_none(), "truncated header");
        let req = encode(Kind::Discover, &Request::default());
        assert!(decode(&req).is_none(), "a BOOTREQUEST");
        let mut bad_cookie = good.clone();
        bad_cookie[236] = 0;
        assert!(decode(&bad_cookie).is_none());
    }

    #[test]
    fn hostile_options_are_skipped() {
        // Truncated option, bad lengths, a pointer loop, unprintable text.
        let b = reply(5, 1, [1, 2, 3, 4], &[
            (OPT_SEARCH, b"\x03abc\xc0\x00"),
            (OPT_SUBNET, &[255, 255]),
            (OPT_HOSTNAME, b"bad\nname"),
            (OPT_MTU, &[1]),
        ]);
        let r = decode(&b).unwrap();
        assert!(r.search.is_empty(), "a name pointing into itself is dropped");
        assert_eq!((r.subnet, r.hostname, r.mtu), (None, None, None));
        let looped = domain_list(b"\x03abc\xc0\x04");
        assert!(looped.is_empty(), "forward pointer / self loop: {looped:?}");
        assert!(domain_list(b"\xc0\x00").is_empty());
        let mut cut = reply(5, 1, [1, 2, 3, 4], &[(OPT_DNS, &[1, 1, 1, 1])]);
        cut.truncate(cut.len() - 3);
        assert!(decode(&cut).is_some());
    }

    #[test]
    fn netmask_prefixes() {
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_len(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 0, 255, 0)), None);
    }

    /// Fuzz-style: deterministic pseudo-random, truncated and mutated
    /// replies must never panic the decoder.
    #[test]
    fn decoder_survives_random_and_mutated_input() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || crate::net::xorshift64(&mut seed);
        let base = reply(5, 7, [10, 0, 2, 15], &[
            (OPT_SEARCH, b"\x07example\x03com\x00\x03lab\xc0\x00"),
            (OPT_DNS, &[10, 0, 2, 3]),
            (OPT_OVERLOAD, &[3]),
            (OPT_HOSTNAME, b"h"),
        ]);
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut b = base.clone();
            match round % 4 {
                0 => b.truncate(next() as usize % (b.len() + 1)),
                1 => {
                    for _ in 0..1 + next() % 8 {
                        let i = HEADER + next() as usize % (b.len() - HEADER);
                        b[i] = next() as u8;
                    }
                }
                2 => {
                    let len = next() as usize % 600;
                    b = (0..len).map(|_| next() as u8).collect();
                    if len >= HEADER {
                        b[..3].copy_from_slice(&[2, 1, 6]);
                        b[236..240].copy_from_slice(&MAGIC);
                    }
                }
                _ => {
                    let i = next() as usize % b.len();
                    b[i] = next() as u8;
                    b.extend((0..next() % 300).map(|_| next() as u8));
                }
            }
            decoded += usize::from(decode(&b).is_some());
            let _ = domain_list(&b[b.len().min(HEADER)..]);
        }
        assert!(decoded > 1000, "mutations should leave many packets decodable ({decoded})");
    }
}

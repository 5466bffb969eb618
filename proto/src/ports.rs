//! Published ports: the lines the guest's control port sends the host
//! (`SKIFF-CONTROL/1 ports`) and the request line that opens one forwarded
//! connection on the guest's forward port (2377).
//!
//! Port table stream, one message per line:
//! - `reset`: a full snapshot follows; forget what you were told before;
//! - `add <proto> <host-ip|*> <host-port> <target-ip> <target-port>`;
//! - `del <same fields>`;
//! - `synced`: the snapshot is complete (drop what it did not name);
//! - `alive`: nothing changed (sent every few seconds, so a dead peer shows).
//!
//! Forward request: `SKIFF-FORWARD/1 tcp <target-ip> <target-port>[ framed]\n`,
//! answered `OK\n` or `ERR <reason>\n`. With `framed`, the host → guest bytes
//! that follow are the [`crate::framing`] preamble and frames (EOF in-band,
//! for hybrid vsock); without it they are plain. The mode is named rather than sniffed so that a
//! protocol where the server speaks first is relayed at once.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// The guest's vsock port for forwarded connections to published ports.
pub const DEFAULT_FORWARD_PORT: u32 = 2377;
/// Longest line either message kind may be.
pub const MAX_LINE: usize = 160;
const FORWARD_MAGIC: &str = "SKIFF-FORWARD/1 ";

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// One published port: where the host listens and where the guest dials.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Published {
    pub proto: Proto,
    /// The host address asked for (`-p ADDR:…`); `None` when not given
    /// (the engine's `0.0.0.0`, `::` or empty all mean "not given").
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// The container's address inside the guest.
    pub target_ip: IpAddr,
    pub target_port: u16,
}

impl Published {
    /// True if a forward request for `proto` `ip`:`port` names this entry's target.
    pub fn targets(&self, proto: Proto, ip: IpAddr, port: u16) -> bool {
        self.proto == proto && self.target_ip == ip && self.target_port == port
    }
}

impl Published {
    /// `tcp *:8080 -> 10.88.0.5:80`, for messages and listings.
    pub fn describe(&self) -> String {
        let host = self.host_ip.map(|ip| std::net::SocketAddr::new(ip, self.host_port).to_string());
        let host = host.unwrap_or_else(|| format!("*:{}", self.host_port));
        format!("{} {host} -> {}", self.proto.as_str(), std::net::SocketAddr::new(self.target_ip, self.target_port))
    }
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "*".into());
        write!(f, "{} {host} {} {} {}", self.proto.as_str(), self.host_port, self.target_ip, self.target_port)
    }
}

/// One line of the port table stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Reset,
    Add(Published),
    Del(Published),
    Synced,
    Alive,
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not UTF-8 or longer than [`MAX_LINE`].
    Malformed,
    /// The first word is not a known message.
    UnknownKind(String),
    /// A field is missing, extra or not a valid value.
    BadField(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => write!(f, "malformed line"),
            Self::UnknownKind(k) => write!(f, "unknown message {k:?}"),
            Self::BadField(s) => write!(f, "bad field: {s}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The line for `u`, with its `\n`.
pub fn encode(u: &Update) -> String {
    match u {
        Update::Reset => "reset\n".into(),
        Update::Add(p) => format!("add {p}\n"),
        Update::Del(p) => format!("del {p}\n"),
        Update::Synced => "synced\n".into(),
        Update::Alive => "alive\n".into(),
    }
}

fn text(line: &[u8]) -> Result<&str, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::Malformed);
    }
    std::str::from_utf8(line).map(|t| t.trim_end_matches('\r')).map_err(|_| ParseError::Malformed)
}

fn field<T: std::str::FromStr>(value: Option<&str>, what: &str) -> Result<T, ParseError> {
    let v = value.ok_or_else(|| ParseError::BadField(format!("{what} missing")))?;
    v.parse().map_err(|_| ParseError::BadField(format!("{what} {v:?}")))
}

fn parse_published(fields: &mut std::str::SplitAsciiWhitespace<'_>) -> Result<Published, ParseError> {
    let proto = fields.next().and_then(Proto::parse).ok_or_else(|| ParseError::BadField("protocol".into()))?;
    let host_ip = match fields.next() {
        Some("*") => None,
        other => Some(field(other, "host address")?),
    };
    let p = Published {
        proto,
        host_ip,
        host_port: field(fields.next(), "host port")?,
        target_ip: field(fields.next(), "target address")?,
        target_port: field(fields.next(), "target port")?,
    };
    if fields.next().is_some() {
        return Err(ParseError::BadField("extra fields".into()));
    }
    Ok(p)
}

/// Parses one port table line (without its `\n`).
pub fn parse(line: &[u8]) -> Result<Update, ParseError> {
    let text = text(line)?;
    let mut fields = text.split_ascii_whitespace();
    let kind = fields.next().unwrap_or("");
    let simple = |u: Update, fields: &mut std::str::SplitAsciiWhitespace<'_>| match fields.next() {
        None => Ok(u),
        Some(_) => Err(ParseError::BadField("extra fields".into())),
    };
    match kind {
        "reset" => simple(Update::Reset, &mut fields),
        "synced" => simple(Update::Synced, &mut fields),
        "alive" => simple(Update::Alive, &mut fields),
        "add" => Ok(Update::Add(parse_published(&mut fields)?)),
        "del" => Ok(Update::Del(parse_published(&mut fields)?)),
        other => Err(ParseError::UnknownKind(other.chars().take(32).collect())),
    }
}

/// The lines that turn what a peer was told (`old`) into `new`: removals first.
pub fn diff(old: &BTreeSet<Published>, new: &BTreeSet<Published>) -> Vec<Update> {
    let gone = old.difference(new).cloned().map(Update::Del);
    let came = new.difference(old).cloned().map(Update::Add);
    gone.chain(came).collect()
}

/// The full snapshot of `table`: `reset`, one `add` each, `synced`.
pub fn snapshot(table: &BTreeSet<Published>) -> Vec<Update> {
    let adds = table.iter().cloned().map(Update::Add);
    std::iter::once(Update::Reset).chain(adds).chain(std::iter::once(Update::Synced)).collect()
}

/// What a forward request asks the guest to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub ip: IpAddr,
    pub port: u16,
    /// Host → guest bytes come as frames (see the module doc).
    pub framed: bool,
}

/// The request line for `f`, with its `\n`.
pub fn encode_forward(f: &Forward) -> String {
    let framed = if f.framed { " framed" } else { "" };
    format!("{FORWARD_MAGIC}{} {} {}{framed}\n", f.proto.as_str(), f.ip, f.port)
}

/// Parses a forward request line (without its `\n`).
pub fn parse_forward(line: &[u8]) -> Result<Forward, ParseError> {
    let rest = text(line)?.strip_prefix(FORWARD_MAGIC).ok_or(ParseError::Malformed)?;
    let mut fields = rest.split_ascii_whitespace();
    let proto = fields.next().and_then(Proto::parse).ok_or_else(|| ParseError::BadField("protocol".into()))?;
    let ip = field(fields.next(), "address")?;
    let port = field(fields.next(), "port")?;
    let framed = match fields.next() {
        None => false,
        Some("framed") => true,
        Some(other) => return Err(ParseError::BadField(format!("mode {other:?}"))),
    };
    if fields.next().is_some() {
        return Err(ParseError::BadField("extra fields".into()));
    }
    Ok(Forward { proto, ip, port, framed })
}

/// The guest's answer to a forward request: `Ok(())` or the reason given.
pub fn parse_forward_reply(line: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    match text {
        "OK" => Ok(()),
        _ => Err(text.strip_prefix("ERR ").unwrap_or(text).chars().take(MAX_LINE).collect()),
    }
}

/// The reply line refusing a forward request, with its `\n`.
pub fn encode_refusal(reason: &str) -> String {
    let one_line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_LINE - 5).collect();
    format!("ERR {one_line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host_ip: Option<&str>, host_port: u16, target: &str, target_port: u16) -> Published {
        Published {
            proto: Proto::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port,
            target_ip: target.parse().unwrap(),
            target_port,
        }
    }

    #[test]
    fn updates_round_trip() {
        let v6 = Published { proto: Proto::Udp, ..entry(Some("::1"), 53, "fd00::5", 5353) };
        for u in [
            Update::Reset,
            Update::Synced,
            Update::Alive,
            Update::Add(entry(None, 8080, "10.88.0.5", 80)),
            Update::Del(entry(Some("127.0.0.1"), 9000, "10.88.0.6", 9000)),
            Update::Add(v6),
        ] {
            let line = encode(&u);
            assert!(line.ends_with('\n') && line.len() <= MAX_LINE);
            assert_eq!(parse(line.trim_end().as_bytes()), Ok(u));
        }
        assert_eq!(encode(&Update::Add(entry(None, 8080, "10.88.0.5", 80))), "add tcp * 8080 10.88.0.5 80\n");
        assert_eq!(entry(None, 8080, "10.88.0.5", 80).describe(), "tcp *:8080 -> 10.88.0.5:80");
        assert_eq!(entry(Some("::1"), 1, "10.88.0.5", 2).describe(), "tcp [::1]:1 -> 10.88.0.5:2");
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(matches!(parse(b"hello"), Err(ParseError::UnknownKind(_))));
        assert!(matches!(parse(b"add tcp * 8080 10.88.0.5"), Err(ParseError::BadField(_))));
        assert!(matches!(parse(b"add tcp * 70000 10.88.0.5 80"), Err(ParseError::BadField(_))));
        assert!(matches!(parse(b"add sctp * 80 10.88.0.5 80"), Err(ParseError::BadField(_))));
        assert!(matches!(parse(b"add tcp localhost 80 10.88.0.5 80"), Err(ParseError::BadField(_))));
        assert!(matches!(parse(b"add tcp * 80 10.88.0.5 80 x"), Err(ParseError::BadField(_))));
        assert!(matches!(parse(b"reset now"), Err(ParseError::BadField(_))));
        assert_eq!(parse(b"\xff"), Err(ParseError::Malformed));
        assert_eq!(parse(&[b'a'; MAX_LINE + 1]), Err(ParseError::Malformed));
    }

    #[test]
    fn diff_and_snapshot() {
        let a = entry(None, 1, "10.88.0.2", 80);
        let b = entry(None, 2, "10.88.0.3", 80);
        let c = entry(None, 3, "10.88.0.4", 80);
        let old: BTreeSet<_> = [a.clone(), b.clone()].into();
        let new: BTreeSet<_> = [b.clone(), c.clone()].into();
        assert_eq!(diff(&old, &new), vec![Update::Del(a), Update::Add(c.clone())]);
        assert!(diff(&new, &new).is_empty());
        assert_eq!(snapshot(&new), vec![Update::Reset, Update::Add(b), Update::Add(c), Update::Synced]);
    }

    #[test]
    fn forward_round_trips() {
        for f in [
            Forward { proto: Proto::Tcp, ip: "10.88.0.5".parse().unwrap(), port: 8080, framed: true },
            Forward { proto: Proto::Tcp, ip: "127.0.0.1".parse().unwrap(), port: 1, framed: false },
        ] {
            let line = encode_forward(&f);
            assert_eq!(parse_forward(line.trim_end().as_bytes()), Ok(f));
        }
        assert_eq!(
            encode_forward(&Forward { proto: Proto::Tcp, ip: "10.88.0.5".parse().unwrap(), port: 80, framed: false }),
            "SKIFF-FORWARD/1 tcp 10.88.0.5 80\n"
        );
        assert!(parse_forward(b"GET / HTTP/1.1").is_err());
        assert!(parse_forward(b"SKIFF-FORWARD/1 tcp 10.88.0.5").is_err());
        assert!(parse_forward(b"SKIFF-FORWARD/1 tcp 10.88.0.5 80 plain").is_err());
        assert!(parse_forward(b"SKIFF-FORWARD/1 tcp host.lan 80").is_err());
    }

    #[test]
    fn forward_replies() {
        assert_eq!(parse_forward_reply(b"OK"), Ok(()));
        let refusal = encode_refusal("not published:\n10.0.0.1 80");
        assert_eq!(refusal.matches('\n').count(), 1);
        assert_eq!(parse_forward_reply(refusal.trim_end().as_bytes()), Err("not published: 10.0.0.1 80".into()));
        assert!(parse_forward_reply(b"").is_err());
    }
}
